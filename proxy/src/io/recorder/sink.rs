//! [`RecorderSink`]: what every recorder sink (`wav`, `rtp`, `siprec`) does, so
//! [`super::Recorders`] drives them alike: start a call, take its sanitized audio, finish it,
//! each counting its own sessions, bytes, drops and errors under its [`SinkKind`].
//!
//! [`super::Recorders`] owns what all sinks share: each call's timeline (where each direction's
//! audio goes in the call), the two-direction aligner (and the late-sample count it yields),
//! the recording's name and its JSON sidecar. A sink sees the call's audio twice, and takes
//! what it needs: per direction at its place in the call ([`RecorderSink::frame`]: the RTP
//! packetizers, SIPREC's hold and fallback), and as the aligned stereo stream
//! ([`RecorderSink::stereo`]: the WAV files).
//!
//! A sink keeps its own per-call state, keyed by [`CallRef`], and ignores calls it never
//! started: after a configuration reload the replaced sinks still receive every event (and
//! their datagrams and timers), and finish the calls they started.

use std::cell::OnceCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Sidecar;
use crate::core::proxy::{CallRef, Side};
use crate::core::siprec::RecordingInfo;
use crate::io::readiness::Readiness;
use crate::metrics::SinkKind;
use crate::redact::Redacted;

/// A datagram from a sink's own socket: (the sink's index in the recorder, bytes, source).
pub(super) type Datagram = (usize, Bytes, SocketAddr);

/// What a sink learns when a call starts.
pub(super) struct CallStart<'a> {
    /// The recording's name (`{start unix ms}-call{N}`), for files.
    pub(super) name: &'a str,
    /// Caller and callee as the sidecar shows them, and the start time.
    pub(super) info: &'a RecordingInfo,
}

/// What a sink learns when a call ends.
pub(super) struct CallEnd<'a> {
    /// The recording's name, as at the start.
    pub(super) name: &'a str,
    /// Some audio came: a call without media leaves no recording.
    pub(super) had_media: bool,
    /// The call's sidecar.
    pub(super) sidecar: &'a SidecarJson,
}

/// A call's JSON sidecar (spans, times, codecs; never digits), with the numbers hashed, and
/// serialized a second time with the numbers in clear only when a sink asks for it
/// (a `wav` sink with `hash_numbers = false`).
pub(super) struct SidecarJson {
    sidecar: Sidecar,
    numbers_clear: Redacted<(String, String)>,
    hashed: Vec<u8>,
    clear: OnceCell<Vec<u8>>,
}

impl SidecarJson {
    /// `sidecar` as it is (numbers hashed); `numbers_clear` the caller's and callee's numbers.
    pub(super) fn new(sidecar: Sidecar, numbers_clear: Redacted<(String, String)>) -> Self {
        let hashed = serde_json::to_vec_pretty(&sidecar).unwrap_or_default();
        SidecarJson {
            sidecar,
            numbers_clear,
            hashed,
            clear: OnceCell::new(),
        }
    }

    /// The JSON, numbers hashed (`hash_numbers`) or in clear.
    pub(super) fn json(&self, hash_numbers: bool) -> &[u8] {
        if hash_numbers {
            return &self.hashed;
        }
        self.clear.get_or_init(|| {
            let (from, to) = self.numbers_clear.expose();
            let mut clear = self.sidecar.clone();
            clear.from = from.clone();
            clear.to = to.clone();
            serde_json::to_vec_pretty(&clear).unwrap_or_default()
        })
    }
}

/// One configured `[[recorder]]`.
///
/// Audio comes by the [`Side`] it came from (the PBX side, the customer: the recording's left
/// channel; the agents' side: the right). Positions (`at`) are samples of the call at
/// [`super::RATE`] from its start.
pub(super) trait RecorderSink: Send {
    /// The `sink` label of its metrics.
    fn kind(&self) -> SinkKind;

    /// A reload whose list holds `r` keeps this sink as it is (a `siprec` sink whose
    /// settings did not change keeps its socket, sessions and probes); otherwise the reload
    /// replaces it.
    fn keeps(&self, _r: &config::RecorderConfig) -> bool {
        false
    }

    /// Inside the recorder's runtime: start the sink's background work (a retention sweeper,
    /// a socket reader). Datagrams it receives go to `datagrams` as `(address, …)`, `address`
    /// being unique to the sink for the recorder's life. Returns whether it will send any.
    fn activate(&mut self, _address: usize, _datagrams: &mpsc::Sender<Datagram>) -> bool {
        false
    }

    /// The address given to [`RecorderSink::activate`], if it sends datagrams.
    fn address(&self) -> Option<usize> {
        None
    }

    /// A reload replaced it: stop the work new calls needed (a sweeper, probes); what the
    /// calls in progress need (a socket reader) goes on until the sink is dropped.
    fn retire(&mut self) {
        self.deactivate();
    }

    /// Stop the background work (the recorder stops).
    fn deactivate(&mut self) {}

    /// A call starts (its session is counted as opened).
    fn start(&mut self, call: CallRef, start: &CallStart<'_>);

    /// Sanitized samples from side `from` at position `at`, as they arrive.
    fn frame(&mut self, _call: CallRef, _from: Side, _at: u64, _samples: &[i16]) {}

    /// The aligned stereo stream (interleaved little-endian 16-bit), as it is released.
    fn stereo(&mut self, _call: CallRef, _bytes: &[u8]) {}

    /// The call ended (its session is counted as closed once nothing is left to do); the
    /// handle of work that goes on (a file made final), if any.
    fn finish(&mut self, call: CallRef, end: &CallEnd<'_>) -> Option<JoinHandle<()>>;

    /// Calls it records now (a replaced sink is dropped when none is left).
    fn calls(&self) -> usize;

    /// When [`RecorderSink::handle_timeout`] must run (signalling timers).
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Timers.
    fn handle_timeout(&mut self, _now: Instant) {}

    /// A datagram it asked for in [`RecorderSink::activate`].
    fn handle_datagram(&mut self, _bytes: Bytes, _from: SocketAddr, _now: Instant) {}

    /// Report to `readiness` whether the sink can record now (a `siprec` sink whose SRSs all
    /// stopped answering and that has no fallback cannot).
    fn watch_readiness(&mut self, _readiness: &Arc<Readiness>) {}

    /// Sessions still closing (the recorder waits a moment for them at shutdown).
    fn closing(&self) -> usize {
        0
    }
}
