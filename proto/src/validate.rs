//! Checks that a parsed spec can be trained, before any work starts. Each rule names the key
//! it is about, so the user knows which line of `job.toml` to fix.

use crate::SpecError;
use crate::spec::{Dataset, Decay, JobSpec, MethodSpec, ModelSpec, OptimizerSpec};

fn bad(key: &str, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

fn non_negative(key: &str, value: f64) -> Result<(), SpecError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(bad(
            key,
            format!("must be a finite number >= 0, got {value}"),
        ))
    }
}

fn positive(key: &str, value: f64) -> Result<(), SpecError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(bad(
            key,
            format!("must be a finite number > 0, got {value}"),
        ))
    }
}

pub(crate) fn validate(spec: &JobSpec) -> Result<(), SpecError> {
    validate_name(&spec.name)?;
    validate_data(spec)?;
    validate_model(&spec.model)?;
    validate_parallel(spec)?;
    validate_method(spec)?;
    validate_optimizer(&spec.optimizer)?;
    validate_schedule(spec)?;
    validate_diagnostics(spec)?;
    if spec.checkpoint.keep == 0 {
        return Err(bad("checkpoint.keep", "must keep at least 1 checkpoint"));
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "name",
            format!("{name:?} must be 1 to 64 characters of [A-Za-z0-9_-]"),
        ))
    }
}

fn validate_data(spec: &JobSpec) -> Result<(), SpecError> {
    let data = &spec.data;
    if data.train_subset == Some(0) {
        return Err(bad("data.train_subset", "must be at least 1"));
    }
    if data.test_subset == Some(0) {
        return Err(bad("data.test_subset", "must be at least 1"));
    }
    if data.dataset == Dataset::TeacherStudent {
        let ts = data.teacher_student.as_ref().ok_or_else(|| {
            bad(
                "data.teacher_student",
                "is required when data.dataset = \"teacher-student\"",
            )
        })?;
        for (key, value) in [
            ("data.teacher_student.train_examples", ts.train_examples),
            ("data.teacher_student.test_examples", ts.test_examples),
            ("data.teacher_student.input_dim", ts.input_dim),
            ("data.teacher_student.teacher_hidden", ts.teacher_hidden),
        ] {
            if value == 0 {
                return Err(bad(key, "must be at least 1"));
            }
        }
        if ts.classes < 2 {
            return Err(bad("data.teacher_student.classes", "must be at least 2"));
        }
        return Ok(());
    }
    if data.dataset == Dataset::Tensors {
        return validate_tensors(data);
    } else if data.tensors.is_some() {
        return Err(bad(
            "data.tensors",
            "applies to data.dataset = \"tensors\" only",
        ));
    }
    let root = data.root.as_ref().ok_or_else(|| {
        bad(
            "data.root",
            format!("is required for data.dataset = {:?}", data.dataset),
        )
    })?;
    for file in crate::dataset_files(data.dataset) {
        let candidates = [root.join(file), root.join(format!("{file}.gz"))];
        if !candidates.iter().any(|p| p.is_file()) {
            return Err(bad(
                "data.root",
                format!(
                    "missing data file {} (run `make data` to fetch the data sets)",
                    candidates[0].display()
                ),
            ));
        }
    }
    if data.augment && data.crop_padding > 16 {
        return Err(bad("data.crop_padding", "must be at most 16 pixels"));
    }
    Ok(())
}

fn validate_tensors(data: &crate::DataSpec) -> Result<(), SpecError> {
    let t = data.tensors.as_ref().ok_or_else(|| {
        bad(
            "data.tensors",
            "is required when data.dataset = \"tensors\" (train, test or test_fraction, classes)",
        )
    })?;
    let root = data
        .root
        .as_ref()
        .ok_or_else(|| bad("data.root", "is required for data.dataset = \"tensors\""))?;
    if t.classes < 2 {
        return Err(bad("data.tensors.classes", "must be at least 2"));
    }
    match (&t.test, t.test_fraction) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(bad(
                "data.tensors",
                "needs exactly one of `test` (the test split's files) and `test_fraction`",
            ));
        }
        (None, Some(f)) if !(f > 0.0 && f < 1.0) => {
            return Err(bad(
                "data.tensors.test_fraction",
                "must lie strictly between 0 and 1",
            ));
        }
        _ => {}
    }
    for (key, files) in [
        ("data.tensors.train", Some(&t.train)),
        ("data.tensors.test", t.test.as_ref()),
    ] {
        for path in files.into_iter().flat_map(|f| f.paths()) {
            // Under data.root, so gncd's allowed roots, which it checks data.root against,
            // cover them.
            let inside = path
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !inside {
                return Err(bad(
                    key,
                    format!(
                        "names {}, which is not a path inside data.root",
                        path.display()
                    ),
                ));
            }
            let full = root.join(path);
            if !full.is_file() {
                return Err(bad(
                    key,
                    format!("names {}, which is not a file", full.display()),
                ));
            }
        }
    }
    if data.augment && data.crop_padding > 16 {
        return Err(bad("data.crop_padding", "must be at most 16 pixels"));
    }
    Ok(())
}

