//! The complete training state (DESIGN.md §4.5) and its names in a checkpoint:
//! `param/<name>`, `bn/<layer>/mean|var`, `opt/<slot>/<name>`, `prev_mean/<name>` (g~(t-1)) and
//! `prev_grad/<worker>/<name>` (g_i(t-1)), plus the optimiser's step count as a scalar.

use gnc_contract::manifest::LossWindow;
use std::collections::HashMap;

use tch::Tensor;

use crate::CheckpointError;
use crate::device::Device;
use crate::model::ParamSpec;
use crate::optim::Optimizer;
use crate::tensor_file::Stored;

/// One logical worker's gradient as values: one row-major `Vec` per parameter, in canonical
/// order. GNC keeps each worker's (g_i(t-1)) in this form, so that the kernels that write it
/// (the portable backward) and read it (GNC's weights, `methods::GncWeights`) need no tensor
/// in between, and each worker's buffers are reused from iteration to iteration.
pub type SavedGradient = Vec<Vec<f32>>;

pub struct TrainState {
    /// Iterations completed.
    pub iteration: u64,
    pub params: Vec<Tensor>,
    pub running: Vec<(Tensor, Tensor)>,
    pub optimizer: Optimizer,
    /// g~(t-1), kept while the method is GNC.
    pub prev_mean: Option<Vec<Tensor>>,
    /// g_i(t-1) per logical worker, kept while the method is GNC.
    pub prev_grads: Vec<Option<SavedGradient>>,
    /// The loss trigger's window (`schedule.loss_trigger`; empty without one).
    pub loss_window: LossWindow,
}

impl TrainState {
    /// Every tensor of the state under its checkpoint name; the saved gradients as the values
    /// they are (written one at a time, never all copied at once).
    pub fn to_named(&self, specs: &[ParamSpec]) -> Vec<(String, Stored<'_>)> {
        let mut out = Vec::new();
        let named = |prefix: &str, ts: &[Tensor], out: &mut Vec<(String, Stored)>| {
            for (s, t) in specs.iter().zip(ts) {
                out.push((
                    format!("{prefix}/{}", s.name),
                    Stored::Tensor(t.shallow_clone()),
                ));
            }
        };
        named("param", &self.params, &mut out);
        for (i, (m, v)) in self.running.iter().enumerate() {
            out.push((format!("bn/{i}/mean"), Stored::Tensor(m.shallow_clone())));
            out.push((format!("bn/{i}/var"), Stored::Tensor(v.shallow_clone())));
        }
        for (slot, ts) in &self.optimizer.slots {
            named(&format!("opt/{slot}"), ts, &mut out);
        }
        out.push((
            "opt/steps".into(),
            Stored::Tensor(Tensor::from_slice(&[self.optimizer.steps as f32])),
        ));
        if let Some(mean) = &self.prev_mean {
            named("prev_mean", mean, &mut out);
        }
        for (w, g) in self.prev_grads.iter().enumerate() {
            for (s, values) in specs.iter().zip(g.iter().flatten()) {
                out.push((
                    format!("prev_grad/{w}/{}", s.name),
                    Stored::Values(values, s.shape.clone()),
                ));
            }
        }
        out
    }

    /// Fills this freshly initialised state from checkpoint tensors; every tensor the state
    /// has must be present with the same shape.
    /// Takes a checkpoint's state: its tensors, and the loss trigger's window from its
    /// manifest.
    pub fn restore(
        &mut self,
        specs: &[ParamSpec],
        loaded: crate::checkpoint::Loaded,
    ) -> Result<(), CheckpointError> {
        self.load_named(specs, loaded.manifest.iteration, loaded.tensors)?;
        self.loss_window = loaded.manifest.loss_trigger.unwrap_or_default();
        Ok(())
    }

    pub fn load_named(
        &mut self,
        specs: &[ParamSpec],
        iteration: u64,
        tensors: Vec<(String, Tensor)>,
    ) -> Result<(), CheckpointError> {
        // Read on the host; the state lives where its fresh parameters were made.
        let device = Device::of(&self.params[0]);
        let mut map: HashMap<String, Tensor> = tensors
            .into_iter()
            .map(|(name, t)| (name, device.place(t)))
            .collect();
        for (s, p) in specs.iter().zip(self.params.iter_mut()) {
            *p = take(&mut map, format!("param/{}", s.name), p)?;
        }
        for (i, (m, v)) in self.running.iter_mut().enumerate() {
            *m = take(&mut map, format!("bn/{i}/mean"), m)?;
            *v = take(&mut map, format!("bn/{i}/var"), v)?;
        }
        for (slot, ts) in self.optimizer.slots.iter_mut() {
            for (s, t) in specs.iter().zip(ts.iter_mut()) {
                *t = take(&mut map, format!("opt/{slot}/{}", s.name), t)?;
            }
        }
        let steps = take(&mut map, "opt/steps".into(), &device.zeros(&[1]))?;
        self.optimizer.steps = steps.double_value(&[0]) as u64;
        self.prev_mean = take_set(&mut map, "prev_mean", specs, &self.params)?;
        for (w, g) in self.prev_grads.iter_mut().enumerate() {
            let tensors = take_set(&mut map, &format!("prev_grad/{w}"), specs, &self.params)?;
            *g = tensors.map(|ts| ts.iter().map(crate::kernels::buffers::values).collect());
        }
        if let Some(extra) = map.keys().next() {
            return Err(CheckpointError::Unexpected(extra.clone()));
        }
        self.iteration = iteration;
        Ok(())
    }
}

/// Removes `name` from the checkpoint's tensors, checking its shape against `like`.
fn take(
    map: &mut HashMap<String, Tensor>,
    name: String,
    like: &Tensor,
) -> Result<Tensor, CheckpointError> {
    let t = map
        .remove(&name)
        .ok_or_else(|| CheckpointError::Missing(name.clone()))?;
    if t.size() != like.size() {
        return Err(CheckpointError::Shape {
            name,
            expected: like.size(),
            found: t.size(),
        });
    }
    Ok(t)
}

/// A per-parameter set stored under `prefix/` (optional: present only while GNC keeps it).
fn take_set(
    map: &mut HashMap<String, Tensor>,
    prefix: &str,
    specs: &[ParamSpec],
    params: &[Tensor],
) -> Result<Option<Vec<Tensor>>, CheckpointError> {
    let marker = format!("{prefix}/");
    if !map.keys().any(|k| k.starts_with(&marker)) {
        return Ok(None);
    }
    specs
        .iter()
        .zip(params)
        .map(|(s, p)| take(map, format!("{prefix}/{}", s.name), p))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
