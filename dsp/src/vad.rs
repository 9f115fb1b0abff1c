//! Voice activity detection: frame energy against a tracked noise floor, plus zero crossings
//! for quiet fricatives, with a hangover so short pauses inside speech do not end it.
//!
//! Runs on fixed 10 or 20 ms frames at 8 kHz; no allocation after `new`. It only decides which
//! audio is worth sending to the recognizer: audio it calls silence is never transcribed and
//! so never masked as speech, which is why its thresholds err towards "speech".

use crate::DspError;

const SAMPLES_PER_MS: u32 = 8;

/// VAD settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// Frame length: 10 or 20 ms.
    pub frame_ms: u32,
    /// A frame this many dB above the noise floor is speech.
    pub margin_db: f32,
    /// Frames below this level (dBFS) are never speech.
    pub min_level_dbfs: f32,
    /// A frame this many dB above the floor with a high zero-crossing rate is speech
    /// (unvoiced consonants: "six", "seven").
    pub zcr_margin_db: f32,
    /// Zero crossings per sample that count as "high".
    pub zcr_min: f32,
    /// Speech continues this long after the last speech frame.
    pub hangover_ms: u32,
    /// How fast the noise floor may rise, dB per second (it falls at once).
    pub floor_rise_db_per_s: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            frame_ms: 20,
            margin_db: 9.0,
            min_level_dbfs: -55.0,
            zcr_margin_db: 4.0,
            zcr_min: 0.3,
            hangover_ms: 300,
            floor_rise_db_per_s: 1.0,
        }
    }
}

/// An energy + zero-crossing VAD. Feed it whole frames with [`Vad::process_frame`].
#[derive(Debug, Clone)]
pub struct Vad {
    config: VadConfig,
    frame_len: usize,
    floor_db: f32,
    rise_per_frame: f32,
    hangover_frames: u32,
    hang_left: u32,
    last_level_db: f32,
}

impl Vad {
    /// A VAD; fails on a frame length other than 10 or 20 ms.
    pub fn new(config: VadConfig) -> Result<Vad, DspError> {
        if config.frame_ms != 10 && config.frame_ms != 20 {
            return Err(DspError::BadParameter {
                what: "vad frame_ms",
                detail: "10 or 20",
            });
        }
        Ok(Vad {
            frame_len: (config.frame_ms * SAMPLES_PER_MS) as usize,
            floor_db: config.min_level_dbfs - 15.0,
            rise_per_frame: config.floor_rise_db_per_s * config.frame_ms as f32 / 1000.0,
            hangover_frames: config.hangover_ms.div_ceil(config.frame_ms),
            hang_left: 0,
            last_level_db: -120.0,
            config,
        })
    }

    /// Samples per frame.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// The tracked noise floor in dBFS.
    pub fn noise_floor_dbfs(&self) -> f32 {
        self.floor_db
    }

    /// Level of the last frame in dBFS.
    pub fn last_level_dbfs(&self) -> f32 {
        self.last_level_db
    }

    /// Decide one frame (any length, normally [`Vad::frame_len`]); true while speech
    /// (hangover included).
    pub fn process_frame(&mut self, frame: &[i16]) -> bool {
        if frame.is_empty() {
            return self.hang_left > 0;
        }
        let mut energy = 0f64;
        let mut crossings = 0u32;
        let mut prev = frame[0];
        for &x in frame {
            energy += f64::from(x) * f64::from(x);
            if (x >= 0) != (prev >= 0) {
                crossings += 1;
            }
            prev = x;
        }
        let mean = energy / frame.len() as f64 / (32768.0 * 32768.0);
        let level = (10.0 * (mean + 1e-12).log10()) as f32;
        let zcr = crossings as f32 / frame.len() as f32;
        self.last_level_db = level;
        let c = &self.config;
        let loud = level > c.min_level_dbfs;
        let speech = loud
            && (level > self.floor_db + c.margin_db
                || (level > self.floor_db + c.zcr_margin_db && zcr >= c.zcr_min));
        // Floor: follows quieter frames at once, rises slowly (so speech does not become floor).
        if level < self.floor_db {
            self.floor_db = level.max(-100.0);
        } else {
            self.floor_db = (self.floor_db + self.rise_per_frame).min(level);
        }
        if speech {
            self.hang_left = self.hangover_frames;
            true
        } else if self.hang_left > 0 {
            self.hang_left -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize, amp: f32, hz: f32) -> Vec<i16> {
        (0..len)
            .map(|i| (amp * (i as f32 * hz * std::f32::consts::TAU / 8000.0).sin()) as i16)
            .collect()
    }

    #[test]
    fn speech_like_energy_is_detected_and_hangover_holds() {
        let mut v = Vad::new(VadConfig::default()).expect("valid");
        let quiet = vec![3i16; 160];
        for _ in 0..50 {
            assert!(!v.process_frame(&quiet));
        }
        let loud = tone(160, 3000.0, 300.0);
        assert!(v.process_frame(&loud));
        // hangover: 300 ms = 15 frames
        for _ in 0..15 {
            assert!(v.process_frame(&quiet));
        }
        assert!(!v.process_frame(&quiet));
    }

    #[test]
    fn rejects_bad_frame() {
        assert!(Vad::new(VadConfig {
            frame_ms: 15,
            ..VadConfig::default()
        })
        .is_err());
    }
}