fn validate_model(model: &ModelSpec) -> Result<(), SpecError> {
    if model.init() == crate::WeightInit::File && !matches!(model, ModelSpec::Onnx { .. }) {
        return Err(bad(
            "model.init",
            "\"file\" needs a model file (kind = \"onnx\")",
        ));
    }
    match model {
        ModelSpec::Onnx { .. } => crate::model_file::check(model)?,
        ModelSpec::Mlp { hidden, .. } => {
            if hidden.contains(&0) {
                return Err(bad("model.hidden", "every hidden width must be >= 1"));
            }
        }
        ModelSpec::Vgg {
            channels,
            convs_per_stage,
            ..
        } => {
            if channels.is_empty() || channels.contains(&0) {
                return Err(bad(
                    "model.channels",
                    "needs at least one stage, each with >= 1 channel",
                ));
            }
            if *convs_per_stage == 0 {
                return Err(bad("model.convs_per_stage", "must be at least 1"));
            }
        }
        ModelSpec::Resnet { depth, .. } => {
            if *depth < 8 || (depth - 2) % 6 != 0 {
                return Err(bad(
                    "model.depth",
                    format!("must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), got {depth}"),
                ));
            }
        }
    }
    Ok(())
}

fn validate_parallel(spec: &JobSpec) -> Result<(), SpecError> {
    let p = &spec.parallel;
    if p.workers == 0 {
        return Err(bad("parallel.workers", "M must be at least 1"));
    }
    if p.small_batch == 0 {
        return Err(bad("parallel.small_batch", "b must be at least 1"));
    }
    if p.threads == Some(0) {
        return Err(bad("parallel.threads", "must be at least 1"));
    }
    if let Some(n) = spec.devices()?.and_then(|d| d.processes())
        && n > p.workers
    {
        return Err(bad(
            "parallel.devices",
            format!(
                "asks for {n} worker processes, more than the M = {} logical workers",
                p.workers
            ),
        ));
    }
    if let Some(n) = spec.data.train_subset
        && spec.large_batch() > n
    {
        return Err(bad(
            "parallel.small_batch",
            format!(
                "the large batch B = b * M = {} * {} = {} exceeds the {} training examples \
                     of data.train_subset",
                p.small_batch,
                p.workers,
                spec.large_batch(),
                n
            ),
        ));
    }
    if let Some(ts) = &spec.data.teacher_student
        && spec.large_batch() > ts.train_examples
    {
        return Err(bad(
            "parallel.small_batch",
            format!(
                "the large batch B = b * M = {} exceeds the {} training examples",
                spec.large_batch(),
                ts.train_examples
            ),
        ));
    }
    Ok(())
}

fn validate_method(spec: &JobSpec) -> Result<(), SpecError> {
    match &spec.method {
        MethodSpec::Baseline => Ok(()),
        MethodSpec::Gnc { alpha } | MethodSpec::Rnc { alpha } => {
            non_negative("method.alpha", *alpha)
        }
        MethodSpec::GncToRnc {
            alpha_gnc,
            alpha_rnc,
            switch_epoch,
        } => {
            non_negative("method.alpha_gnc", *alpha_gnc)?;
            non_negative("method.alpha_rnc", *alpha_rnc)?;
            if *switch_epoch > spec.schedule.epochs {
                return Err(bad(
                    "method.switch_epoch",
                    format!(
                        "epoch {switch_epoch} is after the end of training (schedule.epochs = {})",
                        spec.schedule.epochs
                    ),
                ));
            }
            Ok(())
        }
        MethodSpec::NoiseEnhancement { alpha } => {
            if !(alpha.is_finite() && *alpha >= 1.0) {
                return Err(bad(
                    "method.alpha",
                    format!("noise enhancement needs alpha >= 1 (1 = plain SGD), got {alpha}"),
                ));
            }
            Ok(())
        }
    }
}

