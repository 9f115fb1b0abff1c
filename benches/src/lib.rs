//! Shared helpers for callmask benchmarks: the bench inputs (speech, DTMF bursts, silence) cut
//! into 20 ms frames, and (behind the `spandsp` feature) a minimal binding to spandsp's DTMF
//! receiver used only as a speed reference.
//!
//! Every input is a `Vec<Frame>` of 160-sample frames at 8 kHz, fed in order so that stateful
//! blocks (the receiver, the delay line) see a continuous stream.

#[cfg(feature = "spandsp")]
pub mod spandsp;

use std::path::Path;

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;
/// Sample rate of every input.
pub const RATE_HZ: f32 = 8000.0;

/// One 20 ms frame of linear 16-bit samples.
pub type Frame = [i16; FRAME];

/// Default location of the speech recording (µ-law, headerless, 8 kHz mono).
pub const SPEECH_ULAW: &str = "/work/shared/eval/data/dev/call_000.ulaw";
/// Environment variable that overrides [`SPEECH_ULAW`].
pub const SPEECH_ENV: &str = "CALLMASK_BENCH_SPEECH";

/// A named bench input.
#[derive(Debug, Clone)]
pub struct Input {
    /// Short label used in benchmark ids (`speech`, `dtmf`, `silence`).
    pub name: &'static str,
    /// Where the samples came from, for the log line.
    pub source: String,
    /// The frames, in stream order.
    pub frames: Vec<Frame>,
}

/// The three standard inputs: speech (recording or synthetic), DTMF bursts, silence.
pub fn standard_inputs() -> Vec<Input> {
    vec![speech(), dtmf_bursts(), silence()]
}

/// Speech: the µ-law recording at `$CALLMASK_BENCH_SPEECH` or [`SPEECH_ULAW`], decoded with
/// `dsp::g711`; synthetic voiced audio if the file is absent or too short.
pub fn speech() -> Input {
    let path = std::env::var(SPEECH_ENV).unwrap_or_else(|_| SPEECH_ULAW.to_owned());
    match read_ulaw(Path::new(&path)) {
        Some(frames) if frames.len() >= 50 => Input {
            name: "speech",
            source: format!("{path} ({} frames)", frames.len()),
            frames,
        },
        _ => Input {
            name: "speech",
            source: format!("synthetic ({path} not readable)"),
            frames: synthetic_speech(30.0),
        },
    }
}

/// Reads a headerless µ-law file into whole frames (a trailing partial frame is dropped).
pub fn read_ulaw(path: &Path) -> Option<Vec<Frame>> {
    let bytes = std::fs::read(path).ok()?;
    let frames = bytes
        .chunks_exact(FRAME)
        .map(|chunk| {
            let mut f = [0i16; FRAME];
            dsp::g711::decode_ulaw(chunk, &mut f);
            f
        })
        .collect();
    Some(frames)
}

/// Level of a full-scale sine, dBm0 (spandsp's convention, used by the eval corpus too).
#[allow(clippy::approx_constant)] // a level in dB that happens to look like π
pub const FULL_SCALE_SINE_DBM0: f32 = 3.14;

/// Amplitude of a sine at `dbm0` (a full-scale sine is [`FULL_SCALE_SINE_DBM0`]).
pub fn dbm0_amplitude(dbm0: f32) -> f32 {
    32767.0 * 10f32.powf((dbm0 - FULL_SCALE_SINE_DBM0) / 20.0)
}

/// Small deterministic PRNG (xorshift32) so inputs are identical across runs.
#[derive(Debug, Clone)]
struct Rng(u32);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x as f32 / u32::MAX as f32) * 2.0 - 1.0
    }
}

fn to_frames(samples: &[f32]) -> Vec<Frame> {
    samples
        .chunks_exact(FRAME)
        .map(|chunk| {
            let mut f = [0i16; FRAME];
            for (d, &s) in f.iter_mut().zip(chunk) {
                *d = s.round().clamp(-32768.0, 32767.0) as i16;
            }
            f
        })
        .collect()
}

/// Synthetic speech-like audio: syllable-shaped bursts of a gliding harmonic series (pitch
/// 100–220 Hz, 12 harmonics with a falling spectrum) plus a low noise floor.
pub fn synthetic_speech(seconds: f32) -> Vec<Frame> {
    let n = (seconds * RATE_HZ) as usize / FRAME * FRAME;
    let mut rng = Rng(0x9e37_79b9);
    let floor = dbm0_amplitude(-55.0);
    let voice = dbm0_amplitude(-18.0);
    let mut phase = 0.0f32;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f32 / RATE_HZ;
        // ~4 syllables per second, pauses between phrases every ~3 s.
        let syll = (std::f32::consts::PI * 4.0 * t).sin().abs();
        let phrase = if (t % 3.0) < 2.4 { 1.0 } else { 0.0 };
        let pitch = 160.0 + 60.0 * (2.0 * std::f32::consts::PI * 0.7 * t).sin();
        phase += 2.0 * std::f32::consts::PI * pitch / RATE_HZ;
        if phase > 2.0 * std::f32::consts::PI {
            phase -= 2.0 * std::f32::consts::PI;
        }
        let mut v = 0.0;
        for h in 1..=12 {
            v += (phase * h as f32).sin() / h as f32;
        }
        out.push(v * voice * 0.5 * syll * phrase + rng.next_f32() * floor);
    }
    to_frames(&out)
}

