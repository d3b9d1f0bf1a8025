//! The few numeric kernels BERT needs, in SIMD chosen at run time (`pulp`: AVX-512, AVX2+FMA,
//! or plain scalar code on other CPUs), with no `unsafe` here.
//!
//! [`linear`] is the one that matters: `y = x·Wᵀ + b`. A query is a dozen tokens, so the cost
//! is reading `W`, not the arithmetic, and general matrix-multiply libraries repack `W` into
//! their own layout on every call (candle spent more than half of a query doing that). Here
//! `W` is packed once, when the model loads ([`Packed`]): panels of [`PANEL`] output columns,
//! each panel the column block of every input feature in turn, so one call streams each panel
//! from memory exactly once, start to end, while blocks of up to 6 input rows run over it with
//! their running sums in registers (6 rows × 2 vectors = 12 accumulators, which with two weight
//! registers and one broadcast fits AVX2's 16). No horizontal sums: every lane is an output.

use std::ops::Range;

use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Input rows per block.
const ROWS: usize = 6;
/// Output columns per packed panel: two AVX-512 vectors, four AVX2 ones.
const PANEL: usize = 32;

/// The weights and bias of a linear layer, packed for [`linear`].
pub(crate) struct Packed {
    /// `panels × k × PANEL`: panel `p`, input feature `kk`, column `c` is `W[p·PANEL + c][kk]`,
    /// zero past the last output.
    w: Vec<f32>,
    /// The bias, zero-padded to whole panels.
    bias: Vec<f32>,
    /// Outputs.
    n: usize,
    /// Inputs.
    k: usize,
}

impl Packed {
    /// Packs `w` (`n × k`, row-major, as checkpoints store it) with its bias (`n`).
    pub(crate) fn new(w: &[f32], bias: &[f32]) -> Packed {
        let n = bias.len();
        let k = w.len().checked_div(n).unwrap_or(0);
        let panels = n.div_ceil(PANEL);
        let mut packed = vec![0.0; panels * k * PANEL];
        for (o, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
            let (p, c) = (o / PANEL, o % PANEL);
            let panel = &mut packed[p * k * PANEL..(p + 1) * k * PANEL];
            for (kk, &v) in row.iter().enumerate() {
                panel[kk * PANEL + c] = v;
            }
        }
        let mut padded = bias.to_vec();
        padded.resize(panels * PANEL, 0.0);
        Packed {
            w: packed,
            bias: padded,
            n,
            k,
        }
    }
}

/// Below this many multiply-adds a linear layer runs on the calling thread alone: handing work
/// to another thread costs a few microseconds.
const PARALLEL_MIN: usize = 1 << 20;

/// `out[r·n + o] = bias[o] + Σₖ x[r·k + kk] · W[o][kk]` for every row of `x` (`rows × k`);
/// `out` holds `rows × n`. Large products are split over rayon's threads: a batch by rows, a
/// query (a few rows) by panels, so each thread streams its own part of `W`.
pub(crate) fn linear(arch: Arch, x: &[f32], w: &Packed, out: &mut [f32]) {
    let (n, k) = (w.n, w.k);
    if n == 0 || k == 0 {
        return;
    }
    let rows = x.len() / k;
    let panels = n.div_ceil(PANEL);
    let threads = rayon::current_num_threads().min(panels);
    let whole = |x: &[f32], out: &mut [f32]| {
        arch.dispatch(Linear {
            x,
            w,
            panels: 0..panels,
            out,
            ld: n,
        })
    };
    if threads < 2 || rows * n * k < PARALLEL_MIN {
        whole(x, out);
    } else if rows >= threads * 4 * ROWS {
        let per = rows.div_ceil(threads).next_multiple_of(ROWS);
        out.par_chunks_mut(per * n)
            .zip(x.par_chunks(per * k))
            .for_each(|(out, x)| whole(x, out));
    } else {
        let per = panels.div_ceil(threads);
        let parts: Vec<(usize, usize, Vec<f32>)> = (0..panels)
            .step_by(per)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|first| {
                let range = first..(first + per).min(panels);
                let (c0, c1) = (range.start * PANEL, (range.end * PANEL).min(n));
                let mut part = vec![0.0; rows * (c1 - c0)];
                arch.dispatch(Linear {
                    x,
                    w,
                    panels: range,
                    out: &mut part,
                    ld: c1 - c0,
                });
                (c0, c1, part)
            })
            .collect();
        for (c0, c1, part) in parts {
            for (row, src) in out.chunks_exact_mut(n).zip(part.chunks_exact(c1 - c0)) {
                row[c0..c1].copy_from_slice(src);
            }
        }
    }
}

/// The columns of `panels` for every row of `x`, into `out`, whose rows are `ld` long and
/// start at the first column of the first panel.
struct Linear<'a> {
    x: &'a [f32],
    w: &'a Packed,
    panels: Range<usize>,
    out: &'a mut [f32],
    ld: usize,
}

