//! The processes a process has started, and theirs, found in /proc: `mpirun` puts each `ssh`
//! it starts to reach another host in a process group of its own, so killing `mpirun`'s group
//! misses them, and an `ssh` to a host that has dropped off the network would otherwise hang
//! on (holding the launcher's stderr) until TCP gives up, a quarter of an hour later.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Descendants of a process at one moment, each with its start time, so that a later kill
/// cannot hit a process that has since taken over a pid.
pub struct Descendants(Vec<(u32, u64)>);

/// (parent pid, start time) of `pid`: fields 4 and 22 of /proc/PID/stat.
fn parent_and_start(pid: u32) -> Option<(u32, u64)> {
    let fields = crate::group::stat_fields(pid)?;
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

impl Descendants {
    /// Every process below `root` now.
    pub fn of(root: u32) -> Descendants {
        let processes: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| parent_and_start(pid).map(|(ppid, start)| (pid, ppid, start)))
            .collect();
        let mut found: Vec<(u32, u64)> = Vec::new();
        let mut frontier = vec![root];
        while let Some(parent) = frontier.pop() {
            for &(pid, ppid, start) in &processes {
                if ppid == parent && !found.iter().any(|&(p, _)| p == pid) {
                    found.push((pid, start));
                    frontier.push(pid);
                }
            }
        }
        Descendants(found)
    }

    /// SIGKILLs those that still run (the same processes: same pid and start time).
    pub fn kill(&self) {
        for &(pid, start) in &self.0 {
            if parent_and_start(pid).is_some_and(|(_, s)| s == start) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// A grandchild in a process group of its own (as mpirun's ssh) is found and killed.
    #[test]
    fn a_grandchild_in_its_own_group_is_found_and_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "setsid sleep 60 & echo $! > {}; wait",
                pidfile.display()
            ))
            .process_group(0)
            .spawn()
            .unwrap();
        let began = Instant::now();
        let grandchild: u32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break pid;
            }
            assert!(began.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        };
        let found = Descendants::of(child.id());
        assert!(
            found.0.iter().any(|&(p, _)| p == grandchild),
            "{:?}",
            found.0
        );
        found.kill();
        let _ = child.wait();
        while parent_and_start(grandchild).is_some_and(|_| {
            // A zombie until its parent (sh, or init once sh is gone) reaps it.
            std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                .is_ok_and(|s| !s.contains(") Z"))
        }) {
            assert!(began.elapsed() < Duration::from_secs(10), "still running");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
