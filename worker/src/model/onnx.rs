//! The user's network from an ONNX file: the graph `gnc_onnx` lowered, computed node by node
//! with gnc's layers — fully connected layers on gnc's portable product
//! ([`ParamCursor::linear`]), BatchNorm per logical worker with its statistics combined in the
//! reduction tree ([`BatchNorm`]), everything else with the libtorch kernels the level pins.

use std::sync::Arc;

use gnc_contract::architecture::Architecture;
use gnc_onnx::{Graph, Op, Operand};
use tch::Tensor;

use super::{BatchNorm, Model, ParamCursor};

pub struct OnnxNet {
    architecture: Architecture,
    graph: Arc<Graph>,
    /// Per node: a fully connected layer whose output only the next node reads, a ReLU, which
    /// the layer then applies itself ([`ParamCursor::linear_relu`]: the same bits, and an MLP's
    /// layers run one after the other with no libtorch between them).
    relu_fused: Vec<bool>,
}

impl OnnxNet {
    /// `architecture` from [`Architecture::of`] for a `kind = "onnx"` spec (it holds the graph).
    pub fn new(architecture: Architecture) -> OnnxNet {
        let graph = architecture
            .onnx
            .clone()
            .expect("an ONNX model's architecture holds its graph");
        let relu_fused = relu_fused(&graph);
        OnnxNet {
            architecture,
            graph,
            relu_fused,
        }
    }
}

/// [`OnnxNet::relu_fused`] of each node of `g`.
fn relu_fused(g: &Graph) -> Vec<bool> {
    let readers = |value: usize| {
        g.nodes
            .iter()
            .flat_map(|n| &n.inputs)
            .filter(|o| **o == Operand::Value(value))
            .count()
    };
    let mut fused = vec![false; g.nodes.len()];
    for (i, pair) in g.nodes.windows(2).enumerate() {
        let [layer, next] = pair else {
            unreachable!("windows of two")
        };
        fused[i] = layer.op == Op::Linear
            && next.op == Op::Relu
            && next.inputs == [Operand::Value(layer.output)]
            && readers(layer.output) == 1
            && layer.output != g.output;
    }
    fused
}

