//! The microkernels with explicit intrinsics, and the floating-point environment: the only
//! module of the crate allowed unsafe code (intrinsics that read and write through raw
//! pointers, `stmxcsr`; with the `tch` feature, the submodule [`tensor`]: a new libtorch
//! tensor's memory written in place). Every unsafe block states why it is sound; the safe
//! entry point [`run`] checks every bound a kernel relies on before calling it, so no caller
//! of this module can make a kernel read or write out of bounds.
//!
//! Each kernel holds a tile of `rows` × `NR` outputs in vector registers for one block of the
//! inner dimension: it starts every chain at +0.0 (or, for a later block, at the value the
//! previous block stored, which continues the chain exactly: a stored f32 reloads unchanged),
//! then for each k in increasing order broadcasts `a[r][k]` and does one vector FMA per
//! register with the row `k` of the packed panel of `b`. Lanes are independent and each does
//! `acc = fma(a, b, acc)` once per k: the module's definition (`crate`) element by element.

use crate::{Isa, Tile};

#[cfg(feature = "tch")]
pub mod tensor;

/// Runs `t` on `isa`'s microkernel, after checking every index the kernel will touch.
///
/// Panics if `isa` is not available on this CPU or `t` is out of its bounds.
pub(crate) fn run(isa: Isa, t: Tile) {
    let (mr, nr) = (isa.mr(), isa.nr());
    assert!(
        (1..=mr).contains(&t.rows),
        "tile rows {} not in 1..={mr}",
        t.rows
    );
    assert!(
        (1..=nr).contains(&t.cols),
        "tile cols {} not in 1..={nr}",
        t.cols
    );
    assert!(t.k >= 1, "empty tile chain");
    // The last element of `a` the kernel reads, the panel block it reads, the output it writes.
    let a_last = t.a_at + (t.rows - 1) * t.rsa + (t.k - 1) * t.csa;
    assert!(a_last < t.a.len(), "tile reads a past its end");
    assert!(t.b.len() >= t.k * nr, "tile reads the panel past its end");
    assert!(t.ldc >= t.cols, "output rows overlap");
    assert!(
        t.c.len() >= (t.rows - 1) * t.ldc + t.cols,
        "tile writes c past its end"
    );
    assert!(isa.missing().is_none(), "{} is not available", isa.name());
    match isa {
        Isa::Scalar => crate::scalar_tile(t),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::avx2(t),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::avx512(t),
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar path exists off x86-64"),
    }
}

/// The whole 8 × 8 blocks of a transpose with AVX2 shuffles, when this CPU has AVX2: rows
/// `0..rows / 8 * 8` by columns `0..cols / 8 * 8` of `v` (`rows × cols`, row `r` at
/// `r * ldv`) into `t` (`cols × rows`, row `c` at `c * ldt`). The rows and columns it covered,
/// from 0 (none without AVX2: the caller does the rest element by element).
pub(crate) fn transpose_blocks(
    v: &[f32],
    (rows, cols, ldv): (usize, usize, usize),
    t: &mut [f32],
    ldt: usize,
) -> (usize, usize) {
    if rows == 0 || cols == 0 {
        return (0, 0);
    }
    assert!(
        ldv >= cols && ldt >= rows,
        "a transpose's rows overlap (ldv {ldv} < cols {cols} or ldt {ldt} < rows {rows})"
    );
    // Checked, not wrapping: every index the kernel computes is at most one of these.
    let v_end = (rows - 1)
        .checked_mul(ldv)
        .and_then(|x| x.checked_add(cols));
    let t_end = (cols - 1)
        .checked_mul(ldt)
        .and_then(|x| x.checked_add(rows));
    let (Some(v_end), Some(t_end)) = (v_end, t_end) else {
        panic!("a transpose's size fits in usize");
    };
    assert!(
        v.len() >= v_end && t.len() >= t_end,
        "a transpose of {rows} × {cols} reaches past its values"
    );
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx2.missing().is_none() {
        // SAFETY: AVX2 was checked just above; `transpose_blocks_avx2` reads `v` only below
        // `(rows - 1) * ldv + cols` and writes `t` only below `(cols - 1) * ldt + rows` (which
        // do not overflow: checked above), and both hold that many values (asserted above).
        unsafe { x86::transpose_blocks_avx2(v, (rows, cols, ldv), t, ldt) };
        return (rows / 8 * 8, cols / 8 * 8);
    }
    (0, 0)
}

/// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) flags and its rounding
/// control (bits 13–14, zero for round-to-nearest-even): the bits that change an FMA's result.
#[cfg(target_arch = "x86_64")]
pub(crate) const MXCSR_RESULT_BITS: u32 = (1 << 15) | (1 << 6) | (3 << 13);

