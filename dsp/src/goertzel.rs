//! Fixed-block Goertzel filters and a precise single-frequency DTFT.
//!
//! A Goertzel filter evaluates one DFT bin with one multiply-add per sample, which beats an
//! FFT when only a handful of bins matter (DTMF needs eight). [`GoertzelBank`] runs `N` bins
//! over one block at once; its state is `[f32; N]` arrays updated in a single inner loop over
//! the bins, so the compiler turns each sample's update into a few SIMD instructions.
//!
//! The bank is `Copy` and holds only coefficients: a block is analysed in one call from a
//! buffered slice, so there is no per-sample state to carry between calls and no allocation.
//!
//! [`goertzel_pair`] runs many single-bin recursions over a whole slice at once (the DTMF fine
//! stage's frequency grid, levels and talk-off probes); [`States`] turns the final states into a
//! power or a complex DTFT. [`dtft`] / [`dtft_multi`] are the exact `f64` reference (rotating
//! phasor) they are tested against.

use std::f64::consts::PI;

/// `N` Goertzel bins over fixed blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoertzelBank<const N: usize> {
    /// `2 cos(2π f / fs)` per bin.
    coefs: [f32; N],
    /// `ω`, `cos ω` and `sin ω` per bin, for recombining segments.
    omega: [f32; N],
    cos: [f32; N],
    sin: [f32; N],
    /// Block length the recombination rotations in `rot` were computed for (0: none).
    rot_len: usize,
    /// Per bin and segment, `(cos, sin)` of `ω · delay_g` for blocks of `rot_len` samples
    /// (see [`GoertzelBank::powers`]); saves `2 · SEGMENTS` trigonometric calls per bin and block.
    rot: [[(f32, f32); SEGMENTS]; N],
}

/// Segments a block is cut into by [`GoertzelBank::powers`] (102 = 3 × 34).
pub const SEGMENTS: usize = 3;

impl<const N: usize> GoertzelBank<N> {
    /// Bins at `freqs_hz` for a stream sampled at `rate_hz`.
    pub fn new(freqs_hz: [f32; N], rate_hz: f32) -> Self {
        let mut bank = GoertzelBank {
            coefs: [0.0; N],
            omega: [0.0; N],
            cos: [0.0; N],
            sin: [0.0; N],
            rot_len: 0,
            rot: [[(1.0, 0.0); SEGMENTS]; N],
        };
        for (i, f) in freqs_hz.into_iter().enumerate() {
            let w = 2.0 * PI * f64::from(f) / f64::from(rate_hz);
            bank.coefs[i] = (2.0 * w.cos()) as f32;
            bank.omega[i] = w as f32;
            bank.cos[i] = w.cos() as f32;
            bank.sin[i] = w.sin() as f32;
        }
        bank
    }

    /// The same bank with the segment recombination rotations precomputed for blocks of
    /// `len` samples (other lengths still work, computing them per call). Results are
    /// bit-identical either way.
    pub fn with_block_len(mut self, len: usize) -> Self {
        for i in 0..N {
            for g in 0..SEGMENTS {
                self.rot[i][g] = self.rotation(i, g, len);
            }
        }
        self.rot_len = len;
        self
    }

    /// `(cos, sin)` of bin `i`'s phase rotation for segment `g` of a block of `len` samples.
    fn rotation(&self, i: usize, g: usize, len: usize) -> (f32, f32) {
        let seg = len / SEGMENTS;
        let end = if g + 1 == SEGMENTS {
            len
        } else {
            (g + 1) * seg
        };
        let delay = (len - end) as f32;
        ((self.omega[i] * delay).cos(), (self.omega[i] * delay).sin())
    }

