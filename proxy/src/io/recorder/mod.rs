//! Recorder sinks: consume the sanitized tap (never raw audio) and record or forward it.
//!
//! Only [`TapFrame`](crate::core::media::tap::TapFrame) samples (sanitized 8 kHz PCM) and span times
//! ever leave this module: no sink writes or sends anything else.
//!
//! - `wav`: one stereo 8 kHz 16-bit WAV per call (left: the PBX side, i.e. the customer;
//!   right: the agents' side; whoever dialled, see the sidecar's `direction`), streamed to a
//!   temporary file while the call goes on ([`align`]: the two directions are interleaved as
//!   soon as both are known, or 2 s behind the one ahead, the other then silent), made final
//!   (sizes patched, fsync, rename) at call end, with a JSON sidecar of the masked spans
//!   (times and reasons, never digits). With `encrypt_to`, both are age-encrypted and named
//!   `NAME.wav.age` / `NAME.json.age`; the plaintext never touches the disk ([`wav`] explains
//!   how), and an encryption failure never falls back to plaintext. With `retention_days`, a
//!   sweeper deletes old recordings ([`retention`]). A failed write (ENOSPC sets
//!   `callmask_recorder_disk_full`) is counted and logged once for the call, the recording
//!   is abandoned and its temporary file removed; the proxy goes on. A later recording that
//!   completes clears the alarm.
//! - `rtp`: two sanitized RTP streams per call to the target ([`rtp`]: caller to the target
//!   port, agent to port + 2).
//! - `siprec`: an RFC 7866 recording session per call toward the first SRS of its list that
//!   answers, the two streams sent as the `rtp` sink sends them; a local `wav` file in
//!   `fallback_dir` when every SRS fails ([`siprec`]).
//!
//! Timeline: each direction's first audio is placed at its arrival time; after that, audio is
//! placed by its media time, plus the long gaps the media side announced ([`TapEvent::Skip`]),
//! so a gap of any length on either side is silence of that length at its place, the two
//! channels stay aligned, and the WAV lasts from the call's start to its end. A call that never
//! had media leaves no recording. Audio that arrives after its place was written is counted
//! (`callmask_recorder_dropped_samples_total`) and logged.
//!
//! Names: `{start unix ms}-call{N}` (N is callmask's internal call number, no SIP data).
//!
//! Each configured sink is a [`RecorderSink`] ([`sink`]); [`Recorders`] keeps what they share
//! (each call's timeline, the aligner, the name and the sidecar) and drives them alike.
#![allow(clippy::disallowed_methods)] // io shell: reads the clock

mod align;
pub mod retention;
mod rtp;
mod sink;
mod siprec;
mod wav;

pub use rtp::{load_srtp_key, SrtpKeyFileError};

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::media::tap::{CallMeta, TapEvent};
use crate::core::proxy::{CallRef, Side};
use crate::core::side::BySide;
use crate::core::siprec::RecordingInfo;
use crate::metrics::{Metrics, SinkKind};
use sink::{CallEnd, CallStart, Datagram, RecorderSink, SidecarJson};

/// The recordings' sample rate: the tap's (every codec is decoded to it, see
/// [`crate::core::codec::TAP_RATE`]), stated in each sidecar.
pub(crate) const RATE: dsp::SampleRate = dsp::SampleRate::NARROWBAND;

#[derive(Debug, Clone, Serialize)]
struct SpanOut {
    channel: &'static str,
    start_ms: f64,
    end_ms: f64,
    reason: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct Sidecar {
    version: u32,
    call: u64,
    sip_call_id: String,
    from: String,
    to: String,
    /// The dialog's tags (NG media-node mode only: the controller names them).
    #[serde(skip_serializing_if = "Option::is_none")]
    from_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_tag: Option<String>,
    codecs: Vec<String>,
    start_unix_ms: u128,
    end_unix_ms: u128,
    sample_rate: u32,
    channels: [&'static str; 2],
    /// Who dialled: `inbound` (the PBX side called an agent) or `outbound` (an agent called
    /// out through the PBX).
    direction: &'static str,
    spans: Vec<SpanOut>,
}

/// A hand-driven clock for tests: where each direction's first audio is placed in the
/// recording depends on when it arrives after the call's start.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        let us = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.0.fetch_add(us, Ordering::SeqCst);
    }
}

