//! A bundle of tensors as one flat run of f32, in bundle order: the form it takes in a
//! shared-memory slot. Copies are exact, so flattening changes no bit.

use tch::Tensor;

/// Copies `bundle` into `out` (which must be exactly as long as the bundle's elements).
pub fn flatten_into(bundle: &[Tensor], out: &mut [f32]) {
    let mut offset = 0;
    for tensor in bundle {
        let n = tensor.numel();
        // copy_data makes a contiguous copy first if needed, and refuses a non-f32 tensor.
        tensor.copy_data(&mut out[offset..offset + n], n);
        offset += n;
    }
    assert_eq!(offset, out.len(), "the slot is as long as the bundle");
}

/// Tensors of the given shapes, filled from `flat` in order.
pub fn unflatten(flat: &[f32], shapes: &[Vec<i64>]) -> Vec<Tensor> {
    let mut offset = 0;
    let tensors = shapes
        .iter()
        .map(|shape| {
            let n = shape.iter().product::<i64>() as usize;
            let t = Tensor::from_slice(&flat[offset..offset + n]).view(shape.as_slice());
            offset += n;
            t
        })
        .collect();
    assert_eq!(offset, flat.len(), "the flat bundle matches the shapes");
    tensors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_then_unflatten_keeps_every_bit() {
        let a = Tensor::from_slice(&[1.5f32, -0.0, f32::MIN_POSITIVE / 2.0, 3.0]).view([2, 2]);
        let b = Tensor::from_slice(&[7f32]);
        let shapes = vec![vec![2, 2], vec![1]];
        let mut flat = vec![0f32; 5];
        flatten_into(&[a.tr(), b.shallow_clone()], &mut flat);
        assert_eq!(flat[1].to_bits(), f32::MIN_POSITIVE.to_bits() / 2);
        let back = unflatten(&flat, &shapes);
        assert!(back[0].equal(&a.tr().contiguous()));
        assert!(back[1].equal(&b));
    }
}
