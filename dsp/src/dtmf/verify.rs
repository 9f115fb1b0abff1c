//! The fine stage: exact frequency, level and extent of a candidate tone pair.
//!
//! The block stage's Goertzel bins are ~78 Hz wide (102 samples at 8 kHz), far wider than the
//! Q.24 tolerance (±1.5 % of 697 Hz is ±10 Hz; ±3.5 % is ±24 Hz), so a block hit cannot tell an
//! in-tolerance key from an off-frequency pair. Once two blocks agree, this stage looks at their
//! samples again:
//!
//! 1. **Frequency**: the Hann-windowed DTFT magnitude on a grid of ±6 % around each nominal
//!    component (0.5 % steps), refined by a parabola through the peak and its neighbours. Hann
//!    sidelobes fall fast enough that the other group's tone (≥ 268 Hz away) does not pull the
//!    estimate.
//! 2. **Level and phase** of each component from the rectangular DTFT at that frequency; these
//!    give twist, level and a model `ŝ[n] = Σ A cos(ω n + φ)` of the pair.
//! 3. **Energy ratio** and **second harmonics** over the window (talk-off guards: a vowel whose
//!    harmonics land on a DTMF pair carries most of its energy elsewhere, and has strong
//!    harmonics at twice the pair's frequencies).
//! 4. **Extent**: the samples around the window are projected on the model in short sub-blocks;
//!    the run of sub-blocks where the projection holds gives the onset (for `Started`) and,
//!    if the run already closed, the duration (Q.24: < 23 ms must be rejected).
//!
//! Runs only on candidates. All DTFTs are `f32` Goertzel recursions run side by side (16 lanes
//! per pass: both search grids and the other keys of each group, then the levels, harmonics and
//! rectangular fits at the estimated frequencies), with coefficients and the window tabled in
//! [`Analyser::new`]; the extent scan runs four sub-blocks at a time on recursive oscillators.
//! About 25 k instructions per candidate.

use std::f64::consts::PI;

use crate::goertzel::{goertzel_pair, States};

/// Sample rate the receiver runs at.
const FS: f64 = 8000.0;
/// Half-width of the frequency search, relative: ±6 % covers the 3.5–5 % off-frequency pairs
/// Q.24 says to reject with room for the estimate's peak, and stays short of the neighbouring
/// key's frequency (the closest pair, 697/770 Hz, is 10.5 % apart).
const SEARCH_HALF_WIDTH: f64 = 0.06;
/// Grid step of the frequency search, relative (1 % = 7 Hz at 697 Hz, a small fraction of the
/// Hann main lobe over 204 samples (±78 Hz), so a parabola through the peak and its neighbours
/// refines it to better than 0.1 %).
const SEARCH_STEP: f64 = 0.01;
/// Offset of the bins beside a second harmonic that measure the local spectrum level: just
/// outside the Hann main lobe over 204 samples (2 · 8000/204 ≈ 78 Hz).
const HARMONIC_SIDE_HZ: f64 = 90.0;
/// A low-group second harmonic (or a side bin) must stay this far from the high tone to be
/// measured: side offset plus two Hann main-lobe half-widths keeps the high tone's leakage
/// far below the harmonic limit.
const HARMONIC_CLEARANCE_HZ: f64 = 250.0;
/// Sub-block length for the extent scan: 17 samples ≈ 2.1 ms (6 per 102-sample block), the
/// onset resolution.
pub(crate) const SUB: usize = 17;
/// A sub-block holds the tone if its projection on the model is at least this fraction of the
/// model (−6 dB: between "absent" (0) and "present" (1), robust to 15 dB S/N noise).
pub(crate) const PRESENCE: f64 = 0.5;

/// One fitted component `A cos(ω (n − n0) + φ)`, `n0` the analysis window's first sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Component {
    /// Estimated frequency, rad/sample.
    pub(crate) omega: f64,
    /// Relative deviation from nominal (0.01 = +1 %).
    pub(crate) deviation: f64,
    /// Amplitude in sample units (rectangular window: the model's amplitude).
    pub(crate) amp: f64,
    /// Amplitude from the Hann-windowed DTFT: the strong component of a twisted pair leaks far
    /// less into the weak one's estimate, so level and twist are judged on this.
    pub(crate) hann_amp: f64,
    /// Phase at the window's first sample.
    pub(crate) phase: f64,
}

