//! The request path (RFC 3261 §16.3–§16.6), as named steps: identify the request → let a
//! server transaction absorb a retransmission → CANCEL → open the server transaction → loop
//! and Max-Forwards checks → route → move the call on → rewrite (Route, Max-Forwards,
//! Request-URI, Contact, Record-Route, SDP, Via) → forward through a client transaction.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::anchoring::has_sdp;
use super::register::PendingRegister;
use super::routing::NextHop;
use super::txn::{AckMatch, ClientEntry, Hop, ServerEntry};
use super::types::{CallOutcome, DropReason, Parties, ProxyEvent, Side, SipTransport};
use super::{ProxyCore, TIMER_C};
use crate::core::sdes::SdpRole;
use crate::core::sip::txn::TransactionKey;
use crate::core::sip::{
    build_response, MaxForwards, Method, RejectReason, SipMessage, StatusCode, Via,
};

/// A request on its way through the core: what the steps share.
#[derive(Debug)]
struct Incoming {
    side: Side,
    src: SocketAddr,
    msg: SipMessage,
    method: Method,
    call_id: Bytes,
    /// Its server transaction: every request but ACK (end to end) and a CANCEL that matched
    /// nothing (forwarded statelessly, §16.10); rejects go through it too.
    server: Option<TransactionKey>,
    now: Instant,
}

/// How the forwarded copy differs from the request received.
#[derive(Debug)]
struct Rewrite {
    /// callmask's downstream branch.
    branch: String,
    /// Max-Forwards, decremented.
    max_forwards: u8,
    /// The transport it leaves on (Via and the departure side's Record-Route say so).
    transport: SipTransport,
    /// A new Request-URI (a registered phone's Contact).
    request_uri: Option<Bytes>,
    /// The request creates a dialog: callmask record-routes it.
    new_dialog: bool,
    /// It belongs to another fork than the answered dialog: its SDP is rewritten but the
    /// call's media does not move.
    other_fork: bool,
}

impl ProxyCore {
    pub(super) fn handle_request(
        &mut self,
        side: Side,
        src: SocketAddr,
        msg: SipMessage,
        now: Instant,
    ) {
        let Some(method) = msg.method().cloned() else {
            return;
        };
        self.events.push_back(ProxyEvent::RequestIn {
            side,
            method: method.clone(),
        });
        let Some((top_via, call_id, key)) = self.request_ids(side, src, &msg, now) else {
            return;
        };
        if self.absorbed_by_server(side, &key, &method, now) {
            return;
        }
        if method == Method::Cancel && self.cancel(side, src, &msg, &key, &call_id, now) {
            return;
        }
        let to_tag = msg.to().ok().and_then(|t| t.tag().cloned());
        let initial_invite = method == Method::Invite && to_tag.is_none();
        let cseq = msg.cseq().map_or(0, |c| c.seq);
        if initial_invite && self.calls.is_stale_invite(&call_id, cseq) {
            // A late network copy of a finished call's INVITE: its transaction is over.
            self.events.push_back(ProxyEvent::Dropped {
                side,
                reason: DropReason::StaleInvite,
            });
            return;
        }
        let new_dialog = initial_invite
            || (to_tag.is_none() && matches!(method, Method::Subscribe | Method::Refer));
        let server = self.open_server(side, src, &msg, &method, key, now);
        let req = Incoming {
            side,
            src,
            msg,
            method,
            call_id,
            server,
            now,
        };
        let branch = self.branch_for(side, &top_via, &req.msg);
        let Some(max_forwards) = self.hop_checks(&req, &branch) else {
            return;
        };
        let Some(hop) = self.route_request(&req) else {
            return;
        };
        if !self.sips_secure(&req, hop.transport) {
            return;
        }
        let other_fork = self.track_call(&req, initial_invite);
        let rewrite = Rewrite {
            branch,
            max_forwards,
            transport: hop.transport,
            request_uri: hop.request_uri,
            new_dialog,
            other_fork,
        };
        if let Some((fwd, register)) = self.rewrite_request(&req, &rewrite) {
            self.forward_request(req, fwd, hop.dest, hop.transport, register);
        }
    }

