//! The supervisor plans a run from the data files' headers (`RunPlan::read`, no example loaded,
//! no tensor made); the workers fill the bundle the trainer plans from the examples it loaded.
//! The two must agree exactly — shapes, counts, iterations — for every data set and model, or
//! the shared-memory segments would be sized for another bundle.

use std::path::PathBuf;

use gnc_contract::plan::RunPlan;
use gnc_proto::{JobSpec, ValidSpec};
use gnc_worker::engine::Trainer;

fn data_root(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
}

fn spec(data: &str, model: &str, epochs: usize) -> ValidSpec {
    let text = format!(
        r#"
name = "plan"
seed = 3
output_dir = "unused"
[data]
{data}
[model]
{model}
[parallel]
workers = 8
small_batch = 16
[method]
kind = "gnc"
alpha = 0.1
[optimizer]
kind = "momentum"
momentum = 0.9
weight_decay = 0.0
[schedule]
epochs = {epochs}
base_lr = 0.1
"#
    );
    JobSpec::from_toml(&text, "plan")
        .unwrap()
        .validated()
        .unwrap()
}

fn idx(dataset: &str, subset: &str) -> String {
    format!(
        "dataset = \"{dataset}\"\nroot = \"{}\"\n{subset}",
        data_root(dataset).display()
    )
}

#[test]
fn the_plan_from_file_headers_is_the_plan_of_the_loaded_data() {
    let teacher = "dataset = \"teacher-student\"\nteacher_student = { train_examples = 300, \
                   test_examples = 40, input_dim = 6, classes = 4, teacher_hidden = 5 }";
    let cases = [
        (teacher.to_string(), "kind = \"mlp\"\nhidden = [7, 5]", 2),
        (
            idx("fashion-mnist", "train_subset = 1000\ntest_subset = 100"),
            "kind = \"mlp\"\nhidden = [32]",
            3,
        ),
        (
            idx("fashion-mnist", "test_subset = 10"),
            "kind = \"vgg\"\nchannels = [4, 8]\nconvs_per_stage = 1",
            1,
        ),
        (
            idx("mnist", "train_subset = 512"),
            "kind = \"resnet\"\ndepth = 8",
            4,
        ),
    ];
    for (data, model, epochs) in cases {
        let spec = spec(&data, model, epochs);
        let from_headers = RunPlan::read(&spec).unwrap();
        let trainer = Trainer::new(&spec, 1).unwrap();
        assert_eq!(&from_headers, trainer.plan(), "{data} / {model}");
        assert_eq!(
            from_headers.architecture.bundle_shapes(),
            trainer.bundle_shapes()
        );
        assert_eq!(
            from_headers.total_iterations,
            trainer.schedule().total_iterations()
        );
    }
    // The full training split's size comes from the header: 60,000 / (8 · 16).
    let full = spec(&idx("fashion-mnist", ""), "kind = \"mlp\"\nhidden = [4]", 1);
    assert_eq!(RunPlan::read(&full).unwrap().iterations_per_epoch, 468);
}

#[test]
fn a_subset_beyond_the_split_is_refused_by_the_plan_as_by_the_loader() {
    let spec = spec(
        &idx("fashion-mnist", "test_subset = 10001"),
        "kind = \"mlp\"\nhidden = [4]",
        1,
    );
    let planned = RunPlan::read(&spec).unwrap_err().to_string();
    let loaded = Trainer::new(&spec, 1).err().unwrap().to_string();
    assert_eq!(planned, loaded);
    assert!(
        planned.contains("data.test_subset = 10001 exceeds the 10000 examples"),
        "{planned}"
    );
}
