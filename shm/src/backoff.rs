//! Waiting without a mutex: spin briefly (the peer is usually a few hundred nanoseconds
//! away), then yield the core (we may share it with the peer we wait for), then sleep in
//! growing steps up to 1 ms (the peer is computing a gradient). Gives up after a timeout.

use std::time::{Duration, Instant};

const SPIN_ROUNDS: u32 = 10;
const YIELD_ROUNDS: u32 = 20;
const FIRST_SLEEP: Duration = Duration::from_micros(20);
const LONGEST_SLEEP: Duration = Duration::from_millis(1);

pub(crate) struct Backoff {
    started: Instant,
    timeout: Duration,
    round: u32,
}

impl Backoff {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            started: Instant::now(),
            timeout,
            round: 0,
        }
    }

    /// Waits a little. `Err(waited)` once the timeout has passed.
    pub(crate) fn snooze(&mut self) -> Result<(), Duration> {
        let waited = self.started.elapsed();
        if waited >= self.timeout {
            return Err(waited);
        }
        if self.round < SPIN_ROUNDS {
            for _ in 0..1u32 << self.round {
                std::hint::spin_loop();
            }
        } else if self.round < SPIN_ROUNDS + YIELD_ROUNDS {
            std::thread::yield_now();
        } else {
            let doublings = (self.round - SPIN_ROUNDS - YIELD_ROUNDS).min(8);
            std::thread::sleep((FIRST_SLEEP * (1 << doublings)).min(LONGEST_SLEEP));
        }
        self.round = self.round.saturating_add(1);
        Ok(())
    }
}