fn validate_optimizer(opt: &OptimizerSpec) -> Result<(), SpecError> {
    match opt {
        OptimizerSpec::Momentum {
            momentum,
            weight_decay,
        } => {
            momentum_range("optimizer.momentum", *momentum)?;
            non_negative("optimizer.weight_decay", *weight_decay)
        }
        OptimizerSpec::Lars {
            momentum,
            weight_decay,
            trust,
        } => {
            momentum_range("optimizer.momentum", *momentum)?;
            non_negative("optimizer.weight_decay", *weight_decay)?;
            positive("optimizer.trust", *trust)
        }
        OptimizerSpec::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            momentum_range("optimizer.beta1", *beta1)?;
            momentum_range("optimizer.beta2", *beta2)?;
            positive("optimizer.eps", *eps)?;
            non_negative("optimizer.weight_decay", *weight_decay)
        }
    }
}

fn momentum_range(key: &str, value: f64) -> Result<(), SpecError> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(bad(key, format!("must be in [0, 1), got {value}")))
    }
}

fn validate_diagnostics(spec: &JobSpec) -> Result<(), SpecError> {
    let Some(d) = &spec.diagnostics else {
        return Ok(());
    };
    if d.every_iterations == 0 {
        return Err(bad("diagnostics.every_iterations", "must be at least 1"));
    }
    if d.examples == 0 {
        return Err(bad("diagnostics.examples", "must be at least 1"));
    }
    if d.perturbed_examples == 0 {
        return Err(bad("diagnostics.perturbed_examples", "must be at least 1"));
    }
    if d.smoothness_steps < 2 {
        return Err(bad(
            "diagnostics.smoothness_steps",
            format!(
                "must be at least 2 (a range of steps), got {}",
                d.smoothness_steps
            ),
        ));
    }
    Ok(())
}

fn validate_schedule(spec: &JobSpec) -> Result<(), SpecError> {
    let s = &spec.schedule;
    if s.epochs == 0 {
        return Err(bad("schedule.epochs", "must be at least 1"));
    }
    positive("schedule.base_lr", s.base_lr)?;
    non_negative("schedule.warmup_epochs", s.warmup_epochs)?;
    non_negative("schedule.warmup_start_lr", s.warmup_start_lr)?;
    if s.warmup_epochs > s.epochs as f64 {
        return Err(bad(
            "schedule.warmup_epochs",
            "warmup is longer than the whole training",
        ));
    }
    if let Some(t) = &s.loss_trigger {
        positive("schedule.loss_trigger.halve_below", t.halve_below)?;
        positive("schedule.loss_trigger.stop_below", t.stop_below)?;
        if t.stop_below > t.halve_below {
            return Err(bad(
                "schedule.loss_trigger.stop_below",
                format!(
                    "{} is above halve_below = {}: the run would stop before the rate is halved",
                    t.stop_below, t.halve_below
                ),
            ));
        }
        if t.window == 0 {
            return Err(bad("schedule.loss_trigger.window", "must be at least 1"));
        }
    }
    match &s.decay {
        Decay::Constant => {}
        Decay::Step { milestones, factor } => {
            positive("schedule.decay.factor", *factor)?;
            for m in milestones {
                non_negative("schedule.decay.milestones", *m)?;
            }
            if milestones.windows(2).any(|w| w[0] > w[1]) {
                return Err(bad(
                    "schedule.decay.milestones",
                    "must be in increasing order",
                ));
            }
            if let Some(m) = milestones.iter().find(|&&m| m >= s.epochs as f64) {
                return Err(bad(
                    "schedule.decay.milestones",
                    format!(
                        "milestone {m} is not before the end of training ({} epochs): the \
                         decay would never happen",
                        s.epochs
                    ),
                ));
            }
        }
        Decay::Polynomial {
            power,
            collapse_epoch,
            collapse_divisor,
        } => {
            non_negative("schedule.decay.power", *power)?;
            positive("schedule.decay.collapse_divisor", *collapse_divisor)?;
            if let Some(e) = collapse_epoch {
                non_negative("schedule.decay.collapse_epoch", *e)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::JobSpec;

    /// The tiny test job trained for 10 epochs with this decay.
    fn spec(decay: &str) -> JobSpec {
        let text = crate::spec::TINY_SPEC.replace("epochs = 1\n", "epochs = 10\n");
        JobSpec::from_toml(&format!("{text}decay = {decay}\n"), "t").unwrap()
    }

    #[test]
    fn a_decay_milestone_at_or_after_the_last_epoch_is_refused() {
        assert!(
            spec(r#"{ kind = "step", milestones = [6, 9.5], factor = 0.1 }"#)
                .validated()
                .is_ok()
        );
        for late in ["[6, 10]", "[12]"] {
            let e = spec(&format!(
                r#"{{ kind = "step", milestones = {late}, factor = 0.1 }}"#
            ))
            .validated()
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("schedule.decay.milestones") && e.contains("never happen"),
                "{e}"
            );
        }
    }
}