    /// Squared DFT magnitude `|X(f)|²` of each bin over `block`.
    ///
    /// A sine of amplitude `A` exactly on a bin of a block of `n` samples gives `(A n / 2)²`.
    ///
    /// The block is cut into [`SEGMENTS`] equal segments run side by side (one Goertzel
    /// recursion per bin and segment) and recombined with a phase rotation per segment. The
    /// recursion is a serial chain of a multiply and an add per sample; running the segments in
    /// the same loop gives the CPU independent chains to overlap, which roughly triples
    /// throughput over one chain per bin. A tail that does not divide evenly is folded in with a
    /// plain recursion.
    pub fn powers(&self, block: &[f32]) -> [f32; N] {
        let seg = block.len() / SEGMENTS;
        let mut s1 = [[0.0f32; N]; SEGMENTS];
        let mut s2 = [[0.0f32; N]; SEGMENTS];
        // Four bins at a time: the states of all segments then fit in SSE registers.
        for i0 in (0..N).step_by(4) {
            let mut c = [0.0f32; 4];
            let m = (N - i0).min(4);
            c[..m].copy_from_slice(&self.coefs[i0..i0 + m]);
            let (a1, a2) = run4(block, seg, c);
            for g in 0..SEGMENTS {
                s1[g][i0..i0 + m].copy_from_slice(&a1[g][..m]);
                s2[g][i0..i0 + m].copy_from_slice(&a2[g][..m]);
            }
        }
        let mut p = [0.0f32; N];
        let cached = block.len() == self.rot_len;
        for i in 0..N {
            // Segment g's recursion ends with a_g = s1 − e^{−jω} s2 = e^{jω(end_g − 1)} X_g,
            // X_g = Σ_{k in g} x[k] e^{−jωk} and end_g one past its last sample. So, up to the
            // common factor e^{−jω(len − 1)}, the block's DFT is Σ_g a_g e^{jω(len − end_g)}.
            let (cw, sw) = (self.cos[i], self.sin[i]);
            let (mut re, mut im) = (0.0f32, 0.0f32);
            for g in 0..SEGMENTS {
                let ar = s1[g][i] - cw * s2[g][i];
                let ai = sw * s2[g][i];
                let (rc, rs) = if cached {
                    self.rot[i][g]
                } else {
                    self.rotation(i, g, block.len())
                };
                re += ar * rc - ai * rs;
                im += ar * rs + ai * rc;
            }
            p[i] = re * re + im * im;
        }
        p
    }
}

/// Goertzel states `(s1, s2)` per segment of four bins (coefficients `c`) over `block`, cut
/// into [`SEGMENTS`] segments of `seg` samples, the last one absorbing the tail.
fn run4(block: &[f32], seg: usize, c: [f32; 4]) -> ([[f32; 4]; SEGMENTS], [[f32; 4]; SEGMENTS]) {
    let mut s1 = [[0.0f32; 4]; SEGMENTS];
    let mut s2 = [[0.0f32; 4]; SEGMENTS];
    let segs: [&[f32]; SEGMENTS] = std::array::from_fn(|g| &block[g * seg..(g + 1) * seg]);
    // Two samples per iteration with the states' roles swapped in between: no copies.
    let [p0, p1, p2] = segs.map(|s| s.chunks_exact(2));
    for ((x0, x1), x2) in p0.zip(p1).zip(p2) {
        for (g, x) in [x0, x1, x2].into_iter().enumerate() {
            for i in 0..4 {
                s2[g][i] = (x[0] - s2[g][i]) + c[i] * s1[g][i];
            }
            for i in 0..4 {
                s1[g][i] = (x[1] - s1[g][i]) + c[i] * s2[g][i];
            }
        }
    }
    // An odd sample left in each segment, then the block's tail into the last segment.
    let odd = if seg % 2 == 1 { seg - 1 } else { seg };
    for g in 0..SEGMENTS {
        let tail = if g + 1 == SEGMENTS {
            &block[g * seg + odd..]
        } else {
            &segs[g][odd..]
        };
        for &x in tail {
            for i in 0..4 {
                let s0 = (x - s2[g][i]) + c[i] * s1[g][i];
                s2[g][i] = s1[g][i];
                s1[g][i] = s0;
            }
        }
    }
    (s1, s2)
}

/// Final states `(s1, s2)` of `K` Goertzel recursions (one per lane, coefficient `2 cos ω`)
/// after a whole input. Turn them into a power with [`States::power`] or into the complex
/// DTFT with [`States::dtft`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct States<const K: usize> {
    /// Last state `s[len − 1]` per lane.
    pub s1: [f32; K],
    /// State before it, `s[len − 2]`.
    pub s2: [f32; K],
    /// Coefficient `2 cos ω` per lane.
    pub coefs: [f32; K],
}

impl<const K: usize> States<K> {
    /// `|X(ω)|²` of lane `k` (no trigonometry), evaluated in `f64`.
    pub fn power(&self, k: usize) -> f64 {
        let (a, b, c) = (
            f64::from(self.s1[k]),
            f64::from(self.s2[k]),
            f64::from(self.coefs[k]),
        );
        a * a + b * b - c * a * b
    }

    /// Complex DTFT `Σ x[n] e^{-jωn}` of lane `k` over `len` samples, given `(cos ω, sin ω)`
    /// and `(cos ω(len − 1), sin ω(len − 1))` (same convention as [`dtft`]).
    pub fn dtft(&self, k: usize, cs: (f64, f64), end: (f64, f64)) -> (f64, f64) {
        let (a, b) = (f64::from(self.s1[k]), f64::from(self.s2[k]));
        // s1 − e^{−jω} s2 = e^{jω(len − 1)} X.
        let (yr, yi) = (a - cs.0 * b, cs.1 * b);
        (yr * end.0 + yi * end.1, yi * end.0 - yr * end.1)
    }
}

