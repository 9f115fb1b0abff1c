//! The proxy's transactions (RFC 3261 §16 on the §17 machines): one server transaction per
//! request received, one client transaction per request forwarded, each with where its
//! messages go, and one timer queue over all of them.
//!
//! The §17 machines follow RFC 3261 as written: an INVITE transaction ends with its 2xx. A
//! proxy must still absorb INVITE retransmissions that cross the 2xx and forward 2xx
//! retransmissions to where the INVITE came from (NAT-safe), so both entries linger 64·T1
//! in an `Accepted` state after a 2xx (RFC 6026 §7.1, timers L and M).
//!
//! Timers: each entry has one deadline (its machine's next timer, timer C, or the end of
//! `Accepted`); a binary heap holds `(deadline, entry)` with lazy deletion, so
//! `poll_timeout` is O(1) and firing is O(log n), whatever the number of calls.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use super::register::PendingRegister;
use super::types::{Side, SipTransport, Transmit};
use crate::core::sip::txn::{
    ClientInvite, ClientInviteState, ClientNonInvite, ClientNonInviteState, ServerInvite,
    ServerInviteState, ServerNonInvite, ServerNonInviteState, Timers, TransactionKey,
    Transmit as TxnTransmit, TxnEvent,
};
use crate::core::sip::{Method, SipMessage, StatusCode};

/// Where one hop's messages go: the socket side, the transport and the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hop {
    pub(super) side: Side,
    pub(super) transport: SipTransport,
    pub(super) dest: SocketAddr,
}

impl Hop {
    fn push(&self, out: &mut VecDeque<Transmit>, t: TxnTransmit) {
        out.push_back(Transmit {
            side: self.side,
            transport: self.transport,
            dest: t.dest,
            payload: t.payload,
        });
    }

    pub(super) fn reliable(&self) -> bool {
        self.transport.is_stream()
    }
}

#[derive(Debug)]
pub(super) enum ServerTxn {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
    /// A 2xx went upstream; INVITE retransmissions are absorbed until then (timer L).
    Accepted(Instant),
}

/// What an ACK that matched a server transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckMatch {
    /// The ACK of a non-2xx callmask sent: hop by hop, absorbed (§17.2.1).
    Absorbed,
    /// After a 2xx (an RFC 2543 peer reuses the INVITE's keys): forward end to end.
    Forward,
    /// No final response was sent yet: the ACK belongs nowhere.
    Drop,
}

/// A request callmask received and answers (the upstream half of a proxied request).
#[derive(Debug)]
pub(super) struct ServerEntry {
    pub(super) txn: ServerTxn,
    /// Where responses go: the request's source, on its side and transport.
    pub(super) up: Hop,
    /// The request as received (callmask builds 100, 200-to-CANCEL and 408 from it).
    pub(super) request: SipMessage,
    /// The client transaction that forwarded it, if any.
    pub(super) client: Option<TransactionKey>,
    /// A request still unanswered by then is forgotten (its final response was lost to a
    /// drop inside callmask, e.g. an SDP it could not anchor): no entry outlives its peers'
    /// own timers.
    give_up: Instant,
    /// How far `give_up` is pushed on by each provisional response sent (a long-ringing
    /// INVITE restarts timer C downstream too).
    patience: std::time::Duration,
    scheduled: Option<Instant>,
}

impl ServerEntry {
    /// A server transaction for `req` (not ACK) from `up`; unanswered, it is dropped at
    /// `give_up`.
    pub(super) fn new(
        req: SipMessage,
        up: Hop,
        timers: Timers,
        now: Instant,
        give_up: Instant,
    ) -> Self {
        let reliable = up.reliable();
        let txn = if req.method() == Some(&Method::Invite) {
            // 100 Trying is sent by the proxy once it decides to forward (not before a reject).
            ServerTxn::Invite(ServerInvite::new(
                &req, up.dest, reliable, timers, false, now,
            ))
        } else {
            ServerTxn::NonInvite(ServerNonInvite::new(up.dest, reliable, timers))
        };
        ServerEntry {
            txn,
            up,
            request: req,
            client: None,
            give_up,
            patience: give_up.saturating_duration_since(now),
            scheduled: None,
        }
    }