/// What the fine stage measured over the analysis window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Analysis {
    /// Low-group and high-group components.
    pub(crate) comp: [Component; 2],
    /// Fraction of the window's energy the two fitted tones account for.
    pub(crate) energy_ratio: f64,
    /// Power at twice the two frequencies relative to the fundamentals' power.
    pub(crate) harmonic_ratio: f64,
    /// Worst case over the two groups of: strongest other key frequency of the group relative
    /// to the component (power ratio, Hann-windowed). A tone pair leaves the other keys of its
    /// groups empty; a vowel whose harmonics hit one DTMF pair puts its other harmonics on
    /// neighbouring keys.
    pub(crate) group_ratio: f64,
}

/// Length of the analysis window (the candidate's two hit blocks).
pub(crate) const WINDOW: usize = 204;
/// Lanes of the first pass: both frequency grids, then the three other keys of each group.
const PASS1: usize = 2 * STEPS + 6;
const _: () = assert!(PASS1 == 32);
/// Grid index of the nominal frequency (relative offset 0).
const NOMINAL_STEP: usize = STEPS / 2;

/// The fine stage with its tables (window, Goertzel coefficients), computed once so that a
/// candidate costs no trigonometry beyond a few calls per component.
#[derive(Debug, Clone)]
pub(crate) struct Analyser {
    /// Hann window over [`WINDOW`] samples and its sum.
    hann: [f32; WINDOW],
    wsum: f64,
    /// Nominal key frequencies, rad/sample, per group (low, high).
    nominal: [[f64; 4]; 2],
    /// `2 cos ω` of each key's search grid, per group and key.
    grid: [[[f32; STEPS]; 4]; 2],
    /// `2 cos ω` of each key, per group.
    keys: [[f32; 4]; 2],
    /// `(cos, sin)` of the harmonic side-bin offset.
    side: (f64, f64),
}

impl Analyser {
    /// Tables for the key frequencies `groups` (low, high), Hz.
    pub(crate) fn new(groups: [&[f32; 4]; 2]) -> Self {
        let mut hann = [0.0f32; WINDOW];
        crate::goertzel::hann(&mut hann);
        let mut a = Analyser {
            wsum: hann.iter().map(|&w| f64::from(w)).sum(),
            hann,
            nominal: [[0.0; 4]; 2],
            grid: [[[0.0; STEPS]; 4]; 2],
            keys: [[0.0; 4]; 2],
            side: {
                let w = 2.0 * PI * HARMONIC_SIDE_HZ / FS;
                (w.cos(), w.sin())
            },
        };
        for (g, group) in groups.iter().enumerate() {
            for (k, &f) in group.iter().enumerate() {
                let f = f64::from(f);
                a.nominal[g][k] = 2.0 * PI * f / FS;
                a.keys[g][k] = (2.0 * (2.0 * PI * f / FS).cos()) as f32;
                for (i, c) in a.grid[g][k].iter_mut().enumerate() {
                    let rel = -SEARCH_HALF_WIDTH + i as f64 * SEARCH_STEP;
                    *c = (2.0 * (2.0 * PI * f * (1.0 + rel) / FS).cos()) as f32;
                }
            }
        }
        a
    }

