//! The portable matrix product: `gnc-kernels` (each output element one chain of fused
//! multiply-adds over the inner dimension in increasing order from +0.0; explicit AVX-512F,
//! AVX2+FMA and scalar microkernels chosen at run time, all giving the same bits). Re-exported
//! here, where the worker's kernels live; the crate's documentation has the definition and
//! what makes it fast without changing a bit.

pub use gnc_kernels::{Isa, Plan, Strided, check_fp_env, gemm, gemm_with, matmul};
