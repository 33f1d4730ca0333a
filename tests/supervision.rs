//! The supervisor under faults, for every placement (issue: one supervisor loop over a launch
//! seam): nothing outlives a killed launcher, a busy output directory is refused by name, a
//! stopped rank ends the job and the restart keeps the bits, and Ctrl-C while a rank cannot
//! reach an iteration boundary still ends the job within seconds. Ranks as "hosts" on this
//! machine (`localhost slots=2`), as in mpi.rs.

// This file uses some of the shared helpers only.
#[allow(dead_code)]
#[path = "mp_support.rs"]
mod mp_support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use mp_support::*;

/// A job long enough to act on while it trains (8 logical workers of 4, 3 epochs of 512
/// iterations), checkpoints every 4 iterations.
fn long_job(dir: &Path, name: &str, train_examples: usize) -> PathBuf {
    let toml = gnc_tests::teacher_student_job(&gnc_tests::TinyJob {
        name,
        method: gnc_tests::METHODS[0].1,
        seed: 4,
        train_examples,
        test_examples: 64,
        workers: 8,
        small_batch: 4,
        parallel: "",
    });
    gnc_tests::write_spec(dir, name, &toml)
}

fn hostfile(dir: &Path) -> String {
    let path = dir.join("hosts");
    std::fs::write(&path, "localhost slots=2\n").unwrap();
    path.to_str().unwrap().to_owned()
}

/// `gncctl run SPEC --json --out OUT ARGS…` in a process group of its own (as a terminal
/// starts it), with its output piped.
fn spawn(spec: &Path, out: &Path, args: &[&str]) -> Child {
    gncctl_command(spec, out, args, &[])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `metrics.jsonl` in `out` has `lines` lines (the job trains).
fn wait_for_training(out: &Path, lines: usize) {
    let metrics = out.join("metrics.jsonl");
    let began = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < lines {
        assert!(began.elapsed() < Duration::from_secs(90), "no training");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The command lines of live processes that mention `needle` (zombies have none).
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some((pid, cmdline))
        })
        .filter(|(pid, _)| *pid != std::process::id())
        .collect()
}

