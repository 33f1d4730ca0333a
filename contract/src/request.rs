//! Checkpoint and stop requests from the supervisor, and how the workers agree on the one
//! iteration boundary at which to act, without a lock and without a round of messages.
//!
//! The request word ([`crate::protocol::REQUEST_WORD`]) is in one of three states:
//! empty (0), *pending* (the supervisor posted an action) or *fixed* (a worker chose the
//! boundary). Boundary t is the point where a worker has completed t iterations and has not
//! begun iteration t. The first worker to see a pending request, at its boundary t, fixes
//! it at boundary t + 1 with a compare-exchange, and every worker acts when it reaches that
//! boundary. That is safe because no worker can be past boundary t + 1 yet: passing it
//! needs every block sum of iteration t, including that of the worker that is only at
//! boundary t. And every worker sees the fixed value by the time it gets there: the fixing
//! worker's compare-exchange comes before it publishes its iteration-t block sum (Release),
//! which the others must read (Acquire) before they can finish iteration t.
//!
//! Once every worker has begun iteration t + 1 the supervisor empties the word (a fixed
//! checkpoint request only; a stop ends the generation), so the next request can be posted.

use gnc_shm::ControlBlock;

use crate::protocol::REQUEST_WORD;

/// What the supervisor asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write a checkpoint and go on.
    Checkpoint,
    /// Write a checkpoint and end the run there (as `--stop-after` would).
    Stop,
}

/// The decoded request word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Empty,
    Pending(Action),
    /// Act at boundary `at`.
    Fixed {
        action: Action,
        at: u64,
    },
}

const ACTION_SHIFT: u32 = 62;
const FIXED: u64 = 1 << 61;
const AT_MASK: u64 = (1 << 48) - 1;

fn action_bits(action: Action) -> u64 {
    match action {
        Action::Checkpoint => 1 << ACTION_SHIFT,
        Action::Stop => 2 << ACTION_SHIFT,
    }
}

impl Request {
    pub fn encode(self) -> u64 {
        match self {
            Request::Empty => 0,
            Request::Pending(action) => action_bits(action),
            Request::Fixed { action, at } => {
                assert!(
                    at <= AT_MASK,
                    "iteration {at} does not fit the request word"
                );
                action_bits(action) | FIXED | at
            }
        }
    }

    pub fn decode(word: u64) -> Request {
        let action = match word >> ACTION_SHIFT {
            0 => return Request::Empty,
            1 => Action::Checkpoint,
            _ => Action::Stop,
        };
        if word & FIXED == 0 {
            Request::Pending(action)
        } else {
            Request::Fixed {
                action,
                at: word & AT_MASK,
            }
        }
    }
}

/// Worker side, at boundary `t`: fixes a pending request at `t + 1`, and returns the action
/// to take now if one is fixed at `t`.
pub fn at_boundary(control: &ControlBlock, t: u64) -> Option<Action> {
    let word = control.load(REQUEST_WORD);
    match Request::decode(word) {
        Request::Empty => None,
        Request::Pending(action) => {
            let fixed = Request::Fixed { action, at: t + 1 }.encode();
            // Losing the race is fine: another worker fixed it (at t + 1 too, or at t if it
            // is one boundary ahead — then it is for us to act now) or the supervisor
            // upgraded it to a stop (we fix that at our next look).
            match control.compare_exchange(REQUEST_WORD, word, fixed) {
                Ok(_) => None,
                Err(_) => at_boundary(control, t),
            }
        }
        Request::Fixed { action, at } => (at == t).then_some(action),
    }
}

/// Supervisor side: posts `action` unless the word is busy with another fixed request.
/// Returns whether `action` is now posted (or already was; a posted stop also covers a
/// checkpoint). A pending checkpoint is upgraded to a stop.
pub fn post(control: &ControlBlock, action: Action) -> bool {
    let word = control.load(REQUEST_WORD);
    let replace = match (Request::decode(word), action) {
        (Request::Empty, _) | (Request::Pending(Action::Checkpoint), Action::Stop) => true,
        (Request::Pending(posted) | Request::Fixed { action: posted, .. }, wanted) => {
            return posted == wanted || posted == Action::Stop;
        }
    };
    debug_assert!(replace);
    control
        .compare_exchange(REQUEST_WORD, word, Request::Pending(action).encode())
        .is_ok()
}

/// Supervisor side: empties a fixed checkpoint request once every worker has begun
/// iteration `at` (`min_begun` ≥ at + 1), i.e. has passed its boundary.
pub fn clear_passed(control: &ControlBlock, min_begun: u64) {
    let word = control.load(REQUEST_WORD);
    if let Request::Fixed {
        action: Action::Checkpoint,
        at,
    } = Request::decode(word)
        && min_begun > at
    {
        // Fails only if nothing is to be done (someone else changed it): fine.
        let _ = control.compare_exchange(REQUEST_WORD, word, 0);
    }
}

