//! The networks have the published sizes and shapes, and train-mode BatchNorm records one
//! (mean, variance) pair per layer.

use gnc_contract::architecture::Architecture;
use gnc_proto::{ModelSpec, WeightInit};
use gnc_worker::model::{self, BatchNorm};
use tch::{Kind, Tensor};

fn forward(spec: &ModelSpec, shape: &[usize], batch: i64) -> (usize, Vec<i64>, usize) {
    let m = model::build(spec, Architecture::of(spec, shape, 10).unwrap());
    let params = model::init_params(m.as_ref(), 1, gnc_worker::device::Device::CPU);
    let mut dims = vec![batch];
    dims.extend(shape.iter().map(|&d| d as i64));
    let x = Tensor::ones(dims.as_slice(), (Kind::Float, tch::Device::Cpu));
    let mut bn = BatchNorm::train();
    let logits = m.forward(&params, &mut bn, &x);
    let stats = bn.into_stats();
    assert_eq!(stats.len(), m.bn_channels().len());
    (
        m.architecture().parameter_count(),
        logits.size(),
        stats.len(),
    )
}

#[test]
fn f1_mlp_has_the_noise_enhancement_papers_shape() {
    let (count, logits, bn) = forward(
        &ModelSpec::Mlp {
            hidden: vec![500; 7],
            init: WeightInit::He,
        },
        &[1, 28, 28],
        4,
    );
    // 784·500+500 + 6·(500·500+500) + 500·10+10
    assert_eq!(count, 1_900_510);
    assert_eq!(logits, vec![4, 10]);
    assert_eq!(bn, 0);
}

#[test]
fn resnet20_has_he_et_al_size_and_19_batchnorm_layers() {
    let (count, logits, bn) = forward(
        &ModelSpec::Resnet {
            depth: 20,
            init: WeightInit::He,
        },
        &[3, 32, 32],
        2,
    );
    // He et al. (2016) Table 6: ResNet-20 has 0.27M parameters.
    assert!((265_000..=275_000).contains(&count), "{count}");
    assert_eq!(logits, vec![2, 10]);
    assert_eq!(bn, 19, "conv1 + 3 stages × 3 blocks × 2");
}

#[test]
fn resnet32_is_deeper() {
    let (count, _, bn) = forward(
        &ModelSpec::Resnet {
            depth: 32,
            init: WeightInit::He,
        },
        &[3, 32, 32],
        2,
    );
    // He et al. Table 6: 0.46M.
    assert!((455_000..=470_000).contains(&count), "{count}");
    assert_eq!(bn, 31);
}

#[test]
fn vgg_on_fashion_mnist_images() {
    let spec = ModelSpec::Vgg {
        channels: vec![8, 16],
        convs_per_stage: 2,
        init: WeightInit::He,
    };
    let (_, logits, bn) = forward(&spec, &[1, 28, 28], 3);
    assert_eq!(logits, vec![3, 10]);
    assert_eq!(bn, 4);
}
