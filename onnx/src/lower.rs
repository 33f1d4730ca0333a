//! From ONNX's graph to gnc's: each node checked and turned into an [`Op`] over value slots,
//! each layer's initializers into parameters in the order the forward pass consumes them.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::error::OnnxError;
use crate::graph::{BatchNormLayer, Constant, Graph, Node, Operand, Param, ParamKind};
use crate::op::{Op, Window};
use crate::proto::{AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use crate::tensor;

/// ONNX's element type for float32 (TensorProto.DataType.FLOAT).
const FLOAT: i32 = 1;

pub fn lower(g: &GraphProto, path: &Path) -> Result<Graph, OnnxError> {
    let graph_error = |message: String| OnnxError::Graph {
        path: path.to_path_buf(),
        message,
    };
    let mut tensors: HashMap<String, TensorProto> = g
        .initializer
        .iter()
        .map(|t| (t.name.clone().unwrap_or_default(), t.clone()))
        .collect();
    let inputs: Vec<&ValueInfoProto> = g
        .input
        .iter()
        .filter(|v| !tensors.contains_key(v.name.as_deref().unwrap_or("")))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(graph_error(format!(
            "gnc trains a graph of one input (the batch of examples); this one has {}: {}",
            inputs.len(),
            names(&inputs)
        )));
    };
    let outputs: Vec<&ValueInfoProto> = g.output.iter().collect();
    let [output] = outputs.as_slice() else {
        return Err(graph_error(format!(
            "gnc trains a graph of one output (the logits; it adds the softmax cross-entropy); \
             this one has {}: {}",
            outputs.len(),
            names(&outputs)
        )));
    };
    let (input_dims, input_type) = dims(input);
    if input_type != Some(FLOAT) {
        return Err(graph_error(format!(
            "input {:?} is not float32 (element type {input_type:?}); gnc feeds float32 examples",
            name(input)
        )));
    }
    let example_shape = input_dims
        .get(1..)
        .filter(|d| !d.is_empty())
        .and_then(|d| d.iter().copied().collect::<Option<Vec<i64>>>())
        .ok_or_else(|| {
            graph_error(format!(
                "input {:?} has shape {}: every dimension after the batch must be a fixed \
                 number (export with an example batch of the data's shape)",
                name(input),
                show_dims(&input_dims)
            ))
        })?;
    let (output_dims, _) = dims(output);
    let outputs_width = match output_dims.as_slice() {
        [_, Some(width)] => *width,
        _ => {
            return Err(graph_error(format!(
                "output {:?} has shape {}; gnc needs [batch, classes] with a fixed number of \
                 classes",
                name(output),
                show_dims(&output_dims)
            )));
        }
    };

    let mut uses: HashMap<&str, usize> = HashMap::new();
    for n in &g.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *uses.entry(i.as_str()).or_default() += 1;
        }
    }
    *uses.entry(name(output)).or_default() += 1;

    let mut l = Lowering {
        path,
        tensors: std::mem::take(&mut tensors),
        slots: HashMap::from([(name(input).to_string(), 0)]),
        ranks: vec![1 + example_shape.len()],
        constant_slots: HashMap::new(),
        consumed: HashSet::new(),
        export_batch: input_dims[0],
        graph: Graph {
            example_shape,
            outputs: outputs_width,
            nodes: Vec::new(),
            values: 1,
            output: 0,
            params: Vec::new(),
            batch_norms: Vec::new(),
            constants: Vec::new(),
            sha256: String::new(),
        },
    };
    let mut fused: HashSet<usize> = HashSet::new();
    for (index, n) in g.node.iter().enumerate() {
        if fused.contains(&index) {
            continue;
        }
        if n.domain
            .as_deref()
            .is_some_and(|d| !d.is_empty() && d != "ai.onnx")
        {
            return Err(l.unsupported(n));
        }
        if n.op_type() == "MatMul" {
            let add = bias_add(g, index, &uses, &l.tensors);
            l.matmul(n, add.map(|j| &g.node[j]))?;
            fused.extend(add);
            continue;
        }
        l.node(n, &uses)?;
    }
    l.graph.output = match l.slots.get(name(output)) {
        Some(&slot) => slot,
        None => {
            return Err(graph_error(format!(
                "output {:?} is not computed from the input by the graph's nodes",
                name(output)
            )));
        }
    };
    if l.ranks[l.graph.output] != 2 {
        return Err(graph_error(format!(
            "output {:?} has {} dimensions; gnc needs [batch, classes]",
            name(output),
            l.ranks[l.graph.output]
        )));
    }
    Ok(l.graph)
}

