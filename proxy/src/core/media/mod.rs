//! The media core of one call, without sockets or clocks: the RTP analogue of the SIP core.
//!
//! [`CallMedia`] owns the call's streams (addresses and payload maps, no sockets), the leg
//! receivers (validation, latching, statistics), the PBX→agents clamp ([`agent`]), the
//! secure-mode key trigger ([`trigger`]) and both directions' recorder paths ([`tap`]).
//! Each datagram is decoded at most once (into the call's scratch buffer) and that PCM feeds
//! the clamp, the trigger's receiver and the masking pipeline.
//!
//! Calling rules (house sans-IO style; the shell is `io::media`):
//!
//! ```text
//! media.handle_command(now, CallCommand::Spec(streams));   // after every SDP
//! loop {
//!     while let Some(ev) = media.poll_event() { .. }        // bind sockets, audit, hang up
//!     while let Some(ev) = media.poll_tap() { .. }          // to the recorder (bounded)
//!     wait for: datagram | command | media.poll_timeout()
//!     datagram  => if let Some(t) = media.handle_datagram(now, socket, src, &buf) {
//!                      send t.payload from t.socket to t.dst (never awaited)
//!                  }
//!     command   => media.handle_command(now, cmd)
//!     timeout   => media.handle_timeout(now)
//! }
//! media.finish();  // then drain poll_tap once more
//! ```
//!
//! Time is a parameter: `now` for latching, statistics and inactivity; RTP timestamps,
//! mapped per direction to [`dsp::MediaTime`] at the codec's [`dsp::SampleRate`], for the
//! recorder path.

pub mod agent;
pub mod codec;
mod srtp;
pub mod tap;
pub mod trigger;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::types::AgentDtmfMode;
use dsp::clamp::ClampMode;
use dsp::mask::{MaskConfig, MaskPipeline};

use self::agent::{AgentClamp, Rewrite};
use self::codec::{Decoders, PayloadKind, PayloadMap};
use self::srtp::LegCrypto;
use self::tap::RecorderPath;
use self::trigger::KeyTrigger;
use crate::core::ports::PortPair;
use crate::core::proxy::{CallRef, StreamSpec};
use crate::core::relay::{
    classify, ClockRate, DropReason as RelayDrop, LatchConfig, LegReceiver, LocalPort, PacketKind,
    Received, RtpPacket, SeqClass,
};
use crate::core::side::{BySide, Side};
use crate::metrics::{self, CallStats, Metrics};

pub use self::codec::AudioCodec;
pub(crate) use self::srtp::SendCrypto;
pub use self::tap::{
    CallMeta, DialogTags, NoSpeech, SpeechHook, TapEvent, TapFrame, INFO_DTMF_MS, MAX_GAP_FILL_MS,
    MAX_LATE_MS, TAP_FRAME_MAX, TAP_RATE,
};
pub use self::trigger::{KeyMatch, KeySequence};

/// Largest RTP payload decoded (the shells receive into 2048-byte buffers).
const MAX_DECODED: usize = 2048;
/// Loss and jitter go to the metrics once per this many packets of a leg (about a second).
const STATS_EVERY: u32 = 50;
/// Time an encrypted packet is counted for when no earlier timestamp says better (ptime 20).
const ENCRYPTED_PACKET_MS: u32 = 20;
/// Before the first packet (ringing, early hold) the inactivity limit is this many times
/// longer.
const PRE_MEDIA_PATIENCE: u32 = 10;

/// Settings of a call's media core (the parts of the config it acts on).
#[derive(Debug, Clone)]
pub struct MediaConfig {
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
    /// End the call when no packet arrived for this long (after the first packet).
    pub inactivity: Duration,
    /// Whether a recorder exists (without one nothing is sanitized or tapped).
    pub tap: bool,
}

/// One of a call's local sockets: stream (`m=` index), side it faces, RTP or RTCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketId {
    /// `m=` index.
    pub stream: usize,
    /// The side the socket faces.
    pub side: Side,
    /// RTP or RTCP port.
    pub port: LocalPort,
}

impl SocketId {
    /// Sockets per stream (two sides × RTP/RTCP).
    pub const PER_STREAM: usize = 4;

