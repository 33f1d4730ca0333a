//! Fully connected ReLU network. The NE paper's "F1" is 7 hidden layers of 500 units.

use tch::Tensor;

use super::{BatchNorm, Init, Model, ParamCursor, ParamSpec};

pub struct Mlp {
    params: Vec<ParamSpec>,
    layers: usize,
}

impl Mlp {
    pub fn new(inputs: i64, hidden: &[usize], classes: i64) -> Mlp {
        let mut params = Vec::new();
        let mut fan_in = inputs;
        let widths = hidden.iter().map(|&w| w as i64).chain([classes]);
        for (l, width) in widths.enumerate() {
            params.push(ParamSpec::he(
                format!("fc{l}.weight"),
                vec![width, fan_in],
                fan_in,
            ));
            params.push(ParamSpec::constant(
                format!("fc{l}.bias"),
                vec![width],
                Init::Zeros,
            ));
            fan_in = width;
        }
        Mlp {
            params,
            layers: hidden.len() + 1,
        }
    }
}

impl Model for Mlp {
    fn params(&self) -> &[ParamSpec] {
        &self.params
    }

    fn bn_channels(&self) -> Vec<i64> {
        Vec::new()
    }

    fn forward_with(&self, p: &mut ParamCursor, _bn: &mut BatchNorm, x: &Tensor) -> Tensor {
        let mut h = x.flatten(1, -1);
        for l in 0..self.layers {
            h = p.linear(&h);
            if l + 1 < self.layers {
                h = h.relu();
            }
        }
        h
    }
}
