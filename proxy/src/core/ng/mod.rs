//! Media-node mode: rtpengine's NG control protocol, sans-IO, so Kamailio's and OpenSIPS's
//! `rtpengine` modules drive callmask as their media relay.
//!
//! A datagram is `<cookie> <bencoded dictionary>`; the reply is `<cookie> <dictionary>`.
//! [`NgCore`] owns the calls the controller opened (keyed by Call-ID), the RTP port pool
//! they draw from, and the cookie cache. SDP is rewritten with the same anchoring code as the
//! SIP mode ([`crate::core::sdp::anchor`]); what the media layer must do comes out as
//! [`NgEvent`]s carrying the SIP mode's own [`MediaCommand`]s and [`CallCommand`]s, so both
//! modes run the same per-call media core, masking and recorder sinks.
//!
//! Legs: the party of the first offer's `from-tag` is [`Side::Pbx`] (the caller; recordings
//! put it left), the answering `to-tag` is [`Side::Agents`]. A later offer or answer names
//! its sender by tag, so re-INVITEs from either party move the right leg.
//!
//! Calling rules: after [`NgCore::handle_datagram`] (which returns the reply to send back to
//! the source), [`NgCore::handle_timeout`] or [`NgCore::handle_media_timeout`], drain
//! [`NgCore::poll_event`]; wake at [`NgCore::poll_timeout`].

pub mod bencode;
pub mod cookies;
pub mod request;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use config::types::SrtpMode;

use self::bencode::Value;
use self::cookies::{CookieCache, COOKIE_CAPACITY, COOKIE_TTL};
use self::request::{Command, RecordCall, Request, TransportProtocol};
use crate::core::media::{CallCommand, ForwardGate};
use crate::core::ports::{PortAllocator, PortPair};
use crate::core::proxy::{CallRef, MediaCommand, StreamSpec};
use crate::core::sdes::{SdpRole, StreamSrtp};
use crate::core::sdp::{anchor, filter_codecs, Codec, CodecFilter, LocalAnchor, MediaPlan};
use crate::core::sdp::{undecodable_streams, OriginState, Sdp, Undecodable};
use crate::core::side::{BySide, Side};

/// A bencoded dictionary (a command or a reply).
type Dict = BTreeMap<Vec<u8>, Value>;

/// NG call references start here, so they never meet the SIP mode's (which count from 1)
/// in the shared call table and recorder.
pub const NG_CALL_REF_BASE: u64 = 1 << 48;

/// A call offered but never answered nor deleted is dropped after this long (a controller
/// that lost its `delete` must not leak ports).
pub const UNANSWERED_TTL: Duration = Duration::from_secs(300);

/// Core settings.
#[derive(Debug, Clone)]
pub struct NgConfig {
    /// The media address written into SDP toward each leg (`Pbx`: the offerer's).
    pub media_ip: BySide<IpAddr>,
    /// Audio codecs kept in forwarded SDP (`media.codecs`), as in the SIP mode.
    pub codecs: Vec<config::types::MediaCodec>,
    /// Calls at most (an offer beyond is refused).
    pub max_calls: usize,
}

impl NgConfig {
    /// Everything on 127.0.0.1 with the default codecs (tests, fuzzing).
    pub fn loopback() -> Self {
        NgConfig {
            media_ip: BySide::new(Ipv4Addr::LOCALHOST.into(), Ipv4Addr::LOCALHOST.into()),
            codecs: config::types::MediaCodec::DECODABLE.to_vec(),
            max_calls: 10_000,
        }
    }
}

/// The parties of an NG call as the controller named them.
#[derive(Clone, PartialEq, Eq)]
pub struct NgParties {
    /// SIP Call-ID.
    pub call_id: Bytes,
    /// `from-tag`.
    pub from_tag: Bytes,
    /// `to-tag`.
    pub to_tag: Bytes,
}

impl std::fmt::Debug for NgParties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A Call-ID may hold a number (PHI): never in debug output.
        f.write_str("NgParties(<redacted>)")
    }
}