    /// Dense index (`stream × 4 + side × 2 + port`) for the shell's socket arrays.
    pub fn index(self) -> usize {
        let port = match self.port {
            LocalPort::Rtp => 0,
            LocalPort::Rtcp => 1,
        };
        self.stream * Self::PER_STREAM + self.side.index() * 2 + port
    }

    /// The inverse of [`Self::index`].
    pub fn from_index(k: usize) -> SocketId {
        SocketId {
            stream: k / Self::PER_STREAM,
            side: if (k / 2) % 2 == 0 {
                Side::Pbx
            } else {
                Side::Agents
            },
            port: if k % 2 == 0 {
                LocalPort::Rtp
            } else {
                LocalPort::Rtcp
            },
        }
    }
}

/// A datagram to send: `payload` from local socket `socket` to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// The local socket to send from.
    pub socket: SocketId,
    /// Destination.
    pub dst: SocketAddr,
    /// Bytes (the received datagram, or the clamp's rewrite of it).
    pub payload: &'a [u8],
}

/// Commands to a call's media core (from signalling and the HTTP API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCommand {
    /// The latest anchored streams (after every SDP).
    Spec(Vec<StreamSpec>),
    /// Secure mode on (mute the recorder path of both directions) or off.
    Secure(bool),
    /// SIP INFO carried a key press from `from`: mute that direction around now.
    InfoDtmf {
        /// Side the INFO came from.
        from: Side,
    },
    /// Switch the PBX→agents DTMF clamp at run time (NG `block DTMF` / `unblock DTMF`):
    /// `Some(mode)` clamps with `mode`, `None` passes DTMF again.
    AgentDtmf(Option<ClampMode>),
    /// What `from`'s media becomes on its way to the other party (NG `block media` /
    /// `silence media` and their `un-`).
    Forward {
        /// The party whose media is gated.
        from: Side,
        /// How.
        gate: ForwardGate,
    },
}

/// What a party's RTP becomes on its way to the other party (rtpengine's `block media`,
/// `silence media`). The recorder path hears it as it was sent either way: the gate is about
/// what the other party hears, not what is recorded (secure mode is for that). RTCP passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardGate {
    /// Forwarded (the default).
    #[default]
    Open,
    /// G.711 audio forwarded with a silent payload (same length and header, so the far
    /// jitter buffer sees no gap); events and audio of other codecs are not forwarded, since
    /// silence in them cannot be written without an encoder.
    Silence,
    /// Not forwarded.
    Block,
}

/// What the shell must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A new stream: bind its four sockets.
    StreamAdded {
        /// `m=` index.
        stream: usize,
        /// Ports facing the PBX side.
        pbx: PortPair,
        /// Ports facing the agents' side.
        agents: PortPair,
    },
    /// The caller's keys switched secure mode (already applied to the recorder path): record
    /// it in the call table and audit it. Never carries the keys.
    SecureByKeys {
        /// On or off.
        on: bool,
    },
    /// No packet for the inactivity limit: end the call.
    Inactive,
}

/// One stream: its latest spec, both legs' receive state and its payload map.
#[derive(Debug)]
struct Stream {
    spec: StreamSpec,
    legs: BySide<LegReceiver>,
    /// Loss already reported to the metrics, per leg (reported as deltas).
    lost_reported: BySide<i64>,
    payloads: PayloadMap,
    /// Decoders with state (G.722, Opus), per direction.
    decoders: BySide<Decoders>,
    /// RTP clock of the stream's audio codec (jitter in the right units, issue 12 item 8).
    clock: ClockRate,
    /// Encrypted streams: the last RTP timestamp counted as undecodable time, per leg.
    encrypted_ts: BySide<Option<u32>>,
    /// SDES-SRTP terminated on each leg (issue 14): decrypt from it, encrypt toward it.
    crypto: BySide<Option<Box<LegCrypto>>>,
}

