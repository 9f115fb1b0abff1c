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
#![allow(clippy::disallowed_methods)] // io shell: reads the clock

mod align;
pub mod retention;
mod rtp;
mod siprec;
mod wav;

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use age::x25519;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::media::tap::{CallMeta, TapEvent};
use crate::core::proxy::{CallRef, Side};
use crate::core::siprec::RecordingInfo;
use crate::metrics::{Metrics, SinkKind};

/// The recordings' sample rate: the tap's (every codec is decoded to it, see
/// [`crate::core::codec::TAP_RATE`]), stated in each sidecar.
pub(crate) const RATE: dsp::SampleRate = dsp::SampleRate::NARROWBAND;

#[derive(Debug, Serialize)]
struct SpanOut {
    channel: &'static str,
    start_ms: f64,
    end_ms: f64,
    reason: &'static str,
}

#[derive(Debug, Serialize)]
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

/// A configured `wav` sink.
struct WavSink {
    dir: PathBuf,
    recipients: Vec<x25519::Recipient>,
    /// `encrypt_to` named a recipient that is not a usable X25519 key: record nothing (never
    /// plaintext), count an error per call.
    broken: bool,
    retention_days: Option<u16>,
    /// `hash_numbers` (default true): the sidecar carries keyed hashes, not numbers.
    hash_numbers: bool,
}

/// Channel names, left then right: left is always the PBX side (the customer), right the
/// agents' side, whoever dialled (the sidecar's `direction` says who did).
const CHANNELS: [&str; 2] = ["customer", "agent"];

/// The WAV channel of audio from `side`.
fn channel_of(side: Side) -> usize {
    usize::from(side == Side::Agents)
}

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
    /// Per direction (0 = caller, 1 = agent): offset (samples) from the call start to its
    /// media time 0.
    offsets: [Option<u64>; 2],
    /// Per direction: the long gaps the media side skipped ([`TapEvent::Skip`]).
    timelines: [Timeline; 2],
    /// Non-silent samples dropped by the aligner (their place was already written).
    dropped: u64,
    spans: Vec<SpanOut>,
    aligner: align::Aligner,
    /// The `wav` sinks as configured when the call started (a reload changes later calls).
    sinks: Vec<Arc<WavSink>>,
    /// Per `wav` sink; `None` once it failed (the failure was counted and logged).
    wavs: Vec<Option<wav::WavFile>>,
    /// Per `rtp` sink; `None` if it could not be opened.
    rtps: Vec<Option<rtp::RtpCall>>,
    rtp_error_logged: bool,
}

/// All configured sinks.
pub struct Recorders {
    wav: Vec<Arc<WavSink>>,
    rtp: Vec<rtp::Target>,
    siprec: Vec<siprec::SiprecSink>,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// The recorder path's constant delay (the look-ahead, 8 kHz samples): sanitized audio
    /// arrives this much after it was heard, so first frames are placed that much earlier.
    path_delay: u64,
    /// New `[[recorder]]` lists (configuration reload): the `wav` and `rtp` sinks are rebuilt
    /// for calls that start afterwards; `siprec` sinks stay (a reload may not change them).
    reloads: Option<mpsc::UnboundedReceiver<Vec<config::RecorderConfig>>>,
}

/// The `wav` and `rtp` sinks of a `[[recorder]]` list (other kinds skipped).
fn file_and_rtp_sinks(list: &[config::RecorderConfig]) -> (Vec<Arc<WavSink>>, Vec<rtp::Target>) {
    let mut wav_sinks = Vec::new();
    let mut rtp_targets = Vec::new();
    for r in list {
        match r {
            config::RecorderConfig::Wav(w) => {
                let (recipients, broken) = age_recipients(&w.encrypt_to, &w.dir, "wav");
                wav_sinks.push(Arc::new(WavSink {
                    dir: w.dir.clone(),
                    recipients,
                    broken,
                    retention_days: w.retention_days.map(|d| d.get()),
                    hash_numbers: w.hash_numbers,
                }));
            }
            config::RecorderConfig::Rtp(r) => match resolve(r.target.host(), r.target.port()) {
                Some(addr) => rtp_targets.push(rtp::Target::new(addr)),
                None => {
                    tracing::error!(
                        host = r.target.host(),
                        "rtp recorder: target does not resolve; sink skipped"
                    )
                }
            },
            config::RecorderConfig::Siprec(_) => {}
        }
    }
    (wav_sinks, rtp_targets)
}