    /// Analyse `window` ([`WINDOW`] samples: the candidate's hit blocks) for the key at
    /// (`row`, `col`) of the keypad.
    pub(crate) fn analyse(&self, window: &[f32], row: usize, col: usize) -> Analysis {
        let n = window.len() as f64;
        let key = [row & 3, col & 3];
        // The windowed signal, and the energy in f64 lanes.
        let mut xw = [0.0f32; WINDOW];
        let mut acc = [0.0f64; 4];
        for ((d, &v), &w) in xw.iter_mut().zip(window).zip(&self.hann) {
            *d = v * w;
        }
        let mut quads = window.chunks_exact(4);
        for q in &mut quads {
            for i in 0..4 {
                acc[i] += f64::from(q[i]) * f64::from(q[i]);
            }
        }
        for (i, &v) in quads.remainder().iter().enumerate() {
            acc[i] += f64::from(v) * f64::from(v);
        }
        let energy: f64 = acc.iter().sum();
        // 1. Frequency: both components' grids, and the other keys of both groups, in one pass.
        let mut c1 = [0.0f32; PASS1];
        for g in 0..2 {
            c1[g * STEPS..(g + 1) * STEPS].copy_from_slice(&self.grid[g][key[g]]);
            for (j, k) in (2 * STEPS + 3 * g..).zip((0..4).filter(|&k| k != key[g])) {
                c1[j] = self.keys[g][k];
            }
        }
        // Two passes of 16 lanes: the states stay in registers.
        let (p1a, _) = goertzel_pair(&xw, &half(&c1, 0), &xw, &[0.0f32; 0]);
        let (p1b, _) = goertzel_pair(&xw, &half(&c1, 1), &xw, &[0.0f32; 0]);
        let p1 = Pass1(p1a, p1b);
        let mut mag = [0.0f64; 2 * STEPS];
        for (k, m) in mag.iter_mut().enumerate() {
            *m = p1.power(k).max(0.0).sqrt();
        }
        let deviation = [peak_deviation(&mag[..STEPS]), peak_deviation(&mag[STEPS..])];
        let nominal = [self.nominal[0][key[0]], self.nominal[1][key[1]]];
        let omega = [0, 1].map(|i| nominal[i] * (1.0 + deviation[i]));
        // 2. At the estimated frequencies: Hann-windowed level, second harmonic and a bin
        //    either side of it; rectangular amplitude and phase (the model).
        let cs = omega.map(|w| (w.cos(), w.sin()));
        let mut c2 = [0.0f32; 8];
        for i in 0..2 {
            let (c, s) = cs[i];
            let (c2w, s2w) = (2.0 * c * c - 1.0, 2.0 * s * c);
            c2[i] = (2.0 * c) as f32;
            c2[2 + 3 * i] = (2.0 * c2w) as f32;
            // cos(2ω ∓ side)
            c2[3 + 3 * i] = (2.0 * (c2w * self.side.0 + s2w * self.side.1)) as f32;
            c2[4 + 3 * i] = (2.0 * (c2w * self.side.0 - s2w * self.side.1)) as f32;
        }
        let (p2, rect) = goertzel_pair(&xw, &c2, window, &[c2[0], c2[1]]);
        let mut comp = [Component::default(); 2];
        for i in 0..2 {
            let end = omega[i] * (n - 1.0);
            let (re, im) = rect.dtft(i, cs[i], (end.cos(), end.sin()));
            comp[i] = Component {
                omega: omega[i],
                deviation: deviation[i],
                amp: 2.0 * (re * re + im * im).sqrt() / n,
                hann_amp: 2.0 * p2.power(i).max(0.0).sqrt() / self.wsum.max(1e-9),
                phase: im.atan2(re),
            };
        }
        let tone_energy: f64 = comp.iter().map(|c| c.amp * c.amp / 2.0 * n).sum();
        // 3. Talk-off guards. Second harmonics (a Hann-windowed sine of amplitude A reads
        //    A·N/4), counted only above the level of the spectrum beside them: a harmonic is a
        //    peak at exactly 2f, while noise or speech babble fills 2f and its neighbourhood
        //    alike (without this, a weak tone in white noise reads as "harmonic-rich").
        // A low-group harmonic lands within 71 Hz of a high-group key (2·697 = 1394 next to
        // 1336, 2·770 next to 1477, 2·852 next to 1633), where the pair's own high tone would
        // read as a harmonic, so only clear ones are measured; the high group's (2418–3266 Hz)
        // always are.
        let excess =
            |i: usize| (p2.power(2 + 3 * i) - (p2.power(3 + 3 * i) + p2.power(4 + 3 * i))).max(0.0);
        let mut harm = excess(1);
        let mut fund = (comp[1].amp * n / 4.0).powi(2);
        if (2.0 * omega[0] - omega[1]).abs() >= 2.0 * PI * HARMONIC_CLEARANCE_HZ / FS {
            harm += excess(0);
            fund += (comp[0].amp * n / 4.0).powi(2);
        }
        // Other keys of each group (those within the search range of the component are its
        // own; the component's own key is its grid's nominal point).
        let mut group_ratio = 0.0f64;
        for g in 0..2 {
            let own = p2.power(g).max(1e-9);
            let mut j = 2 * STEPS + 3 * g;
            for k in 0..4 {
                let p = if k == key[g] {
                    p1.power(g * STEPS + NOMINAL_STEP)
                } else {
                    j += 1;
                    p1.power(j - 1)
                };
                if (self.nominal[g][k] - omega[g]).abs() < SEARCH_HALF_WIDTH * nominal[g] {
                    continue;
                }
                group_ratio = group_ratio.max(p / own);
            }
        }
        Analysis {
            comp,
            group_ratio,
            energy_ratio: if energy > 0.0 {
                tone_energy / energy
            } else {
                0.0
            },
            harmonic_ratio: if fund > 0.0 { harm / fund } else { 1.0 },
        }
    }
}

