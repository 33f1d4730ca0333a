//! Tying a child process's life to its launcher's: the kernel sends the child a signal when
//! the thread that started it ends, however it ends (`PR_SET_PDEATHSIG`, kept across exec).
//! Used for `mpirun`, which runs in a process group of its own (so that a terminal's Ctrl-C
//! reaches the launcher alone) and would otherwise go on training, unwatched, after a killed
//! launcher. Here because setting it must happen between fork and exec, which takes unsafe
//! code.

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::Signal;

/// Has `command`'s process receive `signal` when the calling thread ends (so call it from
/// the thread that will watch the child for its whole life). If the launcher has already
/// died by the time the child would start, the spawn fails instead.
pub fn die_with_launcher(command: &mut Command, signal: Signal) {
    let launcher = nix::unistd::getpid();
    let hook = move || -> std::io::Result<()> {
        nix::sys::prctl::set_pdeathsig(Some(signal))
            .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
        // The launcher may have died between the fork and the prctl: then no signal comes.
        if nix::unistd::getppid() != launcher {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec, where only async-signal-safe
    // work is sound: it makes two system calls (prctl, getppid) and builds errors from raw
    // codes, allocating nothing and taking no lock.
    unsafe {
        command.pre_exec(hook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_child_dies_with_the_thread_that_started_it() {
        let pid = std::thread::spawn(|| {
            let mut command = Command::new("sleep");
            command.arg("60");
            die_with_launcher(&mut command, Signal::SIGKILL);
            let child = command.spawn().unwrap();
            let pid = child.id();
            // The child is not waited for by this thread, which ends now.
            std::mem::forget(child);
            pid
        })
        .join()
        .unwrap();
        let start = Instant::now();
        // Dead (a zombie of this process, reaped here) within a few seconds.
        let status = loop {
            match nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid as i32),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            )
            .unwrap()
            {
                nix::sys::wait::WaitStatus::StillAlive => {
                    assert!(start.elapsed() < Duration::from_secs(5), "still alive");
                    std::thread::sleep(Duration::from_millis(10));
                }
                status => break status,
            }
        };
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Signaled(
                nix::unistd::Pid::from_raw(pid as i32),
                Signal::SIGKILL,
                false
            )
        );
    }
}
