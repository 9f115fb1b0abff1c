//! The callmask masking core.
//!
//! Everything a recorder receives passes through this crate. It has no I/O, no async, no clock
//! and no allocation per frame: state is sized once at construction, time is a sample count
//! ([`MediaTime`]), and every block is a small state machine fed with samples.
//!
//! The run loop of one recorder-bound stream:
//!
//! ```
//! use dsp::mask::{MaskConfig, MaskPipeline};
//! let mut pipe = MaskPipeline::new(MaskConfig::default());
//! let input = [0i16; 160];
//! let mut output = [0i16; 160];
//! // every 20 ms: 160 samples in, 160 samples out (delayed by the look-ahead)
//! let report = pipe.process(&input, &mut output);
//! assert!(report.muted_samples <= 160);
//! // spans that were masked, for the report (never the digits)
//! while let Some(_span) = pipe.poll_span() {}
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clamp;
pub mod delay_line;
pub mod dtmf;
pub mod error;
pub mod g711;
pub mod g722;
pub mod goertzel;
pub mod mask;
pub mod rfc4733;
pub mod spoken;
pub mod time;
pub mod vad;

pub use error::DspError;
pub use time::{MediaTime, SampleRate};
