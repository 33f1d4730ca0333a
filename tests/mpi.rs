//! A job across hosts over MPI gives the one-host bits: `mpirun` with 2 and 4 ranks (on this
//! machine, standing in for hosts) runs `gnc-mpi-worker`, and for every method the final
//! parameter hash and the per-iteration records equal the in-process run's; a run stopped on
//! 2 ranks resumes on 4 to the same hash.

#[path = "mp_support.rs"]
mod mp_support;

use std::path::Path;
use std::process::{Command, Output};

use mp_support::*;

/// `mpirun -np hosts·per_host gnc-mpi-worker spec --out out --processes-per-host per_host
/// extra…`, launched as gncctl launches its processes (the portable level's environment), and
/// allowed as root (CI) and with more ranks than cores.
fn mpirun((hosts, per_host): (usize, usize), spec: &Path, out: &Path, extra: &[&str]) {
    let ranks = hosts * per_host;
    let mut command = Command::new("mpirun");
    gnc_proto::repro::Level::Portable.apply(&mut command);
    let output = command
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["--oversubscribe", "-np", &ranks.to_string()])
        .arg(gnc_tests::bin_dir().join("gnc-mpi-worker"))
        .arg(spec)
        .arg("--out")
        .arg(out)
        .args(["--processes-per-host", &per_host.to_string()])
        .args(extra)
        .output()
        .expect("mpirun runs (make installs openmpi-bin)");
    assert!(
        output.status.success(),
        "mpirun: {hosts} hosts x {per_host}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn result_hash(out: &Path) -> String {
    let text = std::fs::read_to_string(out.join("result.json")).unwrap();
    hash(&serde_json::from_str(&text).unwrap())
}

#[test]
fn every_method_over_2_and_4_hosts_and_2_hosts_of_2_processes_gives_the_one_host_bits() {
    let _serial = serial();
    for (method, table) in gnc_tests::METHODS {
        let name = format!("mpi_{method}");
        let dir = tempfile::tempdir().unwrap();
        let spec = gnc_tests::write_spec(dir.path(), &name, &job(&name, table, 16, ""));
        let (expected_hash, expected_records) = reference(dir.path(), &spec);
        for layout @ (hosts, per_host) in [(2, 1), (4, 1), (2, 2)] {
            let out = dir.path().join(format!("hosts{hosts}x{per_host}"));
            mpirun(layout, &spec, &out, &[]);
            let what = format!("{method}, {hosts} hosts x {per_host}");
            assert_eq!(result_hash(&out), expected_hash, "{what}");
            assert_eq!(records(&out), expected_records, "{what}");
            assert_no_segments(&name);
        }
    }
}

#[test]
fn a_run_stopped_on_2_hosts_resumes_on_2_hosts_of_2_processes_to_the_same_bits() {
    let _serial = serial();
    let (method, table) = gnc_tests::METHODS[1];
    let name = format!("mpi_resume_{method}");
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_tests::write_spec(dir.path(), &name, &job(&name, table, 16, ""));
    let (expected_hash, _) = reference(dir.path(), &spec);
    let out = dir.path().join("mpi");
    mpirun((2, 1), &spec, &out, &["--stop-after", "7"]);
    assert!(!out.join("result.json").exists() || result_hash(&out) != expected_hash);
    mpirun((2, 2), &spec, &out, &["--resume-from", "7"]);
    assert_eq!(result_hash(&out), expected_hash);
}

