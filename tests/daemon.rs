//! `gncd` end to end: the real daemon on a temporary socket and state directory, driven with
//! the real protocol client. Jobs finish with the hash `gncctl run` gives, survive SIGKILL and
//! SIGTERM of the daemon, malformed messages are answered and survived, data outside the
//! allowed roots is refused, and systemd is notified.

#[path = "daemon_support.rs"]
mod daemon_support;
// Only its jobs, its test lock and its segment checks are used here.
#[allow(dead_code)]
#[path = "mp_support.rs"]
mod mp_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use daemon_support::*;
use gnc_proto::JobSpec;
use gnc_proto::client::ClientError;
use gnc_proto::socket::{Command, ErrorKind, JobState, Reply, Response};

fn gnc_method() -> &'static str {
    gnc_tests::METHODS[1].1
}

/// A teacher–student job of M = 16 workers with `examples` training examples (3 epochs of
/// examples / 64 iterations, checkpoints every 4).
fn long_job(name: &str, examples: usize) -> String {
    gnc_tests::teacher_student_job(&gnc_tests::TinyJob {
        name,
        method: gnc_method(),
        seed: 11,
        train_examples: examples,
        test_examples: 128,
        workers: 16,
        small_batch: 4,
        parallel: "",
    })
}

/// The job's record as the daemon last persisted it.
fn on_disk(home: &Home, id: u64) -> serde_json::Value {
    let text = std::fs::read_to_string(home.job_dir(id).join("job.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_submitted_job_finishes_with_the_hash_of_gncctl_run() {
    let _serial = mp_support::serial();
    let home = Home::new("cpu:2", "");
    let toml = gnc_tests::tiny_job("gd_submit", gnc_method());
    let expected = reference_hash(home.dir.path(), "gd_submit", &toml);
    let _daemon = home.start(&[]);
    let job = home.submit(&toml);
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.devices, "cpu:2", "the devices it would run on now");
    assert!(
        job.output_dir.starts_with(home.state()),
        "the daemon chooses the output directory: {job:?}"
    );
    let done = home.wait_done(job.id);
    assert_eq!(done.params_sha256.as_deref(), Some(expected.as_str()));
    assert_eq!(done.iteration, done.total_iterations);
    assert_eq!(done.devices, "cpu:2");
    // Metrics and logs of the job are served.
    let mut client = home.client();
    match client.request(Command::Metrics {
        job: "gd_submit".into(),
        from: 0,
    }) {
        Ok(Reply::Metrics { records }) => assert_eq!(
            records
                .iter()
                .filter(|r| matches!(r, gnc_proto::MetricRecord::Iter(_)))
                .count() as u64,
            done.total_iterations
        ),
        other => panic!("metrics: {other:?}"),
    }
    match client.request(Command::Logs {
        job: job.id.to_string(),
        tail: None,
    }) {
        Ok(Reply::Logs { lines }) => assert!(
            lines.iter().any(|l| l.contains("worker processes")),
            "{lines:?}"
        ),
        other => panic!("logs: {other:?}"),
    }
    // A finished job cannot be cancelled.
    match client.request(Command::Cancel {
        job: job.id.to_string(),
    }) {
        Err(ClientError::Daemon { kind, .. }) => assert_eq!(kind, ErrorKind::WrongState),
        other => panic!("cancel of a done job: {other:?}"),
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`: resident now; `VmHWM`: the peak).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// gncd and gncctl link no libtorch; the daemon idles within 30 MB and stays small while a job
/// on the whole Fashion-MNIST training split runs: it plans the job from the files' headers
/// (the split alone is 188 MB as f32), and only the worker loads the data.
#[test]
fn the_supervisor_links_no_libtorch_and_never_loads_a_jobs_data() {
    for bin in ["gncd", "gncctl"] {
        let path = gnc_tests::bin_dir().join(bin);
        let out = std::process::Command::new("ldd")
            .arg(&path)
            .output()
            .unwrap();
        let libraries = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ldd {}: {out:?}", path.display());
        assert!(
            !libraries.contains("libtorch") && !libraries.contains("libc10"),
            "{bin} links libtorch:\n{libraries}"
        );
    }
    let _serial = mp_support::serial();
    let home = Home::new("cpu:1", "");
    let daemon = home.start(&[]);
    let idle = status_kib(daemon.pid(), "VmRSS");
    assert!(idle <= 30 * 1024, "gncd idles at {idle} KiB resident");
    let toml = format!(
        "name = \"gd_full_split\"\nseed = 1\noutput_dir = \"unused\"\n\
         [data]\ndataset = \"fashion-mnist\"\nroot = \"{}\"\n\
         [model]\nkind = \"mlp\"\nhidden = [8]\n\
         [parallel]\nworkers = 4\nsmall_batch = 8\n\
         [method]\nkind = \"baseline\"\n\
         [optimizer]\nkind = \"momentum\"\nmomentum = 0.9\nweight_decay = 0.0\n\
         [schedule]\nepochs = 1\nbase_lr = 0.01\n",
        gnc_tests::repo_root().join("data/fashion-mnist").display()
    );
    let job = home.submit(&toml);
    let running = home.watch_until(job.id, |j| j.iteration >= 1 || j.state.is_final());
    assert_eq!(
        running.state,
        JobState::Running,
        "{running:?}\n{}",
        home.logs()
    );
    let peak = status_kib(daemon.pid(), "VmHWM");
    assert!(
        peak <= 40 * 1024,
        "gncd peaked at {peak} KiB while a job on 60,000 examples ran (idle: {idle} KiB)"
    );
    let mut client = home.client();
    client
        .request(Command::Cancel {
            job: job.id.to_string(),
        })
        .unwrap();
}

#[test]
fn a_sigkilled_daemon_resumes_the_job_to_the_same_hash() {
    let _serial = mp_support::serial();
    let name = "gd_kill";
    let home = Home::new("cpu:2", "hang_timeout_seconds = 600");
    let toml = mp_support::job(name, gnc_method(), 16, "");
    let expected = reference_hash(home.dir.path(), name, &toml);
    // Worker 1 stops forever as iteration 10 begins (generation 0 of this daemon only), so
    // the daemon is killed with the job certainly mid-run, after the checkpoint of 8.
    let daemon = home.start(&[("GNC_TEST_HANG_AT", "1:10")]);
    let job = home.submit(&toml);
    let seen = home.watch_until(job.id, |j| j.iteration >= 10);
    assert_eq!(seen.state, JobState::Running);
    daemon.kill();
    assert_eq!(on_disk(&home, job.id)["state"], "running");
    assert!(
        home.socket().exists(),
        "a SIGKILLed daemon leaves its socket file"
    );
    // The new daemon removes the stale socket, re-queues the job and resumes it.
    let _daemon = home.start(&[]);
    let done = home.wait_done(job.id);
    assert_eq!(done.params_sha256.as_deref(), Some(expected.as_str()));
    let log = std::fs::read_to_string(home.job_dir(job.id).join("job.log")).unwrap();
    assert!(log.contains("resuming"), "{log}");
    assert!(!log.contains("starting from iteration 0"), "{log}");
    mp_support::assert_no_segments(name);
}

/// A job across hosts under gncd runs on the daemon's hosts (its config's hostfile; here
/// `localhost slots=2`: two ranks through mpirun), survives a SIGKILLed daemon (mpirun and its
/// ranks end with it) and resumes under the next daemon to the in-process run's hash.
#[test]
fn a_job_across_hosts_survives_a_sigkilled_daemon_with_the_same_hash() {
    let _serial = mp_support::serial();
    let name = "gd_hosts_kill";
    let dir = tempfile::tempdir().unwrap();
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, "localhost slots=2\n").unwrap();
    let home = Home::new(
        "cpu:2",
        &format!(
            "hang_timeout_seconds = 600\nhosts = \"{}\"",
            hostfile.display()
        ),
    );
    let toml = mp_support::job(name, gnc_method(), 16, "");
    let expected = reference_hash(home.dir.path(), name, &toml);
    // The client's hostfile is not read: the daemon's hosts are used.
    let placed = mp_support::job(name, gnc_method(), 16, "hosts = \"client-side.hosts\"");
    let root = [
        ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
        ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
    ];
    // Rank 1 stops forever as iteration 10 begins (generation 0 only): the daemon is killed
    // with the job certainly mid-run, after the checkpoint of 8.
    let mut env = root.to_vec();
    env.push(("GNC_TEST_HANG_AT", "1:10"));
    let daemon = home.start(&env);
    let job = home.submit(&placed);
    let seen = home.watch_until(job.id, |j| j.iteration >= 10);
    assert_eq!(seen.state, JobState::Running);
    assert!(seen.devices.contains("on each of localhost"), "{seen:?}");
    let out = seen.output_dir.clone();
    daemon.kill();
    // Nothing of the job outlives the daemon.
    let started = std::time::Instant::now();
    let out_text = out.to_str().unwrap().to_owned();
    let running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&out_text))
            .collect::<Vec<_>>()
    };
    while !running().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running 10 s after the daemon died: {:?}",
            running()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _daemon = home.start(&root);
    let done = home.wait_done(job.id);
    assert_eq!(done.params_sha256.as_deref(), Some(expected.as_str()));
    let log = std::fs::read_to_string(home.job_dir(job.id).join("job.log")).unwrap();
    assert!(
        log.contains("resuming") && log.contains("across the daemon's hosts"),
        "{log}"
    );
    assert!(!log.contains("starting from iteration 0"), "{log}");
    mp_support::assert_no_segments(name);
}

#[test]
fn sigterm_checkpoints_the_job_and_exits_within_ten_seconds() {
    let _serial = mp_support::serial();
    let name = "gd_term";
    let home = Home::new("cpu:2", "");
    let toml = long_job(name, 16384);
    let expected = reference_hash(home.dir.path(), name, &toml);
    let daemon = home.start(&[]);
    let job = home.submit(&toml);
    let seen = home.watch_until(job.id, |j| j.iteration >= 6);
    assert_eq!(seen.state, JobState::Running);
    daemon.signal("TERM");
    let (status, took) = daemon.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", home.logs());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let record = on_disk(&home, job.id);
    assert_eq!(record["state"], "queued", "{record}\n{}", home.logs());
    let newest = *checkpoints(&job.output_dir).last().expect("a checkpoint");
    assert!(
        newest >= 6,
        "the stop wrote a checkpoint at or after iteration 6: {newest}"
    );
    assert!(newest < seen.total_iterations);
    let _daemon = home.start(&[]);
    let done = home.wait_done(job.id);
    assert_eq!(done.params_sha256.as_deref(), Some(expected.as_str()));
    mp_support::assert_no_segments(name);
}

#[test]
fn every_malformed_message_gets_an_error_and_the_connection_goes_on() {
    let home = Home::new("cpu:1", "");
    let _daemon = home.start(&[]);
    let stream = UnixStream::connect(home.socket()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let huge = vec![b'x'; 10 << 20];
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        ("truncated JSON", b"{\"v\":1,\"command\":\"sta".to_vec()),
        (
            "wrong type",
            b"{\"v\":1,\"command\":\"cancel\",\"job\":5}".to_vec(),
        ),
        ("10 MB line", huge),
        (
            "unknown command",
            b"{\"v\":1,\"command\":\"reboot\"}".to_vec(),
        ),
        (
            "binary garbage",
            b"\x00\xff\xfe\x01\x7fgarbage\x80".to_vec(),
        ),
        ("wrong version", b"{\"v\":99,\"command\":\"list\"}".to_vec()),
        ("no version", b"{\"command\":\"list\"}".to_vec()),
        ("not an object", b"[1,2,3]".to_vec()),
        ("empty line", Vec::new()),
    ];
    let mut line = String::new();
    let mut reply = |reader: &mut BufReader<UnixStream>| -> Reply {
        line.clear();
        reader.read_line(&mut line).unwrap();
        serde_json::from_str::<Response>(&line)
            .unwrap_or_else(|e| panic!("{e}: {line}"))
            .reply
    };
    for (what, mut message) in corpus {
        message.push(b'\n');
        writer.write_all(&message).unwrap();
        match reply(&mut reader) {
            Reply::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::BadRequest, "{what}: {message}")
            }
            other => panic!("{what}: {other:?}"),
        }
        writer
            .write_all(b"{\"v\":1,\"command\":\"status\"}\n")
            .unwrap();
        assert!(
            matches!(reply(&mut reader), Reply::Daemon { .. }),
            "status after {what}"
        );
    }
    // A job that does not exist is its own kind of error.
    writer
        .write_all(b"{\"v\":1,\"command\":\"status\",\"job\":\"77\"}\n")
        .unwrap();
    assert!(matches!(
        reply(&mut reader),
        Reply::Error {
            kind: ErrorKind::NoSuchJob,
            ..
        }
    ));
}

#[test]
fn data_outside_the_allowed_roots_jobs_across_hosts_and_diagnostics_are_refused() {
    let home = Home::new("cpu:1", "");
    let _daemon = home.start(&[]);
    let outside = tempfile::tempdir().unwrap();
    let repo = gnc_tests::repo_root();
    for root in [
        outside.path().to_path_buf(),
        repo.join("data/../examples"),
        repo.join("no-such-dir"),
    ] {
        let toml = gnc_tests::tiny_cnn_job("gd_root", "kind = \"baseline\"").replace(
            "root = \"data/fashion-mnist\"",
            &format!("root = \"{}\"", root.display()),
        );
        let spec = JobSpec::from_toml(&toml, "test").unwrap();
        assert_eq!(spec.data.root.as_deref(), Some(root.as_path()));
        match home.client().request(Command::Submit {
            spec: Box::new(spec),
            devices: None,
        }) {
            Err(ClientError::Daemon { kind, message }) => {
                assert_eq!(kind, ErrorKind::BadSpec, "{message}");
                assert!(message.contains("data.root"), "{message}");
            }
            other => panic!("{}: {other:?}", root.display()),
        }
    }
    // A relative root (the client did not resolve it) is refused too.
    let spec = JobSpec::from_toml(
        &gnc_tests::tiny_cnn_job("gd_rel", "kind = \"baseline\""),
        "t",
    )
    .unwrap();
    assert!(matches!(
        home.client().request(Command::Submit {
            spec: Box::new(spec),
            devices: None
        }),
        Err(ClientError::Daemon {
            kind: ErrorKind::BadSpec,
            ..
        })
    ));
    // A job across hosts, where the daemon has no hosts: refused by name.
    let mut spec = JobSpec::from_toml(&gnc_tests::tiny_job("gd_hosts", gnc_method()), "t").unwrap();
    spec.parallel.hosts = Some("cluster.hosts".into());
    match home.client().request(Command::Submit {
        spec: Box::new(spec),
        devices: None,
    }) {
        Err(ClientError::Daemon { kind, message }) => {
            assert_eq!(kind, ErrorKind::BadSpec, "{message}");
            assert!(
                message.contains("parallel.hosts = cluster.hosts: this gncd has no hosts"),
                "{message}"
            );
        }
        other => panic!("hosts: {other:?}"),
    }
    // So are diagnostics, which need every worker in one process.
    let mut spec = JobSpec::from_toml(&gnc_tests::tiny_job("gd_diag", gnc_method()), "t").unwrap();
    spec.diagnostics = Some(gnc_proto::DiagnosticsSpec {
        every_iterations: 2,
        examples: 64,
        perturbed_examples: 64,
        smoothness_steps: 8,
    });
    match home.client().request(Command::Submit {
        spec: Box::new(spec),
        devices: None,
    }) {
        Err(ClientError::Daemon { kind, message }) => {
            assert_eq!(kind, ErrorKind::BadSpec, "{message}");
            assert!(message.contains("[diagnostics]: gncd"), "{message}");
        }
        other => panic!("diagnostics: {other:?}"),
    }
    match home.client().request(Command::List {}) {
        Ok(Reply::Jobs { jobs }) => assert!(jobs.is_empty(), "{jobs:?}"),
        other => panic!("list: {other:?}"),
    }
}

/// A spec is checked at submission and again when its job starts: its data may change while
/// it waits in the queue.
#[test]
fn a_queued_job_whose_data_went_away_fails_at_its_start_naming_the_file() {
    let _serial = mp_support::serial();
    let repo = gnc_tests::repo_root();
    let data = tempfile::tempdir_in(repo.join("data")).unwrap();
    for file in std::fs::read_dir(repo.join("data/fashion-mnist")).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), data.path().join(file.file_name())).unwrap();
    }
    let home = Home::new("cpu:1", "");
    let _daemon = home.start(&[]);
    let first = home.submit(&long_job("gd_first", 16384));
    home.watch_until(first.id, |j| j.state == JobState::Running);
    let toml = gnc_tests::tiny_cnn_job("gd_gone", "kind = \"baseline\"").replace(
        "root = \"data/fashion-mnist\"",
        &format!("root = \"{}\"", data.path().display()),
    );
    let second = home.submit(&toml);
    assert_eq!(second.state, JobState::Queued);
    std::fs::remove_file(data.path().join("train-images-idx3-ubyte.gz")).unwrap();
    home.client()
        .request(Command::Cancel {
            job: first.id.to_string(),
        })
        .unwrap();
    let ended = home.watch_until(second.id, |j| j.state.is_final());
    assert_eq!(ended.state, JobState::Failed, "{ended:?}");
    let reason = ended.reason.unwrap_or_default();
    assert!(
        reason.contains("data.root") && reason.contains("train-images-idx3-ubyte"),
        "{reason}"
    );
}

#[test]
fn a_second_daemon_on_a_live_socket_is_refused() {
    let home = Home::new("cpu:1", "");
    let _daemon = home.start(&[]);
    let output = Home::command()
        .arg("--config")
        .arg(home.config())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already listening"), "{stderr}");
    // The first one still serves.
    assert!(matches!(
        home.client().request(Command::Status { job: None }),
        Ok(Reply::Daemon { .. })
    ));
}

#[test]
fn a_reload_applies_a_new_config_and_keeps_the_old_one_when_the_new_file_is_invalid() {
    let home = Home::new("cpu:2", "");
    let daemon = home.start(&[]);
    let devices = || match home.client().request(Command::Status { job: None }) {
        Ok(Reply::Daemon { daemon }) => daemon.devices,
        other => panic!("status: {other:?}"),
    };
    // A reload is asynchronous to the signal: poll for its effect.
    let eventually =
        |what: &str, done: &dyn Fn() -> bool| home.eventually(what, || done().then_some(()));
    assert_eq!(devices(), "cpu:2");

    let good = std::fs::read_to_string(home.config())
        .unwrap()
        .replace("\"cpu:2\"", "\"cpu:1\"");
    std::fs::write(home.config(), &good).unwrap();
    // As the unit's ExecReload does it: no `kill` binary needed.
    let reload = |pid: &str| {
        Home::command()
            .args(["reload", "--pid", pid])
            .output()
            .unwrap()
    };
    let output = reload(&daemon.pid().to_string());
    assert!(output.status.success(), "{output:?}");
    eventually("the reload to cpu:1", &|| devices() == "cpu:1");
    assert!(home.logs().contains("devices"), "{}", home.logs());

    std::fs::write(home.config(), format!("{good}max_restart = 2\n")).unwrap();
    daemon.signal("HUP");
    eventually("the invalid file's error in the log", &|| {
        let logs = home.logs();
        logs.contains("max_restart") && logs.contains("keeping the current config")
    });
    assert_eq!(devices(), "cpu:1", "the config before the bad file is kept");

    // A pid that names no process is an error that says so.
    let output = reload("0");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--pid 0 is not a process id"), "{stderr}");
}

#[test]
fn at_the_connection_limit_the_longest_idle_client_makes_room_and_busy_ones_are_kept() {
    let _serial = mp_support::serial();
    let home = Home::new("cpu:1", "max_connections = 3");
    let _daemon = home.start(&[]);
    let status = || home.client().request(Command::Status { job: None });
    // Three clients that got an answer and keep their connections open, sending nothing, are
    // the limit. (A connection that just closed counts until its thread has seen the hang-up,
    // so a client may have to try again.)
    let answered = |what: &str| {
        home.eventually(what, || {
            let mut client = home.client();
            let answered = client.request(Command::Status { job: None });
            matches!(answered, Ok(Reply::Daemon { .. })).then_some(client)
        })
    };
    let mut idle: Vec<_> = (0..3).map(|_| answered("an idle client")).collect();
    // A fourth client with a request is served, in the place of one of the idle ones (the one
    // idle the longest: which that is depends on when their threads last got to wait, so the
    // order is checked in gncd's unit tests), which is told why its connection closes; the
    // other idle ones are kept. A connection counts as idle once its thread waits for the next
    // request, which may come a moment after its client has the answer (on a loaded machine,
    // a fourth client can find none idle yet, and is refused): it tries again.
    home.eventually("a fourth client served in an idle one's place", || {
        matches!(status(), Ok(Reply::Daemon { .. })).then_some(())
    });
    let mut closed = 0;
    for client in &mut idle {
        match client.request(Command::Status { job: None }) {
            Ok(Reply::Daemon { .. }) => {}
            Err(ClientError::Daemon {
                kind: ErrorKind::Busy,
                message,
            }) => {
                assert!(
                    message.contains("sent no request") && message.contains("max_connections"),
                    "{message}"
                );
                closed += 1;
            }
            other => panic!("an idle client: {other:?}"),
        }
    }
    assert_eq!(closed, 1, "exactly one idle connection makes room");
    drop(idle);

    // Clients that are being served — here three `watch` streams of a running job — are never
    // closed: a fourth is told busy, and gncctl says so with "unavailable, try again".
    let job = home.submit(&long_job("gd_busy", 8192));
    let watchers: Vec<_> = (0..3)
        .map(|_| {
            home.eventually("a watch stream below the limit", || {
                let mut client = home.client();
                client
                    .send(Command::Watch {
                        job: job.id.to_string(),
                        from: 0,
                    })
                    .ok()?;
                matches!(client.next_reply(), Ok(Some(Reply::Progress { .. }))).then_some(client)
            })
        })
        .collect();
    match status() {
        Err(ClientError::Daemon {
            kind: ErrorKind::Busy,
            message,
        }) => assert!(
            message.contains("3 connections") && message.contains("max_connections"),
            "{message}"
        ),
        other => panic!("expected a busy error, got {other:?}"),
    }
    let output = gnc_tests::gncctl()
        .arg("--socket")
        .arg(home.socket())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(69),
        "busy is 'unavailable, try again'"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("max_connections"), "{stderr}");
    assert!(
        home.logs().contains("none of them is idle"),
        "{}",
        home.logs()
    );

    // The job ends, so do the streams, and their threads serve again.
    for mut watcher in watchers {
        while let Ok(Some(_)) = watcher.next_reply() {}
    }
    home.eventually("a freed connection thread serving again", || {
        matches!(status(), Ok(Reply::Daemon { .. })).then_some(())
    });
}

#[test]
fn validate_checks_the_config() {
    let home = Home::new("cpu:1", "");
    let ok = Home::command()
        .args(["validate", "--config"])
        .arg(home.config())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = home.dir.path().join("bad.toml");
    std::fs::write(&bad, "devices = \"cpu:1\"\nmax_restart = 2\n").unwrap();
    let output = Home::command()
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("max_restart"), "{stderr}");
}

#[test]
fn systemd_is_told_ready_status_and_watchdog() {
    let _serial = mp_support::serial();
    let home = Home::new("cpu:2", "hang_timeout_seconds = 600");
    let notify_path = home.dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    // Only a guard against a daemon that never notifies; the assertions do not time.
    notify
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    // The job's worker 1 stops as iteration 2 begins, so it is running whenever we look.
    let _daemon = home.start(&[
        ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "200000"),
        ("GNC_TEST_HANG_AT", "1:2"),
    ]);
    let job = home.submit(&mp_support::job("gd_notify", gnc_method(), 16, ""));
    let (mut ready, mut status, mut watchdog) = (false, false, false);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !(ready && status && watchdog) {
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{e}; datagrams so far: {seen:?}"));
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        for line in message.lines() {
            ready |= line == "READY=1";
            watchdog |= line == "WATCHDOG=1";
            status |= line.starts_with("STATUS=")
                && line.contains(&format!("running job {} (gd_notify)", job.id));
        }
        seen.push(message);
    }
}

#[test]
fn an_onnx_job_runs_under_gncd_with_gncctl_runs_hash_and_its_model_must_be_allowed() {
    let _serial = mp_support::serial();
    let home = Home::new("cpu:2", "");
    // The model under the allowed root (the repository's data/), as an operator would put it.
    let allowed = gnc_tests::repo_root()
        .join("data")
        .join(format!("byo-gncd-test-{}", std::process::id()));
    struct Removed(std::path::PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _removed = Removed(allowed.clone());
    let outside = home.dir.path().join("models");
    for dir in [&allowed, &outside] {
        let o = gnc_tests::venv_python()
            .arg(gnc_tests::repo_root().join("examples/byo/export.py"))
            .arg("--out")
            .arg(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let toml = |dir: &std::path::Path| {
        gnc_tests::tiny_cnn_job("gd_onnx", gnc_method())
            .replace(
                "kind = \"vgg\"\nchannels = [4, 8]",
                &format!(
                    "kind = \"onnx\"\npath = \"{}\"",
                    dir.join("resnet.onnx").display()
                ),
            )
            .replace(
                "root = \"data/fashion-mnist\"",
                &format!(
                    "root = \"{}\"",
                    gnc_tests::repo_root().join("data/fashion-mnist").display()
                ),
            )
    };
    let expected = reference_hash(home.dir.path(), "gd_onnx", &toml(&allowed));
    let _daemon = home.start(&[]);
    let job = home.submit(&toml(&allowed));
    let done = home.wait_done(job.id);
    assert_eq!(done.params_sha256.as_deref(), Some(expected.as_str()));
    // gncd pinned the file it was given (this client sent no SHA-256): the job's record names it.
    let recorded = std::fs::read_to_string(done.output_dir.join("spec.json")).unwrap();
    let model = std::fs::read(allowed.join("resnet.onnx")).unwrap();
    assert!(
        recorded.contains(&gnc_onnx::sha256_hex(&model)),
        "{recorded}"
    );
    let spec = JobSpec::from_toml(&toml(&outside), "test").unwrap();
    match home.client().request(Command::Submit {
        spec: Box::new(spec),
        devices: None,
    }) {
        Err(ClientError::Daemon { message, .. }) => assert!(
            message.contains("model.path") && message.contains("is not under an allowed data root"),
            "{message}"
        ),
        other => panic!("a model outside the allowed roots was accepted: {other:?}"),
    }
}