impl Recorders {
    /// The sinks the config asks for (kinds not built yet are reported and skipped).
    pub fn from_config(cfg: &config::Config, metrics: Arc<Metrics>) -> Self {
        let (wav_sinks, rtp_targets) = file_and_rtp_sinks(&cfg.recorders);
        let mut siprec_sinks = Vec::new();
        for r in &cfg.recorders {
            if let config::RecorderConfig::Siprec(s) = r {
                if let Some(sink) = siprec::SiprecSink::new(siprec_sinks.len(), s, metrics.clone())
                {
                    siprec_sinks.push(sink);
                }
            }
        }
        Recorders {
            wav: wav_sinks,
            rtp: rtp_targets,
            siprec: siprec_sinks,
            metrics,
            clock: Clock::Real(Instant::now()),
            path_delay: 0,
            reloads: None,
        }
    }

    /// Take new `[[recorder]]` lists from `rx` while running (configuration reloads).
    pub fn with_reloads(
        mut self,
        rx: mpsc::UnboundedReceiver<Vec<config::RecorderConfig>>,
    ) -> Self {
        self.reloads = Some(rx);
        self
    }

    /// The retention sweepers of the `wav` sinks that have `retention_days`.
    fn spawn_sweepers(&self) -> Vec<JoinHandle<()>> {
        self.wav
            .iter()
            .filter_map(|w| {
                let days = w.retention_days?;
                Some(tokio::spawn(retention::sweeper(
                    w.dir.clone(),
                    days,
                    self.metrics.clone(),
                )))
            })
            .collect()
    }

    /// Swap in the `wav` and `rtp` sinks of `list` for calls that start from now on (calls
    /// in progress finish with the sinks they started with).
    fn reload(&mut self, list: &[config::RecorderConfig], sweepers: &mut Vec<JoinHandle<()>>) {
        let (wav, rtp) = file_and_rtp_sinks(list);
        self.wav = wav;
        self.rtp = rtp;
        for h in sweepers.drain(..) {
            h.abort();
        }
        *sweepers = self.spawn_sweepers();
        tracing::info!(
            wav = self.wav.len(),
            rtp = self.rtp.len(),
            "recorder sinks reloaded: calls that start from now on use them"
        );
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
        self.wav.is_empty() && self.rtp.is_empty() && self.siprec.is_empty()
    }