enum Clock {
    Real(Instant),
    Manual(ManualClock),
}

impl Clock {
    fn now(&self) -> Duration {
        match self {
            Clock::Real(origin) => origin.elapsed(),
            Clock::Manual(c) => Duration::from_micros(c.0.load(Ordering::SeqCst)),
        }
    }
}

/// Channel names, left then right (a [`BySide`]'s order): left is always the PBX side (the
/// customer), right the agents' side, whoever dialled (the sidecar's `direction` says who did).
const CHANNELS: [&str; 2] = ["customer", "agent"];

/// One direction's long gaps: from media time `at` on, audio belongs `cumulative` samples
/// later than its media time. Bounded: the oldest entries fold into `base`.
#[derive(Debug, Default)]
struct Timeline {
    /// Skips folded out of `skips` (all before every frame still to come).
    base: u64,
    /// `(at, cumulative extra from at on)`, `at` increasing.
    skips: std::collections::VecDeque<(u64, u64)>,
}

impl Timeline {
    /// Most skips remembered (a span ending before the oldest is placed with `base`).
    const MAX: usize = 256;

    fn skip(&mut self, at: u64, samples: u64) {
        let total = self.skips.back().map_or(self.base, |s| s.1) + samples;
        if self.skips.len() == Self::MAX {
            if let Some((_, c)) = self.skips.pop_front() {
                self.base = c;
            }
        }
        self.skips.push_back((at, total));
    }

    /// Extra samples for media time `t`, and where the next skip begins (after `t`).
    fn at(&self, t: u64) -> (u64, Option<u64>) {
        let i = self.skips.partition_point(|s| s.0 <= t);
        let extra = i
            .checked_sub(1)
            .and_then(|j| self.skips.get(j))
            .map_or(self.base, |s| s.1);
        (extra, self.skips.get(i).map(|s| s.0))
    }
}

/// One call being recorded.
struct CallRec {
    caller_side: Side,
    meta: CallMeta,
    started: Duration,
    start_unix_ms: u128,
    /// Per direction: offset (samples) from the call start to its media time 0.
    offsets: BySide<Option<u64>>,
    /// Per direction: the long gaps the media side skipped ([`TapEvent::Skip`]).
    timelines: BySide<Timeline>,
    /// Non-silent samples dropped by the aligner (their place was already written).
    dropped: u64,
    spans: Vec<SpanOut>,
    aligner: align::Aligner,
}

/// All configured sinks.
pub struct Recorders {
    /// The sinks new calls go to, in configuration order.
    sinks: Vec<Box<dyn RecorderSink>>,
    /// Sinks a reload replaced, kept until the calls they started end.
    retired: Vec<Box<dyn RecorderSink>>,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// The recorder path's constant delay (the look-ahead, 8 kHz samples): sanitized audio
    /// arrives this much after it was heard, so first frames are placed that much earlier.
    path_delay: u64,
    /// New `[[recorder]]` lists (configuration reload): sinks are rebuilt for calls that
    /// start afterwards, but a `siprec` sink whose settings did not change stays.
    reloads: Option<mpsc::UnboundedReceiver<Vec<config::RecorderConfig>>>,
    /// The next sink address (datagrams find their sink by it, retired sinks included).
    next_address: usize,
    /// Where new sinks report whether they can record.
    readiness: Option<Arc<crate::io::readiness::Readiness>>,
}

