//! Spike: embedded Whisper tiny.en recognizer for callmask's spoken-identifier masking.
//!
//! Pure-Rust front end (µ-law, 8→16 kHz, faster-whisper log-mel, GPT-2 byte vocabulary) and,
//! behind the `whisper` feature, the CTranslate2 engine through `ct2rs::sys::Whisper`.

pub mod audio;
pub mod mel;
pub mod tokens;
pub mod util;

#[cfg(feature = "whisper")]
mod engine;
#[cfg(feature = "whisper")]
pub use engine::{
    looks_looped, repeated_fraction, EngineOptions, Timings, WhisperEngine, LOOP_MIN_TOKENS,
};

/// One recognised word; times in ms from the segment's first sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Mean probability of the word's tokens.
    pub confidence: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error("loading the model: {0}")]
    Load(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("engine: {0}")]
    Engine(String),
    #[error("unsupported sample rate {0} Hz")]
    Rate(u32),
}

/// Mirror of the trait planned for `dsp::spoken` (issue 5): PCM segment in, timed words out.
/// As in `dsp/src/spoken/mod.rs`: word times are offsets in **8 kHz samples** whatever the rate;
/// `confidence` is optional. (`SampleRate` there; a plain Hz value here.)
pub mod spoken {
    /// A sample index at the segment's rate (mirrors `callmask_dsp::time::MediaTime`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
    pub struct MediaTime(pub u64);

    #[derive(Debug, Clone, PartialEq)]
    pub struct Word {
        pub text: String,
        pub start: MediaTime,
        pub end: MediaTime,
        pub confidence: Option<f32>,
    }

    pub type RecognizerError = crate::AsrError;

    pub trait Recognizer {
        /// `pcm` at `rate` Hz (8000 or 16000); word times are 8 kHz sample offsets into `pcm`.
        fn transcribe(&mut self, pcm: &[i16], rate: u32) -> Result<Vec<Word>, RecognizerError>;
    }

    #[cfg(feature = "whisper")]
    impl Recognizer for crate::WhisperEngine {
        fn transcribe(&mut self, pcm: &[i16], rate: u32) -> Result<Vec<Word>, RecognizerError> {
            let words = match rate {
                8000 => crate::WhisperEngine::transcribe(self, pcm)?,
                16000 => self.transcribe_16k(
                    &pcm.iter()
                        .map(|&s| f32::from(s) / 32768.0)
                        .collect::<Vec<_>>(),
                )?,
                r => return Err(crate::AsrError::Rate(r)),
            };
            let per_ms = 8;
            Ok(words
                .into_iter()
                .map(|w| Word {
                    text: w.text,
                    start: MediaTime(w.start_ms * per_ms),
                    end: MediaTime(w.end_ms * per_ms),
                    confidence: Some(w.confidence),
                })
                .collect())
        }
    }
}
