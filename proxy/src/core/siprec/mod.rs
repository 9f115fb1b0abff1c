//! RFC 7866 Session Recording Client (SRC), sans-IO: per recorded call, a recording session
//! toward the first SRS of a list that answers, with failover.
//!
//! ```text
//!  start ─► Inviting(SRS i) ──2xx, usable SDP──► ACK ─► Established ──end──► BYE ─► Done
//!             │ timeout_ms without a final answer (CANCEL if a 1xx came), non-2xx final,
//!             │ transport error, 2xx with no usable stream (ACK + BYE)
//!             ├──► Inviting(SRS i+1)                        SRS sends BYE ─► 200, Done
//!             └──► (no SRS left) AllFailed: the shell falls back to a local file
//! ```
//!
//! While established, an in-dialog OPTIONS goes to the SRS every `keepalive`: no final
//! answer within `timeout` (or a 408/481) means the SRS is gone, and the session is ended
//! (BYE) and reported as [`SrcEvent::Lost`], as a BYE from the SRS is reported as
//! [`SrcEvent::RemoteBye`]. Either way the shell records the rest of the call elsewhere:
//! [`Src::start_from`] the next SRS, or its fallback file.
//!
//! Calling rules (as [`crate::core::sip::txn`]): feed input with [`Src::start`],
//! [`Src::end`], [`Src::handle_datagram`] and [`Src::handle_timeout`] (time is always a
//! parameter), then drain [`Src::poll_transmit`] and [`Src::poll_event`], and ask
//! [`Src::poll_timeout`] again: any mutation may move the deadline.
//!
//! An attempt that is given up is kept for 64·T1 so that a late 2xx is still ACKed and
//! ended with a BYE (no session is ever left open at an SRS), and the 487 that follows a
//! CANCEL is ACKed by its transaction.

mod answer;
mod message;
pub mod metadata;
pub mod probe;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::core::sdes::fill_random;
use crate::core::sdp::{SdesKey, SrtpSuite};
use crate::core::sip::txn::{ClientInvite, ClientNonInvite, Timers, Transmit, TxnEvent};
use crate::core::sip::{
    build_response, parse_datagram, Frame, Limits, Method, SipMessage, StatusCode,
};

pub use answer::BadAnswer;
pub use metadata::RecordingInfo;
pub use probe::SrsProbe;

/// How SIP reaches an SRS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrsTransport {
    /// Datagrams (retransmitted by the transactions).
    #[default]
    Udp,
    /// A TCP connection the shell keeps to the SRS (`;transport=tcp` in the URI); requests
    /// are not retransmitted (RFC 3261 §17.1.1.2).
    Tcp,
    /// TLS over such a connection (`sips:` or `;transport=tls`).
    Tls,
}

impl SrsTransport {
    /// The Via transport token.
    pub fn via(self) -> &'static str {
        match self {
            SrsTransport::Udp => "UDP",
            SrsTransport::Tcp => "TCP",
            SrsTransport::Tls => "TLS",
        }
    }

    /// A reliable transport (no retransmissions).
    pub fn reliable(self) -> bool {
        self != SrsTransport::Udp
    }
}

/// One SRS of the failover list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrsTarget {
    /// Its URI (Request-URI and To of the INVITE).
    pub uri: String,
    /// Where its SIP goes.
    pub addr: SocketAddr,
    /// Over what.
    pub transport: SrsTransport,
    /// Our SIP address as that SRS reaches us (Via, Contact; its IP is the SDP `c=`).
    pub local: SocketAddr,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct SrcConfig {
    /// SRSs in failover order.
    pub targets: Vec<SrsTarget>,
    /// How long an SRS has to give a final answer before the next is tried.
    pub timeout: Duration,
    /// RFC 3261 timers (retransmissions, linger).
    pub timers: Timers,
    /// Interval of the keep-alive OPTIONS to an established session's SRS (`None`: none).
    pub keepalive: Option<Duration>,
    /// Offer the streams as SDES-SRTP (`RTP/SAVP`, a fresh key per stream and attempt); an
    /// answer that takes a stream as plain RTP leaves that stream unused.
    pub srtp: bool,
}

