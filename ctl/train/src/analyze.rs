//! `gncctl analyze RUN_DIR`: the papers' analyses of a run's end point (its newest checkpoint)
//! — the top Hessian eigenvalue, Keskar's ε-sharpness, and the loss on the line towards
//! another run's end point — written to `RUN_DIR/analysis.json`. It reads the run and never
//! changes it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use gnc_proto::{MethodSpec, ValidSpec};
use gnc_worker::analysis::Objective;
use gnc_worker::analysis::anisotropy::{self, LayerAnisotropy};
use gnc_worker::analysis::curvature::{TopEigenvalue, top_eigenvalue};
use gnc_worker::analysis::line::{LinePoint, alphas, losses_along};
use gnc_worker::analysis::model::{ModelObjective, flatten};
use gnc_worker::analysis::sharpness::{EpsilonSharpness, epsilon_sharpness};
use gnc_worker::checkpoint;
use gnc_worker::engine::Trainer;
use gnc_worker::method::{Perturbation, filter_norms, rnc_noise};
use gnc_worker::state::{SavedGradient, TrainState};

use gnc_ctl::cmd::analyze::Args;

/// The power iteration stops once the eigenvalue changes by less than this (relative).
const TOLERANCE: f64 = 1e-3;
/// The finite-difference step of the Hessian-vector products, relative to ‖x‖.
const RELATIVE_STEP: f64 = 1e-3;
/// Seeds of the starting points (fixed: an analysis is reproducible too).
const SEED: u64 = 0x616e616c;

/// What `analysis.json` holds.
#[derive(serde::Serialize)]
struct Analysis {
    run: PathBuf,
    /// The checkpoint analysed: iterations completed.
    iteration: u64,
    examples: usize,
    params: usize,
    /// Mean cross-entropy over the examples at the end point.
    loss: f64,
    top_eigenvalue: Option<TopEigenvalue>,
    epsilon_sharpness: Vec<EpsilonSharpness>,
    line: Option<Line>,
    /// κ per layer of GNC's noise (the checkpoint's g_i(t-1)) and of the noise RNC would
    /// draw at this iteration; absent where the checkpoint keeps no per-worker gradients
    /// (only GNC runs do).
    anisotropy: Option<Anisotropy>,
    /// The losses of the M models x_i the workers would differentiate at next (GNC §3.2,
    /// Fig. 4b–c), with GNC's noise and with RNC's at the same α and rate; GNC runs only.
    perturbed: Option<Perturbed>,
    seconds: f64,
}

#[derive(serde::Serialize)]
struct Perturbed {
    alpha: f64,
    lr: f64,
    gnc: Spread,
    rnc: Spread,
}

