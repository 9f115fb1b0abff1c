//! Cuts an 8 kHz stream into speech segments for the recognizer.
//!
//! - Silence (per the [`Vad`]) is skipped: no segment, no recognizer call.
//! - A segment starts [`SegmenterConfig::preroll_ms`] before the first speech frame (the VAD
//!   fires a little after a word's onset) and ends when the VAD's hangover runs out.
//! - A segment is **force-cut** when it reaches `max_len` samples; the owner sets `max_len` so
//!   that every segment's verdict can be in before its first sample leaves the delay line
//!   (look-ahead − recognizer budget − padding). Speech that continues starts a new segment at
//!   once, overlapping the previous one by [`SegmenterConfig::overlap_ms`] so a word cut in two
//!   is heard whole by one of them.
//!
//! The only allocation is one PCM buffer per segment (reserved at `max_len`), never per frame.

use std::collections::VecDeque;

use crate::vad::{Vad, VadConfig};
use crate::{DspError, MediaTime};

const SAMPLES_PER_MS: u64 = 8;

/// Segmenter settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmenterConfig {
    /// Audio kept before the first speech frame.
    pub preroll_ms: u32,
    /// Overlap between a force-cut segment and its continuation.
    pub overlap_ms: u32,
    /// Segments shorter than this (speech included) are still sent; this only bounds the
    /// forced-cut length from below.
    pub min_segment_ms: u32,
    /// The VAD.
    pub vad: VadConfig,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            preroll_ms: 200,
            overlap_ms: 300,
            min_segment_ms: 500,
            vad: VadConfig::default(),
        }
    }
}

/// One finished speech segment. `Debug` prints times only, never the audio.
pub struct Segment {
    /// First sample (media time of the stream).
    pub start: MediaTime,
    /// One past the last sample.
    pub end: MediaTime,
    /// The audio, `end - start` samples at 8 kHz.
    pub pcm: Vec<i16>,
    /// True when the segment was cut because it reached the maximum length.
    pub forced: bool,
    /// True when this segment continues a force-cut one (not a new turn).
    pub continuation: bool,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("forced", &self.forced)
            .finish_non_exhaustive()
    }
}

struct Open {
    start: u64,
    pcm: Vec<i16>,
    continuation: bool,
}

/// The segmenter; see the module docs.
pub struct Segmenter {
    vad: Vad,
    preroll: usize,
    overlap: usize,
    max_len: usize,
    frame: Vec<i16>,
    fill: usize,
    /// Ring of the most recent samples (for pre-roll and overlap).
    history: Vec<i16>,
    hist_pos: usize,
    /// Samples pushed so far.
    time: u64,
    /// End of the last finished segment (no pre-roll before it).
    last_end: u64,
    open: Option<Open>,
    done: VecDeque<Segment>,
    silence_samples: u64,
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter")
            .field("time", &self.time)
            .field("open_since", &self.open.as_ref().map(|o| o.start))
            .field("finished", &self.done.len())
            .finish_non_exhaustive()
    }
}

impl Segmenter {
    /// A segmenter whose segments are at most `max_len` samples long.
    pub fn new(config: SegmenterConfig, max_len: u64) -> Result<Segmenter, DspError> {
        let vad = Vad::new(config.vad)?;
        let preroll = (u64::from(config.preroll_ms) * SAMPLES_PER_MS) as usize;
        let overlap = (u64::from(config.overlap_ms) * SAMPLES_PER_MS) as usize;
        let min = u64::from(config.min_segment_ms) * SAMPLES_PER_MS;
        if max_len < min || max_len <= (overlap + preroll) as u64 {
            return Err(DspError::BadParameter {
                what: "speech segment length",
                detail: "look-ahead too short for the recognizer budget, padding and pre-roll",
            });
        }
        let hist = preroll.max(overlap).max(1);
        Ok(Segmenter {
            frame: vec![0; vad.frame_len()],
            vad,
            preroll,
            overlap,
            max_len: max_len as usize,
            fill: 0,
            history: vec![0; hist],
            hist_pos: 0,
            time: 0,
            last_end: 0,
            open: None,
            done: VecDeque::new(),
            silence_samples: 0,
        })
    }

    /// Samples pushed so far (media time of the next sample).
    pub fn time(&self) -> MediaTime {
        MediaTime(self.time)
    }

    /// Start of the segment being collected, if any (its verdict is open).
    pub fn open_since(&self) -> Option<MediaTime> {
        self.open.as_ref().map(|o| MediaTime(o.start))
    }

    /// Samples skipped as silence so far.
    pub fn silence_samples(&self) -> u64 {
        self.silence_samples
    }

    /// Feed samples (any count). Finished segments queue for [`Segmenter::pop`].
    pub fn push(&mut self, mut samples: &[i16]) {
        while !samples.is_empty() {
            let take = (self.frame.len() - self.fill).min(samples.len());
            self.frame[self.fill..self.fill + take].copy_from_slice(&samples[..take]);
            self.fill += take;
            samples = &samples[take..];
            if self.fill == self.frame.len() {
                self.fill = 0;
                self.on_frame();
            }
        }
    }

