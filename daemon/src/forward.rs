//! Forwards a [`Interrupts`]'s checkpoint and stop requests into the running generation's
//! request word (`gnc_contract::request`), and reports completed checkpoints.

use gnc_contract::protocol::{begun_word, CHECKPOINT_WORD};
use gnc_contract::request::{self, Action};
use gnc_shm::ControlBlock;

use gnc_contract::interrupts::Interrupts;
use gnc_contract::observer::Observer;

/// Per generation: what has been asked and not yet posted, and the last checkpoint seen.
#[derive(Default)]
pub(crate) struct Forwarder {
    checkpoint_wanted: bool,
    checkpoint_word: u64,
}

impl Forwarder {
    /// One look, from the supervisor's polling loop.
    pub(crate) fn poll(
        &mut self,
        interrupts: Option<&Interrupts>,
        control: &ControlBlock,
        processes: usize,
        events: &mut dyn Observer,
    ) {
        if let Some(rc) = interrupts {
            let min_begun = (0..processes)
                .map(|p| control.load(begun_word(p)))
                .min()
                .unwrap_or(0);
            request::clear_passed(control, min_begun);
            self.checkpoint_wanted |= rc.take_checkpoint();
            if rc.stop_requested() {
                request::post(control, Action::Stop);
            } else if self.checkpoint_wanted && request::post(control, Action::Checkpoint) {
                self.checkpoint_wanted = false;
            }
        }
        let word = control.load(CHECKPOINT_WORD);
        if word != self.checkpoint_word {
            self.checkpoint_word = word;
            if let Some(iteration) = word.checked_sub(1) {
                events.checkpointed(iteration);
            }
        }
    }
}