/// `K` Goertzel recursions over `a` and `L` over `b` (same length; extra samples of the longer
/// input are ignored), in one pass: independent chains, so they pipeline, and each group's
/// fixed-length lane loop vectorises. `f32` states: over a few hundred samples the relative
/// error of a power stays around 1e-6, far below what any threshold here resolves.
pub fn goertzel_pair<const K: usize, const L: usize>(
    a: &[f32],
    coefs_a: &[f32; K],
    b: &[f32],
    coefs_b: &[f32; L],
) -> (States<K>, States<L>) {
    let (mut a1, mut a2) = ([0.0f32; K], [0.0f32; K]);
    let (mut b1, mut b2) = ([0.0f32; L], [0.0f32; L]);
    let (ca, cb) = (*coefs_a, *coefs_b);
    let len = a.len().min(b.len());
    let (mut pa, mut pb) = (a[..len].chunks_exact(2), b[..len].chunks_exact(2));
    // Two samples per iteration with the states' roles swapped in between: no copies.
    for (x, y) in (&mut pa).zip(&mut pb) {
        for i in 0..K {
            a2[i] = (x[0] - a2[i]) + ca[i] * a1[i];
        }
        for i in 0..K {
            a1[i] = (x[1] - a1[i]) + ca[i] * a2[i];
        }
        for i in 0..L {
            b2[i] = (y[0] - b2[i]) + cb[i] * b1[i];
        }
        for i in 0..L {
            b1[i] = (y[1] - b1[i]) + cb[i] * b2[i];
        }
    }
    if let (Some(&x), Some(&y)) = (pa.remainder().first(), pb.remainder().first()) {
        for i in 0..K {
            let s0 = (x - a2[i]) + ca[i] * a1[i];
            a2[i] = a1[i];
            a1[i] = s0;
        }
        for i in 0..L {
            let s0 = (y - b2[i]) + cb[i] * b1[i];
            b2[i] = b1[i];
            b1[i] = s0;
        }
    }
    (
        States {
            s1: a1,
            s2: a2,
            coefs: ca,
        },
        States {
            s1: b1,
            s2: b2,
            coefs: cb,
        },
    )
}

/// [`dtft`] at `K` frequencies in one pass over `x`: the `K` phasor recursions are independent,
/// so they pipeline (and vectorise) instead of waiting on one another's multiply latency.
pub fn dtft_multi<const K: usize>(
    x: &[f32],
    omegas: &[f64; K],
    window: Option<&[f32]>,
) -> [(f64, f64); K] {
    let mut rot_c = [0.0f64; K];
    let mut rot_s = [0.0f64; K];
    for k in 0..K {
        rot_c[k] = omegas[k].cos();
        rot_s[k] = -omegas[k].sin();
    }
    let mut pr = [1.0f64; K];
    let mut pi = [0.0f64; K];
    let mut re = [0.0f64; K];
    let mut im = [0.0f64; K];
    for (n, &v) in x.iter().enumerate() {
        let w = window.and_then(|w| w.get(n)).copied().unwrap_or(1.0);
        let v = f64::from(v * w);
        for k in 0..K {
            re[k] += v * pr[k];
            im[k] += v * pi[k];
            let npr = pr[k] * rot_c[k] - pi[k] * rot_s[k];
            pi[k] = pr[k] * rot_s[k] + pi[k] * rot_c[k];
            pr[k] = npr;
        }
    }
    let mut out = [(0.0, 0.0); K];
    for k in 0..K {
        out[k] = (re[k], im[k]);
    }
    out
}

/// Fill `out` with a Hann window (sidelobes fall 18 dB/octave, so a strong tone a few hundred
/// Hz away does not bias a frequency estimate). Computed once, at construction.
pub fn hann(out: &mut [f32]) {
    let step = 2.0 * PI / out.len() as f64;
    for (k, w) in out.iter_mut().enumerate() {
        *w = (0.5 - 0.5 * (step * (k as f64 + 0.5)).cos()) as f32;
    }
}