impl Model for OnnxNet {
    fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    fn forward_with(&self, p: &mut ParamCursor, bn: &mut BatchNorm, x: &Tensor) -> Tensor {
        let g = &self.graph;
        let n = x.size()[0];
        let mut slots: Vec<Option<Tensor>> = (0..g.values).map(|_| None).collect();
        let input: Vec<i64> = std::iter::once(n)
            .chain(g.example_shape.iter().copied())
            .collect();
        slots[0] = Some(x.reshape(&input));
        for (i, node) in g.nodes.iter().enumerate() {
            let operand = |o: &Operand| match *o {
                Operand::Value(s) => slots[s]
                    .as_ref()
                    .expect("a node reads values computed before it")
                    .shallow_clone(),
                Operand::Constant(c) => {
                    let c = &g.constants[c];
                    Tensor::from_slice(&c.values)
                        .reshape(&c.shape)
                        .to_device(x.device())
                }
            };
            let h = operand(&node.inputs[0]);
            let y = match &node.op {
                Op::Linear if self.relu_fused[i] => p.linear_relu(&h),
                Op::Linear => p.linear(&h),
                Op::Conv {
                    window,
                    groups,
                    bias,
                } => {
                    let w = p.next();
                    let b = bias.then(|| p.next());
                    h.conv2d(
                        &w,
                        b.as_ref(),
                        window.stride,
                        window.padding,
                        window.dilation,
                        *groups,
                    )
                }
                Op::BatchNorm { eps } => {
                    let (w, b) = (p.next(), p.next());
                    bn.apply_with_eps(&h, &w, &b, *eps)
                }
                // The layer before applied it.
                Op::Relu if i > 0 && self.relu_fused[i - 1] => h,
                Op::Relu => h.relu(),
                // x where x > 0, else αx: PyTorch's LeakyReLU, value and gradient.
                Op::LeakyRelu { alpha } => h.where_self(&h.gt(0.0), &(&h * *alpha)),
                Op::Sigmoid => h.sigmoid(),
                Op::Tanh => h.tanh(),
                Op::Gelu { tanh } => h.gelu(if *tanh { "tanh" } else { "none" }),
                Op::Erf => h.erf(),
                Op::MaxPool { window, ceil } => h.max_pool2d(
                    window.kernel,
                    window.stride,
                    window.padding,
                    window.dilation,
                    *ceil,
                ),
                Op::AveragePool {
                    window,
                    ceil,
                    count_include_pad,
                } => h.avg_pool2d(
                    window.kernel,
                    window.stride,
                    window.padding,
                    *ceil,
                    *count_include_pad,
                    None::<i64>,
                ),
                // PyTorch exports AdaptiveAvgPool2d(1) as GlobalAveragePool: the same kernel.
                Op::GlobalAveragePool if h.dim() == 4 => h.adaptive_avg_pool2d([1, 1]),
                Op::GlobalAveragePool => {
                    let spatial: Vec<i64> = (2..h.dim() as i64).collect();
                    h.mean_dim(spatial.as_slice(), true, None)
                }
                Op::ReduceMean { axes, keepdims } => h.mean_dim(axes.as_slice(), *keepdims, None),
                Op::Flatten => h.flatten(1, -1),
                Op::Reshape { dims } => {
                    let size = h.size();
                    let target: Vec<i64> = std::iter::once(n)
                        .chain(dims.iter().enumerate().map(
                            |(i, &d)| {
                                if d == 0 { size[i + 1] } else { d }
                            },
                        ))
                        .collect();
                    h.reshape(&target)
                }
                Op::Add => &h + operand(&node.inputs[1]),
                Op::Sub => &h - operand(&node.inputs[1]),
                Op::Mul => &h * operand(&node.inputs[1]),
                Op::Div => &h / operand(&node.inputs[1]),
                Op::Concat { axis } => {
                    let parts: Vec<Tensor> = node.inputs.iter().map(operand).collect();
                    Tensor::cat(&parts, *axis)
                }
            };
            slots[node.output] = Some(y);
        }
        slots[g.output]
            .take()
            .expect("the output is computed by the graph")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: Op, inputs: &[usize], output: usize) -> gnc_onnx::Node {
        gnc_onnx::Node {
            name: format!("n{output}"),
            op,
            inputs: inputs.iter().map(|&v| Operand::Value(v)).collect(),
            output,
        }
    }

    fn graph(nodes: Vec<gnc_onnx::Node>, output: usize) -> Graph {
        Graph {
            example_shape: vec![4],
            outputs: 2,
            values: nodes.len() + 1,
            nodes,
            output,
            params: Vec::new(),
            batch_norms: Vec::new(),
            constants: Vec::new(),
            sha256: String::new(),
        }
    }

    /// A layer takes its ReLU only where nothing else reads the layer's output.
    #[test]
    fn a_layer_fuses_the_relu_that_alone_reads_its_output() {
        // An MLP: linear, relu, linear, relu, linear.
        let mlp = graph(
            vec![
                node(Op::Linear, &[0], 1),
                node(Op::Relu, &[1], 2),
                node(Op::Linear, &[2], 3),
                node(Op::Relu, &[3], 4),
                node(Op::Linear, &[4], 5),
            ],
            5,
        );
        assert_eq!(relu_fused(&mlp), [true, false, true, false, false]);
        // The first layer's output is also added back in; the second's ReLU is the output.
        let shared = graph(
            vec![
                node(Op::Linear, &[0], 1),
                node(Op::Relu, &[1], 2),
                node(Op::Add, &[2, 1], 3),
                node(Op::Linear, &[3], 4),
                node(Op::Sigmoid, &[4], 5),
            ],
            5,
        );
        assert_eq!(relu_fused(&shared), [false; 5]);
        let last = graph(vec![node(Op::Linear, &[0], 1), node(Op::Relu, &[1], 2)], 1);
        assert_eq!(relu_fused(&last), [false; 2]);
    }
}