/// Why an SRS was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverReason {
    /// No final answer within the timeout (or timer B).
    Timeout,
    /// A non-2xx final response.
    Rejected(StatusCode),
    /// A 2xx whose SDP is unusable (it was ACKed and ended with a BYE).
    BadAnswer(BadAnswer),
    /// Sending failed.
    TransportError,
}

/// What the client tells the shell, per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrcEvent {
    /// An SRS accepted: send the caller stream to `dests[0]` and the agent stream to
    /// `dests[1]` (`None`: that stream was declined).
    Established {
        /// Index of the SRS in the list.
        srs: usize,
        /// Media destinations.
        dests: [Option<SocketAddr>; 2],
        /// With `srtp`: the keys the two streams are encrypted with (as offered).
        keys: Option<[SdesKey; 2]>,
    },
    /// SRS `from` was given up; the next one (if any) is being tried.
    FailedOver {
        /// Index of the SRS given up.
        from: usize,
        /// Why.
        reason: FailoverReason,
    },
    /// Every SRS failed: record locally if configured.
    AllFailed,
    /// The SRS ended the session (BYE): stop sending.
    RemoteBye,
    /// The established SRS `srs` did not answer a keep-alive in time (or answered 408/481):
    /// the session was ended with a BYE; stop sending.
    Lost {
        /// Index of the SRS in the list.
        srs: usize,
    },
}

/// One INVITE to one SRS.
#[derive(Debug)]
struct Attempt {
    srs: usize,
    call_id: String,
    invite: SipMessage,
    /// `None` once given up without a provisional response (no more retransmissions).
    txn: Option<ClientInvite>,
    provisional: bool,
    /// Failover deadline (current attempt only).
    deadline: Instant,
    /// Given up: forget it at this instant.
    forget_at: Option<Instant>,
    /// A 2xx of this attempt was ACKed (and, if given up, BYEd) already.
    answered: Option<Bytes>,
    /// The SRTP keys its offer carries (`srtp`).
    keys: Option<[SdesKey; 2]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Inviting,
    Established,
    /// BYE sent, waiting for its answer.
    Closing,
    /// Every SRS failed.
    Failed,
    Done,
}

#[derive(Debug)]
struct Session {
    token: String,
    ports: [u16; 2],
    info: RecordingInfo,
    state: State,
    /// Current attempt first, then the ones given up.
    attempts: Vec<Attempt>,
    current: Option<usize>,
    dialog: Option<message::Dialog>,
    /// CANCEL and BYE transactions (Call-ID, method, txn).
    side: Vec<(String, Method, ClientNonInvite)>,
    branches: u32,
    /// The call ended (no more events).
    ended: bool,
    /// Established: when the next keep-alive OPTIONS goes out.
    ping_at: Option<Instant>,
    /// A keep-alive is out: its final answer is due by then.
    ping_due: Option<Instant>,
    /// Keep-alives sent in the dialog (each takes a CSeq number before the BYE's).
    pings: u32,
}

/// The recording client: every recorded call's session, keyed by the shell's call key `K`.
#[derive(Debug)]
pub struct Src<K> {
    cfg: SrcConfig,
    sessions: HashMap<K, Session>,
    by_call_id: HashMap<String, K>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<(K, SrcEvent)>,
}

