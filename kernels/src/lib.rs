//! gnc's portable matrix product: bits defined by the source, not by the CPU.
//!
//! Every output element is one chain of fused multiply-adds over the inner dimension, in
//! increasing order, starting from +0.0:
//!
//! ```text
//! c[i][j] = fma(a[i][k-1], b[k-1][j], … fma(a[i][1], b[1][j], fma(a[i][0], b[0][j], 0.0)))
//! ```
//!
//! IEEE 754 defines each fma's result exactly (round to nearest even, subnormals kept), so the
//! result is the same whatever the tiling, the vector width, the instruction choice or the
//! processor; vendor BLAS libraries choose kernels by CPU vendor and model, and their sums
//! differ. What may change the bits is excluded here: no split of the inner dimension into
//! partial sums (threads divide the output, never k), no separate multiply and add, and no
//! flush-to-zero, denormals-are-zero or directed rounding — [`check_fp_env`] refuses a thread
//! whose MXCSR has any of them, rather than changing it behind the caller's back.
//!
//! Speed, all of which leaves the bits alone:
//!
//! * microkernels with explicit intrinsics per ISA, chosen at run time ([`Isa::best`]):
//!   AVX-512F (tiles of 12 rows × 32 columns, 24 `zmm` accumulators), AVX2+FMA (6 × 16, 12
//!   `ymm`), and a scalar `mul_add` path (6 × 16; the compiler may vectorise it, which changes
//!   nothing); [`gemm_with`] forces one (tests, benchmarks);
//! * `b` packed into zero-padded, 64-byte aligned panels of the tile's width (`k` rows of
//!   `NR` floats), so the microkernel reads one contiguous stream whatever `b`'s layout (a
//!   transposed row-major `b`, as the forward and input-gradient products have, is packed
//!   through the transpose's 8 × 8 register blocks); `a`
//!   is read in place through its strides (a broadcast per row and step), so the large operand
//!   should be `a` — the caller chooses the orientation (see `gnc-worker`'s `linear`); when
//!   `a` is stored k-major (each step reads the next stored row, a stride too long for the
//!   hardware's stride prefetcher) the kernels prefetch its lines 16 steps ahead;
//! * blocking of the inner dimension (`Plan::kc`, chosen by `a`'s layout) so a panel block and
//!   the lines of `a` stay in L1 while every row tile passes over them: a later block loads the
//!   output tile back into the accumulators and continues each chain where the previous block
//!   stored it (a stored f32 reloads exactly);
//! * masked edge tiles (columns) and narrower ones (rows);
//! * optionally threads over row tiles of the output (`Plan::threads`), never over k.
//!
//! The unsafe code (intrinsics, raw pointers, MXCSR) lives in the one module `simd`, the only
//! one the crate's lints allow it in, with a `// SAFETY:` comment per block; its entry point
//! checks every bound a kernel relies on. With the `tch` feature, its submodule
//! [`tensor`] (`simd/tensor.rs`) adds the other raw pointers the kernels need: new libtorch
//! tensors whose memory the caller's product or copy writes in place, and libtorch's norm of
//! values read in place.

#[allow(unsafe_code)]
mod simd;

#[cfg(feature = "tch")]
pub use simd::tensor;

use std::cell::RefCell;
use std::sync::OnceLock;

/// A read-only matrix of `f32` in memory with arbitrary element strides, so that a transposed
/// operand needs no copy: element (i, j) is `data[i * row_stride + j * col_stride]`.
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

    /// Element (i, j).
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }

    fn check(&self, what: &str) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
            assert!(
                last < self.data.len(),
                "{what}'s strides reach past its data"
            );
        }
    }
}

/// An instruction set a microkernel is written for. All give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// `f32::mul_add` in plain Rust: every CPU (a correctly rounded library call without a
    /// hardware FMA).
    Scalar,
    /// 256-bit vectors: x86-64 with AVX2 and FMA.
    Avx2,
    /// 512-bit vectors: x86-64 with AVX-512F.
    Avx512,
}

