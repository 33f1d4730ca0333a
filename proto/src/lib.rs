//! Types shared by every gnc process: the job spec (TOML), metric records (JSON lines), the
//! names of data-set files, and the `gncctl` ↔ `gncd` socket protocol with its client. No
//! torch; only safe Rust (the workspace lints).

pub mod client;
pub mod devices;
pub mod framing;
mod metrics;
mod model_file;
pub mod repro;
pub mod socket;
mod spec;
mod valid_spec;
mod validate;

use std::path::PathBuf;

pub use devices::{Device, Devices};
pub use metrics::{
    AnalysisLine, DiagnosticsRecord, EvalRecord, FinalRecord, IterRecord, LayerAnisotropy,
    LinePoint, LossSpread, MetricRecord, NoiseAnisotropy, PerturbedLosses, Smoothness,
};
pub use spec::{
    CheckpointSpec, DataSpec, Dataset, Decay, DiagnosticsSpec, EvalSpec, JobSpec, LossTrigger,
    MethodSpec, ModelSpec, OptimizerSpec, ParallelSpec, ScheduleSpec, TeacherStudentSpec,
    TensorFiles, TensorsSpec, WeightInit,
};
pub use valid_spec::ValidSpec;

/// Why a job spec was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read job spec {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("job spec {origin} is not valid: {message}")]
    Parse { origin: String, message: String },
    #[error("job spec key `{key}` {message}")]
    Invalid { key: String, message: String },
}

/// The files a data set needs under its `data.root`, in the standard names (each may also be
/// gzip-compressed with a `.gz` suffix).
pub fn dataset_files(dataset: Dataset) -> &'static [&'static str] {
    match dataset {
        Dataset::FashionMnist | Dataset::Mnist => &[
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ],
        Dataset::Cifar10 => &[
            "data_batch_1.bin",
            "data_batch_2.bin",
            "data_batch_3.bin",
            "data_batch_4.bin",
            "data_batch_5.bin",
            "test_batch.bin",
        ],
        Dataset::Cifar100 => &["train.bin", "test.bin"],
        // Named by the spec (`data.tensors`), checked by validation.
        Dataset::TeacherStudent | Dataset::Tensors => &[],
    }
}
