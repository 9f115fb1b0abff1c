//! RFC 3261 §17 transactions, sans-IO.
//!
//! Four state machines — [`ClientInvite`] (timers A, B, D), [`ClientNonInvite`] (E, F, K),
//! [`ServerInvite`] (G, H, I, and the 100 Trying a proxy sends, §16.7 / §17.2.1) and
//! [`ServerNonInvite`] (J). The proxy keeps its transactions in one table of its own
//! (`core/proxy/txn.rs`: each entry with its hop, one timer queue); a UA-side table that
//! matches messages to them (§17.1.3, §17.2.3) exists for the simulations only (`table.rs`,
//! test builds).
//!
//! # Calling rules (all types)
//!
//! Time is always a parameter; nothing here reads the clock.
//!
//! 1. Feed input with `handle_*(…, now)`.
//! 2. Drain `poll_transmit` until `None` and send each [`Transmit`]; drain `poll_event` and
//!    act on each [`TxnEvent`].
//! 3. Ask `poll_timeout` when to wake up; at or after that instant call `handle_timeout` and
//!    go to 2. A
//!    deadline may move after any `handle_*`, so ask again after every mutation.
//!
//! # Reliable transports
//!
//! On a reliable transport (TCP, TLS) there are no retransmissions (A, E, G off) and the
//! linger timers D, I, J, K are zero (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).
//!
//! # 2xx handling
//!
//! This follows RFC 3261 as written (not the RFC 6026 `Accepted` state): an INVITE client
//! transaction passes a 2xx to the TU and terminates; an INVITE server transaction sends a
//! 2xx and terminates. Retransmitted 2xx responses and the ACK for a 2xx therefore match no
//! transaction, and a proxy forwards them statelessly end to end (§16.7, §16.10).
//! callmask's proxy core (`core/proxy_txn.rs`) keeps its INVITE entries 64·T1 longer after a
//! 2xx (RFC 6026 `Accepted`) to absorb crossing INVITE copies and route 2xx retransmissions.

/// The methods every state machine has alike. The type needs fields `state`, `clock` ([`Clock`])
/// and `out` ([`Outbox`]) and a `terminate()` method; `$terminated` is its terminal state.
macro_rules! txn_common {
    ($terminated:path) => {
        /// Next deadline.
        pub fn poll_timeout(&self) -> Option<Instant> {
            self.clock.next()
        }

        /// Sending failed (§17.1.4, §17.2.4).
        pub fn handle_transport_error(&mut self) {
            if self.state != $terminated {
                self.out.events.push_back(TxnEvent::TransportError);
                self.terminate();
            }
        }

        /// Next message to send.
        pub fn poll_transmit(&mut self) -> Option<Transmit> {
            self.out.transmits.pop_front()
        }

        /// Next event for the TU.
        pub fn poll_event(&mut self) -> Option<TxnEvent> {
            self.out.events.pop_front()
        }

        /// Whether the transaction is over.
        pub fn is_terminated(&self) -> bool {
            self.state == $terminated
        }
    };
    // With a retransmit timer: `$resend()` resends, `$next(interval)` is the following interval.
    ($terminated:path, $resend:ident, $next:ident) => {
        txn_common!($terminated);

        /// Fire timers due at `now`.
        pub fn handle_timeout(&mut self, now: Instant) {
            match self.clock.fire(now) {
                Fired::Timeout => {
                    self.out.events.push_back(TxnEvent::Timeout);
                    self.terminate();
                }
                Fired::Due { retransmit, linger } => {
                    if let Some((t, interval)) = retransmit {
                        self.$resend();
                        let next = self.$next(interval);
                        self.clock.retransmit = Some((t + next, next));
                    }
                    if linger {
                        self.terminate();
                    }
                }
            }
        }
    };
}