impl WithSimd for Linear<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Linear {
            x,
            w,
            panels,
            out,
            ld,
        } = self;
        let (n, k) = (w.n, w.k);
        let lanes = S::F32_LANES;
        // Every SIMD width pulp offers (1, 4, 8, 16 lanes) divides a panel in pairs.
        let per_row = PANEL / lanes;
        if k == 0 || !PANEL.is_multiple_of(2 * lanes) {
            return;
        }
        let rows = x.len() / k;
        let base = panels.start * PANEL;
        let (bias, _) = S::as_simd_f32s(&w.bias);
        for p in panels {
            let (pv, _) = S::as_simd_f32s(&w.w[p * k * PANEL..(p + 1) * k * PANEL]);
            for c in (0..per_row).step_by(2) {
                let col = p * PANEL + c * lanes;
                if col >= n {
                    break;
                }
                let at = Columns {
                    pv,
                    per_row,
                    c,
                    col: col - base,
                    end: n - base,
                    b: [bias[p * per_row + c], bias[p * per_row + c + 1]],
                };
                let mut r = 0;
                while r < rows {
                    let take = (rows - r).min(ROWS);
                    let xs = &x[r * k..(r + take) * k];
                    let o = &mut out[r * ld..(r + take) * ld];
                    match take {
                        6 => block::<S, 6>(simd, xs, &at, k, ld, o),
                        5 => block::<S, 5>(simd, xs, &at, k, ld, o),
                        4 => block::<S, 4>(simd, xs, &at, k, ld, o),
                        3 => block::<S, 3>(simd, xs, &at, k, ld, o),
                        2 => block::<S, 2>(simd, xs, &at, k, ld, o),
                        _ => block::<S, 1>(simd, xs, &at, k, ld, o),
                    }
                    r += take;
                }
            }
        }
    }
}

/// Two vectors of output columns within one panel.
struct Columns<'a, S: Simd> {
    /// The panel as vectors: `k` rows of `per_row` vectors.
    pv: &'a [S::f32s],
    per_row: usize,
    /// The first of the two vectors within a panel row.
    c: usize,
    /// Where their first column goes in a row of the output, and where real outputs end there.
    col: usize,
    end: usize,
    b: [S::f32s; 2],
}

/// `R` rows of `xs` times the two column vectors of `at`, plus bias, into `out` (`R` rows of
/// `ld`).
#[inline(always)]
fn block<S: Simd, const R: usize>(
    simd: S,
    xs: &[f32],
    at: &Columns<'_, S>,
    k: usize,
    ld: usize,
    out: &mut [f32],
) {
    let zero = simd.splat_f32s(0.0);
    let mut acc0 = [zero; R];
    let mut acc1 = [zero; R];
    for kk in 0..k {
        let i = kk * at.per_row + at.c;
        let (w0, w1) = (at.pv[i], at.pv[i + 1]);
        for t in 0..R {
            let v = simd.splat_f32s(xs[t * k + kk]);
            acc0[t] = simd.mul_add_f32s(v, w0, acc0[t]);
            acc1[t] = simd.mul_add_f32s(v, w1, acc1[t]);
        }
    }
    let lanes = S::F32_LANES;
    let end = at.end.min(ld);
    for t in 0..R {
        let row = &mut out[t * ld..(t + 1) * ld];
        let sums = [
            simd.add_f32s(acc0[t], at.b[0]),
            simd.add_f32s(acc1[t], at.b[1]),
        ];
        for (j, s) in sums.into_iter().enumerate() {
            let start = at.col + j * lanes;
            if start < end {
                simd.partial_store_f32s(&mut row[start..(start + lanes).min(end)], s);
            }
        }
    }
}

fn scalar_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `a · b` for two slices of the same length.
pub(crate) fn dot(arch: Arch, a: &[f32], b: &[f32]) -> f32 {
    struct Dot<'a>(&'a [f32], &'a [f32]);
    impl WithSimd for Dot<'_> {
        type Output = f32;
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) -> f32 {
            let (av, at) = S::as_simd_f32s(self.0);
            let (bv, bt) = S::as_simd_f32s(self.1);
            let mut acc = simd.splat_f32s(0.0);
            for (x, y) in av.iter().zip(bv) {
                acc = simd.mul_add_f32s(*x, *y, acc);
            }
            simd.reduce_sum_f32s(acc) + scalar_dot(at, bt)
        }
    }
    arch.dispatch(Dot(a, b))
}

/// `y += s · x`.
pub(crate) fn axpy(arch: Arch, s: f32, x: &[f32], y: &mut [f32]) {
    struct Axpy<'a>(f32, &'a [f32], &'a mut [f32]);
    impl WithSimd for Axpy<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            let Axpy(s, x, y) = self;
            let (xv, xt) = S::as_simd_f32s(x);
            let (yv, yt) = S::as_mut_simd_f32s(y);
            let sv = simd.splat_f32s(s);
            for (a, b) in xv.iter().zip(yv.iter_mut()) {
                *b = simd.mul_add_f32s(sv, *a, *b);
            }
            for (a, b) in xt.iter().zip(yt.iter_mut()) {
                *b += s * a;
            }
        }
    }
    arch.dispatch(Axpy(s, x, y));
}

