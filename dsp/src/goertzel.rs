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
//! [`dtft`] is the slow, exact counterpart used only when a candidate needs a verdict: the
//! complex DTFT of a slice at an arbitrary frequency (optionally Hann-windowed), accumulated in
//! `f64` with a rotating phasor.

use std::f64::consts::PI;

/// `N` Goertzel bins over fixed blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoertzelBank<const N: usize> {
    /// `2 cos(2π f / fs)` per bin.
    coefs: [f32; N],
}

impl<const N: usize> GoertzelBank<N> {
    /// Bins at `freqs_hz` for a stream sampled at `rate_hz`.
    pub fn new(freqs_hz: [f32; N], rate_hz: f32) -> Self {
        let mut coefs = [0.0f32; N];
        for (c, f) in coefs.iter_mut().zip(freqs_hz) {
            *c = (2.0 * (2.0 * PI * f64::from(f) / f64::from(rate_hz)).cos()) as f32;
        }
        GoertzelBank { coefs }
    }

    /// Squared DFT magnitude `|X(f)|²` of each bin over `block`.
    ///
    /// A sine of amplitude `A` exactly on a bin of a block of `n` samples gives `(A n / 2)²`.
    pub fn powers(&self, block: &[f32]) -> [f32; N] {
        let mut s1 = [0.0f32; N];
        let mut s2 = [0.0f32; N];
        let c = self.coefs;
        for &x in block {
            // One fixed-length loop over the bins: auto-vectorised, no data-dependent branch.
            for i in 0..N {
                let s0 = (x - s2[i]) + c[i] * s1[i];
                s2[i] = s1[i];
                s1[i] = s0;
            }
        }
        let mut p = [0.0f32; N];
        for i in 0..N {
            p[i] = (s1[i] * s1[i] + s2[i] * s2[i] - c[i] * s1[i] * s2[i]).max(0.0);
        }
        p
    }
}

/// Window applied by [`dtft`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// No window: best amplitude estimate, wide sidelobes.
    Rectangular,
    /// Hann: sidelobes fall 18 dB/octave, so a strong tone a few hundred Hz away does not
    /// bias a frequency estimate.
    Hann,
}

/// Complex DTFT `Σ w[n] x[n] e^{-jωn}` of `x` at `omega` rad/sample, `n` counted from 0.
/// Returns `(re, im)`. For a sine of amplitude `A` at `omega`, `|X| ≈ A · Σw / 2`.
pub fn dtft(x: &[f32], omega: f64, window: Window) -> (f64, f64) {
    let n = x.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let (step_c, step_s) = (omega.cos(), -omega.sin());
    let (mut pr, mut pi) = (1.0f64, 0.0f64);
    let (mut re, mut im) = (0.0f64, 0.0f64);
    let wstep = 2.0 * PI / n as f64;
    for (k, &v) in x.iter().enumerate() {
        let w = match window {
            Window::Rectangular => 1.0,
            Window::Hann => 0.5 - 0.5 * (wstep * (k as f64 + 0.5)).cos(),
        };
        let v = f64::from(v) * w;
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
    fn dtft_matches_goertzel_magnitude() {
        let bank = GoertzelBank::new([770.0], 8000.0);
        let x = sine(780.0, 500.0, 102);
        let p = bank.powers(&x)[0];
        let (re, im) = dtft(&x, 2.0 * PI * 770.0 / 8000.0, Window::Rectangular);
        let q = (re * re + im * im) as f32;
        assert!((p / q - 1.0).abs() < 1e-3, "{p} vs {q}");
    }
}