/// How a command ended (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `result: ok` / `pong`.
    Ok,
    /// `result: error`.
    Error,
    /// A retransmission answered from the cookie cache.
    Replayed,
}

/// What the shell must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NgEvent {
    /// A call's media begins (its first answer): create its recorder metadata.
    CallStarted {
        /// The call.
        call: CallRef,
        /// Call-ID and tags, for the recording's sidecar.
        parties: NgParties,
    },
    /// The media layer must act (the SIP mode's commands).
    Media(MediaCommand),
    /// A live call's media core must act.
    Call {
        /// The call.
        call: CallRef,
        /// What to do.
        command: CallCommand,
    },
    /// The call is over (deleted, timed out, or its media went quiet).
    CallEnded {
        /// The call.
        call: CallRef,
    },
    /// A command was handled (for counting; `None` when the command was not understood).
    Handled {
        /// Which command.
        command: Option<Command>,
        /// How.
        outcome: Outcome,
    },
}

/// One anchored stream: callmask's ports and the peers' addresses per leg.
#[derive(Debug)]
struct Stream {
    local: BySide<PortPair>,
    remote: BySide<Option<SocketAddr>>,
    codecs: Vec<Codec>,
    /// SDES keys per leg (each leg keyed on its own, as in the SIP mode).
    srtp: StreamSrtp,
}

#[derive(Debug, Default)]
struct Leg {
    tag: Option<Bytes>,
    label: Option<String>,
    via_branch: Option<String>,
}

#[derive(Debug)]
struct Call {
    id: CallRef,
    call_id: Bytes,
    legs: BySide<Leg>,
    streams: Vec<Stream>,
    origin: BySide<OriginState>,
    /// The media layer knows the call (after its first answer).
    started: bool,
    /// Given up at this time unless answered (`None` once answered).
    deadline: Option<Instant>,
    created: Instant,
    dtmf_security: dsp::clamp::ClampMode,
    dtmf_blocked: bool,
    recording: bool,
    /// `block media` / `silence media` per sending party.
    gates: BySide<ForwardGate>,
}

impl Call {
    fn side_of(&self, tag: &[u8]) -> Option<Side> {
        Side::BOTH
            .into_iter()
            .find(|&s| self.legs[s].tag.as_deref() == Some(tag))
    }

    fn specs(&self) -> Vec<StreamSpec> {
        self.streams
            .iter()
            .enumerate()
            .map(|(index, s)| StreamSpec {
                index,
                pbx_local: s.local[Side::Pbx],
                agents_local: s.local[Side::Agents],
                pbx_remote: s.remote[Side::Pbx],
                agents_remote: s.remote[Side::Agents],
                codecs: s.codecs.clone(),
                // SRTP callmask cannot decrypt is refused: every stream is decodable.
                encrypted: false,
                srtp: BySide::new(s.srtp.leg(Side::Pbx), s.srtp.leg(Side::Agents)),
            })
            .collect()
    }
}

/// The SDES policy toward the leg an offer/answer goes to, in the SIP mode's terms
/// ([`SrtpMode`]; the sender's own leg takes what it sent, `mirror`): plain for `RTP/AVP`,
/// SRTP with callmask's key for `RTP/SAVP`, like the sender otherwise (rtpengine's default).
/// `SDES-off` without `RTP/AVP` on an SRTP offer keeps an SRTP profile with no key, which
/// only DTLS-SRTP could serve: refused (before any port is taken).
fn srtp_toward(req: &Request, plan: &MediaPlan) -> Result<SrtpMode, String> {
    let sender_srtp = plan.streams.iter().any(|s| s.is_active() && s.secure);
    match (req.transport_protocol, req.sdes_off) {
        (Some(TransportProtocol::Plain), _) => Ok(SrtpMode::Optional),
        (Some(TransportProtocol::Sdes), false) => Ok(SrtpMode::Require),
        (None, false) => Ok(SrtpMode::Mirror),
        (None, true) if !sender_srtp => Ok(SrtpMode::Optional),
        (Some(TransportProtocol::Sdes), true) | (None, true) => {
            Err("SRTP without SDES keys needs DTLS-SRTP, which callmask does not support".into())
        }
    }
}

