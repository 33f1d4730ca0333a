//! The job spec: what a user writes in `job.toml`.
//!
//! Every quantity carries the name the papers give it in a comment (GNC = Haruki et al. 2019,
//! NE = Mori & Ueda 2020). Unknown keys are rejected by serde (`deny_unknown_fields`); values
//! that parse but cannot be trained are rejected by [`JobSpec::validate`], and both kinds of
//! error name the offending key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Devices, SpecError};

/// A whole training job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Human name of the job; also names its shared-memory segments, so `[A-Za-z0-9_-]`.
    pub name: String,
    /// Root of every random draw (init, data order, augmentation, RNC noise, NE's second batch).
    pub seed: u64,
    /// Where metrics, checkpoints and the final hash go (relative to the working directory).
    pub output_dir: PathBuf,
    pub data: DataSpec,
    pub model: ModelSpec,
    pub parallel: ParallelSpec,
    pub method: MethodSpec,
    pub optimizer: OptimizerSpec,
    pub schedule: ScheduleSpec,
    #[serde(default)]
    pub eval: EvalSpec,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
    /// Which machines give this job's bits (`crate::repro`): `"portable"` (the default: every
    /// x86-64 machine with AVX2 and FMA) or `"native"` (this machine's fastest kernels; the
    /// same bits on machines of the same CPU model). Part of the spec hash; left out of the
    /// canonical form when it is the default, so specs written before it keep their hash.
    #[serde(default, skip_serializing_if = "is_portable")]
    pub reproducibility: crate::repro::Level,
    /// The papers' measurements during training (`[diagnostics]`), on copies of the state:
    /// they never change a bit of the run, so they are left out of the spec hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<DiagnosticsSpec>,
}

fn is_portable(level: &crate::repro::Level) -> bool {
    *level == crate::repro::Level::Portable
}

/// Which data set, where it lives, and how it is augmented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub dataset: Dataset,
    /// Directory holding the data set's files in their standard format (IDX or CIFAR binary).
    /// Not used by the synthetic teacher-student set.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Use only the first N training examples (a real subset, for fast jobs and tests).
    #[serde(default)]
    pub train_subset: Option<usize>,
    /// Use only the first N test examples.
    #[serde(default)]
    pub test_subset: Option<usize>,
    /// Random crop with `crop_padding` pixels of zero padding, and horizontal flip (He et al.).
    #[serde(default)]
    pub augment: bool,
    #[serde(default = "default_crop_padding")]
    pub crop_padding: usize,
    /// Shape of the synthetic teacher-student set; required when `dataset = "teacher-student"`.
    #[serde(default)]
    pub teacher_student: Option<TeacherStudentSpec>,
    /// The user's arrays; required when `dataset = "tensors"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors: Option<TensorsSpec>,
}

/// A data set of the user's arrays (`dataset = "tensors"`): inputs `(N, ...)` of uint8 (scaled
/// to [0, 1] as the image sets are) or float32, channel-major for images (`(N, C, H, W)`;
/// `(N, H, W)` is one channel), labels `(N,)` of integers in `0..classes`. Files are relative
/// to `data.root`. NumPy `.npy` files and `.safetensors` files are read in place (memory-mapped,
/// so a set larger than memory is never read whole); a `.npz` archive is read whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorsSpec {
    /// The training split.
    pub train: TensorFiles,
    /// The test split; or else `test_fraction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TensorFiles>,
    /// This fraction of the training files is the test split instead, the same examples for
    /// every job on those files (a permutation drawn from a fixed seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_fraction: Option<f64>,
    /// The number of classes; every label must lie in `0..classes`.
    pub classes: usize,
}

/// Where a split's inputs and labels are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum TensorFiles {
    /// Two `.npy` files.
    Npy { inputs: PathBuf, labels: PathBuf },
    /// One `.npz` or `.safetensors` file holding arrays named `inputs` and `labels`.
    File(PathBuf),
}

impl TensorFiles {
    /// The files, relative to `data.root`.
    pub fn paths(&self) -> Vec<&PathBuf> {
        match self {
            TensorFiles::Npy { inputs, labels } => vec![inputs, labels],
            TensorFiles::File(path) => vec![path],
        }
    }
}

fn default_crop_padding() -> usize {
    4
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dataset {
    FashionMnist,
    Mnist,
    Cifar10,
    Cifar100,
    TeacherStudent,
    /// The user's arrays (`data.tensors`).
    Tensors,
}

/// A random ReLU teacher network labels Gaussian inputs; students learn it. Fast and needs no
/// files, so most tests use it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherStudentSpec {
    pub train_examples: usize,
    pub test_examples: usize,
    pub input_dim: usize,
    pub classes: usize,
    pub teacher_hidden: usize,
}