    /// The top Via, Call-ID and transaction key of a request (CSeq must parse too); a request
    /// without them is answered 400.
    fn request_ids(
        &mut self,
        side: Side,
        src: SocketAddr,
        msg: &SipMessage,
        now: Instant,
    ) -> Option<(Via, Bytes, TransactionKey)> {
        let ids = match (msg.top_via(), msg.call_id(), msg.cseq()) {
            (Ok(via), Ok(call_id), Ok(_)) => TransactionKey::for_request(msg)
                .ok()
                .map(|key| (via, call_id, key)),
            _ => None,
        };
        if ids.is_none() {
            self.reject(side, src, msg, RejectReason::MissingHeader, None, now);
        }
        ids
    }

    /// §17.2.3: a retransmission, or the ACK of a non-2xx callmask sent, belongs to a server
    /// transaction and goes no further. `true` if it was absorbed (or dropped) there.
    fn absorbed_by_server(
        &mut self,
        side: Side,
        key: &TransactionKey,
        method: &Method,
        now: Instant,
    ) -> bool {
        if *method == Method::Ack {
            return match self.txns.servers.get_mut(key).map(|e| e.handle_ack(now)) {
                Some(AckMatch::Absorbed) => {
                    self.txns.resched_server(key);
                    true
                }
                Some(AckMatch::Drop) => true,
                Some(AckMatch::Forward) | None => false,
            };
        }
        let Some(e) = self.txns.servers.get_mut(key) else {
            return false;
        };
        e.handle_retransmission(&mut self.transmits);
        self.txns.resched_server(key);
        self.events.push_back(ProxyEvent::Retransmission {
            side,
            resent: false,
        });
        true
    }

    /// The server transaction for a request that gets one (not ACK or an unmatched CANCEL).
    fn open_server(
        &mut self,
        side: Side,
        src: SocketAddr,
        msg: &SipMessage,
        method: &Method,
        key: TransactionKey,
        now: Instant,
    ) -> Option<TransactionKey> {
        if matches!(method, Method::Ack | Method::Cancel) {
            return None;
        }
        let up = Hop {
            side,
            transport: self.arrival,
            dest: src,
        };
        let give_up = now + self.give_up_after(method);
        let entry = ServerEntry::new(msg.clone(), up, self.txns.timers, now, give_up);
        self.txns.servers.insert(key.clone(), entry);
        self.txns.resched_server(&key);
        Some(key)
    }

    /// Refuse the request `r` with `reason` (through its server transaction).
    fn refuse(&mut self, r: &Incoming, reason: RejectReason) {
        self.reject(r.side, r.src, &r.msg, reason, r.server.as_ref(), r.now);
    }

    /// Loop detection (RFC 3261 §16.3 step 4: our own branch for this request is already in
    /// the Via list) and Max-Forwards (§16.3 step 3 / §16.6 step 3). The Max-Forwards to
    /// send on, or `None` once refused.
    fn hop_checks(&mut self, r: &Incoming, branch: &str) -> Option<u8> {
        if let Ok(vias) = r.msg.vias() {
            if vias
                .iter()
                .any(|v| v.branch().is_some_and(|b| b.as_ref() == branch.as_bytes()))
            {
                self.refuse(r, RejectReason::LoopDetected);
                return None;
            }
        }
        match r.msg.max_forwards() {
            Ok(Some(MaxForwards(0))) => {
                self.refuse(r, RejectReason::TooManyHops);
                None
            }
            Ok(Some(MaxForwards(n))) => Some(n - 1),
            Ok(None) => Some(69),
            Err(_) => {
                self.refuse(r, RejectReason::BadHeaderValue);
                None
            }
        }
    }

