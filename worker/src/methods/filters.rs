//! Filter-wise sizes, which GNC (Eq. 6) and RNC (Eq. 5) scale their noise by.
//!
//! A filter p is an output channel of a convolution or a row of a linear weight (the first
//! dimension of a tensor of rank ≥ 2); a bias or BatchNorm vector is one filter as a whole.

use tch::Tensor;

/// ‖x^(p)‖ per filter, shaped to broadcast against `x`.
pub fn filter_norms(x: &Tensor) -> Tensor {
    if x.dim() >= 2 {
        let filters = x.size()[0];
        let mut shape = vec![filters];
        shape.extend(std::iter::repeat_n(1, x.dim() - 1));
        x.flatten(1, -1)
            .norm_scalaropt_dim(2, [1i64], false)
            .view(shape.as_slice())
    } else {
        x.norm().view([1])
    }
}

/// -α η ‖x^(p)‖ for every parameter.
pub fn neg_scales(params: &[Tensor], alpha_eta: f64) -> Vec<Tensor> {
    params
        .iter()
        .map(|x| filter_norms(x) * (-alpha_eta))
        .collect()
}
