//! A UA's table of §17 transactions: owns them, matches messages to them (§17.1.3,
//! §17.2.3) and merges their output. Test support only: the simulated UAs of
//! `core/sim_tests.rs` and the machines' own tests drive it. The proxy has its own table with
//! the hop of each transaction and one timer queue (`core/proxy/txn.rs`); keeping a second
//! production table would be two places to fix every matching rule.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use super::{
    ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite, Timers, TransactionKey, Transmit,
    TxnError, TxnEvent,
};
use crate::core::sip::{Method, SipError, SipMessage};

/// One transaction of any kind.
#[derive(Debug)]
pub enum Transaction {
    /// INVITE client.
    ClientInvite(ClientInvite),
    /// Non-INVITE client.
    ClientNonInvite(ClientNonInvite),
    /// INVITE server.
    ServerInvite(ServerInvite),
    /// Non-INVITE server.
    ServerNonInvite(ServerNonInvite),
}

macro_rules! each {
    ($self:expr, $t:ident => $e:expr) => {
        match $self {
            Transaction::ClientInvite($t) => $e,
            Transaction::ClientNonInvite($t) => $e,
            Transaction::ServerInvite($t) => $e,
            Transaction::ServerNonInvite($t) => $e,
        }
    };
}

impl Transaction {
    /// Next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        each!(self, t => t.poll_timeout())
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        each!(self, t => t.handle_timeout(now))
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        each!(self, t => t.poll_transmit())
    }

    /// Next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxnEvent> {
        each!(self, t => t.poll_event())
    }

    /// The transport failed to send for this transaction.
    pub fn handle_transport_error(&mut self) {
        each!(self, t => t.handle_transport_error())
    }

    /// Whether the transaction reached `Terminated` (it can be dropped once drained).
    pub fn is_terminated(&self) -> bool {
        each!(self, t => t.is_terminated())
    }
}

/// What [`TransactionTable::handle_request`] did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestMatch {
    /// A retransmission or an ACK for a non-2xx, absorbed by the server transaction `key`
    /// (any response retransmission is queued).
    Absorbed(TransactionKey),
    /// A new request: the TU decides, typically [`TransactionTable::start_server`]. An ACK
    /// lands here when it acknowledges a 2xx (a proxy forwards it end to end).
    New(TransactionKey),
}

/// What [`TransactionTable::handle_response`] did with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseMatch {
    /// Given to client transaction `key`; events (if any) come from `poll_event`.
    Matched(TransactionKey),
    /// No client transaction: a proxy forwards it statelessly (§16.7: e.g. 2xx retransmissions).
    Stray(SipMessage),
}

/// All transactions of one owner, keyed per §17.1.3 / §17.2.3. One owner drives it; it is not
/// shared between threads. Terminated transactions are removed once their output is drained
/// (after `handle_*`), so a key may be reused afterwards.
#[derive(Debug, Default)]
pub struct TransactionTable {
    timers: Timers,
    txns: HashMap<TransactionKey, Transaction>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<(TransactionKey, TxnEvent)>,
}

