//! The DTMF receiver (placeholder; the full Q.24 receiver replaces this file).

use super::ToneEvent;
use crate::MediaTime;

/// Receiver settings. Defaults follow ITU-T Q.24 (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DtmfConfig {
    /// Minimum level of the stronger tone, dBm0.
    pub min_level_dbm0: f32,
}

impl Default for DtmfConfig {
    fn default() -> Self {
        DtmfConfig {
            min_level_dbm0: -30.0,
        }
    }
}

/// The in-band DTMF receiver for one 8 kHz stream.
#[derive(Debug, Clone)]
pub struct DtmfDetector {
    config: DtmfConfig,
    now: MediaTime,
}

impl DtmfDetector {
    /// A receiver; all state is allocated here.
    pub fn new(config: DtmfConfig) -> Self {
        DtmfDetector {
            config,
            now: MediaTime::ZERO,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &DtmfConfig {
        &self.config
    }

    /// Feed the next samples of the stream (any length).
    pub fn process(&mut self, samples: &[i16]) {
        self.now = self.now + samples.len() as u64;
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ToneEvent> {
        None
    }

    /// Earliest sample whose verdict is still open, if a candidate tone is being evaluated.
    pub fn pending_since(&self) -> Option<MediaTime> {
        None
    }

    /// Samples consumed so far.
    pub fn now(&self) -> MediaTime {
        self.now
    }
}