/// The index of the Add that adds a bias initializer to MatMul `index`'s output and is that
/// output's only reader (nn.Linear as some exporters write it), if there is one.
fn bias_add(
    g: &GraphProto,
    index: usize,
    uses: &HashMap<&str, usize>,
    tensors: &HashMap<String, TensorProto>,
) -> Option<usize> {
    let out = g.node[index].output.first()?;
    if uses.get(out.as_str()) != Some(&1) {
        return None;
    }
    g.node
        .iter()
        .enumerate()
        .skip(index + 1)
        .find(|(_, n)| n.input.iter().any(|i| i == out))
        .filter(|(_, n)| {
            n.op_type() == "Add"
                && n.input.len() == 2
                && n.input.iter().any(|i| i != out && tensors.contains_key(i))
        })
        .map(|(j, _)| j)
}

struct Lowering<'a> {
    path: &'a Path,
    /// Initializers and Constant nodes' values, by name.
    tensors: HashMap<String, TensorProto>,
    /// The slot of each value computed so far, by name.
    slots: HashMap<String, usize>,
    /// Each slot's number of dimensions (batch included).
    ranks: Vec<usize>,
    /// Float constants already turned into operands, by name.
    constant_slots: HashMap<String, usize>,
    /// Initializers already made parameters (a second use would share weights).
    consumed: HashSet<String>,
    /// The batch the file was exported with, where its input says.
    export_batch: Option<i64>,
    graph: Graph,
}