impl Isa {
    /// Every path, narrowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512 => "avx512f",
        }
    }

    /// `f32` lanes per vector register.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }

    /// Rows of a register tile.
    fn mr(self) -> usize {
        match self {
            Isa::Scalar | Isa::Avx2 => 6,
            Isa::Avx512 => 12,
        }
    }

    /// Columns of a register tile (two vectors), and so of a packed panel.
    fn nr(self) -> usize {
        match self {
            Isa::Scalar | Isa::Avx2 => 16,
            Isa::Avx512 => 32,
        }
    }

    /// Why this CPU cannot run the path, or `None` when it can.
    pub fn missing(self) -> Option<&'static str> {
        static FOUND: OnceLock<[bool; 3]> = OnceLock::new();
        let found = FOUND.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            let (avx2, avx512) = (
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                is_x86_feature_detected!("avx512f"),
            );
            #[cfg(not(target_arch = "x86_64"))]
            let (avx2, avx512) = (false, false);
            [true, avx2, avx512]
        });
        let why = match self {
            Isa::Scalar => return None,
            _ if cfg!(not(target_arch = "x86_64")) => "not an x86-64 build",
            Isa::Avx2 => "the CPU lacks AVX2 or FMA",
            Isa::Avx512 => "the CPU lacks AVX-512F",
        };
        let i = Isa::ALL.iter().position(|&x| x == self).unwrap_or(0);
        (!found[i]).then_some(why)
    }

    /// The widest path this CPU has (detected once).
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            *Isa::ALL
                .iter()
                .rev()
                .find(|isa| isa.missing().is_none())
                .unwrap_or(&Isa::Scalar)
        })
    }
}

/// How a product is computed (never what it computes: every plan gives the same bits).
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub isa: Isa,
    /// Steps of the inner dimension per block; 0 chooses by `a`'s layout ([`Plan::inner_block`]).
    pub kc: usize,
    /// Threads over row tiles of the output (1: the calling thread alone).
    pub threads: usize,
}

/// The inner block when `a` is stored k-major (`a.row_stride == 1`: each step reads a different
/// row of the stored matrix, so a block's lines of `a` are kept in L1 for the next row tile,
/// beside the panel block of 128 × 32 floats = 16 KiB).
pub const KC_K_MAJOR: usize = 128;

impl Plan {
    /// The inner block this plan uses for `a`: `kc` if set; else [`KC_K_MAJOR`] when `a` is
    /// stored k-major, and no blocking when its rows are contiguous (then each row tile
    /// streams its own rows of `a` and the panel streams from L2 at a rate the FMAs hide, and
    /// not storing and reloading the output tile wins: measured on F1's products).
    pub fn inner_block(&self, a: &Strided) -> usize {
        match self.kc {
            0 if a.row_stride == 1 && a.rows > 1 => KC_K_MAJOR,
            0 => a.cols.max(1),
            kc => kc,
        }
    }
}

impl Default for Plan {
    /// The widest ISA of this CPU, the inner block chosen by layout, one thread.
    fn default() -> Plan {
        Plan {
            isa: Isa::best(),
            kc: 0,
            threads: 1,
        }
    }
}

/// Panics unless this thread's floating-point environment computes fmas as IEEE 754 defines
/// them: on x86-64, MXCSR with flush-to-zero and denormals-are-zero off and round to nearest
/// even (the defaults, which libtorch and gnc leave alone). A product refuses to run otherwise
/// instead of changing the register itself: a caller that set it had a reason, and a silent
/// change would hide that its other arithmetic is not the portable one.
pub fn check_fp_env() {
    #[cfg(target_arch = "x86_64")]
    {
        let csr = simd::mxcsr();
        assert!(
            csr & simd::MXCSR_RESULT_BITS == 0,
            "gnc-kernels: MXCSR is {csr:#06x}: flush-to-zero, denormals-are-zero or a directed \
             rounding mode is on, which changes fma results; the portable product refuses to run"
        );
    }
}

/// `c = a · b`, with `b` row-major (`k` × `n`) and `c` row-major (`m` × `n`); each element the
/// fma chain of the crate's definition. The widest ISA this CPU has, one thread.
pub fn matmul(a: Strided, b: &[f32], n: usize, c: &mut [f32]) {
    assert_eq!(b.len(), a.cols * n, "b is not k x n");
    gemm(a, Strided::rows(b, a.cols, n), c);
}

/// `c = a · b` for any strides of `a` and `b`, `c` row-major (`m` × `n`). The widest ISA this
/// CPU has, one thread.
pub fn gemm(a: Strided, b: Strided, c: &mut [f32]) {
    gemm_with(&Plan::default(), a, b, c);
}

