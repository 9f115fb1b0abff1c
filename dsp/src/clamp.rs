//! The live agent-leg DTMF clamp: no look-ahead, one packet in, the same packet out.
//!
//! The recorder path hides tones retroactively behind a delay line; the agent leg cannot wait,
//! so [`LiveClamp`] runs the causal receiver ([`DtmfDetector`]) on each G.711 payload *before*
//! it is forwarded and overwrites the payload in place while a tone may be sounding:
//!
//! - from the packet in which the receiver raises a **candidate** (`pending_since`: the end of
//!   the first 102-sample block that hits a key pair, 12.75–25.5 ms into a tone) — so the tone
//!   normally leaks only through the packet(s) that ended before that block did;
//! - while the tone is **confirmed** (between `Started` and `Ended`; `Ended` itself comes three
//!   missed blocks after the tone, erring late);
//! - for [`HANGOVER_PACKETS`] packet after `Ended`.
//!
//! A candidate that the fine stage rejects (talk-off in speech) clamps only the packets during
//! which it was pending (one or two).
//!
//! The replacement is G.711 silence ([`ClampMode::Silence`]) or a fixed 440 Hz tone at
//! −20 dBm0 ([`ClampMode::FlatTone`], below the DTMF low group, continuous in phase across
//! packets): the agent hears that a key was pressed, not which. Nothing here allocates after
//! [`LiveClamp::new`]; keys are never exposed.

use crate::dtmf::{DtmfConfig, DtmfDetector, ToneEvent};
use crate::g711;

/// Packets still clamped after the receiver reports a tone's end.
pub const HANGOVER_PACKETS: u32 = 1;
/// Frequency of the flat tone, Hz (not a DTMF frequency; 440/8000 = 11/200).
pub const FLAT_TONE_HZ: u32 = 440;
/// Level of the flat tone, dBm0.
pub const FLAT_TONE_DBM0: f32 = -20.0;
/// One period of the flat tone in samples (8000 / gcd(8000, 440) = 200).
const FLAT_PERIOD: usize = 200;
/// Samples decoded at a time.
const CHUNK: usize = 320;
/// A full-scale sine is +3.14 dBm0 (G.711; the receiver's level reference).
#[allow(clippy::approx_constant)] // a level in dB that happens to read like π
const FULL_SCALE_SINE_DBM0: f32 = 3.14;
pub use crate::g711::{Law, ALAW_SILENCE, ULAW_SILENCE};

/// What clamped packets carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClampMode {
    /// G.711 silence.
    Silence,
    /// The flat 440 Hz tone.
    FlatTone,
}

/// Counters (no keys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClampStats {
    /// Packets processed.
    pub packets: u64,
    /// Packets whose payload was replaced.
    pub clamped: u64,
    /// Tones confirmed.
    pub tones: u64,
}

/// The per-direction live clamp. See the module docs.
pub struct LiveClamp {
    mode: ClampMode,
    detector: DtmfDetector,
    active: bool,
    hangover: u32,
    phase: usize,
    pcm: [i16; CHUNK],
    tone: [[u8; FLAT_PERIOD]; 2],
    stats: ClampStats,
}

