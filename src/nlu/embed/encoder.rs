//! The default engine: a BERT encoder written for this one job, in plain Rust.
//!
//! Embedding a chat message is a small problem: a six-token message through all-MiniLM-L6-v2 is
//! about 130 million multiply-adds. A general tensor library spends much of a short message's time
//! outside that arithmetic (allocating tensors, repacking weights for every product, padding a
//! batch to its longest sentence). This encoder does only what the model needs:
//! - every linear layer's weights are repacked once, at load, into panels of 16 output columns,
//!   and one kernel (6 rows by 16 columns of running sums, in AVX2 registers where the processor
//!   has them, portable code otherwise) streams them with no further copying;
//! - a batch is one matrix of all its tokens, sentences end to end with no padding; only attention
//!   looks at where a sentence starts and ends;
//! - the word-embedding table (half of the file) stays in the memory-mapped file, and only the rows
//!   of the tokens seen are read.
//!
//! The arithmetic is the model's own: learned position embeddings, post-LayerNorm blocks, exact
//! (erf) GELU, then mean pooling and L2 normalisation as sentence-transformers does. The parity
//! test holds it to the independent float64 reference.

use super::{checksum, model_err, tokenizer, Embedder, Error};
use rayon::prelude::*;
use std::path::Path;

/// Output columns per panel, and the kernel's width.
const NR: usize = 16;
/// Rows per kernel call.
const MR: usize = 6;

/// One panel row: 16 weights, aligned to a cache line so each load stays inside one line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Row([f32; NR]);

/// An `n` x `k` matrix `B` stored for the kernel: panel `p` holds, for each `kk` in `0..k`,
/// the 16 values `B[p*16 + c][kk]` (zero past `n`).
struct Packed {
    n: usize,
    k: usize,
    rows: Vec<Row>,
}

impl Packed {
    fn new(n: usize, k: usize, at: impl Fn(usize, usize) -> f32) -> Packed {
        let panels = n.div_ceil(NR);
        let mut rows = vec![Row([0.0; NR]); panels * k];
        for p in 0..panels {
            for kk in 0..k {
                let row = &mut rows[p * k + kk].0;
                for (c, v) in row.iter_mut().enumerate() {
                    let col = p * NR + c;
                    if col < n {
                        *v = at(col, kk);
                    }
                }
            }
        }
        Packed { n, k, rows }
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    fn panel(&self, p: usize) -> &[Row] {
        &self.rows[p * self.k..(p + 1) * self.k]
    }
}

/// A raw output pointer shared by tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: every user writes only the cells it owns (its own columns or rows); see `matmul` and
// `attention`.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The cell `i` places on (a method, so closures capture the whole `Send` wrapper).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// `out[i*ldc + j] = bias[j] + sum over kk of a[i*lda + kk] * B[j][kk]` for `i < rows`,
/// `j < b.n`. With `parallel`, panels are shared out over the current rayon pool.
#[allow(clippy::too_many_arguments)]
fn matmul(
    a: &[f32],
    lda: usize,
    rows: usize,
    b: &Packed,
    bias: Option<&[f32]>,
    out: &mut [f32],
    ldc: usize,
    parallel: bool,
) {
    // rows of `ldc` cells hold `b.n` columns each, so panels never share a cell
    let fits = |len: usize, stride: usize, width: usize| {
        rows == 0
            || (rows - 1)
                .checked_mul(stride)
                .and_then(|n| n.checked_add(width))
                .is_some_and(|n| n <= len)
    };
    assert!(b.k <= lda && b.n <= ldc && fits(a.len(), lda, b.k) && fits(out.len(), ldc, b.n));
    let dst = Out(out.as_mut_ptr());
    let one = |p: usize| {
        // SAFETY: panel p writes only columns p*16 .. p*16+16 (clipped to n) of rows < rows,
        // inside `out` by the assertion above; no two panels share a column.
        unsafe { panel_product(a, lda, rows, b, p, bias, dst, ldc) }
    };
    if parallel && rows * b.k * b.n >= 1 << 16 {
        (0..b.panels()).into_par_iter().for_each(one);
    } else {
        (0..b.panels()).for_each(one);
    }
}

/// One panel's columns for all rows, six rows at a time.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_product(
    a: &[f32],
    lda: usize,
    rows: usize,
    b: &Packed,
    p: usize,
    bias: Option<&[f32]>,
    out: Out,
    ldc: usize,
) {
    let panel = b.panel(p);
    let col0 = p * NR;
    let cols = NR.min(b.n - col0);
    let mut sums = [[0f32; NR]; MR];
    let mut i = 0;
    while i < rows {
        let r = MR.min(rows - i);
        block(r, b.k, &a[i * lda..], lda, panel, &mut sums);
        for (di, row) in sums.iter().enumerate().take(r) {
            let dst = out.at((i + di) * ldc + col0);
            for c in 0..cols {
                *dst.add(c) = row[c] + bias.map_or(0.0, |bias| bias[col0 + c]);
            }
        }
        i += r;
    }
}