/// The network. Every kind takes `init` (default `"he"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSpec {
    /// Fully connected ReLU network. NE paper's "F1" = `hidden = [500; 7]`.
    Mlp {
        hidden: Vec<usize>,
        #[serde(default, skip_serializing_if = "WeightInit::is_he")]
        init: WeightInit,
    },
    /// Small VGG-style CNN: stages of `convs_per_stage` 3x3 conv + BatchNorm + ReLU, then a 2x2
    /// max-pool; a linear classifier on the pooled features.
    Vgg {
        channels: Vec<usize>,
        #[serde(default = "default_convs_per_stage")]
        convs_per_stage: usize,
        #[serde(default, skip_serializing_if = "WeightInit::is_he")]
        init: WeightInit,
    },
    /// CIFAR ResNet of He et al. (2016): depth 6n+2 (20, 32, 44, 56, 110).
    Resnet {
        depth: usize,
        #[serde(default, skip_serializing_if = "WeightInit::is_he")]
        init: WeightInit,
    },
    /// The user's network, from an ONNX file (e.g. exported by `torch.onnx.export`), built
    /// from gnc's layers (`gnc_onnx`). `path` is relative to the working directory, as
    /// `data.root` is. `init = "file"` starts from the file's weights.
    Onnx {
        path: PathBuf,
        /// SHA-256 of the file, filled in when the spec is loaded ([`JobSpec::load`]) and
        /// checked at every later validation: the job's identity is the file's content (the
        /// spec hash holds it, not the path), and a file that changed is refused by name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        #[serde(default, skip_serializing_if = "WeightInit::is_he")]
        init: WeightInit,
    },
}

/// How the weights of linear and convolution layers are drawn: uniform on ±bound, with
/// bound = sqrt(6 / fan_in) (`he`, He et al. 2015, for ReLU layers; the default) or
/// sqrt(6 / (fan_in + fan_out)) (`glorot`, Glorot & Bengio 2010, as the noise-enhancement
/// paper initialises). Biases start at 0, BatchNorm at (1, 0), either way. Left out of the
/// canonical form when `he`, so specs written before it keep their hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightInit {
    #[default]
    He,
    Glorot,
    /// The values stored in the model file (`kind = "onnx"` only).
    File,
}

impl WeightInit {
    pub fn is_he(&self) -> bool {
        *self == WeightInit::He
    }
}

impl ModelSpec {
    pub fn init(&self) -> WeightInit {
        match self {
            ModelSpec::Mlp { init, .. }
            | ModelSpec::Vgg { init, .. }
            | ModelSpec::Resnet { init, .. }
            | ModelSpec::Onnx { init, .. } => *init,
        }
    }
}

fn default_convs_per_stage() -> usize {
    1
}

/// How the large batch is split over logical data-parallel workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParallelSpec {
    /// M: number of logical workers (GNC Table 3 "# of workers").
    pub workers: usize,
    /// b: each worker's small batch (GNC Table 3 "Small-batch size"); B = b * M.
    pub small_batch: usize,
    /// Compute threads in one process (each with one intra-op thread). They only change speed,
    /// never bits; `None` uses every core that gives a valid layout.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Worker processes ([`crate::Devices`]), e.g. `"cpu:N"`: N `gnc-worker` processes, each
    /// hosting a block of M / N logical workers (a subtree of the reduction tree) on one compute
    /// thread, reducing over shared memory. Changes speed, never bits, so it is left out of the spec hash. `None`
    /// (the default) trains in the `gncctl` process itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<String>,
    /// Train across the hosts of this Open MPI hostfile (`gncctl run`, through `mpirun`), with
    /// `devices` (`cpu:N`) processes on each host, or each host's slots. Changes speed, never
    /// bits, so it is left out of the spec hash, as `devices` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<PathBuf>,
}

/// The training method (GNC paper §2, NE paper §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MethodSpec {
    /// Plain data-parallel SGD: g~ = (1/M) sum_i g_i.
    Baseline,
    /// Gradient noise convolution, Algorithm 1 with filter-wise scaling (Eq. 6).
    /// `alpha` = α, the noise coefficient (GNC Table 5).
    Gnc { alpha: f64 },
    /// Random noise convolution, filter-wise normalised uniform noise (Eq. 5).
    Rnc { alpha: f64 },
    /// GNC until epoch `switch_epoch`, RNC from then on (GNC §A.4: switch at epoch 120 of 160).
    GncToRnc {
        alpha_gnc: f64,
        alpha_rnc: f64,
        switch_epoch: usize,
    },
    /// Noise enhancement: gradient α g_B + (1 - α) g_B' from two independent batches (NE Eq. 6).
    NoiseEnhancement { alpha: f64 },
}

