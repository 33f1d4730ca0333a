//! The worker processes of one generation: spawned with the pinned environment, polled with
//! `waitpid` (`Child::try_wait`), and killed together. Dropping a group kills and reaps every
//! process still running, so no error path leaves workers behind.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use gnc_proto::repro::Level;

/// What polling the group found.
pub enum Poll {
    Running,
    AllSucceeded,
    /// The first process found dead with a failure status.
    Died {
        process: usize,
        status: ExitStatus,
    },
}

pub struct Group {
    children: Vec<Option<Child>>,
    pids: Vec<u32>,
}

impl Group {
    /// Starts one process per entry of `args`, in order, with `level`'s environment (the
    /// workers check it); their stderr goes to `stderr` if given, else to ours.
    pub fn spawn(
        bin: &Path,
        args: impl IntoIterator<Item = Vec<OsString>>,
        level: Level,
        stderr: Option<&std::fs::File>,
    ) -> std::io::Result<Group> {
        let mut group = Group {
            children: Vec::new(),
            pids: Vec::new(),
        };
        for args in args {
            let stderr = match stderr {
                Some(file) => Stdio::from(file.try_clone()?),
                None => Stdio::inherit(),
            };
            let mut command = Command::new(bin);
            level.apply(&mut command);
            let child = command
                .args(args)
                // A terminal's Ctrl-C reaches the supervisor alone, which turns it into a stop
                // with a checkpoint; the workers die with the supervisor (PR_SET_PDEATHSIG).
                .process_group(0)
                .stdin(Stdio::null())
                // stdout stays free for the CLI's own output (`--json`); errors go to stderr.
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()?;
            group.pids.push(child.id());
            group.children.push(Some(child));
        }
        Ok(group)
    }

    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// Whether process `p` has exited successfully.
    pub fn finished(&self, p: usize) -> bool {
        self.children[p].is_none()
    }

    /// Reaps whatever has exited.
    pub fn poll(&mut self) -> std::io::Result<Poll> {
        for (process, slot) in self.children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Some(status) = child.try_wait()? {
                *slot = None;
                if !status.success() {
                    return Ok(Poll::Died { process, status });
                }
            }
        }
        Ok(if self.children.iter().all(Option::is_none) {
            Poll::AllSucceeded
        } else {
            Poll::Running
        })
    }

    /// SIGKILLs every process still running and waits for each.
    pub fn kill_all(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
        }
        for slot in self.children.iter_mut() {
            if let Some(mut child) = slot.take() {
                let _ = child.wait();
            }
        }
    }
}

/// Whether process `pid` is stopped (SIGSTOP, a debugger): it cannot reach an iteration
/// boundary until someone continues it.
pub fn stopped(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s == "T" || s == "t"))
}

/// The fields of /proc/PID/stat after the command name, from STATE (field 3) on:
/// "PID (COMM) STATE PPID …", where COMM may hold spaces and parentheses. `None` once the
/// process is gone.
pub(crate) fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_dying_process_is_reported_and_the_rest_killed() {
        let sh = Path::new("/bin/sh");
        let args = [
            vec!["-c".into(), "exit 0".into()],
            vec!["-c".into(), "kill -9 $$".into()],
            vec!["-c".into(), "sleep 60".into()],
        ];
        let mut group = Group::spawn(sh, args, Level::default(), None).unwrap();
        let died = loop {
            match group.poll().unwrap() {
                Poll::Died { process, status } => break (process, status),
                Poll::AllSucceeded => panic!("process 1 was killed"),
                Poll::Running => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        assert_eq!(died.0, 1);
        assert_eq!(
            crate::launch::FailureCause::from_status(died.1),
            crate::launch::FailureCause::Signaled("SIGKILL".into())
        );
        let sleeper = group.pids()[2];
        group.kill_all();
        assert!(!Path::new(&format!("/proc/{sleeper}")).exists());
    }
}