/// `sums[r][c] = sum over kk of a[r*lda + kk] * panel[kk][c]` for `r < rows` (at most 6).
fn block(rows: usize, k: usize, a: &[f32], lda: usize, panel: &[Row], sums: &mut [[f32; NR]; MR]) {
    assert!((1..=MR).contains(&rows) && panel.len() >= k && a.len() >= (rows - 1) * lda + k);
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: the processor has AVX2 and FMA (checked); the reads stay inside `a` (rows of
        // `lda` with `k <= lda` used, checked by `matmul`) and `panel` (`k` rows).
        unsafe {
            match rows {
                6 => avx2::block::<6>(k, a, lda, panel, sums),
                5 => avx2::block::<5>(k, a, lda, panel, sums),
                4 => avx2::block::<4>(k, a, lda, panel, sums),
                3 => avx2::block::<3>(k, a, lda, panel, sums),
                2 => avx2::block::<2>(k, a, lda, panel, sums),
                _ => avx2::block::<1>(k, a, lda, panel, sums),
            }
        }
        return;
    }
    portable_block(rows, k, a, lda, panel, sums)
}

/// [`block`] without SIMD intrinsics (the compiler still vectorises the 16 columns).
fn portable_block(
    rows: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    panel: &[Row],
    sums: &mut [[f32; NR]; MR],
) {
    for (r, sum) in sums.iter_mut().enumerate().take(rows) {
        let mut acc = [0f32; NR];
        for (kk, w) in panel.iter().enumerate().take(k) {
            let x = a[r * lda + kk];
            for (acc, w) in acc.iter_mut().zip(&w.0) {
                *acc += x * w;
            }
        }
        *sum = acc;
    }
}

/// Whether the AVX2 + FMA kernel can run here (checked once).
#[cfg(target_arch = "x86_64")]
fn simd() -> bool {
    static SIMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SIMD.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Row, MR, NR};
    use std::arch::x86_64::*;

    /// The 6 x 16 kernel: two 8-wide registers of running sums per row, one broadcast of `a` and
    /// two loads of the panel per step.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block<const R: usize>(
        k: usize,
        a: &[f32],
        lda: usize,
        panel: &[Row],
        sums: &mut [[f32; NR]; MR],
    ) {
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let a = a.as_ptr();
        let w = panel.as_ptr() as *const f32;
        for kk in 0..k {
            let b0 = _mm256_load_ps(w.add(kk * NR));
            let b1 = _mm256_load_ps(w.add(kk * NR + 8));
            for r in 0..R {
                let x = _mm256_broadcast_ss(&*a.add(r * lda + kk));
                lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
            }
        }
        for r in 0..R {
            _mm256_storeu_ps(sums[r].as_mut_ptr(), lo[r]);
            _mm256_storeu_ps(sums[r].as_mut_ptr().add(8), hi[r]);
        }
    }

    /// GELU over a slice, compiled for AVX2 so the loop is vectorised.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gelu(xs: &mut [f32]) {
        for x in xs {
            *x = super::gelu(*x);
        }
    }
}

fn gelu_all(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: AVX-512F is present (checked).
        unsafe { gelu_avx512(xs) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: AVX2 and FMA are present (checked).
        unsafe { avx2::gelu(xs) };
        return;
    }
    for x in xs {
        *x = gelu(*x);
    }
}

/// Whether AVX-512F is present (checked once), for the 16-wide GELU loop.
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma"))
}

/// GELU over a slice, compiled for AVX-512 so the loop runs 16 lanes wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn gelu_avx512(xs: &mut [f32]) {
    for x in xs {
        *x = gelu(*x);
    }
}