/// `gncctl run SPEC --out OUT ARGS…`, as a user runs it (`gnc_tests::gncctl` gives Open MPI
/// its consent to run as root).
fn gncctl_run(spec: &Path, out: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    gnc_tests::gncctl()
        .envs(env.iter().copied())
        .args(["run", "--json"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

/// `gncctl run --hosts HOSTFILE`.
fn gncctl_hosts(spec: &Path, out: &Path, hostfile: &Path, env: &[(&str, &str)]) -> Output {
    let hostfile = hostfile.to_str().unwrap();
    gncctl_run(spec, out, &["--hosts", hostfile], env)
}

#[test]
fn gncctl_run_hosts_gives_the_one_host_bits_and_restarts_after_a_rank_dies() {
    let _serial = serial();
    let (method, table) = gnc_tests::METHODS[1];
    let name = format!("mpi_hosts_{method}");
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_tests::write_spec(dir.path(), &name, &job(&name, table, 16, ""));
    let (expected_hash, _) = reference(dir.path(), &spec);
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, "# one host, four slots\nlocalhost slots=4\n").unwrap();
    // The spec can name the hosts itself (parallel.hosts): a process per slot.
    let text = std::fs::read_to_string(&spec).unwrap();
    let placed = text.replacen(
        "[parallel]\n",
        &format!("[parallel]\nhosts = {:?}\n", hostfile.display().to_string()),
        1,
    );
    assert_ne!(placed, text, "the job has a [parallel] section");
    let placed_spec = dir.path().join("placed.toml");
    std::fs::write(&placed_spec, placed).unwrap();
    let clean = gncctl_run(&placed_spec, &dir.path().join("clean"), &[], &[]);
    let stderr = String::from_utf8_lossy(&clean.stderr);
    assert!(clean.status.success(), "{stderr}");
    assert!(
        dir.path()
            .join("clean")
            .join(gnc_contract::protocol::MPI_STARTED_FILE)
            .exists()
    );
    assert_eq!(hash(&summary(&clean)), expected_hash);
    // Two processes on the host instead of four, by --devices.
    let hostfile_arg = hostfile.to_str().unwrap();
    let two = gncctl_run(
        &spec,
        &dir.path().join("two"),
        &["--hosts", hostfile_arg, "--devices", "cpu:2"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&two.stderr);
    assert!(two.status.success(), "{stderr}");
    assert_eq!(hash(&summary(&two)), expected_hash);
    // Rank 2 dies as iteration 10 begins (generation 0 only): mpirun ends the job, which starts
    // again from the checkpoint of 8.
    let killed = gncctl_hosts(
        &spec,
        &dir.path().join("killed"),
        &hostfile,
        &[("GNC_TEST_KILL_AT", "2:10")],
    );
    let stderr = String::from_utf8_lossy(&killed.stderr);
    assert!(killed.status.success(), "{stderr}");
    assert!(stderr.contains("restart 1 of 3"), "{stderr}");
    assert_eq!(hash(&summary(&killed)), expected_hash, "{stderr}");
    // The killed generation's host segments had lost their names once every process had
    // mapped them: nothing is left in /dev/shm.
    assert_no_segments(&name);
}

#[test]
fn bad_hostfiles_and_rank_counts_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_tests::write_spec(
        dir.path(),
        "mpi_bad",
        &job("mpi_bad", "kind = \"baseline\"", 8, ""),
    );
    for (text, expected) in [
        ("localhost slots=two\n", "line 1: slots=two"),
        ("# nothing\n", "names no host"),
        (
            "localhost slots=9\n",
            "1 host(s) of 9 process(es): cannot split 8 logical workers over 9 processes",
        ),
        (
            "a slots=2\nb slots=4\n",
            "different slot counts (a: 2, b: 4); say how many processes each host runs with \
             --devices cpu:N",
        ),
    ] {
        let hostfile = dir.path().join("hosts");
        std::fs::write(&hostfile, text).unwrap();
        let o = gncctl_hosts(&spec, &dir.path().join("out"), &hostfile, &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
    }
    let hostfile = dir.path().join("hosts");
    for (text, devices, expected) in [
        (
            "a slots=2\nb slots=4\n",
            "cpu:4",
            "host a has 2 slot(s), fewer than the 4 processes per host of cpu:4",
        ),
        (
            "a slots=4\nb slots=4\nc slots=4\n",
            "cpu:2",
            "3 host(s) of 2 process(es): block [0, 3) of 8 logical workers over 3 processes is \
             not a subtree",
        ),
        (
            "a\n",
            "cuda:0",
            "--hosts with --devices cuda:0: gnc computes on the CPU only",
        ),
    ] {
        std::fs::write(&hostfile, text).unwrap();
        let hostfile = hostfile.to_str().unwrap();
        let args = ["--hosts", hostfile, "--devices", devices];
        let o = gncctl_run(&spec, &dir.path().join("out"), &args, &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(stderr.contains(expected), "{text:?} {devices}: {stderr}");
    }
    assert!(!dir.path().join("out").join("metrics.jsonl").exists());
    let o = gncctl_hosts(
        &spec,
        &dir.path().join("out"),
        &dir.path().join("missing"),
        &[],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read hostfile"));
}

#[test]
fn an_unreachable_host_is_an_error_without_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_tests::write_spec(
        dir.path(),
        "mpi_unreachable",
        &job("mpi_unreachable", "kind = \"baseline\"", 8, ""),
    );
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, "nosuchhost.invalid slots=2\n").unwrap();
    let o = gncctl_hosts(&spec, &dir.path().join("out"), &hostfile, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("before all 2 ranks"), "{stderr}");
    // gnc's own line names the host, with ssh's reason.
    assert!(
        stderr.contains(
            "cannot reach nosuchhost.invalid (ssh: Could not resolve hostname nosuchhost.invalid"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("restart 1 of"), "{stderr}");
}

/// A rank that hangs before it joins (fault injection): the launcher gives up after
/// --join-timeout, names the rank and its host, stops every rank and does not restart.
#[test]
fn a_rank_that_never_joins_is_named_and_nothing_is_left_running() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_tests::write_spec(
        dir.path(),
        "mpi_nojoin",
        &job("mpi_nojoin", "kind = \"baseline\"", 8, ""),
    );
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, "localhost slots=2\n").unwrap();
    let out = dir.path().join("out");
    let start = std::time::Instant::now();
    let o = gncctl_run(
        &spec,
        &out,
        &["--hosts", hostfile.to_str().unwrap(), "--join-timeout", "4"],
        &[("GNC_TEST_HANG_BEFORE_JOIN", "1")],
    );
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("rank 1 on localhost never joined (it did not start, or hung before MPI's start-up) within 4s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not restarting") && !stderr.contains("restart 1 of"),
        "{stderr}"
    );
    assert!(took < std::time::Duration::from_secs(60), "took {took:?}");
    assert!(
        out.join(gnc_contract::protocol::MPI_ARRIVED_DIR)
            .join("0")
            .exists()
    );
    assert!(!out.join("metrics.jsonl").exists());
    // No rank of this job survives its launcher.
    let out_text = out.to_str().unwrap().to_owned();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("gnc-mpi-worker") && c.contains(&out_text))
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");
}