impl MethodSpec {
    pub fn name(&self) -> &'static str {
        match self {
            MethodSpec::Baseline => "baseline",
            MethodSpec::Gnc { .. } => "gnc",
            MethodSpec::Rnc { .. } => "rnc",
            MethodSpec::GncToRnc { .. } => "gnc_to_rnc",
            MethodSpec::NoiseEnhancement { .. } => "noise_enhancement",
        }
    }
}

/// The optimiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    /// GNC §A.3 form: v_{t+1} = m v_t - η_t (g~ + λ x_t); x_{t+1} = x_t + v_{t+1}.
    /// `momentum` = m, `weight_decay` = λ.
    Momentum { momentum: f64, weight_decay: f64 },
    /// LARS (GNC §A.5, You et al.): per-tensor local rate η^(l) = γ_t τ ‖x‖ / (‖g‖ + λ‖x‖),
    /// then the momentum update with η^(l). `trust` = τ.
    Lars {
        momentum: f64,
        weight_decay: f64,
        trust: f64,
    },
    /// Adam (Kingma & Ba) with L2 weight decay added to the gradient; the NE paper's optimiser.
    Adam {
        #[serde(default = "default_beta1")]
        beta1: f64,
        #[serde(default = "default_beta2")]
        beta2: f64,
        #[serde(default = "default_adam_eps")]
        eps: f64,
        #[serde(default)]
        weight_decay: f64,
    },
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_adam_eps() -> f64 {
    1e-8
}

/// Learning-rate schedule (GNC Table 4, Fig. 6). Epoch fractions are iteration / iterations
/// per epoch, so every rule changes the rate per iteration, not per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Training length in epochs (GNC Table 3 "Epochs").
    pub epochs: usize,
    /// η after warmup (GNC Table 4 "Initial lr"); γ_initial for LARS.
    pub base_lr: f64,
    /// Linear gradual warmup length (GNC Table 4 "GW epochs"); 0 = none.
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Rate at iteration 0 of the warmup (GNC Table 4 "GW start lr").
    #[serde(default)]
    pub warmup_start_lr: f64,
    #[serde(default)]
    pub decay: Decay,
    /// The noise-enhancement paper's protocol (NE §3): halve the rate once the training loss
    /// falls below `halve_below` (L*), end the run once it falls below `stop_below` (L**; the
    /// iterations it took are the run's "convergence time"). Absent: the schedule alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_trigger: Option<LossTrigger>,
}

/// When the training loss halves the rate and ends the run. The training loss is the mean of
/// the iteration records' losses over the last `window` iterations: the same numbers in every
/// process, so every layout acts at the same iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossTrigger {
    pub halve_below: f64,
    pub stop_below: f64,
    #[serde(default = "default_loss_window")]
    pub window: usize,
}

fn default_loss_window() -> usize {
    100
}

/// What happens after warmup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decay {
    /// Constant base_lr.
    #[default]
    Constant,
    /// Multiply by `factor` at each epoch in `milestones` (GNC §A.4: ÷10 at epochs 80 and 120).
    Step { milestones: Vec<f64>, factor: f64 },
    /// γ_t = base_lr (1 - s)^power, s = progress through the post-warmup iterations
    /// (GNC §A.5: power 2), divided by `collapse_divisor` from epoch `collapse_epoch` on
    /// ("final collapse", ÷5 after epoch 80).
    Polynomial {
        power: f64,
        #[serde(default)]
        collapse_epoch: Option<f64>,
        #[serde(default = "default_collapse_divisor")]
        collapse_divisor: f64,
    },
}

fn default_collapse_divisor() -> f64 {
    1.0
}

/// When and how the model is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    /// Evaluate every this many epochs (and always at the end); 0 = only at the end.
    #[serde(default = "default_eval_every")]
    pub every_epochs: usize,
    /// Training-set loss/accuracy is measured on the first N training examples.
    #[serde(default = "default_train_eval_examples")]
    pub train_examples: usize,
}

fn default_eval_every() -> usize {
    1
}
fn default_train_eval_examples() -> usize {
    10_000
}

impl Default for EvalSpec {
    fn default() -> Self {
        EvalSpec {
            every_epochs: default_eval_every(),
            train_examples: default_train_eval_examples(),
        }
    }
}