impl Call {
    /// The SDP's sender (the offer's from-tag, the answer's to-tag), with the tags, label,
    /// via-branch and DTMF-security the request names for its leg.
    fn take_sender(&mut self, req: &Request, from_tag: Bytes, offer: bool) -> Result<Side, String> {
        let to_tag = req.to_tag.clone().map(Bytes::from);
        let from = if offer {
            // A new from-tag on a known call takes the caller's leg too (rtpengine would add
            // a monologue; callmask has two legs, the newest offerer takes the caller's).
            self.side_of(&from_tag).unwrap_or(Side::Pbx)
        } else {
            let tag = to_tag.clone().ok_or("No to-tag in message")?;
            match self.side_of(&tag) {
                Some(s) => s,
                // A first answer, or another fork's: the answering leg is the callee's
                // unless the from-tag says the caller's leg offered from the other side.
                None => self.side_of(&from_tag).map_or(Side::Agents, Side::other),
            }
        };
        let sender_tag = if offer {
            from_tag.clone()
        } else {
            to_tag.clone().unwrap_or_default()
        };
        self.legs[from].tag = Some(sender_tag);
        if offer {
            if let Some(t) = &to_tag {
                self.legs[from.other()].tag = Some(t.clone());
            }
        } else if self.legs[from.other()].tag.is_none() {
            self.legs[from.other()].tag = Some(from_tag);
        }
        if let Some(l) = &req.label {
            self.legs[from].label = Some(l.clone());
        }
        if let Some(v) = &req.via_branch {
            self.legs[from].via_branch = Some(v.clone());
        }
        if let Some(mode) = req.dtmf_security {
            self.dtmf_security = mode;
        }
        Ok(from)
    }

    /// SDES per leg: the sender's key is learnt, the SDP toward the other leg carries
    /// callmask's own key or none, as the controller asks (`toward`).
    fn apply_sdes(
        &mut self,
        sdp: &mut Sdp,
        plan: &MediaPlan,
        from: Side,
        role: SdpRole,
        toward: SrtpMode,
    ) -> Result<(), String> {
        let mut modes = BySide::new(SrtpMode::Mirror, SrtpMode::Mirror);
        modes[from.other()] = toward;
        for (i, p) in plan.streams.iter().enumerate() {
            if let Some(st) = self.streams.get_mut(i).filter(|_| p.is_active()) {
                st.srtp
                    .apply(sdp, i, from, role, modes, true)
                    .map_err(|_| "SRTP could not be negotiated on this leg")?;
            }
        }
        Ok(())
    }

    /// Rewrites the SDP toward the other leg (callmask's address and ports there) and
    /// learns the sender's media addresses and codecs. Returns the body to send on.
    fn anchor_toward(
        &mut self,
        sdp: Sdp,
        plan: &MediaPlan,
        from: Side,
        addr: IpAddr,
    ) -> Result<Bytes, String> {
        let to = from.other();
        let ports: Vec<Option<PortPair>> = plan
            .streams
            .iter()
            .zip(&self.streams)
            .map(|(p, s)| p.is_active().then_some(s.local[to]))
            .collect();
        let anchored = anchor(
            sdp,
            &LocalAnchor {
                addr,
                ports: &ports,
            },
            &mut self.origin[to],
        )
        .map_err(|_| "Failed to rewrite SDP")?;
        for (s, p) in self.streams.iter_mut().zip(&anchored.plan.streams) {
            s.remote[from] = if p.is_active() { p.remote } else { None };
            if !p.codecs.is_empty() {
                s.codecs = p.codecs.clone();
            }
        }
        Ok(anchored.body)
    }
}

/// Ports (a pair per side) for each stream the call does not have yet.
fn add_streams(
    ports: &mut PortAllocator,
    call: &mut Call,
    n: usize,
    now: Instant,
) -> Result<(), String> {
    while call.streams.len() < n {
        let Some(a) = ports.alloc(now) else {
            return Err("Ran out of ports".into());
        };
        let Some(b) = ports.alloc(now) else {
            let _ = ports.free(a, now);
            return Err("Ran out of ports".into());
        };
        call.streams.push(Stream {
            local: BySide::new(a, b),
            remote: BySide::default(),
            codecs: Vec::new(),
            srtp: StreamSrtp::default(),
        });
    }
    Ok(())
}

