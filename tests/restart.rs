//! Crashes and restarts of multi-process runs: a worker SIGKILLed at five different points,
//! a hung worker, a run that exhausts its restarts, checkpoints resumed with another process
//! count, and a SIGKILLed supervisor. Faults are injected with the worker's documented test
//! hooks (`GNC_TEST_KILL_AT`, `GNC_TEST_HANG_AT`, generation 0 only), never by timing.

#[path = "mp_support.rs"]
mod mp_support;

use std::path::Path;
use std::time::{Duration, Instant};

use mp_support::*;

fn gnc_spec(dir: &Path, name: &str) -> std::path::PathBuf {
    let (_, table) = gnc_tests::METHODS[1];
    gnc_tests::write_spec(dir, name, &job(name, table, 16, ""))
}

#[test]
fn worker_killed_at_five_points_restarts_to_the_same_bits() {
    let _serial = serial();
    let name = "rs_kill";
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_spec(dir.path(), name);
    let (expected_hash, expected_records) = reference(dir.path(), &spec);
    // process:iteration[:part]. 24 iterations, checkpoints every 4: before the first
    // checkpoint, at a checkpoint boundary, mid-interval, between a part and the manifest
    // (process 3's part, process 0's manifest), and in the final checkpoint.
    for point in ["1:3", "0:8", "2:13", "3:16:part", "0:24:part"] {
        let out = dir.path().join(point.replace(':', "_"));
        let output = run(
            &spec,
            &out,
            &["--devices", "cpu:4"],
            &[("GNC_TEST_KILL_AT", point)],
        );
        let s = summary(&output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("was killed by SIGKILL") && stderr.contains("restart 1 of 3"),
            "{point}: exactly one restart expected: {stderr}"
        );
        assert!(!stderr.contains("restart 2 of"), "{point}: {stderr}");
        assert_eq!(
            hash(&s),
            expected_hash,
            "final hash after a kill at {point}"
        );
        assert_eq!(
            records(&out),
            expected_records,
            "metrics after a kill at {point}"
        );
        assert_no_segments(name);
    }
}

#[test]
fn hung_worker_is_treated_as_dead_and_restarted() {
    let _serial = serial();
    let name = "rs_hang";
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_spec(dir.path(), name);
    let (expected_hash, _) = reference(dir.path(), &spec);
    let out = dir.path().join("out");
    let output = run(
        &spec,
        &out,
        &["--devices", "cpu:4", "--hang-timeout", "5"],
        &[("GNC_TEST_HANG_AT", "2:6")],
    );
    let s = summary(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("worker 2 (pid") && stderr.contains("made no progress"),
        "the hung worker is named: {stderr}"
    );
    assert_eq!(hash(&s), expected_hash);
    assert_no_segments(name);
}

#[test]
fn restarts_beyond_the_limit_fail_naming_worker_signal_and_iteration() {
    let _serial = serial();
    let name = "rs_limit";
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_spec(dir.path(), name);
    let output = run(
        &spec,
        &dir.path().join("out"),
        &["--devices", "cpu:2", "--max-restarts", "0"],
        &[("GNC_TEST_KILL_AT", "1:5")],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "worker 1 (pid",
        "killed by SIGKILL",
        "in iteration 5",
        "giving up after 0 restart(s)",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing: {stderr}");
    }
    assert_no_segments(name);
}

#[test]
fn checkpoints_resume_with_any_process_count() {
    let _serial = serial();
    let name = "rs_resume";
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_spec(dir.path(), name);
    let (expected_hash, expected_records) = reference(dir.path(), &spec);
    // 4 processes write iteration 8, 2 processes continue to 16, in-process finishes; and
    // the reverse direction: in-process to 12, 4 processes finish.
    let out = dir.path().join("down");
    summary(&run(
        &spec,
        &out,
        &["--devices", "cpu:4", "--stop-after", "8"],
        &[],
    ));
    let resume_2 = ["--devices", "cpu:2", "--resume", "--stop-after", "16"];
    summary(&run(&spec, &out, &resume_2, &[]));
    let s = summary(&run(&spec, &out, &["--resume"], &[]));
    assert_eq!(hash(&s), expected_hash, "4 → 2 → in-process");
    assert_eq!(records(&out), expected_records);

    let out = dir.path().join("up");
    summary(&run(&spec, &out, &["--stop-after", "12"], &[]));
    let s = summary(&run(&spec, &out, &["--devices", "cpu:4", "--resume"], &[]));
    assert_eq!(hash(&s), expected_hash, "in-process → 4");
    assert_eq!(records(&out), expected_records);
    assert_no_segments(name);
}

