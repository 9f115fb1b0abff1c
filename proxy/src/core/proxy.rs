//! The SIP routing core: what callmask does with each message between the PBX side and the
//! agents side, and which media it anchors. Sans-IO.
//!
//! callmask is a transaction-stateful, record-routing proxy that rewrites SDP (the Kamailio +
//! rtpengine pair in one place). A request that arrives on one side leaves on the other,
//! toward that side's peer (trunk mode). Each request gets a server transaction and each
//! forwarded request a client transaction (RFC 3261 §16, §17; `proxy_txn.rs`):
//!
//! - INVITE: 100 Trying at once; retransmissions absorbed and answered with the latest
//!   response; the proxy retransmits downstream itself on UDP (timers A/E) and answers 408
//!   upstream when the next hop never answers (timers B/F, §16.8); timer C bounds a ringing
//!   INVITE (CANCEL downstream, then 408).
//! - Non-2xx finals are ACKed hop by hop (the client transaction ACKs downstream, the server
//!   transaction absorbs the upstream ACK); their retransmissions are absorbed. A 2xx and its
//!   ACK pass end to end (§16.7 step 10, §16.11).
//! - CANCEL is answered 200 by callmask and forwarded to the pending client transaction; the
//!   487 comes back through the INVITE's transactions (§16.10).
//!
//! The downstream branch is still derived from the incoming one, so a stateless fallback
//! (CANCEL or 2xx with no transaction) keeps landing in the right place. Responses return to
//! the address the request really came from (NAT-safe), with the Via as fallback.
//!
//! Every SDP that crosses is anchored: its `c=`/`m=` point at callmask's ports on the side it
//! is sent to, and the sender's own address becomes the remote of that side's leg. The core
//! allocates the ports and tells the media layer what to relay through [`ProxyEvent::Media`].
//!
//! Calling rules: feed each datagram with [`ProxyCore::handle_datagram`] (with `now`), then
//! drain [`ProxyCore::poll_transmit`] and [`ProxyCore::poll_event`]; call
//! [`ProxyCore::handle_timeout`] when [`ProxyCore::poll_timeout`] is due (it moves after
//! every `handle_*`: ask again each time).

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ports::{PortAllocator, PortPair};
use super::registrar::Registrar;
use super::sdp::{anchor, Codec, LocalAnchor, OriginState, Sdp};
use super::sip::txn::{build_cancel, Timers, TransactionKey, TxnEvent};
use super::sip::{
    build_response, parse_datagram, reject_request, reject_unparsed, Frame, Limits, MaxForwards,
    Method, RejectReason, SipMessage, StatusCode, Via, MAGIC_COOKIE,
};
use txn::{AckMatch, CancelState, ClientEntry, ClientTxn, Hop, ServerEntry, Txns};

/// Prefix of every branch callmask writes, so its own Via is recognisable.
const BRANCH_PREFIX: &str = "z9hG4bKcm";
/// How long a finished call's Call-ID is remembered against late INVITE copies (64·T1).
const PATH_TTL: Duration = Duration::from_secs(32);
/// Timer C (RFC 3261 §16.6 step 11: more than 3 minutes), restarted by each provisional.
const TIMER_C: Duration = Duration::from_secs(181);
/// An INVITE that never gets a final response is given up after this long.
const EARLY_CALL_TTL: Duration = Duration::from_secs(300);
/// A BYE that never gets a response ends the call after this long (64·T1).
const BYE_TTL: Duration = Duration::from_secs(32);

/// One of callmask's two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The PBX / carrier side.
    Pbx,
    /// The agents' side.
    Agents,
}

impl Side {
    /// The opposite side.
    pub fn other(self) -> Side {
        match self {
            Side::Pbx => Side::Agents,
            Side::Agents => Side::Pbx,
        }
    }

    /// Stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Pbx => "pbx",
            Side::Agents => "agents",
        }
    }

    fn idx(self) -> usize {
        match self {
            Side::Pbx => 0,
            Side::Agents => 1,
        }
    }
}

/// What callmask is on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideConfig {
    /// The SIP address callmask advertises on this side (Via, Record-Route).
    pub sip_addr: SocketAddr,
    /// The media address callmask advertises on this side (SDP `c=`).
    pub media_ip: IpAddr,
    /// Where requests leaving on this side go (trunk mode); `None` = no peer configured.
    pub peer: Option<SocketAddr>,
}

/// Core settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The PBX side.
    pub pbx: SideConfig,
    /// The agents' side.
    pub agents: SideConfig,
    /// SIP parser limits.
    pub limits: Limits,
    /// Secret mixed into branch ids so they cannot be predicted from outside.
    pub secret: u64,
}

impl ProxyConfig {
    fn side(&self, s: Side) -> &SideConfig {
        match s {
            Side::Pbx => &self.pbx,
            Side::Agents => &self.agents,
        }
    }
}

/// callmask's own opaque id of a call (never the SIP Call-ID, which may hold a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

/// The SIP transport a message arrived on or leaves by. Requests are forwarded on the
/// transport they arrived on; responses return on their request's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipTransport {
    /// UDP datagrams.
    Udp,
    /// TCP stream (Content-Length framing).
    Tcp,
}

impl SipTransport {
    /// The token in a Via sent-protocol.
    pub fn via_token(self) -> &'static str {
        match self {
            SipTransport::Udp => "UDP",
            SipTransport::Tcp => "TCP",
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Which side's socket sends it.
    pub side: Side,
    /// UDP or TCP (TCP: over the connection with `dest`, opened if needed).
    pub transport: SipTransport,
    /// Destination.
    pub dest: SocketAddr,
    /// The bytes.
    pub payload: Bytes,
}

/// One anchored stream (one `m=` line) of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// `m=` index.
    pub index: usize,
    /// callmask's ports facing the PBX side.
    pub pbx_local: PortPair,
    /// callmask's ports facing the agents' side.
    pub agents_local: PortPair,
    /// Where the PBX side asked for media (as signalled; latching may refine it).
    pub pbx_remote: Option<SocketAddr>,
    /// Where the agents' side asked for media.
    pub agents_remote: Option<SocketAddr>,
    /// Codecs signalled (payload type → name and rate), from the latest SDP.
    pub codecs: Vec<Codec>,
}

/// Instructions for the media layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// Create or update the relay for a call (idempotent; called after every SDP).
    Upsert {
        /// The call.
        call: CallRef,
        /// Its anchored streams.
        streams: Vec<StreamSpec>,
    },
    /// Stop relaying; the ports are back in the pool.
    Remove {
        /// The call.
        call: CallRef,
    },
}

/// The caller's and callee's URIs of a call (PHI; see [`ProxyEvent::CallStarted`]).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Parties {
    /// SIP Call-ID.
    pub call_id: Bytes,
    /// From URI.
    pub from: Bytes,
    /// To URI.
    pub to: Bytes,
}

impl std::fmt::Debug for Parties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parties(<redacted>)")
    }
}

/// How a call ended (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// Answered and hung up.
    Completed,
    /// Refused with a final non-2xx response.
    Failed,
    /// Cancelled before answer.
    Cancelled,
    /// Given up by callmask (no final response, no BYE response, media timeout).
    TimedOut,
}

impl CallOutcome {
    /// Stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Completed => "completed",
            CallOutcome::Failed => "failed",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::TimedOut => "timed_out",
        }
    }
}

