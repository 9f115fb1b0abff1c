//! The media relay shell: one tokio task per call owns that call's sockets, relays RTP/RTCP
//! between the PBX side and the agents' side, and taps the audio into the masking core.
//!
//! Per datagram: the leg's receive state ([`LegReceiver`]: validation, latching, statistics)
//! decides, the packet is sent on at once with a non-blocking send (never awaited, never
//! queued), and only then is the audio decoded and pushed through the call's
//! [`dsp::mask::MaskPipeline`] for that direction. Sanitized frames leave through a bounded
//! queue to the recorder side; a full queue drops (and counts) frames, it never slows the relay.
//! RFC 4733 events are relayed live but only become mask spans on the recorder path.
//!
//! **Agent leg** (`masking.agent_dtmf`): with `pass` packets toward the agents' side are
//! relayed untouched and nothing else runs. With `drop` / `flat-tone` the PBX→agents audio of
//! stream 0 goes through a causal [`LiveClamp`] *before* it is forwarded: a packet during
//! which a tone may be sounding is sent as a copy whose G.711 payload is silence (`drop`) or a
//! flat 440 Hz tone (`flat-tone`), RTP header unchanged. RFC 4733 packets toward the agents are
//! not forwarded (`drop`), or (`flat-tone`) each is sent instead as a 20 ms audio packet of the
//! flat tone with the same sequence number, the last audio payload type seen toward the agents
//! and timestamp `event start + duration − 160` (repeated end reports are dropped). Packets
//! that follow a removed one get their sequence numbers lowered to close the gap (a gap reads
//! as loss to the agent's jitter buffer). Non-G.711 audio cannot be clamped and is relayed as
//! is.
//!
//! **DTMF trigger** (`secure.dtmf_trigger` / `dtmf_release`): the caller's keys (RFC 4733
//! events, or in-band keys found by a separate receiver until the first RFC 4733 event is seen)
//! go through a small matcher; a match switches the call's secure mode through the call table
//! exactly as the API does, audited with actor `dtmf-trigger`. Keys are never logged.
#![allow(clippy::disallowed_methods)] // io shell: reads the clock

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use config::types::{AgentDtmfMode, DtmfSequence};
use dsp::clamp::{ClampMode, Law, LiveClamp};
use dsp::dtmf::{Digit, DtmfConfig, DtmfDetector, ToneEvent};
use dsp::mask::{MaskConfig, MaskPipeline, MaskReason, SpanId};
use dsp::rfc4733::{EventTracker, EventUpdate, RtpClock, TelephoneEvent};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::core::proxy::{CallRef, Side, StreamSpec};
use crate::core::relay::{
    ClockRate, DropReason as RelayDrop, LatchConfig, LegReceiver, LocalPort, Received, RtpPacket,
    SeqClass,
};
use crate::metrics::{self, CallStats, Metrics};

use super::speech::{CallSpeech, SpeechPool};
use dsp::spoken::SpeechConfig;

/// Samples carried by one tap frame at most (40 ms at 8 kHz); longer packets are split.
pub const TAP_FRAME_MAX: usize = 320;
/// Longest gap (in samples) filled with silence to keep the recorder path time-aligned.
const MAX_GAP_FILL: u64 = 8000 * 10;

/// A sanitized chunk of one direction of a call's audio: this is all a recorder ever gets.
#[derive(Debug, Clone)]
pub struct TapFrame {
    /// The call.
    pub call: CallRef,
    /// The side the audio came from.
    pub from: Side,
    /// Media time (8 kHz samples since this direction's first packet) of `pcm[0]`.
    pub media_time: u64,
    /// Valid samples in `pcm`.
    pub len: usize,
    /// Sanitized linear PCM, 8 kHz.
    pub pcm: [i16; TAP_FRAME_MAX],
}

impl TapFrame {
    /// The valid samples.
    pub fn samples(&self) -> &[i16] {
        &self.pcm[..self.len]
    }
}

/// Call metadata for recording sidecars: the SIP Call-ID (to correlate with PBX logs),
/// caller and callee only as keyed hashes, codecs. Never digits heard on the call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallMeta {
    /// SIP Call-ID.
    pub sip_call_id: String,
    /// Caller number, hashed (`h:…`) unless the admin opted in to revealing numbers.
    pub from: String,
    /// Callee number, hashed likewise.
    pub to: String,
    /// Caller and callee numbers in clear (URI user parts), only for a `wav` sink configured
    /// with `hash_numbers = false`; never formatted into logs.
    pub numbers_clear: crate::redact::Redacted<(String, String)>,
    /// Audio codecs negotiated (encoding names).
    pub codecs: Vec<String>,
}

/// What the recorder side receives.
#[derive(Debug, Clone)]
pub enum TapEvent {
    /// A call's media started (first Upsert).
    Start {
        /// The call.
        call: CallRef,
        /// Side of the caller (recordings put the caller left).
        caller_side: Side,
        /// Metadata for the sidecar.
        meta: CallMeta,
    },
    /// Sanitized audio.
    Frame(Box<TapFrame>),
    /// A masked span finished (times in this direction's media time). Never digits.
    Span {
        /// The call.
        call: CallRef,
        /// Direction (side the audio came from).
        from: Side,
        /// Start, samples.
        start: u64,
        /// End, samples.
        end: u64,
        /// Why.
        reason: MaskReason,
    },
    /// The call's media ended.
    End {
        /// The call.
        call: CallRef,
    },
}