/// The sink a `[[recorder]]` entry describes (`None`: it cannot work, which is logged).
fn build_sink(r: &config::RecorderConfig, metrics: &Arc<Metrics>) -> Option<Box<dyn RecorderSink>> {
    match r {
        config::RecorderConfig::Wav(w) => Some(Box::new(wav::WavSink::new(w, metrics.clone()))),
        config::RecorderConfig::Rtp(r) => match resolve(r.target.host(), r.target.port()) {
            Some(addr) => {
                // Read again here (a reload checked it first): a key that no longer loads
                // leaves the sink out, never sending plain RTP in its place.
                let srtp = match r.srtp_key_file.as_deref().map(rtp::load_srtp_key) {
                    None => None,
                    Some(Ok(key)) => Some(key),
                    Some(Err(e)) => {
                        metrics.recorder().recorder_error(SinkKind::Rtp);
                        tracing::error!(
                            key = "recorder.srtp_key_file",
                            "rtp recorder: {e}; sink skipped"
                        );
                        return None;
                    }
                };
                Some(Box::new(rtp::RtpSink::new(addr, srtp, metrics.clone())))
            }
            None => {
                tracing::error!(
                    host = r.target.host(),
                    "rtp recorder: target does not resolve; sink skipped"
                );
                None
            }
        },
        config::RecorderConfig::Siprec(s) => siprec::SiprecSink::new(s, metrics.clone())
            .map(|s| Box::new(s) as Box<dyn RecorderSink>),
    }
}

/// How many sinks of `kind` are in `sinks`.
fn count(sinks: &[Box<dyn RecorderSink>], kind: SinkKind) -> usize {
    sinks.iter().filter(|s| s.kind() == kind).count()
}

impl Recorders {
    /// The sinks the config asks for (kinds not built yet are reported and skipped).
    pub fn from_config(cfg: &config::Config, metrics: Arc<Metrics>) -> Self {
        let sinks = cfg
            .recorders
            .iter()
            .filter_map(|r| build_sink(r, &metrics))
            .collect();
        Recorders {
            sinks,
            retired: Vec::new(),
            metrics,
            clock: Clock::Real(Instant::now()),
            path_delay: 0,
            reloads: None,
            next_address: 0,
            readiness: None,
        }
    }

    /// Sinks report to `readiness` whether they can record (`sinks_reachable`).
    pub fn with_readiness(mut self, readiness: &Arc<crate::io::readiness::Readiness>) -> Self {
        for s in &mut self.sinks {
            s.watch_readiness(readiness);
        }
        self.readiness = Some(readiness.clone());
        self
    }

    /// Activate `s` under a fresh address; whether it sends datagrams.
    fn activate(&mut self, s: &mut dyn RecorderSink, datagrams: &mpsc::Sender<Datagram>) -> bool {
        let address = self.next_address;
        self.next_address += 1;
        s.activate(address, datagrams)
    }

    /// Take new `[[recorder]]` lists from `rx` while running (configuration reloads).
    pub fn with_reloads(
        mut self,
        rx: mpsc::UnboundedReceiver<Vec<config::RecorderConfig>>,
    ) -> Self {
        self.reloads = Some(rx);
        self
    }