/// Lanes `16 h .. 16 h + 16` of the first pass's coefficients.
fn half(c: &[f32; PASS1], h: usize) -> [f32; PASS1 / 2] {
    std::array::from_fn(|i| c[h * (PASS1 / 2) + i])
}

/// The first pass's two halves.
struct Pass1(States<{ PASS1 / 2 }>, States<{ PASS1 / 2 }>);

impl Pass1 {
    fn power(&self, k: usize) -> f64 {
        if k < PASS1 / 2 {
            self.0.power(k)
        } else {
            self.1.power(k - PASS1 / 2)
        }
    }
}

/// Grid points of the frequency search.
const STEPS: usize = (2.0 * SEARCH_HALF_WIDTH / SEARCH_STEP + 0.5) as usize + 1;

/// Relative deviation of the peak of `mag` (the search grid), refined by a parabola through
/// the peak and its neighbours; clamped to the search range.
fn peak_deviation(mag: &[f64]) -> f64 {
    let mut best = 0;
    for i in 1..mag.len() {
        if mag[i] > mag[best] {
            best = i;
        }
    }
    let mut rel = -SEARCH_HALF_WIDTH + best as f64 * SEARCH_STEP;
    if best > 0 && best + 1 < mag.len() {
        let (a, b, c) = (mag[best - 1], mag[best], mag[best + 1]);
        let den = a - 2.0 * b + c;
        if den < 0.0 {
            rel += (0.5 * (a - c) / den).clamp(-0.5, 0.5) * SEARCH_STEP;
        }
    }
    rel
}

/// One sub-block's projection on the fitted pair.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Sub {
    /// Projection as a fraction of the model (1 = the model at full strength, 0 = absent).
    pub(crate) rho: f32,
    /// Signal energy in the sub-block.
    pub(crate) energy: f32,
    /// Model energy in the sub-block.
    pub(crate) model: f32,
}

/// Sub-blocks projected side by side in [`presence`].
const LANES: usize = 4;