/// What happened, for the owner (metrics, media layer, recorder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEvent {
    /// The media layer must act.
    Media(MediaCommand),
    /// A new call (initial INVITE) from `side`.
    CallStarted {
        /// The call.
        call: CallRef,
        /// Where the caller is.
        caller_side: Side,
        /// From and To URIs as received. PHI: the shell hashes them before anything is
        /// logged ([`crate::redact`]); they never go into metrics.
        parties: Parties,
    },
    /// The call was answered (2xx to the initial INVITE).
    CallAnswered {
        /// The call.
        call: CallRef,
    },
    /// The call is over.
    CallEnded {
        /// The call.
        call: CallRef,
        /// How.
        outcome: CallOutcome,
    },
    /// A request was received (for counting).
    RequestIn {
        /// Arrival side.
        side: Side,
        /// Method (closed label).
        method: &'static str,
    },
    /// A response was received (for counting).
    ResponseIn {
        /// Arrival side.
        side: Side,
        /// Status code.
        status: u16,
        /// Method of the request it answers (closed label).
        method: &'static str,
        /// For a final response to a request callmask forwarded: the time since it was
        /// forwarded (the downstream transaction's duration).
        elapsed: Option<Duration>,
    },
    /// A message was rejected or dropped.
    Rejected {
        /// Arrival side.
        side: Side,
        /// Why.
        reason: RejectReason,
    },
    /// A request or response was dropped for a routing reason (no peer, not ours, …).
    Dropped {
        /// Arrival side.
        side: Side,
        /// Closed label.
        reason: &'static str,
    },
    /// A retransmission handled by callmask's transactions (for counting).
    Retransmission {
        /// Where callmask resent it to, or where the absorbed copy came from.
        side: Side,
        /// `true`: callmask resent on its own timer (A, E, G); `false`: a peer's copy was
        /// absorbed by a transaction.
        resent: bool,
    },
    /// A forwarded request got no final response in time (timer B, F or C): callmask
    /// answered 408 upstream (RFC 3261 §16.8).
    TransactionTimedOut {
        /// The side the request was sent to.
        side: Side,
        /// Its method (closed label).
        method: &'static str,
        /// Time since it was first sent.
        elapsed: Duration,
    },
    /// SIP INFO carried a DTMF key (`application/dtmf-relay` or `application/dtmf`). The key
    /// itself is never exposed.
    InfoDtmf {
        /// The call.
        call: CallRef,
        /// Side the INFO came from.
        side: Side,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Early,
    Confirmed,
    Terminating,
}

#[derive(Debug)]
struct Stream {
    local: [PortPair; 2],
    remote: [Option<SocketAddr>; 2],
    codecs: Vec<Codec>,
}

#[derive(Debug)]
struct Call {
    id: CallRef,
    state: CallState,
    streams: Vec<Stream>,
    /// `o=` version state of the SDP callmask sends toward each side.
    origin: [OriginState; 2],
    /// When the call is given up if nothing moves it on.
    deadline: Instant,
    cancelled: bool,
    /// Where the agents' side of this call answers from (routing in registration mode).
    agents_addr: Option<SocketAddr>,
    /// The side the initial INVITE came from.
    caller_side: Side,
    /// Early dialogs with media (a forked INVITE: one per callee To tag), so that the dialog
    /// the 2xx confirms gets its media back even when its 2xx carries no SDP.
    early: Vec<EarlyDialog>,
    /// The callee tag of the dialog the first 2xx confirmed; other forks' 2xx, ACK and BYE
    /// pass through without moving the call's media or ending it.
    answered_tag: Option<Bytes>,
}

impl Call {
    /// Whether a message with callee tag `tag` belongs to another fork than the answered
    /// dialog.
    fn is_other_fork(&self, tag: Option<&Bytes>) -> bool {
        matches!((&self.answered_tag, tag), (Some(a), Some(t)) if a != t)
    }
}

/// The media one early dialog answered with (the callee side's remotes and codecs).
#[derive(Debug)]
struct EarlyDialog {
    tag: Bytes,
    media: Vec<(Option<SocketAddr>, Vec<Codec>)>,
}

/// What a forwarded REGISTER asked for, to apply when the PBX answers.
#[derive(Debug, Clone)]
struct PendingRegister {
    token: Option<String>,
    aor: Bytes,
    requested: Option<Duration>,
    wildcard: bool,
}

/// The SIP routing core. See the module docs.
#[derive(Debug)]
pub struct ProxyCore {
    config: ProxyConfig,
    ports: PortAllocator,
    calls: HashMap<Bytes, Call>,
    /// Server and client transactions with their timer queue.
    txns: Txns,
    /// Call-IDs of calls that ended recently: a late copy of their INVITE must not start a
    /// new call (kept for 64·T1, the INVITE transaction's lifetime).
    ended: HashMap<Bytes, Instant>,
    /// The same, in expiry order (O(1) expiry).
    ended_order: VecDeque<(Instant, Bytes)>,
    /// Call deadlines, earliest first; lazy (checked against the call when due), so the core
    /// never scans every call for its next wake-up.
    call_deadlines: BinaryHeap<Reverse<(Instant, Bytes)>>,
    registrar: Registrar,
    next_call: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ProxyEvent>,
    /// Transport of the message being handled.
    arrival: SipTransport,
}

impl ProxyCore {
    /// A core with its port pool.
    pub fn new(config: ProxyConfig, ports: PortAllocator) -> Self {
        ProxyCore {
            config,
            ports,
            calls: HashMap::new(),
            txns: Txns::new(Timers::default()),
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            call_deadlines: BinaryHeap::new(),
            registrar: Registrar::new(),
            next_call: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            arrival: SipTransport::Udp,
        }
    }

    /// Use other §17 timer values (T1, T2, T4); tests shorten or check them.
    pub fn set_timers(&mut self, timers: Timers) {
        self.txns.timers = timers;
    }

    /// Live transactions (server and client, lingering ones included).
    pub fn transactions(&self) -> usize {
        self.txns.len()
    }

    /// Calls currently known.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Active registrations (registration mode).
    pub fn registrations(&self) -> usize {
        self.registrar.active()
    }

    /// The port pool (for metrics).
    pub fn ports(&self) -> &PortAllocator {
        &self.ports
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the owner.
    pub fn poll_event(&mut self) -> Option<ProxyEvent> {
        self.events.pop_front()
    }

    /// When [`ProxyCore::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.call_deadlines.peek().map(|d| d.0 .0);
        let txns = self.txns.poll_timeout();
        let ports = self.ports.poll_timeout();
        let regs = self.registrar.poll_timeout();
        let ended = self.ended_order.front().map(|e| e.0);
        [calls, txns, ports, regs, ended]
            .into_iter()
            .flatten()
            .min()
    }