impl Lowering<'_> {
    fn node(&mut self, n: &NodeProto, uses: &HashMap<&str, usize>) -> Result<(), OnnxError> {
        let op = match n.op_type() {
            "Constant" => return self.constant_node(n),
            "Identity" | "Dropout" => return self.alias(n, uses),
            "Gemm" => self.gemm(n)?,
            "Conv" => self.conv(n)?,
            "BatchNormalization" => self.batch_norm(n, uses)?,
            "Relu" => Op::Relu,
            "Sigmoid" => Op::Sigmoid,
            "Tanh" => Op::Tanh,
            "Erf" => Op::Erf,
            "LeakyRelu" => Op::LeakyRelu {
                alpha: f64::from(float_attr(n, "alpha").unwrap_or(0.01)),
            },
            "Gelu" => match string_attr(n, "approximate").as_deref() {
                None | Some("none") => Op::Gelu { tanh: false },
                Some("tanh") => Op::Gelu { tanh: true },
                Some(other) => return Err(self.bad(n, format!("approximate = {other:?}"))),
            },
            "MaxPool" => {
                self.unused_outputs(n, uses, 1)?;
                if int_attr(n, "storage_order").unwrap_or(0) != 0 {
                    return Err(self.bad(n, "storage_order 1 is not supported".into()));
                }
                Op::MaxPool {
                    window: self.window(n, None)?,
                    ceil: int_attr(n, "ceil_mode").unwrap_or(0) != 0,
                }
            }
            "AveragePool" => {
                let window = self.window(n, None)?;
                if window.dilation != [1, 1] {
                    return Err(self.bad(n, "dilated average pooling is not supported".into()));
                }
                Op::AveragePool {
                    window,
                    ceil: int_attr(n, "ceil_mode").unwrap_or(0) != 0,
                    count_include_pad: int_attr(n, "count_include_pad").unwrap_or(0) != 0,
                }
            }
            "GlobalAveragePool" => Op::GlobalAveragePool,
            "ReduceMean" => self.reduce_mean(n)?,
            "Flatten" => {
                let rank = self.rank_of(n, 0)?;
                if normalise(int_attr(n, "axis").unwrap_or(1), rank) != Some(1) {
                    return Err(self.bad(
                        n,
                        "gnc flattens everything after the batch dimension (axis 1) only".into(),
                    ));
                }
                Op::Flatten
            }
            "Reshape" => self.reshape(n)?,
            "Add" => Op::Add,
            "Sub" => Op::Sub,
            "Mul" => Op::Mul,
            "Div" => Op::Div,
            "Concat" => {
                let rank = self.rank_of(n, 0)?;
                match normalise(int_attr(n, "axis").unwrap_or(0), rank) {
                    Some(axis) if axis > 0 => Op::Concat { axis: axis as i64 },
                    _ => {
                        return Err(self.bad(
                            n,
                            "concatenation along the batch dimension is not supported".into(),
                        ));
                    }
                }
            }
            _ => return Err(self.unsupported(n)),
        };
        let inputs = match &op {
            Op::Linear | Op::Conv { .. } | Op::BatchNorm { .. } | Op::Reshape { .. } => {
                vec![self.value(n, 0)?]
            }
            Op::ReduceMean { .. } => vec![self.value(n, 0)?],
            Op::Add | Op::Sub | Op::Mul | Op::Div => {
                let operands = [self.operand(n, 0)?, self.operand(n, 1)?];
                if !operands.iter().any(|o| matches!(o, Operand::Value(_))) {
                    return Err(self.bad(n, "both operands are constants".into()));
                }
                operands.to_vec()
            }
            Op::Concat { .. } => (0..n.input.len())
                .map(|i| self.value(n, i))
                .collect::<Result<_, _>>()?,
            _ => vec![self.value(n, 0)?],
        };
        let rank = self.rank_after(&op, &inputs);
        self.push(n, op, inputs, rank);
        Ok(())
    }

    fn push(&mut self, n: &NodeProto, op: Op, inputs: Vec<Operand>, rank: usize) {
        let output = self.graph.values;
        self.graph.values += 1;
        self.ranks.push(rank);
        let out = n.output.first().cloned().unwrap_or_default();
        self.slots.insert(out.clone(), output);
        let name = n.name.clone().filter(|s| !s.is_empty()).unwrap_or(out);
        self.graph.nodes.push(Node {
            name,
            op,
            inputs,
            output,
        });
    }

    /// The number of dimensions of a node's result, from its inputs'.
    fn rank_after(&self, op: &Op, inputs: &[Operand]) -> usize {
        let rank = |o: &Operand| match o {
            Operand::Value(s) => self.ranks[*s],
            Operand::Constant(c) => self.graph.constants[*c].shape.len(),
        };
        match op {
            Op::Linear | Op::Flatten => 2,
            Op::Reshape { dims } => 1 + dims.len(),
            Op::ReduceMean {
                axes,
                keepdims: false,
            } => rank(&inputs[0]) - axes.len(),
            _ => inputs.iter().map(rank).max().unwrap_or(0),
        }
    }

    fn constant_node(&mut self, n: &NodeProto) -> Result<(), OnnxError> {
        let value = n
            .attribute
            .iter()
            .find(|a| a.name() == "value")
            .and_then(|a| a.t.clone())
            .ok_or_else(|| {
                self.bad(
                    n,
                    "only Constant nodes with a `value` tensor are supported".into(),
                )
            })?;
        let out = n.output.first().cloned().unwrap_or_default();
        self.tensors.insert(out, value);
        Ok(())
    }

    /// Identity and Dropout (the identity in training too: gnc's randomness is its own).
    fn alias(&mut self, n: &NodeProto, uses: &HashMap<&str, usize>) -> Result<(), OnnxError> {
        self.unused_outputs(n, uses, 1)?;
        let input = n.input.first().cloned().unwrap_or_default();
        let out = n.output.first().cloned().unwrap_or_default();
        if let Some(&slot) = self.slots.get(&input) {
            self.slots.insert(out, slot);
        } else if let Some(t) = self.tensors.get(&input).cloned() {
            self.tensors.insert(out, t);
        } else {
            return Err(self.bad(n, format!("input {input:?} is not defined before the node")));
        }
        Ok(())
    }

    fn gemm(&mut self, n: &NodeProto) -> Result<Op, OnnxError> {
        for (attr, want) in [("alpha", 1.0), ("beta", 1.0)] {
            if float_attr(n, attr).is_some_and(|v| v != want) {
                return Err(self.bad(n, format!("{attr} must be 1")));
            }
        }
        if int_attr(n, "transA").unwrap_or(0) != 0 {
            return Err(self.bad(n, "transA must be 0 (the batch is the rows)".into()));
        }
        if n.input.len() < 3 {
            return Err(self.bad(n, "a fully connected layer needs a bias (C)".into()));
        }
        let transposed = int_attr(n, "transB").unwrap_or(0) != 0;
        let (weight, bias) = (n.input[1].clone(), n.input[2].clone());
        self.linear_params(n, &weight, &bias, transposed)?;
        Ok(Op::Linear)
    }

    /// MatMul by a weight initializer, with the Add of a bias initializer that follows it.
    fn matmul(&mut self, n: &NodeProto, add: Option<&NodeProto>) -> Result<(), OnnxError> {
        let Some(add) = add.filter(|_| self.tensors.contains_key(&n.input[1])) else {
            return Err(self.bad(
                n,
                "gnc trains MatMul as a fully connected layer: a weight initializer as its \
                 second input, and its result read only by an Add of a bias initializer"
                    .into(),
            ));
        };
        let out = &n.output[0];
        let bias = usize::from(add.input[0] == *out);
        let input = self.value(n, 0)?;
        let (weight_name, bias_name) = (n.input[1].clone(), add.input[bias].clone());
        self.linear_params(n, &weight_name, &bias_name, false)?;
        self.push(add, Op::Linear, vec![input], 2);
        Ok(())
    }

    /// A fully connected layer's parameters, named `weight` and `bias` in the file: W as
    /// `[out, in]` (transposed from `[in, out]` unless `transposed`), b as `[out]`.
    fn linear_params(
        &mut self,
        n: &NodeProto,
        weight: &str,
        bias: &str,
        transposed: bool,
    ) -> Result<(), OnnxError> {
        let (dims, values) = self.initializer(n, weight)?;
        let [rows, cols] = dims[..] else {
            return Err(self.bad(n, format!("weight {weight:?} has shape {dims:?}, not 2-D")));
        };
        let (outputs, inputs, values) = if transposed {
            (rows, cols, values)
        } else {
            let mut t = vec![0f32; values.len()];
            for r in 0..rows as usize {
                for c in 0..cols as usize {
                    t[c * rows as usize + r] = values[r * cols as usize + c];
                }
            }
            (cols, rows, t)
        };
        let weight_kind = ParamKind::Weight {
            fan_in: inputs,
            fan_out: outputs,
        };
        self.param(weight, vec![outputs, inputs], weight_kind, values);
        self.vector_param(n, bias, outputs, ParamKind::Zero)
    }

    fn conv(&mut self, n: &NodeProto) -> Result<Op, OnnxError> {
        let weight = n.input.get(1).cloned().unwrap_or_default();
        let (dims, values) = self.initializer(n, &weight)?;
        let [out, per_group, kh, kw] = dims[..] else {
            return Err(self.bad(
                n,
                format!("weight {weight:?} has shape {dims:?}; gnc trains 2-D convolutions"),
            ));
        };
        let window = self.window(n, Some([kh, kw]))?;
        let groups = int_attr(n, "group").unwrap_or(1);
        let kind = ParamKind::Weight {
            fan_in: per_group * kh * kw,
            fan_out: out * kh * kw / groups.max(1),
        };
        self.param(&weight, dims, kind, values);
        let bias = n.input.get(2).filter(|b| !b.is_empty()).cloned();
        if let Some(b) = &bias {
            self.vector_param(n, b, out, ParamKind::Zero)?;
        }
        Ok(Op::Conv {
            window,
            groups,
            bias: bias.is_some(),
        })
    }

    fn batch_norm(&mut self, n: &NodeProto, uses: &HashMap<&str, usize>) -> Result<Op, OnnxError> {
        self.unused_outputs(n, uses, 1)?;
        if n.input.len() != 5 {
            return Err(self.bad(n, "needs scale, bias, mean and variance".into()));
        }
        let (scale, _) = self.initializer(n, &n.input[1])?;
        let channels = scale.iter().product::<i64>();
        self.vector_param(n, &n.input[1], channels, ParamKind::One)?;
        self.vector_param(n, &n.input[2], channels, ParamKind::Zero)?;
        let stats = |i: usize| -> Result<Vec<f32>, OnnxError> {
            let (dims, values) = self.initializer(n, &n.input[i])?;
            if dims.iter().product::<i64>() != channels {
                return Err(self.bad(n, format!("{:?} is not of {channels} channels", n.input[i])));
            }
            Ok(values)
        };
        let layer = BatchNormLayer {
            channels,
            running_mean: stats(3)?,
            running_var: stats(4)?,
        };
        self.graph.batch_norms.push(layer);
        // ONNX keeps epsilon as a float32; PyTorch's 1e-5 is the shortest decimal of it, which
        // is what the user wrote and what PyTorch computes with.
        let eps = float_attr(n, "epsilon").unwrap_or(1e-5);
        let eps = eps.to_string().parse::<f64>().unwrap_or(f64::from(eps));
        Ok(Op::BatchNorm { eps })
    }

    fn reduce_mean(&mut self, n: &NodeProto) -> Result<Op, OnnxError> {
        let rank = self.rank_of(n, 0)?;
        let axes = match n.input.get(1).filter(|a| !a.is_empty()) {
            Some(a) => self.ints(n, a)?,
            None => ints_attr(n, "axes").unwrap_or_default(),
        };
        let axes: Option<Vec<i64>> = axes
            .iter()
            .map(|&a| normalise(a, rank).filter(|&a| a > 0).map(|a| a as i64))
            .collect();
        match axes {
            Some(axes) if !axes.is_empty() => Ok(Op::ReduceMean {
                axes,
                keepdims: int_attr(n, "keepdims").unwrap_or(1) != 0,
            }),
            _ => Err(self.bad(
                n,
                "gnc averages over dimensions after the batch's only (explicit axes, not 0)".into(),
            )),
        }
    }

    fn reshape(&mut self, n: &NodeProto) -> Result<Op, OnnxError> {
        let shape = n.input.get(1).cloned().unwrap_or_default();
        let dims = self.ints(n, &shape)?;
        let batch_kept = match dims.first() {
            Some(0 | -1) => true,
            Some(&d) => Some(d) == self.export_batch,
            None => false,
        };
        if !batch_kept {
            return Err(self.bad(
                n,
                format!(
                    "shape {dims:?} does not keep the batch dimension first (0, -1 or the \
                     exported batch {})",
                    self.export_batch.map_or("?".into(), |b| b.to_string())
                ),
            ));
        }
        if int_attr(n, "allowzero").unwrap_or(0) != 0 && dims[1..].contains(&0) {
            return Err(self.bad(n, "allowzero with a zero dimension is not supported".into()));
        }
        Ok(Op::Reshape {
            dims: dims[1..].to_vec(),
        })
    }

    /// Pooling and convolution geometry; `kernel` from the weight for a convolution.
    fn window(&self, n: &NodeProto, kernel: Option<[i64; 2]>) -> Result<Window, OnnxError> {
        if let Some(pad) = string_attr(n, "auto_pad").filter(|p| p != "NOTSET") {
            return Err(self.bad(n, format!("auto_pad = {pad:?}; export with explicit pads")));
        }
        let pair = |name: &str, default: i64| -> Result<[i64; 2], OnnxError> {
            match ints_attr(n, name).as_deref() {
                None => Ok([default, default]),
                Some(&[h, w]) => Ok([h, w]),
                Some(other) => Err(self.bad(n, format!("{name} = {other:?}: 2-D only"))),
            }
        };
        let kernel = match kernel {
            Some(k) => k,
            None => match ints_attr(n, "kernel_shape").as_deref() {
                Some(&[h, w]) => [h, w],
                other => return Err(self.bad(n, format!("kernel_shape = {other:?}: 2-D only"))),
            },
        };
        let padding = match ints_attr(n, "pads").as_deref() {
            None => [0, 0],
            Some(&[t, l, b, r]) if t == b && l == r => [t, l],
            Some(other) => {
                return Err(self.bad(
                    n,
                    format!("pads = {other:?}: gnc pads both sides of a dimension alike"),
                ));
            }
        };
        Ok(Window {
            kernel,
            stride: pair("strides", 1)?,
            padding,
            dilation: pair("dilations", 1)?,
        })
    }

    fn param(&mut self, name: &str, shape: Vec<i64>, kind: ParamKind, values: Vec<f32>) {
        self.consumed.insert(name.to_string());
        self.graph.params.push(Param {
            name: name.to_string(),
            shape,
            kind,
            values,
        });
    }

    /// A `[len]` parameter (a bias, a BatchNorm's scale or shift), stored as `[len]`.
    fn vector_param(
        &mut self,
        n: &NodeProto,
        name: &str,
        len: i64,
        kind: ParamKind,
    ) -> Result<(), OnnxError> {
        let (dims, values) = self.initializer(n, name)?;
        if dims.iter().product::<i64>() != len {
            return Err(self.bad(n, format!("{name:?} has shape {dims:?}, not [{len}]")));
        }
        self.param(name, vec![len], kind, values);
        Ok(())
    }

    /// A float initializer's dimensions and values, once: a second layer using it would share
    /// weights, which gnc does not train.
    fn initializer(&self, n: &NodeProto, name: &str) -> Result<(Vec<i64>, Vec<f32>), OnnxError> {
        if self.consumed.contains(name) {
            return Err(self.bad(
                n,
                format!(
                    "{name:?} is used by two layers (shared weights); gnc trains each layer's own"
                ),
            ));
        }
        let t = self.tensors.get(name).ok_or_else(|| {
            self.bad(
                n,
                format!("{name:?} must be an initializer (a weight stored in the file)"),
            )
        })?;
        let values = tensor::floats(t).map_err(|m| self.bad(n, m))?;
        Ok((t.dims.clone(), values))
    }

    fn ints(&self, n: &NodeProto, name: &str) -> Result<Vec<i64>, OnnxError> {
        let t = self.tensors.get(name).ok_or_else(|| {
            self.bad(
                n,
                format!("{name:?} must be a constant (gnc resolves shapes before training)"),
            )
        })?;
        tensor::ints(t).map_err(|m| self.bad(n, m))
    }

    /// Input `i` of `n` as a value computed earlier.
    fn value(&self, n: &NodeProto, i: usize) -> Result<Operand, OnnxError> {
        let name = n.input.get(i).map(String::as_str).unwrap_or("");
        self.slots
            .get(name)
            .map(|&s| Operand::Value(s))
            .ok_or_else(|| self.undefined(n, name))
    }

    /// Input `i` of `n` as a value or a float constant.
    fn operand(&mut self, n: &NodeProto, i: usize) -> Result<Operand, OnnxError> {
        let name = n.input.get(i).cloned().unwrap_or_default();
        if let Some(&s) = self.slots.get(&name) {
            return Ok(Operand::Value(s));
        }
        if let Some(&c) = self.constant_slots.get(&name) {
            return Ok(Operand::Constant(c));
        }
        let t = self
            .tensors
            .get(&name)
            .ok_or_else(|| self.undefined(n, &name))?;
        let values = tensor::floats(t).map_err(|m| self.bad(n, m))?;
        let c = self.graph.constants.len();
        self.graph.constants.push(Constant {
            shape: t.dims.clone(),
            values,
        });
        self.constant_slots.insert(name, c);
        Ok(Operand::Constant(c))
    }

    fn rank_of(&self, n: &NodeProto, i: usize) -> Result<usize, OnnxError> {
        match self.value(n, i)? {
            Operand::Value(s) => Ok(self.ranks[s]),
            Operand::Constant(_) => unreachable!("value() gives values"),
        }
    }

    /// Refuses a node whose outputs after the first `keep` are read (BatchNorm's running
    /// statistics, MaxPool's indices, Dropout's mask).
    fn unused_outputs(
        &self,
        n: &NodeProto,
        uses: &HashMap<&str, usize>,
        keep: usize,
    ) -> Result<(), OnnxError> {
        match n
            .output
            .iter()
            .skip(keep)
            .find(|o| uses.contains_key(o.as_str()))
        {
            Some(o) => Err(self.bad(
                n,
                format!("its output {o:?} is read, which gnc does not offer"),
            )),
            None => Ok(()),
        }
    }

    fn undefined(&self, n: &NodeProto, name: &str) -> OnnxError {
        self.bad(
            n,
            format!("input {name:?} is not defined before the node (nodes must be in order)"),
        )
    }

    fn bad(&self, n: &NodeProto, message: String) -> OnnxError {
        OnnxError::Node {
            path: self.path.to_path_buf(),
            node: node_name(n),
            op_type: n.op_type().to_string(),
            message,
        }
    }

    fn unsupported(&self, n: &NodeProto) -> OnnxError {
        let domain = n.domain.as_deref().filter(|d| !d.is_empty());
        OnnxError::Unsupported {
            path: self.path.to_path_buf(),
            node: node_name(n),
            op_type: domain.map_or(n.op_type().to_string(), |d| format!("{d}.{}", n.op_type())),
        }
    }
}

