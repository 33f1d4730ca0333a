//! New libtorch tensors whose values the caller writes in place (the `tch` feature).
//!
//! `tch`'s constructors from a slice (`Tensor::from_slice`, `from_data_size`) make a tensor of
//! zeros and then copy the slice into it: two passes over memory for one tensor of values.
//! The portable layers hand libtorch a weight gradient of a whole layer per logical worker
//! this way (F1: 7.6 MB per worker, 64 workers per iteration), and the zero fill and the copy
//! were a tenth of an iteration. [`written`] makes the tensor uninitialised and lets the
//! caller's code (a product, a copy) write its values there directly.
//!
//! Why this is sound: the tensor is created here and no other handle to its storage exists
//! until [`written`] returns it, so the slice handed to `write` is the only access to that
//! memory while it lives; the caller's closure cannot reach the tensor itself.
//!
//! What it asks of callers: `write` stores every element before reading any. A caller that
//! skipped one would hand libtorch whatever the allocator left there, often an earlier
//! gradient, and possibly the same from run to run, where golden hashes would not notice. So
//! with the `check-written` feature (the test suite's) every element starts as a signalling
//! NaN of a payload no arithmetic produces, and [`written`] panics if that NaN, or its quieted
//! form (what reading it into arithmetic gives), is left after `write`.
//!
//! [`norm`] goes the other way: libtorch's 2-norm of values gnc holds, read in place through a
//! view that never leaves the function (a worker's squared gradient norm is recorded in every
//! run's `noise_norm`, so its bits must stay libtorch's, while the gradient itself is gnc's).

use tch::{Device, Kind, Tensor};

/// A new contiguous CPU `f32` tensor of `shape` whose values are what `write` stores; `write`
/// must store every one of them (the slice starts with whatever libtorch's allocator left in
/// the memory: no zero fill, which is the point).
pub fn written(shape: &[i64], write: impl FnOnce(&mut [f32])) -> Tensor {
    let tensor = Tensor::empty(shape, (Kind::Float, Device::Cpu));
    let n = tensor.numel();
    if n == 0 {
        write(&mut []);
        return tensor;
    }
    assert!(tensor.is_contiguous(), "a new tensor is contiguous");
    let data = tensor.data_ptr().cast::<f32>();
    assert!(
        !data.is_null() && data.is_aligned(),
        "libtorch gave a new float tensor of {n} elements an unusable data pointer"
    );
    // SAFETY: `tensor` was created above, contiguous, of kind f32 on the CPU, so its storage
    // holds exactly `n` f32 from `data` (checked non-null and aligned). No other handle to
    // that storage exists until this function returns the tensor, so nothing else reads or
    // writes the memory while the slice lives; the slice ends with `write`'s call, before
    // `tensor` is returned. The memory came from libtorch's allocator through FFI, not from
    // a Rust allocation the compiler knows to be uninitialised, and every bit pattern is a
    // valid f32.
    let values = unsafe { std::slice::from_raw_parts_mut(data, n) };
    #[cfg(feature = "check-written")]
    values.fill(f32::from_bits(UNWRITTEN));
    write(values);
    #[cfg(feature = "check-written")]
    if let Some(i) = values
        .iter()
        .position(|v| v.to_bits() & !QUIET == UNWRITTEN)
    {
        panic!("element {i} of a written tensor of shape {shape:?} was not written");
    }
    tensor
}

/// The signalling NaN every element starts as under `check-written`; `QUIET` is the bit
/// arithmetic sets when it reads one.
#[cfg(feature = "check-written")]
const UNWRITTEN: u32 = 0x7fa0_c0de;
#[cfg(feature = "check-written")]
const QUIET: u32 = 0x0040_0000;

/// [`written`] with a copy of `values`: the values of `Tensor::from_slice(values).view(shape)`
/// (a tensor of its own, not a view) with one pass over memory instead of two.
pub fn from_values(values: &[f32], shape: &[i64]) -> Tensor {
    written(shape, |t| t.copy_from_slice(values))
}