/// What `[diagnostics]` measures and how often (GNC §3, Fig. 3–5, §A.6). Each is measured at
/// the start of iteration t (before its update), where t is a multiple of `every_iterations`,
/// and written as a `diagnostics` record to `metrics.jsonl`. Costs about `smoothness_steps` + 2
/// iterations per measurement, plus M forward passes over `perturbed_examples`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosticsSpec {
    pub every_iterations: u64,
    /// The full gradient (GNC Fig. 3b–c) is taken over the first N training examples.
    #[serde(default = "default_full_gradient_examples")]
    pub examples: usize,
    /// The perturbed models' losses (Fig. 4b–c) are taken over the first N training examples.
    #[serde(default = "default_perturbed_examples")]
    pub perturbed_examples: usize,
    /// Steps along the gradient for the smoothness indicators (§A.6: eight, of lengths evenly
    /// spaced in [1/2, 2] × η).
    #[serde(default = "default_smoothness_steps")]
    pub smoothness_steps: usize,
}

fn default_full_gradient_examples() -> usize {
    10_000
}
fn default_perturbed_examples() -> usize {
    512
}
fn default_smoothness_steps() -> usize {
    8
}

/// Checkpoint cadence and retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Write a checkpoint every this many iterations (and always at the end); 0 = only at the end.
    #[serde(default = "default_ckpt_every")]
    pub every_iterations: u64,
    /// How many checkpoints to keep (the newest).
    #[serde(default = "default_ckpt_keep")]
    pub keep: usize,
}

fn default_ckpt_every() -> u64 {
    200
}
fn default_ckpt_keep() -> usize {
    2
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        CheckpointSpec {
            every_iterations: default_ckpt_every(),
            keep: default_ckpt_keep(),
        }
    }
}

impl JobSpec {
    /// Parses a spec from TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<JobSpec, SpecError> {
        let spec: JobSpec = toml::from_str(text).map_err(|e| SpecError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        Ok(spec)
    }

    /// The canonical serialisation whose hash identifies the job in checkpoints: two specs
    /// that train identically have the same hash whatever their TOML formatting.
    pub fn canonical_json(&self) -> String {
        // Where and on how many threads the workers run never changes a bit, so a checkpoint
        // written with one device list or thread count resumes with another.
        let mut spec = self.clone();
        spec.parallel.devices = None;
        spec.parallel.threads = None;
        spec.parallel.hosts = None;
        // Diagnostics measure copies of the state and never change a bit either.
        spec.diagnostics = None;
        // A model file is its content: the same file elsewhere is the same job.
        if let ModelSpec::Onnx {
            path,
            sha256: Some(_),
            ..
        } = &mut spec.model
        {
            *path = PathBuf::new();
        }
        serde_json::to_string(&spec).expect("a JobSpec always serialises")
    }

    /// The spec's `parallel.devices`, parsed (validated by [`JobSpec::validated`]).
    pub fn devices(&self) -> Result<Option<Devices>, SpecError> {
        self.parallel
            .devices
            .as_deref()
            .map(|text| {
                text.parse().map_err(|message| SpecError::Invalid {
                    key: "parallel.devices".into(),
                    message,
                })
            })
            .transpose()
    }

    /// SHA-256 of [`JobSpec::canonical_json`], hex.
    pub fn spec_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// B = b * M, the large batch.
    pub fn large_batch(&self) -> usize {
        self.parallel.workers * self.parallel.small_batch
    }
}

/// A tiny valid job (synthetic data, 1 epoch) for unit tests; `[schedule]` is its last table,
/// so a test can append schedule keys.
#[cfg(test)]
pub(crate) const TINY_SPEC: &str = r#"
name = "h"
seed = 1
output_dir = "out"
[data]
dataset = "teacher-student"
teacher_student = { train_examples = 64, test_examples = 8, input_dim = 4, classes = 2, teacher_hidden = 4 }
[model]
kind = "mlp"
hidden = [4]
[parallel]
workers = 4
small_batch = 2
[method]
kind = "gnc"
alpha = 0.1
[optimizer]
kind = "momentum"
momentum = 0.9
weight_decay = 0.0
[schedule]
epochs = 1
base_lr = 0.1
"#;

#[cfg(test)]
mod hash_tests {
    use super::JobSpec;
    use super::TINY_SPEC as SPEC;