/// Complex DTFT `Σ w[n] x[n] e^{-jωn}` of `x` at `omega` rad/sample, `n` counted from 0, with
/// an optional window `w` (same length as `x`; `None` is rectangular). Returns `(re, im)`. For
/// a sine of amplitude `A` at `omega`, `|X| ≈ A · Σw / 2`. The phasor is rotated by complex
/// multiplication in `f64` (no trigonometry per sample; drift over a few hundred samples is
/// ~1e-14).
pub fn dtft(x: &[f32], omega: f64, window: Option<&[f32]>) -> (f64, f64) {
    let (step_c, step_s) = (omega.cos(), -omega.sin());
    let (mut pr, mut pi) = (1.0f64, 0.0f64);
    let (mut re, mut im) = (0.0f64, 0.0f64);
    for (k, &v) in x.iter().enumerate() {
        let w = window.and_then(|w| w.get(k)).copied().unwrap_or(1.0);
        let v = f64::from(v * w);
        re += v * pr;
        im += v * pi;
        let npr = pr * step_c - pi * step_s;
        pi = pr * step_s + pi * step_c;
        pr = npr;
    }
    (re, im)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(f: f32, amp: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * f * i as f32 / 8000.0).sin())
            .collect()
    }

    #[test]
    fn on_bin_sine_gives_half_amplitude_times_n() {
        // 102 samples at 8 kHz: 941 Hz is close to bin 12 (941.2 Hz).
        let bank = GoertzelBank::new([941.0, 1209.0], 8000.0);
        let x = sine(941.0, 1000.0, 102);
        let p = bank.powers(&x);
        let expect = (1000.0f32 * 102.0 / 2.0).powi(2);
        assert!((p[0] / expect - 1.0).abs() < 0.05, "{} vs {}", p[0], expect);
        assert!(p[1] < expect * 0.01);
    }

    #[test]
    fn segmented_powers_match_the_dtft_for_any_length() {
        let bank = GoertzelBank::new([697.0, 1000.0, 1633.0], 8000.0);
        for n in [3, 50, 101, 102, 160] {
            let x: Vec<f32> = (0..n)
                .map(|i| (i as f32 * 0.37).sin() * 900.0 + (i as f32 * 1.3).cos() * 300.0)
                .collect();
            let p = bank.powers(&x);
            for (k, f) in [697.0f64, 1000.0, 1633.0].into_iter().enumerate() {
                let (re, im) = dtft(&x, 2.0 * PI * f / 8000.0, None);
                let q = (re * re + im * im) as f32;
                assert!(
                    (p[k] - q).abs() <= 1e-3 * q.max(1.0),
                    "n {n} f {f}: {} vs {q}",
                    p[k]
                );
            }
        }
    }

    #[test]
    fn goertzel_pair_matches_dtft() {
        let x = sine(1209.0, 700.0, 204);
        let mut w = vec![0.0; 204];
        hann(&mut w);
        let xw: Vec<f32> = x.iter().zip(&w).map(|(a, b)| a * b).collect();
        let om = [0.9f64, 1.0, 2.1, 2.0 * PI * 1209.0 / 8000.0];
        let coefs = om.map(|o| (2.0 * o.cos()) as f32);
        let (sw, sx) = goertzel_pair(&xw, &coefs, &x, &coefs);
        for (k, &o) in om.iter().enumerate() {
            let (re, im) = dtft(&x, o, Some(&w));
            let p = re * re + im * im;
            assert!((sw.power(k) - p).abs() <= 1e-5 * p.max(1e3), "{k}");
            let (re, im) = dtft(&x, o, None);
            let end = ((o * 203.0).cos(), (o * 203.0).sin());
            let (gr, gi) = sx.dtft(k, (o.cos(), o.sin()), end);
            let m = (re * re + im * im).sqrt().max(30.0);
            assert!(
                (gr - re).abs() < 1e-4 * m && (gi - im).abs() < 1e-4 * m,
                "{k}"
            );
        }
    }

    #[test]
    fn dtft_multi_matches_dtft() {
        let x = sine(1209.0, 700.0, 204);
        let mut w = vec![0.0; 204];
        hann(&mut w);
        let om = [0.9, 1.0, 2.1];
        let m = dtft_multi(&x, &om, Some(&w));
        for k in 0..3 {
            let (re, im) = dtft(&x, om[k], Some(&w));
            assert!((m[k].0 - re).abs() < 1e-6 && (m[k].1 - im).abs() < 1e-6);
        }
    }

    #[test]
    fn dtft_matches_goertzel_magnitude() {
        let bank = GoertzelBank::new([770.0], 8000.0);
        let x = sine(780.0, 500.0, 102);
        let p = bank.powers(&x)[0];
        let (re, im) = dtft(&x, 2.0 * PI * 770.0 / 8000.0, None);
        let q = (re * re + im * im) as f32;
        assert!((p / q - 1.0).abs() < 1e-3, "{p} vs {q}");
    }
}
