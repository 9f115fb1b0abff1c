//! The SIP routing core: what callmask does with each message between the PBX side and the
//! agents side, and which media it anchors. Sans-IO.
//!
//! callmask is a transaction-stateful, record-routing proxy that rewrites SDP (the Kamailio +
//! rtpengine pair in one place). A request that arrives on one side leaves on the other,
//! toward that side's peer (trunk mode). Each request gets a server transaction and each
//! forwarded request a client transaction (RFC 3261 §16, §17; [`txn`]):
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

//!
//! # Layout
//!
//! `ProxyCore` (this file) holds the entry points (`handle_*`, `poll_*`) and the send/answer
//! glue; each sub-state lives in a sibling file as a field or an `impl ProxyCore` block:
//!
//! | file | owns |
//! |---|---|
//! | `access.rs` | who may send SIP on each side (allow-lists, registration mode): 403 or drop |
//! | `limits.rs` | the `[limits]` bounds and the reasons a request over one is refused |
//! | `types.rs` | configuration, ids, [`Transmit`], [`ProxyEvent`] and its closed enums |
//! | `request.rs` | the request path, as named steps (checks → server transaction → route → call → rewrite → forward) |
//! | `response.rs` | the response path (match the client transaction → forward upstream → move the call on) |
//! | `routing.rs` | the next hop (trunk peer, registered phone, known agent), Route/Record-Route/Via, branch ids |
//! | `calls.rs` | the call table: dialog/fork state, deadlines, recently ended Call-IDs |
//! | `anchoring.rs` | SDP anchoring, as named steps (admit → ports per active stream → SDES keys through `core::sdes` → anchor → the media layer's stream specs) |
//! | `register.rs` | REGISTER rewriting and the bindings the PBX confirms (registration mode) |
//! | `txn.rs` | the server/client transaction entries and their one timer queue |
//! | `txn_glue.rs` | driving them: CANCEL, client transaction events, timers B/F/C, 408/503 |
//! | `tests.rs` | the deterministic simulation tests |

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ports::PortAllocator;
use super::registrar::Registrar;
use super::side::BySide;
use super::sip::txn::{Timers, TransactionKey};
use super::sip::{
    build_response, parse_datagram, reject_request, reject_unparsed, Frame, Method, RejectReason,
    SipMessage, StatusCode,
};
use calls::Calls;
use txn::Txns;

mod access;
mod anchoring;
mod calls;
mod limits;
mod register;
mod request;
mod response;
mod routing;
#[cfg(test)]
mod tests;
mod txn;
mod txn_glue;
mod types;

pub use access::{AccessPolicy, AccessReason, AllowList};
pub use limits::{CoreLimits, LimitKind};
pub use types::{
    CallOutcome, CallRef, DropReason, MediaCommand, Parties, ProxyConfig, ProxyEvent, Side,
    SideConfig, SipTransport, StreamSpec, Transmit,
};

/// Prefix of every branch callmask writes, so its own Via is recognisable.
const BRANCH_PREFIX: &str = "z9hG4bKcm";
/// Timer C (RFC 3261 §16.6 step 11: more than 3 minutes), restarted by each provisional.
const TIMER_C: Duration = Duration::from_secs(181);

/// The SIP routing core. See the module docs.
#[derive(Debug)]
pub struct ProxyCore {
    config: ProxyConfig,
    ports: PortAllocator,
    /// Calls by Call-ID, their deadlines and recently ended Call-IDs.
    calls: Calls,
    /// Server and client transactions with their timer queue.
    txns: Txns,
    registrar: Registrar,
    /// Who may send SIP on each side (closed by default: the peers only).
    access: access::AccessPolicy,
    /// Bounds on streams, calls, transactions, sources (`[limits]`).
    limits: limits::CoreLimits,
    /// Per-source request and new-call rates.
    source_requests: limits::SourceBuckets,
    /// Per source, the budget of refusals answered (403 to a stranger, 400 to garbage):
    /// beyond it a refusal is dropped unanswered, so a flood of either gets little back.
    refusals: limits::SourceBuckets,
    source_calls: limits::SourceBuckets,
    /// Shutting down (SIGTERM): new calls are refused 503, calls in progress go on.
    draining: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ProxyEvent>,
    /// Transport of the message being handled.
    arrival: SipTransport,
    /// Sides with `transport = "tls"`: their streams are TLS, requests toward them go over
    /// TLS, and a `sips:` request never leaves on a side without it (RFC 5630).
    tls: BySide<bool>,
}

