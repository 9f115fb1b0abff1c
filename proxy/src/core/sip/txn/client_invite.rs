//! INVITE client transaction (RFC 3261 §17.1.1, figure 5): timers A, B, D.
//!
//! ```text
//!            send INVITE, start A (unreliable) and B
//!  Calling ──1xx──► Proceeding ──300-699: send ACK, start D──► Completed ──D──► Terminated
//!     │ A: resend, A *= 2     │ 2xx: to TU ─────────────────────────────────────► Terminated
//!     │ B: Timeout ─────────────────────────────────────────────────────────────► Terminated
//! ```
//!
//! Timer A doubles without a cap (§17.1.1.2: "the client transaction MUST ... retransmit ...
//! after ... 2*T1, 4*T1 ..."); only non-INVITE retransmissions are capped at T2.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{Clock, Fired, Outbox, Timers, Transmit, TxnEvent};
use crate::core::sip::{HeaderName, SipMessage};

/// States of figure 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, nothing heard.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A 3xx–6xx arrived and was ACKed; absorbing retransmissions until D.
    Completed,
    /// Done.
    Terminated,
}

/// An INVITE client transaction.
#[derive(Debug)]
pub struct ClientInvite {
    state: ClientInviteState,
    request: SipMessage,
    dest: SocketAddr,
    timers: Timers,
    reliable: bool,
    /// A (retransmit), B (timeout), D (linger).
    clock: Clock,
    ack: Option<Bytes>,
    out: Outbox,
}

impl ClientInvite {
    /// Start the transaction: the INVITE is queued for sending at once.
    pub fn new(
        request: SipMessage,
        dest: SocketAddr,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> Self {
        let mut t = Self {
            state: ClientInviteState::Calling,
            request,
            dest,
            timers,
            reliable,
            clock: Clock::default(),
            ack: None,
            out: Outbox::default(),
        };
        t.clock.start(now, reliable, &timers);
        t.resend_invite();
        t
    }

    /// Current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// The INVITE as sent (a proxy builds its CANCEL from it, §9.1).
    pub fn request(&self) -> &SipMessage {
        &self.request
    }

    fn send(&mut self, payload: Bytes) {
        self.out.send(self.dest, payload);
    }

    fn resend_invite(&mut self) {
        self.send(self.request.as_bytes().clone());
    }

    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        self.clock.clear();
    }

    /// A response matched this transaction (§17.1.1.2).
    pub fn handle_response(&mut self, resp: SipMessage, now: Instant) {
        let Some(status) = resp.status() else {
            return;
        };
        match self.state {
            ClientInviteState::Calling | ClientInviteState::Proceeding => {
                if status.is_provisional() {
                    self.state = ClientInviteState::Proceeding;
                    self.clock.retransmit = None;
                    self.clock.timeout = None;
                    self.out.events.push_back(TxnEvent::Response(resp));
                } else if status.is_success() {
                    self.out.events.push_back(TxnEvent::Response(resp));
                    self.terminate();
                } else {
                    let ack = build_ack(&self.request, &resp);
                    self.send(ack.clone());
                    self.ack = Some(ack);
                    self.out.events.push_back(TxnEvent::Response(resp));
                    self.state = ClientInviteState::Completed;
                    let d = Duration::from_secs(32).max(self.timers.t1x64());
                    self.clock.linger(now, self.reliable, d);
                }
            }
            ClientInviteState::Completed => {
                // Retransmitted final response: resend the ACK, tell nobody.
                if status.is_final() {
                    if let Some(ack) = self.ack.clone() {
                        self.send(ack);
                    }
                }
            }
            ClientInviteState::Terminated => {}
        }
    }

    /// Timer A's next interval: doubling without a cap.
    fn next_interval(&self, interval: Duration) -> Duration {
        interval * 2
    }

    txn_common!(ClientInviteState::Terminated, resend_invite, next_interval);
}

/// The CANCEL for a pending INVITE (§9.1): Request-URI, Call-ID, From, To, CSeq number and
/// the single top Via of the INVITE (so the same branch), its Route headers; method CANCEL.
pub fn build_cancel(invite: &SipMessage) -> Bytes {
    same_transaction_request("CANCEL", invite, invite)
}

/// The ACK for a non-2xx final response (§17.1.1.3): Request-URI, Call-ID, From, CSeq number
/// and the single top Via of the INVITE, its Route headers, and the To of the response.
pub(crate) fn build_ack(invite: &SipMessage, resp: &SipMessage) -> Bytes {
    same_transaction_request("ACK", invite, resp)
}

/// A request that shares the INVITE's transaction (CANCEL, non-2xx ACK): the INVITE's
/// Request-URI, top Via, Routes, From, Call-ID and CSeq number, `method`, and the To of
/// `to_from` (the INVITE itself, or the response being acknowledged).
fn same_transaction_request(method: &str, invite: &SipMessage, to_from: &SipMessage) -> Bytes {
    let mut out = BytesMut::with_capacity(512);
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b" ");
    if let Some(u) = invite.request_uri() {
        out.extend_from_slice(u.as_bytes());
    }
    out.extend_from_slice(b" SIP/2.0\r\n");
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    if let Some(via) = invite.header("Via") {
        line(b"Via", &via);
    }
    line(b"Max-Forwards", b"70");
    for h in invite.headers().filter(|h| h.kind == HeaderName::Route) {
        line(&h.name, &h.value);
    }
    for (msg, kind) in [
        (invite, HeaderName::From),
        (to_from, HeaderName::To),
        (invite, HeaderName::CallId),
    ] {
        for h in msg.headers().filter(|h| h.kind == kind).take(1) {
            line(&h.name, &h.value);
        }
    }
    let seq = invite.cseq().map(|c| c.seq).unwrap_or_default();
    line(b"CSeq", format!("{seq} {method}").as_bytes());
    line(b"Content-Length", b"0");
    out.extend_from_slice(b"\r\n");
    out.freeze()
}