thread_local! {
    /// The packed panels of `b`, kept for the thread's next product.
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// [`gemm`] computed as `plan` says. Panics if the plan's ISA is not available here.
pub fn gemm_with(plan: &Plan, a: Strided, b: Strided, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "a's columns and b's rows differ");
    assert_eq!(c.len(), m * n, "c is not m x n");
    a.check("a");
    b.check("b");
    if let Some(why) = plan.isa.missing() {
        panic!(
            "gnc-kernels: the {} path cannot run: {why}",
            plan.isa.name()
        );
    }
    check_fp_env();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // A chain of no fmas: its start, +0.0.
        c.fill(0.0);
        return;
    }
    let plan = &Plan {
        kc: plan.inner_block(&a),
        ..*plan
    };
    PACKED.with(|buf| {
        let mut buf = buf.borrow_mut();
        let packed = pack(b, plan.isa.nr(), &mut buf);
        let mr = plan.isa.mr();
        let tiles = m.div_ceil(mr);
        let threads = plan.threads.clamp(1, tiles);
        if threads == 1 {
            sweep(plan, a, packed, n, c, 0);
        } else {
            let rows = tiles.div_ceil(threads) * mr;
            std::thread::scope(|s| {
                for (t, part) in c.chunks_mut(rows * n).enumerate() {
                    s.spawn(move || {
                        check_fp_env();
                        sweep(plan, a, packed, n, part, t * rows)
                    });
                }
            });
        }
    });
}

/// Packs `b` (`k` × `n`) into `n / nr` panels (rounded up) of `k` rows of `nr` floats, the
/// last zero-padded, 64-byte aligned, in `buf`; returns them.
fn pack<'b>(b: Strided, nr: usize, buf: &'b mut Vec<f32>) -> &'b [f32] {
    let (k, n) = (b.rows, b.cols);
    let len = n.div_ceil(nr) * k * nr;
    let pad = 64 / size_of::<f32>();
    if buf.len() < len + pad {
        buf.resize(len + pad, 0.0);
    }
    let off = buf.as_ptr().align_offset(64).min(pad - 1);
    let out = &mut buf[off..off + len];
    for (jp, panel) in out.chunks_exact_mut(k * nr).enumerate() {
        let j0 = jp * nr;
        let w = nr.min(n - j0);
        if b.col_stride == 1 {
            for (p, row) in panel.chunks_exact_mut(nr).enumerate() {
                let at = p * b.row_stride + j0;
                row[..w].copy_from_slice(&b.data[at..at + w]);
                row[w..].fill(0.0);
            }
        } else if b.row_stride == 1 && b.col_stride >= k {
            // A transposed row-major matrix (rows not overlapping): the panel's columns are its
            // rows, moved by the transpose's 8 × 8 register blocks, `b` read along its
            // contiguous direction.
            transpose_strided(
                &b.data[j0 * b.col_stride..],
                (w, k, b.col_stride),
                panel,
                nr,
            );
            for row in panel.chunks_exact_mut(nr) {
                row[w..].fill(0.0);
            }
        } else {
            for (p, row) in panel.chunks_exact_mut(nr).enumerate() {
                for (jj, x) in row.iter_mut().enumerate() {
                    *x = if jj < w { b.at(p, j0 + jj) } else { 0.0 };
                }
            }
        }
    }
    &buf[off..off + len]
}

/// Packed panels of at most this many floats (512 KiB, a quarter of a server core's L2) are
/// swept row tile by row tile, every panel for each (see [`sweep`]).
const ROW_MAJOR_SWEEP: usize = 128 * 1024;

/// The rows of `c` from `row0` (`c` holds them, row-major with `n` columns). With one inner
/// block and panels that fit [`ROW_MAJOR_SWEEP`] (the weight gradient over a batch: k = 32):
/// for each row tile, every panel, so `c` is written band by band in address order while the
/// panels stay in L2. Otherwise for each panel, for each inner block, every row tile, so the
/// panel block stays in L1 while all row tiles pass over it. The order changes no bit.
fn sweep(plan: &Plan, a: Strided, packed: &[f32], n: usize, c: &mut [f32], row0: usize) {
    let (isa, k) = (plan.isa, a.cols);
    let (mr, nr) = (isa.mr(), isa.nr());
    let rows = c.len() / n;
    let mut tile = |jp: usize, k0: usize, i0: usize| {
        let j0 = jp * nr;
        let kb = plan.kc.min(k - k0);
        let panel = &packed[jp * k * nr..(jp + 1) * k * nr];
        simd::run(
            isa,
            Tile {
                a: a.data,
                a_at: (row0 + i0) * a.row_stride + k0 * a.col_stride,
                rsa: a.row_stride,
                csa: a.col_stride,
                k: kb,
                b: &panel[k0 * nr..(k0 + kb) * nr],
                c: &mut c[i0 * n + j0..],
                ldc: n,
                rows: mr.min(rows - i0),
                cols: nr.min(n - j0),
                load: k0 > 0,
            },
        );
    };
    let panels = n.div_ceil(nr);
    if plan.kc >= k && packed.len() <= ROW_MAJOR_SWEEP {
        for i0 in (0..rows).step_by(mr) {
            for jp in 0..panels {
                tile(jp, 0, i0);
            }
        }
    } else {
        for jp in 0..panels {
            for k0 in (0..k).step_by(plan.kc) {
                for i0 in (0..rows).step_by(mr) {
                    tile(jp, k0, i0);
                }
            }
        }
    }
}