impl ProxyCore {
    /// A core with its port pool.
    pub fn new(config: ProxyConfig, ports: PortAllocator) -> Self {
        ProxyCore {
            config,
            ports,
            calls: Calls::new(),
            txns: Txns::new(Timers::default()),
            registrar: Registrar::new(),
            access: access::AccessPolicy::default(),
            limits: limits::CoreLimits::default(),
            source_requests: limits::SourceBuckets::default(),
            refusals: limits::SourceBuckets::default(),
            source_calls: limits::SourceBuckets::default(),
            draining: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            arrival: SipTransport::Udp,
            tls: BySide::default(),
        }
    }

    /// Mark the sides whose SIP runs over TLS (`pbx.transport`, `agents.transport`).
    pub fn set_tls(&mut self, tls: BySide<bool>) {
        self.tls = tls;
    }

    /// Whether `side` speaks SIP over TLS.
    pub fn is_tls(&self, side: Side) -> bool {
        self.tls[side]
    }

    /// The stream transport of `side`: TLS on a TLS side, else TCP.
    fn stream_transport(&self, side: Side) -> SipTransport {
        if self.tls[side] {
            SipTransport::Tls
        } else {
            SipTransport::Tcp
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

    /// Transactions still waiting for their final response (a drain lets them finish, so
    /// the 200 to a call's last BYE goes out before the process stops).
    pub fn pending_transactions(&self) -> usize {
        self.txns.awaiting_final()
    }

    /// Calls currently known.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Active registrations (registration mode).
    pub fn registrations(&self) -> usize {
        self.registrar.active()
    }

    /// The registration bindings (saved by the shell across restarts).
    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// The registration bindings, to load saved ones into at start.
    pub fn registrar_mut(&mut self) -> &mut Registrar {
        &mut self.registrar
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
        let calls = self.calls.poll_timeout();
        let txns = self.txns.poll_timeout();
        let ports = self.ports.poll_timeout();
        let regs = self.registrar.poll_timeout();
        [calls, txns, ports, regs].into_iter().flatten().min()
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
        self.calls.expire_ended(now);
        self.ports.release_due(now);
        self.registrar.handle_timeout(now);
        while let Some((call_id, outcome)) = self.calls.pop_due(now) {
            self.end_call(&call_id, outcome, now);
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
                    && e.down.transport.is_stream()
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
        if let Some(k) = self.calls.key_of(call) {
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
                    if self.may_refuse(src, now) {
                        self.send(side, src, resp.as_bytes().clone());
                    }
                }
            }
        }
    }

    /// Whether a refusal to `src` may be answered now (see `refusals`).
    pub(super) fn may_refuse(&mut self, src: SocketAddr, now: Instant) -> bool {
        self.refusals
            .take(src.ip(), limits::REFUSALS_PER_SOURCE_PER_S, now)
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
        self.arrival = self.stream_transport(side);
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
        self.arrival = self.stream_transport(side);
        self.events.push_back(ProxyEvent::Rejected {
            side,
            reason: err.reason(),
        });
        if let Some(resp) = reject_unparsed(&raw, err) {
            self.send(side, src, resp.as_bytes().clone());
        }
    }

    fn dispatch(&mut self, side: Side, src: SocketAddr, msg: SipMessage, now: Instant) {
        if !self.admit(side, src, &msg, now) {
            return;
        }
        if msg.is_request() && !self.within_limits(side, src, &msg, now) {
            return;
        }
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

    pub(super) fn send_on(
        &mut self,
        side: Side,
        transport: SipTransport,
        dest: SocketAddr,
        payload: Bytes,
    ) {
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
        status: StatusCode,
        phrase: &str,
        server: Option<&TransactionKey>,
        now: Instant,
    ) {
        if req.method() == Some(&Method::Ack) {
            return;
        }
        if let Ok(resp) = build_response(req, status, phrase) {
            self.answer(server, side, src, resp, now);
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
}
