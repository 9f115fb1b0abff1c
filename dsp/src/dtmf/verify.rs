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
//! Costs a few tens of µs per candidate, and runs only on candidates.

use std::f64::consts::PI;

use crate::goertzel::dtft_multi;

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

/// Analyse `window` (the candidate's hit blocks) for the pair nominally at `low_hz`/`high_hz`.
/// `hann` is a Hann window as long as `window`.
pub(crate) fn analyse(
    window: &[f32],
    hann: &[f32],
    low_hz: f32,
    high_hz: f32,
    groups: [&[f32; 4]; 2],
) -> Analysis {
    let n = window.len() as f64;
    let energy: f64 = window.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let nominal = [f64::from(low_hz), f64::from(high_hz)];
    // 1. Frequency: both components' grids in one pass.
    let mut grid = [0.0f64; 2 * STEPS];
    for (i, g) in grid.iter_mut().enumerate() {
        let rel = -SEARCH_HALF_WIDTH + (i % STEPS) as f64 * SEARCH_STEP;
        *g = 2.0 * PI * nominal[i / STEPS] * (1.0 + rel) / FS;
    }
    let spectrum = dtft_multi(window, &grid, Some(hann));
    let mut mag = [0.0f64; 2 * STEPS];
    for (m, (re, im)) in mag.iter_mut().zip(spectrum) {
        *m = (re * re + im * im).sqrt();
    }
    let deviation = [peak_deviation(&mag[..STEPS]), peak_deviation(&mag[STEPS..])];
    let omega = [0, 1].map(|i| 2.0 * PI * nominal[i] * (1.0 + deviation[i]) / FS);
    // 2. Amplitude and phase at the estimated frequencies.
    let rect = dtft_multi(window, &omega, None);
    let mut comp = [Component::default(); 2];
    for i in 0..2 {
        let (re, im) = rect[i];
        comp[i] = Component {
            omega: omega[i],
            deviation: deviation[i],
            amp: 2.0 * (re * re + im * im).sqrt() / n,
            hann_amp: 0.0,
            phase: im.atan2(re),
        };
    }
    let tone_energy: f64 = comp.iter().map(|c| c.amp * c.amp / 2.0 * n).sum();
    // 3. Talk-off guards, Hann-windowed, in one pass: each component, its second harmonic with
    //    a bin either side of it, and the four keys of each group.
    let side = 2.0 * PI * HARMONIC_SIDE_HZ / FS;
    let mut probe = [0.0f64; 16];
    probe[..2].copy_from_slice(&omega);
    for (i, f) in groups[0].iter().chain(groups[1].iter()).enumerate() {
        probe[2 + i] = 2.0 * PI * f64::from(*f) / FS;
    }
    for i in 0..2 {
        probe[10 + 3 * i] = 2.0 * omega[i];
        probe[11 + 3 * i] = 2.0 * omega[i] - side;
        probe[12 + 3 * i] = 2.0 * omega[i] + side;
    }
    let pw = dtft_multi(window, &probe, Some(hann)).map(|(re, im)| re * re + im * im);
    let wsum: f64 = hann.iter().map(|&w| f64::from(w)).sum();
    for (c, p) in comp.iter_mut().zip(pw) {
        c.hann_amp = 2.0 * p.sqrt() / wsum.max(1e-9);
    }
    // Second harmonics (a Hann-windowed sine of amplitude A reads A·N/4), counted only above
    // the level of the spectrum beside them: a harmonic is a peak at exactly 2f, while noise
    // or speech babble fills 2f and its neighbourhood alike (without this, a weak tone in
    // white noise reads as "harmonic-rich").
    // A low-group harmonic lands within 71 Hz of a high-group key (2·697 = 1394 next to 1336,
    // 2·770 next to 1477, 2·852 next to 1633), where the pair's own high tone would read as a
    // harmonic, so only clear ones are measured; the high group's (2418–3266 Hz) always are.
    let excess = |i: usize| (pw[10 + 3 * i] - (pw[11 + 3 * i] + pw[12 + 3 * i])).max(0.0);
    let mut harm = excess(1);
    let mut fund = (comp[1].amp * n / 4.0).powi(2);
    if (2.0 * omega[0] - omega[1]).abs() >= 2.0 * PI * HARMONIC_CLEARANCE_HZ / FS {
        harm += excess(0);
        fund += (comp[0].amp * n / 4.0).powi(2);
    }
    // Other keys of each group (those within the search range of the component are its own).
    let mut group_ratio = 0.0f64;
    for g in 0..2 {
        for k in 0..4 {
            let w = probe[2 + 4 * g + k];
            if (w - omega[g]).abs() < 2.0 * PI * SEARCH_HALF_WIDTH * nominal[g] / FS {
                continue;
            }
            group_ratio = group_ratio.max(pw[2 + 4 * g + k] / pw[g].max(1e-9));
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

/// Project each `SUB`-sample sub-block of `buf` on the fitted pair. `window_start` is the index
/// in `buf` of the analysis window's first sample (where the components' phases are referenced).
pub(crate) fn presence(buf: &[f32], window_start: usize, a: &Analysis, out: &mut [Sub]) {
    // Each component as a rotating phasor (no trigonometry per sample), starting at buf[0].
    let mut ph = [(0.0f64, 0.0f64); 2];
    let mut rot = [(0.0f64, 0.0f64); 2];
    for ((p, r), c) in ph.iter_mut().zip(rot.iter_mut()).zip(&a.comp) {
        let t0 = c.phase - c.omega * window_start as f64;
        *p = (c.amp * t0.cos(), c.amp * t0.sin());
        *r = (c.omega.cos(), c.omega.sin());
    }
    for (j, o) in out.iter_mut().enumerate() {
        let lo = (j * SUB).min(buf.len());
        let hi = (lo + SUB).min(buf.len());
        let (mut xs, mut ss, mut xx) = (0.0f64, 0.0f64, 0.0f64);
        for &v in &buf[lo..hi] {
            let s = ph[0].0 + ph[1].0;
            let v = f64::from(v);
            xs += v * s;
            ss += s * s;
            xx += v * v;
            for (p, r) in ph.iter_mut().zip(&rot) {
                *p = (p.0 * r.0 - p.1 * r.1, p.0 * r.1 + p.1 * r.0);
            }
        }
        *o = Sub {
            rho: if ss > 0.0 { (xs / ss) as f32 } else { 0.0 },
            energy: xx as f32,
            model: ss as f32,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::{HIGH_GROUP_HZ as HIGH, LOW_GROUP_HZ as LOW};

    fn hann204() -> Vec<f32> {
        let mut w = vec![0.0; 204];
        crate::goertzel::hann(&mut w);
        w
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
            let a = analyse(&x, &hann204(), 697.0, 1633.0, [&LOW, &HIGH]);
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
        let a = analyse(&buf[204..], &hann204(), 852.0, 1477.0, [&LOW, &HIGH]);
        let mut p = [Sub::default(); 408 / SUB];
        presence(&buf, 204, &a, &mut p);
        let first = p
            .iter()
            .position(|v| f64::from(v.rho) >= PRESENCE)
            .unwrap_or(99);
        assert!((first * SUB).abs_diff(150) <= SUB, "{p:?}");
    }
}
