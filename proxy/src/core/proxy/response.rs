//! The response path (RFC 3261 §16.7), as named steps: check the Via is callmask's → match
//! the client transaction (or go statelessly by Via) → remove callmask's Via, anchor the SDP →
//! send upstream through the server transaction → move the call on.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::anchoring::has_sdp;
use super::calls::{CallChange, ResponseSeen};
use super::register::PendingRegister;
use super::routing::{is_own_branch, upstream_by_via};
use super::txn::{ClientTxn, Hop, ServerEntry};
use super::types::{CallOutcome, DropReason, MediaCommand, ProxyEvent, Side};
use super::{ProxyCore, TIMER_C};
use crate::core::sip::txn::TransactionKey;
use crate::core::sip::{Edit, Method, SipMessage, StatusCode, Via};

impl ProxyCore {
    pub(super) fn handle_response(
        &mut self,
        side: Side,
        src: SocketAddr,
        msg: SipMessage,
        now: Instant,
    ) {
        if msg.status().is_none() {
            return;
        }
        let Ok(vias) = msg.vias() else {
            self.events.push_back(ProxyEvent::Dropped {
                side,
                reason: DropReason::BadVia,
            });
            return;
        };
        let own = vias.first().is_some_and(is_own_branch);
        let (Ok(cseq), Ok(key)) = (msg.cseq(), TransactionKey::for_response(&msg)) else {
            return;
        };
        let known = self.txns.clients.contains_key(&key);
        let next = vias.get(1);
        if !own || (!known && next.is_none()) {
            self.events.push_back(ProxyEvent::Dropped {
                side,
                reason: DropReason::NotOurVia,
            });
            return;
        }
        if known {
            self.response_in_txn(side, src, msg, &cseq.method, &key, now);
        } else {
            self.response_stateless(side, src, msg, &cseq.method, next, now);
        }
    }

    /// A response with no transaction (§16.7): e.g. a 2xx long after its INVITE. Statelessly,
    /// by Via.
    fn response_stateless(
        &mut self,
        side: Side,
        src: SocketAddr,
        msg: SipMessage,
        method: &Method,
        next: Option<&Via>,
        now: Instant,
    ) {
        let Some(status) = msg.status() else {
            return;
        };
        self.events.push_back(ProxyEvent::ResponseIn {
            side,
            status,
            method: method.clone(),
            elapsed: None,
        });
        let Some(mut up) = next.and_then(|v| upstream_by_via(side, v)) else {
            self.events.push_back(ProxyEvent::Dropped {
                side,
                reason: DropReason::UnroutableVia,
            });
            return;
        };
        // Whatever the Via says, a TLS side is reached over TLS only (issue 14).
        up.transport = self.leaving(up.side, up.transport);
        self.forward_response(side, src, msg, None, up, None, now);
    }