    /// Swap in the sinks of `list` for calls that start from now on: a `siprec` sink whose
    /// settings did not change stays as it is; the others are built anew, and the sinks
    /// they replace finish the calls in progress (their work for new calls, such as a
    /// retention sweeper or SRS probes, stops now). Returns whether a new sink sends
    /// datagrams.
    fn reload(
        &mut self,
        list: &[config::RecorderConfig],
        datagrams: &mpsc::Sender<Datagram>,
    ) -> bool {
        let mut old = std::mem::take(&mut self.sinks);
        let mut sinks: Vec<Box<dyn RecorderSink>> = Vec::new();
        let (mut kept, mut sip) = (0, false);
        for r in list {
            if let Some(i) = old.iter().position(|s| s.keeps(r)) {
                sinks.push(old.remove(i));
                kept += 1;
                continue;
            }
            if let Some(mut s) = build_sink(r, &self.metrics) {
                if let Some(readiness) = &self.readiness {
                    s.watch_readiness(readiness);
                }
                sip |= self.activate(s.as_mut(), datagrams);
                sinks.push(s);
            }
        }
        for s in &mut old {
            s.retire();
        }
        old.retain(|s| s.calls() > 0);
        self.retired.extend(old);
        tracing::info!(
            wav = count(&sinks, SinkKind::Wav),
            rtp = count(&sinks, SinkKind::Rtp),
            siprec = count(&sinks, SinkKind::Siprec),
            siprec_kept = kept,
            "recorder sinks reloaded: calls that start from now on use them"
        );
        self.sinks = sinks;
        sip
    }

    /// Frames come through a look-ahead of `ms` (the live proxy's recorder path): a call's
    /// recording starts when its media did, not one look-ahead later.
    pub fn with_path_delay_ms(mut self, ms: u32) -> Self {
        self.path_delay = RATE.samples_in_ms(u64::from(ms));
        self
    }

    /// Place each direction's first audio by `clock` instead of the real time (tests).
    pub fn with_clock(mut self, clock: ManualClock) -> Self {
        self.clock = Clock::Manual(clock);
        self
    }