    /// Close the open segment (end of stream).
    pub fn flush(&mut self) {
        if self.fill > 0 {
            let n = self.fill;
            self.fill = 0;
            if let Some(o) = self.open.as_mut() {
                o.pcm.extend_from_slice(&self.frame[..n]);
            }
            self.time += n as u64;
        }
        self.close(false);
    }

    /// Next finished segment, oldest first.
    pub fn pop(&mut self) -> Option<Segment> {
        self.done.pop_front()
    }

    fn on_frame(&mut self) {
        let n = self.frame.len();
        let t0 = self.time;
        let speech = self.vad.process_frame(&self.frame);
        if speech && self.open.is_none() {
            let back = (self.preroll as u64).min(t0 - self.last_end.min(t0));
            self.start_segment(t0 - back, false);
        }
        if let Some(o) = self.open.as_mut() {
            if speech {
                o.pcm.extend_from_slice(&self.frame);
            }
        } else {
            self.silence_samples += n as u64;
        }
        // History after use (it holds audio *before* this frame while starting a segment).
        for &x in &self.frame {
            self.history[self.hist_pos] = x;
            self.hist_pos = (self.hist_pos + 1) % self.history.len();
        }
        self.time += n as u64;
        if !speech {
            self.close(false);
        } else if self
            .open
            .as_ref()
            .is_some_and(|o| o.pcm.len() + n > self.max_len)
        {
            self.close(true);
            let back = self.overlap as u64;
            self.start_segment(self.time - back.min(self.time), true);
        }
    }

    /// Open a segment at `start` (≤ now), filling it from history.
    fn start_segment(&mut self, start: u64, continuation: bool) {
        let mut pcm = Vec::with_capacity(self.max_len + self.frame.len());
        let back = (self.time - start) as usize;
        let len = self.history.len();
        for k in 0..back.min(len) {
            pcm.push(self.history[(self.hist_pos + len - back.min(len) + k) % len]);
        }
        self.open = Some(Open {
            start: self.time - back.min(len) as u64,
            pcm,
            continuation,
        });
    }

    fn close(&mut self, forced: bool) {
        if let Some(o) = self.open.take() {
            let end = o.start + o.pcm.len() as u64;
            self.last_end = end;
            if o.pcm.is_empty() {
                return;
            }
            self.done.push_back(Segment {
                start: MediaTime(o.start),
                end: MediaTime(end),
                pcm: o.pcm,
                forced,
                continuation: o.continuation,
            });
        }
    }
}

/// Pauses inside a segment: runs of at least `min_ms` of 10 ms frames more than `below_db`
/// under the segment's speech level (its 90th-percentile frame), as absolute media times.
///
/// The policy uses them to find where an answer begins after its lead-in ("my date of birth
/// is … | oh two …"): word times from the recognizer are off by a few hundred ms, pauses
/// are not. Allocates per segment (never per frame); at most `MAX_PAUSES` are kept.
pub fn pauses(
    pcm: &[i16],
    start: MediaTime,
    min_ms: u32,
    below_db: f32,
) -> Vec<(MediaTime, MediaTime)> {
    const FRAME: usize = 80;
    const MAX_PAUSES: usize = 64;
    let db: Vec<f32> = pcm
        .chunks_exact(FRAME)
        .map(|f| {
            let e = f.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / FRAME as f64;
            (10.0 * (e + 1.0).log10()) as f32
        })
        .collect();
    if db.is_empty() {
        return Vec::new();
    }
    let mut sorted = db.clone();
    sorted.sort_unstable_by(f32::total_cmp);
    let reference = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
    let quiet = reference - below_db;
    let min_frames = (min_ms as usize).div_ceil(10).max(1);
    let mut out = Vec::new();
    let mut run_start = None;
    for (i, &d) in db.iter().chain(std::iter::once(&f32::INFINITY)).enumerate() {
        match (d < quiet, run_start) {
            (true, None) => run_start = Some(i),
            (false, Some(r)) => {
                if i - r >= min_frames && out.len() < MAX_PAUSES {
                    let at = |k: usize| MediaTime(start.0 + (k * FRAME) as u64);
                    out.push((at(r), at(i)));
                }
                run_start = None;
            }
            _ => {}
        }
    }
    out
}