mod client;
mod client_invite;
mod server;
mod server_invite;
#[cfg(test)]
mod table;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use client::{ClientNonInvite, ClientNonInviteState};
pub use client_invite::{build_cancel, ClientInvite, ClientInviteState};
pub use server::{ServerNonInvite, ServerNonInviteState};
pub use server_invite::{ServerInvite, ServerInviteState};
#[cfg(test)]
pub use table::{RequestMatch, ResponseMatch, Transaction, TransactionTable};

use super::{Method, SipError, SipMessage};

/// Timer base values (RFC 3261 §17.1.1.1, table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network, default 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64·T1: timers B, F, H and (unreliable) J.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// Bytes to send, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address.
    pub dest: SocketAddr,
    /// The message bytes.
    pub payload: Bytes,
}

/// What a transaction tells its transaction user.
// Events are moved once to the TU; boxing the response would add an allocation per response.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnEvent {
    /// Client: a response to pass up (1xx, 2xx, and the first copy of a 3xx–6xx).
    Response(SipMessage),
    /// Client: timer B or F fired (no final response); server: timer H fired (no ACK).
    /// A proxy treats a client timeout as a 408 (§16.7 step 2 / §16.8).
    Timeout,
    /// The transport reported a failure sending for this transaction (§17.1.4, §17.2.4).
    TransportError,
}

/// Transaction identity (RFC 3261 §17.1.3, §17.2.3).
///
/// With an RFC 3261 branch (`z9hG4bK…`) the key is the top Via branch, its sent-by and the
/// method, with ACK folded into INVITE (so an ACK for a non-2xx finds its INVITE server
/// transaction) and CANCEL kept apart (it is its own transaction; see
/// [`TransactionKey::cancel_target`]).
///
/// RFC 2543 fallback (no magic cookie): instead of the full §17.2.3 comparison (Request-URI,
/// To tag, From tag, Call-ID, CSeq, top Via), callmask keys on Call-ID, CSeq number, From tag,
/// top Via sent-by and method. The Request-URI is left out on purpose so that an ACK whose
/// Request-URI was rewritten by a strict router still matches, and the To tag is left out so
/// that the ACK (which carries the response's To tag) matches its INVITE. Retransmissions of
/// an RFC 2543 request carry the same values and so match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TransactionKey {
    /// Branch with the magic cookie.
    Rfc3261 {
        /// Top Via branch, as written.
        branch: Bytes,
        /// Top Via sent-by host (ASCII-lowercased) and port.
        sent_by: (Bytes, Option<u16>),
        /// Method, ACK folded into INVITE.
        method: Method,
    },
    /// Pre-RFC 3261 peer.
    Rfc2543 {
        /// Call-ID.
        call_id: Bytes,
        /// CSeq number.
        cseq: u32,
        /// From tag (empty if absent).
        from_tag: Bytes,
        /// Top Via sent-by host (lowercased) and port.
        sent_by: (Bytes, Option<u16>),
        /// Method, ACK folded into INVITE.
        method: Method,
    },
}

impl TransactionKey {
    /// Key of the server transaction a request belongs to (§17.2.3).
    pub fn for_request(req: &SipMessage) -> Result<Self, SipError> {
        let method = req
            .method()
            .ok_or(SipError::BadEdit("not a request"))?
            .clone();
        Self::build(req, method)
    }

    /// Key of the client transaction a response belongs to (§17.1.3): top Via branch and
    /// sent-by, and the CSeq method.
    pub fn for_response(resp: &SipMessage) -> Result<Self, SipError> {
        Self::build(resp, resp.cseq()?.method)
    }

    fn build(msg: &SipMessage, method: Method) -> Result<Self, SipError> {
        let method = if method == Method::Ack {
            Method::Invite
        } else {
            method
        };
        let via = msg.top_via()?;
        let sent_by = (Bytes::from(via.host().to_ascii_lowercase()), via.port());
        if via.has_rfc3261_branch() {
            let branch = via.branch().cloned().unwrap_or_default();
            return Ok(Self::Rfc3261 {
                branch,
                sent_by,
                method,
            });
        }
        Ok(Self::Rfc2543 {
            call_id: msg.call_id()?,
            cseq: msg.cseq()?.seq,
            from_tag: msg.from()?.tag().cloned().unwrap_or_default(),
            sent_by,
            method,
        })
    }