    /// No sink configured: the tap can be switched off.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Consume the tap until every sender is gone; then finish the calls still open and wait
    /// for every recording to be final. SIPREC signalling (datagrams, timers) is driven from
    /// the same loop.
    pub async fn run(mut self, mut rx: mpsc::Receiver<TapEvent>) {
        let mut reloads = self.reloads.take();
        let (sip_tx, mut sip_rx) = mpsc::channel::<Datagram>(1024);
        let mut has_sip = false;
        let mut sinks = std::mem::take(&mut self.sinks);
        for s in &mut sinks {
            has_sip |= self.activate(s.as_mut(), &sip_tx);
        }
        self.sinks = sinks;
        let mut calls: HashMap<CallRef, CallRec> = HashMap::new();
        let mut finishing: Vec<JoinHandle<()>> = Vec::new();
        // One timer for the SIPREC deadlines, re-armed only when the deadline moves.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            let deadline = self.deadline();
            if deadline != armed {
                if let Some(d) = deadline {
                    timer.as_mut().reset(tokio::time::Instant::from_std(d));
                }
                armed = deadline;
            }
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.handle_tap(ev, &mut calls, &mut finishing),
                    None => break,
                },
                list = async {
                    match &mut reloads {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => match list {
                    Some(list) => has_sip |= self.reload(&list, &sip_tx),
                    None => reloads = None,
                },
                Some((i, bytes, from)) = sip_rx.recv(), if has_sip => {
                    self.datagram(i, bytes, from);
                }
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.timeout();
                }
            }
        }
        let open: Vec<(CallRef, CallRec)> = calls.drain().collect();
        for (call, rec) in open {
            finishing.extend(self.finish(call, rec, None));
        }
        // Shutdown: give the SRSs a moment to answer our BYEs (retransmitted meanwhile).
        let until = Instant::now() + Duration::from_secs(2);
        while has_sip
            && self
                .sinks
                .iter()
                .chain(&self.retired)
                .any(|s| s.closing() > 0)
            && Instant::now() < until
        {
            let deadline = self.deadline().map_or(until, |d| d.min(until));
            tokio::select! {
                Some((i, bytes, from)) = sip_rx.recv() => self.datagram(i, bytes, from),
                () = sleep_until(Some(deadline)) => self.timeout(),
            }
        }
        for h in finishing {
            let _ = h.await;
        }
        for s in self.sinks.iter_mut().chain(&mut self.retired) {
            s.deactivate();
        }
    }

    /// The sinks' next timer.
    fn deadline(&self) -> Option<Instant> {
        self.sinks
            .iter()
            .chain(&self.retired)
            .filter_map(|s| s.poll_timeout())
            .min()
    }

    /// The sinks' timers are due.
    fn timeout(&mut self) {
        let now = Instant::now();
        for s in self.sinks.iter_mut().chain(&mut self.retired) {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
    }

    /// A datagram for the sink at `address` (a retired one included).
    fn datagram(&mut self, address: usize, bytes: bytes::Bytes, from: SocketAddr) {
        if let Some(s) = self
            .sinks
            .iter_mut()
            .chain(&mut self.retired)
            .find(|s| s.address() == Some(address))
        {
            s.handle_datagram(bytes, from, Instant::now());
        }
    }

    fn handle_tap(
        &mut self,
        ev: TapEvent,
        calls: &mut HashMap<CallRef, CallRec>,
        finishing: &mut Vec<JoinHandle<()>>,
    ) {
        match ev {
            TapEvent::Start {
                call,
                caller_side,
                meta,
            } => {
                if let Some(old) = calls.remove(&call) {
                    finishing.extend(self.finish(call, old, None));
                }
                let rec = self.start(call, caller_side, meta);
                calls.insert(call, rec);
            }
            TapEvent::Frame(f) => {
                let Some(rec) = calls.get_mut(&f.call) else {
                    return;
                };
                let from = f.from;
                let samples = f.samples();
                let offset = *rec.offsets[from].get_or_insert_with(|| {
                    // First audio of this direction: place it at its arrival time.
                    let since = RATE.samples_in_ms(
                        (self.clock.now().saturating_sub(rec.started)).as_millis() as u64,
                    );
                    since
                        .saturating_sub(self.path_delay)
                        .saturating_sub(f.media_time.0)
                });
                // Split where a skipped gap begins: each part goes to its place in the call.
                let mut k = 0;
                while k < samples.len() {
                    let t = f.media_time.0 + k as u64;
                    let (extra, next) = rec.timelines[from].at(t);
                    let end = next.map_or(samples.len(), |b| {
                        usize::try_from(b - f.media_time.0)
                            .map_or(samples.len(), |e| e.min(samples.len()))
                    });
                    let part = &samples[k..end];
                    let pos = offset + t + extra;
                    for s in self.sinks.iter_mut().chain(&mut self.retired) {
                        s.frame(f.call, from, pos, part);
                    }
                    let (sinks, retired) = (&mut self.sinks, &mut self.retired);
                    let dropped = rec.aligner.put(from, pos, part, &mut |bytes| {
                        for s in sinks.iter_mut().chain(retired.iter_mut()) {
                            s.stereo(f.call, bytes);
                        }
                    });
                    let lost = part[..dropped as usize].iter().filter(|&&x| x != 0).count() as u64;
                    if lost > 0 {
                        rec.dropped += lost;
                        self.metrics.recorder().recorder_dropped_samples(lost);
                    }
                    k = end;
                }
            }
            TapEvent::Skip {
                call,
                from,
                at,
                samples,
            } => {
                if let Some(rec) = calls.get_mut(&call) {
                    rec.timelines[from].skip(at, samples);
                }
            }
            TapEvent::Span {
                call,
                from,
                start,
                end,
                reason,
            } => {
                if let Some(rec) = calls.get_mut(&call) {
                    let off = rec.offsets[from].unwrap_or(0);
                    let tl = &rec.timelines[from];
                    rec.spans.push(SpanOut {
                        channel: CHANNELS[from.index()],
                        start_ms: RATE.ms_of(start.0 + off + tl.at(start.0).0),
                        end_ms: RATE.ms_of(end.0 + off + tl.at(end.0.saturating_sub(1)).0),
                        reason: reason.as_str(),
                    });
                }
            }
            TapEvent::Codecs { call, codecs } => {
                if let Some(rec) = calls.get_mut(&call) {
                    rec.meta.codecs = codecs;
                }
            }
            TapEvent::End { call, length } => {
                // Both directions' relay tasks send End; finish on the first, keep
                // accepting nothing after.
                if let Some(rec) = calls.remove(&call) {
                    finishing.retain(|h| !h.is_finished());
                    finishing.extend(self.finish(call, rec, length));
                }
            }
        }
    }

    fn start(&mut self, call: CallRef, caller_side: Side, meta: CallMeta) -> CallRec {
        let start_unix_ms = unix_ms();
        let name = recording_name(start_unix_ms, call);
        // SIPREC stream 1 carries the PBX side's audio whoever dialled, so the metadata's
        // first participant is the PBX side's party: the callee when an agent dialled out.
        let (customer, agent) = match caller_side {
            Side::Pbx => (meta.from.clone(), meta.to.clone()),
            Side::Agents => (meta.to.clone(), meta.from.clone()),
        };
        let info = RecordingInfo {
            customer,
            agent,
            start_unix_ms,
        };
        let start = CallStart {
            name: &name,
            info: &info,
        };
        for s in &mut self.sinks {
            s.start(call, &start);
        }
        CallRec {
            caller_side,
            meta,
            started: self.clock.now(),
            start_unix_ms,
            offsets: BySide::default(),
            timelines: BySide::default(),
            dropped: 0,
            spans: Vec::new(),
            aligner: align::Aligner::default(),
        }
    }

    /// Close the call on every sink that recorded it; the handles of the work that goes on
    /// (WAV files made final on blocking threads).
    fn finish(
        &mut self,
        call: CallRef,
        rec: CallRec,
        length: Option<Duration>,
    ) -> Vec<JoinHandle<()>> {
        let CallRec {
            start_unix_ms,
            caller_side,
            started,
            meta,
            spans,
            offsets,
            dropped,
            mut aligner,
            ..
        } = rec;
        if dropped > 0 {
            tracing::warn!(
                call = call.0,
                samples = dropped,
                "recording misses audio that arrived after its place in the file was written"
            );
        }
        let had_media = offsets.iter().any(|(_, o)| o.is_some());
        if !had_media {
            // Issue 12: a call that never had media (407, 408, 487, 488) leaves no empty
            // recording behind (the sinks drop their files).
            tracing::debug!(call = call.0, "no media: no recording");
        }
        // The WAV lasts as long as the call (silence after the last audio if the call went
        // on without media), however the last frames were placed.
        let length = length.unwrap_or_else(|| self.clock.now().saturating_sub(started));
        let call_len = RATE.samples_in_ms(length.as_millis() as u64);
        let flush_to = if had_media { call_len } else { 0 };
        let (sinks, retired) = (&mut self.sinks, &mut self.retired);
        aligner.flush_to(flush_to, &mut |bytes| {
            for s in sinks.iter_mut().chain(retired.iter_mut()) {
                s.stereo(call, bytes);
            }
        });
        let sidecar = Sidecar {
            version: 2,
            call: call.0,
            sip_call_id: meta.sip_call_id,
            from: meta.from,
            to: meta.to,
            from_tag: meta.tags.as_ref().map(|t| t.from_tag.clone()),
            to_tag: meta.tags.map(|t| t.to_tag),
            codecs: meta.codecs,
            start_unix_ms,
            end_unix_ms: unix_ms(),
            sample_rate: RATE.hz(),
            channels: CHANNELS,
            direction: if caller_side == Side::Pbx {
                "inbound"
            } else {
                "outbound"
            },
            spans,
        };
        let name = recording_name(start_unix_ms, call);
        let sidecar = SidecarJson::new(sidecar, meta.numbers_clear);
        let end = CallEnd {
            name: &name,
            had_media,
            sidecar: &sidecar,
        };
        let handles = self
            .sinks
            .iter_mut()
            .chain(&mut self.retired)
            .filter_map(|s| s.finish(call, &end))
            .collect();
        self.retired.retain(|s| s.calls() > 0);
        handles
    }
}

