//! A bundle of tensors as one flat run of f32, in bundle order: the form it takes in a
//! shared-memory slot. Copies are exact, so flattening changes no bit.

use std::ops::Range;

use tch::Tensor;

use crate::device::Device;

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

/// Builds the tensors of a flat bundle from consecutive pieces of it, such as the reduced
/// shards an all-reduce lends where they lie in shared memory: each piece is copied once,
/// straight into a fresh tensor. A tensor that lies wholly inside one piece is that copy;
/// only one cut by a piece boundary (at most one per boundary) is joined from its parts,
/// which copies it a second time.
#[derive(Debug)]
pub struct Unflatten<'s> {
    shapes: &'s [Vec<i64>],
    /// Where the finished tensors go.
    device: Device,
    tensors: Vec<Tensor>,
    /// Parts of the tensor being built (`tensors.len()`), in order.
    parts: Vec<Tensor>,
    /// Elements of that tensor still missing.
    missing: usize,
    /// The flat offset the next piece must start at.
    next: usize,
}

fn numel(shape: &[i64]) -> usize {
    shape.iter().product::<i64>() as usize
}

impl<'s> Unflatten<'s> {
    pub fn new(shapes: &'s [Vec<i64>], device: Device) -> Self {
        let mut unflatten = Self {
            shapes,
            device,
            tensors: Vec::with_capacity(shapes.len()),
            parts: Vec::new(),
            missing: 0,
            next: 0,
        };
        unflatten.start_next_tensor();
        unflatten
    }

    /// Copies `values`, the elements `range` of the flat bundle, into the tensors.
    ///
    /// # Panics
    /// If `range` does not start where the previous piece ended, if it runs past the bundle,
    /// or if `values` is not as long as `range`.
    pub fn push(&mut self, range: Range<usize>, values: &[f32]) {
        assert_eq!(
            range.start, self.next,
            "pieces must come in order, without gaps"
        );
        assert_eq!(range.len(), values.len(), "a piece is as long as its range");
        let mut rest = values;
        while !rest.is_empty() {
            assert!(
                self.tensors.len() < self.shapes.len(),
                "piece {range:?} runs past the bundle's end"
            );
            let (part, after) = rest.split_at(self.missing.min(rest.len()));
            self.parts.push(Tensor::from_slice(part));
            self.missing -= part.len();
            rest = after;
            if self.missing == 0 {
                self.complete_tensor();
            }
        }
        self.next = range.end;
    }

    /// The bundle's tensors, in order, of the given shapes.
    ///
    /// # Panics
    /// If the pieces did not cover the whole bundle.
    pub fn finish(self) -> Vec<Tensor> {
        assert_eq!(
            self.tensors.len(),
            self.shapes.len(),
            "the pieces end at {} before the bundle's end",
            self.next
        );
        self.tensors
    }

    fn complete_tensor(&mut self) {
        let shape = self.shapes[self.tensors.len()].as_slice();
        let flat = match self.parts.len() {
            1 => self.parts.pop().expect("one part"),
            _ => Tensor::cat(&std::mem::take(&mut self.parts), 0),
        };
        self.tensors.push(self.device.place(flat.view(shape)));
        self.start_next_tensor();
    }

    /// Moves on to the next tensor that has elements; empty ones are complete at once.
    fn start_next_tensor(&mut self) {
        while let Some(shape) = self.shapes.get(self.tensors.len()) {
            self.missing = numel(shape);
            if self.missing > 0 {
                return;
            }
            self.tensors.push(self.device.floats(&[], shape));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(t: &Tensor) -> Vec<u32> {
        let n = t.numel();
        let mut v = vec![0f32; n];
        t.copy_data(&mut v, n);
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn flatten_then_unflatten_keeps_every_bit() {
        let a = Tensor::from_slice(&[1.5f32, -0.0, f32::MIN_POSITIVE / 2.0, 3.0]).view([2, 2]);
        let b = Tensor::from_slice(&[7f32]);
        let shapes = vec![vec![2, 2], vec![1]];
        let mut flat = vec![0f32; 5];
        flatten_into(&[a.tr(), b.shallow_clone()], &mut flat);
        assert_eq!(flat[1].to_bits(), f32::MIN_POSITIVE.to_bits() / 2);
        let mut unflatten = Unflatten::new(&shapes, Device::CPU);
        unflatten.push(0..5, &flat);
        let back = unflatten.finish();
        assert_eq!(bits(&back[0]), bits(&a.tr().contiguous()));
        assert!(back[1].equal(&b));
    }

    #[test]
    fn pieces_cutting_tensors_anywhere_give_the_same_tensors() {
        let shapes = vec![vec![2, 3], vec![0], vec![4], vec![1, 1], vec![3]];
        let flat: Vec<f32> = (0..14).map(|i| i as f32 * 0.7 - 3.0).collect();
        let mut whole = Unflatten::new(&shapes, Device::CPU);
        whole.push(0..14, &flat);
        let whole = whole.finish();
        for cuts in [
            vec![0, 14],
            vec![0, 7, 14],
            vec![0, 1, 6, 7, 12, 13, 14],
            vec![0, 3, 3, 14],
        ] {
            let mut pieces = Unflatten::new(&shapes, Device::CPU);
            for cut in cuts.windows(2) {
                pieces.push(cut[0]..cut[1], &flat[cut[0]..cut[1]]);
            }
            let pieces = pieces.finish();
            assert_eq!(pieces.len(), shapes.len());
            for ((got, want), shape) in pieces.iter().zip(&whole).zip(&shapes) {
                assert_eq!(&got.size(), shape, "cuts {cuts:?}");
                assert_eq!(bits(got), bits(want), "cuts {cuts:?}");
            }
        }
        assert_eq!(
            bits(&whole[2]),
            flat[6..10].iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    #[should_panic(expected = "before the bundle's end")]
    fn missing_pieces_are_refused() {
        let shapes = vec![vec![4]];
        let mut unflatten = Unflatten::new(&shapes, Device::CPU);
        unflatten.push(0..2, &[1.0, 2.0]);
        unflatten.finish();
    }

    #[test]
    #[should_panic(expected = "in order, without gaps")]
    fn pieces_out_of_order_are_refused() {
        let shapes = vec![vec![4]];
        let mut unflatten = Unflatten::new(&shapes, Device::CPU);
        unflatten.push(2..4, &[1.0, 2.0]);
    }
}