/// Live spoken-identifier masking: the shared recognizer pool and the masker settings.
#[derive(Debug, Clone)]
pub struct LiveSpeech {
    /// The worker pool.
    pub pool: Arc<SpeechPool>,
    /// Masker settings (`lookahead_ms` equal to the pipeline's).
    pub config: SpeechConfig,
}

/// Settings of the media shell.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Address to bind the PBX side's media sockets on.
    pub pbx_bind: IpAddr,
    /// Address to bind the agents' side media sockets on.
    pub agents_bind: IpAddr,
    /// End the call when no packet arrived for this long (after the first packet).
    pub inactivity: Duration,
    /// Recorder-path masking settings (applied per direction).
    pub mask: MaskConfig,
    /// Latching policy.
    pub latch: LatchConfig,
    /// What the agents hear of DTMF coming from the PBX side.
    pub agent_dtmf: AgentDtmfMode,
    /// Caller key sequence that switches secure mode on.
    pub dtmf_trigger: Option<KeySequence>,
    /// Caller key sequence that switches secure mode off.
    pub dtmf_release: Option<KeySequence>,
    /// Spoken-identifier masking on the recorder path. `None` with `mask.undecided_until_told`
    /// set means speech masking is on without an engine: the recorder path stays muted.
    pub speech: Option<LiveSpeech>,
}

/// Longest trigger sequence (the config allows 1–16 keys).
const MAX_KEYS: usize = 16;

/// A configured key sequence as RFC 4733 event codes. Its `Debug` never shows the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySequence {
    codes: [u8; MAX_KEYS],
    len: usize,
}

impl KeySequence {
    /// From the validated config value (keys beyond the 16th are ignored).
    pub fn new(seq: &DtmfSequence) -> Self {
        let mut codes = [0u8; MAX_KEYS];
        let mut len = 0;
        for d in seq.as_str().chars().filter_map(Digit::from_char) {
            if len == MAX_KEYS {
                break;
            }
            codes[len] = d.event_code();
            len += 1;
        }
        KeySequence { codes, len }
    }

    fn keys(&self) -> &[u8] {
        &self.codes[..self.len]
    }
}

impl std::fmt::Debug for KeySequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySequence(<redacted>)")
    }
}

/// Commands to a call's relay task.
#[derive(Debug, Clone)]
pub enum CallCmd {
    /// The latest anchored streams (after every SDP).
    Spec(Vec<StreamSpec>),
    /// Secure mode on (mute the recorder path of both directions) or off.
    Secure(bool),
    /// SIP INFO carried a key press from `from`: mute that direction around now.
    InfoDtmf {
        /// Side the INFO came from.
        from: Side,
    },
}

/// How long a SIP INFO key press is assumed to last on the recorder path (RFC 2976 bodies
/// often carry no usable duration; 250 ms covers a long press with margin).
const INFO_DTMF_MS: u64 = 300;

struct CallHandle {
    cmd: mpsc::UnboundedSender<CallCmd>,
}

/// Owns the per-call relay tasks; driven by the signalling shell's media commands.
pub struct MediaHub {
    settings: MediaSettings,
    metrics: Arc<Metrics>,
    calls: HashMap<CallRef, CallHandle>,
    caller_sides: HashMap<CallRef, Side>,
    metas: HashMap<CallRef, CallMeta>,
    stats: HashMap<CallRef, CallStats>,
    tap: Option<mpsc::Sender<TapEvent>>,
    timeouts: mpsc::UnboundedSender<CallRef>,
    table: Arc<super::calls::CallTable>,
}

impl MediaHub {
    /// A hub. `tap` receives sanitized audio (None: no recorder); `timeouts` receives calls
    /// whose media went quiet.
    pub fn new(
        settings: MediaSettings,
        metrics: Arc<Metrics>,
        tap: Option<mpsc::Sender<TapEvent>>,
        timeouts: mpsc::UnboundedSender<CallRef>,
        table: Arc<super::calls::CallTable>,
    ) -> Self {
        MediaHub {
            settings,
            metrics,
            calls: HashMap::new(),
            caller_sides: HashMap::new(),
            metas: HashMap::new(),
            stats: HashMap::new(),
            tap,
            timeouts,
            table,
        }
    }

    /// The call table shared with the HTTP API.
    pub fn table(&self) -> &Arc<super::calls::CallTable> {
        &self.table
    }

    /// SIP INFO DTMF seen on `call` from `from`.
    pub fn info_dtmf(&mut self, call: CallRef, from: Side) {
        if let Some(h) = self.calls.get(&call) {
            let _ = h.cmd.send(CallCmd::InfoDtmf { from });
        }
    }

    /// A call began (before any media).
    pub fn call_started(&mut self, call: CallRef, caller_side: Side, meta: CallMeta) {
        self.table.started(call);
        self.metas.insert(call, meta);
        self.caller_sides.insert(call, caller_side);
        self.stats.insert(call, self.metrics.new_call());
    }

    /// The call is over (whether or not it had media).
    pub fn call_ended(&mut self, call: CallRef) {
        self.table.ended(call);
        self.caller_sides.remove(&call);
        self.metas.remove(&call);
        self.stats.remove(&call);
        self.remove(call);
    }