    /// Expire what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(due) = self.txns.pop_due(now) {
            if due.client {
                self.fire_client(&due.key, now);
            } else {
                self.fire_server(&due.key, now);
            }
        }
        while self.ended_order.front().is_some_and(|e| e.0 <= now) {
            if let Some((at, k)) = self.ended_order.pop_front() {
                if self.ended.get(&k) == Some(&at) {
                    self.ended.remove(&k);
                }
            }
        }
        self.ports.release_due(now);
        self.registrar.handle_timeout(now);
        while self.call_deadlines.peek().is_some_and(|d| d.0 .0 <= now) {
            let Some(Reverse((_, k))) = self.call_deadlines.pop() else {
                break;
            };
            // Lazy deletion: the call may be gone or its deadline moved on.
            let Some(state) = self
                .calls
                .get(&k)
                .filter(|c| c.deadline <= now)
                .map(|c| c.state)
            else {
                continue;
            };
            let outcome = match state {
                CallState::Terminating => CallOutcome::Completed,
                _ => CallOutcome::TimedOut,
            };
            self.end_call(&k, outcome, now);
        }
    }

    /// The transport could not reach `dest` on `side` (a TCP connection could not be opened):
    /// every request waiting for an answer from there fails as if it got 503 (RFC 3261
    /// §16.9), at once rather than at timer B. Scans the transactions; connection failures
    /// are rare.
    pub fn handle_transport_error(&mut self, side: Side, dest: SocketAddr, now: Instant) {
        let hit: Vec<TransactionKey> = self
            .txns
            .clients
            .iter()
            .filter(|(_, e)| {
                e.down.side == side
                    && e.down.dest == dest
                    && e.down.transport == SipTransport::Tcp
                    && e.awaiting_final()
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in hit {
            if let Some(e) = self.txns.clients.get_mut(&key) {
                e.transport_error();
            }
            self.after_client(&key, side, dest, now);
        }
    }

    /// The media layer saw no packets for a call for too long: end it (no BYE is sent).
    pub fn handle_media_timeout(&mut self, call: CallRef, now: Instant) {
        let key = self
            .calls
            .iter()
            .find(|(_, c)| c.id == call)
            .map(|(k, _)| k.clone());
        if let Some(k) = key {
            self.end_call(&k, CallOutcome::TimedOut, now);
        }
    }

    /// A datagram arrived on `side` from `src`.
    pub fn handle_datagram(&mut self, side: Side, src: SocketAddr, data: Bytes, now: Instant) {
        self.arrival = SipTransport::Udp;
        match parse_datagram(data.clone(), &self.config.limits) {
            Ok(Frame::Message(msg)) => self.dispatch(side, src, msg, now),
            Ok(Frame::Ping | Frame::Pong) => {}
            Err(e) => {
                self.events.push_back(ProxyEvent::Rejected {
                    side,
                    reason: e.reason(),
                });
                if let Some(resp) = reject_unparsed(&data, &e) {
                    self.send(side, src, resp.as_bytes().clone());
                }
            }
        }
    }

    /// A message framed from a TCP connection with `src` on `side` (the shell frames with
    /// [`super::sip::parse_stream`] and answers keep-alives itself).
    pub fn handle_stream_message(
        &mut self,
        side: Side,
        src: SocketAddr,
        msg: SipMessage,
        now: Instant,
    ) {
        self.arrival = SipTransport::Tcp;
        self.dispatch(side, src, msg, now);
    }

    /// A stream message that failed to frame: answer it if possible (400/513) on the same
    /// connection; the shell closes the connection afterwards.
    pub fn handle_stream_error(
        &mut self,
        side: Side,
        src: SocketAddr,
        raw: Bytes,
        err: &super::sip::SipError,
    ) {
        self.arrival = SipTransport::Tcp;
        self.events.push_back(ProxyEvent::Rejected {
            side,
            reason: err.reason(),
        });
        if let Some(resp) = reject_unparsed(&raw, err) {
            self.send(side, src, resp.as_bytes().clone());
        }
    }

    fn dispatch(&mut self, side: Side, src: SocketAddr, msg: SipMessage, now: Instant) {
        if msg.is_request() {
            self.handle_request(side, src, msg, now);
        } else {
            self.handle_response(side, src, msg, now);
        }
    }

    /// Queue `payload` to `dest` on the arrival transport of the message being handled.
    fn send(&mut self, side: Side, dest: SocketAddr, payload: Bytes) {
        let transport = self.arrival;
        self.send_on(side, transport, dest, payload);
    }

    fn send_on(&mut self, side: Side, transport: SipTransport, dest: SocketAddr, payload: Bytes) {
        self.transmits.push_back(Transmit {
            side,
            transport,
            dest,
            payload,
        });
    }

    /// Answer `req`'s sender with `resp`: through the server transaction `server` while it
    /// can take a response (it then answers retransmissions and absorbs the ACK of a non-2xx),
    /// else statelessly.
    fn answer(
        &mut self,
        server: Option<&TransactionKey>,
        side: Side,
        src: SocketAddr,
        resp: SipMessage,
        now: Instant,
    ) {
        if let Some(key) = server {
            if let Some(e) = self.txns.servers.get_mut(key) {
                if e.awaiting_final() {
                    let timers = self.txns.timers;
                    e.respond(resp, &timers, now, &mut self.transmits);
                    self.txns.resched_server(key);
                    return;
                }
            }
        }
        self.send(side, src, resp.as_bytes().clone());
    }

    fn reject(
        &mut self,
        side: Side,
        src: SocketAddr,
        req: &SipMessage,
        reason: RejectReason,
        server: Option<&TransactionKey>,
        now: Instant,
    ) {
        self.events.push_back(ProxyEvent::Rejected { side, reason });
        if let Some(resp) = reject_request(req, reason) {
            self.answer(server, side, src, resp, now);
        }
    }

    #[allow(clippy::too_many_arguments)] // the request, its answer and where it goes
    fn respond(
        &mut self,
        side: Side,
        src: SocketAddr,
        req: &SipMessage,
        code: u16,
        phrase: &str,
        server: Option<&TransactionKey>,
        now: Instant,
    ) {
        if req.method() == Some(&Method::Ack) {
            return;
        }
        let Some(status) = StatusCode::new(code) else {
            return;
        };
        if let Ok(resp) = build_response(req, status, phrase) {
            self.answer(server, side, src, resp, now);
        }
    }

    fn handle_request(&mut self, side: Side, src: SocketAddr, msg: SipMessage, now: Instant) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        self.events.push_back(ProxyEvent::RequestIn {
            side,
            method: method_label(&method),
        });
        let (Ok(top_via), Ok(call_id), Ok(_cseq)) = (msg.top_via(), msg.call_id(), msg.cseq())
        else {
            self.reject(side, src, &msg, RejectReason::MissingHeader, None, now);
            return;
        };
        let Ok(key) = TransactionKey::for_request(&msg) else {
            self.reject(side, src, &msg, RejectReason::MissingHeader, None, now);
            return;
        };
        // §17.2.3: a retransmission, or the ACK of a non-2xx callmask sent, belongs to a
        // server transaction and goes no further.
        if method == Method::Ack {
            match self.txns.servers.get_mut(&key).map(|e| e.handle_ack(now)) {
                Some(AckMatch::Absorbed) => {
                    self.txns.resched_server(&key);
                    return;
                }
                Some(AckMatch::Drop) => return,
                Some(AckMatch::Forward) | None => {}
            }
        } else if let Some(e) = self.txns.servers.get_mut(&key) {
            e.handle_retransmission(&mut self.transmits);
            self.txns.resched_server(&key);
            self.events.push_back(ProxyEvent::Retransmission {
                side,
                resent: false,
            });
            return;
        }
        if method == Method::Cancel && self.cancel(side, src, &msg, &key, &call_id, now) {
            return;
        }
        let to_tag = msg.to().ok().and_then(|t| t.tag().cloned());
        let is_initial_invite = method == Method::Invite && to_tag.is_none();
        if is_initial_invite && self.ended.contains_key(&call_id) {
            // A late network copy of a finished call's INVITE: its transaction is over.
            self.events.push_back(ProxyEvent::Dropped {
                side,
                reason: "stale_invite",
            });
            return;
        }
        // Every request but ACK (end to end) and a CANCEL that matched nothing (forwarded
        // statelessly, §16.10) gets a server transaction; rejects go through it too.
        let server = if matches!(method, Method::Ack | Method::Cancel) {
            None
        } else {
            let up = Hop {
                side,
                transport: self.arrival,
                dest: src,
            };
            let give_up = now + self.give_up_after(&method);
            let entry = ServerEntry::new(msg.clone(), up, self.txns.timers, now, give_up);
            self.txns.servers.insert(key.clone(), entry);
            self.txns.resched_server(&key);
            Some(key)
        };
        let server = server.as_ref();

        let out = side.other();
        let branch = self.branch_for(side, &top_via, &msg);
        // Loop detection (RFC 3261 §16.3 step 4): our own branch for this request is already
        // in the Via list.
        if let Ok(vias) = msg.vias() {
            if vias
                .iter()
                .any(|v| v.branch().is_some_and(|b| b.as_ref() == branch.as_bytes()))
            {
                self.reject(side, src, &msg, RejectReason::LoopDetected, server, now);
                return;
            }
        }
        // Max-Forwards (§16.3 step 3 / §16.6 step 3).
        let mf = match msg.max_forwards() {
            Ok(Some(MaxForwards(0))) => {
                self.reject(side, src, &msg, RejectReason::TooManyHops, server, now);
                return;
            }
            Ok(Some(MaxForwards(n))) => n - 1,
            Ok(None) => 69,
            Err(_) => {
                self.reject(side, src, &msg, RejectReason::BadHeaderValue, server, now);
                return;
            }
        };
        let mut new_ruri: Option<Bytes> = None;
        let dest = match self.config.side(out).peer {
            Some(peer) => peer,
            None => {
                // Registration mode (no agents peer): a registered phone by its token, or
                // the agent of a known call.
                let user = msg.request_uri().and_then(|u| u.user().cloned());
                let by_token = user
                    .as_ref()
                    .and_then(|u| self.registrar.lookup(u))
                    .cloned();
                let by_call = self.calls.get(&call_id).and_then(|c| c.agents_addr);
                match (by_token, by_call) {
                    (Some(b), _) => {
                        new_ruri = Some(b.contact.clone());
                        b.source
                    }
                    (None, Some(a)) => a,
                    (None, None) => {
                        self.events.push_back(ProxyEvent::Dropped {
                            side,
                            reason: "no_route",
                        });
                        let (code, phrase) = if out == Side::Agents {
                            (480, "Temporarily Unavailable")
                        } else {
                            (503, "No Route To Peer")
                        };
                        self.respond(side, src, &msg, code, phrase, server, now);
                        return;
                    }
                }
            }
        };

        // Call bookkeeping before the body is touched.
        if is_initial_invite && !self.calls.contains_key(&call_id) {
            let id = CallRef(self.next_call);
            self.next_call += 1;
            self.calls.insert(
                call_id.clone(),
                Call {
                    id,
                    state: CallState::Early,
                    streams: Vec::new(),
                    origin: [OriginState::new(), OriginState::new()],
                    deadline: now + EARLY_CALL_TTL,
                    cancelled: false,
                    agents_addr: None,
                    caller_side: side,
                    early: Vec::new(),
                    answered_tag: None,
                },
            );
            self.call_deadlines
                .push(Reverse((now + EARLY_CALL_TTL, call_id.clone())));
            let parties = Parties {
                call_id: call_id.clone(),
                from: msg
                    .from()
                    .map(|f| f.uri().as_bytes().clone())
                    .unwrap_or_default(),
                to: msg
                    .to()
                    .map(|t| t.uri().as_bytes().clone())
                    .unwrap_or_default(),
            };
            self.events.push_back(ProxyEvent::CallStarted {
                call: id,
                caller_side: side,
                parties,
            });
        }
        let mut other_fork = false;
        if let Some(call) = self.calls.get_mut(&call_id) {
            if side == Side::Agents {
                call.agents_addr = Some(src);
            }
            other_fork = call.is_other_fork(callee_tag(&msg, side, call.caller_side).as_ref());
            match method {
                Method::Bye if other_fork => {}
                Method::Bye => {
                    call.state = CallState::Terminating;
                    call.deadline = now + BYE_TTL;
                    self.call_deadlines
                        .push(Reverse((call.deadline, call_id.clone())));
                }
                Method::Cancel => call.cancelled = true,
                Method::Info if is_dtmf_info(&msg) => {
                    self.events.push_back(ProxyEvent::InfoDtmf {
                        call: call.id,
                        side,
                    });
                }
                _ => {}
            }
        }

        let mut edit = msg.edit();
        // Pop the Route entries that name callmask (we record-route twice, RFC 5658).
        if let Ok(routes) = msg.routes() {
            let own = routes
                .iter()
                .take_while(|r| self.is_own_uri(r.uri()))
                .count();
            for _ in 0..own {
                edit = edit.pop_route();
            }
        }
        edit = edit.set_max_forwards(MaxForwards(mf));
        if let Some(uri) = &new_ruri {
            edit = edit.set_request_uri(uri);
        }
        let mut register = None;
        if method == Method::Register && side == Side::Agents {
            let (e, pending) = self.register_edit(edit, &msg, src, now);
            edit = e;
            register = Some(pending);
        }
        if is_initial_invite
            || (to_tag.is_none() && matches!(method, Method::Subscribe | Method::Refer))
        {
            // Double Record-Route: the entry for the arrival side below the departure side's.
            let inbound = self.config.side(side).sip_addr;
            let outbound = self.config.side(out).sip_addr;
            let tp = match self.arrival {
                SipTransport::Udp => "",
                SipTransport::Tcp => ";transport=tcp",
            };
            edit = edit
                .prepend_record_route(format!("<sip:{inbound}{tp};lr>").as_bytes())
                .prepend_record_route(format!("<sip:{outbound}{tp};lr>").as_bytes());
        }
        if has_sdp(&msg) {
            match self.anchor_body(&call_id, side, msg.body(), now, !other_fork) {
                Ok(Some(body)) => edit = edit.set_body(body),
                Ok(None) => {
                    // Media for a dialog callmask does not know (state lost, or a stray
                    // request): never let it bypass the tap.
                    let phrase = "Call/Transaction Does Not Exist";
                    self.respond(side, src, &msg, 481, phrase, server, now);
                    return;
                }
                Err(code) => {
                    let phrase = "Media Anchoring Failed";
                    self.respond(side, src, &msg, code, phrase, server, now);
                    return;
                }
            }
        }
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            self.arrival.via_token(),
            self.config.side(out).sip_addr
        );
        edit = edit.prepend_via(via.as_bytes());
        let fwd = match edit.finish() {
            Ok(m) => m,
            Err(e) => {
                self.reject(side, src, &msg, e.reason(), server, now);
                return;
            }
        };
        let Some(skey) = server.cloned() else {
            // ACK for a 2xx, or a CANCEL that matched nothing: stateless (§16.10, §16.11).
            self.send(out, dest, fwd.as_bytes().clone());
            return;
        };
        let ckey = match TransactionKey::for_request(&fwd) {
            Ok(k) if !self.txns.clients.contains_key(&k) => k,
            _ => {
                // Two upstream transactions hashed onto one downstream branch: this one goes
                // statelessly (its responses find their way back by Via).
                self.txns.servers.remove(&skey);
                self.send(out, dest, fwd.as_bytes().clone());
                return;
            }
        };
        if method == Method::Invite {
            // §16.7 / §17.2.1: a proxy answers 100 at once, so the caller stops retransmitting.
            if let Ok(trying) = build_response(&msg, StatusCode::TRYING, "Trying") {
                self.answer(Some(&skey), side, src, trying, now);
            }
        }
        let down = Hop {
            side: out,
            transport: self.arrival,
            dest,
        };
        let up = Hop {
            side,
            transport: self.arrival,
            dest: src,
        };
        let timer_c = (method == Method::Invite).then(|| now + TIMER_C);
        let timers = self.txns.timers;
        let mut entry = ClientEntry::new(
            fwd,
            down,
            up,
            Some(skey.clone()),
            register,
            timers,
            timer_c,
            now,
        );
        entry.drain(&mut self.transmits);
        self.txns.clients.insert(ckey.clone(), entry);
        self.txns.resched_client(&ckey);
        if let Some(s) = self.txns.servers.get_mut(&skey) {
            s.client = Some(ckey);
        }
    }

    /// How long a server transaction may wait for the final response it forwards: past every
    /// timer of its client transaction (timer C and a CANCEL's 64·T1 for INVITE, timer F
    /// otherwise), with 64·T1 to spare.
    fn give_up_after(&self, method: &Method) -> Duration {
        let t1x64 = self.txns.timers.t1x64();
        if *method == Method::Invite {
            TIMER_C + 3 * t1x64
        } else {
            3 * t1x64
        }
    }

    /// A CANCEL (§16.10). If it matches an INVITE server transaction: 200 through the
    /// CANCEL's own server transaction, and the pending client transaction is cancelled (the
    /// 487 comes back through it). `false` if it matches nothing: the caller forwards it
    /// statelessly.
    fn cancel(
        &mut self,
        side: Side,
        src: SocketAddr,
        msg: &SipMessage,
        key: &TransactionKey,
        call_id: &Bytes,
        now: Instant,
    ) -> bool {
        let Some(target) = key.cancel_target() else {
            return false;
        };
        let Some(invite) = self.txns.servers.get(&target) else {
            return false;
        };
        let pending = invite.awaiting_final();
        let client = invite.client.clone();
        let up = Hop {
            side,
            transport: self.arrival,
            dest: src,
        };
        let give_up = now + self.give_up_after(&Method::Cancel);
        let entry = ServerEntry::new(msg.clone(), up, self.txns.timers, now, give_up);
        self.txns.servers.insert(key.clone(), entry);
        if let Ok(ok) = build_response(msg, StatusCode::OK, "OK") {
            self.answer(Some(key), side, src, ok, now);
        }
        if !pending {
            // The INVITE has its final response already: the CANCEL has no effect (§9.2).
            return true;
        }
        if let Some(call) = self.calls.get_mut(call_id) {
            call.cancelled = true;
        }
        match client {
            Some(ck) => self.cancel_client(&ck, now),
            None => {
                // Nothing went downstream: callmask ends the INVITE itself.
                let resp = self.txns.servers.get(&target).and_then(|s| {
                    build_response(
                        &s.request,
                        StatusCode::REQUEST_TERMINATED,
                        "Request Terminated",
                    )
                    .ok()
                });
                if let Some(resp) = resp {
                    self.answer(Some(&target), side, src, resp, now);
                }
            }
        }
        true
    }

    /// Cancel the forwarded INVITE `ck`: now if it had a provisional response, else as soon as
    /// one arrives (§9.1).
    fn cancel_client(&mut self, ck: &TransactionKey, now: Instant) {
        let Some(e) = self.txns.clients.get_mut(ck) else {
            return;
        };
        if !e.awaiting_final() || e.cancel != CancelState::No {
            return;
        }
        if e.provisional {
            self.send_cancel(ck, now);
        } else {
            e.cancel = CancelState::Pending;
        }
    }

    /// Send the CANCEL for the INVITE client transaction `ck` through a client transaction of
    /// its own (its responses stop here); timer C then limits the wait for the final response
    /// to 64·T1.
    fn send_cancel(&mut self, ck: &TransactionKey, now: Instant) {
        let t1x64 = self.txns.timers.t1x64();
        let Some(e) = self.txns.clients.get_mut(ck) else {
            return;
        };
        let Some(cancel) = e
            .invite()
            .and_then(|i| SipMessage::parse(build_cancel(i)).ok())
        else {
            return;
        };
        e.cancel = CancelState::Sent;
        e.timer_c = Some(now + t1x64);
        let (down, up) = (e.down, e.up);
        self.txns.resched_client(ck);
        let key = match TransactionKey::for_request(&cancel) {
            Ok(k) if !self.txns.clients.contains_key(&k) => k,
            _ => return,
        };
        let timers = self.txns.timers;
        let mut c = ClientEntry::new(cancel, down, up, None, None, timers, None, now);
        c.drain(&mut self.transmits);
        self.txns.clients.insert(key.clone(), c);
        self.txns.resched_client(&key);
    }

    fn handle_response(&mut self, side: Side, src: SocketAddr, msg: SipMessage, now: Instant) {
        let Some(status) = msg.status() else {
            return;
        };
        let Ok(vias) = msg.vias() else {
            self.events.push_back(ProxyEvent::Dropped {
                side,
                reason: "bad_via",
            });
            return;
        };
        let own = vias.first().is_some_and(|v| {
            v.branch()
                .is_some_and(|b| b.starts_with(BRANCH_PREFIX.as_bytes()))
        });
        let (Ok(cseq), Ok(key)) = (msg.cseq(), TransactionKey::for_response(&msg)) else {
            return;
        };
        let client = self.txns.clients.get_mut(&key);
        let next = vias.get(1);
        if !own || (client.is_none() && next.is_none()) {
            self.events.push_back(ProxyEvent::Dropped {
                side,
                reason: "not_our_via",
            });
            return;
        }
        let method = method_label(&cseq.method);
        let Some(entry) = client else {
            // No transaction (§16.7): e.g. a 2xx long after its INVITE. Statelessly, by Via.
            self.events.push_back(ProxyEvent::ResponseIn {
                side,
                status: status.as_u16(),
                method,
                elapsed: None,
            });
            let Some(dest) = next.and_then(via_destination) else {
                self.events.push_back(ProxyEvent::Dropped {
                    side,
                    reason: "unroutable_via",
                });
                return;
            };
            let transport = if next.is_some_and(|v| v.transport().is_reliable()) {
                SipTransport::Tcp
            } else {
                SipTransport::Udp
            };
            let up = Hop {
                side: side.other(),
                transport,
                dest,
            };
            self.forward_response(side, src, msg, None, up, None, now);
            return;
        };
        let elapsed = (status.is_final() && entry.awaiting_final())
            .then(|| now.saturating_duration_since(entry.started));
        self.events.push_back(ProxyEvent::ResponseIn {
            side,
            status: status.as_u16(),
            method,
            elapsed,
        });
        if matches!(entry.txn, ClientTxn::Accepted(_)) {
            // A 2xx retransmission: end to end, to where the INVITE came from (§16.7 step
            // 10); anything else is absorbed.
            if status.is_success() && entry.server.is_some() {
                let (up, server) = (entry.up, entry.server.clone());
                self.forward_response(side, src, msg, server.as_ref(), up, None, now);
            }
            return;
        }
        if status.is_final() && !entry.awaiting_final() {
            // A final response again: the client transaction re-ACKs or ignores it.
            self.events.push_back(ProxyEvent::Retransmission {
                side,
                resent: false,
            });
        }
        let mut cancel_now = false;
        if entry.method == Method::Invite && entry.awaiting_final() {
            if status.is_provisional() {
                entry.provisional = true;
                if status != StatusCode::TRYING && entry.cancel != CancelState::Sent {
                    entry.timer_c = Some(now + TIMER_C);
                }
                cancel_now = entry.cancel == CancelState::Pending;
            } else if status.is_success() {
                entry.answered = true;
            }
        }
        entry.handle_response(msg, now);
        self.after_client(&key, side, src, now);
        if cancel_now {
            self.send_cancel(&key, now);
        }
    }

    /// Send what client transaction `key` queued, act on its events (responses go upstream,
    /// a timeout becomes a 408), and drop or keep it.
    fn after_client(&mut self, key: &TransactionKey, side: Side, src: SocketAddr, now: Instant) {
        loop {
            let Some(e) = self.txns.clients.get_mut(key) else {
                return;
            };
            e.drain(&mut self.transmits);
            let Some(ev) = e.poll_event() else {
                break;
            };
            let (server, up) = (e.server.clone(), e.up);
            match ev {
                TxnEvent::Response(resp) => {
                    if server.is_none() {
                        // The answer to callmask's own CANCEL stops here.
                        continue;
                    }
                    let register = if resp.status().is_some_and(|s| s.is_final()) {
                        e.register.take()
                    } else {
                        None
                    };
                    self.forward_response(side, src, resp, server.as_ref(), up, register, now);
                }
                other => {
                    let (method, down, started, register) =
                        (e.method.clone(), e.down, e.started, e.register.take());
                    let why = if other == TxnEvent::TransportError {
                        Failure::Transport
                    } else {
                        Failure::Timeout
                    };
                    self.client_failed(server, &method, down.side, started, register, why, now);
                }
            }
        }
        let timers = self.txns.timers;
        match self
            .txns
            .clients
            .get_mut(key)
            .map(|e| e.settle(&timers, now))
        {
            Some(true) => self.txns.resched_client(key),
            Some(false) => {
                self.txns.clients.remove(key);
            }
            None => {}
        }
    }

    /// A forwarded request got no final response: timer B/F or C fired (as if the next hop
    /// had answered 408, §16.7 step 2, §16.8) or the transport failed (as if 503, §16.9).
    /// Callmask's own CANCEL (`server` = `None`) concerns nobody.
    #[allow(clippy::too_many_arguments)] // the transaction's parts, why, and when
    fn client_failed(
        &mut self,
        server: Option<TransactionKey>,
        method: &Method,
        down_side: Side,
        started: Instant,
        register: Option<PendingRegister>,
        why: Failure,
        now: Instant,
    ) {
        let Some(skey) = server else {
            return;
        };
        let (status, phrase, outcome) = match why {
            Failure::Timeout => {
                self.events.push_back(ProxyEvent::TransactionTimedOut {
                    side: down_side,
                    method: method_label(method),
                    elapsed: now.saturating_duration_since(started),
                });
                let s = StatusCode::REQUEST_TIMEOUT;
                (s, "Request Timeout", CallOutcome::TimedOut)
            }
            Failure::Transport => {
                self.events.push_back(ProxyEvent::Dropped {
                    side: down_side,
                    reason: "transport_error",
                });
                let s = StatusCode::SERVICE_UNAVAILABLE;
                (s, "Service Unavailable", CallOutcome::Failed)
            }
        };
        if let Some(t) = register.and_then(|r| r.token) {
            self.registrar.refused(&t);
        }
        let Some(s) = self.txns.servers.get(&skey) else {
            return;
        };
        let call_id = s.request.call_id().ok();
        let (side, src) = (s.up.side, s.up.dest);
        if s.awaiting_final() {
            if let Ok(resp) = build_response(&s.request, status, phrase) {
                self.answer(Some(&skey), side, src, resp, now);
            }
        }
        let Some(call_id) = call_id else {
            return;
        };
        let Some(state) = self.calls.get(&call_id).map(|c| c.state) else {
            return;
        };
        match method {
            Method::Invite if state == CallState::Early => {
                self.end_call(&call_id, outcome, now);
            }
            Method::Bye => self.end_call(&call_id, CallOutcome::Completed, now),
            _ => {}
        }
    }

    /// Timers of client transaction `key` are due.
    fn fire_client(&mut self, key: &TransactionKey, now: Instant) {
        let Some(e) = self.txns.clients.get_mut(key) else {
            return;
        };
        e.fire_machine(now);
        // What the machine queued on its timer is a retransmission (A, E).
        let before = self.transmits.len();
        e.drain(&mut self.transmits);
        for _ in before..self.transmits.len() {
            self.events.push_back(ProxyEvent::Retransmission {
                side: e.down.side,
                resent: true,
            });
        }
        let c_due = e.timer_c.is_some_and(|t| t <= now);
        if c_due && !e.awaiting_final() {
            e.timer_c = None;
        }
        let c_due = c_due && e.timer_c.is_some();
        let down = e.down;
        self.after_client(key, down.side, down.dest, now);
        if c_due {
            self.timer_c(key, now);
        }
    }

    /// Timer C fired (§16.8): a ringing INVITE is cancelled (timer C then bounds the wait for
    /// its final response); one that never rang, or whose CANCEL went unanswered, ends as if
    /// 408 had come back.
    fn timer_c(&mut self, key: &TransactionKey, now: Instant) {
        let Some(e) = self.txns.clients.get_mut(key) else {
            return;
        };
        if !e.awaiting_final() {
            return;
        }
        e.timer_c = None;
        if e.provisional && e.cancel != CancelState::Sent {
            self.send_cancel(key, now);
            return;
        }
        let (server, method, side, started, register) = (
            e.server.clone(),
            e.method.clone(),
            e.down.side,
            e.started,
            e.register.take(),
        );
        e.abandon(now);
        self.txns.clients.remove(key);
        let why = Failure::Timeout;
        self.client_failed(server, &method, side, started, register, why, now);
    }

    /// Timers of server transaction `key` are due.
    fn fire_server(&mut self, key: &TransactionKey, now: Instant) {
        let Some(e) = self.txns.servers.get_mut(key) else {
            return;
        };
        let before = self.transmits.len();
        let alive = e.fire(now, &mut self.transmits);
        for _ in before..self.transmits.len() {
            // Timer G: a final response resent upstream.
            self.events.push_back(ProxyEvent::Retransmission {
                side: e.up.side,
                resent: true,
            });
        }
        if alive {
            self.txns.resched_server(key);
        } else {
            self.txns.servers.remove(key);
        }
    }

    /// Send a response upstream (to `up`, through server transaction `server` while it can
    /// take it), with callmask's Via removed and its SDP anchored; then move the call on.
    #[allow(clippy::too_many_arguments)] // the response, where it came from and where it goes
    fn forward_response(
        &mut self,
        side: Side,
        src: SocketAddr,
        msg: SipMessage,
        server: Option<&TransactionKey>,
        up: Hop,
        register: Option<PendingRegister>,
        now: Instant,
    ) {
        let (Some(status), Ok(cseq), Ok(call_id)) = (msg.status(), msg.cseq(), msg.call_id())
        else {
            return;
        };
        let code = status.as_u16();
        if let (Some(reg), true) = (register, status.is_final()) {
            self.register_answered(reg, &msg, code, now);
        }
        if status == StatusCode::TRYING {
            // §16.7 step 3: a 100 is never forwarded (callmask sent its own).
            return;
        }
        let cseq_method = cseq.method;
        let tag = self
            .calls
            .get(&call_id)
            .and_then(|c| callee_tag(&msg, side, c.caller_side));
        let other_fork = self
            .calls
            .get(&call_id)
            .is_some_and(|c| c.is_other_fork(tag.as_ref()));
        let with_sdp = has_sdp(&msg) && code < 300;
        let mut edit = msg.edit().remove_top_via();
        if msg.header_values("Via").len() < 2 {
            // Only callmask's Via: the next hop answered from a copy of it (e.g. a 487 built
            // from our CANCEL). The request's own Vias are known from its server transaction.
            let vias = server
                .and_then(|k| self.txns.servers.get(k))
                .map(|s| s.request.header_values("Via"))
                .unwrap_or_default();
            if vias.is_empty() {
                self.events.push_back(ProxyEvent::Dropped {
                    side,
                    reason: "not_our_via",
                });
                return;
            }
            for v in vias.iter().rev() {
                edit = edit.prepend_via(v);
            }
        }
        if with_sdp {
            match self.anchor_body(&call_id, side, msg.body(), now, !other_fork) {
                Ok(Some(body)) => edit = edit.set_body(body),
                Ok(None) => {
                    // SDP for a call callmask no longer anchors (e.g. a 200 retransmitted
                    // after the call ended): forwarding it would point media past the tap.
                    self.events.push_back(ProxyEvent::Dropped {
                        side,
                        reason: "sdp_without_call",
                    });
                    return;
                }
                Err(_) => {
                    // Cannot anchor the answer: forward it unchanged would bypass the
                    // recorder; drop it and let the UAS retransmit / the caller time out.
                    self.events.push_back(ProxyEvent::Dropped {
                        side,
                        reason: "media_anchor_failed",
                    });
                    return;
                }
            }
        }
        let fwd = match edit.finish() {
            Ok(m) => m,
            Err(e) => {
                self.events.push_back(ProxyEvent::Rejected {
                    side,
                    reason: e.reason(),
                });
                return;
            }
        };
        let via_server = server.filter(|k| {
            self.txns
                .servers
                .get(*k)
                .is_some_and(ServerEntry::awaiting_final)
        });
        match via_server {
            Some(k) => self.answer(Some(k), up.side, up.dest, fwd, now),
            None => self.send_on(up.side, up.transport, up.dest, fwd.as_bytes().clone()),
        }

        // Call state after forwarding.
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if side == Side::Agents {
            call.agents_addr = Some(src);
        }
        match cseq_method {
            Method::Invite if (200..300).contains(&code) && call.state == CallState::Early => {
                call.state = CallState::Confirmed;
                call.deadline = now + Duration::from_secs(u64::from(u32::MAX));
                // The confirmed dialog wins (RFC 3261 §13.2.2.4 / §16.7 forking): without an
                // SDP of its own, its early answer's media comes back; other early dialogs
                // are forgotten.
                let early = std::mem::take(&mut call.early);
                let restore = (!with_sdp)
                    .then(|| early.into_iter().find(|e| Some(&e.tag) == tag.as_ref()))
                    .flatten();
                call.answered_tag = tag;
                let mut moved = false;
                if let Some(e) = restore {
                    for (st, (remote, codecs)) in call.streams.iter_mut().zip(e.media) {
                        if st.remote[side.idx()] != remote {
                            st.remote[side.idx()] = remote;
                            st.codecs = codecs;
                            moved = true;
                        }
                    }
                }
                let id = call.id;
                if moved {
                    let streams = stream_specs(call);
                    self.events
                        .push_back(ProxyEvent::Media(MediaCommand::Upsert {
                            call: id,
                            streams,
                        }));
                }
                self.events.push_back(ProxyEvent::CallAnswered { call: id });
            }
            Method::Invite
                if code < 200 && with_sdp && call.state == CallState::Early && tag.is_some() =>
            {
                // An early dialog answered: remember its media by its tag.
                let media: Vec<_> = call
                    .streams
                    .iter()
                    .map(|st| (st.remote[side.idx()], st.codecs.clone()))
                    .collect();
                let tag = tag.unwrap_or_default();
                match call.early.iter_mut().find(|e| e.tag == tag) {
                    Some(e) => e.media = media,
                    None => call.early.push(EarlyDialog { tag, media }),
                }
            }
            Method::Invite if code >= 300 && call.state == CallState::Early => {
                let outcome = if call.cancelled || code == 487 {
                    CallOutcome::Cancelled
                } else {
                    CallOutcome::Failed
                };
                self.end_call(&call_id, outcome, now);
            }
            Method::Bye if code >= 200 && !other_fork => {
                self.end_call(&call_id, CallOutcome::Completed, now);
            }
            _ => {}
        }
    }

    /// Anchor an SDP body that arrived from `from`: returns the body to send on, `None` if
    /// there is no call to anchor it for, or a SIP status to answer with on failure.
    ///
    /// With `commit` false (another fork's dialog) the body is still rewritten, so no SDP
    /// ever bypasses the tap, but the call's media does not move.
    fn anchor_body(
        &mut self,
        call_id: &Bytes,
        from: Side,
        body: Bytes,
        now: Instant,
        commit: bool,
    ) -> Result<Option<Bytes>, u16> {
        let Some(call) = self.calls.get_mut(call_id) else {
            return Ok(None);
        };
        let sdp = Sdp::parse(body).map_err(|_| 488u16)?;
        let plan = super::sdp::MediaPlan::from_sdp(&sdp);
        let to = from.other();
        // Allocate both sides' ports for every new active stream.
        while call.streams.len() < plan.streams.len() {
            let Some(a) = self.ports.alloc(now) else {
                return Err(503);
            };
            let Some(b) = self.ports.alloc(now) else {
                // Give the first pair back: it was never advertised.
                let _ = self.ports.free(a, now);
                return Err(503);
            };
            call.streams.push(Stream {
                local: [a, b],
                remote: [None, None],
                codecs: Vec::new(),
            });
        }
        let ports: Vec<Option<PortPair>> = plan
            .streams
            .iter()
            .zip(&call.streams)
            .map(|(p, s)| p.is_active().then_some(s.local[to.idx()]))
            .collect();
        let media_ip = self.config.side(to).media_ip;
        let anchored = anchor(
            sdp,
            &LocalAnchor {
                addr: media_ip,
                ports: &ports,
            },
            &mut call.origin[to.idx()],
        )
        .map_err(|_| 500u16)?;
        if !commit {
            return Ok(Some(anchored.body));
        }
        for (s, p) in call.streams.iter_mut().zip(&anchored.plan.streams) {
            s.remote[from.idx()] = if p.is_active() { p.remote } else { None };
            if !p.codecs.is_empty() {
                s.codecs = p.codecs.clone();
            }
        }
        let streams = stream_specs(call);
        let id = call.id;
        self.events
            .push_back(ProxyEvent::Media(MediaCommand::Upsert {
                call: id,
                streams,
            }));
        Ok(Some(anchored.body))
    }

    fn end_call(&mut self, call_id: &Bytes, outcome: CallOutcome, now: Instant) {
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        self.ended.insert(call_id.clone(), now + PATH_TTL);
        self.ended_order
            .push_back((now + PATH_TTL, call_id.clone()));
        for s in &call.streams {
            for pair in s.local {
                // A pair freed twice would be a bug in this module; the pool refuses it.
                let _ = self.ports.free(pair, now);
            }
        }
        if !call.streams.is_empty() {
            self.events
                .push_back(ProxyEvent::Media(MediaCommand::Remove { call: call.id }));
        }
        self.events.push_back(ProxyEvent::CallEnded {
            call: call.id,
            outcome,
        });
    }

    /// Rewrite a phone's REGISTER so the PBX sees callmask's Contact, and note the pending
    /// binding (RFC 3261 §10; SBC style, no reliance on Path).
    fn register_edit<'a>(
        &mut self,
        edit: super::sip::Edit<'a>,
        msg: &SipMessage,
        src: SocketAddr,
        now: Instant,
    ) -> (super::sip::Edit<'a>, PendingRegister) {
        let aor = msg
            .to()
            .map(|t| t.uri().as_bytes().clone())
            .unwrap_or_default();
        let requested = msg.expires().ok().flatten();
        if msg.contact_is_wildcard() {
            let pending = PendingRegister {
                token: None,
                aor,
                requested,
                wildcard: true,
            };
            return (edit, pending);
        }
        let contact = msg.contacts().ok().and_then(|c| c.into_iter().next());
        let Some(contact) = contact else {
            // A query (no Contact): pass through untouched.
            let pending = PendingRegister {
                token: None,
                aor,
                requested,
                wildcard: false,
            };
            return (edit, pending);
        };
        let requested = contact
            .params()
            .get("expires")
            .flatten()
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
            .map(Duration::from_secs)
            .or(requested);
        let uri = contact.uri().as_bytes().clone();
        let token = Registrar::token_for(&aor, &uri, self.config.secret);
        self.registrar.pending(&token, aor.clone(), uri, src, now);
        let ours = format!("sip:{token}@{}", self.config.pbx.sip_addr);
        let pending = PendingRegister {
            token: Some(token),
            aor,
            requested,
            wildcard: false,
        };
        (edit.replace_contact_uri(ours.as_bytes()), pending)
    }

    /// The PBX answered a REGISTER: activate, refresh or remove the binding.
    fn register_answered(
        &mut self,
        reg: PendingRegister,
        msg: &SipMessage,
        code: u16,
        now: Instant,
    ) {
        if !(200..300).contains(&code) {
            if let Some(t) = &reg.token {
                self.registrar.refused(t);
            }
            return;
        }
        if reg.wildcard {
            self.registrar.remove_aor(&reg.aor);
            return;
        }
        let Some(token) = reg.token else {
            return;
        };
        // The expiry the PBX granted for our Contact, else its Expires header, else ours.
        let from_contact = msg.contacts().ok().and_then(|cs| {
            cs.into_iter()
                .find(|c| {
                    c.uri()
                        .user()
                        .is_some_and(|u| u.as_ref() == token.as_bytes())
                })
                .and_then(|c| {
                    c.params()
                        .get("expires")
                        .flatten()
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                })
                .map(Duration::from_secs)
        });
        let granted = from_contact
            .or_else(|| msg.expires().ok().flatten())
            .or(reg.requested);
        let listed = msg.contacts().is_ok_and(|cs| {
            cs.iter().any(|c| {
                c.uri()
                    .user()
                    .is_some_and(|u| u.as_ref() == token.as_bytes())
            })
        });
        // A 2xx that no longer lists our Contact means the binding is gone.
        let granted = if listed || from_contact.is_some() {
            granted
        } else if reg.requested == Some(Duration::ZERO) {
            Some(Duration::ZERO)
        } else {
            granted
        };
        self.registrar.confirmed(&token, granted, now);
    }

    fn is_own_uri(&self, uri: &super::sip::Uri) -> bool {
        [self.config.pbx.sip_addr, self.config.agents.sip_addr]
            .iter()
            .any(|a| {
                uri.host().as_ref() == a.ip().to_string().as_bytes()
                    && uri.port().unwrap_or(5060) == a.port()
            })
    }

    /// The branch callmask uses downstream for a request that arrived on `side` with `via`:
    /// a function of the incoming branch only, so CANCEL and non-2xx ACK land in the INVITE's
    /// downstream transaction (RFC 3261 §16.11). Pre-RFC 3261 peers (no magic cookie) get a
    /// hash of the transaction-identifying fields instead.
    fn branch_for(&self, side: Side, via: &Via, msg: &SipMessage) -> String {
        let mut h = DefaultHasher::new();
        self.config.secret.hash(&mut h);
        side.hash(&mut h);
        match via.branch().filter(|b| b.starts_with(MAGIC_COOKIE)) {
            Some(b) => b.hash(&mut h),
            None => {
                via.host().hash(&mut h);
                via.port().hash(&mut h);
                msg.call_id().ok().hash(&mut h);
                msg.cseq().ok().map(|c| c.seq).hash(&mut h);
                msg.from().ok().and_then(|f| f.tag().cloned()).hash(&mut h);
                msg.request_uri().map(|u| u.as_bytes().clone()).hash(&mut h);
            }
        }
        format!("{BRANCH_PREFIX}{:016x}", h.finish())
    }
}

