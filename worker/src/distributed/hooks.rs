//! Deliberate fault injection for the crash and hang tests, read from the environment.
//! They act in generation 0 only, so the restarted group runs clean.
//!
//! - `GNC_TEST_KILL_AT=p:k[,p:k…]`: process p kills itself with SIGKILL as iteration k
//!   begins; `p:k:part` instead after writing its checkpoint part for iteration k (before
//!   announcing it; process 0 thus dies before the manifest exists).
//! - `GNC_TEST_HANG_AT=p:k`: process p stops forever (sleeping) as iteration k begins.
//! - `GNC_TEST_HANG_BEFORE_JOIN=r[,r…]`: MPI rank r stops forever (sleeping) before it
//!   arrives, so it never joins the job.
//!
//! Compiled in only with the `fault-injection` feature (`make test` enables it); a binary
//! without it ignores the variables, saying so, so no environment can crash a production run.

use nix::sys::signal::{Signal, raise};

pub const KILL_ENV: &str = "GNC_TEST_KILL_AT";
pub const HANG_ENV: &str = "GNC_TEST_HANG_AT";
pub const HANG_BEFORE_JOIN_ENV: &str = "GNC_TEST_HANG_BEFORE_JOIN";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Begin(u64),
    AfterPart(u64),
}

#[derive(Debug, Default)]
pub struct Hooks {
    kill: Vec<When>,
    hang: Vec<u64>,
    hang_before_join: bool,
}

fn parse(var: &str, process: usize) -> Vec<(u64, bool)> {
    let Ok(text) = std::env::var(var) else {
        return Vec::new();
    };
    text.split(',')
        .filter_map(|item| {
            let mut fields = item.split(':');
            let p: usize = fields.next()?.trim().parse().ok()?;
            let k: u64 = fields.next()?.trim().parse().ok()?;
            let part = fields.next().is_some_and(|f| f == "part");
            (p == process).then_some((k, part))
        })
        .collect()
}

impl Hooks {
    pub fn from_env(process: usize, generation: u64) -> Hooks {
        if generation != 0 {
            return Hooks::default();
        }
        if !cfg!(feature = "fault-injection") {
            for var in [KILL_ENV, HANG_ENV, HANG_BEFORE_JOIN_ENV] {
                if std::env::var_os(var).is_some() {
                    eprintln!(
                        "gnc-worker {process}: ignoring {var}: this build has no fault \
                         injection (the `fault-injection` feature of gnc-worker)"
                    );
                }
            }
            return Hooks::default();
        }
        Hooks {
            kill: parse(KILL_ENV, process)
                .into_iter()
                .map(|(k, part)| {
                    if part {
                        When::AfterPart(k)
                    } else {
                        When::Begin(k)
                    }
                })
                .collect(),
            hang: parse(HANG_ENV, process)
                .into_iter()
                .map(|(k, _)| k)
                .collect(),
            hang_before_join: std::env::var(HANG_BEFORE_JOIN_ENV)
                .is_ok_and(|ranks| ranks.split(',').any(|r| r.trim().parse() == Ok(process))),
        }
    }

    pub fn before_join(&self) {
        if self.hang_before_join {
            hang_forever();
        }
    }

    pub fn iteration_begins(&self, t: u64) {
        if self.kill.contains(&When::Begin(t)) {
            let _ = raise(Signal::SIGKILL);
        }
        if self.hang.contains(&t) {
            hang_forever();
        }
    }

    pub fn part_written(&self, iteration: u64) {
        if self.kill.contains(&When::AfterPart(iteration)) {
            let _ = raise(Signal::SIGKILL);
        }
    }
}

fn hang_forever() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