/// Losses of the M perturbed models, and how widely they vary.
#[derive(serde::Serialize)]
struct Spread {
    losses: Vec<f64>,
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(losses: Vec<f64>) -> Spread {
        let n = losses.len() as f64;
        let mean = losses.iter().sum::<f64>() / n;
        let std = (losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt();
        Spread {
            mean,
            std,
            min: losses.iter().copied().fold(f64::INFINITY, f64::min),
            max: losses.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            losses,
        }
    }
}

#[derive(serde::Serialize)]
struct Anisotropy {
    workers: usize,
    gnc: Vec<LayerAnisotropy>,
    rnc: Vec<LayerAnisotropy>,
}

#[derive(serde::Serialize)]
struct Line {
    towards: PathBuf,
    towards_iteration: u64,
    points: Vec<LinePoint>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let began = Instant::now();
    let spec = crate::verify::recorded::spec(&args.run_dir)?;
    gnc_worker::pin::pin_process_environment(spec.reproducibility).map_err(anyhow::Error::msg)?;
    let trainer = Trainer::new(&spec, 1)?;
    let end = end_point(&trainer, &args.run_dir, &spec)?;
    let objective = ModelObjective::new(
        trainer.model(),
        &end.running,
        trainer.train_examples(),
        args.examples,
    );
    let x = flatten(&end.params);
    let loss = objective.loss(&x);
    eprintln!(
        "analysing {} at iteration {} over {} training examples ({} parameters)",
        args.run_dir.display(),
        end.iteration,
        objective.examples(),
        x.len()
    );
    let top = (args.power_iterations > 0).then(|| {
        let length = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        let h = RELATIVE_STEP * length.max(1.0);
        top_eigenvalue(&objective, &x, args.power_iterations, TOLERANCE, h, SEED)
    });
    let sharpness = args
        .epsilons()
        .into_iter()
        .map(|epsilon| epsilon_sharpness(&objective, &x, epsilon, args.ascent_steps, SEED))
        .collect();
    let anisotropy = noise_anisotropy(&trainer, &end);
    let perturbed = perturbed_losses(&trainer, &end, &objective);
    let line = match &args.towards {
        None => None,
        Some(other) => Some(line_towards(&trainer, &objective, &x, other)?),
    };
    let analysis = Analysis {
        run: args.run_dir.clone(),
        iteration: end.iteration,
        examples: objective.examples(),
        params: x.len(),
        loss,
        top_eigenvalue: top,
        epsilon_sharpness: sharpness,
        line,
        anisotropy,
        perturbed,
        seconds: began.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&analysis)?;
    let file = args.run_dir.join("analysis.json");
    gnc_contract::atomic::write_atomic(&file, json.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    if args.json {
        println!("{json}");
    } else {
        print_analysis(&analysis, &file);
    }
    Ok(())
}

/// The state of the newest intact checkpoint of `dir`, a run of `spec` (a model of
/// `trainer`'s shapes).
fn end_point(trainer: &Trainer, dir: &Path, spec: &ValidSpec) -> anyhow::Result<TrainState> {
    let mut warn = |message: &str| eprintln!("warning: {message}");
    let loaded = checkpoint::latest(&dir.join("checkpoints"), &spec.spec_hash(), &mut warn)?
        .with_context(|| {
            format!(
                "{} has no checkpoint of this spec to analyse (a finished run checkpoints at its end)",
                dir.display()
            )
        })?;
    let mut state = trainer.fresh_state();
    state
        .restore(trainer.model().params(), loaded)
        .with_context(|| {
            format!(
                "the checkpoint of {} does not fit this model",
                dir.display()
            )
        })?;
    Ok(state)
}

/// The loss from `x` (α = 0) to the end point of run `other` (α = 1), α from -1 to 2.
fn line_towards(
    trainer: &Trainer,
    objective: &dyn Objective,
    x: &[f32],
    other: &Path,
) -> anyhow::Result<Line> {
    let spec = crate::verify::recorded::spec(other)?;
    anyhow::ensure!(
        spec.model == trainer.spec().model,
        "--towards {}: that run trained another model ({:?}, not {:?})",
        other.display(),
        spec.model,
        trainer.spec().model
    );
    let end = end_point(trainer, other, &spec)?;
    let to = flatten(&end.params);
    Ok(Line {
        towards: other.to_path_buf(),
        towards_iteration: end.iteration,
        points: losses_along(objective, x, &to, &alphas(-1.0, 2.0, 30)),
    })
}

/// The checkpoint's g_i(t-1) of every worker, where it keeps them (GNC runs).
fn saved_gradients(end: &TrainState) -> Option<Vec<&SavedGradient>> {
    end.prev_grads.iter().map(Option::as_ref).collect()
}

/// κ per layer for GNC's noise ω_i = g_i(t-1) - g~(t-1) (Eq. 4; Ω centres the g_i on
/// their mean, which is g~) and RNC's ω_i = u_i / ‖u_i^(p)‖ filter-wise (Eq. 5), for the
/// M workers of the run.
fn noise_anisotropy(trainer: &Trainer, end: &TrainState) -> Option<Anisotropy> {
    let saved = saved_gradients(end)?;
    if saved.len() < 3 {
        return None;
    }
    let seed = trainer.spec().seed;
    let mut gnc = Vec::new();
    let mut rnc = Vec::new();
    for (k, (spec, x)) in trainer.model().params().iter().zip(&end.params).enumerate() {
        let columns: Vec<&[f32]> = saved.iter().map(|g| g[k].as_slice()).collect();
        gnc.push(anisotropy::layer(&spec.name, &columns));
        let random: Vec<Vec<f32>> = (0..saved.len())
            .map(|worker| {
                let u = rnc_noise(seed, end.iteration, worker, k, x);
                let direction = &u / filter_norms(&u);
                let mut values = vec![0f32; direction.numel()];
                direction
                    .contiguous()
                    .copy_data(&mut values, direction.numel());
                values
            })
            .collect();
        let columns: Vec<&[f32]> = random.iter().map(Vec::as_slice).collect();
        rnc.push(anisotropy::layer(&spec.name, &columns));
    }
    Some(Anisotropy {
        workers: saved.len(),
        gnc,
        rnc,
    })
}

/// The losses of x_i = x - α η ‖x^(p)‖ ω_i^(p) for GNC's ω_i (the checkpoint's g_i - g~,
/// exactly as the next iteration would make them) and for RNC's, at the GNC phase's α and the
/// next iteration's rate.
fn perturbed_losses(
    trainer: &Trainer,
    end: &TrainState,
    objective: &dyn Objective,
) -> Option<Perturbed> {
    let alpha = match trainer.spec().method {
        MethodSpec::Gnc { alpha } => alpha,
        MethodSpec::GncToRnc { alpha_gnc, .. } => alpha_gnc,
        _ => return None,
    };
    let mean = end.prev_mean.as_deref()?;
    let saved = saved_gradients(end)?;
    // The next iteration's rate; a finished run's last, which a decay to 0 would not give.
    let last = trainer.schedule().total_iterations().saturating_sub(1);
    let lr = trainer.rate(end.iteration.min(last), &end.loss_window);
    let gnc = Perturbation::gnc(&end.params, alpha, lr, Some(mean));
    let rnc = Perturbation::rnc(&end.params, alpha, lr, trainer.spec().seed, end.iteration);
    let losses = |perturbation: &Perturbation| {
        let losses = saved
            .iter()
            .enumerate()
            .map(|(worker, g)| {
                let x = perturbation.weights_of(&end.params, worker, Some((*g).clone()));
                objective.loss(&x)
            })
            .collect();
        Spread::of(losses)
    };
    Some(Perturbed {
        alpha,
        lr,
        gnc: losses(&gnc),
        rnc: losses(&rnc),
    })
}

fn print_analysis(a: &Analysis, file: &Path) {
    println!(
        "loss at the end point (iteration {})  {:.6}",
        a.iteration, a.loss
    );
    if let Some(top) = &a.top_eigenvalue {
        println!(
            "top Hessian eigenvalue               {:.4} ({} products, residual {:.3})",
            top.value,
            top.history.len(),
            top.residual
        );
    }
    for s in &a.epsilon_sharpness {
        println!(
            "ε-sharpness, ε = {:<8}            {:.4} % (max loss {:.6})",
            s.epsilon, s.sharpness, s.max_loss
        );
    }
    if let Some(line) = &a.line {
        let at = |alpha: f64| {
            line.points
                .iter()
                .find(|p| (p.alpha - alpha).abs() < 1e-9)
                .map_or(f64::NAN, |p| p.loss)
        };
        println!(
            "line towards {}: loss {:.6} (α = 0), {:.6} (α = 0.5), {:.6} (α = 1)",
            line.towards.display(),
            at(0.0),
            at(0.5),
            at(1.0)
        );
    }
    if let Some(an) = &a.anisotropy {
        println!(
            "noise anisotropy κ = λmax/λmin* per layer, M = {} (GNC §3.2):",
            an.workers
        );
        for (g, r) in an.gnc.iter().zip(&an.rnc) {
            println!(
                "  {:<24} GNC {:>10.1} (rank {:>3})   RNC {:>8.2} (rank {:>3})   ratio {:.1}",
                g.layer,
                g.kappa,
                g.rank,
                r.kappa,
                r.rank,
                g.kappa / r.kappa
            );
        }
    }
    if let Some(p) = &a.perturbed {
        println!(
            "perturbed models (α = {}, η = {}): GNC loss {:.6} ± {:.6} [{:.6}, {:.6}], RNC {:.6} ± {:.6} [{:.6}, {:.6}]",
            p.alpha,
            p.lr,
            p.gnc.mean,
            p.gnc.std,
            p.gnc.min,
            p.gnc.max,
            p.rnc.mean,
            p.rnc.std,
            p.rnc.min,
            p.rnc.max
        );
    }
    println!("written to {} in {:.1} s", file.display(), a.seconds);
}