/// Ctrl-C at the terminal pauses a job across hosts: mpirun (in its own process group)
/// never sees it; the launcher posts a stop, rank 0 takes it and every rank checkpoints at
/// the same boundary.
#[test]
fn ctrl_c_pauses_a_job_across_hosts_and_resume_keeps_the_bits() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, "localhost slots=2\n").unwrap();
    let hostfile = hostfile.to_str().unwrap();
    gnc_tests::ctrl_c_pauses_and_resume_keeps_the_bits("mpi_ctrl_c", &["--hosts", hostfile]);
}

/// Ranks handed different specs (`mpirun`'s multiple-program form) refuse to train, naming
/// the rank that differs.
#[test]
fn ranks_that_disagree_on_the_spec_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let a = gnc_tests::write_spec(
        dir.path(),
        "mpi_a",
        &job("mpi_a", "kind = \"baseline\"", 8, ""),
    );
    let b = gnc_tests::write_spec(
        dir.path(),
        "mpi_b",
        &job("mpi_a", "kind = \"baseline\"", 8, "").replace("seed = ", "seed = 9"),
    );
    let worker = gnc_tests::bin_dir().join("gnc-mpi-worker");
    let out = dir.path().join("out");
    let mut command = Command::new("mpirun");
    gnc_proto::repro::Level::Portable.apply(&mut command);
    let o = command
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["--oversubscribe", "-np", "1"])
        .arg(&worker)
        .arg(&a)
        .arg("--out")
        .arg(&out)
        .args([":", "-np", "1"])
        .arg(&worker)
        .arg(&b)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("rank 1 on")
            && stderr.contains("must run the same gnc build on the same spec"),
        "{stderr}"
    );
    assert!(!out.join("metrics.jsonl").exists());
}
