//! A network's parameters as a list of shapes, without tensors: what the worker's models
//! compute with (`gnc_worker::model`), and what the supervisor sizes the shared-memory bundle
//! by. Parameters are listed in a fixed canonical order that checkpoints, the reduction and the
//! hash all follow.

use std::sync::Arc;

use gnc_onnx::{Graph, OnnxError, ParamKind};
use gnc_proto::{ModelSpec, WeightInit};

/// How a parameter tensor starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform on ±bound.
    Uniform {
        bound: f64,
    },
    Zeros,
    Ones,
    /// The model file's values for this parameter ([`Architecture::onnx`]).
    File,
}

/// Why a network cannot be built for a job's data.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// The model and the data do not fit together.
    #[error("{0}")]
    Mismatch(String),
}

/// One parameter tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<i64>,
    pub init: Init,
}

impl ParamSpec {
    /// A layer's weight, uniform on ±bound: He et al.'s bound = sqrt(6 / fan_in) for a layer
    /// followed by ReLU, or Glorot and Bengio's sqrt(6 / (fan_in + fan_out)).
    pub fn weight(
        name: String,
        shape: Vec<i64>,
        (fan_in, fan_out): (i64, i64),
        scheme: WeightInit,
    ) -> ParamSpec {
        let bound = match scheme {
            WeightInit::He => (6.0 / fan_in as f64).sqrt(),
            WeightInit::Glorot => (6.0 / (fan_in + fan_out) as f64).sqrt(),
            WeightInit::File => unreachable!("a file's values are Init::File, never drawn"),
        };
        ParamSpec {
            name,
            shape,
            init: Init::Uniform { bound },
        }
    }

    pub fn constant(name: String, shape: Vec<i64>, init: Init) -> ParamSpec {
        ParamSpec { name, shape, init }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product::<i64>() as usize
    }
}

/// The channels of the CIFAR ResNet's three stages (He et al. 2016, §4.2).
pub const RESNET_WIDTHS: [i64; 3] = [16, 32, 64];

/// A network's parameters in canonical order, and the channels of its BatchNorm layers in the
/// order the forward pass applies them.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    pub params: Vec<ParamSpec>,
    pub bn_channels: Vec<i64>,
    /// How its weights are drawn.
    pub init: WeightInit,
    /// The graph of a network read from an ONNX file (`kind = "onnx"`), which the worker
    /// computes and whose values `init = "file"` starts from.
    pub onnx: Option<Arc<Graph>>,
}

impl Architecture {
    /// The network `spec` asks for, for examples of `input_shape` and `classes` outputs.
    pub fn of(
        spec: &ModelSpec,
        input_shape: &[usize],
        classes: usize,
    ) -> Result<Architecture, ModelError> {
        let classes = classes as i64;
        let mut arch = Architecture::empty(spec.init());
        match spec {
            ModelSpec::Onnx { path, .. } => {
                let graph = Graph::load(path)?;
                arch.onnx_graph(Arc::new(graph), input_shape, classes)?;
            }
            ModelSpec::Mlp { hidden, .. } => arch.mlp(
                input_shape.iter().product::<usize>() as i64,
                hidden,
                classes,
            ),
            ModelSpec::Vgg {
                channels,
                convs_per_stage,
                ..
            } => arch.vgg(input_shape[0] as i64, channels, *convs_per_stage, classes),
            ModelSpec::Resnet { depth, .. } => arch.resnet(input_shape[0] as i64, *depth, classes),
        }
        Ok(arch)
    }

