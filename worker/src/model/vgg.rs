//! Small VGG-style CNN with BatchNorm: per stage, `convs_per_stage` × (3x3 conv → BN → ReLU),
//! then 2x2 max-pool; global average pooling and a linear classifier.

use gnc_contract::architecture::Architecture;
use tch::Tensor;

use super::{BatchNorm, Model, ParamCursor};

pub struct Vgg {
    architecture: Architecture,
    stages: usize,
    convs_per_stage: usize,
}

impl Vgg {
    /// `architecture` from [`Architecture::vgg`] with these stages and convolutions per stage.
    pub fn new(architecture: Architecture, stages: usize, convs_per_stage: usize) -> Vgg {
        Vgg {
            architecture,
            stages,
            convs_per_stage,
        }
    }
}

impl Model for Vgg {
    fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    fn forward_with(&self, p: &mut ParamCursor, bn: &mut BatchNorm, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for _ in 0..self.stages {
            for _ in 0..self.convs_per_stage {
                let w = p.next();
                h = h.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
                h = bn.apply(&h, &p.next(), &p.next()).relu();
            }
            h = h.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        let h = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        p.linear(&h)
    }
}
