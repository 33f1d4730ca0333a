//! Hosts that really are separate: two network namespaces joined by a veth pair, each with its
//! own sshd and its own hostname (a UTS namespace), on this machine. The launcher runs in the
//! first; `mpirun` logs in to both over ssh, as on a cluster. They share this machine's file
//! system, as cluster hosts share the output directory.
//!
//! A host cut off for good in the middle of a job (its link taken down; its ranks keep running,
//! blocked in an exchange and still reaching the shared output directory): the launcher sees
//! no progress within `--hang-timeout`, ends the job, probes the hosts, and goes on without the
//! lost one from the last checkpoint; the cut-off ranks exit once the launcher's beat says
//! their launch is over; the job ends with the uninterrupted run's bits.
//!
//! Needs root, `ip` with network namespaces, `unshare` and `sshd` (openssh-server, which
//! `make test` installs); skipped, saying why, without them.

#[allow(dead_code)]
#[path = "mp_support.rs"]
mod mp_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mp_support::*;

const SSHD: &str = "/usr/sbin/sshd";

/// Two namespaces, `<tag>1` and `<tag>2`, at 10.77.0.1 and 10.77.0.2, each with an sshd that
/// lets this test's key in; removed (with every process in them) when dropped.
struct Hosts {
    dir: tempfile::TempDir,
    tag: String,
    sshd: Vec<Child>,
}

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("network namespaces need root".into());
    }
    if !Path::new(SSHD).exists() {
        return Some(format!(
            "no {SSHD} (openssh-server; `make test` installs it)"
        ));
    }
    for tool in ["ip", "unshare", "ssh-keygen"] {
        if !Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return Some(format!("no `{tool}`"));
        }
    }
    None
}