/// `v ← GELU(v) = v·Φ(v)` with `erf` as the rational approximation Eigen and XLA use for f32
/// (odd degree-13 over even degree-8 polynomial on [-4, 4], within a few ulp of `erff`; beyond
/// ±4 `erf` is ±1 in f32).
pub(crate) fn gelu(arch: Arch, v: &mut [f32]) {
    struct Gelu<'a>(&'a mut [f32]);
    impl WithSimd for Gelu<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: Simd>(self, simd: S) {
            let (head, tail) = S::as_mut_simd_f32s(self.0);
            for x in head {
                *x = gelu_simd(simd, *x);
            }
            for x in tail {
                let v = gelu_simd(simd, simd.splat_f32s(*x));
                let mut one = [0.0f32];
                simd.partial_store_f32s(&mut one, v);
                *x = one[0];
            }
        }
    }
    arch.dispatch(Gelu(v));
}

#[inline(always)]
fn gelu_simd<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    const ALPHA: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const BETA: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ];
    let z = simd.mul_f32s(x, simd.splat_f32s(std::f32::consts::FRAC_1_SQRT_2));
    let z = simd.min_f32s(
        simd.max_f32s(z, simd.splat_f32s(-4.0)),
        simd.splat_f32s(4.0),
    );
    let z2 = simd.mul_f32s(z, z);
    let mut p = simd.splat_f32s(ALPHA[0]);
    for a in &ALPHA[1..] {
        p = simd.mul_add_f32s(z2, p, simd.splat_f32s(*a));
    }
    let mut q = simd.splat_f32s(BETA[0]);
    for b in &BETA[1..] {
        q = simd.mul_add_f32s(z2, q, simd.splat_f32s(*b));
    }
    let erf = simd.div_f32s(simd.mul_f32s(z, p), q);
    let half_x = simd.mul_f32s(x, simd.splat_f32s(0.5));
    simd.mul_add_f32s(half_x, erf, half_x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let n = bias.len();
        let k = w.len() / n;
        let rows = x.len() / k;
        let mut out = vec![0.0; rows * n];
        for r in 0..rows {
            for o in 0..n {
                out[r * n + o] =
                    bias[o] + scalar_dot(&x[r * k..(r + 1) * k], &w[o * k..(o + 1) * k]);
            }
        }
        out
    }

    fn numbers(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn linear_matches_the_naive_product_for_every_block_and_tail_size() {
        let arch = Arch::new();
        // Odd widths leave SIMD tails and partial panels; 1..=61 rows cover every block size;
        // the larger products are split over threads (12 rows by panels, 200 rows by rows),
        // in pools of 1 and 3 threads (3 leaves an uneven last part).
        let cases = [
            (1, 7, 3),
            (5, 33, 5),
            (13, 40, 9),
            (61, 100, 11),
            (14, 384, 24),
            (12, 384, 1152),
            (7, 50, 70),
            (200, 96, 70),
        ];
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for (rows, k, n) in cases {
                let x = numbers(rows * k, 1);
                let w = numbers(n * k, 2);
                let b = numbers(n, 3);
                let want = naive(&x, &w, &b);
                let mut got = vec![f32::NAN; rows * n];
                pool.install(|| linear(arch, &x, &Packed::new(&w, &b), &mut got));
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - e).abs() < 1e-3 * (1.0 + e.abs()),
                        "{threads} threads, rows {rows} k {k} n {n} [{i}]: {g} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn dot_and_axpy_handle_tails() {
        let arch = Arch::new();
        let a = numbers(37, 4);
        let b = numbers(37, 5);
        assert!((dot(arch, &a, &b) - scalar_dot(&a, &b)).abs() < 1e-4);
        let mut y = numbers(37, 6);
        let mut want = y.clone();
        axpy(arch, 0.5, &a, &mut y);
        want.iter_mut().zip(&a).for_each(|(w, x)| *w += 0.5 * x);
        assert!(y.iter().zip(&want).all(|(g, e)| (g - e).abs() < 1e-5));
    }

    #[test]
    fn gelu_follows_the_exact_erf() {
        let arch = Arch::new();
        // -10..10 in steps of 0.001, and an odd length for the scalar tail.
        let xs: Vec<f32> = (-10_000..=10_000).map(|i| i as f32 / 1000.0).collect();
        let mut got = xs.clone();
        gelu(arch, &mut got);
        for (x, g) in xs.iter().zip(&got) {
            let want = 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
            assert!(
                (g - want).abs() < 2e-6 * (1.0 + x.abs()),
                "gelu({x}) = {g}, want {want}"
            );
        }
    }
}