/// GELU as BERT defines it, with erf (not the tanh approximation).
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf by Abramowitz and Stegun 7.1.26 (absolute error at most 1.5e-7), written without branches
/// so that a loop over it vectorises.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// e^x for x in about -87..88 (clamped), relative error about 2e-7: x = n ln2 + r with |r| <= ln2/2,
/// a degree-6 polynomial for e^r, and 2^n built from its exponent bits. Branch-free.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    // n as an integer is in t's low mantissa bits: integer arithmetic on the bits, which
    // vectorises (a float-to-integer `as` does not, for its NaN and overflow rules)
    let two_n = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23;
    p * f32::from_bits(two_n)
}

/// `x += residual`, then LayerNorm of each `h`-wide row, in place; rows shared out over the
/// current rayon pool in parts of 32.
fn add_and_norm(x: &mut [f32], residual: &[f32], h: usize, norm: &Norm) {
    x.par_chunks_mut(32 * h)
        .zip(residual.par_chunks(32 * h))
        .for_each(|(x, r)| {
            x.iter_mut().zip(r).for_each(|(x, r)| *x += r);
            layer_norm(x, h, norm);
        });
}

/// The sum of `f(v)` over `row`, in 16 lanes: one running sum would be a chain of dependent
/// additions.
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = row.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|v| f(*v)).sum();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += f(*v);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// LayerNorm of each `h`-wide row of `x`, in place.
fn layer_norm(x: &mut [f32], h: usize, norm: &Norm) {
    for row in x.chunks_exact_mut(h) {
        let mean = lane_sum(row, |v| v) / h as f32;
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / h as f32;
        let inv = 1.0 / (var + norm.eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

/// A linear layer's weights, packed for the kernel the encoder's precision uses.
enum Weights {
    F32(Packed),
    #[cfg(target_arch = "x86_64")]
    Bf16(bf16::Packed),
}

struct Linear {
    w: Weights,
    bias: Vec<f32>,
}

impl Linear {
    fn new(precision: Precision, n: usize, k: usize, w: &[f32], bias: Vec<f32>) -> Linear {
        let at = |col: usize, kk: usize| w[col * k + kk];
        let w = match precision {
            Precision::F32 => Weights::F32(Packed::new(n, k, at)),
            #[cfg(target_arch = "x86_64")]
            Precision::Bf16 => Weights::Bf16(bf16::Packed::new(n, k, at)),
            #[cfg(not(target_arch = "x86_64"))]
            Precision::Bf16 => unreachable!("bf16 is chosen only where the processor has it"),
        };
        Linear { w, bias }
    }

    /// `x` (rows x k) times the layer into a new rows x n buffer.
    fn apply(&self, x: &[f32], rows: usize) -> Vec<f32> {
        match &self.w {
            Weights::F32(w) => {
                let mut out = vec![0f32; rows * w.n];
                matmul(x, w.k, rows, w, Some(&self.bias), &mut out, w.n, true);
                out
            }
            #[cfg(target_arch = "x86_64")]
            Weights::Bf16(w) => w.apply(x, rows, &self.bias),
        }
    }
}

/// The arithmetic of the linear layers (attention, normalisation and pooling are always float32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// float32 products and sums: the model's own arithmetic.
    F32,
    /// weights and layer inputs rounded to bfloat16 (8 significant bits), products summed in
    /// float32 by the processor's AVX-512 BF16 dot-product instruction: twice the multiply-adds
    /// per cycle. Only where the processor has it ([`Precision::available`]).
    Bf16,
}

impl Precision {
    /// The fastest precision this processor runs.
    pub fn fastest() -> Precision {
        if Precision::Bf16.available() {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }

    /// Whether this processor can run it.
    pub fn available(self) -> bool {
        match self {
            Precision::F32 => true,
            #[cfg(target_arch = "x86_64")]
            Precision::Bf16 => bf16::available(),
            #[cfg(not(target_arch = "x86_64"))]
            Precision::Bf16 => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// Linear layers in bfloat16: AVX-512 BF16 `vdpbf16ps`, which multiplies pairs of bfloat16 values
/// and adds both products into one float32 sum.
#[cfg(target_arch = "x86_64")]
mod bf16 {
    use super::Out;
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    /// Output columns per panel: two 16-wide registers.
    const NR: usize = 32;
    /// Rows per kernel call.
    const MR: usize = 6;

    /// One panel step: for each of 32 columns, the pair of weights for two consecutive inputs.
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct Row([u32; NR]);

    pub(super) fn available() -> bool {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
        })
    }

    /// float32 to bfloat16, rounding to nearest even (the values here are finite).
    #[inline(always)]
    pub(super) fn round(x: f32) -> u32 {
        let b = x.to_bits();
        (b.wrapping_add(0x7fff + ((b >> 16) & 1))) >> 16
    }

    /// Two bfloat16 values in one 32-bit lane: `lo` in the low half, as `vdpbf16ps` pairs them.
    #[inline(always)]
    fn pair(lo: f32, hi: f32) -> u32 {
        round(lo) | (round(hi) << 16)
    }

    /// An `n` x `k` matrix `B` for the kernel: panel `p`, step `s` holds, for each of its 32
    /// columns `c`, the pair `B[p*32 + c][2s], B[p*32 + c][2s + 1]` (zero past `n` and `k`).
    pub(super) struct Packed {
        pub(super) n: usize,
        k: usize,
        steps: usize,
        rows: Vec<Row>,
    }

    impl Packed {
        pub(super) fn new(n: usize, k: usize, at: impl Fn(usize, usize) -> f32) -> Packed {
            let panels = n.div_ceil(NR);
            let steps = k.div_ceil(2);
            let mut rows = vec![Row([0; NR]); panels * steps];
            let get = |col: usize, kk: usize| if col < n && kk < k { at(col, kk) } else { 0.0 };
            for p in 0..panels {
                for s in 0..steps {
                    for (c, v) in rows[p * steps + s].0.iter_mut().enumerate() {
                        *v = pair(get(p * NR + c, 2 * s), get(p * NR + c, 2 * s + 1));
                    }
                }
            }
            Packed { n, k, steps, rows }
        }

        /// `x` (rows x k, float32) times the matrix plus `bias`, into a new rows x n buffer.
        pub(super) fn apply(&self, x: &[f32], rows: usize, bias: &[f32]) -> Vec<f32> {
            assert!(x.len() == rows * self.k && bias.len() == self.n && available());
            // the layer's input, rounded once into pairs
            let steps = self.steps;
            let mut a = vec![0u32; rows * steps];
            a.par_chunks_mut(32 * steps)
                .zip(x.par_chunks(32 * self.k))
                .for_each(|(a, x)| {
                    for (dst, src) in a.chunks_exact_mut(steps).zip(x.chunks_exact(self.k)) {
                        // SAFETY: AVX-512F and BF16 are present (asserted above).
                        unsafe { round_row(src, dst) };
                    }
                });
            let mut out = vec![0f32; rows * self.n];
            let dst = Out(out.as_mut_ptr());
            let one = |p: usize| {
                // SAFETY: the processor has AVX-512F and BF16 (asserted above); panel p writes
                // only columns p*32 .. p*32+32 (clipped to n) of rows < rows of `out`
                // (rows x n), and no two panels share a column; `a` holds rows x steps pairs
                // and the panel `steps` rows.
                unsafe { self.panel_product(&a, rows, p, bias, dst) }
            };
            let panels = self.n.div_ceil(NR);
            if rows * self.k * self.n >= 1 << 16 {
                (0..panels).into_par_iter().for_each(one);
            } else {
                (0..panels).for_each(one);
            }
            out
        }

        #[target_feature(enable = "avx512f,avx512bf16")]
        unsafe fn panel_product(&self, a: &[u32], rows: usize, p: usize, bias: &[f32], out: Out) {
            let steps = self.steps;
            let panel = &self.rows[p * steps..(p + 1) * steps];
            let col0 = p * NR;
            let cols = NR.min(self.n - col0);
            let mut sums = [[0f32; NR]; MR];
            let mut i = 0;
            while i < rows {
                let r = MR.min(rows - i);
                let a = &a[i * steps..];
                match r {
                    6 => block::<6>(steps, a, panel, &mut sums),
                    5 => block::<5>(steps, a, panel, &mut sums),
                    4 => block::<4>(steps, a, panel, &mut sums),
                    3 => block::<3>(steps, a, panel, &mut sums),
                    2 => block::<2>(steps, a, panel, &mut sums),
                    _ => block::<1>(steps, a, panel, &mut sums),
                }
                for (di, row) in sums.iter().enumerate().take(r) {
                    let dst = out.at((i + di) * self.n + col0);
                    for c in 0..cols {
                        *dst.add(c) = row[c] + bias[col0 + c];
                    }
                }
                i += r;
            }
        }
    }

    /// One layer input row rounded into pairs: `dst[s]` holds `src[2s]` and `src[2s + 1]` (zero
    /// past the end), 16 values an instruction. The bfloat16 values in memory order are exactly
    /// the pairs, low half first.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn round_row(src: &[f32], dst: &mut [u32]) {
        assert_eq!(dst.len(), src.len().div_ceil(2));
        let whole = src.len() / 16;
        for i in 0..whole {
            let v = _mm512_loadu_ps(src.as_ptr().add(16 * i));
            let b: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_storeu_si256(dst.as_mut_ptr().add(8 * i) as *mut __m256i, b);
        }
        for s in 8 * whole..dst.len() {
            let hi = src.get(2 * s + 1).copied().unwrap_or(0.0);
            dst[s] = pair(src[2 * s], hi);
        }
    }

    /// `sums[r][c] = sum over s of the pair products of a[r*steps + s] and panel[s][c]`, r < R.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn block<const R: usize>(
        steps: usize,
        a: &[u32],
        panel: &[Row],
        sums: &mut [[f32; NR]; MR],
    ) {
        assert!(a.len() >= R * steps && panel.len() >= steps);
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        let a = a.as_ptr();
        let w = panel.as_ptr() as *const u32;
        for s in 0..steps {
            let b0: __m512bh = std::mem::transmute(_mm512_load_si512(w.add(s * NR) as *const _));
            let b1: __m512bh =
                std::mem::transmute(_mm512_load_si512(w.add(s * NR + 16) as *const _));
            for r in 0..R {
                let x: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*a.add(r * steps + s) as i32));
                lo[r] = _mm512_dpbf16_ps(lo[r], x, b0);
                hi[r] = _mm512_dpbf16_ps(hi[r], x, b1);
            }
        }
        for r in 0..R {
            _mm512_storeu_ps(sums[r].as_mut_ptr(), lo[r]);
            _mm512_storeu_ps(sums[r].as_mut_ptr().add(16), hi[r]);
        }
    }
}