    /// Whether a final response can still be sent through the machine.
    pub(super) fn awaiting_final(&self) -> bool {
        match &self.txn {
            ServerTxn::Invite(t) => t.state() == ServerInviteState::Proceeding,
            ServerTxn::NonInvite(t) => matches!(
                t.state(),
                ServerNonInviteState::Trying | ServerNonInviteState::Proceeding
            ),
            ServerTxn::Accepted(_) => false,
        }
    }

    /// Send `resp` through the machine. `false` if it cannot take it (a final was sent
    /// already); the caller then sends it statelessly (§16.7 step 10 for 2xx).
    pub(super) fn respond(
        &mut self,
        resp: SipMessage,
        timers: &Timers,
        now: Instant,
        out: &mut VecDeque<Transmit>,
    ) -> bool {
        let ok = match &mut self.txn {
            ServerTxn::Invite(t) => t.send_response(resp, now).is_ok(),
            ServerTxn::NonInvite(t) => t.send_response(resp, now).is_ok(),
            ServerTxn::Accepted(_) => false,
        };
        self.drain(out);
        if self.awaiting_final() {
            self.give_up = now + self.patience;
        }
        if let ServerTxn::Invite(t) = &self.txn {
            if t.is_terminated() {
                // Only a 2xx ends an INVITE server transaction on send.
                self.txn = ServerTxn::Accepted(now + timers.t1x64());
            }
        }
        ok
    }

    /// The request arrived again: resend the last response (§17.2.1, §17.2.2).
    pub(super) fn handle_retransmission(&mut self, out: &mut VecDeque<Transmit>) {
        match &mut self.txn {
            ServerTxn::Invite(t) => t.handle_retransmission(),
            ServerTxn::NonInvite(t) => t.handle_retransmission(),
            ServerTxn::Accepted(_) => {}
        }
        self.drain(out);
    }

    /// An ACK with this transaction's key arrived.
    pub(super) fn handle_ack(&mut self, now: Instant) -> AckMatch {
        match &mut self.txn {
            ServerTxn::Invite(t) => {
                if t.handle_ack(now) {
                    AckMatch::Absorbed
                } else {
                    AckMatch::Drop
                }
            }
            ServerTxn::NonInvite(_) => AckMatch::Drop,
            ServerTxn::Accepted(_) => AckMatch::Forward,
        }
    }

    fn drain(&mut self, out: &mut VecDeque<Transmit>) {
        let up = self.up;
        match &mut self.txn {
            ServerTxn::Invite(t) => {
                while let Some(x) = t.poll_transmit() {
                    up.push(out, x);
                }
                // Timer H (no ACK) and transport errors concern nobody upstream.
                while t.poll_event().is_some() {}
            }
            ServerTxn::NonInvite(t) => {
                while let Some(x) = t.poll_transmit() {
                    up.push(out, x);
                }
                while t.poll_event().is_some() {}
            }
            ServerTxn::Accepted(_) => {}
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        let machine = match &self.txn {
            ServerTxn::Invite(t) => t.poll_timeout(),
            ServerTxn::NonInvite(t) => t.poll_timeout(),
            ServerTxn::Accepted(until) => Some(*until),
        };
        let give_up = self.awaiting_final().then_some(self.give_up);
        [machine, give_up].into_iter().flatten().min()
    }

    /// Fire what is due; `false` once the entry is over and can be dropped.
    pub(super) fn fire(&mut self, now: Instant, out: &mut VecDeque<Transmit>) -> bool {
        if self.awaiting_final() && self.give_up <= now {
            return false;
        }
        match &mut self.txn {
            ServerTxn::Invite(t) => t.handle_timeout(now),
            ServerTxn::NonInvite(t) => t.handle_timeout(now),
            ServerTxn::Accepted(until) => return *until > now,
        }
        self.drain(out);
        !self.is_terminated()
    }

    fn is_terminated(&self) -> bool {
        match &self.txn {
            ServerTxn::Invite(t) => t.is_terminated(),
            ServerTxn::NonInvite(t) => t.is_terminated(),
            ServerTxn::Accepted(_) => false,
        }
    }
}

#[derive(Debug)]
pub(super) enum ClientTxn {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
    /// A 2xx came back; 2xx retransmissions are forwarded upstream until then (timer M).
    Accepted(Instant),
}

/// Where a forwarded INVITE stands with CANCEL (§9.1, §16.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CancelState {
    /// Not cancelled.
    No,
    /// Cancelled before any provisional response: the CANCEL waits for one (§9.1).
    Pending,
    /// CANCEL sent; timer C now bounds the wait for the final response (64·T1).
    Sent,
}