impl<K: Copy + Eq + Hash> Src<K> {
    /// A client with no sessions.
    pub fn new(cfg: SrcConfig) -> Self {
        Src {
            cfg,
            sessions: HashMap::new(),
            by_call_id: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Start recording call `key`: INVITE the first SRS. `token` must be unique per call (it
    /// makes the Call-IDs, tags and metadata identifiers); `ports` are the local RTP ports
    /// the caller and agent streams are sent from.
    pub fn start(
        &mut self,
        key: K,
        token: String,
        ports: [u16; 2],
        info: RecordingInfo,
        now: Instant,
    ) {
        self.start_from(key, token, ports, info, 0, now);
    }

    /// [`Src::start`], trying the SRSs from index `first` on: the rest of a call whose SRS
    /// was lost goes to the ones after it (an SRS that just failed is not asked again).
    pub fn start_from(
        &mut self,
        key: K,
        token: String,
        ports: [u16; 2],
        info: RecordingInfo,
        first: usize,
        now: Instant,
    ) {
        if self.sessions.contains_key(&key) {
            return;
        }
        let s = Session {
            token,
            ports,
            info,
            state: State::Inviting,
            attempts: Vec::new(),
            current: None,
            dialog: None,
            side: Vec::new(),
            branches: 0,
            ended: false,
            ping_at: None,
            ping_due: None,
            pings: 0,
        };
        self.sessions.insert(key, s);
        self.try_srs(key, first, now);
        self.drain(key, now);
    }

    /// The call ended: BYE an established session; give up an attempt in progress (CANCEL if
    /// it had a provisional answer). No event follows for `key`.
    pub fn end(&mut self, key: K, now: Instant) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        s.ended = true;
        match s.state {
            State::Inviting => {
                self.give_up_current(key, now);
                if let Some(s) = self.sessions.get_mut(&key) {
                    s.state = State::Done;
                }
            }
            State::Established => self.send_bye(key, now),
            State::Closing | State::Failed | State::Done => {}
        }
        self.drain(key, now);
    }

    /// A datagram from the SIP socket.
    pub fn handle_datagram(&mut self, bytes: Bytes, from: SocketAddr, now: Instant) {
        let Ok(Frame::Message(msg)) = parse_datagram(bytes, &Limits::default()) else {
            return;
        };
        let call_id = match msg.call_id() {
            Ok(c) => String::from_utf8_lossy(&c).into_owned(),
            Err(_) => return,
        };
        let Some(&key) = self.by_call_id.get(&call_id) else {
            if msg.is_request() && msg.method() != Some(&Method::Ack) {
                self.respond(&msg, from, 481, "Call/Transaction Does Not Exist");
            }
            return;
        };
        if msg.is_request() {
            self.handle_request(key, &call_id, msg, from, now);
        } else {
            self.handle_response(key, &call_id, msg, now);
        }
        self.drain(key, now);
    }

    /// The SRSs in the list.
    pub fn targets(&self) -> usize {
        self.cfg.targets.len()
    }

    /// Fire whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let keys: Vec<K> = self.sessions.keys().copied().collect();
        for key in keys {
            let mut failover = false;
            let mut keepalive = None;
            if let Some(s) = self.sessions.get_mut(&key) {
                for a in &mut s.attempts {
                    if let Some(t) = &mut a.txn {
                        if t.poll_timeout().is_some_and(|d| d <= now) {
                            t.handle_timeout(now);
                        }
                    }
                }
                for (_, _, t) in &mut s.side {
                    if t.poll_timeout().is_some_and(|d| d <= now) {
                        t.handle_timeout(now);
                    }
                }
                if s.state == State::Inviting {
                    if let Some(a) = s.current.and_then(|i| s.attempts.get(i)) {
                        failover = a.deadline <= now;
                    }
                }
                if s.state == State::Established {
                    if s.ping_due.is_some_and(|d| d <= now) {
                        keepalive = Some(false);
                    } else if s.ping_at.is_some_and(|d| d <= now) {
                        keepalive = Some(true);
                    }
                }
            }
            self.drain(key, now);
            if failover {
                self.failover(key, FailoverReason::Timeout, now);
                self.drain(key, now);
            }
            match keepalive {
                Some(true) => self.send_ping(key, now),
                Some(false) => self.lost(key, now),
                None => {}
            }
            if keepalive.is_some() {
                self.drain(key, now);
            }
        }
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<(K, SrcEvent)> {
        self.events.pop_front()
    }

    /// When [`Src::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut put = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for s in self.sessions.values() {
            for (i, a) in s.attempts.iter().enumerate() {
                match &a.txn {
                    // A live transaction wakes us itself; it is forgotten when it ends.
                    Some(t) if !t.is_terminated() => put(t.poll_timeout()),
                    _ => put(a.forget_at),
                }
                if s.state == State::Inviting && s.current == Some(i) {
                    put(Some(a.deadline));
                }
            }
            if s.state == State::Established {
                put(s.ping_due.or(s.ping_at));
            }
            for (_, _, t) in &s.side {
                put(t.poll_timeout());
            }
        }
        next
    }

