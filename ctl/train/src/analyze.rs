//! `gncctl analyze RUN_DIR`: the papers' analyses of a run's end point (its newest checkpoint)
//! — the top Hessian eigenvalue, Keskar's ε-sharpness, and the loss on the line towards
//! another run's end point — written to `RUN_DIR/analysis.json`. It reads the run and never
//! changes it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use gnc_proto::{AnalysisLine, NoiseAnisotropy, PerturbedLosses};
use gnc_proto::{MethodSpec, ValidSpec};
use gnc_worker::analysis::Objective;
use gnc_worker::analysis::curvature::{TopEigenvalue, top_eigenvalue};
use gnc_worker::analysis::line::{alphas, losses_along};
use gnc_worker::analysis::model::{ModelObjective, flatten};
use gnc_worker::analysis::noise::{self, Perturbed};
use gnc_worker::analysis::sharpness::{EpsilonSharpness, epsilon_sharpness};
use gnc_worker::checkpoint;
use gnc_worker::engine::Trainer;
use gnc_worker::state::TrainState;

use gnc_ctl::cmd::analyze::Args;

/// The power iteration stops once the eigenvalue changes by less than this (relative).
const TOLERANCE: f64 = 1e-3;
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
    line: Option<AnalysisLine>,
    /// κ per layer of GNC's noise (the checkpoint's g_i(t-1)) and of the noise RNC would
    /// draw at this iteration; absent where the checkpoint keeps no per-worker gradients
    /// (only GNC runs do).
    anisotropy: Option<NoiseAnisotropy>,
    /// The losses of the M models x_i the workers would differentiate at next (GNC §3.2,
    /// Fig. 4b–c), with GNC's noise and with RNC's at the same α and rate; GNC runs only.
    perturbed: Option<PerturbedLosses>,
    seconds: f64,
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
        let h = args.hvp_step * length.max(1.0);
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
) -> anyhow::Result<AnalysisLine> {
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
    Ok(AnalysisLine {
        towards: other.to_path_buf(),
        towards_iteration: end.iteration,
        points: losses_along(objective, x, &to, &alphas(-1.0, 2.0, 30)),
    })
}

/// κ per layer of GNC's noise (the checkpoint's g_i(t-1)) and RNC's, where it keeps them.
fn noise_anisotropy(trainer: &Trainer, end: &TrainState) -> Option<NoiseAnisotropy> {
    let saved = noise::saved_gradients(&end.prev_grads)?;
    let seed = trainer.spec().seed;
    noise::anisotropy(
        trainer.model().params(),
        &end.params,
        &saved,
        seed,
        end.iteration,
    )
}

/// The losses of the M models the next iteration would make with GNC's noise (the
/// checkpoint's g_i - g~) and with RNC's, at the GNC phase's α and the next iteration's rate;
/// GNC runs only.
fn perturbed_losses(
    trainer: &Trainer,
    end: &TrainState,
    objective: &dyn Objective,
) -> Option<PerturbedLosses> {
    let alpha = match trainer.spec().method {
        MethodSpec::Gnc { alpha } => alpha,
        MethodSpec::GncToRnc { alpha_gnc, .. } => alpha_gnc,
        _ => return None,
    };
    let prev_mean = end.prev_mean.as_deref()?;
    let saved = noise::saved_gradients(&end.prev_grads)?;
    // The next iteration's rate; a finished run's last, which a decay to 0 would not give.
    let last = trainer.schedule().total_iterations().saturating_sub(1);
    let lr = trainer.rate(end.iteration.min(last), &end.loss_window);
    let perturbed = Perturbed {
        params: &end.params,
        workers: saved.len(),
        saved: Some(saved),
        prev_mean: Some(prev_mean),
        alpha,
        lr,
        seed: trainer.spec().seed,
        iteration: end.iteration,
    };
    Some(perturbed.losses(objective))
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
    if let Some((p, gnc)) = a
        .perturbed
        .as_ref()
        .and_then(|p| Some((p, p.gnc.as_ref()?)))
    {
        println!(
            "perturbed models (α = {}, η = {}): GNC loss {:.6} ± {:.6} [{:.6}, {:.6}], RNC {:.6} ± {:.6} [{:.6}, {:.6}]",
            p.alpha,
            p.lr,
            gnc.mean,
            gnc.std,
            gnc.min,
            gnc.max,
            p.rnc.mean,
            p.rnc.std,
            p.rnc.min,
            p.rnc.max
        );
    }
    println!("written to {} in {:.1} s", file.display(), a.seconds);
}