#[test]
fn parts_of_a_checkpoint_that_never_got_its_manifest_are_pruned() {
    let _serial = serial();
    let name = "rs_orphans";
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_spec(dir.path(), name);
    let out = dir.path().join("out");
    // 4 processes; process 3 dies after writing its part of checkpoint 16, so that checkpoint
    // never gets a manifest, and no restart is allowed.
    let failed = run(
        &spec,
        &out,
        &["--devices", "cpu:4", "--max-restarts", "0"],
        &[("GNC_TEST_KILL_AT", "3:16:part")],
    );
    assert!(!failed.status.success());
    let checkpoints = out.join("checkpoints");
    let orphan = checkpoints.join("ckpt-000000016.part-12-16.safetensors");
    assert!(orphan.exists(), "the killed worker's part is on disk");
    assert!(!checkpoints.join("ckpt-000000016.json").exists());
    // Resumed with 2 processes, whose parts of checkpoint 16 have other names.
    summary(&run(&spec, &out, &["--devices", "cpu:2", "--resume"], &[]));
    let mut named = std::collections::BTreeSet::new();
    let mut files = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&checkpoints).unwrap().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.ends_with(".json") {
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
            named.insert(manifest["tensors_file"].as_str().unwrap().to_owned());
            for part in manifest["parts"].as_array().unwrap() {
                named.insert(part["file"].as_str().unwrap().to_owned());
            }
        } else {
            files.insert(file);
        }
    }
    assert_eq!(
        named.len(),
        2 * 3,
        "2 checkpoints kept, each a main file and 2 parts"
    );
    assert_eq!(files, named, "every file left is named by a kept manifest");
    assert_no_segments(name);
}

/// Pids of the live children of `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may contain spaces, so split after the last ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        if fields[1].parse::<u32>() == Ok(parent) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether `pid` has exited (gone, or a zombie awaiting its new parent's wait).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
    }
}

#[test]
fn killed_supervisor_takes_its_workers_and_the_next_run_removes_its_segments() {
    let _serial = serial();
    let name = "rs_supervisor";
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_spec(dir.path(), name);
    let (expected_hash, expected_records) = reference(dir.path(), &spec);
    let out = dir.path().join("out");

    // Process 1 stops at iteration 6, so the group is stuck there (the hang timeout is far).
    let mut supervisor = gncctl_command(
        &spec,
        &out,
        &["--devices", "cpu:4", "--hang-timeout", "600"],
        &[("GNC_TEST_HANG_AT", "1:6")],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let metrics = out.join("metrics.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&metrics).map_or(0, |t| t.matches("\"kind\":\"iter\"").count())
        < 6
    {
        assert!(
            Instant::now() < deadline,
            "the run never reached iteration 6"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let workers = children_of(supervisor.id());
    assert_eq!(workers.len(), 4, "four worker processes: {workers:?}");

    supervisor.kill().unwrap(); // SIGKILL: no chance to clean up
    supervisor.wait().unwrap();
    let killed = Instant::now();
    while !workers.iter().all(|&pid| exited(pid)) {
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "workers outlived their supervisor by 2 s: {:?}",
            workers.iter().filter(|&&p| !exited(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stale = segments_of(name);
    assert_eq!(
        stale.len(),
        3,
        "the dead supervisor's segments stay: {stale:?}"
    );

    let output = run(&spec, &out, &["--devices", "cpu:4", "--resume"], &[]);
    let s = summary(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for segment in &stale {
        assert!(
            stderr.contains(&format!("removed stale segment /dev/shm/{segment}")),
            "{segment} not reported removed: {stderr}"
        );
    }
    assert_eq!(hash(&s), expected_hash);
    assert_eq!(records(&out), expected_records);
    assert_no_segments(name);
}

#[test]
fn worker_of_a_generation_without_segments_exits_with_a_clear_error() {
    // What a worker of an old generation meets after its supervisor restarted the group
    // (the old segments are unlinked): a clear message and the "stopped" exit code 3.
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    let (_, table) = gnc_tests::METHODS[0];
    let toml = job("rs_orphan", table, 16, "");
    // The worker reads the spec as JSON; gncctl writes it, so let a short run do that.
    let toml_path = gnc_tests::write_spec(dir.path(), "rs_orphan", &toml);
    summary(&run(
        &toml_path,
        dir.path(),
        &["--devices", "cpu:1", "--stop-after", "1"],
        &[],
    ));
    assert!(spec.is_file());
    // A worker of generation 7 on `device`, started by hand.
    let worker = |device: &str| {
        std::process::Command::new(gnc_tests::bin_dir().join("gnc-worker"))
            .args(["--spec", spec.to_str().unwrap(), "--out"])
            .arg(dir.path())
            .args(["--shm-job", "rs_orphan_00000000", "--generation", "7"])
            .args(["--process", "0", "--device", device, "--blocks", "0-16"])
            .args(["--peer-timeout-ms", "1000", "--parent-pid"])
            .arg(std::process::id().to_string())
            .output()
            .unwrap()
    };
    let output = worker("cpu");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("gnc-worker 0 (generation 7): error: shared memory: segment /gnc-rs_orphan_00000000-7-control does not exist"),
        "{stderr}"
    );
    assert_no_segments("rs_orphan");

    // A device this worker cannot compute on is bad usage, not a failure to retry.
    let output = worker("cuda:0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--device cuda:0: gnc computes on the CPU only"),
        "{stderr}"
    );
}
