//! `gncctl doctor [RUN_DIR]`: this machine's reproducibility key and its kernel fingerprint
//! under a level's pins, whether it computes the portable level as the reference machines do,
//! and, given a recorded run, whether it can reproduce that run.

use gnc_proto::JobSpec;
use gnc_proto::repro::{Key, Level};
use gnc_worker::RunSummary;
use gnc_worker::kernels::fingerprint::{PORTABLE_REFERENCE, compute, differences};

use gnc_ctl::cmd::doctor::Args;
use gnc_ctl::exit::Negative;

use crate::verify::recorded::read_json;

/// What a run directory says about the conditions it ran under.
struct Record {
    level: Level,
    key: Option<Key>,
}

fn read_record(dir: &std::path::Path) -> anyhow::Result<Record> {
    let spec: JobSpec = read_json(&dir.join("spec.json"), "the run's job spec")?;
    let result: RunSummary = read_json(&dir.join("result.json"), "the run's summary")?;
    Ok(Record {
        level: spec.reproducibility,
        key: result.reproducibility,
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let record = args.run_dir.as_deref().map(read_record).transpose()?;
    let level = args
        .level
        .or(record.as_ref().map(|r| r.level))
        .unwrap_or_default();
    gnc_worker::pin::pin_process_environment(level).map_err(anyhow::Error::msg)?;
    let key = gnc_worker::pin::key();
    let fingerprint = compute(level);
    // Only the portable level has a reference: native bits belong to one CPU model.
    let kernel_differences = match level {
        Level::Portable => differences(&fingerprint, PORTABLE_REFERENCE),
        Level::Native => Vec::new(),
    };
    let machine_verdict = match (level, kernel_differences.is_empty()) {
        (Level::Portable, true) => {
            "every kernel of the portable level computes as on the reference machines: \
             portable runs reproduce here"
                .to_string()
        }
        (Level::Portable, false) => format!(
            "this machine computes {} kernel(s) of the portable level differently from the \
             reference machines; portable runs will not reproduce here",
            kernel_differences.len()
        ),
        (Level::Native, _) => format!(
            "native runs reproduce on machines of this CPU model ({}) with the same libraries",
            key.cpu.describe()
        ),
    };
    let run_verdict = record
        .as_ref()
        .map(|r| run_verdict(r, &key, &kernel_differences));
    if args.json {
        let report = serde_json::json!({
            "key": key,
            "fingerprint": fingerprint
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect::<serde_json::Map<_, _>>(),
            "kernel_differences": kernel_differences,
            "machine": machine_verdict,
            "run": run_verdict.as_ref().map(|v| serde_json::json!({
                "reproducible": v.is_ok(),
                "message": match v { Ok(m) | Err(m) => m },
            })),
        });
        println!("{report}");
    } else {
        print_report(&key, &fingerprint, &kernel_differences, &machine_verdict);
        if let Some(Ok(message) | Err(message)) = &run_verdict {
            println!("run          {message}");
        }
    }
    if !kernel_differences.is_empty() {
        return Err(Negative(format!(
            "{machine_verdict}:\n{}",
            kernel_differences.join("\n")
        ))
        .into());
    }
    match run_verdict {
        Some(Err(message)) => Err(Negative(message).into()),
        _ => Ok(()),
    }
}

/// Whether the recorded run can be reproduced here, and why not.
fn run_verdict(record: &Record, here: &Key, kernels: &[String]) -> Result<String, String> {
    let Some(recorded) = &record.key else {
        return Err(
            "the run records no reproducibility key (written by an earlier gnc): nothing can \
             be said before re-running it (gncctl verify)"
                .into(),
        );
    };
    let mut reasons = recorded.differences(here);
    if !kernels.is_empty() {
        reasons.push("this machine's portable kernels differ from the reference".into());
    }
    if reasons.is_empty() {
        Ok(format!(
            "can be reproduced here: recorded at the {} level, and nothing its bits depend on \
             differs (gncctl verify re-runs it)",
            recorded.level
        ))
    } else {
        Err(format!(
            "cannot be expected to reproduce here: {}",
            reasons.join("; ")
        ))
    }
}

fn print_report(key: &Key, fingerprint: &[(String, Vec<String>)], diff: &[String], verdict: &str) {
    println!("level        {}", key.level);
    println!(
        "cpu          {}; widest ISA {}",
        key.cpu.describe(),
        key.cpu.isa
    );
    println!("kernels at   {}", key.isa);
    println!(
        "libraries    libtorch {}, MKL {}, oneDNN {}",
        key.libtorch, key.mkl, key.onednn
    );
    println!("gnc          {} ({})", key.gnc, key.gnc_commit);
    println!("fingerprint");
    for (name, hashes) in fingerprint {
        let mark = if diff.iter().any(|d| d.starts_with(&format!("{name}:"))) {
            "  DIFFERS"
        } else {
            ""
        };
        println!("  {name:38} {}{mark}", hashes.join(" "));
    }
    println!("machine      {verdict}");
}
