//! The crate's one error type.

use thiserror::Error;

/// What can go wrong in the masking core. Errors never carry audio-derived values (digits).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DspError {
    /// An RFC 4733 telephone-event payload was shorter than 4 bytes.
    #[error("RFC 4733 payload too short: {len} bytes, need 4 (RFC 4733 §2.3)")]
    EventTooShort {
        /// Bytes received.
        len: usize,
    },
    /// The event code is outside what callmask treats as DTMF (0..=15).
    #[error("RFC 4733 event code {code} is not a DTMF event (0-15)")]
    NotDtmfEvent {
        /// The code received (an event type number, not a key).
        code: u8,
    },
    /// A configuration value for a DSP block is out of range.
    #[error("{what} out of range: {detail}")]
    BadParameter {
        /// Which parameter.
        what: &'static str,
        /// The allowed range.
        detail: &'static str,
    },
    /// An RFC 2198 redundancy (RED) payload ended inside its block headers.
    #[error(
        "RED payload truncated: {len} bytes end inside the block headers (RFC 2198 §3: 4-byte \
         headers with F=1, then a 1-byte header with F=0)"
    )]
    RedTruncatedHeader {
        /// Bytes received.
        len: usize,
    },
    /// The RED block headers announce more data than the payload holds.
    #[error(
        "RED block lengths overrun the payload: headers and redundant blocks need {need} bytes, \
         payload has {have} (RFC 2198 §3)"
    )]
    RedBlockOverrun {
        /// Bytes the headers and announced redundant blocks need.
        need: usize,
        /// Bytes received.
        have: usize,
    },
}