/// libtorch's `Tensor::norm` (the 2-norm over every element, a 0-dimensional tensor) of
/// `values`, read where they are: the bits of `Tensor::from_slice(values).norm()` without
/// the copy.
pub fn norm(values: &[f32]) -> Tensor {
    if values.is_empty() {
        return Tensor::from_slice(values).norm();
    }
    // SAFETY: the view covers exactly `values` (`len` f32 from its start, contiguous, on the
    // CPU), which the borrow keeps alive and unchanged until this function returns. libtorch
    // only reads it: `norm` writes a new tensor, and since the view does not require grad,
    // no autograd node keeps a reference to it. The view is dropped before the borrow ends,
    // and no other handle to it was ever made, so nothing reads the memory afterwards.
    let view = unsafe {
        Tensor::from_blob(
            values.as_ptr().cast::<u8>(),
            &[values.len() as i64],
            &[],
            Kind::Float,
            Device::Cpu,
        )
    };
    let n = view.norm();
    drop(view);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_tensor_holds_the_values_in_row_major_order() {
        let values: Vec<f32> = (0..6).map(|i| i as f32 - 2.5).collect();
        let t = from_values(&values, &[2, 3]);
        assert_eq!(t.size(), [2, 3]);
        assert_eq!(t.kind(), Kind::Float);
        let reference = Tensor::from_slice(&values).view([2, 3]);
        assert!(t.equal(&reference));
        assert_eq!(t.double_value(&[1, 0]), 0.5);
    }

    #[test]
    fn the_closure_writes_into_the_tensor_itself() {
        let t = written(&[4], |v| {
            for (i, x) in v.iter_mut().enumerate() {
                *x = (i * i) as f32;
            }
        });
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [0.0, 1.0, 4.0, 9.0]);
    }

    #[test]
    fn an_empty_shape_gives_an_empty_tensor() {
        let t = written(&[0, 5], |v| assert!(v.is_empty()));
        assert_eq!(t.size(), [0, 5]);
    }

    #[test]
    #[cfg(feature = "check-written")]
    fn an_element_left_unwritten_is_caught() {
        let skipped = std::panic::catch_unwind(|| written(&[3], |v| v[..2].fill(1.0)));
        assert!(skipped.is_err(), "element 2 was never written");
        let read_first = std::panic::catch_unwind(|| written(&[2], |v| v[1] += 1.0));
        assert!(
            read_first.is_err(),
            "element 1 was read before it was written"
        );
        let whole = written(&[3], |v| v.fill(f32::NAN));
        assert!(
            whole.isnan().all().int64_value(&[]) == 1,
            "a NaN written is a value"
        );
    }

    #[test]
    fn the_norm_in_place_has_the_bits_of_a_tensors_norm_at_any_alignment() {
        // Lengths around libtorch's vector widths and reduction chunks, and large gradients;
        // offsets that move the start off every alignment a vector load could care about.
        let data: Vec<f32> = (0..400_017)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 1e-3 * (1.0 + (i % 37) as f32))
            .collect();
        for n in [1, 7, 8, 15, 16, 17, 31, 64, 1000, 4099, 65_537, 392_000] {
            for offset in 0..5 {
                let v = &data[offset..offset + n];
                let reference = Tensor::from_slice(v).norm();
                let shaped = Tensor::from_slice(v).view([1, n as i64]).norm();
                let ours = norm(v);
                assert_eq!(ours.size(), reference.size());
                for r in [reference, shaped] {
                    assert_eq!(
                        ours.double_value(&[]).to_bits(),
                        r.double_value(&[]).to_bits(),
                        "n = {n}, offset = {offset}"
                    );
                }
            }
        }
        assert_eq!(norm(&[]).double_value(&[]), 0.0);
    }

    #[test]
    fn a_wrong_length_copy_is_refused() {
        let r = std::panic::catch_unwind(|| from_values(&[1.0, 2.0], &[3]));
        assert!(r.is_err(), "three elements cannot be copied from two");
    }
}