/// The media layer learns the call's streams (an answer, or a re-offer once started); the
/// first time, the call starts, and what the controller asked before media existed
/// (`block DTMF`, `record-call=no`, `block`/`silence media`) is applied.
fn announce_media(events: &mut VecDeque<NgEvent>, call: &mut Call) {
    let id = call.id;
    call.deadline = None;
    if !call.started {
        call.started = true;
        events.push_back(NgEvent::CallStarted {
            call: id,
            parties: NgParties {
                call_id: call.call_id.clone(),
                from_tag: call.legs[Side::Pbx].tag.clone().unwrap_or_default(),
                to_tag: call.legs[Side::Agents].tag.clone().unwrap_or_default(),
            },
        });
    }
    events.push_back(NgEvent::Media(MediaCommand::Upsert {
        call: id,
        streams: call.specs(),
    }));
    let command = |command| NgEvent::Call { call: id, command };
    if call.dtmf_blocked {
        events.push_back(command(CallCommand::AgentDtmf(Some(call.dtmf_security))));
    }
    if !call.recording {
        events.push_back(command(CallCommand::Secure(true)));
    }
    for (from, &gate) in call.gates.iter() {
        if gate != ForwardGate::Open {
            events.push_back(command(CallCommand::Forward { from, gate }));
        }
    }
}

/// `record-call=yes|no`: the recorder path muted (secure mode) or not.
fn set_recording(events: &mut VecDeque<NgEvent>, call: &mut Call, on: bool) {
    if call.recording != on {
        call.recording = on;
        if call.started {
            events.push_back(NgEvent::Call {
                call: call.id,
                command: CallCommand::Secure(!on),
            });
        }
    }
}

/// Per-call packet counts for `query`, read from the media layer by the shell.
pub trait StatsSource {
    /// (packets, bytes) received from `side`'s peer, if the media layer knows the call.
    fn received(&self, call: CallRef, side: Side) -> Option<(u64, u64)>;
}

/// No media layer (tests): every count is zero.
impl StatsSource for () {
    fn received(&self, _call: CallRef, _side: Side) -> Option<(u64, u64)> {
        None
    }
}

/// The NG control core.
#[derive(Debug)]
pub struct NgCore {
    config: NgConfig,
    ports: PortAllocator,
    calls: HashMap<Bytes, Call>,
    by_ref: HashMap<CallRef, Bytes>,
    next: u64,
    cookies: CookieCache,
    events: VecDeque<NgEvent>,
    limits: bencode::Limits,
    /// Shutting down: offers for new calls are refused (the controller picks another
    /// node), the calls in progress go on.
    draining: bool,
}

impl NgCore {
    /// A core drawing RTP ports from `ports`.
    pub fn new(config: NgConfig, ports: PortAllocator) -> Self {
        NgCore {
            config,
            ports,
            calls: HashMap::new(),
            by_ref: HashMap::new(),
            next: NG_CALL_REF_BASE,
            cookies: CookieCache::new(COOKIE_TTL, COOKIE_CAPACITY),
            events: VecDeque::new(),
            limits: bencode::Limits::default(),
            draining: false,
        }
    }

