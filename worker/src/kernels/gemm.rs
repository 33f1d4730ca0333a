//! A matrix product whose bits are defined by the source, not by the CPU.
//!
//! Every output element is one chain of fused multiply-adds over the inner dimension, in
//! increasing order, starting from +0.0:
//!
//! ```text
//! c[i][j] = fma(a[i][k-1], b[k-1][j], … fma(a[i][1], b[1][j], fma(a[i][0], b[0][j], 0.0)))
//! ```
//!
//! IEEE 754 defines each fma's result exactly, and Rust neither reassociates nor contracts
//! float arithmetic, so the result is the same whatever the tiling, the vector width, the
//! compiler's instruction choice or the processor (with or without a hardware FMA: `mul_add`
//! is then a correctly rounded library call, slower but equal). That is the whole point:
//! vendor BLAS libraries choose kernels by CPU vendor and model, and their sums differ.
//!
//! Speed comes from register tiles of `ROWS` × `COLS` outputs: each step of the chain loads
//! `COLS` consecutive elements of one row of `b` and broadcasts one element of `a` per row,
//! which the compiler turns into vector FMAs when the build enables AVX2 and FMA
//! (`scripts/cargo-config.sh` does).

/// Rows of `a` per register tile: 6 rows × 2 vectors = 12 accumulators, plus 2 for the row of
/// `b` and 1 broadcast, of the 16 AVX registers.
const ROWS: usize = 6;
/// Columns of `b` per register tile (two AVX vectors of f32).
const COLS: usize = 16;

/// A read-only matrix of `f32` in memory with arbitrary element strides, so that a transposed
/// operand needs no copy.
#[derive(Clone, Copy)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Strided<'a> {
    /// A row-major `rows` × `cols` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Strided<'a> {
        assert_eq!(data.len(), rows * cols, "matrix data and shape disagree");
        Strided {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of `self`, as a view.
    pub fn t(self) -> Strided<'a> {
        Strided {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

/// `c = a · b`, with `b` row-major (`k` × `n`) and `c` row-major (`m` × `n`); each element the
/// fma chain of the module's definition.
pub fn matmul(a: Strided, b: &[f32], n: usize, c: &mut [f32]) {
    let (m, k) = (a.rows, a.cols);
    assert_eq!(b.len(), k * n, "b is not k x n");
    assert_eq!(c.len(), m * n, "c is not m x n");
    // Column tiles of 16, then one of 8 and one of 4 for the rest, then single columns.
    let wide = n - n % COLS;
    let mut tiles: Vec<(usize, usize)> = (0..wide).step_by(COLS).map(|j| (j, COLS)).collect();
    let mut j = wide;
    for width in [8, 4, 1] {
        while n - j >= width {
            tiles.push((j, width));
            j += width;
        }
    }
    let rows = ROWS;
    // Which operand stays in cache while the other streams past it: the smaller one. The
    // order of the tiles never changes a bit, only where the operands come from.
    if k * n <= m * k {
        for i0 in (0..m).step_by(rows) {
            for &(j0, width) in &tiles {
                tile(a, b, n, c, i0, (m - i0).min(rows), j0, width);
            }
        }
    } else {
        for &(j0, width) in &tiles {
            for i0 in (0..m).step_by(rows) {
                tile(a, b, n, c, i0, (m - i0).min(rows), j0, width);
            }
        }
    }
}

/// The tile of `rows` rows from `i0` and `width` columns from `j0`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile(
    a: Strided,
    b: &[f32],
    n: usize,
    c: &mut [f32],
    i0: usize,
    rows: usize,
    j0: usize,
    width: usize,
) {
    macro_rules! widths {
        ($r:literal) => {
            match width {
                COLS => tile_of::<$r, COLS>(a, b, n, c, i0, j0),
                8 => tile_of::<$r, 8>(a, b, n, c, i0, j0),
                4 => tile_of::<$r, 4>(a, b, n, c, i0, j0),
                _ => tile_of::<$r, 1>(a, b, n, c, i0, j0),
            }
        };
    }
    match rows {
        1 => widths!(1),
        2 => widths!(2),
        3 => widths!(3),
        4 => widths!(4),
        5 => widths!(5),
        _ => widths!(6),
    }
}

/// `R` rows × `C` columns of `c` from (`i0`, `j0`), in registers for the whole chain.
#[inline(always)]
fn tile_of<const R: usize, const C: usize>(
    a: Strided,
    b: &[f32],
    n: usize,
    c: &mut [f32],
    i0: usize,
    j0: usize,
) {
    let mut acc = [[0.0f32; C]; R];
    let mut b_at = j0;
    let mut a_at = i0 * a.row_stride;
    for _ in 0..a.cols {
        let row: &[f32; C] = b[b_at..b_at + C]
            .try_into()
            .expect("a tile row has C elements");
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let x = a.data[a_at + r * a.row_stride];
            for (v, &y) in acc_row.iter_mut().zip(row) {
                *v = x.mul_add(y, *v);
            }
        }
        b_at += n;
        a_at += a.col_stride;
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let start = (i0 + r) * n + j0;
        c[start..start + C].copy_from_slice(acc_row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(a: &Strided, i: usize, j: usize) -> f32 {
        a.data[i * a.row_stride + j * a.col_stride]
    }

    /// The definition, written as plainly as possible.
    fn reference(a: Strided, b: &[f32], n: usize) -> Vec<f32> {
        let mut c = vec![0.0; a.rows * n];
        for i in 0..a.rows {
            for j in 0..n {
                let mut acc = 0.0f32;
                for p in 0..a.cols {
                    acc = at(&a, i, p).mul_add(b[p * n + j], acc);
                }
                c[i * n + j] = acc;
            }
        }
        c
    }

    fn values(len: usize, salt: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                let h = i
                    .wrapping_add(salt.wrapping_mul(1_000_003))
                    .wrapping_mul(2_654_435_761);
                (h as f64 / 4_294_967_296.0 - 0.5) as f32
            })
            .collect()
    }

    #[test]
    fn tiles_and_edges_equal_the_definition_bit_for_bit() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (4, 16, 16),
            (5, 7, 17),
            (32, 33, 50),
            (9, 3, 35),
            (13, 40, 3),
            (7, 2, 64),
        ] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            let mut c = vec![f32::NAN; m * n];
            matmul(Strided::rows(&a, m, k), &b, n, &mut c);
            let want = reference(Strided::rows(&a, m, k), &b, n);
            assert_eq!(
                c.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "m={m} k={k} n={n}"
            );
        }
    }

    #[test]
    fn a_transposed_view_reads_the_transpose() {
        let (m, k, n) = (6, 5, 18);
        let at = values(k * m, 3); // k x m, read as its transpose
        let mut a = vec![0.0; m * k];
        for i in 0..m {
            for p in 0..k {
                a[i * k + p] = at[p * m + i];
            }
        }
        let b = values(k * n, 4);
        let (mut c1, mut c2) = (vec![0.0; m * n], vec![0.0; m * n]);
        matmul(Strided::rows(&at, k, m).t(), &b, n, &mut c1);
        matmul(Strided::rows(&a, m, k), &b, n, &mut c2);
        assert_eq!(c1, c2);
    }

    #[test]
    fn products_are_exact_where_floats_can_be() {
        // Small integers: every partial sum is exact, so the product is the integer one.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
        let mut c = [0.0; 4];
        matmul(Strided::rows(&a, 2, 3), &b, 2, &mut c);
        assert_eq!(c, [58.0, 64.0, 139.0, 154.0]);
    }
}