/// The media of one call. See the module docs for the calling rules.
pub struct CallMedia<S = NoSpeech> {
    call: CallRef,
    config: MediaConfig,
    streams: Vec<Stream>,
    agent: Option<Box<AgentClamp>>,
    trigger: Option<Box<KeyTrigger>>,
    recorder: RecorderPath<S>,
    /// One packet's decoded audio (allocated once per call, at its first decode: a leg
    /// that is only relayed never needs it).
    pcm: Box<[i16]>,
    events: VecDeque<MediaEvent>,
    created: Instant,
    last_packet: Option<Instant>,
    inactive: bool,
    metrics: Arc<Metrics>,
    stats: CallStats,
    /// The codecs in use last told to the recorder ([`codecs_in_use`]).
    codecs: Vec<String>,
    /// The last datagram re-encrypted (or decrypted) for a leg, what its `Transmit` points at.
    srtp_out: Vec<u8>,
    /// [`ForwardGate`] per sending party.
    gate: BySide<ForwardGate>,
    /// Silenced copies are built here (grown once per call, at the first one).
    gate_buf: Vec<u8>,
}

/// The codec in use on each stream: its first audio codec (telephone-event aside) in the
/// latest SDP, which after the answer is the negotiated one (RFC 3264 §6: the answer lists
/// what it will send first). Duplicates across streams are listed once.
pub fn codecs_in_use<'a>(specs: impl IntoIterator<Item = &'a StreamSpec>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for spec in specs {
        let first = spec.codecs.iter().find(|c| !c.is_telephone_event());
        if let Some(c) = first {
            if !out.contains(&c.name) {
                out.push(c.name.clone());
            }
        }
    }
    out
}