    /// Consume the tap until every sender is gone; then finish the calls still open and wait
    /// for every recording to be final. SIPREC signalling (datagrams, timers) is driven from
    /// the same loop.
    pub async fn run(mut self, mut rx: mpsc::Receiver<TapEvent>) {
        let mut sweepers = self.spawn_sweepers();
        let mut reloads = self.reloads.take();
        let (sip_tx, mut sip_rx) = mpsc::channel::<siprec::Datagram>(1024);
        let readers: Vec<JoinHandle<()>> = self
            .siprec
            .iter_mut()
            .filter_map(|s| s.activate(sip_tx.clone()))
            .collect();
        drop(sip_tx);
        let has_sip = !readers.is_empty();
        let mut calls: HashMap<CallRef, CallRec> = HashMap::new();
        let mut finishing: Vec<JoinHandle<()>> = Vec::new();
        // One timer for the SIPREC deadlines, re-armed only when the deadline moves.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            let deadline = self.siprec_deadline();
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
                    Some(list) => self.reload(&list, &mut sweepers),
                    None => reloads = None,
                },
                Some((i, bytes, from)) = sip_rx.recv(), if has_sip => {
                    if let Some(s) = self.siprec.get_mut(i) {
                        s.handle_datagram(bytes, from, Instant::now());
                    }
                }
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    let now = Instant::now();
                    for s in &mut self.siprec {
                        s.handle_timeout(now);
                    }
                }
            }
        }
        let open: Vec<(CallRef, CallRec)> = calls.drain().collect();
        for (call, rec) in open {
            finishing.extend(self.finish(call, rec, None));
        }
        // Shutdown: give the SRSs a moment to answer our BYEs (retransmitted meanwhile).
        let until = Instant::now() + Duration::from_secs(2);
        while has_sip && self.siprec.iter().any(|s| s.closing() > 0) && Instant::now() < until {
            let deadline = self.siprec_deadline().map_or(until, |d| d.min(until));
            tokio::select! {
                Some((i, bytes, from)) = sip_rx.recv() => {
                    if let Some(s) = self.siprec.get_mut(i) {
                        s.handle_datagram(bytes, from, Instant::now());
                    }
                }
                () = sleep_until(Some(deadline)) => {
                    let now = Instant::now();
                    for s in &mut self.siprec {
                        s.handle_timeout(now);
                    }
                }
            }
        }
        for h in finishing {
            let _ = h.await;
        }
        for h in sweepers.into_iter().chain(readers) {
            h.abort();
        }
    }

    fn siprec_deadline(&self) -> Option<Instant> {
        self.siprec.iter().filter_map(|s| s.poll_timeout()).min()
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
                let ch = channel_of(f.from);
                let samples = f.samples();
                let offset = *rec.offsets[ch].get_or_insert_with(|| {
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
                    let (extra, next) = rec.timelines[ch].at(t);
                    let end = next.map_or(samples.len(), |b| {
                        usize::try_from(b - f.media_time.0)
                            .map_or(samples.len(), |e| e.min(samples.len()))
                    });
                    let part = &samples[k..end];
                    let pos = offset + t + extra;
                    self.rtp_frame(f.call, rec, ch, pos, part);
                    for s in &mut self.siprec {
                        s.frame(f.call, ch, pos, part);
                    }
                    let CallRec { aligner, wavs, .. } = rec;
                    let metrics = &self.metrics;
                    let dropped = aligner.put(ch, pos, part, &mut |bytes| {
                        write_wavs(wavs, bytes, metrics, f.call)
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
                    rec.timelines[channel_of(from)].skip(at, samples);
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
                    let ch = channel_of(from);
                    let off = rec.offsets[ch].unwrap_or(0);
                    let tl = &rec.timelines[ch];
                    rec.spans.push(SpanOut {
                        channel: CHANNELS[ch],
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
        for s in &mut self.siprec {
            let info = RecordingInfo {
                caller: meta.from.clone(),
                callee: meta.to.clone(),
                start_unix_ms,
            };
            s.start(call, name.clone(), info);
        }
        let sinks = self.wav.clone();
        let wavs = sinks
            .iter()
            .map(|sink| {
                self.metrics
                    .recorder()
                    .recorder_session_opened(SinkKind::Wav);
                if sink.broken {
                    self.metrics.recorder().recorder_error(SinkKind::Wav);
                    return None;
                }
                match wav::WavFile::create(&sink.dir, &name, &sink.recipients) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        self.write_failed(call, &e);
                        None
                    }
                }
            })
            .collect();
        let rtps = self
            .rtp
            .iter()
            .map(|t| {
                self.metrics.recorder().recorder_session_opened(SinkKind::Rtp);
                match rtp::RtpCall::open(*t) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        self.metrics.recorder().recorder_error(SinkKind::Rtp);
                        tracing::error!(call = call.0, error = %e, "rtp recorder: cannot open a socket for the call");
                        None
                    }
                }
            })
            .collect();
        CallRec {
            caller_side,
            meta,
            started: self.clock.now(),
            start_unix_ms,
            offsets: [None, None],
            timelines: [Timeline::default(), Timeline::default()],
            dropped: 0,
            spans: Vec::new(),
            aligner: align::Aligner::default(),
            sinks,
            wavs,
            rtps,
            rtp_error_logged: false,
        }
    }

    fn rtp_frame(&self, call: CallRef, rec: &mut CallRec, ch: usize, at: u64, samples: &[i16]) {
        for r in rec.rtps.iter_mut().flatten() {
            let sent = r.frame(ch, at, samples);
            self.rtp_account(call, sent, &mut rec.rtp_error_logged);
        }
    }

    fn rtp_account(&self, call: CallRef, sent: rtp::Sent, logged: &mut bool) {
        sent.account(&self.metrics, SinkKind::Rtp, call, logged);
    }

    fn write_failed(&self, call: CallRef, e: &std::io::Error) {
        record_failure(&self.metrics, call, e);
    }

    /// Close the call on every sink; the WAV files are made final on a blocking thread.
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
            sinks,
            mut wavs,
            mut rtps,
            mut rtp_error_logged,
            ..
        } = rec;
        if dropped > 0 {
            tracing::warn!(
                call = call.0,
                samples = dropped,
                "recording misses audio that arrived after its place in the file was written"
            );
        }
        let had_media = offsets.iter().any(Option::is_some);
        if !had_media {
            // Issue 12: a call that never had media (407, 408, 487, 488) leaves no empty
            // recording behind; dropping the files removes their temporary names.
            wavs.clear();
            tracing::debug!(call = call.0, "no media: no recording");
        }
        for r in rtps.iter_mut() {
            if let Some(r) = r {
                let sent = r.finish();
                self.rtp_account(call, sent, &mut rtp_error_logged);
            }
            self.metrics
                .recorder()
                .recorder_session_closed(SinkKind::Rtp);
        }
        // The WAV lasts as long as the call (silence after the last audio if the call went
        // on without media), however the last frames were placed.
        let length = length.unwrap_or_else(|| self.clock.now().saturating_sub(started));
        let call_len = RATE.samples_in_ms(length.as_millis() as u64);
        let flush_to = if had_media { call_len } else { 0 };
        aligner.flush_to(flush_to, &mut |bytes| {
            write_wavs(&mut wavs, bytes, &self.metrics, call)
        });
        let mut sidecar = Sidecar {
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
        let json = serde_json::to_vec_pretty(&sidecar).unwrap_or_default();
        // Numbers in clear only for sinks configured with `hash_numbers = false`.
        let json_clear = if sinks.iter().any(|w| !w.hash_numbers) {
            let (from, to) = meta.numbers_clear.into_inner();
            sidecar.from = from;
            sidecar.to = to;
            serde_json::to_vec_pretty(&sidecar).unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut handles: Vec<JoinHandle<()>> = self
            .siprec
            .iter_mut()
            .filter_map(|s| s.end(call, &json))
            .collect();
        let name = recording_name(start_unix_ms, call);
        type Job = (wav::WavFile, PathBuf, Vec<x25519::Recipient>, bool);
        let jobs: Vec<Job> = wavs
            .into_iter()
            .zip(&sinks)
            .filter_map(|(w, sink)| {
                Some((
                    w?,
                    sink.dir.clone(),
                    sink.recipients.clone(),
                    sink.hash_numbers,
                ))
            })
            .collect();
        let closed = sinks.len();
        let metrics = self.metrics.clone();
        let json = if had_media { json } else { Vec::new() };
        handles.push(tokio::task::spawn_blocking(move || {
            for (w, dir, recipients, hashed) in jobs.into_iter().filter(|_| had_media) {
                let json = if hashed { &json } else { &json_clear };
                match finish_one(w, &dir, &name, &recipients, json) {
                    Ok((path, bytes)) => {
                        metrics
                            .recorder()
                            .recorder_bytes(SinkKind::Wav)
                            .inc_by(bytes);
                        metrics.recorder().set_recorder_disk_full(false);
                        tracing::info!(call = call.0, path = %path.display(), "recording written");
                    }
                    Err(e) => record_failure(&metrics, call, &e),
                }
            }
            for _ in 0..closed {
                metrics.recorder().recorder_session_closed(SinkKind::Wav);
            }
        }));
        handles
    }
}

/// The `encrypt_to` recipients of a sink writing to `dir`; `broken` when one is not a usable
/// X25519 key: that sink then writes nothing (never plaintext), which is logged here.
fn age_recipients(
    list: &[config::types::AgeRecipient],
    dir: &std::path::Path,
    sink: &str,
) -> (Vec<x25519::Recipient>, bool) {
    let parsed: Result<Vec<x25519::Recipient>, _> = list
        .iter()
        .map(|r| r.as_str().parse::<x25519::Recipient>())
        .collect();
    match parsed {
        Ok(v) => (v, false),
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, sink, "recorder: an encrypt_to recipient is unusable; no file will be written there");
            (Vec::new(), true)
        }
    }
}

