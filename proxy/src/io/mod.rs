//! Thin tokio drivers: the only place that touches sockets and reads the clock.
//!
//! - [`signalling`]: SIP over UDP for both sides around the sans-IO [`crate::core::proxy`];
//!   [`sip_stream`] its TCP and TLS connections, [`sip_tls`] a TLS side's rustls settings.
//! - [`media`]: per-call RTP/RTCP relay tasks (sockets + loop around
//!   [`crate::core::media::CallMedia`]) and the recorder tap.
//! - [`media_workers`]: the media worker threads that own those tasks.
//! - [`recorder`]: recorder sinks fed only with sanitized audio.
//! - [`http`]: metrics, health and the control API (serving [`calls`] and [`readiness`]).
//! - [`calls`]: call control: the live call table, the control API's vocabulary, the audit of
//!   secure-mode changes.
//! - [`readiness`]: the flags behind `/readyz`.
//! - [`speech`]: the recognizer worker pool and per-call spoken-identifier glue.
//! - [`ng`]: media-node mode: the NG control socket around [`crate::core::ng`].
//! - [`run`]: `callmask run` wiring.

pub mod calls;
pub mod http;
pub mod media;
pub mod media_workers;
pub mod ng;
pub mod readiness;
pub mod recorder;
pub mod run;
pub mod signalling;
pub mod sip_stream;
pub mod sip_tls;
pub mod speech;
pub mod state;