    /// Create or update the relay of `call`.
    pub fn upsert(&mut self, call: CallRef, streams: Vec<StreamSpec>) {
        if let Some(h) = self.calls.get(&call) {
            let _ = h.cmd.send(CallCmd::Spec(streams));
            return;
        }
        let codecs: Vec<String> = streams
            .first()
            .map(|s| {
                s.codecs
                    .iter()
                    .filter(|c| !c.is_telephone_event())
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let caller_side = self.caller_sides.get(&call).copied().unwrap_or(Side::Pbx);
        let stats = self
            .stats
            .entry(call)
            .or_insert_with(|| self.metrics.new_call())
            .clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(CallCmd::Spec(streams));
        self.table.attach(call, tx.clone(), codecs.clone());
        let agent_leg = match self.settings.agent_dtmf {
            AgentDtmfMode::Pass => None,
            AgentDtmfMode::Drop => Some(Box::new(AgentLeg::new(ClampMode::Silence))),
            AgentDtmfMode::FlatTone => Some(Box::new(AgentLeg::new(ClampMode::FlatTone))),
        };
        let trigger = (self.settings.dtmf_trigger.is_some()
            || self.settings.dtmf_release.is_some())
        .then(|| {
            Box::new(KeyTrigger::new(
                self.settings.dtmf_trigger.clone(),
                self.settings.dtmf_release.clone(),
            ))
        });
        // Speech masking only where there is a recorder path to sanitize.
        let speech = match (&self.settings.speech, &self.tap) {
            (Some(ls), Some(_)) => {
                match CallSpeech::new(ls.pool.clone(), ls.config, self.metrics.clone()) {
                    Ok(cs) => Some(Box::new(cs)),
                    Err(e) => {
                        // The recorder path stays muted (undecided until told).
                        tracing::error!(call = call.0, error = %e, "spoken-identifier masking cannot run on this call: its recording is muted");
                        None
                    }
                }
            }
            _ => None,
        };
        let task = CallRelay {
            speech,
            call,
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            stats,
            tap: self.tap.clone(),
            streams: Vec::new(),
            caller_side,
            meta: CallMeta {
                codecs: codecs.clone(),
                ..self.metas.get(&call).cloned().unwrap_or_default()
            },
            agent_leg,
            trigger,
            table: self.table.clone(),
        };
        let timeouts = self.timeouts.clone();
        tokio::spawn(async move {
            if task.run(rx).await == Exit::Inactive {
                let _ = timeouts.send(call);
            }
        });
        self.calls.insert(call, CallHandle { cmd: tx });
    }

    /// Stop relaying `call` (its task closes the sockets).
    pub fn remove(&mut self, call: CallRef) {
        // Dropping the sender ends the task.
        self.calls.remove(&call);
    }

    /// Calls with a relay task.
    pub fn active(&self) -> usize {
        self.calls.len()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Exit {
    Removed,
    Inactive,
}

/// One direction's recorder path: the time mapping, the RFC 4733 tracker and the pipeline.
struct TapDirection {
    clock: RtpClock,
    /// Pipeline input time (samples pushed so far).
    pushed: u64,
    /// `pipeline time = rtp media time + offset` (changes only on a long discontinuity).
    offset: i64,
    pipeline: MaskPipeline,
    tracker: EventTracker,
    open_event: Option<SpanId>,
    started: bool,
    dtmf_seen: u64,
}

impl TapDirection {
    fn new(mask: MaskConfig) -> Self {
        TapDirection {
            clock: RtpClock::new(),
            pushed: 0,
            offset: 0,
            pipeline: MaskPipeline::new(mask),
            tracker: EventTracker::new(1600),
            open_event: None,
            started: false,
            dtmf_seen: 0,
        }
    }

    fn pipeline_time(&self, ts: u32) -> Option<u64> {
        let t = self.clock.resolve(ts)?;
        u64::try_from(t.0 as i64 + self.offset).ok()
    }
}

struct StreamState {
    spec: StreamSpec,
    /// Index 0 = PBX side, 1 = agents' side; each holds (RTP, RTCP) sockets.
    sockets: [[Option<UdpSocket>; 2]; 2],
    legs: [LegReceiver; 2],
    /// Loss already reported to the metrics, per leg (reported as deltas).
    lost_reported: [i64; 2],
    tel_event_pt: Option<u8>,
    g711: HashMap<u8, G711>,
}

#[derive(Debug, Clone, Copy)]
enum G711 {
    Ulaw,
    Alaw,
}

impl G711 {
    fn law(self) -> Law {
        match self {
            G711::Ulaw => Law::Ulaw,
            G711::Alaw => Law::Alaw,
        }
    }
}

/// Samples of one converted RFC 4733 report (`flat-tone`).
const EVENT_FRAME: usize = 160;

/// The PBX→agents live clamp of one call (`drop` / `flat-tone`); see the module docs.
struct AgentLeg {
    clamp: LiveClamp,
    /// Last G.711 payload type seen toward the agents (for converted events).
    audio: Option<(u8, Law)>,
    /// Timestamp of the last converted event report (repeats are dropped).
    last_event_ts: Option<u32>,
    /// Rewritten packets are built here (allocated once per call).
    buf: Vec<u8>,
    /// Packets removed toward the agents so far: later sequence numbers are lowered by this
    /// much, so the agent's jitter buffer sees a continuous stream, not loss to conceal.
    seq_shift: u16,
}

impl AgentLeg {
    fn new(mode: ClampMode) -> Self {
        AgentLeg {
            clamp: LiveClamp::new(mode),
            audio: None,
            last_event_ts: None,
            buf: vec![0u8; 2048 + EVENT_FRAME],
            seq_shift: 0,
        }
    }

    /// `data` with its sequence number lowered by the packets removed so far.
    fn renumbered<'a>(&'a mut self, data: &'a [u8]) -> Option<&'a [u8]> {
        if self.seq_shift == 0 {
            return Some(data);
        }
        let out = self.buf.get_mut(..data.len())?;
        out.copy_from_slice(data);
        shift_seq(out, self.seq_shift);
        Some(out)
    }

    /// What to send toward the agents instead of `data` (None: nothing).
    fn rewrite<'a>(
        &'a mut self,
        packet: &RtpPacket<'_>,
        data: &'a [u8],
        tel_pt: Option<u8>,
        g711: &HashMap<u8, G711>,
    ) -> Option<&'a [u8]> {
        let pt = packet.payload_type().get();
        let hl = packet.header_len();
        if Some(pt) == tel_pt {
            if self.clamp.mode() == ClampMode::Silence {
                self.seq_shift = self.seq_shift.wrapping_add(1);
                return None;
            }
            let (apt, law) = self
                .audio
                .or_else(|| g711.iter().next().map(|(&p, &k)| (p, k.law())))?;
            let ev = TelephoneEvent::parse(packet.payload()).ok()?;
            let ts = packet
                .timestamp()
                .get()
                .wrapping_add(u32::from(ev.duration).saturating_sub(EVENT_FRAME as u32));
            if self.last_event_ts == Some(ts) {
                self.seq_shift = self.seq_shift.wrapping_add(1);
                return None;
            }
            self.last_event_ts = Some(ts);
            let out = self.buf.get_mut(..hl + EVENT_FRAME)?;
            out[..hl].copy_from_slice(&data[..hl]);
            out[0] &= !0x20; // no padding
            out[1] = apt & 0x7f; // audio payload type, no marker
            out[4..8].copy_from_slice(&ts.to_be_bytes());
            shift_seq(out, self.seq_shift);
            self.clamp.fill(&mut out[hl..], law);
            return Some(out);
        }
        let Some(kind) = g711.get(&pt) else {
            return self.renumbered(data);
        };
        let law = kind.law();
        self.audio = Some((pt, law));
        if !self.clamp.inspect(packet.payload(), law) {
            return self.renumbered(data);
        }
        let out = self.buf.get_mut(..data.len())?;
        out.copy_from_slice(data);
        shift_seq(out, self.seq_shift);
        let end = hl + packet.payload().len();
        self.clamp.fill(&mut out[hl..end], law);
        Some(out)
    }
}

/// Lower an RTP packet's sequence number (bytes 2–3) by `by`, modulo 2^16.
fn shift_seq(packet: &mut [u8], by: u16) {
    if by != 0 && packet.len() >= 4 {
        let seq = u16::from_be_bytes([packet[2], packet[3]]).wrapping_sub(by);
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
    }
}

/// Which configured sequence the caller just completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyMatch {
    Trigger,
    Release,
}

/// The secure-mode key matcher of one call: the last keys of the caller (never exposed).
struct KeyTrigger {
    trigger: Option<KeySequence>,
    release: Option<KeySequence>,
    ring: [u8; MAX_KEYS],
    len: usize,
    /// In-band receiver for callers that send tones instead of RFC 4733 events.
    detector: DtmfDetector,
    pcm: [i16; TAP_FRAME_MAX],
    /// RFC 4733 events seen from the caller: in-band keys are ignored from then on (a sender
    /// doing both would otherwise count every key twice).
    rfc4733_seen: bool,
}

impl KeyTrigger {
    fn new(trigger: Option<KeySequence>, release: Option<KeySequence>) -> Self {
        KeyTrigger {
            trigger,
            release,
            ring: [0; MAX_KEYS],
            len: 0,
            detector: DtmfDetector::new(DtmfConfig::default()),
            pcm: [0; TAP_FRAME_MAX],
            rfc4733_seen: false,
        }
    }