/// Sleep until `t`; forever for `None`.
async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

/// Append released audio to every still-healthy WAV of the call; a failure abandons that
/// recording (its temporary file is removed), counted and logged once.
fn write_wavs(wavs: &mut [Option<wav::WavFile>], bytes: &[u8], metrics: &Metrics, call: CallRef) {
    for slot in wavs.iter_mut() {
        write_wav(slot, bytes, metrics, SinkKind::Wav, call);
    }
}

/// Appends `bytes` to the WAV in `slot` (the `wav` sink's files, the `siprec` sink's local
/// fallback): the one place a failed write drops the file, is counted against `sink` and
/// logged.
fn write_wav(
    slot: &mut Option<wav::WavFile>,
    bytes: &[u8],
    metrics: &Metrics,
    sink: SinkKind,
    call: CallRef,
) {
    if let Some(w) = slot {
        if let Err(e) = w.write(bytes) {
            *slot = None;
            write_failure(metrics, sink, call, &e);
        }
    }
}

fn record_failure(metrics: &Metrics, call: CallRef, e: &std::io::Error) {
    write_failure(metrics, SinkKind::Wav, call, e);
}

/// A recording of `sink` abandoned for a failed write: counted, the disk-full alarm raised on
/// ENOSPC, logged once.
fn write_failure(metrics: &Metrics, sink: SinkKind, call: CallRef, e: &std::io::Error) {
    metrics.recorder().recorder_error(sink);
    let full = e.kind() == std::io::ErrorKind::StorageFull;
    if full {
        metrics.recorder().set_recorder_disk_full(true);
    }
    tracing::error!(call = call.0, sink = crate::metrics::Label::as_str(sink), error = %e, disk_full = full, "recording abandoned: write failed (no partial file kept; proxying goes on)");
}

