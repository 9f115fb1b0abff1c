//! Media time: a sample count, never a wall clock.
//!
//! The DSP blocks are driven by samples, so their notion of time is the index of a sample in
//! the stream. Converting to milliseconds happens only at the edges (reports, config).

use std::fmt;
use std::ops::{Add, Sub};

/// Sample rate of a stream. The masking core works at 8 kHz (narrow-band telephony); 16 kHz
/// input is decimated before detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleRate(u32);

impl SampleRate {
    /// 8 kHz narrow band (G.711).
    pub const NARROWBAND: SampleRate = SampleRate(8000);
    /// 16 kHz wide band.
    pub const WIDEBAND: SampleRate = SampleRate(16000);

    /// A rate in Hz; `None` for rates callmask does not process.
    pub fn from_hz(hz: u32) -> Option<SampleRate> {
        match hz {
            8000 | 16000 => Some(SampleRate(hz)),
            _ => None,
        }
    }

    /// The rate in Hz.
    pub const fn hz(self) -> u32 {
        self.0
    }

    /// Samples in one second at this rate (the rate as a sample count).
    pub const fn samples_per_second(self) -> u64 {
        self.0 as u64
    }

    /// Samples in `ms` milliseconds at this rate.
    pub const fn samples_in_ms(self, ms: u64) -> u64 {
        ms * self.0 as u64 / 1000
    }

    /// Milliseconds spanned by `samples` at this rate, as a fraction (exact for whole
    /// samples at 8 and 16 kHz).
    pub fn ms_of(self, samples: u64) -> f64 {
        samples as f64 * 1000.0 / f64::from(self.0)
    }
}

/// A position in a stream, in samples since the stream's first sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MediaTime(pub u64);

impl MediaTime {
    /// The stream's first sample.
    pub const ZERO: MediaTime = MediaTime(0);

    /// Samples since the start.
    pub fn samples(self) -> u64 {
        self.0
    }

    /// Milliseconds since the start at `rate` (rounded down).
    pub fn as_ms(self, rate: SampleRate) -> u64 {
        self.0 * 1000 / u64::from(rate.hz())
    }

    /// `self - d`, stopping at zero.
    pub fn saturating_sub(self, d: u64) -> MediaTime {
        MediaTime(self.0.saturating_sub(d))
    }
}

impl Add<u64> for MediaTime {
    type Output = MediaTime;
    fn add(self, rhs: u64) -> MediaTime {
        MediaTime(self.0 + rhs)
    }
}

impl Sub for MediaTime {
    type Output = u64;
    /// Distance in samples; zero if `rhs` is later.
    fn sub(self, rhs: MediaTime) -> u64 {
        self.0.saturating_sub(rhs.0)
    }
}

impl fmt::Display for MediaTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sample {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_conversions() {
        let r = SampleRate::NARROWBAND;
        assert_eq!(r.samples_in_ms(20), 160);
        assert_eq!(MediaTime(8000).as_ms(r), 1000);
        assert_eq!(MediaTime(5).saturating_sub(10), MediaTime::ZERO);
        assert!(SampleRate::from_hz(44100).is_none());
    }
}