    /// The parameters and BatchNorm layers of `graph`, for examples of `input_shape` (the same
    /// number of values as the graph's input; the worker reshapes) and `classes` outputs.
    fn onnx_graph(
        &mut self,
        graph: Arc<Graph>,
        input_shape: &[usize],
        classes: i64,
    ) -> Result<(), ModelError> {
        let data: i64 = input_shape.iter().product::<usize>() as i64;
        let model: i64 = graph.example_shape.iter().product();
        if data != model {
            return Err(ModelError::Mismatch(format!(
                "the model's input takes examples of shape {:?} ({model} values); the data's \
                 are {input_shape:?} ({data} values)",
                graph.example_shape
            )));
        }
        if graph.outputs != classes {
            return Err(ModelError::Mismatch(format!(
                "the model's output has {} classes; the data set has {classes}",
                graph.outputs
            )));
        }
        for p in &graph.params {
            let param = match (self.init, p.kind) {
                (WeightInit::File, _) => {
                    ParamSpec::constant(p.name.clone(), p.shape.clone(), Init::File)
                }
                (scheme, ParamKind::Weight { fan_in, fan_out }) => {
                    ParamSpec::weight(p.name.clone(), p.shape.clone(), (fan_in, fan_out), scheme)
                }
                (_, ParamKind::Zero) => {
                    ParamSpec::constant(p.name.clone(), p.shape.clone(), Init::Zeros)
                }
                (_, ParamKind::One) => {
                    ParamSpec::constant(p.name.clone(), p.shape.clone(), Init::Ones)
                }
            };
            self.params.push(param);
        }
        self.bn_channels = graph.batch_norms.iter().map(|b| b.channels).collect();
        self.onnx = Some(graph);
        Ok(())
    }

    /// Fully connected layers `fc<l>` of the given widths, then the classifier.
    fn mlp(&mut self, inputs: i64, hidden: &[usize], classes: i64) {
        let mut fan_in = inputs;
        let widths = hidden.iter().map(|&w| w as i64).chain([classes]);
        for (l, width) in widths.enumerate() {
            self.params.push(ParamSpec::weight(
                format!("fc{l}.weight"),
                vec![width, fan_in],
                (fan_in, width),
                self.init,
            ));
            self.params.push(ParamSpec::constant(
                format!("fc{l}.bias"),
                vec![width],
                Init::Zeros,
            ));
            fan_in = width;
        }
    }

    /// Per stage, `convs_per_stage` 3x3 convolutions each with BatchNorm; then the classifier.
    fn vgg(&mut self, in_channels: i64, channels: &[usize], convs_per_stage: usize, classes: i64) {
        let mut cin = in_channels;
        for (s, &c) in channels.iter().enumerate() {
            for k in 0..convs_per_stage {
                self.conv_bn(&format!("stage{s}.conv{k}"), cin, c as i64);
                cin = c as i64;
            }
        }
        self.classifier(cin, classes);
    }

    /// Depth 6n+2: a first convolution, three stages of n basic blocks of two convolutions
    /// (each with BatchNorm), then the classifier. Option-A shortcuts have no parameters.
    fn resnet(&mut self, in_channels: i64, depth: usize, classes: i64) {
        let n = (depth - 2) / 6;
        self.conv_bn("conv1", in_channels, RESNET_WIDTHS[0]);
        let mut cin = RESNET_WIDTHS[0];
        for (s, &c) in RESNET_WIDTHS.iter().enumerate() {
            for b in 0..n {
                let name = format!("stage{s}.block{b}");
                self.conv_bn(&format!("{name}.conv1"), cin, c);
                self.conv_bn(&format!("{name}.conv2"), c, c);
                cin = c;
            }
        }
        self.classifier(cin, classes);
    }

    fn empty(init: WeightInit) -> Architecture {
        Architecture {
            params: Vec::new(),
            bn_channels: Vec::new(),
            init,
            onnx: None,
        }
    }

    /// A 3x3 convolution without bias, then BatchNorm with its affine parameters.
    fn conv_bn(&mut self, name: &str, cin: i64, cout: i64) {
        self.params.push(ParamSpec::weight(
            format!("{name}.weight"),
            vec![cout, cin, 3, 3],
            (cin * 9, cout * 9),
            self.init,
        ));
        for (what, init) in [("weight", Init::Ones), ("bias", Init::Zeros)] {
            self.params.push(ParamSpec::constant(
                format!("{name}.bn.{what}"),
                vec![cout],
                init,
            ));
        }
        self.bn_channels.push(cout);
    }