/// Why a forwarded request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Timer B, F or C.
    Timeout,
    /// The transport could not send it.
    Transport,
}

/// What the media layer is told about a call's streams.
fn stream_specs(call: &Call) -> Vec<StreamSpec> {
    call.streams
        .iter()
        .enumerate()
        .map(|(index, s)| StreamSpec {
            index,
            pbx_local: s.local[Side::Pbx.idx()],
            agents_local: s.local[Side::Agents.idx()],
            pbx_remote: s.remote[Side::Pbx.idx()],
            agents_remote: s.remote[Side::Agents.idx()],
            codecs: s.codecs.clone(),
        })
        .collect()
}

/// The callee's dialog tag in `msg` arriving from `side` (a forked call's dialogs differ only
/// in it): the To tag of requests from the caller's side and of responses from the callee's
/// side, the From tag otherwise.
fn callee_tag(msg: &SipMessage, side: Side, caller_side: Side) -> Option<Bytes> {
    let in_to = msg.is_request() == (side == caller_side);
    let na = if in_to { msg.to() } else { msg.from() };
    na.ok()?.tag().cloned()
}

/// Where a response goes by its Via (RFC 3261 §18.2.2 with RFC 3581 rport): `received` and
/// `rport` when present, else sent-by. Names are not resolved (no DNS in the core).
fn via_destination(via: &Via) -> Option<SocketAddr> {
    let host = via
        .received()
        .cloned()
        .unwrap_or_else(|| via.host().clone());
    let host = std::str::from_utf8(&host).ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    let port = match via.rport() {
        Some(Some(p)) => p,
        _ => via.port().unwrap_or(5060),
    };
    Some(SocketAddr::new(ip, port))
}

