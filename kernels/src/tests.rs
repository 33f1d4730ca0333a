use super::*;

/// The definition, written as plainly as possible.
fn reference(a: Strided, b: Strided) -> Vec<f32> {
    let mut c = vec![0.0; a.rows * b.cols];
    for i in 0..a.rows {
        for j in 0..b.cols {
            let mut acc = 0.0f32;
            for p in 0..a.cols {
                acc = a.at(i, p).mul_add(b.at(p, j), acc);
            }
            c[i * b.cols + j] = acc;
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

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The paths this CPU has; prints why each other one is skipped.
fn paths() -> Vec<Isa> {
    Isa::ALL
        .into_iter()
        .filter(|isa| match isa.missing() {
            None => true,
            Some(why) => {
                println!("skipping the {} path: {why}", isa.name());
                false
            }
        })
        .collect()
}

/// Row-major a (m × k) and b (k × n), each also stored transposed and read through `.t()`,
/// and b also through a wider row pitch and through strides of 2: every layout, every available path, inner blocks 1, 7, 256 and k, one and three
/// threads, against the reference bit for bit.
fn check(m: usize, k: usize, n: usize, salt: u32) {
    let av = values(m * k, salt);
    let bv = values(k * n, salt + 7);
    let a_rows = Strided::rows(&av, m, k);
    let b_rows = Strided::rows(&bv, k, n);
    let want = bits(&reference(a_rows, b_rows));
    let transpose = |v: &[f32], r: usize, c: usize| {
        let mut t = vec![0.0; v.len()];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = v[i * c + j];
            }
        }
        t
    };
    let at = transpose(&av, m, k);
    let bt = transpose(&bv, k, n);
    let a_t = Strided::rows(&at, k, m).t();
    let b_t = Strided::rows(&bt, n, k).t();
    // bᵀ stored with a row pitch past its width (a view into a wider matrix), and b read
    // through overlapping-free strides in neither direction contiguous.
    let pitch = k + 3;
    let bt_wide: Vec<f32> = (0..n * pitch)
        .map(|x| {
            if x % pitch < k {
                bt[x / pitch * k + x % pitch]
            } else {
                f32::NAN
            }
        })
        .collect();
    let b_t_wide = Strided {
        data: &bt_wide,
        rows: k,
        cols: n,
        row_stride: 1,
        col_stride: pitch,
    };
    let b_2n: Vec<f32> = bv.iter().flat_map(|&x| [x, f32::NAN]).collect();
    let b_spread = Strided {
        data: &b_2n,
        rows: k,
        cols: n,
        row_stride: 2 * n,
        col_stride: 2,
    };
    for isa in paths() {
        for kc in [1, 7, 256, k.max(1)] {
            for threads in [1, 3] {
                let plan = Plan { isa, kc, threads };
                for (la, a) in [("a", a_rows), ("aT", a_t)] {
                    for (lb, b) in [
                        ("b", b_rows),
                        ("bT", b_t),
                        ("bT wide", b_t_wide),
                        ("b spread", b_spread),
                    ] {
                        let mut c = vec![f32::NAN; m * n];
                        gemm_with(&plan, a, b, &mut c);
                        assert_eq!(
                            bits(&c),
                            want,
                            "{} m={m} k={k} n={n} kc={kc} threads={threads} {la} {lb}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn every_path_equals_the_definition_bit_for_bit_on_every_edge() {
    // M tails of every tile height (6, 12), N tails of every panel width (16, 32) and below a
    // vector, K = 1, 7, below and above the inner block (256), and F1's products at batch 32.
    for &(m, k, n) in &[
        (1, 1, 1),
        (4, 16, 16),
        (5, 7, 17),
        (32, 33, 50),
        (9, 3, 35),
        (13, 40, 3),
        (7, 2, 64),
        (25, 255, 33),
        (12, 256, 32),
        (11, 257, 31),
        (37, 600, 47),
        (6, 1, 100),
    ] {
        check(m, k, n, (m * 31 + k * 7 + n) as u32);
    }
}

#[test]
fn f1_products_equal_the_definition() {
    // F1 at batch 32 in the orientations the linear layer uses: forward yᵀ = W hᵀ, weight
    // gradient dyᵀ h, input gradient (W ᵀ dyᵀ); one layout and the default plan per path
    // (`check` covers the rest on smaller shapes).
    for &(m, k, n) in &[
        (500, 784, 32),
        (500, 32, 784),
        (784, 500, 32),
        (10, 500, 32),
    ] {
        let av = values(m * k, 1);
        let bv = values(k * n, 2);
        let (a, b) = (Strided::rows(&av, m, k), Strided::rows(&bv, k, n));
        let want = bits(&reference(a, b));
        for isa in paths() {
            let mut c = vec![0.0; m * n];
            gemm_with(
                &Plan {
                    isa,
                    ..Plan::default()
                },
                a,
                b,
                &mut c,
            );
            assert_eq!(bits(&c), want, "{} {m}x{k}x{n}", isa.name());
        }
    }
}

#[test]
fn no_inner_dimension_gives_positive_zeros() {
    let mut c = vec![f32::NAN; 6];
    matmul(Strided::rows(&[], 2, 0), &[], 3, &mut c);
    assert_eq!(bits(&c), vec![0; 6]);
}

#[test]
fn signed_zeros_and_subnormals_follow_the_definition() {
    // Products that underflow to subnormals and to ±0, and subnormal inputs: every path keeps
    // them exactly as the scalar fma chain does (no flush to zero anywhere).
    let tiny = f32::MIN_POSITIVE;
    let (m, k, n) = (13, 9, 37);
    let av: Vec<f32> = (0..m * k)
        .map(|i| match i % 5 {
            0 => tiny / 8.0,
            1 => -tiny * 0.75,
            2 => 1e-20,
            3 => -0.0,
            _ => 3.5e-3,
        })
        .collect();
    let bv: Vec<f32> = (0..k * n)
        .map(|i| match i % 4 {
            0 => 1e-19,
            1 => -tiny / 3.0,
            2 => 0.5,
            _ => -0.0,
        })
        .collect();
    let (a, b) = (Strided::rows(&av, m, k), Strided::rows(&bv, k, n));
    let want = bits(&reference(a, b));
    assert!(
        reference(a, b).iter().any(|x| x.is_subnormal()),
        "the test should produce subnormals"
    );
    for isa in paths() {
        for kc in [1, 4, k] {
            let mut c = vec![0.0; m * n];
            gemm_with(
                &Plan {
                    isa,
                    kc,
                    threads: 1,
                },
                a,
                b,
                &mut c,
            );
            assert_eq!(bits(&c), want, "{} kc={kc}", isa.name());
        }
    }
}

#[test]
fn products_are_exact_where_floats_can_be() {
    // Small integers: every partial sum is exact, so the product is the integer one.
    let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
    for isa in paths() {
        let mut c = [0.0; 4];
        let plan = Plan {
            isa,
            ..Plan::default()
        };
        gemm_with(
            &plan,
            Strided::rows(&a, 2, 3),
            Strided::rows(&b, 3, 2),
            &mut c,
        );
        assert_eq!(c, [58.0, 64.0, 139.0, 154.0], "{}", isa.name());
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn flush_to_zero_denormals_are_zero_and_directed_rounding_are_refused() {
    let a = [1.0f32; 4];
    let before = simd::mxcsr();
    for (what, bit) in [
        ("flush-to-zero", 1 << 15),
        ("denormals-are-zero", 1 << 6),
        ("round toward zero", 3 << 13),
    ] {
        // On a thread of its own, so nothing else runs under the changed register.
        let refused = std::thread::spawn(move || {
            simd::set_mxcsr(simd::mxcsr() | bit);
            let result = std::panic::catch_unwind(|| {
                let mut c = [0.0f32; 4];
                matmul(Strided::rows(&a, 2, 2), &a, 2, &mut c);
            });
            simd::set_mxcsr(simd::mxcsr() & !bit);
            result.is_err()
        })
        .join()
        .expect("the thread restores MXCSR and returns");
        assert!(refused, "a product ran with {what} on");
    }
    assert_eq!(simd::mxcsr(), before);
    let mut c = [0.0f32; 4];
    matmul(Strided::rows(&a, 2, 2), &a, 2, &mut c);
    assert_eq!(c, [2.0; 4]);
}

#[test]
fn detection_is_consistent() {
    let best = Isa::best();
    assert!(best.missing().is_none());
    assert!(Isa::Scalar.missing().is_none());
    for isa in Isa::ALL {
        println!(
            "{}: {}",
            isa.name(),
            isa.missing().unwrap_or("available on this CPU")
        );
    }
    println!("best: {}", best.name());
}

/// The transpose, AVX2 blocks and scalar edges together, at every edge: rows and columns below,
/// at and past multiples of the block (8), against the definition.
#[test]
fn transpose_moves_every_value_to_its_place() {
    for rows in 1..=26 {
        for cols in 1..=26 {
            let v: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
            let mut t = vec![f32::NAN; rows * cols];
            crate::transpose(&v, rows, cols, &mut t);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        t[c * rows + r].to_bits(),
                        v[r * cols + c].to_bits(),
                        "{rows} × {cols} at ({r}, {c})"
                    );
                }
            }
        }
    }
    if crate::Isa::Avx2.missing().is_some() {
        println!("AVX2 is missing here: only the scalar transpose was tested");
    }
}

/// The transpose between row pitches wider than the rows (as `pack` uses it on a transposed
/// operand): every value in its place, and nothing written between the rows.
#[test]
fn a_transpose_between_pitches_writes_its_rows_alone() {
    for rows in [1, 7, 8, 9, 16, 23] {
        for cols in [1, 5, 8, 17, 32] {
            let (ldv, ldt) = (cols + 3, rows + 5);
            let v: Vec<f32> = (0..rows * ldv).map(|x| x as f32).collect();
            let mut t = vec![f32::NAN; cols * ldt];
            crate::transpose_strided(&v, (rows, cols, ldv), &mut t, ldt);
            for c in 0..cols {
                for x in 0..ldt {
                    let want = if x < rows { v[x * ldv + c] } else { f32::NAN };
                    assert_eq!(
                        t[c * ldt + x].to_bits(),
                        want.to_bits(),
                        "{rows} × {cols} at row {c}, column {x}"
                    );
                }
            }
        }
    }
}

/// A pitch shorter than the rows (rows that overlap) and one that reaches past the values are
/// refused, not read through.
#[test]
fn a_transpose_past_its_values_is_refused() {
    let v = vec![0.0; 64];
    let mut t = vec![0.0; 64];
    for (rows, cols, ldv, ldt) in [(8, 8, 7, 8), (8, 8, 8, 7), (8, 8, 9, 8), (8, 8, 8, 9)] {
        let r = std::panic::catch_unwind(|| {
            crate::transpose_strided(&v, (rows, cols, ldv), &mut t.clone(), ldt)
        });
        assert!(r.is_err(), "{rows} × {cols}, pitches {ldv} and {ldt}");
    }
    crate::transpose_strided(&v, (8, 8, 8), &mut t, 8);
}

/// Sizes whose product wraps around usize are refused, not read through.
#[test]
fn a_transpose_whose_size_overflows_is_refused() {
    let r = std::panic::catch_unwind(|| crate::transpose(&[], 1 << 61, 8, &mut []));
    assert!(r.is_err());
}
