//! The launcher's side of the progress channel of a job across hosts: each rank's heartbeat
//! file in the shared output directory (`gnc_contract::heartbeat`), read as a
//! [`GroupChannel`]; requests go to rank 0 as a file (`gnc_contract::request::file`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gnc_contract::heartbeat::{self, Beat};
use gnc_contract::request::{self, Action};

use crate::channel::{GroupChannel, Progress};

/// What the launcher last read of one rank's beat.
#[derive(Debug, Clone, Copy, Default)]
struct RankBeat {
    beat: Option<Beat>,
    /// When the beat counter last moved (by this launcher's clock).
    moved: Option<Instant>,
}

/// The launcher's side of the progress channel: the ranks' beats, read at most every
/// [`READ_EVERY`] (one small file per rank).
pub(super) struct Beats {
    out: PathBuf,
    ranks: Vec<RankBeat>,
    read_at: Option<Instant>,
}

const READ_EVERY: Duration = Duration::from_millis(100);

impl Beats {
    pub(super) fn new(out: PathBuf, ranks: usize) -> Beats {
        Beats {
            out,
            ranks: vec![RankBeat::default(); ranks],
            read_at: None,
        }
    }

    /// Reads every rank's file, unless that was done less than [`READ_EVERY`] ago.
    pub(super) fn refresh(&mut self) {
        if self.read_at.is_some_and(|t| t.elapsed() < READ_EVERY) {
            return;
        }
        let now = Instant::now();
        self.read_at = Some(now);
        for (rank, last) in self.ranks.iter_mut().enumerate() {
            let Some(beat) = heartbeat::read(&self.out, rank) else {
                continue;
            };
            if last.beat.is_none_or(|b| b.beat != beat.beat) {
                last.moved = Some(now);
            }
            last.beat = Some(beat);
        }
    }

    /// When rank `rank`'s beat counter last moved, by this launcher's clock.
    pub(super) fn moved(&self, rank: usize) -> Option<Instant> {
        self.ranks[rank].moved
    }

    fn beat(&self, rank: usize) -> Beat {
        self.ranks[rank].beat.unwrap_or_default()
    }
}

impl GroupChannel for Beats {
    fn processes(&self) -> usize {
        self.ranks.len()
    }

    fn progress(&self, rank: usize) -> Progress {
        let beat = self.beat(rank);
        Progress {
            begun: beat.begun,
            done: beat.done,
        }
    }

    fn pulse(&self) -> Vec<u64> {
        (0..self.ranks.len())
            .flat_map(|r| {
                let b = self.beat(r);
                [b.begun, b.done, b.checkpoint]
            })
            .collect()
    }

    fn last_checkpoint(&self) -> Option<u64> {
        // Rank 0 says so once every rank's part and the manifest are durable.
        self.beat(0).checkpoint.checked_sub(1)
    }

    fn post(&self, action: Action) -> bool {
        // Rank 0 takes the file at its next boundary; a request still lying there is
        // replaced, which is what a second request would ask for anyway.
        request::file::post(&self.out, action).is_ok()
    }

    fn clear_served(&self) {}
}
