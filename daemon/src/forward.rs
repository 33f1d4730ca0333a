//! Forwards an [`Interrupts`]'s checkpoint and stop requests to the running generation, and
//! reports completed checkpoints.

use gnc_contract::interrupts::Interrupts;
use gnc_contract::observer::Observer;
use gnc_contract::request::Action;

use crate::channel::GroupChannel;

/// Per generation: what has been asked and not yet posted, and the last checkpoint seen.
#[derive(Default)]
pub(crate) struct Forwarder {
    checkpoint_wanted: bool,
    last_checkpoint: Option<u64>,
}

impl Forwarder {
    /// One look, from the supervisor's polling loop.
    pub(crate) fn poll(
        &mut self,
        interrupts: Option<&Interrupts>,
        channel: &dyn GroupChannel,
        events: &mut dyn Observer,
    ) {
        if let Some(rc) = interrupts {
            channel.clear_served();
            self.checkpoint_wanted |= rc.take_checkpoint();
            if rc.stop_requested() {
                channel.post(Action::Stop);
            } else if self.checkpoint_wanted && channel.post(Action::Checkpoint) {
                self.checkpoint_wanted = false;
            }
        }
        let checkpoint = channel.last_checkpoint();
        if checkpoint != self.last_checkpoint {
            self.last_checkpoint = checkpoint;
            if let Some(iteration) = checkpoint {
                events.checkpointed(iteration);
            }
        }
    }
}