/// Project each `SUB`-sample sub-block of `buf` on the fitted pair. `window_start` is the index
/// in `buf` of the analysis window's first sample (where the components' phases are referenced).
///
/// The model is generated per sub-block by a two-term oscillator (`y[n+1] = 2 cos ω · y[n] −
/// y[n−1]`) started from the exact phase, and [`LANES`] sub-blocks run side by side, so the
/// per-sample work is a few independent multiply-adds and no trigonometry.
pub(crate) fn presence(buf: &[f32], window_start: usize, a: &Analysis, out: &mut [Sub]) {
    // Per component: phasor A e^{jθ} at the current sub-block's first sample, its step over
    // one sub-block, and e^{−jω} (the sample before).
    let mut ph = [(0.0f64, 0.0f64); 2];
    let mut step = [(0.0f64, 0.0f64); 2];
    let mut back = [(0.0f64, 0.0f64); 2];
    let mut coef = [0.0f32; 2];
    for (i, c) in a.comp.iter().enumerate() {
        let t0 = c.phase - c.omega * window_start as f64;
        ph[i] = (c.amp * t0.cos(), c.amp * t0.sin());
        let w = c.omega * SUB as f64;
        step[i] = (w.cos(), w.sin());
        back[i] = (c.omega.cos(), -c.omega.sin());
        coef[i] = (2.0 * c.omega.cos()) as f32;
    }
    let mul = |p: (f64, f64), r: (f64, f64)| (p.0 * r.0 - p.1 * r.1, p.0 * r.1 + p.1 * r.0);
    for (j0, chunk) in out.chunks_mut(LANES).enumerate() {
        let first = j0 * LANES;
        // Oscillator states per lane: y[n] and y[n − 1] of each component. A lane whose
        // sub-block is not wholly inside `buf` keeps a zero model here and is redone below.
        let mut y = [[0.0f32; LANES]; 4];
        let mut start = [[0.0f32; 4]; LANES];
        for (l, st) in start.iter_mut().enumerate().take(chunk.len()) {
            *st = [
                ph[0].0 as f32,
                mul(ph[0], back[0]).0 as f32,
                ph[1].0 as f32,
                mul(ph[1], back[1]).0 as f32,
            ];
            if (first + l + 1) * SUB <= buf.len() {
                for (k, v) in st.iter().enumerate() {
                    y[k][l] = *v;
                }
            }
            for i in 0..2 {
                ph[i] = mul(ph[i], step[i]);
            }
        }
        let [mut a0, mut a1, mut b0, mut b1] = y;
        // The lanes' samples, transposed so that the lanes are contiguous.
        let mut v = [[0.0f32; LANES]; SUB];
        for l in 0..chunk.len() {
            let lo = ((first + l) * SUB).min(buf.len());
            let hi = (lo + SUB).min(buf.len());
            for (row, &x) in v.iter_mut().zip(&buf[lo..hi]) {
                row[l] = x;
            }
        }
        let (ca, cb) = (coef[0], coef[1]);
        let mut xs = [0.0f32; LANES];
        let mut ss = [0.0f32; LANES];
        let mut xx = [0.0f32; LANES];
        for v in &v {
            let mut s = [0.0f32; LANES];
            for l in 0..LANES {
                s[l] = a0[l] + b0[l];
            }
            for l in 0..LANES {
                xs[l] += v[l] * s[l];
            }
            for l in 0..LANES {
                ss[l] += s[l] * s[l];
            }
            for l in 0..LANES {
                xx[l] += v[l] * v[l];
            }
            for l in 0..LANES {
                let na = ca * a0[l] - a1[l];
                a1[l] = a0[l];
                a0[l] = na;
            }
            for l in 0..LANES {
                let nb = cb * b0[l] - b1[l];
                b1[l] = b0[l];
                b0[l] = nb;
            }
        }
        for (l, o) in chunk.iter_mut().enumerate() {
            let lo = ((first + l) * SUB).min(buf.len());
            let hi = (lo + SUB).min(buf.len());
            if hi - lo < SUB {
                // Partly (or not at all) inside `buf`: one lane, the samples there are.
                let [mut a0, mut a1, mut b0, mut b1] = start[l];
                (xs[l], ss[l], xx[l]) = (0.0, 0.0, 0.0);
                for &x in &buf[lo..hi] {
                    let s = a0 + b0;
                    xs[l] += x * s;
                    ss[l] += s * s;
                    xx[l] += x * x;
                    (a0, a1) = (ca * a0 - a1, a0);
                    (b0, b1) = (cb * b0 - b1, b0);
                }
            }
            *o = Sub {
                rho: if ss[l] > 0.0 { xs[l] / ss[l] } else { 0.0 },
                energy: xx[l],
                model: ss[l],
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::{HIGH_GROUP_HZ as HIGH, LOW_GROUP_HZ as LOW};

    fn analyse(x: &[f32], low: f32, high: f32) -> Analysis {
        let row = LOW.iter().position(|&f| f == low).unwrap_or(0);
        let col = HIGH.iter().position(|&f| f == high).unwrap_or(0);
        Analyser::new([&LOW, &HIGH]).analyse(x, row, col)
    }

    fn pair(fl: f64, fh: f64, al: f64, ah: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f64 / FS;
                (al * (2.0 * PI * fl * t).sin() + ah * (2.0 * PI * fh * t + 1.0).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn frequency_estimate_is_within_a_tenth_of_a_percent() {
        for dev in [-0.05, -0.035, -0.015, 0.0, 0.015, 0.035, 0.05] {
            let x = pair(
                697.0 * (1.0 + dev),
                1633.0 * (1.0 - dev),
                3000.0,
                1200.0,
                204,
            );
            let a = analyse(&x, 697.0, 1633.0);
            assert!(
                (a.comp[0].deviation - dev).abs() < 0.001,
                "{dev}: {:?}",
                a.comp[0]
            );
            assert!(
                (a.comp[1].deviation + dev).abs() < 0.001,
                "{dev}: {:?}",
                a.comp[1]
            );
            assert!(a.energy_ratio > 0.9);
        }
    }

    #[test]
    fn presence_finds_the_tone_extent() {
        let mut buf = vec![0.0f32; 408];
        let tone = pair(852.0, 1477.0, 2000.0, 2000.0, 408);
        buf[150..].copy_from_slice(&tone[150..]);
        let a = analyse(&buf[204..], 852.0, 1477.0);
        let mut p = [Sub::default(); 408 / SUB];
        presence(&buf, 204, &a, &mut p);
        let first = p
            .iter()
            .position(|v| f64::from(v.rho) >= PRESENCE)
            .unwrap_or(99);
        assert!((first * SUB).abs_diff(150) <= SUB, "{p:?}");
    }
}