fn sh(command: &str) -> Result<(), String> {
    let output = Command::new("sh").args(["-c", command]).output().unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{command}`: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Hosts {
    fn address(n: usize) -> String {
        format!("10.77.0.{n}")
    }

    fn namespace(&self, n: usize) -> String {
        format!("{}{n}", self.tag)
    }

    /// Ok(None) where namespaces cannot be made here (with the reason printed).
    fn new() -> Option<Hosts> {
        if let Some(why) = skip_reason() {
            eprintln!("skipped: {why}");
            return None;
        }
        let hosts = Hosts {
            dir: tempfile::tempdir().unwrap(),
            tag: format!("gnx{}n", std::process::id() % 100_000),
            sshd: Vec::new(),
        };
        match hosts.set_up() {
            Ok(hosts) => Some(hosts),
            Err(why) => {
                eprintln!("skipped: cannot build two hosts as network namespaces: {why}");
                None
            }
        }
    }

    fn set_up(mut self) -> Result<Hosts, String> {
        let (a, b) = (self.namespace(1), self.namespace(2));
        sh(&format!("ip netns add {a} && ip netns add {b}"))?;
        sh(&format!(
            "ip link add {a}v type veth peer name {b}v && ip link set {a}v netns {a} && \
             ip link set {b}v netns {b}"
        ))?;
        for n in [1, 2] {
            let ns = self.namespace(n);
            let addr = Hosts::address(n);
            sh(&format!(
                "ip -n {ns} addr add {addr}/24 dev {ns}v && ip -n {ns} link set lo up && \
                 ip -n {ns} link set {ns}v up"
            ))?;
        }
        let d = self.dir.path().to_str().unwrap().to_owned();
        sh(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f {d}/id && ssh-keygen -q -t ed25519 -N '' -f \
             {d}/hostkey && cp {d}/id.pub {d}/authorized_keys && mkdir -p /run/sshd {d}/bin"
        ))?;
        std::fs::write(
            format!("{d}/ssh_config"),
            format!(
                "Host *\n  IdentityFile {d}/id\n  StrictHostKeyChecking no\n  \
                 UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  ConnectTimeout 5\n"
            ),
        )
        .unwrap();
        // mpirun and the launcher's probe both run `ssh` from PATH: this one uses the key.
        let ssh = format!("{d}/bin/ssh");
        std::fs::write(
            &ssh,
            format!("#!/bin/sh\nexec /usr/bin/ssh -F {d}/ssh_config \"$@\"\n"),
        )
        .unwrap();
        sh(&format!("chmod +x {ssh}"))?;
        for n in [1, 2] {
            let config = format!("{d}/sshd{n}.conf");
            std::fs::write(
                &config,
                format!(
                    "ListenAddress {}\nHostKey {d}/hostkey\nAuthorizedKeysFile \
                     {d}/authorized_keys\nPermitRootLogin prohibit-password\nStrictModes no\n\
                     UsePAM no\nPidFile {d}/sshd{n}.pid\n",
                    Hosts::address(n)
                ),
            )
            .unwrap();
            let log = std::fs::File::create(format!("{d}/sshd{n}.log")).unwrap();
            let child = self
                .in_host(n, &[SSHD, "-D", "-e", "-f", &config])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .map_err(|e| e.to_string())?;
            self.sshd.push(child);
        }
        // Both answer before the job starts.
        for n in [1, 2] {
            let began = Instant::now();
            while !self
                .in_host(
                    1,
                    &[&ssh, "-o", "BatchMode=yes", &Hosts::address(n), "true"],
                )
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                if began.elapsed() > Duration::from_secs(20) {
                    return Err(format!("sshd on {} does not answer", Hosts::address(n)));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(self)
    }

    /// `program args…` on host `n`: in its network namespace, under its own hostname.
    fn in_host(&self, n: usize, program: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(n)])
            .args(["unshare", "--uts", "sh", "-c"])
            .arg(format!(
                "hostname {}; exec \"$0\" \"$@\"",
                self.namespace(n)
            ))
            .args(program);
        command
    }

    /// A hostfile naming both hosts with `slots` each.
    fn hostfile(&self, slots: usize) -> PathBuf {
        let path = self.dir.path().join("hosts");
        let lines: String = [1, 2]
            .map(|n| format!("{} slots={slots}\n", Hosts::address(n)))
            .concat();
        std::fs::write(&path, lines).unwrap();
        path
    }

    /// `gncctl run SPEC --json --out OUT ARGS…` on host 1, with this test's ssh first in PATH.
    fn gncctl_on_first(&self, spec: &Path, out: &Path, args: &[&str]) -> Command {
        let template = gncctl_command(spec, out, args, &[]);
        let mut program = vec![template.get_program().to_str().unwrap().to_owned()];
        program.extend(template.get_args().map(|a| a.to_str().unwrap().to_owned()));
        let program: Vec<&str> = program.iter().map(String::as_str).collect();
        let mut command = self.in_host(1, &program);
        let path = std::env::var("PATH").unwrap_or_default();
        let bin = self.dir.path().join("bin");
        command
            .current_dir(gnc_tests::repo_root())
            .env("PATH", format!("{}:{path}", bin.display()))
            .envs(template.get_envs().filter_map(|(k, v)| Some((k, v?))));
        command
    }

    /// Takes host `n` off the network for good: its link goes down, and stays down.
    fn cut(&self, n: usize) {
        let ns = self.namespace(n);
        sh(&format!("ip -n {ns} link set {ns}v down")).unwrap();
    }

    /// The pids of the processes running in host `n`'s namespace.
    fn pids(&self, n: usize) -> Vec<u32> {
        let output = Command::new("ip")
            .args(["netns", "pids", &self.namespace(n)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in [1, 2] {
            for pid in self.pids(n) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for child in &mut self.sshd {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = sh(&format!(
            "ip netns del {}; ip netns del {}",
            self.namespace(1),
            self.namespace(2)
        ));
    }
}

/// The command lines of the gnc ranks running in host `n`.
fn ranks_on(hosts: &Hosts, n: usize) -> Vec<String> {
    hosts
        .pids(n)
        .into_iter()
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("gnc-mpi-worker") && !c.contains("orted"))
        .collect()
}

#[test]
fn a_host_cut_off_for_good_mid_run_is_left_out_and_the_job_ends_with_the_same_bits() {
    let _serial = serial();
    let Some(hosts) = Hosts::new() else { return };
    let name = "hosts_cut";
    let dir = tempfile::tempdir().unwrap();
    // 8 logical workers of 4, 3 epochs of 128 iterations; checkpoints every 4.
    let toml = gnc_tests::teacher_student_job(&gnc_tests::TinyJob {
        name,
        method: gnc_tests::METHODS[0].1,
        seed: 4,
        train_examples: 4096,
        test_examples: 64,
        workers: 8,
        small_batch: 4,
        parallel: "",
    });
    let spec = gnc_tests::write_spec(dir.path(), name, &toml);
    let out = dir.path().join("out");
    let hostfile = hosts.hostfile(2);
    let args = [
        "--hosts",
        hostfile.to_str().unwrap(),
        "--min-hosts",
        "1",
        "--hang-timeout",
        "10",
    ];
    let launcher = hosts
        .gncctl_on_first(&spec, &out, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = out.join("metrics.jsonl");
    let began = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 10 {
        assert!(began.elapsed() < Duration::from_secs(120), "no training");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ranks_on(&hosts, 2).len(), 2, "host 2 runs two ranks");
    hosts.cut(2);
    let cut = Instant::now();
    // Its stderr closes when every process that holds it has ended: mpirun's ssh to the cut-off
    // host included, which would hang on for TCP's quarter of an hour if nobody killed it.
    let output = launcher.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "the job ended {:.1} s after the cut",
        cut.elapsed().as_secs_f64()
    );
    assert!(
        cut.elapsed() < Duration::from_secs(300),
        "the job ended {:?} after the cut: {stderr}",
        cut.elapsed()
    );
    assert!(
        stderr.contains("made no progress")
            && stderr.contains("cannot reach 10.77.0.2 (ssh: ")
            && stderr
                .contains("continuing on 1 host(s) x 2 process(es) (10.77.0.1) from iteration"),
        "{stderr}"
    );
    // The cut-off ranks learnt from the launcher's beat that their launch was over.
    let left = Instant::now();
    while !ranks_on(&hosts, 2).is_empty() {
        assert!(
            left.elapsed() < Duration::from_secs(10),
            "ranks left on the cut-off host: {:?}",
            ranks_on(&hosts, 2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        hash(&summary(&output)),
        reference(dir.path(), &spec).0,
        "{stderr}"
    );
    assert_no_segments(name);
}
