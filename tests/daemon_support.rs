//! Helpers for the `gncd` tests: a real daemon on a temporary socket and state directory,
//! talked to with the real protocol client.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use gnc_proto::JobSpec;
use gnc_proto::client::Client;
use gnc_proto::socket::{Command as Cmd, JobInfo, JobState, Reply};

/// How long a daemon may take to start listening (loaded machine, cold page cache).
const START_LIMIT: Duration = Duration::from_secs(30);

/// A temporary home for daemons: config, state directory and socket.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    /// A config giving `devices`, with `data/` of the repository as the one allowed root;
    /// `extra` adds lines.
    pub fn new(devices: &str, extra: &str) -> Home {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "devices = \"{devices}\"\nstate_dir = \"{state}\"\nsocket = \"{socket}\"\n\
             allowed_data_roots = [\"{data}\"]\n{extra}\n",
            state = dir.path().join("state").display(),
            socket = dir.path().join("gncd.sock").display(),
            data = gnc_tests::repo_root().join("data").display(),
        );
        std::fs::write(dir.path().join("gncd.toml"), config).unwrap();
        Home { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("gncd.toml")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("gncd.sock")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn job_dir(&self, id: u64) -> PathBuf {
        self.state().join("jobs").join(id.to_string())
    }

    /// Starts `gncd --config` here with extra environment variables and waits until it
    /// accepts connections.
    pub fn start(&self, env: &[(&str, &str)]) -> Daemon {
        let mut command = Self::command();
        command
            .arg("--config")
            .arg(self.config())
            .envs(env.iter().copied());
        self.start_command(command)
    }

    pub fn command() -> Command {
        let path = gnc_tests::bin_dir().join("gncd");
        assert!(
            path.is_file(),
            "{} is missing: cargo build --release",
            path.display()
        );
        let mut c = Command::new(path);
        c.stdin(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info");
        c
    }

    pub fn start_command(&self, mut command: Command) -> Daemon {
        let log = std::fs::File::create(self.dir.path().join(format!(
            "gncd-{}.log",
            std::fs::read_dir(self.dir.path()).unwrap().count()
        )))
        .unwrap();
        command.stderr(log);
        let mut child = command.spawn().expect("gncd starts");
        let started = Instant::now();
        while UnixStream::connect(self.socket()).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("gncd exited before listening: {status}; {}", self.logs());
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "gncd did not listen: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child: Some(child) }
    }

    /// Every daemon log written here (for failure messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut paths: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        paths.sort();
        for p in paths {
            out += &format!(
                "--- {}\n{}",
                p.display(),
                std::fs::read_to_string(&p).unwrap()
            );
        }
        out
    }

    /// Calls `attempt` until it gives a value, and returns it; fails naming `what`, with the
    /// daemon's logs, if none comes within 30 s (a bound for a stuck daemon, not a timing
    /// assertion).
    pub fn eventually<T>(&self, what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(value) = attempt() {
                return value;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: never happened; {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket()).expect("connects to gncd")
    }

    pub fn submit(&self, spec_toml: &str) -> JobInfo {
        let spec = JobSpec::from_toml(spec_toml, "test").unwrap();
        match self.client().request(Cmd::Submit {
            spec: Box::new(spec),
            devices: None,
        }) {
            Ok(Reply::Job { job }) => job,
            other => panic!("submit: {other:?}"),
        }
    }

    /// Follows the job's `watch` stream until `until` holds for the job (or the stream ends,
    /// which it does when the job stops); returns the last state seen.
    pub fn watch_until(&self, id: u64, until: impl Fn(&JobInfo) -> bool) -> JobInfo {
        let mut client = self.client();
        client
            .send(Cmd::Watch {
                job: id.to_string(),
                from: 0,
            })
            .unwrap();
        let mut last = None;
        loop {
            match client.next_reply() {
                Ok(Some(Reply::Progress { job, .. })) => {
                    if until(&job) {
                        return job;
                    }
                    last = Some(job);
                }
                Ok(None) => return last.expect("watch sent at least one progress reply"),
                other => panic!("watch: {other:?}; {}", self.logs()),
            }
        }
    }

    /// Waits for the job to stop, returning it; panics unless it is done.
    pub fn wait_done(&self, id: u64) -> JobInfo {
        let job = self.watch_until(id, |j| j.state.is_final() || j.state == JobState::Paused);
        assert_eq!(job.state, JobState::Done, "{job:?}\n{}", self.logs());
        job
    }
}

/// A running `gncd`, killed when dropped.
pub struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the daemon to exit by itself, up to `limit`; returns its status and how
    /// long it took.
    pub fn wait(mut self, limit: Duration) -> (ExitStatus, Duration) {
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("gncd did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes the spec to `dir` and runs it with `gncctl run` (in-process): the reference hash.
pub fn reference_hash(dir: &Path, name: &str, toml: &str) -> String {
    let spec = gnc_tests::write_spec(dir, name, toml);
    let summary = gnc_tests::run_job(&spec, &dir.join(format!("{name}-reference")), &[]);
    summary["params_sha256"].as_str().unwrap().to_string()
}

/// Checkpoint iterations in a job's output directory (complete ones: their manifest).
pub fn checkpoints(out: &Path) -> Vec<u64> {
    let mut found: Vec<u64> = std::fs::read_dir(out.join("checkpoints"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("ckpt-")?
                        .strip_suffix(".json")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}
