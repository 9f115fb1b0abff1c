//! Thin tokio drivers: the only place that touches sockets and reads the clock.
//!
//! - [`signalling`]: SIP over UDP for both sides around the sans-IO [`crate::core::proxy`].
//! - [`media`]: per-call RTP/RTCP relay tasks and the recorder tap.
//! - [`recorder`]: recorder sinks fed only with sanitized audio.
//! - [`http`]: metrics, health and the control API.
//! - [`run`]: `callmask run` wiring.

pub mod calls;
pub mod http;
pub mod media;
pub mod recorder;
pub mod run;
pub mod signalling;
pub mod sip_stream;
pub mod speech;