/// Make one WAV final and write its sidecar (both encrypted when there are recipients).
fn finish_one(
    w: wav::WavFile,
    dir: &std::path::Path,
    name: &str,
    recipients: &[x25519::Recipient],
    json: &[u8],
) -> std::io::Result<(PathBuf, u64)> {
    let (path, size) = w.finish()?;
    let written = if recipients.is_empty() {
        wav::write_atomic(&dir.join(format!("{name}.json")), json).map(|()| json.len())
    } else {
        wav::encrypt(json, recipients).and_then(|ct| {
            wav::write_atomic(&dir.join(format!("{name}.json.age")), &ct).map(|()| ct.len())
        })
    };
    match written {
        Ok(n) => Ok((path, size + n as u64)),
        Err(e) => {
            // A recording without its sidecar is still a recording: keep it, report the error.
            tracing::warn!(path = %path.display(), "sidecar not written");
            Err(e)
        }
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
    use super::*;

    #[test]
    fn enospc_sets_the_alarm_and_counts() {
        let m = Metrics::new();
        let e = std::io::Error::from_raw_os_error(28); // ENOSPC
        record_failure(&m, CallRef(1), &e);
        let out = m.render();
        assert!(out.contains("callmask_recorder_disk_full 1"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("callmask_recorder_errors_total{sink=\"wav\"} 1")),
            "{out}"
        );
    }

    #[test]
    fn other_errors_do_not_set_the_alarm() {
        let m = Metrics::new();
        record_failure(&m, CallRef(1), &std::io::Error::other("x"));
        assert!(m.render().contains("callmask_recorder_disk_full 0"));
    }
}