/// Waits up to `limit` for every process mentioning `needle` to be gone; the ones left.
fn left_after(needle: &str, limit: Duration) -> Vec<(u32, String)> {
    let began = Instant::now();
    loop {
        let left = processes_with(needle);
        if left.is_empty() || began.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid of rank `rank` of the job writing to `out`.
fn rank_pid(out: &Path, rank: usize) -> u32 {
    let out = out.to_str().unwrap();
    let began = Instant::now();
    loop {
        let ranks: Vec<u32> = processes_with(out)
            .into_iter()
            .filter(|(_, c)| c.contains("gnc-mpi-worker") && !c.contains("mpirun"))
            .map(|(pid, _)| pid)
            .collect();
        for pid in ranks {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let environ = String::from_utf8_lossy(&environ);
            if environ
                .split('\0')
                .any(|v| v == format!("OMPI_COMM_WORLD_RANK={rank}"))
            {
                return pid;
            }
        }
        assert!(began.elapsed() < Duration::from_secs(30), "no rank {rank}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Open MPI's shared-memory files in /dev/shm (its ranks' `vader` segments), which mpirun
/// removes when it ends its job, and nobody when it is killed.
fn open_mpi_segments() -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vader_segment"))
        .collect();
    found.sort();
    found
}

/// Waits up to `limit` for `child` to exit; kills its process group and panics if it does not.
fn wait_within(child: Child, limit: Duration) -> std::process::Output {
    let began = Instant::now();
    let pid = child.id();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if began.elapsed() > limit {
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGCONT);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            panic!("gncctl (pid {pid}) still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

#[test]
fn a_killed_launcher_leaves_no_rank_mpirun_or_segment_and_the_job_resumes() {
    let _serial = serial();
    let name = "sv_killed";
    let dir = tempfile::tempdir().unwrap();
    let spec = long_job(dir.path(), name, 16384);
    let hosts = hostfile(dir.path());
    let out = dir.path().join("out");
    let open_mpi_before = open_mpi_segments();
    let mut launcher = spawn(&spec, &out, &["--hosts", &hosts]);
    wait_for_training(&out, 3);
    // SIGKILL: the launcher can do nothing about it; its children must end themselves.
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    let out_text = out.to_str().unwrap();
    let left = left_after(out_text, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "still running 10 s after the launcher died: {left:?}"
    );
    assert!(processes_with("orted").is_empty());
    // Orphaned ranks would have gone on to the end and written the result: none did.
    assert!(!out.join("result.json").exists());
    assert_no_segments(name);
    assert_eq!(open_mpi_segments(), open_mpi_before);
    // The directory is free again, and the job continues to the uninterrupted run's bits.
    let resumed = summary(&run(&spec, &out, &["--hosts", &hosts, "--resume"], &[]));
    assert_eq!(hash(&resumed), reference(dir.path(), &spec).0);
}

#[test]
fn a_second_launcher_on_a_busy_output_directory_is_refused_naming_the_job() {
    let _serial = serial();
    let name = "sv_busy";
    let dir = tempfile::tempdir().unwrap();
    let spec = long_job(dir.path(), name, 16384);
    let hosts = hostfile(dir.path());
    for (i, placement) in [
        &[][..],
        &["--devices", "cpu:2"][..],
        &["--hosts", &hosts][..],
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.path().join(format!("out{i}"));
        let first = spawn(&spec, &out, placement);
        wait_for_training(&out, 2);
        let before = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        for second in [&[][..], &["--devices", "cpu:2"][..], &["--resume"][..]] {
            let refused = run(&spec, &out, second, &[]);
            let stderr = String::from_utf8_lossy(&refused.stderr);
            assert!(!refused.status.success(), "{placement:?} {second:?}");
            assert!(
                stderr.contains(&format!(
                    "is the output directory of a job that is still running (job \"{name}\", \
                     pid {} on ",
                    first.id()
                )),
                "{placement:?} {second:?}: {stderr}"
            );
        }
        // Nothing of the first run was touched.
        let after = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        assert!(after.starts_with(&before), "{placement:?}");
        // Paused as a terminal's Ctrl-C does; the directory is then free.
        signal(first.id(), nix::sys::signal::Signal::SIGINT);
        let paused = first.wait_with_output().unwrap();
        assert!(paused.status.success(), "{placement:?}");
        assert!(left_after(out.to_str().unwrap(), Duration::from_secs(10)).is_empty());
    }
    assert_no_segments(name);
}

#[test]
fn a_stopped_rank_ends_the_job_which_restarts_to_the_same_bits() {
    let _serial = serial();
    let name = "sv_sigstop";
    let dir = tempfile::tempdir().unwrap();
    let spec = long_job(dir.path(), name, 4096);
    let hosts = hostfile(dir.path());
    let out = dir.path().join("out");
    let open_mpi_before = open_mpi_segments();
    let launcher = spawn(&spec, &out, &["--hosts", &hosts, "--hang-timeout", "5"]);
    wait_for_training(&out, 3);
    let stopped = rank_pid(&out, 1);
    signal(stopped, nix::sys::signal::Signal::SIGSTOP);
    let since = Instant::now();
    // The restart: a new generation's rank 1 is another process.
    while rank_pid(&out, 1) == stopped {
        assert!(
            since.elapsed() < Duration::from_secs(5 + 10),
            "no restart within --hang-timeout + 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = wait_within(launcher, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rank 1 on localhost (no heartbeat) made no progress")
            && stderr.contains("restart 1 of 3"),
        "{stderr}"
    );
    assert!(!Path::new(&format!("/proc/{stopped}")).exists());
    assert_eq!(
        hash(&summary(&output)),
        reference(dir.path(), &spec).0,
        "{stderr}"
    );
    assert_no_segments(name);
    // mpirun ended the stopped generation itself, cleaning up after its ranks.
    assert_eq!(open_mpi_segments(), open_mpi_before);
}

#[test]
fn ctrl_c_while_a_rank_is_stopped_ends_the_job_within_seconds_leaving_nothing() {
    let _serial = serial();
    let name = "sv_ctrl_c_blocked";
    let dir = tempfile::tempdir().unwrap();
    let spec = long_job(dir.path(), name, 16384);
    let hosts = hostfile(dir.path());
    let out = dir.path().join("out");
    let open_mpi_before = open_mpi_segments();
    let launcher = spawn(&spec, &out, &["--hosts", &hosts]);
    wait_for_training(&out, 3);
    signal(rank_pid(&out, 1), nix::sys::signal::Signal::SIGSTOP);
    // Rank 0 is now blocked in the exchange; a terminal's Ctrl-C reaches the launcher.
    std::thread::sleep(Duration::from_secs(1));
    let since = Instant::now();
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(launcher.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = wait_within(launcher, Duration::from_secs(30));
    let took = since.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(took < Duration::from_secs(10), "took {took:?}: {stderr}");
    assert!(!output.status.success());
    assert!(
        stderr.contains("stopped without a checkpoint: rank 1 on localhost is not computing"),
        "{stderr}"
    );
    let left = left_after(out.to_str().unwrap(), Duration::from_secs(10));
    assert!(left.is_empty(), "{left:?}");
    assert_no_segments(name);
    assert_eq!(open_mpi_segments(), open_mpi_before);
}

/// An elastic job (`--min-hosts 1`) whose hostfile names a host that cannot be reached goes
/// on without it, in the largest valid layout over the hosts that remain, says so, and ends
/// with the bits of the uninterrupted run; without `--min-hosts` it stops, naming the host.
#[test]
fn an_elastic_job_goes_on_without_an_unreachable_host_to_the_same_bits() {
    let _serial = serial();
    let name = "sv_elastic";
    let dir = tempfile::tempdir().unwrap();
    let spec = long_job(dir.path(), name, 1024);
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "localhost slots=2\nnosuchhost.invalid slots=2\n").unwrap();
    let hosts = hosts.to_str().unwrap();
    let strict = run(&spec, &dir.path().join("strict"), &["--hosts", hosts], &[]);
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(!strict.status.success());
    assert!(
        stderr.contains("cannot reach nosuchhost.invalid (ssh: "),
        "{stderr}"
    );
    let out = dir.path().join("elastic");
    let elastic = run(&spec, &out, &["--hosts", hosts, "--min-hosts", "1"], &[]);
    let stderr = String::from_utf8_lossy(&elastic.stderr);
    assert!(
        stderr.contains(
            "cannot reach nosuchhost.invalid (ssh: Could not resolve hostname nosuchhost.invalid"
        ) && stderr
            .contains("continuing on 1 host(s) x 2 process(es) (localhost) from iteration 0"),
        "{stderr}"
    );
    assert_eq!(hash(&summary(&elastic)), reference(dir.path(), &spec).0);
    // Too few hosts left is an error naming them.
    let too_few = run(
        &spec,
        &dir.path().join("too-few"),
        &["--hosts", hosts, "--min-hosts", "2"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&too_few.stderr);
    assert!(!too_few.status.success());
    assert!(
        stderr.contains("--min-hosts 2: only 1 host(s) of")
            && stderr.contains("cannot reach nosuchhost.invalid"),
        "{stderr}"
    );
    assert_no_segments(name);
}