    #[test]
    fn spec_hash_ignores_formatting_threads_devices_and_hosts_but_not_the_math() {
        let base = JobSpec::from_toml(SPEC, "t").unwrap();
        let reformatted = JobSpec::from_toml(&SPEC.replace("alpha = 0.1", "alpha   =   0.10"), "t");
        assert_eq!(base.spec_hash(), reformatted.unwrap().spec_hash());
        let placed = SPEC.replace(
            "small_batch = 2",
            "small_batch = 2\nthreads = 2\ndevices = \"cpu:2\"\nhosts = \"cluster.hosts\"",
        );
        assert_eq!(
            base.spec_hash(),
            JobSpec::from_toml(&placed, "t").unwrap().spec_hash()
        );
        let other = JobSpec::from_toml(&SPEC.replace("alpha = 0.1", "alpha = 0.2"), "t").unwrap();
        assert_ne!(base.spec_hash(), other.spec_hash());
    }

    #[test]
    fn a_loss_trigger_is_part_of_the_job_and_its_levels_are_checked() {
        let with = |trigger: &str| {
            JobSpec::from_toml(
                &SPEC.replace(
                    "base_lr = 0.1",
                    &format!("base_lr = 0.1\nloss_trigger = {trigger}"),
                ),
                "t",
            )
            .unwrap()
        };
        let base = JobSpec::from_toml(SPEC, "t").unwrap();
        assert!(!base.canonical_json().contains("loss_trigger"));
        let trigger = with("{ halve_below = 0.01, stop_below = 0.001 }");
        assert_eq!(trigger.schedule.loss_trigger.as_ref().unwrap().window, 100);
        assert_ne!(trigger.spec_hash(), base.spec_hash());
        let message = with("{ halve_below = 0.001, stop_below = 0.01 }")
            .validated()
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("schedule.loss_trigger.stop_below"),
            "{message}"
        );
        let message = with("{ halve_below = 0.01, stop_below = 0.001, window = 0 }")
            .validated()
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("schedule.loss_trigger.window"),
            "{message}"
        );
    }

    #[test]
    fn he_init_is_the_default_and_keeps_old_hashes_glorot_changes_the_job() {
        let base = JobSpec::from_toml(SPEC, "t").unwrap();
        let with = |init: &str| {
            JobSpec::from_toml(
                &SPEC.replace("hidden = [4]", &format!("hidden = [4]\ninit = \"{init}\"")),
                "t",
            )
        };
        let he = with("he").unwrap();
        assert_eq!(he.spec_hash(), base.spec_hash());
        assert!(!he.canonical_json().contains("init"));
        let glorot = with("glorot").unwrap();
        assert_eq!(glorot.model.init(), super::WeightInit::Glorot);
        assert_ne!(glorot.spec_hash(), base.spec_hash());
        let message = with("lecun").unwrap_err().to_string();
        assert!(
            message.contains("lecun") && message.contains("glorot"),
            "{message}"
        );
    }

    #[test]
    fn the_reproducibility_level_is_in_the_hash_unless_it_is_the_default() {
        let base = JobSpec::from_toml(SPEC, "t").unwrap();
        assert!(!base.canonical_json().contains("reproducibility"));
        let level =
            |l: &str| JobSpec::from_toml(&format!("reproducibility = \"{l}\"\n{SPEC}"), "t");
        assert_eq!(base.spec_hash(), level("portable").unwrap().spec_hash());
        assert_ne!(base.spec_hash(), level("native").unwrap().spec_hash());
        let e = level("fast").unwrap_err().to_string();
        assert!(e.contains("reproducibility") && e.contains("fast"), "{e}");
    }

    #[test]
    fn diagnostics_are_outside_the_hash_and_their_settings_are_checked() {
        let base = JobSpec::from_toml(SPEC, "t").unwrap();
        let with = |body: &str| {
            JobSpec::from_toml(&format!("{SPEC}[diagnostics]\n{body}\n"), "t")
                .and_then(|s| s.validated().map(|v| v.into_inner()))
        };
        let measured = with("every_iterations = 10").unwrap();
        let d = measured.diagnostics.as_ref().unwrap();
        assert_eq!(
            (d.examples, d.perturbed_examples, d.smoothness_steps),
            (10_000, 512, 8)
        );
        assert_eq!(measured.spec_hash(), base.spec_hash());
        for (body, key) in [
            ("every_iterations = 0", "diagnostics.every_iterations"),
            ("every_iterations = 1\nexamples = 0", "diagnostics.examples"),
            (
                "every_iterations = 1\nsmoothness_steps = 1",
                "diagnostics.smoothness_steps",
            ),
            (
                "every_iterations = 1\nperturbed_examples = 0",
                "diagnostics.perturbed_examples",
            ),
            ("every_iterations = 1\nsharpness = true", "sharpness"),
        ] {
            let e = with(body).unwrap_err().to_string();
            assert!(e.contains(key), "{body}: {e}");
        }
    }
}