/// One microkernel call: `rows` × `cols` outputs at the start of `c` (row stride `ldc`), the
/// chains' steps `k` of one inner block: `a[a_at + r * rsa + p * csa]` times the panel block
/// `b[p * NR + j]`, continuing from `c` when `load`, else from +0.0.
pub(crate) struct Tile<'a> {
    a: &'a [f32],
    a_at: usize,
    rsa: usize,
    csa: usize,
    k: usize,
    b: &'a [f32],
    c: &'a mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
    load: bool,
}

/// `t` = the transpose of `v`, a row-major `rows × cols` matrix (`t` is row-major
/// `cols × rows`): whole 8 × 8 blocks shuffled in AVX2 registers where the CPU has AVX2, the
/// rest element by element. Values are moved, never computed, so every path gives the same
/// bits.
pub fn transpose(v: &[f32], rows: usize, cols: usize, t: &mut [f32]) {
    let n = rows.checked_mul(cols);
    assert_eq!(Some(v.len()), n, "v is rows × cols");
    assert_eq!(Some(t.len()), n, "t is cols × rows");
    transpose_strided(v, (rows, cols, cols), t, rows);
}

/// [`transpose`] between row pitches: `v` is `rows × cols` with row `r` at `r * ldv`, and
/// column `c` of it goes to row `c` of `t`, at `c * ldt`; nothing else of `t` is written.
fn transpose_strided(
    v: &[f32],
    (rows, cols, ldv): (usize, usize, usize),
    t: &mut [f32],
    ldt: usize,
) {
    let (full_rows, full_cols) = simd::transpose_blocks(v, (rows, cols, ldv), t, ldt);
    // The columns right of the blocks, then the rows below them.
    let right = (0..full_rows).flat_map(|r| (full_cols..cols).map(move |c| (r, c)));
    let below = (full_rows..rows).flat_map(|r| (0..cols).map(move |c| (r, c)));
    for (r, c) in right.chain(below) {
        t[c * ldt + r] = v[r * ldv + c];
    }
}

/// The scalar microkernel (6 × 16, safe code; bounds checked by `simd::run`).
fn scalar_tile(t: Tile) {
    macro_rules! rows {
        ($($r:literal)*) => {
            match t.rows {
                $($r => scalar_rows::<$r>(t),)*
                _ => unreachable!("rows checked by run"),
            }
        };
    }
    rows!(1 2 3 4 5 6)
}

fn scalar_rows<const R: usize>(t: Tile) {
    const NR: usize = 16;
    let mut acc = [[0.0f32; NR]; R];
    if t.load {
        for (r, row) in acc.iter_mut().enumerate() {
            let at = r * t.ldc;
            row[..t.cols].copy_from_slice(&t.c[at..at + t.cols]);
        }
    }
    let mut a_at = t.a_at;
    for brow in t.b.chunks_exact(NR).take(t.k) {
        // Fixed-size rows and the step's `a` column read first: the compiler keeps the tile
        // in vector registers.
        let brow: &[f32; NR] = brow.try_into().expect("a panel row has NR floats");
        let xs: [f32; R] = std::array::from_fn(|r| t.a[a_at + r * t.rsa]);
        for (row, &x) in acc.iter_mut().zip(&xs) {
            for (v, &y) in row.iter_mut().zip(brow) {
                *v = x.mul_add(y, *v);
            }
        }
        a_at += t.csa;
    }
    for (r, row) in acc.iter().enumerate() {
        let at = r * t.ldc;
        t.c[at..at + t.cols].copy_from_slice(&row[..t.cols]);
    }
}

/// Measures nothing itself: runs `reps` rounds of independent FMA chains on `isa` (as many as
/// keep every FMA unit busy) and returns the flops done, for a caller that times it to find
/// the per-core FMA peak. Panics if `isa` is not available.
pub fn fma_probe(isa: Isa, reps: u64) -> u64 {
    let (v, flops) = simd::fma_probe(isa, reps);
    std::hint::black_box(v);
    flops
}

#[cfg(test)]
mod tests;