struct Layer {
    /// query, key and value in one product: output columns 0..h, h..2h, 2h..3h
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// The model: sizes, weights, and the mapped file that holds the word embeddings.
pub(super) struct Encoder {
    hidden: usize,
    heads: usize,
    max_positions: usize,
    vocab: usize,
    file: memmap2::Mmap,
    /// byte offset of the word-embedding table in `file`
    words_at: usize,
    positions: Vec<f32>,
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
}

#[derive(serde::Deserialize)]
struct Config {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f32,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_position_type")]
    position_embedding_type: String,
}

fn default_eps() -> f32 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position_type() -> String {
    "absolute".into()
}

impl Encoder {
    pub(super) fn load(dir: &Path, precision: Precision) -> Result<Encoder, Error> {
        if !precision.available() {
            return Err(Error::Inference(format!(
                "this processor cannot run the encoder in {} (it needs AVX-512 BF16)",
                precision.name()
            )));
        }
        let config_path = dir.join("config.json");
        let c: Config = serde_json::from_str(
            &std::fs::read_to_string(&config_path).map_err(|e| model_err(&config_path, e))?,
        )
        .map_err(|e| model_err(&config_path, e))?;
        if c.hidden_act != "gelu" || c.position_embedding_type != "absolute" {
            return Err(model_err(
                &config_path,
                format!(
                    "this engine runs BERT with exact GELU and absolute positions, not hidden_act = {:?}, position_embedding_type = {:?}",
                    c.hidden_act, c.position_embedding_type
                ),
            ));
        }
        if c.hidden_size == 0
            || c.num_attention_heads == 0
            || !c.hidden_size.is_multiple_of(c.num_attention_heads)
        {
            return Err(model_err(
                &config_path,
                "hidden_size must be a positive multiple of num_attention_heads",
            ));
        }
        let path = dir.join("model.safetensors");
        let file = std::fs::File::open(&path).map_err(|e| model_err(&path, e))?;
        // SAFETY: the file is mapped read-only and opsbot never writes the model directory; a
        // file changed underneath a running bot is outside what it can defend against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| model_err(&path, e))?;
        let tensors =
            safetensors::SafeTensors::deserialize(&map).map_err(|e| model_err(&path, e))?;
        let h = c.hidden_size;
        let tensor = |name: &str, shape: &[usize]| -> Result<&[u8], Error> {
            let t = tensors
                .tensor(name)
                .map_err(|e| model_err(&path, format!("{name}: {e}")))?;
            if t.dtype() != safetensors::Dtype::F32 || t.shape() != shape {
                return Err(model_err(
                    &path,
                    format!(
                        "{name} is {:?} {:?}, expected F32 {shape:?}",
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
            Ok(t.data())
        };
        let floats = |name: &str, shape: &[usize]| -> Result<Vec<f32>, Error> {
            Ok(tensor(name, shape)?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let norm = |prefix: &str| -> Result<Norm, Error> {
            Ok(Norm {
                gamma: floats(&format!("{prefix}.weight"), &[h])?,
                beta: floats(&format!("{prefix}.bias"), &[h])?,
                eps: c.layer_norm_eps,
            })
        };
        let linear = |prefix: &str, n: usize, k: usize| -> Result<Linear, Error> {
            let w = floats(&format!("{prefix}.weight"), &[n, k])?;
            Ok(Linear::new(
                precision,
                n,
                k,
                &w,
                floats(&format!("{prefix}.bias"), &[n])?,
            ))
        };
        let words = tensor("embeddings.word_embeddings.weight", &[c.vocab_size, h])?;
        let words_at = words.as_ptr() as usize - map.as_ptr() as usize;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let part = |name: &str| -> Result<(Vec<f32>, Vec<f32>), Error> {
                let name = format!("{p}.attention.self.{name}");
                Ok((
                    floats(&format!("{name}.weight"), &[h, h])?,
                    floats(&format!("{name}.bias"), &[h])?,
                ))
            };
            let (q, k, v) = (part("query")?, part("key")?, part("value")?);
            // query, key and value rows one after the other: one 3h x h matrix
            let qkv = Linear::new(
                precision,
                3 * h,
                h,
                &[q.0, k.0, v.0].concat(),
                [q.1, k.1, v.1].concat(),
            );
            layers.push(Layer {
                qkv,
                attn_out: linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                up: linear(&format!("{p}.intermediate.dense"), c.intermediate_size, h)?,
                down: linear(&format!("{p}.output.dense"), h, c.intermediate_size)?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let positions = floats(
            "embeddings.position_embeddings.weight",
            &[c.max_position_embeddings, h],
        )?;
        let token_type = floats("embeddings.token_type_embeddings.weight", &[2, h])
            .or_else(|_| floats("embeddings.token_type_embeddings.weight", &[1, h]))?[..h]
            .to_vec();
        let embed_norm = norm("embeddings.LayerNorm")?;
        drop(tensors);
        Ok(Encoder {
            hidden: h,
            heads: c.num_attention_heads,
            max_positions: c.max_position_embeddings,
            vocab: c.vocab_size,
            file: map,
            words_at,
            positions,
            token_type,
            embed_norm,
            layers,
        })
    }

    pub(super) fn hidden(&self) -> usize {
        self.hidden
    }

    /// Embeds token sequences (each with its special tokens) as one matrix of all their tokens;
    /// returns one L2-normalised vector per sequence. Run inside the rayon pool that should do
    /// the work.
    pub(super) fn forward(&self, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, Error> {
        let h = self.hidden;
        let mut spans = Vec::with_capacity(seqs.len());
        let mut t = 0;
        for s in seqs {
            if s.is_empty() || s.len() > self.max_positions {
                return Err(Error::Inference(format!(
                    "a sequence of {} tokens (1..={} allowed)",
                    s.len(),
                    self.max_positions
                )));
            }
            spans.push((t, s.len()));
            t += s.len();
        }
        let mut x = vec![0f32; t * h];
        for (s, &(start, _)) in seqs.iter().zip(&spans) {
            for (pos, &id) in s.iter().enumerate() {
                let id = id as usize;
                if id >= self.vocab {
                    return Err(Error::Inference(format!(
                        "token id {id} is outside the vocabulary"
                    )));
                }
                let word = &self.file[self.words_at + id * h * 4..self.words_at + (id + 1) * h * 4];
                let row = &mut x[(start + pos) * h..(start + pos + 1) * h];
                for (j, v) in row.iter_mut().enumerate() {
                    let w = f32::from_le_bytes([
                        word[4 * j],
                        word[4 * j + 1],
                        word[4 * j + 2],
                        word[4 * j + 3],
                    ]);
                    *v = w + self.positions[pos * h + j] + self.token_type[j];
                }
            }
        }
        layer_norm(&mut x, h, &self.embed_norm);
        for layer in &self.layers {
            let qkv = layer.qkv.apply(&x, t);
            let ctx = self.attention(&qkv, &spans, t);
            let mut a = layer.attn_out.apply(&ctx, t);
            add_and_norm(&mut a, &x, h, &layer.attn_norm);
            let mut u = layer.up.apply(&a, t);
            u.par_chunks_mut(4096).for_each(gelu_all);
            let mut d = layer.down.apply(&u, t);
            add_and_norm(&mut d, &a, h, &layer.out_norm);
            x = d;
        }
        Ok(spans
            .iter()
            .map(|&(start, len)| {
                let mut v = vec![0f32; h];
                for row in x[start * h..(start + len) * h].chunks_exact(h) {
                    v.iter_mut().zip(row).for_each(|(v, r)| *v += r);
                }
                v.iter_mut().for_each(|v| *v /= len as f32);
                let norm = v.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|v| *v /= norm);
                v
            })
            .collect())
    }

    /// Self-attention of each sequence on its own, head by head: `qkv` is t x 3h (queries, keys,
    /// values); returns the t x h context.
    fn attention(&self, qkv: &[f32], spans: &[(usize, usize)], t: usize) -> Vec<f32> {
        let h = self.hidden;
        let dh = h / self.heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut ctx = vec![0f32; t * h];
        let dst = Out(ctx.as_mut_ptr());
        let work: Vec<(usize, usize, usize)> = spans
            .iter()
            .flat_map(|&(start, len)| (0..self.heads).map(move |head| (start, len, head)))
            .collect();
        work.par_iter().for_each(|&(start, len, head)| {
            let row = |i: usize| (start + i) * 3 * h;
            let keys = Packed::new(len, dh, |j, kk| qkv[row(j) + h + head * dh + kk]);
            let values = Packed::new(dh, len, |c, j| qkv[row(j) + 2 * h + head * dh + c]);
            let mut scores = vec![0f32; len * len];
            matmul(
                &qkv[row(0) + head * dh..],
                3 * h,
                len,
                &keys,
                None,
                &mut scores,
                len,
                false,
            );
            for s in scores.chunks_exact_mut(len) {
                let max = s.iter().fold(f32::MIN, |m, v| m.max(*v));
                let mut sum = 0.0;
                for v in s.iter_mut() {
                    *v = exp((*v - max) * scale);
                    sum += *v;
                }
                s.iter_mut().for_each(|v| *v /= sum);
            }
            let mut part = vec![0f32; len * dh];
            matmul(&scores, len, len, &values, None, &mut part, dh, false);
            for (i, row) in part.chunks_exact(dh).enumerate() {
                // SAFETY: this task alone writes columns head*dh .. (head+1)*dh of rows
                // start .. start+len of `ctx` (t x h): no other task has the same (sequence,
                // head), and no reference to `ctx` exists while the tasks run.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        row.as_ptr(),
                        dst.at((start + i) * h + head * dh),
                        dh,
                    )
                };
            }
        });
        ctx
    }
}

/// The default [`Embedder`]: [`Encoder`] with the model's tokenizer, on its own thread pool.
pub struct EncoderEmbedder {
    encoder: Encoder,
    tokenizer: tokenizers::Tokenizer,
    pool: rayon::ThreadPool,
    model_id: String,
}

impl EncoderEmbedder {
    /// Loads `dir/{config.json, tokenizer.json, model.safetensors}` in float32; inference runs on
    /// a pool of `threads` threads.
    pub fn load(dir: &Path, threads: usize) -> Result<Self, Error> {
        Self::load_with(dir, threads, Precision::F32)
    }

    /// [`EncoderEmbedder::load`] with the linear layers in `precision`. Its vectors differ from
    /// float32 ones (within the parity test's bounds), so its `model_id` names it: caches of one
    /// are never read by the other.
    pub fn load_with(dir: &Path, threads: usize, precision: Precision) -> Result<Self, Error> {
        let encoder = Encoder::load(dir, precision)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("embed-{i}"))
            .build()
            .map_err(|e| Error::Inference(e.to_string()))?;
        let mut tokenizer = tokenizer(dir)?;
        tokenizer.with_padding(None);
        // a model with fewer positions than MAX_TOKENS truncates at its own length
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: super::MAX_TOKENS.min(encoder.max_positions),
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let sha = checksum(&dir.join("model.safetensors"))?;
        Ok(EncoderEmbedder {
            encoder,
            tokenizer,
            pool,
            model_id: match precision {
                Precision::F32 => sha,
                other => format!("{}-{sha}", other.name()),
            },
        })
    }
}

impl Embedder for EncoderEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let seqs: Vec<Vec<u32>> = if texts.len() == 1 {
            vec![self
                .tokenizer
                .encode(texts[0], true)
                .map_err(|e| Error::Tokenizer(e.to_string()))?
                .get_ids()
                .to_vec()]
        } else {
            self.tokenizer
                .encode_batch(texts.to_vec(), true)
                .map_err(|e| Error::Tokenizer(e.to_string()))?
                .iter()
                .map(|e| e.get_ids().to_vec())
                .collect()
        };
        self.pool.install(|| self.encoder.forward(&seqs))
    }

    fn dim(&self) -> usize {
        self.encoder.hidden()
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_exp_are_close_to_the_library() {
        for i in -400..=400 {
            let x = i as f32 / 50.0;
            let want = libm_erf(x as f64);
            assert!((erf(x) as f64 - want).abs() < 3e-7, "erf({x})");
            let e = (x as f64 * 4.0).exp();
            assert!(
                ((exp(x * 4.0) as f64 - e) / e).abs() < 5e-7,
                "exp({})",
                x * 4.0
            );
        }
    }

    /// erf in float64 by its Taylor series (|x| <= 2) or continued fraction, for the test only.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        // series: erf x = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)); converges for all x,
        // fine in float64 up to |x| = 5 with enough terms
        let mut sum = 0.0;
        let mut term = x;
        for n in 0..200 {
            sum += term / (2 * n + 1) as f64;
            term *= -x * x / (n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    /// The bfloat16 kernel against a plain float64 product of the same rounded values: only the
    /// order of the float32 sums differs. Odd `k` and `n` not a multiple of 32 check the padding.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_bfloat16_kernel_matches_a_plain_product_of_rounded_values() {
        if !Precision::Bf16.available() {
            eprintln!("skipped: this processor has no AVX-512 BF16");
            return;
        }
        let bf = |x: f32| f32::from_bits(bf16::round(x) << 16);
        assert_eq!(bf(1.0), 1.0);
        assert_eq!(bf(1.0 + 1.0 / 512.0), 1.0, "a tie rounds to even");
        assert_eq!(bf(1.0 + 3.0 / 512.0), 1.0 + 4.0 / 512.0);
        for (rows, n, k) in [
            (1, 1, 1),
            (7, 17, 5),
            (13, 40, 33),
            (6, 32, 384),
            (40, 70, 9),
        ] {
            let a: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.3)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.1)
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32).collect();
            let out = bf16::Packed::new(n, k, |col, kk| w[col * k + kk]).apply(&a, rows, &bias);
            for i in 0..rows {
                for j in 0..n {
                    let want = bias[j] as f64
                        + (0..k)
                            .map(|kk| bf(a[i * k + kk]) as f64 * bf(w[j * k + kk]) as f64)
                            .sum::<f64>();
                    let got = out[i * n + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{rows}x{n}x{k} at {i},{j}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_kernel_matches_a_plain_product_at_every_size() {
        for (rows, n, k) in [(1, 1, 1), (7, 17, 5), (13, 40, 33), (6, 16, 384)] {
            let a: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32).collect();
            let b = Packed::new(n, k, |col, kk| w[col * k + kk]);
            let mut out = vec![0f32; rows * n];
            matmul(&a, k, rows, &b, Some(&bias), &mut out, n, false);
            for i in 0..rows {
                for j in 0..n {
                    let want: f32 =
                        bias[j] + (0..k).map(|kk| a[i * k + kk] * w[j * k + kk]).sum::<f32>();
                    assert!(
                        (out[i * n + j] - want).abs() < 1e-3,
                        "{rows}x{n}x{k} at {i},{j}"
                    );
                }
            }
            // the portable kernel gives the same sums as the one `matmul` chose
            let mut fast = [[0f32; NR]; MR];
            let mut plain = [[0f32; NR]; MR];
            let r = rows.min(MR);
            block(r, k, &a, k, b.panel(0), &mut fast);
            portable_block(r, k, &a, k, b.panel(0), &mut plain);
            for (f, p) in fast.iter().flatten().zip(plain.iter().flatten()) {
                assert!((f - p).abs() < 1e-3);
            }
        }
    }
}