    /// Drain for shutdown: an offer for a call not already here gets an error reply
    /// ("draining"), so the controller (Kamailio's rtpengine set) uses another node; the
    /// calls in progress keep every command.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Handles one datagram from the controller at `src` without packet statistics (see
    /// [`Self::handle_datagram_with`]).
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, data: &[u8]) -> Option<Bytes> {
        self.handle_datagram_with(now, src, data, &())
    }

    /// Handles one datagram from `src`; returns the reply to send back to `src`, or `None`
    /// for a datagram without a cookie (nothing to answer to). A cookie already answered
    /// gets the same reply again, and the command does not run twice.
    pub fn handle_datagram_with(
        &mut self,
        now: Instant,
        src: SocketAddr,
        data: &[u8],
        stats: &dyn StatsSource,
    ) -> Option<Bytes> {
        let space = data.iter().position(|&b| b == b' ')?;
        let cookie = &data[..space];
        if cookie.is_empty() || cookie.len() > 256 || !cookie.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        let cookie = Bytes::copy_from_slice(cookie);
        if let Some(reply) = self.cookies.get(now, src, &cookie) {
            self.events.push_back(NgEvent::Handled {
                command: None,
                outcome: Outcome::Replayed,
            });
            return Some(reply);
        }
        let (command, result) = self.run(now, &data[space + 1..], stats);
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(_) => Outcome::Error,
        };
        self.events.push_back(NgEvent::Handled { command, outcome });
        let dict = result.unwrap_or_else(|reason| {
            BTreeMap::from([
                (b"result".to_vec(), Value::str("error")),
                (b"error-reason".to_vec(), Value::str(&reason)),
            ])
        });
        let mut out = Vec::with_capacity(cookie.len() + 64);
        out.extend_from_slice(&cookie);
        out.push(b' ');
        Value::Dict(dict).encode_into(&mut out);
        let reply = Bytes::from(out);
        self.cookies.insert(now, src, cookie, reply.clone());
        Some(reply)
    }

    /// What the shell must do next.
    pub fn poll_event(&mut self) -> Option<NgEvent> {
        self.events.pop_front()
    }

    /// When to call [`Self::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().filter_map(|c| c.deadline).min();
        match (calls, self.cookies.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires cookies and gives up calls never answered.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.cookies.expire(now);
        let due: Vec<Bytes> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.end_call(&k, now);
        }
    }

    /// The media layer saw no packet on `call` for its inactivity limit: end it (a later
    /// `delete` from the controller then gets rtpengine's "Unknown call-id").
    pub fn handle_media_timeout(&mut self, call: CallRef, now: Instant) {
        if let Some(k) = self.by_ref.get(&call).cloned() {
            self.end_call(&k, now);
        }
    }

    /// Live calls.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// The port pool (metrics).
    pub fn ports(&self) -> &PortAllocator {
        &self.ports
    }

    fn run(
        &mut self,
        now: Instant,
        body: &[u8],
        stats: &dyn StatsSource,
    ) -> (Option<Command>, Result<Dict, String>) {
        let dict = match bencode::decode(body, self.limits) {
            Ok(Value::Dict(d)) => d,
            Ok(_) => return (None, Err("Request is not a dictionary".into())),
            Err(e) => return (None, Err(format!("Failed to decode request: {e}"))),
        };
        let req = match request::parse(&dict) {
            Ok(r) => r,
            Err(reason) => {
                let command = dict
                    .get(&b"command"[..])
                    .and_then(Value::as_str)
                    .and_then(|c| Command::ALL.into_iter().find(|k| k.as_str() == c));
                return (command, Err(reason));
            }
        };
        let command = req.command;
        let result = match command {
            Command::Ping => Ok(BTreeMap::from([(b"result".to_vec(), Value::str("pong"))])),
            Command::Offer => self.offer_answer(now, &req, true),
            Command::Answer => self.offer_answer(now, &req, false),
            Command::Delete => self.delete(now, &req, stats),
            Command::Query => self.query(now, &req, stats),
            Command::List => Ok(self.list(&req)),
            Command::BlockDtmf | Command::UnblockDtmf => self.block_dtmf(&req),
            Command::BlockMedia
            | Command::UnblockMedia
            | Command::SilenceMedia
            | Command::UnsilenceMedia => self.gate_media(&req),
            Command::StartRecording | Command::StopRecording => self.recording(&req),
        };
        (Some(command), result)
    }

    /// `offer` / `answer`: a chain of named steps (admit the SDP, find or make the call, the
    /// sender's leg, ports, SDES, anchoring, the media layer's commands).
    fn offer_answer(&mut self, now: Instant, req: &Request, offer: bool) -> Result<Dict, String> {
        let call_id = Bytes::from(req.call_id.clone().ok_or("No call-id in message")?);
        // Checked before a call is made for it.
        let from_tag = Bytes::from(req.from_tag.clone().ok_or("No from-tag in message")?);
        let (mut sdp, plan, toward) = self.admit_sdp(req, &call_id, offer)?;
        self.ensure_call(&call_id, offer, now)?;
        let Some(call) = self.calls.get_mut(&call_id) else {
            return Err("Unknown call-id".into());
        };
        let from = call.take_sender(req, from_tag, offer)?;
        add_streams(&mut self.ports, call, plan.streams.len(), now)?;
        let role = if offer {
            SdpRole::Offer
        } else {
            SdpRole::Answer
        };
        call.apply_sdes(&mut sdp, &plan, from, role, toward)?;
        let body = call.anchor_toward(sdp, &plan, from, self.config.media_ip[from.other()])?;
        if !offer || call.started {
            announce_media(&mut self.events, call);
        }
        if let Some(rc) = req.record_call {
            set_recording(&mut self.events, call, rc == RecordCall::On);
        }
        let sdp = String::from_utf8_lossy(&body).into_owned();
        Ok(BTreeMap::from([
            (b"result".to_vec(), Value::str("ok")),
            (b"sdp".to_vec(), Value::Bytes(sdp.into_bytes())),
        ]))
    }

    /// Checks an offer/answer before anything is allocated: the call limit, the SDP, its
    /// codecs (`media.codecs` as in the SIP mode: never an unrecorded call) and its SRTP
    /// (what callmask cannot decrypt is refused: relayed, the tap would record ciphertext as
    /// audio, issue 14). Returns the SDP with undecodable codecs removed, its media plan and
    /// the SDES mode toward the leg it goes to.
    fn admit_sdp(
        &self,
        req: &Request,
        call_id: &Bytes,
        offer: bool,
    ) -> Result<(Sdp, MediaPlan, SrtpMode), String> {
        let body = req.sdp.clone().ok_or("No SDP body in message")?;
        if offer && !self.calls.contains_key(call_id) {
            if self.draining {
                return Err("Media node draining (shutting down): use another node".into());
            }
            if self.calls.len() >= self.config.max_calls {
                return Err("Call limit reached".into());
            }
        }
        let mut sdp = Sdp::parse(Bytes::from(body)).map_err(|_| "Failed to parse SDP")?;
        match filter_codecs(&mut sdp, &self.config.codecs) {
            Ok(CodecFilter::Unacceptable { .. }) => {
                return Err("No codec the recorder can decode (media.codecs)".into())
            }
            Ok(_) => {}
            Err(_) => return Err("Failed to rewrite SDP".into()),
        }
        match undecodable_streams(&sdp).into_iter().flatten().next() {
            Some(Undecodable::Dtls) => return Err("DTLS-SRTP is not supported by callmask".into()),
            Some(Undecodable::Sdes) => {
                return Err("SRTP with no SDES suite callmask terminates (AES_CM_128_HMAC_SHA1_80/32, AEAD_AES_128/256_GCM)".into())
            }
            None => {}
        }
        let plan = MediaPlan::from_sdp(&sdp);
        let toward = srtp_toward(req, &plan)?;
        Ok((sdp, plan, toward))
    }

    /// A new call for an offer with an unknown Call-ID (an answer needs a known one).
    fn ensure_call(&mut self, call_id: &Bytes, offer: bool, now: Instant) -> Result<(), String> {
        if self.calls.contains_key(call_id) {
            return Ok(());
        }
        if !offer {
            return Err("Unknown call-id".into());
        }
        let id = CallRef(self.next);
        self.next += 1;
        self.by_ref.insert(id, call_id.clone());
        self.calls.insert(
            call_id.clone(),
            Call {
                id,
                call_id: call_id.clone(),
                legs: BySide::default(),
                streams: Vec::new(),
                origin: BySide::default(),
                started: false,
                deadline: Some(now + UNANSWERED_TTL),
                created: now,
                dtmf_security: dsp::clamp::ClampMode::Silence,
                dtmf_blocked: false,
                recording: true,
                gates: BySide::default(),
            },
        );
        Ok(())
    }

    fn call_mut(&mut self, req: &Request) -> Result<&mut Call, String> {
        let call_id = req.call_id.as_deref().ok_or("No call-id in message")?;
        self.calls
            .get_mut(call_id)
            .ok_or_else(|| "Unknown call-id".to_string())
    }

    fn delete(
        &mut self,
        now: Instant,
        req: &Request,
        stats: &dyn StatsSource,
    ) -> Result<Dict, String> {
        let key = self.call_mut(req)?.call_id.clone();
        let mut reply = self.query(now, req, stats)?;
        self.end_call(&key, now);
        reply.insert(b"result".to_vec(), Value::str("ok"));
        Ok(reply)
    }

    fn query(
        &mut self,
        now: Instant,
        req: &Request,
        stats: &dyn StatsSource,
    ) -> Result<Dict, String> {
        let call = self.call_mut(req)?;
        let mut totals = (0u64, 0u64);
        let mut tags = BTreeMap::new();
        for side in Side::BOTH {
            let (packets, bytes) = stats.received(call.id, side).unwrap_or_default();
            totals.0 += packets;
            totals.1 += bytes;
            let leg = &call.legs[side];
            let Some(tag) = &leg.tag else { continue };
            let streams: Vec<Value> = call
                .streams
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut endpoint = BTreeMap::new();
                    if let Some(r) = s.remote[side] {
                        let family = if r.is_ipv4() { "IPv4" } else { "IPv6" };
                        endpoint.insert(b"family".to_vec(), Value::str(family));
                        endpoint.insert(b"address".to_vec(), Value::str(&r.ip().to_string()));
                        endpoint.insert(b"port".to_vec(), Value::Int(i64::from(r.port())));
                    }
                    Value::Dict(BTreeMap::from([
                        (b"index".to_vec(), Value::Int(i as i64 + 1)),
                        (b"type".to_vec(), Value::str("audio")),
                        (b"protocol".to_vec(), Value::str("RTP/AVP")),
                        (
                            b"streams".to_vec(),
                            Value::List(vec![Value::Dict(BTreeMap::from([
                                (
                                    b"local port".to_vec(),
                                    Value::Int(i64::from(s.local[side].rtp())),
                                ),
                                (b"endpoint".to_vec(), Value::Dict(endpoint)),
                            ]))]),
                        ),
                    ]))
                })
                .collect();
            let mut d = BTreeMap::from([
                (b"tag".to_vec(), Value::Bytes(tag.to_vec())),
                (b"medias".to_vec(), Value::List(streams)),
                (b"stats".to_vec(), rtp_stats(packets, bytes)),
            ]);
            if let Some(l) = &leg.label {
                d.insert(b"label".to_vec(), Value::str(l));
            }
            if let Some(v) = &leg.via_branch {
                d.insert(b"via-branch".to_vec(), Value::str(v));
            }
            tags.insert(tag.to_vec(), Value::Dict(d));
        }
        let age = now.saturating_duration_since(call.created).as_secs();
        Ok(BTreeMap::from([
            (b"result".to_vec(), Value::str("ok")),
            (b"duration".to_vec(), Value::Int(age as i64)),
            (b"tags".to_vec(), Value::Dict(tags)),
            (
                b"totals".to_vec(),
                Value::Dict(BTreeMap::from([
                    (b"RTP".to_vec(), rtp_stats(totals.0, totals.1)),
                    (b"RTCP".to_vec(), rtp_stats(0, 0)),
                ])),
            ),
            (
                b"DTMF blocked".to_vec(),
                Value::str(if call.dtmf_blocked { "yes" } else { "no" }),
            ),
            (
                b"recording".to_vec(),
                Value::str(if call.recording { "yes" } else { "no" }),
            ),
        ]))
    }

    fn list(&self, req: &Request) -> Dict {
        let limit = req.limit.unwrap_or(32);
        let mut ids: Vec<&Bytes> = self.calls.keys().collect();
        ids.sort();
        let calls = ids
            .into_iter()
            .take(limit)
            .map(|k| Value::Bytes(k.to_vec()))
            .collect();
        BTreeMap::from([
            (b"result".to_vec(), Value::str("ok")),
            (b"calls".to_vec(), Value::List(calls)),
        ])
    }

    fn block_dtmf(&mut self, req: &Request) -> Result<Dict, String> {
        let block = req.command == Command::BlockDtmf;
        let call = self.call_mut(req)?;
        // callmask clamps the caller's DTMF on its way to the callee (the agent leg); a
        // request naming the callee's tag asks for the other direction.
        if let Some(tag) = &req.from_tag {
            if call.side_of(tag) == Some(Side::Agents) {
                return Err("callmask blocks DTMF from the caller (offerer) leg only".into());
            }
        }
        if let Some(mode) = req.dtmf_security {
            call.dtmf_security = mode;
        }
        call.dtmf_blocked = block;
        let (id, started, mode) = (call.id, call.started, call.dtmf_security);
        if started {
            self.events.push_back(NgEvent::Call {
                call: id,
                command: CallCommand::AgentDtmf(block.then_some(mode)),
            });
        }
        Ok(ok())
    }

    /// `block media` / `silence media` and their `un-`: the `from-tag` party's media (every
    /// party's without one) is not forwarded, or forwarded as silence (rtpengine semantics;
    /// the recording is not affected). An `un-` lifts only its own kind of gate.
    fn gate_media(&mut self, req: &Request) -> Result<Dict, String> {
        let (gate, lift) = match req.command {
            Command::BlockMedia => (ForwardGate::Block, false),
            Command::UnblockMedia => (ForwardGate::Block, true),
            Command::SilenceMedia => (ForwardGate::Silence, false),
            _ => (ForwardGate::Silence, true),
        };
        let call = self.call_mut(req)?;
        let sides: Vec<Side> = match &req.from_tag {
            Some(tag) => vec![call.side_of(tag).ok_or("Unknown from-tag for this call")?],
            None => Side::BOTH.to_vec(),
        };
        let (id, started) = (call.id, call.started);
        let mut changed = Vec::new();
        for from in sides {
            let now = match (lift, call.gates[from] == gate) {
                (true, true) => ForwardGate::Open,
                (true, false) => continue,
                (false, _) => gate,
            };
            call.gates[from] = now;
            changed.push((from, now));
        }
        if started {
            for (from, gate) in changed {
                self.events.push_back(NgEvent::Call {
                    call: id,
                    command: CallCommand::Forward { from, gate },
                });
            }
        }
        Ok(ok())
    }

    fn recording(&mut self, req: &Request) -> Result<Dict, String> {
        let on = req.command == Command::StartRecording;
        let call = self.call_mut(req)?;
        call.recording = on;
        let (id, started) = (call.id, call.started);
        if started {
            self.events.push_back(NgEvent::Call {
                call: id,
                command: CallCommand::Secure(!on),
            });
        }
        Ok(ok())
    }

    fn end_call(&mut self, key: &Bytes, now: Instant) {
        let Some(call) = self.calls.remove(key) else {
            return;
        };
        self.by_ref.remove(&call.id);
        for s in &call.streams {
            for side in Side::BOTH {
                let _ = self.ports.free(s.local[side], now);
            }
        }
        if call.started {
            self.events
                .push_back(NgEvent::Media(MediaCommand::Remove { call: call.id }));
            self.events.push_back(NgEvent::CallEnded { call: call.id });
        }
    }
}

fn ok() -> Dict {
    BTreeMap::from([(b"result".to_vec(), Value::str("ok"))])
}

fn rtp_stats(packets: u64, bytes: u64) -> Value {
    Value::Dict(BTreeMap::from([
        (b"packets".to_vec(), Value::Int(packets as i64)),
        (b"bytes".to_vec(), Value::Int(bytes as i64)),
        (b"errors".to_vec(), Value::Int(0)),
    ]))
}

#[cfg(test)]
mod tests;