fn node_name(n: &NodeProto) -> String {
    n.name
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| n.output.first().cloned())
        .unwrap_or_default()
}

/// `axis` of a tensor of `rank` dimensions, counted from 0 (ONNX counts negative ones from
/// the end).
fn normalise(axis: i64, rank: usize) -> Option<usize> {
    let rank = rank as i64;
    let a = if axis < 0 { axis + rank } else { axis };
    (0..rank).contains(&a).then_some(a as usize)
}

fn name(v: &ValueInfoProto) -> &str {
    v.name.as_deref().unwrap_or("")
}

fn names(vs: &[&ValueInfoProto]) -> String {
    vs.iter()
        .map(|v| format!("{:?}", name(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value's dimensions (None where symbolic or unknown) and element type.
fn dims(v: &ValueInfoProto) -> (Vec<Option<i64>>, Option<i32>) {
    use crate::proto::tensor_shape_proto::dimension::Value as Dim;
    use crate::proto::type_proto::Value;
    match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Value::TensorType(t)) => {
            let dims = t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(Dim::DimValue(v)) if v > 0 => Some(v),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            (dims, t.elem_type)
        }
        _ => (Vec::new(), None),
    }
}

fn show_dims(dims: &[Option<i64>]) -> String {
    let shown: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".into(), |v| v.to_string()))
        .collect();
    format!("[{}]", shown.join(", "))
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name() == name)
}

fn int_attr(n: &NodeProto, name: &str) -> Option<i64> {
    attr(n, name).and_then(|a| a.i)
}

fn float_attr(n: &NodeProto, name: &str) -> Option<f32> {
    attr(n, name).and_then(|a| a.f)
}

fn ints_attr(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

fn string_attr(n: &NodeProto, name: &str) -> Option<String> {
    attr(n, name).and_then(|a| {
        a.s.as_ref()
            .map(|s| String::from_utf8_lossy(s).into_owned())
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use prost::Message;

    use crate::proto::tensor_shape_proto::{Dimension, dimension};
    use crate::proto::type_proto::{Tensor, Value};
    use crate::proto::{
        AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, TensorShapeProto,
        TypeProto, ValueInfoProto,
    };
    use crate::{Graph, OnnxError, Op, ParamKind};

    fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|&d| Dimension {
                value: Some(dimension::Value::DimValue(d)),
                ..Default::default()
            })
            .collect();
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(Value::TensorType(Tensor {
                    elem_type: Some(super::FLOAT),
                    shape: Some(TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn floats(name: &str, dims: &[i64], values: Vec<f32>) -> TensorProto {
        TensorProto {
            name: Some(name.into()),
            dims: dims.to_vec(),
            data_type: Some(1),
            float_data: values,
            ..Default::default()
        }
    }

    fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            name: Some(format!("the {op}")),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        }
    }

    fn int(name: &str, i: i64) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            i: Some(i),
            ..Default::default()
        }
    }

    /// x [n, 3] → Gemm(W [2, 3] or [3, 2], b [2]) → then `extra` nodes → `out` [n, 2].
    fn model(trans_b: i64, extra: Vec<NodeProto>, out: &str, outputs: usize) -> Vec<u8> {
        let w = if trans_b == 1 {
            floats("w", &[2, 3], vec![1., 2., 3., 4., 5., 6.])
        } else {
            floats("w", &[3, 2], vec![1., 4., 2., 5., 3., 6.])
        };
        let mut nodes = vec![node(
            "Gemm",
            &["x", "w", "b"],
            "y",
            vec![int("transB", trans_b)],
        )];
        nodes.extend(extra);
        ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                initializer: vec![w, floats("b", &[2], vec![0.5, -0.5])],
                input: vec![value("x", &[1, 3])],
                output: (0..outputs).map(|_| value(out, &[1, 2])).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn load(bytes: &[u8]) -> Result<Graph, OnnxError> {
        Graph::from_bytes(bytes, Path::new("net.onnx"))
    }

    #[test]
    fn a_fully_connected_weight_is_out_by_in_whichever_way_the_file_stores_it() {
        for trans_b in [0, 1] {
            let g = load(&model(trans_b, vec![], "y", 1)).unwrap();
            assert_eq!(g.nodes.len(), 1);
            assert_eq!(g.nodes[0].op, Op::Linear);
            assert_eq!(g.params[0].shape, [2, 3]);
            assert_eq!(g.params[0].values, [1., 2., 3., 4., 5., 6.]);
            assert_eq!(
                g.params[0].kind,
                ParamKind::Weight {
                    fan_in: 3,
                    fan_out: 2
                }
            );
            assert_eq!((g.example_shape.as_slice(), g.outputs), (&[3i64][..], 2));
        }
    }

    #[test]
    fn an_unsupported_op_is_refused_with_its_node_and_the_supported_list() {
        let e = load(&model(
            1,
            vec![node("Softplus", &["y"], "z", vec![])],
            "z",
            1,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("net.onnx: node \"the Softplus\" has op type Softplus"),
            "{e}"
        );
        assert!(e.contains("supported: Gemm, MatMul"), "{e}");
    }

    #[test]
    fn two_outputs_are_refused() {
        let e = load(&model(1, vec![], "y", 2)).unwrap_err().to_string();
        assert!(e.contains("one output") && e.contains("has 2"), "{e}");
    }

    #[test]
    fn shared_weights_and_undefined_inputs_are_refused() {
        let shared = node("Gemm", &["y", "w", "b"], "z", vec![int("transB", 1)]);
        let e = load(&model(1, vec![shared], "z", 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"w\" is used by two layers"), "{e}");
        let e = load(&model(
            1,
            vec![node("Relu", &["nowhere"], "z", vec![])],
            "z",
            1,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("input \"nowhere\" is not defined"), "{e}");
    }

    #[test]
    fn a_truncated_file_is_not_an_onnx_model() {
        let bytes = model(1, vec![], "y", 1);
        let e = load(&bytes[..bytes.len() / 2]).unwrap_err().to_string();
        assert!(e.contains("net.onnx is not an ONNX model"), "{e}");
    }
}
