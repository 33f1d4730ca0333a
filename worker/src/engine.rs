//! One iteration of a job, with any set of logical workers in this process ([`Trainer`]).
//!
//! Each iteration: every logical worker i computes its gradient g_i on its small batch at its
//! perturbed weights (its method's `Perturbation`, methods/); blocks of consecutive workers — subtrees of the reduction
//! tree — run on separate threads, each folding its workers in tree order; the block sums are
//! combined along the same tree, divided by M, and the optimiser updates the weights. Thread
//! count therefore changes speed, never bits.

use gnc_proto::{EvalRecord, IterRecord, ValidSpec};
use tch::Tensor;

use gnc_contract::data_files::DataShape;
use gnc_contract::manifest::{self, LossWindow, Manifest, PartRef};
use gnc_contract::plan::{PlanError, RunPlan};

use crate::EngineError;
use crate::checkpoint;
use crate::data::{self, Augment, DataSet, order::EpochOrder};
use crate::device::Device;
use crate::eval::evaluate;
use crate::hash::model_sha256;
use crate::methods::{self, At, Method, Perturbation};
use crate::model::{self, Model};
use crate::optim::Optimizer;
use crate::rng::Purpose;
use crate::schedule::Schedule;
use crate::state::TrainState;
use crate::step::{BlockResult, BlockTask, BundleLayout, Previous, SecondBatch};
use crate::tree::{BlockSum, Bundle, combine_blocks};

/// One job's fixed ingredients, and the means to advance a [`TrainState`] by one iteration.
pub struct Trainer {
    spec: ValidSpec,
    method: Box<dyn Method>,
    data: DataSet,
    model: Box<dyn Model>,
    schedule: Schedule,
    /// Shapes and iteration counts, as the supervisor computes them from the files' headers.
    plan: RunPlan,
    /// Where the state's tensors live.
    device: Device,
    layout: BundleLayout,
    blocks: Vec<(usize, usize)>,
    /// The current epoch's data orders (main, and NE's second batch).
    orders: Option<(EpochOrder, Option<EpochOrder>)>,
}

/// The per-iteration data computed in [`Trainer::prepare`].
pub struct Prepared {
    /// When the iteration began, for its record's `seconds`.
    began: std::time::Instant,
    at: At,
    perturbation: Box<dyn Perturbation>,
    keep_grads: bool,
}

impl Prepared {
    /// The iteration it prepares.
    pub fn iteration(&self) -> u64 {
        self.at.iteration
    }

    /// η_t.
    pub fn lr(&self) -> f64 {
        self.at.lr
    }

    /// Whether the workers' weights come from their saved gradients (GNC's noise).
    pub fn injects_gradient_noise(&self) -> bool {
        self.keep_grads
    }
}

/// ‖g‖ over every parameter's gradient, as the iteration record reports it.
pub fn grad_norm(grads: &[Tensor]) -> f64 {
    Tensor::stack(&grads.iter().map(Tensor::norm).collect::<Vec<_>>(), 0)
        .norm()
        .double_value(&[])
}

impl Trainer {
    fn orders(&self, epoch: u64) -> (EpochOrder, Option<EpochOrder>) {
        let p = &self.spec.parallel;
        let n = self.data.train.len();
        let make =
            |purpose| EpochOrder::new(self.spec.seed, purpose, epoch, n, p.workers, p.small_batch);
        let second = self
            .method
            .second_batch()
            .map(|_| make(Purpose::SecondBatchOrder));
        (make(Purpose::DataOrder), second)
    }

    /// Loads the data and builds the model; `threads` compute threads (at most M), on the CPU.
    pub fn new(spec: &ValidSpec, threads: usize) -> Result<Trainer, EngineError> {
        Trainer::on(spec, threads, Device::CPU)
    }