impl TransactionTable {
    /// An empty table using `timers`.
    pub fn new(timers: Timers) -> Self {
        Self {
            timers,
            ..Self::default()
        }
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    /// Whether there are no live transactions.
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Look at a transaction.
    pub fn get(&self, key: &TransactionKey) -> Option<&Transaction> {
        self.txns.get(key)
    }

    /// Send `req` through a new client transaction toward `dest` (INVITE → [`ClientInvite`],
    /// anything but ACK → [`ClientNonInvite`]). ACK is never a transaction: send it directly.
    pub fn start_client(
        &mut self,
        req: SipMessage,
        dest: SocketAddr,
        reliable: bool,
        now: Instant,
    ) -> Result<TransactionKey, TxnError> {
        let key = TransactionKey::for_request(&req)?;
        if self.txns.contains_key(&key) {
            return Err(TxnError::Exists);
        }
        let txn = match req.method() {
            Some(Method::Invite) => {
                Transaction::ClientInvite(ClientInvite::new(req, dest, reliable, self.timers, now))
            }
            Some(Method::Ack) | None => {
                return Err(TxnError::Key(SipError::BadEdit("ACK has no transaction")))
            }
            Some(_) => Transaction::ClientNonInvite(ClientNonInvite::new(
                req,
                dest,
                reliable,
                self.timers,
                now,
            )),
        };
        self.insert_and_drain(key.clone(), txn);
        Ok(key)
    }

    /// Create the server transaction for a new request (see [`RequestMatch::New`]); responses
    /// go to `reply_to`. An INVITE server transaction sends 100 Trying at once when
    /// `send_trying` (a proxy does, §16.7 / §17.2.1).
    pub fn start_server(
        &mut self,
        req: &SipMessage,
        reply_to: SocketAddr,
        reliable: bool,
        send_trying: bool,
        now: Instant,
    ) -> Result<TransactionKey, TxnError> {
        let key = TransactionKey::for_request(req)?;
        if self.txns.contains_key(&key) {
            return Err(TxnError::Exists);
        }
        let txn = match req.method() {
            Some(Method::Invite) => Transaction::ServerInvite(ServerInvite::new(
                req,
                reply_to,
                reliable,
                self.timers,
                send_trying,
                now,
            )),
            Some(Method::Ack) | None => {
                return Err(TxnError::Key(SipError::BadEdit("ACK has no transaction")))
            }
            Some(_) => {
                Transaction::ServerNonInvite(ServerNonInvite::new(reply_to, reliable, self.timers))
            }
        };
        self.insert_and_drain(key.clone(), txn);
        Ok(key)
    }

    /// Match an incoming request to a server transaction (§17.2.3).
    pub fn handle_request(
        &mut self,
        req: &SipMessage,
        now: Instant,
    ) -> Result<RequestMatch, TxnError> {
        let key = TransactionKey::for_request(req)?;
        let is_ack = req.method() == Some(&Method::Ack);
        let absorbed = match self.txns.get_mut(&key) {
            Some(Transaction::ServerInvite(t)) => {
                if is_ack {
                    t.handle_ack(now)
                } else {
                    t.handle_retransmission();
                    true
                }
            }
            Some(Transaction::ServerNonInvite(t)) if !is_ack => {
                t.handle_retransmission();
                true
            }
            _ => false,
        };
        if absorbed {
            self.drain(&key);
            Ok(RequestMatch::Absorbed(key))
        } else {
            Ok(RequestMatch::New(key))
        }
    }

    /// For a CANCEL, the key of the INVITE server transaction it cancels, if that exists
    /// (§9.2, §16.10). The CANCEL itself still gets its own server transaction.
    pub fn cancel_target(&self, cancel: &SipMessage) -> Option<TransactionKey> {
        let target = TransactionKey::for_request(cancel).ok()?.cancel_target()?;
        matches!(self.txns.get(&target), Some(Transaction::ServerInvite(_))).then_some(target)
    }

    /// Match an incoming response to a client transaction (§17.1.3).
    pub fn handle_response(
        &mut self,
        resp: SipMessage,
        now: Instant,
    ) -> Result<ResponseMatch, TxnError> {
        let key = TransactionKey::for_response(&resp)?;
        match self.txns.get_mut(&key) {
            Some(Transaction::ClientInvite(t)) => t.handle_response(resp, now),
            Some(Transaction::ClientNonInvite(t)) => t.handle_response(resp, now),
            _ => return Ok(ResponseMatch::Stray(resp)),
        }
        self.drain(&key);
        Ok(ResponseMatch::Matched(key))
    }

    /// The TU answers through server transaction `key`.
    pub fn send_response(
        &mut self,
        key: &TransactionKey,
        resp: SipMessage,
        now: Instant,
    ) -> Result<(), TxnError> {
        match self.txns.get_mut(key) {
            Some(Transaction::ServerInvite(t)) => t.send_response(resp, now)?,
            Some(Transaction::ServerNonInvite(t)) => t.send_response(resp, now)?,
            _ => return Err(TxnError::NoSuchTransaction),
        }
        self.drain(key);
        Ok(())
    }

    /// The transport failed to send for `key`.
    pub fn handle_transport_error(&mut self, key: &TransactionKey) {
        if let Some(t) = self.txns.get_mut(key) {
            t.handle_transport_error();
            self.drain(key);
        }
    }

    /// Earliest deadline over all transactions. O(n): fine for one shard's transactions;
    /// a timer wheel can replace it without changing the API.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.txns
            .values()
            .filter_map(Transaction::poll_timeout)
            .min()
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<TransactionKey> = self
            .txns
            .iter()
            .filter(|(_, t)| t.poll_timeout().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(t) = self.txns.get_mut(&key) {
                t.handle_timeout(now);
            }
            self.drain(&key);
        }
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the TU, with the transaction it concerns.
    pub fn poll_event(&mut self) -> Option<(TransactionKey, TxnEvent)> {
        self.events.pop_front()
    }

    fn insert_and_drain(&mut self, key: TransactionKey, txn: Transaction) {
        self.txns.insert(key.clone(), txn);
        self.drain(&key);
    }

    /// Move a transaction's output into the table queues; drop it once terminated.
    fn drain(&mut self, key: &TransactionKey) {
        let Some(t) = self.txns.get_mut(key) else {
            return;
        };
        while let Some(x) = t.poll_transmit() {
            self.transmits.push_back(x);
        }
        while let Some(e) = t.poll_event() {
            self.events.push_back((key.clone(), e));
        }
        if t.is_terminated() {
            self.txns.remove(key);
        }
    }
}
