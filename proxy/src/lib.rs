//! callmask: the proxy library behind the `callmask` binary.
//!
//! - [`core`]: sans-IO protocol logic (SIP, SDP, relay decisions). Never reads the clock or
//!   touches a socket; fed with bytes and `Instant`s, it returns what to send.
//! - [`io`]: the tokio shells around the core (sockets, clock, threads) and `callmask run`.
//! - [`offline`]: the `callmask mask` sanitizer for recorded files (the command only).
//! - [`speech`]: recognizer adapters and masker settings shared by `io` and `offline`.
//! - [`audio`]: the audio files `callmask mask` reads and writes.
#![deny(unsafe_code)]

pub mod audio;
pub mod core;
pub mod demo;
pub mod io;
pub mod logging;
pub mod metrics;
pub mod offline;
pub mod redact;
pub mod speech;
