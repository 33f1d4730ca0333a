//! `gncctl` against a real `gncd`: the everyday commands end to end. A job submitted and
//! watched with gncctl ends with the hash `gncctl run` gives; checkpoint-now, pause and
//! resume keep the bits; 200 concurrent `gncctl status` processes are all answered while a
//! job trains; and a user cannot cancel another user's job.

// Only part of each helper module is used here.
#[allow(dead_code)]
#[path = "daemon_support.rs"]
mod daemon_support;
#[allow(dead_code)]
#[path = "mp_support.rs"]
mod mp_support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use daemon_support::*;
use gnc_proto::socket::JobState;

fn gnc_method() -> &'static str {
    gnc_tests::METHODS[1].1
}

/// `gncctl --socket <home's> <args>`.
fn gncctl(home: &Home, args: &[&str]) -> Command {
    let mut command = gnc_tests::gncctl();
    command.arg("--socket").arg(home.socket()).args(args);
    command
}

fn ok(output: Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "gncctl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON reply")
}

/// A job of M = 16 workers, 3 epochs of `examples / 64` iterations.
fn job(name: &str, examples: usize) -> String {
    gnc_tests::teacher_student_job(&gnc_tests::TinyJob {
        name,
        method: gnc_method(),
        seed: 7,
        train_examples: examples,
        test_examples: 128,
        workers: 16,
        small_batch: 4,
        parallel: "",
    })
}

fn submit(home: &Home, spec: &Path) -> u64 {
    let reply = ok(gncctl(home, &["submit", spec.to_str().unwrap(), "--json"])
        .output()
        .unwrap());
    reply["job"]["id"]
        .as_u64()
        .expect("the reply names the job")
}

#[test]
fn a_job_submitted_and_watched_with_gncctl_ends_with_the_hash_of_gncctl_run() {
    let _serial = mp_support::serial();
    let home = Home::new("cpu:2", "");
    let toml = job("cp_submit", 512);
    let expected = reference_hash(home.dir.path(), "cp_submit", &toml);
    let spec = gnc_tests::write_spec(home.dir.path(), "cp_submit", &toml);
    let _daemon = home.start(&[]);
    let id = submit(&home, &spec);
    let watch = gncctl(&home, &["watch", &id.to_string()]).output().unwrap();
    assert!(
        watch.status.success(),
        "watch ends 0 on a finished job: {}",
        String::from_utf8_lossy(&watch.stderr)
    );
    let status = ok(gncctl(&home, &["status", &id.to_string(), "--json"])
        .output()
        .unwrap());
    assert_eq!(status["job"]["state"], "done", "{status}");
    assert_eq!(status["job"]["params_sha256"], expected.as_str());
    let list = ok(gncctl(&home, &["list", "--json"]).output().unwrap());
    let jobs = list["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{list}");
    assert_eq!(jobs[0]["id"], id);
    let metrics = gncctl(&home, &["metrics", &id.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8(metrics.stdout).unwrap();
    assert!(
        text.lines().any(|l| l.contains("\"kind\":\"final\"")),
        "{text}"
    );
}

#[test]
fn checkpoint_now_pause_and_resume_keep_the_bits() {
    let _serial = mp_support::serial();
    let home = Home::new("cpu:2", "");
    let toml = job("cp_pause", 16384).replace("every_iterations = 4", "every_iterations = 0");
    let expected = reference_hash(home.dir.path(), "cp_pause", &toml);
    let spec = gnc_tests::write_spec(home.dir.path(), "cp_pause", &toml);
    let _daemon = home.start(&[]);
    let id = submit(&home, &spec);
    let job_ref = id.to_string();
    home.watch_until(id, |j| j.iteration >= 5);
    ok(gncctl(&home, &["checkpoint-now", &job_ref, "--json"])
        .output()
        .unwrap());
    let running = home.watch_until(id, |j| j.iteration >= 20);
    ok(gncctl(&home, &["pause", &job_ref, "--json"])
        .output()
        .unwrap());
    let paused = home.watch_until(id, |j| j.state == JobState::Paused || j.state.is_final());
    assert_eq!(
        paused.state,
        JobState::Paused,
        "{paused:?}\n{}",
        home.logs()
    );
    assert!(paused.iteration < paused.total_iterations, "{paused:?}");
    let saved = checkpoints(&paused.output_dir);
    assert!(
        saved.len() >= 2 && saved.iter().any(|&c| c < running.iteration + 5),
        "the asked checkpoint and the pause's: {saved:?}"
    );
    assert_eq!(saved.last(), Some(&paused.iteration));
    ok(gncctl(&home, &["resume", &job_ref, "--json"])
        .output()
        .unwrap());
    let done = home.wait_done(id);
    assert_eq!(done.params_sha256.as_deref(), Some(expected.as_str()));
}

#[test]
fn two_hundred_concurrent_gncctl_status_clients_are_all_answered_while_a_job_trains() {
    let _serial = mp_support::serial();
    let home = Home::new("cpu:2", "hang_timeout_seconds = 600");
    let spec = gnc_tests::write_spec(home.dir.path(), "cp_load", &job("cp_load", 16384));
    // Worker 1 stops at iteration 10, so the job is certainly running throughout.
    let _daemon = home.start(&[("GNC_TEST_HANG_AT", "1:10")]);
    let id = submit(&home, &spec);
    home.watch_until(id, |j| j.iteration >= 10);
    let clients: Vec<_> = (0..200)
        .map(|_| {
            gncctl(&home, &["status", &id.to_string(), "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("gncctl starts")
        })
        .collect();
    for client in clients {
        let reply = ok(client.wait_with_output().unwrap());
        assert_eq!(reply["job"]["id"], id);
        assert_eq!(reply["job"]["state"], "running");
    }
    ok(gncctl(&home, &["cancel", &id.to_string(), "--json"])
        .output()
        .unwrap());
    let cancelled = home.watch_until(id, |j| j.state.is_final());
    assert_eq!(cancelled.state, JobState::Cancelled);
}

#[test]
fn another_uid_cannot_cancel_a_job_it_does_not_own() {
    if !nix_is_root() {
        eprintln!("skipped: acting as another uid needs root");
        return;
    }
    let _serial = mp_support::serial();
    // The other user must reach the socket: a world-writable socket in a traversable dir.
    let home = Home::new("cpu:2", "hang_timeout_seconds = 600\nsocket_mode = 0o666");
    std::fs::set_permissions(home.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = gnc_tests::write_spec(home.dir.path(), "cp_owner", &job("cp_owner", 16384));
    let _daemon = home.start(&[("GNC_TEST_HANG_AT", "1:10")]);
    let id = submit(&home, &spec);
    home.watch_until(id, |j| j.iteration >= 10);
    let nobody = gncctl(&home, &["cancel", &id.to_string()])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&nobody.stderr);
    assert!(!nobody.status.success(), "uid 65534 cancelled root's job");
    assert!(
        stderr.contains("owner") || stderr.contains("permission"),
        "the refusal says why: {stderr}"
    );
    let status = ok(gncctl(&home, &["status", &id.to_string(), "--json"])
        .output()
        .unwrap());
    assert_eq!(status["job"]["state"], "running");
    // Its owner may.
    ok(gncctl(&home, &["cancel", &id.to_string(), "--json"])
        .output()
        .unwrap());
    let cancelled = home.watch_until(id, |j| j.state.is_final());
    assert_eq!(cancelled.state, JobState::Cancelled);
}

fn nix_is_root() -> bool {
    // The uid of /proc/self is this process's (no libc call needed).
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}