    /// A response to client transaction `key`: the transaction takes it (and its events
    /// decide what goes upstream, [`ProxyCore::after_client`]).
    fn response_in_txn(
        &mut self,
        side: Side,
        src: SocketAddr,
        msg: SipMessage,
        method: &Method,
        key: &TransactionKey,
        now: Instant,
    ) {
        let (Some(status), Some(entry)) = (msg.status(), self.txns.clients.get_mut(key)) else {
            return;
        };
        let elapsed = (status.is_final() && entry.awaiting_final())
            .then(|| now.saturating_duration_since(entry.started));
        self.events.push_back(ProxyEvent::ResponseIn {
            side,
            status,
            method: method.clone(),
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
        let cancel_now = entry.note_progress(status, now + TIMER_C);
        entry.handle_response(msg, now);
        self.after_client(key, side, src, now);
        if cancel_now {
            self.send_cancel(key, now);
        }
    }

    /// Send a response upstream (to `up`, through server transaction `server` while it can
    /// take it), with callmask's Via removed and its SDP anchored; then move the call on.
    #[allow(clippy::too_many_arguments)] // the response, where it came from and where it goes
    pub(super) fn forward_response(
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
        let mut phone_contacts = None;
        if let (Some(reg), true) = (register, status.is_final()) {
            phone_contacts = self.register_answered(reg, &msg, status, now);
        }
        if status == StatusCode::TRYING {
            // §16.7 step 3: a 100 is never forwarded (callmask sent its own).
            return;
        }
        let (tag, other_fork) = self.calls.fork_of(&call_id, &msg, side);
        // Only provisional and 2xx SDP moves media (a failure's SDP is ignored).
        let with_sdp = has_sdp(&msg) && (status.is_provisional() || status.is_success());
        let Some(mut edit) = self.response_vias(side, &msg, server) else {
            return;
        };
        if let Some(contacts) = phone_contacts {
            edit = edit.remove_header(b"Contact");
            for c in &contacts {
                edit = edit.add_header(b"Contact", c.as_bytes());
            }
        }
        if with_sdp {
            let Some(body) = self.anchor_response_body(side, &msg, &call_id, !other_fork, now)
            else {
                return;
            };
            edit = edit.set_body(body);
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
        self.send_upstream(fwd, server, up, now);
        let seen = ResponseSeen {
            method: cseq.method,
            status,
            side,
            src,
            tag,
            with_sdp,
            other_fork,
        };
        self.move_call(&call_id, seen, now);
    }

    /// The response with callmask's Via removed. If that was the only one, the next hop
    /// answered from a copy of it (e.g. a 487 built from our CANCEL): the request's own Vias
    /// come from its server transaction; `None` (dropped) without one.
    fn response_vias<'a>(
        &mut self,
        side: Side,
        msg: &'a SipMessage,
        server: Option<&TransactionKey>,
    ) -> Option<Edit<'a>> {
        let mut edit = msg.edit().remove_top_via();
        if msg.header_values("Via").len() >= 2 {
            return Some(edit);
        }
        let vias = server
            .and_then(|k| self.txns.servers.get(k))
            .map(|s| s.request.header_values("Via"))
            .unwrap_or_default();
        if vias.is_empty() {
            self.events.push_back(ProxyEvent::Dropped {
                side,
                reason: DropReason::NotOurVia,
            });
            return None;
        }
        for v in vias.iter().rev() {
            edit = edit.prepend_via(v);
        }
        Some(edit)
    }

    /// The anchored SDP of a response from `side`, or `None` (dropped) if it cannot be
    /// anchored: forwarding it unchanged would point media past the tap.
    fn anchor_response_body(
        &mut self,
        side: Side,
        msg: &SipMessage,
        call_id: &Bytes,
        commit: bool,
        now: Instant,
    ) -> Option<Bytes> {
        let reason = match self.anchor_body(call_id, side, msg.body(), now, commit, None) {
            Ok(Some(body)) => return Some(body),
            // SDP for a call callmask no longer anchors (e.g. a 200 retransmitted after the
            // call ended).
            Ok(None) => DropReason::SdpWithoutCall,
            // Cannot anchor the answer: drop it. An unanswered call ends here and now, so its
            // ports go back at once rather than after the early-call timeout (the caller's
            // INVITE still ends by timer C; the callee's 2xx retransmissions find no call).
            Err(_) => {
                let early = self.calls.get(call_id).is_some_and(|c| c.is_early());
                let invite = msg.cseq().is_ok_and(|c| c.method == Method::Invite);
                if early && invite {
                    self.end_call(call_id, CallOutcome::Failed, now);
                }
                DropReason::MediaAnchorFailed
            }
        };
        self.events.push_back(ProxyEvent::Dropped { side, reason });
        None
    }

    /// Send `fwd` to `up`: through the server transaction while it awaits a final response,
    /// else statelessly.
    fn send_upstream(
        &mut self,
        fwd: SipMessage,
        server: Option<&TransactionKey>,
        up: Hop,
        now: Instant,
    ) {
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
    }

    /// The call after a response went upstream: answered, or ended.
    fn move_call(&mut self, call_id: &Bytes, seen: ResponseSeen, now: Instant) {
        match self.calls.on_response(call_id, seen) {
            CallChange::None => {}
            CallChange::Answered(call, moved) => {
                if let Some(streams) = moved {
                    self.events
                        .push_back(ProxyEvent::Media(MediaCommand::Upsert { call, streams }));
                }
                self.events.push_back(ProxyEvent::CallAnswered { call });
            }
            CallChange::Ended(outcome) => self.end_call(call_id, outcome, now),
        }
    }
}