/// A request callmask forwarded (the downstream half).
#[derive(Debug)]
pub(super) struct ClientEntry {
    pub(super) txn: ClientTxn,
    /// Where the request went.
    pub(super) down: Hop,
    /// Where its responses go when no server transaction takes them.
    pub(super) up: Hop,
    /// The server transaction upstream; `None` for a CANCEL callmask originates (its
    /// responses are consumed here).
    pub(super) server: Option<TransactionKey>,
    pub(super) method: Method,
    pub(super) started: Instant,
    pub(super) register: Option<PendingRegister>,
    /// A provisional response arrived (a CANCEL may be sent).
    pub(super) provisional: bool,
    /// A 2xx arrived (INVITE): the entry lingers as `Accepted`.
    pub(super) answered: bool,
    /// Timer C (§16.6 step 11, §16.8) for INVITE; after a CANCEL, the 64·T1 limit.
    pub(super) timer_c: Option<Instant>,
    pub(super) cancel: CancelState,
    scheduled: Option<Instant>,
}

impl ClientEntry {
    #[allow(clippy::too_many_arguments)] // one constructor, every field is needed
    pub(super) fn new(
        req: SipMessage,
        down: Hop,
        up: Hop,
        server: Option<TransactionKey>,
        register: Option<PendingRegister>,
        timers: Timers,
        timer_c: Option<Instant>,
        now: Instant,
    ) -> Self {
        let method = req.method().cloned().unwrap_or(Method::Options);
        let reliable = down.reliable();
        let txn = if method == Method::Invite {
            ClientTxn::Invite(ClientInvite::new(req, down.dest, reliable, timers, now))
        } else {
            ClientTxn::NonInvite(ClientNonInvite::new(req, down.dest, reliable, timers, now))
        };
        ClientEntry {
            txn,
            down,
            up,
            server,
            method,
            started: now,
            register,
            provisional: false,
            answered: false,
            timer_c,
            cancel: CancelState::No,
            scheduled: None,
        }
    }

    /// Whether the first final response is still to come.
    pub(super) fn awaiting_final(&self) -> bool {
        match &self.txn {
            ClientTxn::Invite(t) => matches!(
                t.state(),
                ClientInviteState::Calling | ClientInviteState::Proceeding
            ),
            ClientTxn::NonInvite(t) => matches!(
                t.state(),
                ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
            ),
            ClientTxn::Accepted(_) => false,
        }
    }

    /// The forwarded INVITE, while its transaction runs.
    pub(super) fn invite(&self) -> Option<&SipMessage> {
        match &self.txn {
            ClientTxn::Invite(t) => Some(t.request()),
            _ => None,
        }
    }