    /// Sessions still held (recording, closing, or absorbing late answers).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions whose BYE is still unanswered (worth waiting for at shutdown).
    pub fn closing(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| s.state == State::Closing)
            .count()
    }

    // --- internals -----------------------------------------------------------------------

    fn branch(s: &mut Session) -> String {
        s.branches += 1;
        format!("z9hG4bK-cm{}-{}", s.token, s.branches)
    }

    /// INVITE SRS `idx`, or fail the session when the list is exhausted.
    fn try_srs(&mut self, key: K, idx: usize, now: Instant) {
        let Some(target) = self.cfg.targets.get(idx).cloned() else {
            if let Some(s) = self.sessions.get_mut(&key) {
                s.state = State::Failed;
                s.current = None;
                self.events.push_back((key, SrcEvent::AllFailed));
            }
            return;
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let call_id = format!("{}-{idx}@callmask", s.token);
        let branch = Self::branch(s);
        let boundary = format!("callmask-{}", s.token);
        let keys = if self.cfg.srtp {
            let new = || SdesKey::generate(SrtpSuite::AesCm128HmacSha1_80, fill_random).ok();
            match (new(), new()) {
                (Some(a), Some(b)) => Some([a, b]),
                // No randomness: never offer a weak key, nor plain RTP.
                _ => return self.skip_srs(key, idx, now),
            }
        } else {
            None
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let sdp = metadata::sdp_offer(
            u64::from(s.branches) + u64::from(s.ports[0]),
            target.local.ip(),
            s.ports,
            keys.as_ref(),
        );
        let xml = metadata::metadata_xml(&s.token, &s.info);
        let body = metadata::multipart(&boundary, &sdp, &xml);
        let bytes = message::invite(&message::InviteParts {
            srs_uri: &target.uri,
            local: target.local,
            transport: target.transport,
            call_id: &call_id,
            from_tag: &s.token,
            branch: &branch,
            boundary: &boundary,
            body: &body,
        });
        let Ok(invite) = SipMessage::parse(bytes) else {
            // Only an SRS URI that does not print as a SIP request line gets here.
            return self.skip_srs(key, idx, now);
        };
        let txn = ClientInvite::new(
            invite.clone(),
            target.addr,
            target.transport.reliable(),
            self.cfg.timers,
            now,
        );
        s.attempts.push(Attempt {
            srs: idx,
            call_id: call_id.clone(),
            invite,
            txn: Some(txn),
            provisional: false,
            deadline: now + self.cfg.timeout,
            forget_at: None,
            answered: None,
            keys,
        });
        s.current = Some(s.attempts.len() - 1);
        s.state = State::Inviting;
        self.by_call_id.insert(call_id, key);
    }

    /// SRS `idx` cannot even be asked (no request to send): report it failed, try the next.
    fn skip_srs(&mut self, key: K, idx: usize, now: Instant) {
        self.events.push_back((
            key,
            SrcEvent::FailedOver {
                from: idx,
                reason: FailoverReason::TransportError,
            },
        ));
        self.try_srs(key, idx + 1, now);
    }

    /// Give up the current attempt: CANCEL it if it is proceeding, else stop retransmitting.
    fn give_up_current(&mut self, key: K, now: Instant) {
        let linger = self.cfg.timers.t1x64();
        let timers = self.cfg.timers;
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(a) = s.current.take().and_then(|i| s.attempts.get_mut(i)) else {
            return;
        };
        a.forget_at = Some(now + linger);
        if a.answered.is_some() {
            return;
        }
        let live = a.txn.as_ref().is_some_and(|t| !t.is_terminated());
        if a.provisional && live {
            let target = self.cfg.targets.get(a.srs);
            let dest = target.map(|t| t.addr);
            let reliable = target.is_some_and(|t| t.transport.reliable());
            if let (Some(dest), Ok(c)) = (dest, SipMessage::parse(message::cancel(&a.invite))) {
                let t = ClientNonInvite::new(c, dest, reliable, timers, now);
                s.side.push((a.call_id.clone(), Method::Cancel, t));
            }
        } else {
            a.txn = None;
        }
    }

    fn failover(&mut self, key: K, reason: FailoverReason, now: Instant) {
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        if s.state != State::Inviting {
            return;
        }
        let Some(from) = s.current.and_then(|i| s.attempts.get(i)).map(|a| a.srs) else {
            return;
        };
        self.give_up_current(key, now);
        self.events
            .push_back((key, SrcEvent::FailedOver { from, reason }));
        self.try_srs(key, from + 1, now);
    }

    /// An in-dialog OPTIONS to the established SRS; its final answer is due within the
    /// failover timeout.
    fn send_ping(&mut self, key: K, now: Instant) {
        let (timers, timeout) = (self.cfg.timers, self.cfg.timeout);
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(d) = s.dialog.clone() else {
            return;
        };
        let Some(dest) = self.srs_of_dialog(key).map(|(_, a)| a) else {
            return;
        };
        let reliable = d.transport.reliable();
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let branch = Self::branch(s);
        let cseq = d.invite_cseq + 1 + s.pings;
        s.pings += 1;
        s.ping_at = None;
        s.ping_due = Some(now + timeout);
        if let Ok(req) = SipMessage::parse(d.request("OPTIONS", cseq, &branch)) {
            let t = ClientNonInvite::new(req, dest, reliable, timers, now);
            s.side.push((d.call_id.clone(), Method::Options, t));
        }
    }

    /// The SRS of the established dialog: (its index, its address).
    fn srs_of_dialog(&self, key: K) -> Option<(usize, SocketAddr)> {
        let s = self.sessions.get(&key)?;
        let d = s.dialog.as_ref()?;
        let a = s.attempts.iter().find(|a| a.call_id == d.call_id)?;
        Some((a.srs, self.cfg.targets.get(a.srs)?.addr))
    }

    /// The established SRS stopped answering: end the session (a BYE, in case it is only
    /// deaf) and tell the shell.
    fn lost(&mut self, key: K, now: Instant) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if s.state != State::Established {
            return;
        }
        s.ping_at = None;
        s.ping_due = None;
        let ended = s.ended;
        let srs = self.srs_of_dialog(key).map_or(0, |(i, _)| i);
        self.send_bye(key, now);
        if !ended {
            self.events.push_back((key, SrcEvent::Lost { srs }));
        }
    }

    fn send_bye(&mut self, key: K, now: Instant) {
        let timers = self.cfg.timers;
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(d) = s.dialog.clone() else {
            s.state = State::Done;
            return;
        };
        let target = s
            .attempts
            .iter()
            .find(|a| a.call_id == d.call_id)
            .and_then(|a| self.cfg.targets.get(a.srs));
        let dest = target.map(|t| t.addr);
        let reliable = target.is_some_and(|t| t.transport.reliable());
        let branch = Self::branch(s);
        s.state = State::Closing;
        let cseq = d.invite_cseq + 1 + s.pings;
        if let (Some(dest), Ok(bye)) = (dest, SipMessage::parse(d.request("BYE", cseq, &branch))) {
            let t = ClientNonInvite::new(bye, dest, reliable, timers, now);
            s.side.push((d.call_id.clone(), Method::Bye, t));
        } else {
            s.state = State::Done;
        }
    }

    fn handle_response(&mut self, key: K, call_id: &str, resp: SipMessage, now: Instant) {
        let Ok(cseq) = resp.cseq() else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if cseq.method != Method::Invite {
            // The newest of that method: an older keep-alive was answered or given up.
            if let Some((_, _, t)) = s
                .side
                .iter_mut()
                .rev()
                .find(|(c, m, _)| c == call_id && *m == cseq.method)
            {
                t.handle_response(resp, now);
            }
            return;
        }
        let Some(ai) = s.attempts.iter().position(|a| a.call_id == call_id) else {
            return;
        };
        let a = &mut s.attempts[ai];
        match &mut a.txn {
            Some(t) if !t.is_terminated() => t.handle_response(resp, now),
            _ => {
                // No transaction left: only a retransmitted (or late) 2xx matters.
                if resp.status().is_some_and(StatusCode::is_success) {
                    self.on_2xx(key, ai, resp, now);
                }
            }
        }
    }

    fn handle_request(
        &mut self,
        key: K,
        call_id: &str,
        req: SipMessage,
        from: SocketAddr,
        now: Instant,
    ) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let in_dialog = s.dialog.as_ref().is_some_and(|d| d.call_id == call_id)
            && matches!(s.state, State::Established | State::Closing);
        match req.method() {
            Some(Method::Ack) => {}
            Some(Method::Bye) if in_dialog => {
                s.state = State::Done;
                let ended = s.ended;
                self.respond(&req, from, 200, "OK");
                if !ended {
                    self.events.push_back((key, SrcEvent::RemoteBye));
                }
            }
            Some(Method::Options) if in_dialog => self.respond(&req, from, 200, "OK"),
            Some(Method::Invite) if in_dialog => {
                self.respond(&req, from, 488, "Not Acceptable Here")
            }
            _ if in_dialog => self.respond(&req, from, 501, "Not Implemented"),
            _ => self.respond(&req, from, 481, "Call/Transaction Does Not Exist"),
        }
        let _ = now;
    }

    fn respond(&mut self, req: &SipMessage, to: SocketAddr, code: u16, reason: &str) {
        let Some(status) = StatusCode::new(code) else {
            return;
        };
        if let Ok(r) = build_response(req, status, reason) {
            self.transmits.push_back(Transmit {
                dest: to,
                payload: r.as_bytes().clone(),
            });
        }
    }

    /// Move every transaction's output to the client's queues and act on their events, until
    /// acting on them produces nothing new.
    fn drain(&mut self, key: K, now: Instant) {
        let keepalive = self.cfg.keepalive;
        let mut srs_gone = false;
        loop {
            let mut txn_events: Vec<(usize, TxnEvent)> = Vec::new();
            let mut side_done = false;
            let Some(s) = self.sessions.get_mut(&key) else {
                return;
            };
            for (i, a) in s.attempts.iter_mut().enumerate() {
                if let Some(t) = &mut a.txn {
                    while let Some(x) = t.poll_transmit() {
                        self.transmits.push_back(x);
                    }
                    while let Some(e) = t.poll_event() {
                        txn_events.push((i, e));
                    }
                }
            }
            for (_, m, t) in &mut s.side {
                while let Some(x) = t.poll_transmit() {
                    self.transmits.push_back(x);
                }
                while let Some(e) = t.poll_event() {
                    let status = match &e {
                        TxnEvent::Response(r) => r.status(),
                        _ => None,
                    };
                    let fin = status.is_some_and(StatusCode::is_final);
                    match m {
                        // A final answer (or none) to our BYE ends the session.
                        Method::Bye => side_done |= fin || status.is_none(),
                        // Any final answer but 408/481 says the SRS is there and knows
                        // the session; none at all (timer F, send error) says it is not.
                        Method::Options if s.state == State::Established => {
                            let dead = match status {
                                Some(c) => matches!(c.as_u16(), 408 | 481),
                                None => true,
                            };
                            if dead {
                                srs_gone = true;
                            } else if fin {
                                s.ping_due = None;
                                s.ping_at = keepalive.map(|k| now + k);
                            }
                        }
                        _ => {}
                    }
                }
            }
            s.side.retain(|(_, _, t)| !t.is_terminated());
            if side_done && s.state == State::Closing {
                s.state = State::Done;
            }
            if txn_events.is_empty() {
                break;
            }
            for (i, e) in txn_events {
                self.on_invite_event(key, i, e, now);
            }
        }
        if srs_gone {
            self.lost(key, now);
            // The BYE just queued: its first transmission.
            if let Some(s) = self.sessions.get_mut(&key) {
                for (_, _, t) in &mut s.side {
                    while let Some(x) = t.poll_transmit() {
                        self.transmits.push_back(x);
                    }
                }
            }
        }
        self.collect_garbage(key, now);
    }

    fn on_invite_event(&mut self, key: K, ai: usize, e: TxnEvent, now: Instant) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let current = s.current == Some(ai) && s.state == State::Inviting;
        match e {
            TxnEvent::Response(r) => {
                let Some(status) = r.status() else {
                    return;
                };
                if status.is_provisional() {
                    if let Some(a) = s.attempts.get_mut(ai) {
                        a.provisional = true;
                    }
                } else if status.is_success() {
                    self.on_2xx(key, ai, r, now);
                } else if current {
                    self.failover(key, FailoverReason::Rejected(status), now);
                }
            }
            TxnEvent::Timeout if current => self.failover(key, FailoverReason::Timeout, now),
            TxnEvent::TransportError if current => {
                self.failover(key, FailoverReason::TransportError, now)
            }
            _ => {}
        }
    }

    /// A 2xx to attempt `ai`: ACK it (again, for a retransmission); take it as the session
    /// if it is the current attempt with a usable answer, else end it with a BYE.
    fn on_2xx(&mut self, key: K, ai: usize, resp: SipMessage, now: Instant) {
        let timers = self.cfg.timers;
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let is_current = s.current == Some(ai) && s.state == State::Inviting;
        let Some(a) = s.attempts.get_mut(ai) else {
            return;
        };
        let Some(target) = self.cfg.targets.get(a.srs) else {
            return;
        };
        if let Some(ack) = &a.answered {
            self.transmits.push_back(Transmit {
                dest: target.addr,
                payload: ack.clone(),
            });
            return;
        }
        let dialog = message::Dialog::from_2xx(&a.invite, &resp, target.local, target.transport);
        s.branches += 1;
        let ack_branch = format!("z9hG4bK-cm{}-{}", s.token, s.branches);
        let ack = dialog.request("ACK", dialog.invite_cseq, &ack_branch);
        let a = &mut s.attempts[ai];
        a.answered = Some(ack.clone());
        a.txn = None;
        self.transmits.push_back(Transmit {
            dest: target.addr,
            payload: ack,
        });
        let (srs, keys) = (a.srs, a.keys.clone());
        let answer =
            answer::destinations(resp.content_type().as_deref(), &resp.body(), self.cfg.srtp);
        match (is_current, answer) {
            (true, Ok(dests)) => {
                s.dialog = Some(dialog);
                s.state = State::Established;
                s.ping_at = self.cfg.keepalive.map(|k| now + k);
                // Keep the attempt (current) so 2xx retransmissions are ACKed.
                self.events
                    .push_back((key, SrcEvent::Established { srs, dests, keys }));
            }
            (current, answer) => {
                // Not wanted (given up, or no usable stream): end it.
                s.branches += 1;
                let b = format!("z9hG4bK-cm{}-{}", s.token, s.branches);
                if let Ok(bye) =
                    SipMessage::parse(dialog.request("BYE", dialog.invite_cseq + 1, &b))
                {
                    let t = ClientNonInvite::new(
                        bye,
                        target.addr,
                        target.transport.reliable(),
                        timers,
                        now,
                    );
                    s.side.push((dialog.call_id.clone(), Method::Bye, t));
                }
                if current {
                    if let Err(bad) = answer {
                        self.failover(key, FailoverReason::BadAnswer(bad), now);
                    }
                }
            }
        }
    }

    /// Forget attempts whose linger ran out and sessions that have nothing left to do.
    fn collect_garbage(&mut self, key: K, now: Instant) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let by_call_id = &mut self.by_call_id;
        let current_id = s
            .current
            .and_then(|i| s.attempts.get(i))
            .map(|a| a.call_id.clone());
        let before = s.attempts.len();
        let over = s.ended && matches!(s.state, State::Done | State::Failed);
        s.attempts.retain(|a| {
            let keep = (!over && Some(&a.call_id) == current_id.as_ref())
                || a.txn.as_ref().is_some_and(|t| !t.is_terminated())
                || match a.forget_at {
                    Some(t) => t > now,
                    // The dialog's attempt (2xx retransmissions are ACKed) until it is over.
                    None => !over,
                };
            if !keep {
                by_call_id.remove(&a.call_id);
            }
            keep
        });
        if s.attempts.len() != before {
            s.current = current_id.and_then(|id| s.attempts.iter().position(|a| a.call_id == id));
        }
        let finished = over && s.side.is_empty() && s.attempts.is_empty();
        if finished {
            for a in &s.attempts {
                by_call_id.remove(&a.call_id);
            }
            self.sessions.remove(&key);
        }
    }
}