    /// For a CANCEL's key, the key of the INVITE it cancels (§9.2: same branch, sent-by,
    /// or the same RFC 2543 values); `None` for other methods.
    pub fn cancel_target(&self) -> Option<Self> {
        let mut k = self.clone();
        let m = match &mut k {
            Self::Rfc3261 { method, .. } | Self::Rfc2543 { method, .. } => method,
        };
        if *m != Method::Cancel {
            return None;
        }
        *m = Method::Invite;
        Some(k)
    }

    /// The method part of the key.
    pub fn method(&self) -> &Method {
        match self {
            Self::Rfc3261 { method, .. } | Self::Rfc2543 { method, .. } => method,
        }
    }
}

/// Output queues shared by the four state machines.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<TxnEvent>,
}

impl Outbox {
    /// Queue `payload` for `dest`.
    pub(crate) fn send(&mut self, dest: SocketAddr, payload: Bytes) {
        self.transmits.push_back(Transmit { dest, payload });
    }
}

/// The timers of one state machine, by role: a retransmit timer (A, E, G) with its current
/// interval, an overall timeout (B, F, H) and a linger timer (D, K, I, J).
#[derive(Debug, Default)]
pub(crate) struct Clock {
    pub(crate) retransmit: Option<(Instant, Duration)>,
    pub(crate) timeout: Option<Instant>,
    pub(crate) linger: Option<Instant>,
}

/// What [`Clock::fire`] found due.
pub(crate) enum Fired {
    /// The overall timeout (B, F, H): report it and terminate.
    Timeout,
    /// Otherwise: the retransmit timer if due (deadline, interval), and whether the linger
    /// timer ran out.
    Due {
        retransmit: Option<(Instant, Duration)>,
        linger: bool,
    },
}

impl Clock {
    /// Start the retransmit timer at T1 (unreliable transports only) and the timeout at 64*T1.
    pub(crate) fn start(&mut self, now: Instant, reliable: bool, timers: &Timers) {
        self.retransmit = (!reliable).then(|| (now + timers.t1, timers.t1));
        self.timeout = Some(now + timers.t1x64());
    }

    /// Stop retransmit and timeout; linger for `d` (zero on a reliable transport).
    pub(crate) fn linger(&mut self, now: Instant, reliable: bool, d: Duration) {
        self.retransmit = None;
        self.timeout = None;
        let d = if reliable { Duration::ZERO } else { d };
        self.linger = Some(now + d);
    }

    /// Stop every timer.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        [self.retransmit.map(|(t, _)| t), self.timeout, self.linger]
            .into_iter()
            .flatten()
            .min()
    }

    /// Which timers are due at `now`. A due timeout wins and nothing else is looked at; the
    /// caller reschedules a due retransmit timer.
    pub(crate) fn fire(&self, now: Instant) -> Fired {
        if self.timeout.is_some_and(|t| t <= now) {
            return Fired::Timeout;
        }
        Fired::Due {
            retransmit: self.retransmit.filter(|&(t, _)| t <= now),
            linger: self.linger.is_some_and(|t| t <= now),
        }
    }
}

/// Why the table refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxnError {
    /// The message lacks what a transaction key needs.
    #[error("cannot key transaction: {0}")]
    Key(#[from] SipError),
    /// A transaction with this key exists already.
    #[error("transaction already exists")]
    Exists,
    /// No transaction with this key (or it is not a server transaction).
    #[error("no such server transaction")]
    NoSuchTransaction,
    /// A response was given for a transaction that can no longer send one.
    #[error("transaction cannot send a response in its state")]
    WrongState,
}