impl std::fmt::Debug for LiveClamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveClamp")
            .field("mode", &self.mode)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl LiveClamp {
    /// A clamp; all state is allocated here.
    pub fn new(mode: ClampMode) -> Self {
        // 0 dBm0 sine peak: 32767 / 10^(3.14/20) (see the receiver's level reference).
        let peak =
            32767.0 / 10f32.powf(FULL_SCALE_SINE_DBM0 / 20.0) * 10f32.powf(FLAT_TONE_DBM0 / 20.0);
        let mut tone = [[0u8; FLAT_PERIOD]; 2];
        let [ulaw, alaw] = &mut tone;
        for (i, (u, a)) in ulaw.iter_mut().zip(alaw.iter_mut()).enumerate() {
            let x = (2.0 * std::f32::consts::PI * FLAT_TONE_HZ as f32 * i as f32 / 8000.0).sin();
            let s = (x * peak).round() as i16;
            *u = g711::linear_to_ulaw(s);
            *a = g711::linear_to_alaw(s);
        }
        LiveClamp {
            mode,
            detector: DtmfDetector::new(DtmfConfig::default()),
            active: false,
            hangover: 0,
            phase: 0,
            pcm: [0; CHUNK],
            tone,
            stats: ClampStats::default(),
        }
    }

    /// The replacement in use.
    pub fn mode(&self) -> ClampMode {
        self.mode
    }

    /// Counters so far.
    pub fn stats(&self) -> ClampStats {
        self.stats
    }

    /// Run the receiver over `payload` (one packet's G.711 audio, in order) and, if a tone may
    /// be sounding, overwrite it with the replacement. Returns whether it was replaced.
    pub fn process(&mut self, payload: &mut [u8], law: Law) -> bool {
        let clamp = self.inspect(payload, law);
        if clamp {
            self.fill(payload, law);
        }
        clamp
    }

    /// Run the receiver over `payload` (one packet's G.711 audio, in order) and tell whether
    /// the packet must be replaced (then call [`Self::fill`] on a copy of it).
    pub fn inspect(&mut self, payload: &[u8], law: Law) -> bool {
        for chunk in payload.chunks(CHUNK) {
            let pcm = &mut self.pcm[..chunk.len()];
            law.decode(chunk, pcm);
            self.detector.process(pcm);
        }
        self.decide()
    }

    /// [`Self::inspect`] for a packet the caller has already decoded (`pcm` is the whole
    /// packet's audio, in order): the relay decodes each packet once for every consumer.
    pub fn inspect_pcm(&mut self, pcm: &[i16]) -> bool {
        self.detector.process(pcm);
        self.decide()
    }

    /// The verdict for the packet just fed to the receiver.
    fn decide(&mut self) -> bool {
        self.stats.packets += 1;
        let mut ended = false;
        while let Some(ev) = self.detector.poll_event() {
            match ev {
                ToneEvent::Started { .. } => {
                    self.active = true;
                    self.stats.tones += 1;
                }
                ToneEvent::Ended { .. } => {
                    self.active = false;
                    ended = true;
                }
            }
        }
        let clamp = if self.active || ended || self.detector.pending_since().is_some() {
            self.hangover = HANGOVER_PACKETS;
            true
        } else if self.hangover > 0 {
            self.hangover -= 1;
            true
        } else {
            false
        };
        if clamp {
            self.stats.clamped += 1;
        }
        clamp
    }

    /// Overwrite `out` with the replacement (silence or the next samples of the flat tone).
    pub fn fill(&mut self, out: &mut [u8], law: Law) {
        match self.mode {
            ClampMode::Silence => out.fill(law.silence()),
            ClampMode::FlatTone => {
                let table = &self.tone[law as usize];
                for b in out.iter_mut() {
                    *b = table[self.phase];
                    self.phase = (self.phase + 1) % FLAT_PERIOD;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::Digit;

    fn frames(digit: char, tone_at: usize, tone_len: usize, total: usize) -> Vec<[u8; 160]> {
        let (lo, hi) = Digit::from_char(digit).unwrap().frequencies();
        let amp =
            0.5 * 32767.0 / 10f32.powf(FULL_SCALE_SINE_DBM0 / 20.0) * 10f32.powf(-10.0 / 20.0);
        (0..total)
            .map(|f| {
                let mut p = [0u8; 160];
                for (i, b) in p.iter_mut().enumerate() {
                    let n = f * 160 + i;
                    let s = if n >= tone_at && n < tone_at + tone_len {
                        let t = n as f32 / 8000.0;
                        amp * ((2.0 * std::f32::consts::PI * lo * t).sin()
                            + (2.0 * std::f32::consts::PI * hi * t).sin())
                    } else {
                        0.0
                    };
                    *b = g711::linear_to_ulaw(s as i16);
                }
                p
            })
            .collect()
    }

    #[test]
    fn leaks_at_most_one_frame_per_tone() {
        let mut all = Vec::new();
        for offset in (0..160).step_by(8) {
            let mut c = LiveClamp::new(ClampMode::Silence);
            let tone_at = 1600 + offset;
            let mut leaked = 0usize;
            for (i, mut p) in frames('5', tone_at, 800, 60).into_iter().enumerate() {
                c.process(&mut p, Law::Ulaw);
                let (s, e) = (i * 160, i * 160 + 160);
                if p != [ULAW_SILENCE; 160] {
                    leaked += e.min(tone_at + 800).saturating_sub(s.max(tone_at));
                }
            }
            assert!(
                leaked <= 160,
                "offset {offset}: {leaked} tone samples leaked"
            );
            assert_eq!(c.stats().tones, 1);
            all.push(leaked);
        }
        let mean = all.iter().sum::<usize>() as f32 / all.len() as f32;
        println!(
            "leak per tone over 20 onset phases: max {} samples, mean {mean:.0}",
            all.iter().max().unwrap()
        );
    }

    #[test]
    fn flat_tone_replaces_with_440() {
        let mut c = LiveClamp::new(ClampMode::FlatTone);
        let mut out = [0u8; 400];
        c.fill(&mut out, Law::Alaw);
        let pcm: Vec<f32> = out
            .iter()
            .map(|&b| f32::from(g711::alaw_to_linear(b)))
            .collect();
        // Energy at 440 Hz dominates the DTMF bins.
        let p = |hz: f64| {
            let (re, im) =
                crate::goertzel::dtft(&pcm, 2.0 * std::f64::consts::PI * hz / 8000.0, None);
            re * re + im * im
        };
        assert!(p(440.0) > 1000.0 * p(697.0));
        assert!(p(440.0) > 1000.0 * p(1209.0));
    }

    #[test]
    #[ignore = "timing; run with --ignored --nocapture"]
    #[allow(clippy::disallowed_methods)] // a timing measurement reads the clock by design
    fn per_packet_cost() {
        // Tone for 5 s, then 5 s of a loud 300 Hz + 2.1 kHz mixture (passes the energy gate,
        // so every block runs the Goertzel bank).
        let mut fr = frames('9', 0, 8000 * 5, 8000 * 10 / 160);
        for (f, p) in fr.iter_mut().enumerate().skip(8000 * 5 / 160) {
            for (i, b) in p.iter_mut().enumerate() {
                let t = (f * 160 + i) as f32 / 8000.0;
                let x = 4000.0 * (2.0 * std::f32::consts::PI * 300.0 * t).sin()
                    + 3000.0 * (2.0 * std::f32::consts::PI * 2100.0 * t).sin();
                *b = g711::linear_to_ulaw(x as i16);
            }
        }
        let mut c = LiveClamp::new(ClampMode::Silence);
        let t = std::time::Instant::now();
        let mut n = 0u32;
        for _ in 0..20 {
            for p in &fr {
                let mut p = *p;
                c.process(&mut p, Law::Ulaw);
                n += 1;
            }
        }
        let per = t.elapsed() / n;
        println!(
            "LiveClamp::process: {per:?} per 20 ms packet ({n} packets, half tone half loud non-DTMF audio)"
        );
    }
}