    /// The next hop, or `None` once the request was answered 480 (toward agents) or 503.
    fn route_request(&mut self, r: &Incoming) -> Option<NextHop> {
        let out = r.side.other();
        let hop = self.next_hop(out, &r.msg, &r.call_id);
        if hop.is_none() {
            self.events.push_back(ProxyEvent::Dropped {
                side: r.side,
                reason: DropReason::NoRoute,
            });
            let (code, phrase) = if out == Side::Agents {
                (
                    StatusCode::TEMPORARILY_UNAVAILABLE,
                    "Temporarily Unavailable",
                )
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "No Route To Peer")
            };
            let server = r.server.as_ref();
            self.respond(r.side, r.src, &r.msg, code, phrase, server, r.now);
        }
        hop
    }

    /// RFC 3261 §26.2.2, RFC 5630 §5.3: a `sips:` request is carried over TLS on every hop.
    /// One that arrived without TLS, or would leave on a side without it, is refused `480
    /// Temporarily Unavailable` with `Warning: 380 … "SIPS Not Allowed"` (never downgraded);
    /// `false` once refused. ACK gets no answer (it is dropped).
    fn sips_secure(&mut self, r: &Incoming, leaving: SipTransport) -> bool {
        if !is_sips(&r.msg) || (self.arrival == SipTransport::Tls && leaving == SipTransport::Tls) {
            return true;
        }
        self.events.push_back(ProxyEvent::Dropped {
            side: r.side,
            reason: DropReason::NoRoute,
        });
        if r.method == Method::Ack {
            return false;
        }
        let status = StatusCode::TEMPORARILY_UNAVAILABLE;
        let warning = format!(
            "380 {} \"SIPS Not Allowed\"",
            self.config.side(r.side).sip_addr
        );
        let resp = build_response(&r.msg, status, "Temporarily Unavailable")
            .and_then(|m| m.edit().add_header(b"Warning", warning.as_bytes()).finish());
        if let Ok(resp) = resp {
            self.answer(r.server.as_ref(), r.side, r.src, resp, r.now);
        }
        false
    }

    /// Call bookkeeping before the body is touched: an initial INVITE starts a call, and the
    /// call moves on (BYE, CANCEL; an INFO key is reported). `true` if the request belongs to
    /// another fork than the answered dialog.
    fn track_call(&mut self, r: &Incoming, initial_invite: bool) -> bool {
        if initial_invite {
            let cseq = r.msg.cseq().map_or(0, |c| c.seq);
            if let Some(id) = self.calls.start(&r.call_id, r.side, cseq, r.now) {
                self.events.push_back(ProxyEvent::CallStarted {
                    call: id,
                    caller_side: r.side,
                    parties: parties(&r.msg, &r.call_id),
                });
            }
        }
        let seen = self
            .calls
            .on_request(&r.call_id, &r.msg, &r.method, r.side, r.src, r.now);
        let Some(seen) = seen else {
            return false;
        };
        if r.method == Method::Info && is_dtmf_info(&r.msg) {
            self.events.push_back(ProxyEvent::InfoDtmf {
                call: seen.call,
                side: r.side,
            });
        }
        seen.other_fork
    }

    /// The copy to forward, with the REGISTER binding it notes; `None` once the request was
    /// answered instead (no call for its SDP, anchoring failed, the edit failed).
    fn rewrite_request(
        &mut self,
        r: &Incoming,
        w: &Rewrite,
    ) -> Option<(SipMessage, Option<PendingRegister>)> {
        let out = r.side.other();
        let mut edit = r.msg.edit();
        // Pop the Route entries that name callmask (we record-route twice, RFC 5658).
        for _ in 0..self.own_routes(&r.msg) {
            edit = edit.pop_route();
        }
        edit = edit.set_max_forwards(MaxForwards(w.max_forwards));
        if let Some(uri) = &w.request_uri {
            edit = edit.set_request_uri(uri);
        }
        let mut register = None;
        if r.method == Method::Register && r.side == Side::Agents {
            let (e, pending) = self.register_edit(edit, &r.msg, r.src, r.now);
            edit = e;
            register = Some(pending);
        }
        if w.new_dialog {
            // Double Record-Route: the entry for the arrival side below the departure side's.
            let [inbound, outbound] = self.record_routes(r.side, out, w.transport, is_sips(&r.msg));
            edit = edit
                .prepend_record_route(inbound.as_bytes())
                .prepend_record_route(outbound.as_bytes());
        }
        if has_sdp(&r.msg) {
            edit = edit.set_body(self.anchor_request_body(r, w.other_fork)?);
        }
        edit = edit.prepend_via(self.own_via(out, w.transport, &w.branch).as_bytes());
        match edit.finish() {
            Ok(m) => Some((m, register)),
            Err(e) => {
                self.refuse(r, e.reason());
                None
            }
        }
    }

    /// The anchored SDP of request `r`, or `None` once it was answered 481 (no call: never
    /// let media bypass the tap) or with the anchoring failure's status.
    fn anchor_request_body(&mut self, r: &Incoming, other_fork: bool) -> Option<Bytes> {
        // An ACK's SDP answers a 2xx's offer (RFC 3264 late offer); other requests offer.
        let role = if r.method == Method::Ack {
            SdpRole::Answer
        } else {
            SdpRole::Offer
        };
        let anchored = self.anchor_body(
            &r.call_id,
            r.side,
            r.msg.body(),
            r.now,
            !other_fork,
            Some(role),
        );
        let (code, phrase) = match anchored {
            Ok(Some(body)) => return Some(body),
            // Media for a dialog callmask does not know (state lost, or a stray request).
            Ok(None) => (
                StatusCode::CALL_DOES_NOT_EXIST,
                "Call/Transaction Does Not Exist",
            ),
            Err(StatusCode::NOT_ACCEPTABLE_HERE) => {
                (StatusCode::NOT_ACCEPTABLE_HERE, "Not Acceptable Here")
            }
            Err(code) => (code, "Media Anchoring Failed"),
        };
        let server = r.server.as_ref();
        self.respond(r.side, r.src, &r.msg, code, phrase, server, r.now);
        if r.method == Method::Invite && r.msg.to().is_ok_and(|t| t.tag().is_none()) {
            // The call this INVITE started ends now (its ports go back at once).
            self.end_call(&r.call_id, CallOutcome::Failed, r.now);
        }
        None
    }

    /// Send `fwd` to `dest`: through a client transaction tied to the request's server
    /// transaction, or statelessly (ACK for a 2xx, a CANCEL that matched nothing, §16.10,
    /// §16.11; or two upstream transactions hashed onto one downstream branch, whose
    /// responses then find their way back by Via).
    fn forward_request(
        &mut self,
        r: Incoming,
        fwd: SipMessage,
        dest: SocketAddr,
        transport: SipTransport,
        register: Option<PendingRegister>,
    ) {
        let out = r.side.other();
        let Some(skey) = r.server.clone() else {
            self.send_on(out, transport, dest, fwd.as_bytes().clone());
            return;
        };
        let ckey = match TransactionKey::for_request(&fwd) {
            Ok(k) if !self.txns.clients.contains_key(&k) => k,
            _ => {
                self.txns.servers.remove(&skey);
                self.send_on(out, transport, dest, fwd.as_bytes().clone());
                return;
            }
        };
        if r.method == Method::Invite {
            // §16.7 / §17.2.1: a proxy answers 100 at once, so the caller stops retransmitting.
            if let Ok(trying) = build_response(&r.msg, StatusCode::TRYING, "Trying") {
                self.answer(Some(&skey), r.side, r.src, trying, r.now);
            }
        }
        let down = Hop {
            side: out,
            transport,
            dest,
        };
        let up = Hop {
            side: r.side,
            transport: self.arrival,
            dest: r.src,
        };
        let timer_c = (r.method == Method::Invite).then(|| r.now + TIMER_C);
        let timers = self.txns.timers;
        let server = Some(skey.clone());
        let mut entry = ClientEntry::new(fwd, down, up, server, register, timers, timer_c, r.now);
        entry.drain(&mut self.transmits);
        self.txns.clients.insert(ckey.clone(), entry);
        self.txns.resched_client(&ckey);
        if let Some(s) = self.txns.servers.get_mut(&skey) {
            s.client = Some(ckey);
        }
    }
}

/// The parties of a new call (PHI: the shell hashes them before logging).
fn parties(msg: &SipMessage, call_id: &Bytes) -> Parties {
    Parties {
        call_id: call_id.clone(),
        from: msg
            .from()
            .map(|f| f.uri().as_bytes().clone())
            .unwrap_or_default(),
        to: msg
            .to()
            .map(|t| t.uri().as_bytes().clone())
            .unwrap_or_default(),
    }
}

/// Whether `msg`'s Request-URI is a `sips:` URI.
fn is_sips(msg: &SipMessage) -> bool {
    msg.request_uri()
        .is_some_and(|u| u.scheme().eq_ignore_ascii_case(b"sips"))
}

/// Whether `msg` carries a DTMF key (`application/dtmf-relay` or `application/dtmf`).
fn is_dtmf_info(msg: &SipMessage) -> bool {
    msg.content_type().is_some_and(|ct| {
        let ct = ct.as_ref();
        let starts = |p: &[u8]| ct.get(..p.len()).is_some_and(|c| c.eq_ignore_ascii_case(p));
        starts(b"application/dtmf-relay") || starts(b"application/dtmf")
    })
}
