//! The arithmetic whose bits gnc defines itself at the portable reproducibility level
//! (`gnc_proto::repro`), where libtorch's CPU kernels would take them from a vendor library
//! that chooses its code by CPU vendor: the linear layers' matrix products ([`gemm`],
//! [`linear`]) and elementwise square roots ([`sqrt`]), on buffers from one pool ([`buffers`]).
//! At the native level each is libtorch's.
//! `kernels::fingerprint` checks, kernel by kernel, that a machine computes them all as the
//! reference machines do.

pub mod buffers;
pub mod fingerprint;
pub mod gemm;
pub mod linear;

use gnc_proto::repro::Level;
use tch::Tensor;

/// Whether this process computes at the portable level.
pub fn portable() -> bool {
    crate::pin::level() == Level::Portable
}

/// Elementwise √x. Portable: IEEE 754's correctly rounded square root, element by element
/// (libtorch's goes through MKL's vector math, whose results differ between Intel and AMD).
pub fn sqrt(x: &Tensor) -> Tensor {
    if !portable() {
        return x.sqrt();
    }
    let v = buffers::values(x);
    let root = gnc_kernels::tensor::written(&x.size(), |r| {
        for (r, &v) in r.iter_mut().zip(&v) {
            *r = v.sqrt();
        }
    });
    buffers::recycle(v);
    root
}