fn has_sdp(msg: &SipMessage) -> bool {
    msg.content_type().is_some_and(|ct| {
        ct.as_ref()
            .get(..15)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"application/sdp"))
    }) && !msg.body().is_empty()
}

fn is_dtmf_info(msg: &SipMessage) -> bool {
    msg.content_type().is_some_and(|ct| {
        let ct = ct.as_ref();
        let starts = |p: &[u8]| ct.get(..p.len()).is_some_and(|c| c.eq_ignore_ascii_case(p));
        starts(b"application/dtmf-relay") || starts(b"application/dtmf")
    })
}

/// Closed label for a method (metrics).
pub fn method_label(m: &Method) -> &'static str {
    match m {
        Method::Invite => "INVITE",
        Method::Ack => "ACK",
        Method::Bye => "BYE",
        Method::Cancel => "CANCEL",
        Method::Register => "REGISTER",
        Method::Options => "OPTIONS",
        Method::Info => "INFO",
        Method::Prack => "PRACK",
        Method::Update => "UPDATE",
        Method::Subscribe => "SUBSCRIBE",
        Method::Notify => "NOTIFY",
        Method::Refer => "REFER",
        Method::Message => "MESSAGE",
        _ => "other",
    }
}

#[path = "proxy_txn.rs"]
mod txn;

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