    /// A forwarded INVITE still awaiting its final response got `status`: note a provisional
    /// (a CANCEL may go; a non-100 restarts timer C at `timer_c`) or a 2xx. `true` if a
    /// CANCEL that waited for a provisional response can go now (§9.1).
    pub(super) fn note_progress(&mut self, status: StatusCode, timer_c: Instant) -> bool {
        if self.method != Method::Invite || !self.awaiting_final() {
            return false;
        }
        if status.is_provisional() {
            self.provisional = true;
            if status != StatusCode::TRYING && self.cancel != CancelState::Sent {
                self.timer_c = Some(timer_c);
            }
            return self.cancel == CancelState::Pending;
        }
        if status.is_success() {
            self.answered = true;
        }
        false
    }

    /// Give a response to the machine.
    pub(super) fn handle_response(&mut self, resp: SipMessage, now: Instant) {
        match &mut self.txn {
            ClientTxn::Invite(t) => t.handle_response(resp, now),
            ClientTxn::NonInvite(t) => t.handle_response(resp, now),
            ClientTxn::Accepted(_) => {}
        }
    }

    /// Move the machine's transmits out (toward the next hop).
    pub(super) fn drain(&mut self, out: &mut VecDeque<Transmit>) {
        let down = self.down;
        let mut push = |x| down.push(out, x);
        match &mut self.txn {
            ClientTxn::Invite(t) => {
                while let Some(x) = t.poll_transmit() {
                    push(x);
                }
            }
            ClientTxn::NonInvite(t) => {
                while let Some(x) = t.poll_transmit() {
                    push(x);
                }
            }
            ClientTxn::Accepted(_) => {}
        }
    }

    pub(super) fn poll_event(&mut self) -> Option<TxnEvent> {
        match &mut self.txn {
            ClientTxn::Invite(t) => t.poll_event(),
            ClientTxn::NonInvite(t) => t.poll_event(),
            ClientTxn::Accepted(_) => None,
        }
    }

    /// The machine is over: turn into `Accepted` after a 2xx; `false` = drop the entry.
    pub(super) fn settle(&mut self, timers: &Timers, now: Instant) -> bool {
        let over = match &self.txn {
            ClientTxn::Invite(t) => t.is_terminated(),
            ClientTxn::NonInvite(t) => t.is_terminated(),
            ClientTxn::Accepted(until) => return *until > now,
        };
        if !over {
            return true;
        }
        if self.answered {
            self.txn = ClientTxn::Accepted(now + timers.t1x64());
            self.timer_c = None;
            return true;
        }
        false
    }

    /// The transport failed for this transaction (§17.1.4): the machine reports it.
    pub(super) fn transport_error(&mut self) {
        match &mut self.txn {
            ClientTxn::Invite(t) => t.handle_transport_error(),
            ClientTxn::NonInvite(t) => t.handle_transport_error(),
            ClientTxn::Accepted(_) => {}
        }
    }

    /// Stop the machine (timer C gave up on it).
    pub(super) fn abandon(&mut self, now: Instant) {
        self.txn = ClientTxn::Accepted(now);
        self.timer_c = None;
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        let txn = match &self.txn {
            ClientTxn::Invite(t) => t.poll_timeout(),
            ClientTxn::NonInvite(t) => t.poll_timeout(),
            ClientTxn::Accepted(until) => Some(*until),
        };
        [txn, self.timer_c].into_iter().flatten().min()
    }

    /// Fire the machine's timers if due (timer C is the proxy's to handle).
    pub(super) fn fire_machine(&mut self, now: Instant) {
        match &mut self.txn {
            ClientTxn::Invite(t) => {
                if t.poll_timeout().is_some_and(|d| d <= now) {
                    t.handle_timeout(now);
                }
            }
            ClientTxn::NonInvite(t) => {
                if t.poll_timeout().is_some_and(|d| d <= now) {
                    t.handle_timeout(now);
                }
            }
            ClientTxn::Accepted(_) => {}
        }
    }
}

/// One deadline in the timer queue. Ordered by time only, earliest first.
#[derive(Debug)]
pub(super) struct Due {
    pub(super) at: Instant,
    pub(super) client: bool,
    pub(super) key: TransactionKey,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse so the earliest deadline is on top.
        other.at.cmp(&self.at)
    }
}