    /// The linear classifier `fc` on `features` inputs.
    fn classifier(&mut self, features: i64, classes: i64) {
        self.params.push(ParamSpec::weight(
            "fc.weight".into(),
            vec![classes, features],
            (features, classes),
            self.init,
        ));
        self.params.push(ParamSpec::constant(
            "fc.bias".into(),
            vec![classes],
            Init::Zeros,
        ));
    }

    /// Number of scalar parameters.
    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(ParamSpec::numel).sum()
    }

    /// Shapes of one logical worker's gradient bundle, in order: every parameter's gradient,
    /// each BatchNorm layer's batch mean and variance, then the loss and the correct count.
    pub fn bundle_shapes(&self) -> Vec<Vec<i64>> {
        let mut shapes: Vec<Vec<i64>> = self.params.iter().map(|p| p.shape.clone()).collect();
        for &c in &self.bn_channels {
            shapes.push(vec![c]);
            shapes.push(vec![c]);
        }
        shapes.push(vec![1]);
        shapes.push(vec![1]);
        shapes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet_20_has_its_published_parameter_count() {
        // He et al. (2016), Table 6: ResNet-20 has 0.27 M parameters (269,722 with
        // BatchNorm's affine parameters; the same count as worker/tests/models.rs).
        let arch = Architecture::of(
            &ModelSpec::Resnet {
                depth: 20,
                init: WeightInit::He,
            },
            &[3, 32, 32],
            10,
        )
        .unwrap();
        assert_eq!(arch.bn_channels.len(), 19);
        assert_eq!(arch.parameter_count(), 269_722);
    }

    #[test]
    fn the_bundle_is_gradients_then_statistics_then_loss_and_correct() {
        let vgg = ModelSpec::Vgg {
            channels: vec![2],
            convs_per_stage: 1,
            init: WeightInit::He,
        };
        let arch = Architecture::of(&vgg, &[1, 8, 8], 3).unwrap();
        let shapes = arch.bundle_shapes();
        assert_eq!(
            shapes,
            [
                vec![2, 1, 3, 3],
                vec![2],
                vec![2],
                vec![3, 2],
                vec![3],
                vec![2],
                vec![2],
                vec![1],
                vec![1]
            ]
        );
    }

    #[test]
    fn glorot_bounds_use_fan_in_and_fan_out_and_he_fan_in_alone() {
        let bound = |init| {
            let mlp = ModelSpec::Mlp {
                hidden: vec![500],
                init,
            };
            let arch = Architecture::of(&mlp, &[784], 10).unwrap();
            let bounds: Vec<f64> = arch
                .params
                .iter()
                .filter_map(|p| match p.init {
                    Init::Uniform { bound } => Some(bound),
                    _ => None,
                })
                .collect();
            assert_eq!(arch.init, init);
            bounds
        };
        assert_eq!(
            bound(WeightInit::He),
            [(6.0f64 / 784.0).sqrt(), (6.0f64 / 500.0).sqrt()]
        );
        assert_eq!(
            bound(WeightInit::Glorot),
            [(6.0f64 / 1284.0).sqrt(), (6.0f64 / 510.0).sqrt()]
        );
        let vgg = ModelSpec::Vgg {
            channels: vec![4],
            convs_per_stage: 1,
            init: WeightInit::Glorot,
        };
        let conv = &Architecture::of(&vgg, &[3, 8, 8], 10).unwrap().params[0];
        assert_eq!(
            conv.init,
            Init::Uniform {
                bound: (6.0f64 / ((3 + 4) * 9) as f64).sqrt()
            }
        );
    }
}