/// Across hosts there is no shared control block: the launcher posts a request as a file in
/// the output directory (which every host shares, as checkpoints need), and rank 0 takes it
/// at an iteration boundary and tells every rank ([`take`]).
pub mod file {
    use std::path::Path;

    use super::Action;
    use crate::protocol::MPI_REQUEST_FILE;

    fn word(action: Action) -> &'static str {
        match action {
            Action::Checkpoint => "checkpoint",
            Action::Stop => "stop",
        }
    }

    /// Launcher side: posts `action` (replacing any request not yet taken).
    pub fn post(out: &Path, action: Action) -> std::io::Result<()> {
        crate::atomic::write_atomic(&out.join(MPI_REQUEST_FILE), word(action).as_bytes())
    }

    /// Rank 0's side: the posted request, if any, now taken (renamed away first, so that a
    /// request posted meanwhile is not lost). A file that says neither word is an error
    /// naming its contents, and is taken too.
    pub fn take(out: &Path) -> Result<Option<Action>, String> {
        let posted = out.join(MPI_REQUEST_FILE);
        let taken = out.join(format!("{MPI_REQUEST_FILE}.taken"));
        match std::fs::rename(&posted, &taken) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot take {}: {e}", posted.display())),
            Ok(()) => {}
        }
        let text = std::fs::read_to_string(&taken).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&taken);
        [Action::Checkpoint, Action::Stop]
            .into_iter()
            .find(|&a| text.trim() == word(a))
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "{} says {:?}; a request is \"checkpoint\" or \"stop\"",
                    posted.display(),
                    text.trim()
                )
            })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_posted_request_is_taken_once_and_nonsense_is_named() {
            let dir = tempfile::tempdir().unwrap();
            assert_eq!(take(dir.path()), Ok(None));
            post(dir.path(), Action::Checkpoint).unwrap();
            post(dir.path(), Action::Stop).unwrap();
            assert_eq!(take(dir.path()), Ok(Some(Action::Stop)));
            assert_eq!(take(dir.path()), Ok(None));
            post(dir.path(), Action::Checkpoint).unwrap();
            assert_eq!(take(dir.path()), Ok(Some(Action::Checkpoint)));
            std::fs::write(dir.path().join(MPI_REQUEST_FILE), "pause\n").unwrap();
            let error = take(dir.path()).unwrap_err();
            assert!(
                error.ends_with("says \"pause\"; a request is \"checkpoint\" or \"stop\""),
                "{error}"
            );
            assert_eq!(take(dir.path()), Ok(None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gnc_shm::segment_name;

    fn block(tag: &str) -> ControlBlock {
        let job = format!("req{tag}{}", std::process::id());
        ControlBlock::create(&segment_name(&job, 0, "control").unwrap(), 4).unwrap()
    }

    #[test]
    fn words_round_trip() {
        for request in [
            Request::Empty,
            Request::Pending(Action::Checkpoint),
            Request::Pending(Action::Stop),
            Request::Fixed {
                action: Action::Checkpoint,
                at: 0,
            },
            Request::Fixed {
                action: Action::Stop,
                at: AT_MASK,
            },
        ] {
            assert_eq!(Request::decode(request.encode()), request);
        }
    }

    #[test]
    fn workers_fix_the_next_boundary_and_act_there() {
        let control = block("fix");
        assert_eq!(at_boundary(&control, 5), None);
        assert!(post(&control, Action::Checkpoint));
        // The first worker at boundary 5 fixes 6; a slower one arriving at 5 does not act.
        assert_eq!(at_boundary(&control, 5), None);
        assert_eq!(at_boundary(&control, 5), None);
        assert_eq!(
            Request::decode(control.load(REQUEST_WORD)),
            Request::Fixed {
                action: Action::Checkpoint,
                at: 6
            }
        );
        // A stop must wait for the fixed checkpoint to be passed.
        assert!(!post(&control, Action::Stop));
        assert_eq!(at_boundary(&control, 6), Some(Action::Checkpoint));
        clear_passed(&control, 6);
        assert_ne!(control.load(REQUEST_WORD), 0, "not every worker began 6");
        clear_passed(&control, 7);
        assert_eq!(control.load(REQUEST_WORD), 0);
        assert!(post(&control, Action::Stop));
        assert!(post(&control, Action::Checkpoint), "a stop covers it");
        assert_eq!(at_boundary(&control, 9), None);
        assert_eq!(at_boundary(&control, 10), Some(Action::Stop));
        clear_passed(&control, 11);
        assert_ne!(control.load(REQUEST_WORD), 0, "a stop is never cleared");
    }

    #[test]
    fn a_pending_checkpoint_becomes_a_stop() {
        let control = block("upgrade");
        assert!(post(&control, Action::Checkpoint));
        assert!(post(&control, Action::Stop));
        assert_eq!(
            Request::decode(control.load(REQUEST_WORD)),
            Request::Pending(Action::Stop)
        );
    }
}
