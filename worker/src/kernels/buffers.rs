//! The process's pool of f32 buffers, and tensors' values copied into them.
//!
//! A logical worker's layers, GNC's weights and gradients and the streaming tree sum each need
//! buffers of the same few sizes once per worker, 64 or 256 times an iteration. A fresh one
//! would be zero-filled (and, past glibc's mmap threshold, faulted in page by page) only to be
//! overwritten, so finished ones come back here for the next.

use std::sync::{Arc, Mutex};

use tch::Tensor;

/// Buffers handed back, kept for the next use of the same size. One pool for the process, not
/// one per thread: the engine's extra compute threads live for one iteration, and GNC's saved
/// gradients move between the pool and the workers' state, so buffers must outlive the thread
/// that freed them.
static SPARE: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// How many buffers the pool keeps (a few layers' worth of inputs, weights, gradients and
/// partial tree sums for each of a few threads).
const SPARE_BUFFERS: usize = 128;

fn spare() -> std::sync::MutexGuard<'static, Vec<Vec<f32>>> {
    // A panic while the lock was held leaves only spare buffers behind, all still valid.
    SPARE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A buffer of `n` floats whose values are left over from earlier use: every caller
/// overwrites all of them.
pub fn buffer(n: usize) -> Vec<f32> {
    let found = {
        let mut spare = spare();
        // The most recently returned: the likeliest still in cache.
        let found = spare.iter().rposition(|v| v.len() == n);
        found.map(|k| spare.remove(k))
    };
    found.unwrap_or_else(|| vec![0.0; n])
}

/// Hands a buffer back for [`buffer`].
pub fn recycle(v: Vec<f32>) {
    let mut spare = spare();
    if spare.len() == SPARE_BUFFERS {
        // The oldest goes: the newest is the likeliest still in cache.
        spare.remove(0);
    }
    spare.push(v);
}

/// Drops a holder of shared values; the last one hands the buffer back to the pool.
pub fn release(v: Arc<Vec<f32>>) {
    if let Ok(v) = Arc::try_unwrap(v) {
        recycle(v);
    }
}

/// A tensor's values, row-major.
pub fn values(t: &Tensor) -> Vec<f32> {
    let n = t.numel();
    let mut v = buffer(n);
    t.copy_data(&mut v, n);
    v
}