/// Superseded entries the timer queue may hold beyond one per live transaction before it is
/// compacted. The queue is lazy (a changed deadline pushes a new entry, the old one is
/// skipped when it comes due), and an INVITE server transaction's first deadline is its
/// give-up time, 181 s + 3·64·T1 away: without compaction every call leaves entries queued
/// for that long, each holding its key (whose branch shares the buffer of the whole
/// datagram), so memory grew with the call rate × 277 s (issue 13 soak: +120 MB over 100,000
/// calls at 200 calls/s).
const QUEUE_SLACK: usize = 64;

/// Both transaction tables and their timer queue.
#[derive(Debug, Default)]
pub(super) struct Txns {
    pub(super) timers: Timers,
    pub(super) servers: std::collections::HashMap<TransactionKey, ServerEntry>,
    pub(super) clients: std::collections::HashMap<TransactionKey, ClientEntry>,
    queue: BinaryHeap<Due>,
}

impl Txns {
    pub(super) fn new(timers: Timers) -> Self {
        Txns {
            timers,
            ..Txns::default()
        }
    }

    /// Queue the server entry's deadline if it changed. Call after every mutation.
    pub(super) fn resched_server(&mut self, key: &TransactionKey) {
        if let Some(e) = self.servers.get_mut(key) {
            let d = e.deadline();
            if d != e.scheduled {
                e.scheduled = d;
                if let Some(at) = d {
                    self.push_due(Due {
                        at,
                        client: false,
                        key: key.clone(),
                    });
                }
            }
        }
    }

    /// Queue the client entry's deadline if it changed. Call after every mutation.
    pub(super) fn resched_client(&mut self, key: &TransactionKey) {
        if let Some(e) = self.clients.get_mut(key) {
            let d = e.deadline();
            if d != e.scheduled {
                e.scheduled = d;
                if let Some(at) = d {
                    self.push_due(Due {
                        at,
                        client: true,
                        key: key.clone(),
                    });
                }
            }
        }
    }

    /// Queue `due`; when superseded entries outnumber the live transactions (plus
    /// [`QUEUE_SLACK`]), drop every entry [`Self::pop_due`] would skip, so the queue stays
    /// proportional to the transactions (amortised O(1): a compaction leaves at most one entry
    /// per transaction, and the next needs as many pushes again).
    fn push_due(&mut self, due: Due) {
        self.queue.push(due);
        if self.queue.len() > 2 * self.len() + QUEUE_SLACK {
            let (servers, clients) = (&self.servers, &self.clients);
            self.queue.retain(|d| {
                let scheduled = if d.client {
                    clients.get(&d.key).map(|e| e.scheduled)
                } else {
                    servers.get(&d.key).map(|e| e.scheduled)
                };
                scheduled == Some(Some(d.at))
            });
        }
    }

    /// Entries in the timer queue, superseded ones included (tests).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Earliest queued deadline (possibly stale: waking for it is harmless).
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.queue.peek().map(|d| d.at)
    }

    /// The next entry due at `now` whose queued deadline is current (stale ones are
    /// skipped); its `scheduled` is cleared so that the caller's resched queues the next.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Due> {
        while self.queue.peek().is_some_and(|d| d.at <= now) {
            let due = self.queue.pop()?;
            let slot = if due.client {
                self.clients.get_mut(&due.key).map(|e| &mut e.scheduled)
            } else {
                self.servers.get_mut(&due.key).map(|e| &mut e.scheduled)
            };
            if let Some(s) = slot {
                if *s == Some(due.at) {
                    *s = None;
                    return Some(due);
                }
            }
        }
        None
    }

    /// Live transactions (both kinds, including lingering ones).
    pub(super) fn len(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    /// Transactions whose final response is still to come or to be sent.
    pub(super) fn awaiting_final(&self) -> usize {
        self.servers.values().filter(|e| e.awaiting_final()).count()
            + self.clients.values().filter(|e| e.awaiting_final()).count()
    }
}