/// (low, high) frequencies of the 16 keys, in `0123456789*#ABCD` order.
pub const DTMF_KEYS: [(char, f32, f32); 16] = [
    ('0', 941.0, 1336.0),
    ('1', 697.0, 1209.0),
    ('2', 697.0, 1336.0),
    ('3', 697.0, 1477.0),
    ('4', 770.0, 1209.0),
    ('5', 770.0, 1336.0),
    ('6', 770.0, 1477.0),
    ('7', 852.0, 1209.0),
    ('8', 852.0, 1336.0),
    ('9', 852.0, 1477.0),
    ('*', 941.0, 1209.0),
    ('#', 941.0, 1477.0),
    ('A', 697.0, 1633.0),
    ('B', 770.0, 1633.0),
    ('C', 852.0, 1633.0),
    ('D', 941.0, 1633.0),
];

/// Tone-on time of each generated burst, ms.
pub const DTMF_ON_MS: usize = 80;
/// Gap after each burst, ms.
pub const DTMF_OFF_MS: usize = 60;
/// Per-component levels of the passes over the keypad, dBm0 (one pass per level).
pub const DTMF_LEVELS_DBM0: [f32; 3] = [-6.0, -12.0, -20.0];

/// Number of tone bursts in [`dtmf_bursts`].
pub fn dtmf_burst_count() -> usize {
    DTMF_KEYS.len() * DTMF_LEVELS_DBM0.len()
}

/// DTMF-heavy input: every key in turn, [`DTMF_ON_MS`] on / [`DTMF_OFF_MS`] off, one pass per
/// level in [`DTMF_LEVELS_DBM0`] (twist 0 dB), over a −55 dBm0 noise floor. Tone time is
/// 4/7 of the signal, far denser than any real call.
pub fn dtmf_bursts() -> Input {
    let on = DTMF_ON_MS * 8;
    let off = DTMF_OFF_MS * 8;
    let mut rng = Rng(0x2545_f491);
    let floor = dbm0_amplitude(-55.0);
    let mut out = Vec::new();
    for &level in &DTMF_LEVELS_DBM0 {
        let a = dbm0_amplitude(level);
        for &(_, lo, hi) in &DTMF_KEYS {
            for i in 0..on {
                let t = i as f32 / RATE_HZ;
                let s = a * (2.0 * std::f32::consts::PI * lo * t).sin()
                    + a * (2.0 * std::f32::consts::PI * hi * t).sin();
                out.push(s + rng.next_f32() * floor);
            }
            for _ in 0..off {
                out.push(rng.next_f32() * floor);
            }
        }
    }
    // Pad to whole frames with noise floor.
    while out.len() % FRAME != 0 {
        out.push(rng.next_f32() * floor);
    }
    let frames = to_frames(&out);
    Input {
        name: "dtmf",
        source: format!(
            "generated: {} bursts {DTMF_ON_MS}/{DTMF_OFF_MS} ms at {DTMF_LEVELS_DBM0:?} dBm0 ({} frames)",
            dtmf_burst_count(),
            frames.len()
        ),
        frames,
    }
}

/// Digital silence, 1 s.
pub fn silence() -> Input {
    Input {
        name: "silence",
        source: "digital zero (50 frames)".to_owned(),
        frames: vec![[0i16; FRAME]; 50],
    }
}

/// Counts the tones our receiver confirms in one pass over `frames` (fresh receiver), to log
/// next to the timings so that a bench of a receiver that detects nothing is obvious.
pub fn count_callmask_tones(frames: &[Frame]) -> usize {
    use dsp::dtmf::{DtmfConfig, DtmfDetector, ToneEvent};
    let mut det = DtmfDetector::new(DtmfConfig::default());
    let mut n = 0;
    for f in frames {
        det.process(f);
        while let Some(ev) = det.poll_event() {
            if matches!(ev, ToneEvent::Started { .. }) {
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_whole_frames_and_non_trivial() {
        let s = synthetic_speech(2.0);
        assert_eq!(s.len(), 100);
        assert!(s.iter().flatten().any(|&x| x.unsigned_abs() > 1000));
        let d = dtmf_bursts();
        let total_ms = dtmf_burst_count() * (DTMF_ON_MS + DTMF_OFF_MS);
        assert_eq!(d.frames.len(), total_ms / 20);
        let peak = d.frames.iter().flatten().map(|x| x.unsigned_abs()).max();
        // two -6 dBm0 components: peak about 2 * 32767 * 10^(-9.14/20) ≈ 22800
        assert!(
            peak.is_some_and(|p| (20_000..26_000).contains(&p)),
            "{peak:?}"
        );
        assert!(silence().frames.iter().flatten().all(|&x| x == 0));
    }
}
