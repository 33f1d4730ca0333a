//! Fully connected ReLU network. The NE paper's "F1" is 7 hidden layers of 500 units.

use gnc_contract::architecture::Architecture;
use tch::Tensor;

use super::{BatchNorm, Model, ParamCursor};

pub struct Mlp {
    architecture: Architecture,
    layers: usize,
}

impl Mlp {
    /// `architecture` from [`Architecture::mlp`], of `layers` linear layers.
    pub fn new(architecture: Architecture, layers: usize) -> Mlp {
        Mlp {
            architecture,
            layers,
        }
    }
}

impl Model for Mlp {
    fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    fn forward_with(&self, p: &mut ParamCursor, _bn: &mut BatchNorm, x: &Tensor) -> Tensor {
        let mut h = x.flatten(1, -1);
        for l in 0..self.layers {
            h = if l + 1 < self.layers {
                p.linear_relu(&h)
            } else {
                p.linear(&h)
            };
        }
        h
    }
}