    /// [`Trainer::new`] with the state's tensors on `device`.
    pub fn on(spec: &ValidSpec, threads: usize, device: Device) -> Result<Trainer, EngineError> {
        let data = data::load(&spec.data, spec.seed)?;
        let shape = DataShape {
            train: data.train.len(),
            test: data.test.len(),
            example: data.train.shape.clone(),
            classes: data.classes,
        };
        let plan = RunPlan::new(spec, shape).map_err(|e| match e {
            PlanError::Spec(e) => EngineError::Spec(e),
            PlanError::Data(e) => EngineError::Data(e),
            e @ PlanError::Model(_) => EngineError::Config(e.to_string()),
        })?;
        let model = model::build(&spec.model, plan.architecture.clone());
        let layout = BundleLayout {
            params: model.params().len(),
            bn_layers: model.bn_channels().len(),
        };
        Ok(Trainer {
            spec: spec.clone(),
            method: methods::build(&spec.method),
            schedule: Schedule::new(&spec.schedule, plan.iterations_per_epoch),
            plan,
            device,
            blocks: gnc_tree::subtree_layout(
                spec.parallel.workers,
                threads.clamp(1, spec.parallel.workers),
            )
            .expect("1 <= threads <= M always has a subtree layout"),
            data,
            model,
            layout,
            orders: None,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn plan(&self) -> &RunPlan {
        &self.plan
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The training examples (normalised, in file order).
    pub fn train_examples(&self) -> &crate::data::Examples {
        &self.data.train
    }

    pub fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    pub fn spec(&self) -> &ValidSpec {
        &self.spec
    }

    pub fn threads(&self) -> usize {
        self.blocks.len()
    }

    /// Runs iteration `state.iteration` with every logical worker in this process and
    /// returns its record.
    pub fn step(&mut self, state: &mut TrainState) -> Result<IterRecord, EngineError> {
        let prepared = self.prepare(state);
        let total = self.sum_in_process(state, &prepared)?;
        Ok(self.finish(state, prepared, total))
    }

    /// The bundle summed over all M logical workers, each compute thread summing its block
    /// and the blocks combined in the tree's order.
    pub fn sum_in_process(
        &self,
        state: &mut TrainState,
        prepared: &Prepared,
    ) -> Result<Bundle, EngineError> {
        let sums = self.compute_blocks(state, prepared, &self.blocks)?;
        Ok(combine_blocks(self.spec.parallel.workers, sums))
    }

    /// η for iteration `t`: the schedule's, halved once the loss trigger's window has.
    pub fn rate(&self, t: u64, window: &LossWindow) -> f64 {
        self.schedule.lr(t) * crate::schedule::trigger_factor(window)
    }

    /// First phase of an iteration, identical in every process: the rate and the method's
    /// shared perturbation data.
    pub fn prepare(&mut self, state: &mut TrainState) -> Prepared {
        let began = std::time::Instant::now();
        let t = state.iteration;
        let epoch = t / self.plan.iterations_per_epoch;
        if self.orders.as_ref().is_none_or(|o| o.0.epoch != epoch) {
            self.orders = Some(self.orders(epoch));
        }
        let at = At {
            iteration: t,
            epoch,
            lr: self.rate(t, &state.loss_window),
            seed: self.spec.seed,
        };
        let keep_grads = self.method.keeps_gradients(epoch);
        if !keep_grads {
            // A method that keeps no gradients now (GNC→RNC after its switch) needs none saved.
            state.prev_mean = None;
            state.prev_grads.iter_mut().for_each(|g| *g = None);
        }
        let perturbation = self
            .method
            .perturbation(at, &state.params, state.prev_mean.as_deref());
        Prepared {
            began,
            at,
            perturbation,
            keep_grads,
        }
    }

    /// The α of the noise the method injects in the prepared iteration, if it injects any.
    pub fn noise_alpha(&self, prepared: &Prepared) -> Option<f64> {
        prepared.perturbation.alpha()
    }

    /// The method's large-batch loss and gradient g~ for the prepared iteration — its
    /// batches, its noise rule — at `at` (the state's parameters when `None`), computed on
    /// copies: `state` does not change. At the state's parameters, the bits the iteration
    /// itself computes (the same blocks, kernels and tree).
    pub fn method_gradient(
        &self,
        state: &TrainState,
        prepared: &Prepared,
        at: Option<&[Tensor]>,
    ) -> Result<(f64, Vec<Tensor>), EngineError> {
        let (params, perturbation) = match at {
            None => (&state.params[..], prepared.perturbation.share()),
            Some(params) => {
                let prev_mean = state.prev_mean.as_deref();
                (
                    params,
                    self.method.perturbation(prepared.at, params, prev_mean),
                )
            }
        };
        let tasks = self.block_tasks(
            params,
            perturbation.as_ref(),
            prepared,
            &self.blocks,
            |lo, hi| Previous::Copied(&state.prev_grads[lo..hi]),
        );
        let sums = run_blocks(tasks)?
            .into_iter()
            .map(|r| ((r.workers.start, r.workers.end), r.sum))
            .collect();
        let m = self.spec.parallel.workers;
        let mut mean: Vec<Tensor> = combine_blocks(m, sums)
            .iter()
            .map(|t| t / m as f64)
            .collect();
        let loss = mean[self.layout.loss()].double_value(&[0]);
        mean.truncate(self.layout.params);
        Ok((loss, mean))
    }

    /// [`Trainer::compute_blocks`] of one block, on this thread: a worker process's share.
    pub fn compute_block(
        &self,
        state: &mut TrainState,
        prepared: &Prepared,
        block: (usize, usize),
    ) -> Result<Bundle, EngineError> {
        let mut sums = self.compute_blocks(state, prepared, &[block])?;
        let (_, bundle) = sums.pop().expect("one block, one sum");
        Ok(bundle)
    }

    /// Second phase: the tree sums of the given blocks of logical workers (nodes of the
    /// reduction tree), one thread per block. Keeps each worker's gradient in `state` when
    /// the method needs it next time.
    pub fn compute_blocks(
        &self,
        state: &mut TrainState,
        prepared: &Prepared,
        blocks: &[(usize, usize)],
    ) -> Result<Vec<BlockSum>, EngineError> {
        let previous = |lo: usize, hi: usize| {
            Previous::Taken(
                state.prev_grads[lo..hi]
                    .iter_mut()
                    .map(Option::take)
                    .collect(),
            )
        };
        let tasks = self.block_tasks(
            &state.params,
            prepared.perturbation.as_ref(),
            prepared,
            blocks,
            previous,
        );
        let results = run_blocks(tasks)?;
        let mut sums = Vec::with_capacity(results.len());
        for r in results {
            for (w, g) in r.workers.clone().zip(r.grads) {
                state.prev_grads[w] = g;
            }
            sums.push(((r.workers.start, r.workers.end), r.sum));
        }
        Ok(sums)
    }

    /// One task per block of workers, computing at `params` with `perturbation`; each
    /// block's previous gradients from `previous(lo, hi)`.
    fn block_tasks<'a>(
        &'a self,
        params: &[Tensor],
        perturbation: &dyn Perturbation,
        prepared: &Prepared,
        blocks: &[(usize, usize)],
        mut previous: impl FnMut(usize, usize) -> Previous<'a>,
    ) -> Vec<BlockTask<'a>> {
        let orders = self
            .orders
            .as_ref()
            .expect("prepare() sets the epoch's orders");
        let augment = self.spec.data.augment.then_some(Augment {
            seed: self.spec.seed,
            epoch: prepared.at.epoch,
            padding: self.spec.data.crop_padding,
        });
        let second_alpha = self.method.second_batch();
        blocks
            .iter()
            .map(|&(lo, hi)| BlockTask {
                model: self.model.as_ref(),
                params: params.iter().map(Tensor::shallow_clone).collect(),
                perturbation: perturbation.share(),
                train: &self.data.train,
                order: &orders.0,
                second: orders
                    .1
                    .as_ref()
                    .zip(second_alpha)
                    .map(|(order, alpha)| SecondBatch { order, alpha }),
                augment,
                k: prepared.at.iteration % self.plan.iterations_per_epoch,
                workers: lo..hi,
                previous: previous(lo, hi),
                keep_grads: prepared.keep_grads,
            })
            .collect()
    }

    /// Last phase, identical in every process: from the sum over all M workers' bundles
    /// (in tree order), the mean gradient, the BatchNorm statistics and the update.
    pub fn finish(&self, state: &mut TrainState, prepared: Prepared, total: Bundle) -> IterRecord {
        let m = self.spec.parallel.workers;
        let mean: Vec<Tensor> = total.iter().map(|t| t / m as f64).collect();
        let l = self.layout;
        let grads: Vec<Tensor> = mean[..l.params].iter().map(Tensor::shallow_clone).collect();
        let loss = mean[l.loss()].double_value(&[0]);
        let grad_norm = grad_norm(&grads);
        // Σ_i ‖g_i - g~‖² / M = mean_i ‖g_i‖² - ‖g~‖² (g~ is the mean of the g_i).
        let mean_sq = mean[l.grad_sq()].double_value(&[0]);
        let noise_var = (mean_sq - grad_norm * grad_norm).max(0.0);
        let noise_scale = crate::analysis::noise_scale::estimates(
            mean_sq,
            grad_norm * grad_norm,
            self.spec.parallel.small_batch,
            m,
        );
        if let Some(trigger) = &self.spec.schedule.loss_trigger {
            crate::schedule::observe_loss(
                &mut state.loss_window,
                trigger,
                prepared.at.iteration,
                loss,
            );
        }
        self.update_running_stats(state, &mean);
        state
            .optimizer
            .step(&mut state.params, &grads, prepared.at.lr);
        state.prev_mean = prepared.keep_grads.then_some(grads);
        state.iteration += 1;
        IterRecord {
            iter: prepared.at.iteration,
            epoch: self.schedule.epoch(prepared.at.iteration),
            loss,
            lr: prepared.at.lr,
            grad_norm,
            noise_norm: noise_var.sqrt(),
            grad_sq_estimate: noise_scale.map(|(g, _)| g),
            trace_estimate: noise_scale.map(|(_, t)| t),
            seconds: prepared.began.elapsed().as_secs_f64(),
        }
    }

    /// Whether to evaluate once `done` iterations are complete: every `eval.every_epochs`
    /// epochs, and at the end.
    pub fn eval_due(&self, done: u64) -> bool {
        let per_epoch = self.plan.iterations_per_epoch;
        let every = self.spec.eval.every_epochs as u64;
        done == self.schedule.total_iterations()
            || (every > 0
                && done.is_multiple_of(per_epoch)
                && (done / per_epoch).is_multiple_of(every))
    }

    /// Whether to checkpoint once `done` iterations are complete, in a run that stops at `stop`.
    pub fn checkpoint_due(&self, done: u64, stop: u64) -> bool {
        let every = self.spec.checkpoint.every_iterations;
        (every > 0 && done.is_multiple_of(every)) || done == stop
    }

    /// Shapes of one worker's bundle, in order (for flattening it into shared memory).
    pub fn bundle_shapes(&self) -> Vec<Vec<i64>> {
        self.model.architecture().bundle_shapes()
    }

    /// running ← (1 - 0.1) running + 0.1 × (mean over workers of their batch statistics),
    /// libtorch's default BatchNorm momentum.
    fn update_running_stats(&self, state: &mut TrainState, mean: &[Tensor]) {
        const MOMENTUM: f64 = 0.1;
        for (i, (rm, rv)) in state.running.iter_mut().enumerate() {
            *rm = &*rm * (1.0 - MOMENTUM) + &mean[self.layout.bn_mean(i)] * MOMENTUM;
            *rv = &*rv * (1.0 - MOMENTUM) + &mean[self.layout.bn_var(i)] * MOMENTUM;
        }
    }

    /// Loss and accuracy on the training subset and the test set.
    pub fn evaluate(&self, state: &TrainState) -> EvalRecord {
        let e = &self.spec.eval;
        let p = &state.params;
        let r = &state.running;
        let (train_loss, train_accuracy) = evaluate(
            self.model.as_ref(),
            p,
            r,
            &self.data.train,
            e.train_examples,
        );
        let (test_loss, test_accuracy) =
            evaluate(self.model.as_ref(), p, r, &self.data.test, usize::MAX);
        EvalRecord {
            iter: state.iteration,
            epoch: self.schedule.epoch(state.iteration),
            train_loss,
            train_accuracy,
            test_loss,
            test_accuracy,
        }
    }

    /// The manifest of a checkpoint of `state` (files and hashes are filled in as it is
    /// written); `parts` names the part files of a multi-process checkpoint.
    pub fn manifest(&self, state: &TrainState, generation: u64, parts: Vec<PartRef>) -> Manifest {
        Manifest {
            format: manifest::FORMAT,
            job: self.spec.name.clone(),
            spec_hash: self.spec.spec_hash(),
            iteration: state.iteration,
            generation,
            params_sha256: self.hash(state),
            tensors_file: String::new(),
            tensors_sha256: String::new(),
            parts,
            reproducibility: None,
            loss_trigger: self
                .spec
                .schedule
                .loss_trigger
                .as_ref()
                .map(|_| state.loss_window.clone()),
        }
    }

    /// Writes a checkpoint of `state` under `out/checkpoints`.
    pub fn checkpoint(
        &self,
        out: &std::path::Path,
        state: &TrainState,
        generation: u64,
    ) -> Result<(), EngineError> {
        let manifest = self.manifest(state, generation, Vec::new());
        let named = state.to_named(self.model.params());
        checkpoint::write(
            &out.join("checkpoints"),
            manifest,
            &named,
            self.spec.checkpoint.keep,
        )?;
        Ok(())
    }

    /// SHA-256 of the model state (parameters and BatchNorm running statistics).
    pub fn hash(&self, state: &TrainState) -> String {
        model_sha256(self.model.params(), &state.params, &state.running)
    }

    /// The state at iteration 0.
    pub fn fresh_state(&self) -> TrainState {
        let params = model::init_params(self.model.as_ref(), self.spec.seed, self.device);
        let optimizer = Optimizer::new(&self.spec.optimizer, &params);
        TrainState {
            iteration: 0,
            running: model::init_running_stats(self.model.as_ref(), self.device),
            optimizer,
            prev_mean: None,
            prev_grads: (0..self.spec.parallel.workers).map(|_| None).collect(),
            params,
            loss_window: Default::default(),
        }
    }
}

/// Runs the blocks, each on its own thread (the first on this one).
fn run_blocks(mut tasks: Vec<BlockTask>) -> Result<Vec<BlockResult>, EngineError> {
    if tasks.len() == 1 {
        return Ok(vec![tasks.pop().expect("one task").run()]);
    }
    std::thread::scope(|s| {
        let first = tasks.remove(0);
        let handles: Vec<_> = tasks
            .into_iter()
            .map(|t| s.spawn(move || t.run()))
            .collect();
        let mut results = vec![first.run()];
        for h in handles {
            results.push(h.join().map_err(|e| {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                EngineError::Thread(msg)
            })?);
        }
        Ok(results)
    })
}