impl<S> std::fmt::Debug for CallMedia<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMedia")
            .field("call", &self.call)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl<S: SpeechHook> CallMedia<S> {
    /// The media core of `call`, created at `now` (queues the tap's `Start`). Speech masking
    /// is added with [`Self::with_speech`].
    pub fn new(
        call: CallRef,
        config: MediaConfig,
        caller_side: Side,
        meta: CallMeta,
        metrics: Arc<Metrics>,
        stats: CallStats,
        now: Instant,
    ) -> Self {
        let agent = match config.agent_dtmf {
            AgentDtmfMode::Pass => None,
            AgentDtmfMode::Drop => Some(Box::new(AgentClamp::new(ClampMode::Silence))),
            AgentDtmfMode::FlatTone => Some(Box::new(AgentClamp::new(ClampMode::FlatTone))),
        };
        let trigger =
            KeyTrigger::new(config.dtmf_trigger.clone(), config.dtmf_release.clone()).map(Box::new);
        let mut recorder = RecorderPath::new(
            call,
            config.tap,
            config.mask,
            metrics.clone(),
            stats.clone(),
        );
        let codecs = meta.codecs.clone();
        recorder.start(caller_side, meta);
        CallMedia {
            call,
            config,
            streams: Vec::new(),
            agent,
            trigger,
            recorder,
            pcm: Box::default(),
            events: VecDeque::new(),
            created: now,
            last_packet: None,
            inactive: false,
            metrics,
            stats,
            codecs,
            srtp_out: Vec::new(),
            gate: BySide::default(),
            gate_buf: Vec::new(),
        }
    }

    /// Spoken-identifier masking on the recorder path (ignored without a recorder: there is
    /// nothing to sanitize).
    pub fn with_speech(mut self, speech: S) -> Self {
        if self.recorder.enabled() {
            self.recorder.speech = Some(speech);
        }
        self
    }

    /// The call.
    pub fn call(&self) -> CallRef {
        self.call
    }

    /// Applies a command. Call [`Self::poll_event`] afterwards (a spec may add streams).
    pub fn handle_command(&mut self, _now: Instant, cmd: CallCommand) {
        match cmd {
            CallCommand::Spec(specs) => self.apply_specs(specs),
            CallCommand::Secure(on) => self.recorder.secure(on),
            CallCommand::InfoDtmf { from } => self.recorder.info_dtmf(from),
            CallCommand::AgentDtmf(mode) => self.set_agent_clamp(mode),
            CallCommand::Forward { from, gate } => self.gate[from] = gate,
        }
    }

    /// A clamp already in `mode` is kept (its state spans packets); another mode starts anew.
    fn set_agent_clamp(&mut self, mode: Option<ClampMode>) {
        match mode {
            None => self.agent = None,
            Some(m) if self.agent.as_ref().is_some_and(|a| a.mode() == m) => {}
            Some(m) => self.agent = Some(Box::new(AgentClamp::new(m))),
        }
    }

    fn apply_specs(&mut self, specs: Vec<StreamSpec>) {
        for spec in specs {
            // The first audio codec is the one in use (an answer lists it first).
            let clock = spec
                .codecs
                .iter()
                .find(|c| !c.is_telephone_event())
                .and_then(|c| ClockRate::new(c.clock_rate))
                .unwrap_or(ClockRate::NARROWBAND);
            let payloads = PayloadMap::from_codecs(&spec.codecs);
            let remotes = BySide::new(spec.pbx_remote, spec.agents_remote);
            // By m= index: a stream with no ports (never active) is not in the specs, so a
            // socket slot is not an m= index.
            if let Some(st) = self.streams.iter_mut().find(|s| s.spec.index == spec.index) {
                for (side, remote) in remotes.iter() {
                    st.legs[side].set_signalled(*remote, remote.map(rtcp_of), clock);
                    st.legs[side].set_opaque_rtcp(spec.encrypted);
                }
                st.payloads.update(payloads);
                st.clock = clock;
                st.spec = spec;
                continue;
            }
            let mut legs = BySide::from_fn(|side| {
                let mut leg = LegReceiver::new(self.config.latch.clone(), clock);
                leg.set_latch_scope(self.config.latch.allow_of(side));
                leg
            });
            for (side, remote) in remotes.iter() {
                legs[side].set_signalled(*remote, remote.map(rtcp_of), clock);
                legs[side].set_opaque_rtcp(spec.encrypted);
            }
            self.events.push_back(MediaEvent::StreamAdded {
                stream: self.streams.len(),
                pbx: spec.pbx_local,
                agents: spec.agents_local,
            });
            self.streams.push(Stream {
                spec,
                legs,
                lost_reported: BySide::default(),
                payloads,
                decoders: BySide::default(),
                clock,
                encrypted_ts: BySide::default(),
                crypto: BySide::default(),
            });
        }
        for st in &mut self.streams {
            for side in Side::BOTH {
                let keys = st.spec.srtp[side].as_ref();
                let current = st.crypto[side].as_ref();
                match (keys, current) {
                    (Some(k), Some(c)) if c.is_for(k) => {}
                    // New keys (a re-INVITE): each stream's packet index goes on.
                    (Some(k), Some(_)) => {
                        let kept = st.crypto[side].as_mut().is_some_and(|c| c.rekey(k));
                        if !kept {
                            st.crypto[side] = None;
                            st.spec.encrypted = true;
                        }
                    }
                    (Some(k), None) => {
                        st.crypto[side] = LegCrypto::new(k).map(Box::new);
                        if st.crypto[side].is_none() {
                            // Keys the provider refused: never tap ciphertext (fail closed).
                            st.spec.encrypted = true;
                        }
                    }
                    (None, _) => st.crypto[side] = None,
                }
            }
        }
        let codecs = codecs_in_use(self.streams.iter().map(|s| &s.spec));
        if !codecs.is_empty() && codecs != self.codecs {
            self.codecs = codecs.clone();
            self.recorder.codecs(codecs);
        }
    }

    /// One datagram from `src` on `socket` at `now`. Returns what to send, if anything; the
    /// recorder path has already run when this returns (drain [`Self::poll_tap`]).
    ///
    /// On a leg where callmask terminates SRTP the datagram is authenticated and decrypted
    /// first (a failure is dropped and counted, never relayed or recorded), and what goes to a
    /// leg with SRTP is encrypted with callmask's key for it.
    pub fn handle_datagram<'a>(
        &'a mut self,
        now: Instant,
        socket: SocketId,
        src: SocketAddr,
        data: &'a [u8],
    ) -> Option<Transmit<'a>> {
        let (rx, tx) = match self.streams.get(socket.stream) {
            Some(st) => (
                st.crypto[socket.side].is_some(),
                st.crypto[socket.side.other()].is_some(),
            ),
            None => (false, false),
        };
        if !rx && !tx {
            return self.relay(now, socket, src, data);
        }
        let side = socket.side;
        let rtcp = socket.port == LocalPort::Rtcp || classify(data) == PacketKind::Rtcp;
        let plain;
        let input: &[u8] = if rx {
            let c = self.streams.get_mut(socket.stream)?.crypto[side].as_mut()?;
            match c.unprotect(data, rtcp) {
                Ok(p) => {
                    self.metrics.srtp().decrypted(side);
                    plain = p;
                    &plain
                }
                Err(reason) => {
                    self.metrics.srtp().dropped(side, reason);
                    return None;
                }
            }
        } else {
            data
        };
        let mut out = std::mem::take(&mut self.srtp_out);
        out.clear();
        let Some(t) = self.relay(now, socket, src, input) else {
            self.srtp_out = out;
            return None;
        };
        let (out_socket, dst) = (t.socket, t.dst);
        out.extend_from_slice(t.payload);
        if tx {
            let c = self.streams.get_mut(socket.stream)?.crypto[side.other()].as_mut()?;
            match c.protect(&out, rtcp) {
                Ok(enc) => {
                    out.clear();
                    out.extend_from_slice(&enc);
                }
                Err(_) => {
                    self.srtp_out = out;
                    return None;
                }
            }
        }
        self.srtp_out = out;
        Some(Transmit {
            socket: out_socket,
            dst,
            payload: &self.srtp_out,
        })
    }

    /// [`Self::handle_datagram`] on plaintext: [`Self::receive`] (validation, latching,
    /// statistics), [`Self::tap_audio`] (the clamp, the trigger and the recorder path of audio
    /// stream 0), then the forward gate (`block`/`silence media`).
    fn relay<'a>(
        &'a mut self,
        now: Instant,
        socket: SocketId,
        src: SocketAddr,
        data: &'a [u8],
    ) -> Option<Transmit<'a>> {
        let side = socket.side;
        let other = side.other();
        let (received, target, out_port) = self.receive(now, socket, src, data)?;
        let rewrite = match (received, socket.stream) {
            (Received::Rtp { packet, .. }, 0) => self.tap_audio(now, side, &packet),
            _ => Rewrite::Original,
        };
        let payload = match rewrite {
            Rewrite::Original => data,
            Rewrite::Rewritten(n) => self.agent.as_deref()?.rewritten(n),
            Rewrite::Nothing => return None,
        };
        // `block media` / `silence media`: RTCP always passes.
        let payload = match (self.gate[side], received) {
            (ForwardGate::Open, _) | (_, Received::Rtcp { .. }) => payload,
            (ForwardGate::Block, Received::Rtp { .. }) => return None,
            (ForwardGate::Silence, Received::Rtp { packet, .. }) => {
                // G.711 only: anything else cannot be silenced without an encoder.
                let law = match self
                    .streams
                    .get(socket.stream)?
                    .payloads
                    .kind(packet.payload_type())
                {
                    PayloadKind::Audio(codec) => codec.law()?,
                    _ => return None,
                };
                let (start, len) = (packet.header_len(), packet.payload().len());
                self.gate_buf.clear();
                self.gate_buf.extend_from_slice(payload);
                self.gate_buf
                    .get_mut(start..start + len)?
                    .fill(law.silence());
                &self.gate_buf[..]
            }
        };
        Some(Transmit {
            socket: SocketId {
                stream: socket.stream,
                side: other,
                port: out_port,
            },
            dst: target?,
            payload,
        })
    }

    /// Validates and latches a datagram on its leg and counts it; returns it parsed, with
    /// where the other leg's copy goes (unknown until that leg is signalled or latched).
    fn receive<'a>(
        &mut self,
        now: Instant,
        socket: SocketId,
        src: SocketAddr,
        data: &'a [u8],
    ) -> Option<(Received<'a>, Option<SocketAddr>, LocalPort)> {
        let side = socket.side;
        let other = side.other();
        let st = self.streams.get_mut(socket.stream)?;
        let received = match st.legs[side].on_datagram(data, src, socket.port, now) {
            Ok(r) => r,
            Err(reason) => {
                let label = match reason {
                    RelayDrop::UnexpectedSource => metrics::DropReason::UnexpectedSource,
                    RelayDrop::OutOfScope => metrics::DropReason::LatchOutOfScope,
                    _ => metrics::DropReason::Malformed,
                };
                self.metrics.media().rtp_dropped(side, label);
                return None;
            }
        };
        self.last_packet = Some(now);
        let (target, out_port) = match received {
            Received::Rtp { .. } => (st.legs[other].rtp_target(), LocalPort::Rtp),
            Received::Rtcp { .. } => (st.legs[other].rtcp_target(), LocalPort::Rtcp),
        };
        // Counters: per-packet atomics; loss and jitter about once a second.
        let inbound = self.stats.leg(side, metrics::Direction::Inbound);
        inbound.record_packet(data.len());
        if let Received::Rtp { class, .. } = received {
            if class == SeqClass::OutOfOrder {
                inbound.add_out_of_order(1);
            }
            let leg = &st.legs[side].stats;
            if leg.received() % STATS_EVERY == 0 {
                let lost = leg.lost().max(0);
                let reported = &mut st.lost_reported[side];
                if lost > *reported {
                    inbound.add_lost(u64::try_from(lost - *reported).unwrap_or(0));
                    *reported = lost;
                }
                self.metrics
                    .media()
                    .rtp_jitter(side, leg.jitter_ms(st.clock) / 1000.0);
            }
        }
        self.stats
            .leg(other, metrics::Direction::Outbound)
            .record_packet(data.len());
        Some((received, target, out_port))
    }

    /// Audio stream 0: the clamp (toward the agents), the trigger (the caller's keys) and the
    /// recorder path, all from one decode. Returns what to forward instead of the packet.
    fn tap_audio(&mut self, now: Instant, side: Side, packet: &RtpPacket<'_>) -> Rewrite {
        let Some(st) = self.streams.get_mut(0) else {
            return Rewrite::Original;
        };
        let mut rewrite = Rewrite::Original;
        if st.spec.encrypted {
            // Encrypted end to end (`media.undecodable = "relay-muted"`): relayed untouched
            // (no clamp: rewriting SRTP would break its authentication), never decoded or
            // read for keys; the recorder path hears silence, marked fail-closed.
            if let PayloadKind::Audio(codec) = st.payloads.kind(packet.payload_type()) {
                self.recorder
                    .audio(now, side, packet, None, codec.rtp_ticks());
                let ts = packet.timestamp().get();
                let hz = st.clock.get();
                let secs = match st.encrypted_ts[side].replace(ts) {
                    Some(prev) if ts.wrapping_sub(prev) <= hz => {
                        f64::from(ts.wrapping_sub(prev)) / f64::from(hz)
                    }
                    // The first packet, or a jump: one packet's worth.
                    _ => f64::from(ENCRYPTED_PACKET_MS) / 1000.0,
                };
                self.metrics.srtp().undecodable(side, secs);
            }
        } else {
            let clamp = self.agent.as_deref_mut().filter(|_| side == Side::Pbx);
            // The customer's keys (the PBX side), whoever dialled.
            let trigger = self.trigger.as_deref_mut().filter(|_| side == Side::Pbx);
            let mut key = None;
            match st.payloads.kind(packet.payload_type()) {
                PayloadKind::TelephoneEvent => {
                    if let Some(c) = clamp {
                        rewrite = c.event(packet, &st.payloads);
                    }
                    key = self.recorder.event(side, packet, trigger);
                }
                PayloadKind::Audio(codec) => {
                    // Decode only for a consumer (without a recorder, clamp or trigger on
                    // this leg the packet is only relayed and its events tracked).
                    let consumers = clamp.is_some() || trigger.is_some() || self.recorder.enabled();
                    let payload = if consumers { packet.payload() } else { &[][..] };
                    if consumers && self.pcm.is_empty() {
                        self.pcm = vec![0i16; MAX_DECODED].into_boxed_slice();
                    }
                    let decoded = match self.pcm.get_mut(..codec.samples_in(payload)) {
                        Some(_) if payload.is_empty() => Some(&[][..]),
                        Some(buf) => match st.decoders[side].decode(codec, payload, buf) {
                            Ok(n) => Some(&buf[..n]),
                            // A corrupt packet: its time is muted, marked fail-closed.
                            Err(_) => None,
                        },
                        // Larger than any datagram the shells receive: relay, nothing more.
                        None => Some(&[][..]),
                    };
                    let pcm = decoded.unwrap_or_default();
                    if let (Some(c), Some(law)) = (clamp, codec.law()) {
                        rewrite = c.audio(packet, law, pcm);
                    }
                    if let Some(t) = trigger {
                        key = t.audio(pcm);
                    }
                    self.recorder
                        .audio(now, side, packet, decoded, codec.rtp_ticks());
                }
                PayloadKind::Other => {
                    if let Some(c) = clamp {
                        rewrite = c.other(packet);
                    }
                    // Audio callmask cannot decode (not filtered out of the SDP: encrypted,
                    // comfort noise, a payload type never signalled): its time is muted,
                    // marked fail-closed in the sidecar, counted, warned once.
                    if !packet.payload().is_empty() {
                        self.recorder.audio(now, side, packet, None, 1);
                    }
                }
            }
            if let Some(m) = key {
                let on = m == KeyMatch::Trigger;
                self.recorder.secure(on);
                self.events.push_back(MediaEvent::SecureByKeys { on });
            }
        }
        rewrite
    }

    /// When [`Self::handle_timeout`] has something to do (the inactivity deadline); `None`
    /// once the call was reported inactive. Calling it late is fine: the shell may check on
    /// a coarse tick instead of re-arming a timer per packet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.inactive {
            return None;
        }
        Some(match self.last_packet {
            Some(t) => t + self.config.inactivity,
            None => self.created + self.config.inactivity * PRE_MEDIA_PATIENCE,
        })
    }

    /// Time has passed: queues [`MediaEvent::Inactive`] once the media went quiet.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|d| now >= d) {
            self.inactive = true;
            self.events.push_back(MediaEvent::Inactive);
        }
    }

    /// The next thing the shell must act on.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// The next sanitized event for the recorder. The queue is bounded (overflow is counted
    /// as dropped tap frames); drain it after every `handle_*`.
    pub fn poll_tap(&mut self) -> Option<TapEvent> {
        self.recorder.poll()
    }

    /// How many events [`Self::poll_tap`] would give now, and whether they are all audio
    /// frames (a shell may leave a few frames queued to hand them on together; other events
    /// should go at once).
    pub fn tap_backlog(&self) -> (usize, bool) {
        self.recorder.backlog()
    }

    /// The speech hook and both pipelines, for applying a recognizer verdict (the shell owns
    /// the reply channel). `None` without speech masking.
    pub fn speech_mut(&mut self) -> Option<(&mut S, [&mut MaskPipeline; 2])> {
        let rec = &mut self.recorder;
        let sp = rec.speech.as_mut()?;
        let [a, b] = rec.dirs.both_mut();
        Some((sp, [&mut a.pipeline, &mut b.pipeline]))
    }

    /// The call's media is over: flush both directions' look-ahead and queue the tap's
    /// `End`. Let speech verdicts in first (see `io::media`). Drain [`Self::poll_tap`] after.
    /// `ended`: when the call ended (before waiting for verdicts), so the recording lasts as
    /// long as the call; `None` uses the recorder's own clock.
    pub fn finish(&mut self, ended: Option<Instant>) {
        let length = ended.map(|t| t.saturating_duration_since(self.created));
        self.recorder.finish(length);
    }

    /// Whether a recorder path exists.
    pub fn taps(&self) -> bool {
        self.recorder.enabled()
    }

    /// The `m=` streams known so far.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Stream `i`'s latest spec.
    pub fn stream_spec(&self, i: usize) -> Option<&StreamSpec> {
        self.streams.get(i).map(|s| &s.spec)
    }

    /// Stream `i`'s receive state of `side` (statistics, drop counts).
    pub fn leg(&self, i: usize, side: Side) -> Option<&LegReceiver> {
        self.streams.get(i).map(|s| &s.legs[side])
    }
}

/// Per-side construction and split borrows the media core needs on top of [`BySide`].
impl<T> BySide<T> {
    /// A pair built from a function of the side.
    pub fn from_fn(mut f: impl FnMut(Side) -> T) -> Self {
        BySide([f(Side::Pbx), f(Side::Agents)])
    }

    /// Both values mutably at once (PBX, agents).
    pub fn both_mut(&mut self) -> [&mut T; 2] {
        let [a, b] = &mut self.0;
        [a, b]
    }
}

/// RTCP goes to the port after RTP unless signalled otherwise (RFC 3550 §11).
fn rtcp_of(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port().wrapping_add(1))
}
