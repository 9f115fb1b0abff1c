//! Driving the transactions of [`super::txn`]: CANCEL (§16.10), what a client transaction
//! reports (responses go upstream, a timeout or transport failure becomes 408/503 upstream,
//! §16.7–§16.9), and the timers (A–M from the machines, timer C here).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::register::PendingRegister;
use super::txn::{CancelState, ClientEntry, Hop, ServerEntry};
use super::types::{CallOutcome, DropReason, ProxyEvent, Side};
use super::ProxyCore;
use crate::core::sip::txn::{build_cancel, TransactionKey, TxnEvent};
use crate::core::sip::{build_response, Method, SipMessage, StatusCode};

impl ProxyCore {
    /// A CANCEL (§16.10). If it matches an INVITE server transaction: 200 through the
    /// CANCEL's own server transaction, and the pending client transaction is cancelled (the
    /// 487 comes back through it). `false` if it matches nothing: the caller forwards it
    /// statelessly.
    pub(super) fn cancel(
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
        self.calls.cancelled(call_id);
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
    pub(super) fn send_cancel(&mut self, ck: &TransactionKey, now: Instant) {
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

    /// Send what client transaction `key` queued, act on its events (responses go upstream,
    /// a timeout becomes a 408), and drop or keep it.
    pub(super) fn after_client(
        &mut self,
        key: &TransactionKey,
        side: Side,
        src: SocketAddr,
        now: Instant,
    ) {
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
                    method: method.clone(),
                    elapsed: now.saturating_duration_since(started),
                });
                let s = StatusCode::REQUEST_TIMEOUT;
                (s, "Request Timeout", CallOutcome::TimedOut)
            }
            Failure::Transport => {
                self.events.push_back(ProxyEvent::Dropped {
                    side: down_side,
                    reason: DropReason::TransportError,
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
        if let Some(outcome) = self.calls.on_failure(&call_id, method, outcome) {
            self.end_call(&call_id, outcome, now);
        }
    }

    /// Timers of client transaction `key` are due.
    pub(super) fn fire_client(&mut self, key: &TransactionKey, now: Instant) {
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
    pub(super) fn fire_server(&mut self, key: &TransactionKey, now: Instant) {
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
}

/// Why a forwarded request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Timer B, F or C.
    Timeout,
    /// The transport could not send it.
    Transport,
}