/// Sleep until `t`; forever for `None`.
async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

fn recording_name(start_unix_ms: u128, call: CallRef) -> String {
    format!("{start_unix_ms}-call{}", call.0)
}

/// `host:port` as a socket address (IP literals directly; names resolved once, at startup).
fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    (host, port).to_socket_addrs().ok()?.next()
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::core::media::tap::{TapFrame, TAP_FRAME_MAX};
    use crate::redact::Redacted;

    /// A sink that writes down what [`Recorders`] tells it.
    struct Fake {
        log: Arc<Mutex<Vec<String>>>,
        calls: Vec<CallRef>,
        /// Stereo bytes received, per call.
        stereo: HashMap<CallRef, usize>,
    }

    impl RecorderSink for Fake {
        fn kind(&self) -> SinkKind {
            SinkKind::Wav
        }

        fn deactivate(&mut self) {
            self.log.lock().unwrap().push("deactivate".into());
        }

        fn start(&mut self, call: CallRef, start: &CallStart<'_>) {
            self.calls.push(call);
            self.log.lock().unwrap().push(format!(
                "start {} {}",
                call.0,
                start.name.ends_with(&format!("-call{}", call.0))
            ));
        }

        fn frame(&mut self, call: CallRef, from: Side, at: u64, samples: &[i16]) {
            if self.calls.contains(&call) {
                let from = from.as_str();
                let line = format!("frame {} {from} at{at} n{}", call.0, samples.len());
                self.log.lock().unwrap().push(line);
            }
        }

        fn stereo(&mut self, call: CallRef, bytes: &[u8]) {
            if self.calls.contains(&call) {
                *self.stereo.entry(call).or_default() += bytes.len();
            }
        }

        fn finish(&mut self, call: CallRef, end: &CallEnd<'_>) -> Option<JoinHandle<()>> {
            let i = self.calls.iter().position(|c| *c == call)?;
            self.calls.remove(i);
            let hashed = String::from_utf8_lossy(end.sidecar.json(true)).contains("h:from");
            let clear = String::from_utf8_lossy(end.sidecar.json(false)).contains("5551234");
            let line = format!(
                "finish {} media={} stereo={} hashed={hashed} clear={clear}",
                call.0,
                end.had_media,
                self.stereo.remove(&call).unwrap_or(0),
            );
            self.log.lock().unwrap().push(line);
            None
        }

        fn calls(&self) -> usize {
            self.calls.len()
        }
    }

    fn frame(call: u64, from: Side, at: u64, n: usize) -> TapEvent {
        let mut pcm = [0i16; TAP_FRAME_MAX];
        pcm[..n].fill(100);
        TapEvent::Frame(Box::new(TapFrame {
            call: CallRef(call),
            from,
            media_time: dsp::MediaTime(at),
            len: n,
            pcm,
        }))
    }

    fn start(call: u64) -> TapEvent {
        TapEvent::Start {
            call: CallRef(call),
            caller_side: Side::Pbx,
            meta: CallMeta {
                from: "h:from".into(),
                numbers_clear: Redacted::new(("5551234".into(), "200".into())),
                ..CallMeta::default()
            },
        }
    }

    /// Every sink gets a call's start, its audio per direction at its place and as the aligned
    /// stereo stream, and its end with the sidecar; a sink a reload replaced stops its
    /// background work at once, gets no new call, finishes the call it has, and is dropped.
    #[test]
    fn sinks_are_driven_alike_and_a_replaced_sink_finishes_its_calls() {
        let metrics = Arc::new(Metrics::new());
        let cfg = config::Config::default();
        let clock = ManualClock::new();
        let mut rec = Recorders::from_config(&cfg, metrics).with_clock(clock.clone());
        assert!(rec.is_empty());
        let log = Arc::new(Mutex::new(Vec::new()));
        rec.sinks.push(Box::new(Fake {
            log: log.clone(),
            calls: Vec::new(),
            stereo: HashMap::new(),
        }));
        let (mut calls, mut finishing) = (HashMap::new(), Vec::new());
        rec.handle_tap(start(1), &mut calls, &mut finishing);
        rec.handle_tap(frame(1, Side::Pbx, 0, 160), &mut calls, &mut finishing);
        clock.advance(Duration::from_millis(20));
        rec.handle_tap(frame(1, Side::Agents, 0, 160), &mut calls, &mut finishing);
        let (tx, _rx) = mpsc::channel(1);
        let _ = rec.reload(&[], &tx);
        assert!(rec.is_empty(), "the replaced sink takes no new call");
        assert_eq!(rec.retired.len(), 1, "kept: its call goes on");
        rec.handle_tap(start(2), &mut calls, &mut finishing);
        rec.handle_tap(frame(1, Side::Pbx, 160, 160), &mut calls, &mut finishing);
        rec.handle_tap(frame(2, Side::Pbx, 0, 160), &mut calls, &mut finishing);
        clock.advance(Duration::from_millis(20));
        let end = |call| TapEvent::End {
            call: CallRef(call),
            length: Some(Duration::from_millis(40)),
        };
        rec.handle_tap(end(1), &mut calls, &mut finishing);
        assert!(rec.retired.is_empty(), "dropped with its last call");
        rec.handle_tap(end(2), &mut calls, &mut finishing);
        assert_eq!(
            *log.lock().unwrap(),
            [
                "start 1 true",
                "frame 1 pbx at0 n160",
                // the agent's first audio 20 ms after the call's start
                "frame 1 agents at160 n160",
                "deactivate",
                "frame 1 pbx at160 n160",
                // 40 ms of stereo: 320 samples × 2 channels × 2 bytes
                "finish 1 media=true stereo=1280 hashed=true clear=true",
            ]
        );
    }

    /// Who the SIPREC metadata names as the sender of each stream: stream 1 carries the PBX
    /// side's audio whoever dialled, so its participant is the PBX side's party — the callee
    /// (To) when an agent dialled out.
    #[test]
    fn siprec_participants_follow_the_sides_not_who_dialled() {
        struct Parties(Arc<Mutex<Vec<(String, String)>>>);
        impl RecorderSink for Parties {
            fn kind(&self) -> SinkKind {
                SinkKind::Siprec
            }
            fn start(&mut self, _call: CallRef, start: &CallStart<'_>) {
                let i = start.info;
                self.0
                    .lock()
                    .unwrap()
                    .push((i.customer.clone(), i.agent.clone()));
            }
            fn finish(&mut self, _call: CallRef, _end: &CallEnd<'_>) -> Option<JoinHandle<()>> {
                None
            }
            fn calls(&self) -> usize {
                0
            }
        }
        let metrics = Arc::new(Metrics::new());
        let mut rec = Recorders::from_config(&config::Config::default(), metrics);
        let seen = Arc::new(Mutex::new(Vec::new()));
        rec.sinks.push(Box::new(Parties(seen.clone())));
        let (mut calls, mut finishing) = (HashMap::new(), Vec::new());
        for (call, caller_side) in [(1, Side::Pbx), (2, Side::Agents)] {
            let ev = TapEvent::Start {
                call: CallRef(call),
                caller_side,
                meta: CallMeta {
                    from: "h:dialler".into(),
                    to: "h:dialled".into(),
                    ..CallMeta::default()
                },
            };
            rec.handle_tap(ev, &mut calls, &mut finishing);
        }
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            *seen.lock().unwrap(),
            [
                pair("h:dialler", "h:dialled"),
                // The agent dialled: the customer is the callee.
                pair("h:dialled", "h:dialler"),
            ]
        );
    }
}
