//! Which hosts of a job cannot be reached, asked directly: `mpirun`'s own messages name the
//! healthy hosts beside the failing one (and ssh's line that names it can be dozens of lines
//! up), so when a job across hosts does not start or stops progressing, the launcher logs in
//! to each remote host the way `mpirun` does (`ssh HOST true`, non-interactive, with a
//! timeout that also bounds a host whose sshd accepts and then hangs) and names the ones
//! that fail, with ssh's reason.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::hostfile::Host;

/// How long one host may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A host that did not let the launcher in, and ssh's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub host: String,
    pub why: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.host, self.why)
    }
}

/// `hosts` for a message: "gnch2 (ssh: connect to host gnch2 port 22: Connection refused), …".
pub fn list(hosts: &[Unreachable]) -> String {
    hosts
        .iter()
        .map(Unreachable::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The hosts among `hosts` that do not answer, each with the reason; hosts that are this
/// machine are not asked.
pub fn unreachable(hosts: &[Host]) -> Vec<Unreachable> {
    let mut names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    names.dedup();
    let asked: Vec<_> = names
        .into_iter()
        .filter(|name| !is_this_machine(name))
        .map(|name| {
            let name = name.to_string();
            std::thread::spawn(move || ask(&name).err().map(|why| Unreachable { host: name, why }))
        })
        .collect();
    asked
        .into_iter()
        .filter_map(|answer| answer.join().ok().flatten())
        .collect()
}

fn is_this_machine(name: &str) -> bool {
    let own = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    name == "localhost" || name.starts_with("127.") || name == "::1" || name == own.trim()
}

/// `Ok` if `host` lets us in within [`TIMEOUT`]; else ssh's last line, or the timeout.
fn ask(host: &str) -> Result<(), String> {
    let mut child = Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            host,
            "true",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut text = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = stderr.read_to_string(&mut text);
                }
                let line = text.lines().rev().find(|l| !l.trim().is_empty());
                return Err(line.map_or_else(|| format!("ssh {status}"), str::to_string));
            }
            Ok(None) if start.elapsed() < TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer within {TIMEOUT:?}: its sshd accepts but does not respond, or \
                     the network drops the packets"
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_not_asked_and_an_unknown_host_is_named_with_ssh_s_reason() {
        let host = |name: &str| Host {
            name: name.into(),
            slots: 1,
        };
        assert!(unreachable(&[host("localhost"), host("127.0.0.1")]).is_empty());
        let named = unreachable(&[host("localhost"), host("nosuchhost.invalid")]);
        assert_eq!(named.len(), 1, "{named:?}");
        assert_eq!(named[0].host, "nosuchhost.invalid");
        assert!(
            list(&named).starts_with("nosuchhost.invalid (ssh: Could not resolve hostname"),
            "{named:?}"
        );
    }
}
