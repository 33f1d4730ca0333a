//! GNC until epoch `switch_epoch`, RNC from then on (GNC paper §A.4: the switch at epoch 120
//! of 160). Leaving GNC drops its gradient memory: RNC does not keep it.

use tch::Tensor;

use super::{At, Gnc, Method, Perturbation, Rnc};

pub struct GncToRnc {
    pub gnc: Gnc,
    pub rnc: Rnc,
    pub switch_epoch: u64,
}

impl GncToRnc {
    fn phase(&self, epoch: u64) -> &dyn Method {
        if epoch < self.switch_epoch {
            &self.gnc
        } else {
            &self.rnc
        }
    }
}

impl Method for GncToRnc {
    fn perturbation(
        &self,
        at: At,
        params: &[Tensor],
        prev_mean: Option<&[Tensor]>,
    ) -> Box<dyn Perturbation> {
        self.phase(at.epoch).perturbation(at, params, prev_mean)
    }

    fn keeps_gradients(&self, epoch: u64) -> bool {
        self.phase(epoch).keeps_gradients(epoch)
    }
}