/// Share of a segment's loud 20 ms frames that are a single sinusoid: frames whose energy an
/// order-2 linear predictor removes by at least `gain_db`. A whistle, a held test tone or a
/// keypad tone is one sinusoid per frame, which an order-2 predictor (`x[n] = 2cos(w)·x[n-1]
/// − x[n-2]`) cancels almost exactly; speech has several formants and a glottal source, so it
/// is never predicted that well (measured on the dev corpus's telephone-band µ-law speech:
/// 12 dB or more in at most 12 % of a span's frames, whistles in 98–100 %). Frames quieter
/// than `min_level` (linear RMS) are not counted. No allocation.
pub fn tonal_fraction(pcm: &[i16], gain_db: f32, min_level: f32) -> f32 {
    const FRAME: usize = 160;
    let min_energy = f64::from(min_level) * f64::from(min_level) * FRAME as f64;
    let ratio = 10f64.powf(f64::from(gain_db) / 10.0);
    let (mut loud, mut tonal) = (0u32, 0u32);
    for f in pcm.chunks_exact(FRAME) {
        let r = |k: usize| -> f64 {
            f[k..]
                .iter()
                .zip(f)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum()
        };
        let (r0, r1, r2) = (r(0), r(1), r(2));
        if r0 < min_energy {
            continue;
        }
        loud += 1;
        // Levinson–Durbin, order 2: the residual energy e2.
        let k1 = r1 / r0;
        let e1 = r0 * (1.0 - k1 * k1);
        if e1 <= 0.0 {
            tonal += 1;
            continue;
        }
        let k2 = (r2 - k1 * r1) / e1;
        let e2 = e1 * (1.0 - k2 * k2);
        if e2 <= 0.0 || r0 / e2 >= ratio {
            tonal += 1;
        }
    }
    if loud == 0 {
        0.0
    } else {
        tonal as f32 / loud as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn burst(len: usize) -> Vec<i16> {
        (0..len)
            .map(|i| (3000.0 * (i as f32 * 0.3).sin()) as i16)
            .collect()
    }

    #[test]
    fn a_sinusoid_is_tonal_and_noise_or_a_vowel_is_not() {
        let tone: Vec<i16> = (0..8000)
            .map(|i| (8000.0 * (i as f32 * std::f32::consts::TAU * 1500.0 / 8000.0).sin()) as i16)
            .collect();
        assert!(tonal_fraction(&tone, 12.0, 100.0) > 0.95);
        // A vowel-like sound: harmonics of 120 Hz shaped by two formants (700, 1200 Hz).
        let vowel: Vec<i16> = (0..8000)
            .map(|i| {
                let t = i as f32 / 8000.0;
                (1..30)
                    .map(|h| {
                        let f = 120.0 * h as f32;
                        let formant = |c: f32| 1.0 / (1.0 + ((f - c) / 150.0).powi(2));
                        (formant(700.0) + 0.6 * formant(1200.0))
                            * (std::f32::consts::TAU * f * t).sin()
                    })
                    .sum::<f32>()
                    * 3000.0
            })
            .map(|v: f32| v.clamp(-32000.0, 32000.0) as i16)
            .collect();
        assert!(tonal_fraction(&vowel, 12.0, 100.0) < 0.5);
        let mut seed = 1u32;
        let noise: Vec<i16> = (0..8000)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 16) as i16) / 4
            })
            .collect();
        assert!(tonal_fraction(&noise, 12.0, 100.0) < 0.05);
        assert_eq!(tonal_fraction(&[0; 1600], 12.0, 100.0), 0.0);
    }

    #[test]
    fn pauses_are_found_inside_a_segment() {
        // 500 ms speech, 150 ms near-silence, 300 ms speech, 30 ms dip, 300 ms speech.
        let mut pcm = burst(4000);
        pcm.extend(std::iter::repeat_n(3i16, 1200));
        pcm.extend(burst(2400));
        pcm.extend(std::iter::repeat_n(3i16, 240));
        pcm.extend(burst(2400));
        let p = pauses(&pcm, MediaTime(80_000), 80, 25.0);
        assert_eq!(p, vec![(MediaTime(84_000), MediaTime(85_200))]);
        // The 30 ms dip counts with a shorter minimum.
        assert_eq!(pauses(&pcm, MediaTime(0), 30, 25.0).len(), 2);
        assert!(pauses(&[], MediaTime(0), 80, 25.0).is_empty());
    }

    #[test]
    fn cuts_at_pauses_and_skips_silence() {
        let mut s = Segmenter::new(SegmenterConfig::default(), 16_000).expect("valid");
        s.push(&vec![0; 8000]);
        s.push(&burst(4000));
        s.push(&vec![0; 8000]);
        let seg = s.pop().expect("one segment");
        assert_eq!(seg.start, MediaTime(8000 - 1600));
        // ends after the hangover (300 ms)
        assert_eq!(seg.end, MediaTime(12_000 + 2400));
        assert_eq!(seg.pcm.len() as u64, seg.end - seg.start);
        assert!(s.pop().is_none());
        assert!(s.silence_samples() > 8000);
    }

    #[test]
    fn forces_cuts_with_overlap() {
        let mut s = Segmenter::new(SegmenterConfig::default(), 8000).expect("valid");
        s.push(&burst(30_000));
        let a = s.pop().expect("first");
        let b = s.pop().expect("second");
        assert!(a.forced && b.continuation);
        assert!(a.end - a.start <= 8000);
        assert_eq!(b.start, a.end.saturating_sub(2400));
        assert!(s.open_since().is_some());
    }
}
