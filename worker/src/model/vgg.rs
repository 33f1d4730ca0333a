//! Small VGG-style CNN with BatchNorm: per stage, `convs_per_stage` × (3x3 conv → BN → ReLU),
//! then 2x2 max-pool; global average pooling and a linear classifier.

use tch::Tensor;

use super::{BatchNorm, Init, Model, ParamCursor, ParamSpec};

pub struct Vgg {
    params: Vec<ParamSpec>,
    bn_channels: Vec<i64>,
    stages: usize,
    convs_per_stage: usize,
}

impl Vgg {
    pub fn new(in_channels: i64, channels: &[usize], convs_per_stage: usize, classes: i64) -> Vgg {
        let mut params = Vec::new();
        let mut bn_channels = Vec::new();
        let mut cin = in_channels;
        for (s, &c) in channels.iter().enumerate() {
            let c = c as i64;
            for k in 0..convs_per_stage {
                let name = format!("stage{s}.conv{k}");
                params.push(ParamSpec::he(
                    format!("{name}.weight"),
                    vec![c, cin, 3, 3],
                    cin * 9,
                ));
                params.push(ParamSpec::constant(
                    format!("{name}.bn.weight"),
                    vec![c],
                    Init::Ones,
                ));
                params.push(ParamSpec::constant(
                    format!("{name}.bn.bias"),
                    vec![c],
                    Init::Zeros,
                ));
                bn_channels.push(c);
                cin = c;
            }
        }
        params.push(ParamSpec::he("fc.weight".into(), vec![classes, cin], cin));
        params.push(ParamSpec::constant(
            "fc.bias".into(),
            vec![classes],
            Init::Zeros,
        ));
        Vgg {
            params,
            bn_channels,
            stages: channels.len(),
            convs_per_stage,
        }
    }
}

impl Model for Vgg {
    fn params(&self) -> &[ParamSpec] {
        &self.params
    }

    fn bn_channels(&self) -> Vec<i64> {
        self.bn_channels.clone()
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