/// This thread's MXCSR (the SSE/AVX floating-point control and status register).
#[cfg(target_arch = "x86_64")]
pub(crate) fn mxcsr() -> u32 {
    let mut csr: u32 = 0;
    // SAFETY: `stmxcsr` stores the 4-byte register to the address given, which is `csr`, a
    // live, aligned, writable u32; it touches no other memory, the stack or the flags.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
    }
    csr
}

/// Sets this thread's MXCSR (tests: to check that flush-to-zero is refused).
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn set_mxcsr(csr: u32) {
    // SAFETY: `ldmxcsr` loads the register from `csr`, a live aligned u32; the values the tests
    // set are valid control words (no reserved bit), so it cannot fault. Changing the rounding
    // of this thread's later float arithmetic is not memory-unsafe.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags, readonly));
    }
}

/// Runs `reps` rounds of 24 independent FMA chains of `isa`'s vectors (12 for AVX2, which has
/// 16 registers) and returns a value that depends on all of them: the benchmark's measure of
/// the FMA peak. Returns the flop count done beside it.
pub(crate) fn fma_probe(isa: Isa, reps: u64) -> (f32, u64) {
    assert!(isa.missing().is_none(), "{} is not available", isa.name());
    match isa {
        Isa::Scalar => {
            let (x, y) = (std::hint::black_box(0.999_999), std::hint::black_box(1e-3));
            let mut acc = [0.0f32; 8];
            for _ in 0..reps {
                for v in &mut acc {
                    *v = v.mul_add(x, y);
                }
            }
            (acc.iter().sum(), reps * 8 * 2)
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => (
            // SAFETY: AVX2 and FMA are available (checked above); the function reads no memory.
            unsafe { x86::probe_avx2(reps) },
            reps * 12 * 8 * 2,
        ),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => (
            // SAFETY: AVX-512F is available (checked above); the function reads no memory.
            unsafe { x86::probe_avx512(reps) },
            reps * 24 * 16 * 2,
        ),
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar path exists off x86-64"),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use crate::Tile;

    /// Dispatches a checked tile to the AVX2 kernel of its row count and `a`'s layout.
    pub(super) fn avx2(mut t: Tile) {
        macro_rules! rows {
            ($($r:literal)*) => {
                match (t.rows, t.rsa == 1) {
                    $(
                        // SAFETY: `run` checked AVX2+FMA and every bound `kernel_avx2` reads
                        // and writes (rows, cols ≤ 16, k ≥ 1, a, the panel block and c).
                        ($r, true) => unsafe { kernel_avx2::<$r, true>(&mut t) },
                        // SAFETY: as above.
                        ($r, false) => unsafe { kernel_avx2::<$r, false>(&mut t) },
                    )*
                    _ => unreachable!("rows checked by run"),
                }
            };
        }
        rows!(1 2 3 4 5 6)
    }

    /// Dispatches a checked tile to the AVX-512 kernel of its row count and `a`'s layout.
    pub(super) fn avx512(mut t: Tile) {
        macro_rules! rows {
            ($($r:literal)*) => {
                match (t.rows, t.rsa == 1) {
                    $(
                        // SAFETY: `run` checked AVX-512F and every bound `kernel_avx512` reads
                        // and writes (rows, cols ≤ 32, k ≥ 1, a, the panel block and c).
                        ($r, true) => unsafe { kernel_avx512::<$r, true>(&mut t) },
                        // SAFETY: as above.
                        ($r, false) => unsafe { kernel_avx512::<$r, false>(&mut t) },
                    )*
                    _ => unreachable!("rows checked by run"),
                }
            };
        }
        rows!(1 2 3 4 5 6 7 8 9 10 11 12)
    }

    /// See [`super::transpose_blocks`]: each 8 × 8 block is eight unaligned row loads, the
    /// classic unpack / shuffle / 128-bit permute transpose in registers, and eight stores.
    ///
    /// # Safety
    /// AVX2 is available; `ldv >= cols`, `ldt >= rows`; `v` holds at least
    /// `(rows - 1) * ldv + cols` floats and `t` at least `(cols - 1) * ldt + rows`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose_blocks_avx2(
        v: &[f32],
        (rows, cols, ldv): (usize, usize, usize),
        t: &mut [f32],
        ldt: usize,
    ) {
        let (vp, tp) = (v.as_ptr(), t.as_mut_ptr());
        for r0 in (0..rows / 8 * 8).step_by(8) {
            for c0 in (0..cols / 8 * 8).step_by(8) {
                let r: [__m256; 8] = std::array::from_fn(|i| {
                    // SAFETY: row r0 + i < rows and columns c0..c0 + 8 <= cols, so every index
                    // read is below (rows - 1) * ldv + cols <= v.len().
                    unsafe { _mm256_loadu_ps(vp.add((r0 + i) * ldv + c0)) }
                });
                let a0 = _mm256_unpacklo_ps(r[0], r[1]);
                let a1 = _mm256_unpackhi_ps(r[0], r[1]);
                let a2 = _mm256_unpacklo_ps(r[2], r[3]);
                let a3 = _mm256_unpackhi_ps(r[2], r[3]);
                let a4 = _mm256_unpacklo_ps(r[4], r[5]);
                let a5 = _mm256_unpackhi_ps(r[4], r[5]);
                let a6 = _mm256_unpacklo_ps(r[6], r[7]);
                let a7 = _mm256_unpackhi_ps(r[6], r[7]);
                let b0 = _mm256_shuffle_ps::<0x44>(a0, a2);
                let b1 = _mm256_shuffle_ps::<0xEE>(a0, a2);
                let b2 = _mm256_shuffle_ps::<0x44>(a1, a3);
                let b3 = _mm256_shuffle_ps::<0xEE>(a1, a3);
                let b4 = _mm256_shuffle_ps::<0x44>(a4, a6);
                let b5 = _mm256_shuffle_ps::<0xEE>(a4, a6);
                let b6 = _mm256_shuffle_ps::<0x44>(a5, a7);
                let b7 = _mm256_shuffle_ps::<0xEE>(a5, a7);
                let out = [
                    _mm256_permute2f128_ps::<0x20>(b0, b4),
                    _mm256_permute2f128_ps::<0x20>(b1, b5),
                    _mm256_permute2f128_ps::<0x20>(b2, b6),
                    _mm256_permute2f128_ps::<0x20>(b3, b7),
                    _mm256_permute2f128_ps::<0x31>(b0, b4),
                    _mm256_permute2f128_ps::<0x31>(b1, b5),
                    _mm256_permute2f128_ps::<0x31>(b2, b6),
                    _mm256_permute2f128_ps::<0x31>(b3, b7),
                ];
                for (j, o) in out.into_iter().enumerate() {
                    // SAFETY: row c0 + j < cols of t, columns r0..r0 + 8 <= rows, so every
                    // index written is below (cols - 1) * ldt + rows <= t.len().
                    unsafe { _mm256_storeu_ps(tp.add((c0 + j) * ldt + r0), o) };
                }
            }
        }
    }

    /// `R` rows × 16 columns (two `__m256`) of `c`, chains over `t.k` steps.
    ///
    /// # Safety
    /// AVX2 and FMA are available; `t.rows == R`, `1 <= t.cols <= 16`, `t.k >= 1`;
    /// `t.a[t.a_at + r * t.rsa + p * t.csa]` is in bounds for r < R, p < k (`rsa` is 1 when
    /// `UNIT`); `t.b` holds `t.k * 16` floats; `t.c[r * t.ldc + j]` is in bounds for r < R,
    /// j < cols.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel_avx2<const R: usize, const UNIT: bool>(t: &mut Tile) {
        let rs = if UNIT { 1 } else { t.rsa };
        let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let cols = t.cols as i32;
        let m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), iota);
        let m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols - 8), iota);
        let c = t.c.as_mut_ptr();
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        if t.load {
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: lane j of the two masked loads reads c[r * ldc + j] only where
                // j < cols (masked-off lanes read nothing and cannot fault), in bounds.
                unsafe {
                    let at = c.add(r * t.ldc);
                    row[0] = _mm256_maskload_ps(at, m0);
                    row[1] = _mm256_maskload_ps(at.wrapping_add(8), m1);
                }
            }
        }
        let mut a = t.a.as_ptr().wrapping_add(t.a_at);
        let mut b = t.b.as_ptr();
        for _ in 0..t.k {
            // SAFETY: at step p, `b` points at the panel's row p of 16 floats (p < k, and the
            // block holds k rows), and `a + r * rs` at a[a_at + r * rsa + p * csa], in bounds
            // for r < R. The pointers advance with wrapping arithmetic, so the step past the
            // last one creates no out-of-bounds pointer by `add`.
            unsafe {
                let b0 = _mm256_loadu_ps(b);
                let b1 = _mm256_loadu_ps(b.add(8));
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*a.add(r * rs));
                    row[0] = _mm256_fmadd_ps(x, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(x, b1, row[1]);
                }
            }
            if UNIT {
                // As in the AVX-512 kernel: fetch a k-major `a` ahead of its large stride.
                let ahead = a.wrapping_add(PREFETCH * t.csa);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(R - 1).cast());
            }
            b = b.wrapping_add(16);
            a = a.wrapping_add(t.csa);
        }
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: as the loads: only lanes j < cols of row r are written, in bounds.
            unsafe {
                let at = c.add(r * t.ldc);
                _mm256_maskstore_ps(at, m0, row[0]);
                _mm256_maskstore_ps(at.wrapping_add(8), m1, row[1]);
            }
        }
    }

    /// Steps ahead that the kernels prefetch a k-major `a`.
    const PREFETCH: usize = 16;

    /// `R` rows × 32 columns (two `__m512`) of `c`, chains over `t.k` steps.
    ///
    /// # Safety
    /// AVX-512F is available; `t.rows == R`, `1 <= t.cols <= 32`, `t.k >= 1`;
    /// `t.a[t.a_at + r * t.rsa + p * t.csa]` is in bounds for r < R, p < k (`rsa` is 1 when
    /// `UNIT`); `t.b` holds `t.k * 32` floats; `t.c[r * t.ldc + j]` is in bounds for r < R,
    /// j < cols.
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel_avx512<const R: usize, const UNIT: bool>(t: &mut Tile) {
        let rs = if UNIT { 1 } else { t.rsa };
        let lanes = |n: usize| -> __mmask16 { ((1u32 << n.min(16)) - 1) as __mmask16 };
        let m0 = lanes(t.cols);
        let m1 = lanes(t.cols.saturating_sub(16));
        let c = t.c.as_mut_ptr();
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        if t.load {
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: lane j of the two masked loads reads c[r * ldc + j] only where
                // j < cols (masked-off lanes read nothing and cannot fault), in bounds.
                unsafe {
                    let at = c.add(r * t.ldc);
                    row[0] = _mm512_maskz_loadu_ps(m0, at);
                    row[1] = _mm512_maskz_loadu_ps(m1, at.wrapping_add(16));
                }
            }
        }
        let mut a = t.a.as_ptr().wrapping_add(t.a_at);
        let mut b = t.b.as_ptr();
        for _ in 0..t.k {
            // SAFETY: at step p, `b` points at the panel's row p of 32 floats (p < k, and the
            // block holds k rows), and `a + r * rs` at a[a_at + r * rsa + p * csa], in bounds
            // for r < R. The pointers advance with wrapping arithmetic, so the step past the
            // last one creates no out-of-bounds pointer by `add`.
            unsafe {
                let b0 = _mm512_loadu_ps(b);
                let b1 = _mm512_loadu_ps(b.add(16));
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*a.add(r * rs));
                    row[0] = _mm512_fmadd_ps(x, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(x, b1, row[1]);
                }
            }
            if UNIT {
                // `a` is stored k-major: each step reads the next stored row, `csa` floats on,
                // a stride the hardware's stride prefetcher may not follow (above 2 KiB it does
                // not on Intel cores), so fetch the tile's line(s) `PREFETCH` steps ahead.
                // A prefetch is a hint that never faults, whatever the address (so the safe
                // intrinsic); the pointer is made by wrapping arithmetic.
                let ahead = a.wrapping_add(PREFETCH * t.csa);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(R - 1).cast());
            }
            b = b.wrapping_add(32);
            a = a.wrapping_add(t.csa);
        }
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: as the loads: only lanes j < cols of row r are written, in bounds.
            unsafe {
                let at = c.add(r * t.ldc);
                _mm512_mask_storeu_ps(at, m0, row[0]);
                _mm512_mask_storeu_ps(at.wrapping_add(16), m1, row[1]);
            }
        }
    }

    /// 12 independent chains of `__m256` FMAs, `reps` steps each.
    ///
    /// # Safety
    /// AVX2 and FMA are available.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn probe_avx2(reps: u64) -> f32 {
        let x = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let y = _mm256_set1_ps(std::hint::black_box(1e-3));
        let mut acc = [_mm256_setzero_ps(); 12];
        for _ in 0..reps {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, x, y);
            }
        }
        let mut out = [0.0f32; 8];
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
        // SAFETY: `out` is 8 writable floats, what one unaligned 256-bit store writes.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
        out.iter().sum()
    }

    /// 24 independent chains of `__m512` FMAs, `reps` steps each.
    ///
    /// # Safety
    /// AVX-512F is available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn probe_avx512(reps: u64) -> f32 {
        let x = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let y = _mm512_set1_ps(std::hint::black_box(1e-3));
        let mut acc = [_mm512_setzero_ps(); 24];
        for _ in 0..reps {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, x, y);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
        _mm512_reduce_add_ps(sum)
    }
}
