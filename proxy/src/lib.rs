//! callmask: the proxy library behind the `callmask` binary.
//!
//! - [`core`]: sans-IO protocol logic (SIP, SDP, relay decisions). Never reads the clock or
//!   touches a socket; fed with bytes and `Instant`s, it returns what to send.
//! - [`offline`]: the `callmask mask` sanitizer for recorded files.
#![deny(unsafe_code)]

pub mod core;
pub mod demo;
pub mod io;
pub mod logging;
pub mod metrics;
pub mod offline;
pub mod redact;
