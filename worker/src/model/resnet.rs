//! The CIFAR ResNet of He et al. (2016, §4.2): depth 6n+2 = a 3x3 conv of 16 channels, three
//! stages of n basic blocks with 16, 32, 64 channels (stride 2 at the start of stages 2 and 3),
//! global average pooling and a linear classifier. Shortcuts are option A: identity, with
//! stride-2 subsampling and zero channels where the shape changes (no extra parameters).

use gnc_contract::architecture::{Architecture, RESNET_WIDTHS};
use tch::Tensor;

use super::{BatchNorm, Model, ParamCursor};

pub struct Resnet {
    architecture: Architecture,
    blocks_per_stage: usize,
}

impl Resnet {
    /// `architecture` from [`Architecture::resnet`] with n = `blocks_per_stage`.
    pub fn new(architecture: Architecture, blocks_per_stage: usize) -> Resnet {
        Resnet {
            architecture,
            blocks_per_stage,
        }
    }
}

fn conv(x: &Tensor, w: &Tensor, stride: i64) -> Tensor {
    x.conv2d(w, None::<Tensor>, [stride, stride], [1, 1], [1, 1], 1)
}

/// Option-A shortcut: subsample by `stride`, pad new channels with zeros.
fn shortcut(x: &Tensor, stride: i64, cout: i64) -> Tensor {
    let cin = x.size()[1];
    if stride == 1 && cin == cout {
        return x.shallow_clone();
    }
    let sub = x.slice(2, 0, None, stride).slice(3, 0, None, stride);
    let extra = cout - cin;
    sub.constant_pad_nd([0, 0, 0, 0, extra / 2, extra - extra / 2])
}

impl Model for Resnet {
    fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    fn forward_with(&self, p: &mut ParamCursor, bn: &mut BatchNorm, x: &Tensor) -> Tensor {
        let w = p.next();
        let mut h = bn.apply(&conv(x, &w, 1), &p.next(), &p.next()).relu();
        for (s, &c) in RESNET_WIDTHS.iter().enumerate() {
            for b in 0..self.blocks_per_stage {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                let w1 = p.next();
                let y = bn
                    .apply(&conv(&h, &w1, stride), &p.next(), &p.next())
                    .relu();
                let w2 = p.next();
                let y = bn.apply(&conv(&y, &w2, 1), &p.next(), &p.next());
                h = (y + shortcut(&h, stride, c)).relu();
            }
        }
        let h = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        p.linear(&h)
    }
}