    fn key(&mut self, d: Digit) -> Option<KeyMatch> {
        if self.len == MAX_KEYS {
            self.ring.copy_within(1.., 0);
            self.len -= 1;
        }
        self.ring[self.len] = d.event_code();
        self.len += 1;
        let recent = &self.ring[..self.len];
        let hit = |s: &Option<KeySequence>| s.as_ref().is_some_and(|s| recent.ends_with(s.keys()));
        let m = if hit(&self.trigger) {
            Some(KeyMatch::Trigger)
        } else if hit(&self.release) {
            Some(KeyMatch::Release)
        } else {
            None
        };
        if m.is_some() {
            self.len = 0;
            self.ring = [0; MAX_KEYS];
        }
        m
    }

    fn rfc4733(&mut self, d: Digit) -> Option<KeyMatch> {
        self.rfc4733_seen = true;
        self.key(d)
    }

    fn audio(&mut self, payload: &[u8], kind: G711) -> Option<KeyMatch> {
        if self.rfc4733_seen {
            return None;
        }
        let mut m = None;
        for chunk in payload.chunks(TAP_FRAME_MAX) {
            let pcm = &mut self.pcm[..chunk.len()];
            match kind {
                G711::Ulaw => dsp::g711::decode_ulaw(chunk, pcm),
                G711::Alaw => dsp::g711::decode_alaw(chunk, pcm),
            };
            self.detector.process(pcm);
            while let Some(ev) = self.detector.poll_event() {
                if let ToneEvent::Started { digit, .. } = ev {
                    m = self.key(digit).or(m);
                }
            }
        }
        m
    }
}

struct CallRelay {
    call: CallRef,
    settings: MediaSettings,
    metrics: Arc<Metrics>,
    stats: CallStats,
    tap: Option<mpsc::Sender<TapEvent>>,
    streams: Vec<StreamState>,
    caller_side: Side,
    meta: CallMeta,
    agent_leg: Option<Box<AgentLeg>>,
    trigger: Option<Box<KeyTrigger>>,
    table: Arc<super::calls::CallTable>,
    speech: Option<Box<CallSpeech>>,
}

/// Both directions' pipelines, for the speech glue (which marks both legs).
fn pipes(dirs: &mut [TapDirection; 2]) -> [&mut MaskPipeline; 2] {
    let [a, b] = dirs;
    [&mut a.pipeline, &mut b.pipeline]
}

/// The next speech verdict of the call; never resolves without speech masking.
async fn speech_reply(speech: &mut Option<Box<CallSpeech>>) -> Option<super::speech::Reply> {
    match speech {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

fn side_i(s: Side) -> usize {
    match s {
        Side::Pbx => 0,
        Side::Agents => 1,
    }
}

fn side_of(i: usize) -> Side {
    if i == 0 {
        Side::Pbx
    } else {
        Side::Agents
    }
}

fn metric_side(s: Side) -> metrics::Side {
    match s {
        Side::Pbx => metrics::Side::Pbx,
        Side::Agents => metrics::Side::Agents,
    }
}

fn bind_pair(ip: IpAddr, rtp: u16, rtcp: u16) -> [Option<UdpSocket>; 2] {
    let bind = |port: u16| {
        let s = std::net::UdpSocket::bind(SocketAddr::new(ip, port)).ok()?;
        s.set_nonblocking(true).ok()?;
        UdpSocket::from_std(s).ok()
    };
    [bind(rtp), bind(rtcp)]
}

impl CallRelay {
    async fn run(mut self, mut cmd_rx: mpsc::UnboundedReceiver<CallCmd>) -> Exit {
        if let Some(tap) = &self.tap {
            let _ = tap.try_send(TapEvent::Start {
                call: self.call,
                caller_side: self.caller_side,
                meta: self.meta.clone(),
            });
        }
        let mut dirs = [
            TapDirection::new(self.settings.mask),
            TapDirection::new(self.settings.mask),
        ];
        let mut secure: [Option<SpanId>; 2] = [None, None];
        let mut buf = vec![0u8; 2048];
        let mut last_packet = Instant::now();
        let mut seen_any = false;
        let mut rotate = 0usize;
        // Inactivity is checked once a second rather than with a timer re-armed per packet.
        let mut idle_check = tokio::time::interval(Duration::from_secs(1));
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let exit = loop {
            tokio::select! {
                cmd = cmd_rx.recv() => {
                    match cmd {
                        None => break Exit::Removed,
                        Some(CallCmd::Spec(specs)) => self.apply(specs),
                        Some(CallCmd::Secure(on)) => {
                            for (d, slot) in dirs.iter_mut().zip(secure.iter_mut()) {
                                // From the earliest sample not yet sent: nothing still in the
                                // look-ahead leaves unmuted.
                                let at = d.pipeline.output_time();
                                match (on, slot.take()) {
                                    (true, None) => {
                                        *slot = Some(d.pipeline.begin_span(MaskReason::SecureMode, at));
                                    }
                                    (true, Some(id)) => *slot = Some(id),
                                    (false, Some(id)) => d.pipeline.end_span(id, d.pipeline.input_time()),
                                    (false, None) => {}
                                }
                            }
                            tracing::info!(target: "callmask::audit", call = self.call.0, secure = on, "secure mode applied to the recorder path");
                        }
                        Some(CallCmd::InfoDtmf { from }) => {
                            let d = &mut dirs[side_i(from)];
                            let start = d.pipeline.output_time();
                            let end = dsp::MediaTime(d.pipeline.input_time().0 + INFO_DTMF_MS * 8);
                            d.pipeline.mark(MaskReason::Rfc4733, start, end);
                        }
                    }
                }
                Some(reply) = speech_reply(&mut self.speech) => {
                    if let Some(sp) = self.speech.as_deref_mut() {
                        sp.on_reply(reply, pipes(&mut dirs));
                    }
                }
                (k, n, src) = recv_any(&self.streams, &mut buf, &mut rotate) => {
                    let now = Instant::now();
                    last_packet = now;
                    seen_any = true;
                    self.on_datagram(k, &buf[..n], src, now, &mut dirs);
                }
                _ = idle_check.tick() => {
                    let limit = if seen_any {
                        self.settings.inactivity
                    } else {
                        // Before the first packet (ringing, hold before media) be patient.
                        self.settings.inactivity * 10
                    };
                    if last_packet.elapsed() >= limit {
                        break Exit::Inactive;
                    }
                }
            }
        };
        // Let the recognizer decide the last words (bounded by the look-ahead), so the end
        // of the call is not muted merely because it ended.
        if let Some(sp) = self.speech.as_deref_mut() {
            sp.finish();
            let until = tokio::time::Instant::now() + sp.lookahead();
            while sp.undecided() {
                match tokio::time::timeout_at(until, sp.recv()).await {
                    Ok(Some(reply)) => sp.on_reply(reply, pipes(&mut dirs)),
                    _ => break,
                }
            }
        }
        for i in 0..2 {
            self.flush_direction(i, &mut dirs);
        }
        if let Some(tap) = &self.tap {
            let _ = tap.try_send(TapEvent::End { call: self.call });
        }
        exit
    }

    fn apply(&mut self, specs: Vec<StreamSpec>) {
        for spec in specs {
            let tel = spec
                .codecs
                .iter()
                .find(|c| c.is_telephone_event())
                .map(|c| c.pt.get());
            let g711: HashMap<u8, G711> = spec
                .codecs
                .iter()
                .filter_map(|c| {
                    let kind = if c.name.eq_ignore_ascii_case("PCMU") {
                        G711::Ulaw
                    } else if c.name.eq_ignore_ascii_case("PCMA") {
                        G711::Alaw
                    } else {
                        return None;
                    };
                    (c.clock_rate == 8000).then_some((c.pt.get(), kind))
                })
                .collect();
            let clock = ClockRate::NARROWBAND;
            if let Some(st) = self.streams.get_mut(spec.index) {
                st.legs[0].set_signalled(spec.pbx_remote, spec.pbx_remote.map(rtcp_of), clock);
                st.legs[1].set_signalled(
                    spec.agents_remote,
                    spec.agents_remote.map(rtcp_of),
                    clock,
                );
                st.tel_event_pt = tel.or(st.tel_event_pt);
                if !g711.is_empty() {
                    st.g711 = g711;
                }
                st.spec = spec;
                continue;
            }
            let mut legs = [
                LegReceiver::new(self.settings.latch, clock),
                LegReceiver::new(self.settings.latch, clock),
            ];
            legs[0].set_signalled(spec.pbx_remote, spec.pbx_remote.map(rtcp_of), clock);
            legs[1].set_signalled(spec.agents_remote, spec.agents_remote.map(rtcp_of), clock);
            let sockets = [
                bind_pair(
                    self.settings.pbx_bind,
                    spec.pbx_local.rtp(),
                    spec.pbx_local.rtcp(),
                ),
                bind_pair(
                    self.settings.agents_bind,
                    spec.agents_local.rtp(),
                    spec.agents_local.rtcp(),
                ),
            ];
            if sockets.iter().flatten().any(Option::is_none) {
                tracing::warn!(
                    call = self.call.0,
                    "could not bind all media ports of a stream"
                );
            }
            self.streams.push(StreamState {
                spec,
                sockets,
                legs,
                lost_reported: [0, 0],
                tel_event_pt: tel,
                g711,
            });
        }
    }

    fn on_datagram(
        &mut self,
        k: usize,
        data: &[u8],
        src: SocketAddr,
        now: Instant,
        dirs: &mut [TapDirection; 2],
    ) {
        let (si, side_i, port_i) = (k / 4, (k / 2) % 2, k % 2);
        let side = side_of(side_i);
        let Some(st) = self.streams.get_mut(si) else {
            return;
        };
        let port = if port_i == 0 {
            LocalPort::Rtp
        } else {
            LocalPort::Rtcp
        };
        let received = match st.legs[side_i].on_datagram(data, src, port, now) {
            Ok(r) => r,
            Err(reason) => {
                let label = match reason {
                    RelayDrop::UnexpectedSource => metrics::DropReason::UnexpectedSource,
                    _ => metrics::DropReason::Malformed,
                };
                self.metrics.rtp_dropped(metric_side(side), label);
                return;
            }
        };
        let other = 1 - side_i;
        let (target, out_port) = match received {
            Received::Rtp { .. } => (st.legs[other].rtp_target(), 0),
            Received::Rtcp { .. } => (st.legs[other].rtcp_target(), 1),
        };
        // The live path first: forward without waiting (toward the agents, through the clamp
        // unless the mode is `pass`).
        let out = match (&received, self.agent_leg.as_deref_mut()) {
            (Received::Rtp { packet, .. }, Some(leg)) if side == Side::Pbx && si == 0 => {
                leg.rewrite(packet, data, st.tel_event_pt, &st.g711)
            }
            _ => Some(data),
        };
        if let (Some(out), Some(target), Some(sock)) =
            (out, target, st.sockets[other][out_port].as_ref())
        {
            let _ = sock.try_send_to(out, target);
        }
        let inbound = self
            .stats
            .leg(metric_side(side), metrics::Direction::Inbound);
        inbound.record_packet(data.len());
        if let Received::Rtp { class, .. } = received {
            if class == SeqClass::OutOfOrder {
                inbound.add_out_of_order(1);
            }
            // Loss and jitter once a second of packets (per-packet atomics only above).
            let leg = &st.legs[side_i].stats;
            if leg.received() % 50 == 0 {
                let lost = leg.lost().max(0);
                if lost > st.lost_reported[side_i] {
                    inbound.add_lost((lost - st.lost_reported[side_i]) as u64);
                    st.lost_reported[side_i] = lost;
                }
                self.metrics.rtp_jitter(
                    metric_side(side),
                    leg.jitter_ms(ClockRate::NARROWBAND) / 1000.0,
                );
            }
        }
        self.stats
            .leg(metric_side(side_of(other)), metrics::Direction::Outbound)
            .record_packet(data.len());
        // Then the recorder path (audio stream 0 only).
        if si != 0 {
            return;
        }
        let mut key_match = None;
        if let Received::Rtp { packet, .. } = received {
            let pt = packet.payload_type().get();
            let ts = packet.timestamp().get();
            let dir = &mut dirs[side_i];
            let trigger = self
                .trigger
                .as_deref_mut()
                .filter(|_| side == self.caller_side);
            if Some(pt) == st.tel_event_pt {
                dir.clock.extend(ts);
                if let Ok(first) = dir.tracker.handle(ts, packet.marker(), packet.payload()) {
                    let mut next = first;
                    let mut trigger = trigger;
                    while let Some(u) = next {
                        if let (Some(t), EventUpdate::Began { digit: Some(d), .. }) =
                            (trigger.as_deref_mut(), u)
                        {
                            key_match = t.rfc4733(d).or(key_match);
                        }
                        apply_event(dir, u, &self.metrics);
                        next = dir.tracker.poll_update();
                    }
                }
            } else if let Some(kind) = st.g711.get(&pt).copied() {
                if let Some(t) = trigger {
                    key_match = t.audio(packet.payload(), kind);
                }
                let Some(t) = dir.clock.extend(ts) else {
                    self.on_key_match(key_match);
                    return;
                };
                if let Some(u) = dir.tracker.expire(ts) {
                    apply_event(dir, u, &self.metrics);
                }
                // The recorder path only exists when a recorder does: without one there is
                // nothing to sanitize (in-band DTMF is then not counted in the metrics).
                if self.tap.is_none() {
                    self.on_key_match(key_match);
                    return;
                }
                push_audio(
                    self.call,
                    dirs,
                    side_i,
                    t.0,
                    packet.payload(),
                    kind,
                    self.speech.as_deref_mut(),
                    self.tap.as_ref(),
                    &self.metrics,
                    &self.stats,
                );
            }
        }
        self.on_key_match(key_match);
    }

    /// The caller completed a configured sequence: switch secure mode like the API does (the
    /// call table forwards the change back to this task) and audit it. Never logs keys.
    fn on_key_match(&self, m: Option<KeyMatch>) {
        use super::http::{Actor, CallControl};
        use crate::metrics::SecureAction;
        let Some(m) = m else {
            return;
        };
        let (on, action) = match m {
            KeyMatch::Trigger => (true, SecureAction::Secure),
            KeyMatch::Release => (false, SecureAction::Unsecure),
        };
        // The table ignores the actor; the audit entry below names the real one.
        let result = self
            .table
            .set_secure(&self.call.0.to_string(), on, &Actor::api(None));
        let at_unix_ms = super::http::unix_ms_now();
        let action_str = crate::metrics::Label::as_str(action);
        match result {
            Ok(change) => super::http::audit_secure_change(
                &self.metrics,
                action,
                &"dtmf-trigger",
                self.call.0,
                change,
                at_unix_ms,
            ),
            Err(_) => {
                tracing::warn!(
                    target: "callmask::audit",
                    event = "secure_mode_unknown_call",
                    action = action_str,
                    actor = "dtmf-trigger",
                    call = self.call.0,
                    at_unix_ms,
                    "secure mode {action_str} by DTMF trigger refused: call not in the table"
                );
            }
        }
    }

    fn flush_direction(&mut self, i: usize, dirs: &mut [TapDirection; 2]) {
        if !dirs[i].started {
            return;
        }
        // Push the look-ahead's worth of silence so the last real audio leaves the line.
        let silence = [0i16; TAP_FRAME_MAX];
        let mut left = dirs[i].pipeline.delay_samples() as usize;
        while left > 0 {
            let n = left.min(TAP_FRAME_MAX);
            run_pipeline(
                self.call,
                dirs,
                i,
                &silence[..n],
                self.speech.as_deref_mut(),
                self.tap.as_ref(),
                &self.metrics,
                &self.stats,
            );
            left -= n;
        }
        let dir = &mut dirs[i];
        dir.pipeline.finish();
        drain_spans(self.call, side_of(i), dir, self.tap.as_ref(), &self.metrics);
    }
}

fn rtcp_of(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port().wrapping_add(1))
}

fn apply_event(dir: &mut TapDirection, u: EventUpdate, metrics: &Metrics) {
    match u {
        EventUpdate::Began { start_ts, .. } => {
            metrics.dtmf_detected(metrics::DtmfSource::Rfc4733);
            dir.dtmf_seen += 1;
            let Some(start) = dir.pipeline_time(start_ts) else {
                return;
            };
            if let Some(old) = dir.open_event.take() {
                dir.pipeline.end_span(old, dsp::MediaTime(start));
            }
            dir.open_event = Some(
                dir.pipeline
                    .begin_span(MaskReason::Rfc4733, dsp::MediaTime(start)),
            );
        }
        EventUpdate::Extended { .. } => {}
        EventUpdate::Ended { .. } => {
            let end = dir.pipeline_time(u.end_ts());
            if let (Some(id), Some(end)) = (dir.open_event.take(), end) {
                dir.pipeline.end_span(id, dsp::MediaTime(end));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn push_audio(
    call: CallRef,
    dirs: &mut [TapDirection; 2],
    i: usize,
    rtp_time: u64,
    payload: &[u8],
    kind: G711,
    mut speech: Option<&mut CallSpeech>,
    tap: Option<&mpsc::Sender<TapEvent>>,
    metrics: &Metrics,
    stats: &CallStats,
) {
    let dir = &mut dirs[i];
    let Ok(t) = u64::try_from(rtp_time as i64 + dir.offset) else {
        return;
    };
    if t < dir.pushed {
        // Late or duplicate: relayed live, but the recorder path already moved on.
        return;
    }
    let mut gap = t - dir.pushed;
    if gap > MAX_GAP_FILL {
        // A long discontinuity (hold, SSRC restart): re-base instead of writing minutes of
        // silence; the recorder aligns on wall-clock.
        dir.offset -= (gap - MAX_GAP_FILL) as i64;
        if let Some(sp) = speech.as_deref_mut() {
            sp.rebased(i, gap - MAX_GAP_FILL);
        }
        gap = MAX_GAP_FILL;
    }
    if !dir.started {
        if let Some(sp) = speech.as_deref_mut() {
            // Where this leg's media time 0 lies, to line the two legs up.
            let now = Instant::now();
            let ago = Duration::from_secs_f64(t as f64 / 8000.0);
            sp.set_origin(i, now.checked_sub(ago).unwrap_or(now));
        }
    }
    dir.started = true;
    let silence = [0i16; TAP_FRAME_MAX];
    while gap > 0 {
        let n = (gap as usize).min(TAP_FRAME_MAX);
        run_pipeline(
            call,
            dirs,
            i,
            &silence[..n],
            speech.as_deref_mut(),
            tap,
            metrics,
            stats,
        );
        gap -= n as u64;
    }
    let mut pcm = [0i16; TAP_FRAME_MAX];
    for chunk in payload.chunks(TAP_FRAME_MAX) {
        for (o, &b) in pcm.iter_mut().zip(chunk) {
            *o = match kind {
                G711::Ulaw => dsp::g711::ulaw_to_linear(b),
                G711::Alaw => dsp::g711::alaw_to_linear(b),
            };
        }
        run_pipeline(
            call,
            dirs,
            i,
            &pcm[..chunk.len()],
            speech.as_deref_mut(),
            tap,
            metrics,
            stats,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn run_pipeline(
    call: CallRef,
    dirs: &mut [TapDirection; 2],
    i: usize,
    input: &[i16],
    speech: Option<&mut CallSpeech>,
    tap: Option<&mpsc::Sender<TapEvent>>,
    metrics: &Metrics,
    stats: &CallStats,
) {
    if let Some(sp) = speech {
        // Segments out, verdicts and the undecided region in, before this frame enters.
        sp.before_frame(i, input, pipes(dirs));
    }
    let side = side_of(i);
    let dir = &mut dirs[i];
    let mut frame = TapFrame {
        call,
        from: side,
        media_time: 0,
        len: input.len(),
        pcm: [0; TAP_FRAME_MAX],
    };
    let before = dir.pipeline.stats();
    // Output time of this frame's first sample; negative during the look-ahead pre-roll,
    // which is silence that never existed in the call and is not sent.
    let out_start = dir.pushed as i64 - dir.pipeline.delay_samples() as i64;
    let report = dir.pipeline.process(input, &mut frame.pcm[..input.len()]);
    dir.pushed += input.len() as u64;
    let skip = usize::try_from(-out_start).unwrap_or(0).min(input.len());
    if skip > 0 {
        frame.pcm.copy_within(skip..input.len(), 0);
        frame.len = input.len() - skip;
    }
    frame.media_time = out_start.max(0) as u64;
    let after = dir.pipeline.stats();
    for _ in before.dtmf_tones..after.dtmf_tones {
        metrics.dtmf_detected(metrics::DtmfSource::Inband);
        metrics.mask_decision_latency(
            MaskReason::DtmfInband,
            after.last_dtmf_latency_samples as f64 / 8000.0,
        );
    }
    if report.fail_closed_samples > 0 {
        stats.add_fail_closed_samples(u64::from(report.fail_closed_samples), 8000);
    }
    drain_spans(call, side, dir, tap, metrics);
    if let (Some(tap), true) = (tap, frame.len > 0) {
        if tap.try_send(TapEvent::Frame(Box::new(frame))).is_err() {
            metrics.tap_queue_dropped(1);
        }
    }
}

fn drain_spans(
    call: CallRef,
    side: Side,
    dir: &mut TapDirection,
    tap: Option<&mpsc::Sender<TapEvent>>,
    metrics: &Metrics,
) {
    while let Some(s) = dir.pipeline.poll_span() {
        metrics.masked_span(s.reason, (s.end.0 - s.start.0) as f64 / 8000.0);
        if let Some(tap) = tap {
            let _ = tap.try_send(TapEvent::Span {
                call,
                from: side,
                start: s.start.0,
                end: s.end.0,
                reason: s.reason,
            });
        }
    }
}

/// Wait for a datagram on any of the call's sockets; returns (socket index, length, source).
/// Socket index = stream × 4 + side × 2 + (0 RTP | 1 RTCP). Starts at a rotating index so a
/// busy socket cannot starve the others.
async fn recv_any(
    streams: &[StreamState],
    buf: &mut [u8],
    rotate: &mut usize,
) -> (usize, usize, SocketAddr) {
    poll_fn(|cx| {
        let total = streams.len() * 4;
        if total == 0 {
            return Poll::Pending;
        }
        let start = *rotate % total;
        for j in 0..total {
            let k = (start + j) % total;
            let Some(sock) = streams[k / 4].sockets[(k / 2) % 2][k % 2].as_ref() else {
                continue;
            };
            // An error (e.g. a queued ICMP report) consumes the readiness: poll again so the
            // socket is registered for the next wake-up instead of going deaf.
            for _ in 0..8 {
                let mut rb = ReadBuf::new(buf);
                match sock.poll_recv_from(cx, &mut rb) {
                    Poll::Ready(Ok(src)) => {
                        *rotate = k + 1;
                        return Poll::Ready((k, rb.filled().len(), src));
                    }
                    Poll::Ready(Err(_)) => continue,
                    Poll::Pending => break,
                }
            }
        }
        Poll::Pending
    })
    .await
}
