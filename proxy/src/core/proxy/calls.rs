//! The call table: every call callmask anchors, keyed by SIP Call-ID, with its dialog/fork
//! state, its deadline (one heap over all calls, lazy deletion), an index by [`CallRef`] for
//! the media layer's timeouts, and the Call-IDs of recently ended calls (a late INVITE copy
//! must not start a call again).
//!
//! The state machine is methods on [`Calls`] that return what changed; the core turns that
//! into events and port releases ([`ProxyCore::end_call`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::types::{CallOutcome, CallRef, MediaCommand, ProxyEvent, Side, StreamSpec};
use super::ProxyCore;
use crate::core::ports::PortPair;
use crate::core::sdes::StreamSrtp;
use crate::core::sdp::{Codec, OriginState};
use crate::core::side::BySide;
use crate::core::sip::{Method, SipMessage, StatusCode};

/// How long a finished call's Call-ID is remembered against late INVITE copies (64·T1).
const PATH_TTL: Duration = Duration::from_secs(32);
/// An INVITE that never gets a final response is given up after this long.
pub(super) const EARLY_CALL_TTL: Duration = Duration::from_secs(300);
/// A BYE that never gets a response ends the call after this long (64·T1).
const BYE_TTL: Duration = Duration::from_secs(32);
/// Superseded deadlines the queue may hold beyond one per live call before it is compacted:
/// every call queues its early-call deadline, 300 s away, and a BYE queues another, so
/// without compaction each call's Call-ID (sharing the buffer of its whole INVITE) stayed
/// queued for 300 s after the call (issue 13 soak).
const DEADLINE_SLACK: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallState {
    Early,
    Confirmed,
    Terminating,
}

/// One stream (`m=` line): callmask's ports and the peers' addresses, per side. A stream that
/// was never active (port 0, not RTP) holds no ports.
#[derive(Debug)]
pub(super) struct Stream {
    pub(super) local: Option<BySide<PortPair>>,
    pub(super) remote: BySide<Option<SocketAddr>>,
    pub(super) codecs: Vec<Codec>,
    /// Encrypted end to end (see [`StreamSpec::encrypted`]); sticky for the call's life, so
    /// a later plain SDP never un-mutes a stream whose keys callmask never held.
    pub(super) encrypted: bool,
    /// SDES-SRTP keys per leg (issue 14).
    pub(super) srtp: StreamSrtp,
}

#[derive(Debug)]
pub(super) struct Call {
    pub(super) id: CallRef,
    state: CallState,
    pub(super) streams: Vec<Stream>,
    /// `o=` version state of the SDP callmask sends toward each side.
    pub(super) origin: BySide<OriginState>,
    /// The side whose SDP offer is outstanding (an SDP from the other side answers it).
    pub(super) pending_offer: Option<Side>,
    /// When the call is given up if nothing moves it on (`None`: never, once confirmed).
    deadline: Option<Instant>,
    cancelled: bool,
    /// Where the agents' side of this call answers from (routing in registration mode).
    pub(super) agents_addr: Option<SocketAddr>,
    /// The side the initial INVITE came from.
    caller_side: Side,
    /// CSeq number of the initial INVITE (a retry after a final non-2xx has a higher one).
    invite_cseq: u32,
    /// Early dialogs with media (a forked INVITE: one per callee To tag), so that the dialog
    /// the 2xx confirms gets its media back even when its 2xx carries no SDP.
    early: Vec<EarlyDialog>,
    /// The callee tag of the dialog the first 2xx confirmed; other forks' 2xx, ACK and BYE
    /// pass through without moving the call's media or ending it.
    answered_tag: Option<Bytes>,
}

impl Call {
    /// Not yet answered (no 2xx confirmed a dialog).
    pub(super) fn is_early(&self) -> bool {
        self.state == CallState::Early
    }

    /// Whether a message with callee tag `tag` belongs to another fork than the answered
    /// dialog.
    fn is_other_fork(&self, tag: Option<&Bytes>) -> bool {
        matches!((&self.answered_tag, tag), (Some(a), Some(t)) if a != t)
    }

    /// A 2xx confirmed the dialog with callee tag `tag` (RFC 3261 §13.2.2.4 / §16.7
    /// forking): without an SDP of its own, its early answer's media comes back from `side`;
    /// other early dialogs are forgotten. `true` if the call's media moved.
    fn confirm(&mut self, side: Side, tag: Option<Bytes>, with_sdp: bool) -> bool {
        self.state = CallState::Confirmed;
        self.deadline = None;
        let early = std::mem::take(&mut self.early);
        let restore = (!with_sdp)
            .then(|| early.into_iter().find(|e| Some(&e.tag) == tag.as_ref()))
            .flatten();
        self.answered_tag = tag;
        let mut moved = false;
        if let Some(e) = restore {
            for (st, (remote, codecs)) in self.streams.iter_mut().zip(e.media) {
                if st.remote[side] != remote {
                    st.remote[side] = remote;
                    st.codecs = codecs;
                    moved = true;
                }
            }
        }
        moved
    }

    /// What the media layer is told about the call's streams.
    pub(super) fn stream_specs(&self) -> Vec<StreamSpec> {
        self.streams
            .iter()
            .enumerate()
            .filter_map(|(index, s)| Some((index, s, s.local?)))
            .map(|(index, s, local)| StreamSpec {
                index,
                pbx_local: local[Side::Pbx],
                agents_local: local[Side::Agents],
                pbx_remote: s.remote[Side::Pbx],
                agents_remote: s.remote[Side::Agents],
                codecs: s.codecs.clone(),
                encrypted: s.encrypted,
                srtp: BySide::new(s.srtp.leg(Side::Pbx), s.srtp.leg(Side::Agents)),
            })
            .collect()
    }

    /// An early dialog (callee tag `tag`) answered with SDP from `side`: remember its media.
    fn remember_early(&mut self, side: Side, tag: Bytes) {
        let media: Vec<_> = self
            .streams
            .iter()
            .map(|st| (st.remote[side], st.codecs.clone()))
            .collect();
        match self.early.iter_mut().find(|e| e.tag == tag) {
            Some(e) => e.media = media,
            None => self.early.push(EarlyDialog { tag, media }),
        }
    }
}

/// The media one early dialog answered with (the callee side's remotes and codecs).
#[derive(Debug)]
struct EarlyDialog {
    tag: Bytes,
    media: Vec<(Option<SocketAddr>, Vec<Codec>)>,
}

/// What a request did to its call ([`Calls::on_request`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct RequestSeen {
    pub(super) call: CallRef,
    /// It belongs to another fork than the answered dialog.
    pub(super) other_fork: bool,
}

/// A response forwarded upstream, as the call table needs it ([`Calls::on_response`]).
#[derive(Debug)]
pub(super) struct ResponseSeen {
    pub(super) method: Method,
    pub(super) status: StatusCode,
    pub(super) side: Side,
    pub(super) src: SocketAddr,
    /// Callee tag of the dialog it belongs to.
    pub(super) tag: Option<Bytes>,
    pub(super) with_sdp: bool,
    pub(super) other_fork: bool,
}

/// What a response did to its call.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum CallChange {
    /// Nothing the owner needs to hear about.
    None,
    /// The call was answered; `Some` streams if a fork's early media came back.
    Answered(CallRef, Option<Vec<StreamSpec>>),
    /// The call is over.
    Ended(CallOutcome),
}

/// A recently ended call, remembered so that a late copy of its INVITE is not taken for a
/// new call while a new attempt with the same Call-ID (RFC 3261 §22.2, §8.1.3.4) still is.
#[derive(Debug, Clone, Copy)]
struct Ended {
    /// When it is forgotten.
    until: Instant,
    /// CSeq number of the INVITE that started it.
    invite_cseq: u32,
    /// Whether a 2xx confirmed a dialog: then the Call-ID is spent.
    answered: bool,
}

/// Every call, with its deadline and the recently ended Call-IDs. See the module docs.
#[derive(Debug)]
pub(super) struct Calls {
    live: HashMap<Bytes, Call>,
    /// Call-ID by [`CallRef`] (the media layer names calls by ref).
    by_ref: HashMap<CallRef, Bytes>,
    /// Call-IDs of calls that ended recently: a late copy of their INVITE must not start a
    /// new call (kept for 64·T1, the INVITE transaction's lifetime).
    ended: HashMap<Bytes, Ended>,
    /// The same, in expiry order (O(1) expiry).
    ended_order: VecDeque<(Instant, Bytes)>,
    /// Call deadlines, earliest first; lazy (checked against the call when due), so the core
    /// never scans every call for its next wake-up.
    deadlines: BinaryHeap<Reverse<(Instant, Bytes)>>,
    next: u64,
}

impl Calls {
    pub(super) fn new() -> Self {
        Calls {
            live: HashMap::new(),
            by_ref: HashMap::new(),
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            next: 1,
        }
    }

    /// Calls currently known.
    pub(super) fn len(&self) -> usize {
        self.live.len()
    }

    pub(super) fn get(&self, call_id: &Bytes) -> Option<&Call> {
        self.live.get(call_id)
    }

    pub(super) fn get_mut(&mut self, call_id: &Bytes) -> Option<&mut Call> {
        self.live.get_mut(call_id)
    }

    /// The Call-ID of `call`, if it is live.
    pub(super) fn key_of(&self, call: CallRef) -> Option<Bytes> {
        self.by_ref.get(&call).cloned()
    }

    /// Whether an initial INVITE for `call_id` with CSeq number `cseq` is a late copy of a
    /// call that ended less than 64·T1 ago. A new INVITE transaction after that call's final
    /// non-2xx with a higher CSeq is a new attempt instead — the retry with credentials
    /// after 401/407 (§22.2), after 3xx, 420 or 422 (§8.1.3.4/5) — and the Call-ID is
    /// forgotten so it can start a call again.
    pub(super) fn is_stale_invite(&mut self, call_id: &Bytes, cseq: u32) -> bool {
        let Some(e) = self.ended.get(call_id) else {
            return false;
        };
        if e.answered || cseq <= e.invite_cseq {
            return true;
        }
        self.ended.remove(call_id);
        false
    }

    /// A new call for an initial INVITE from `caller_side`; `None` if `call_id` is live.
    pub(super) fn start(
        &mut self,
        call_id: &Bytes,
        caller_side: Side,
        invite_cseq: u32,
        now: Instant,
    ) -> Option<CallRef> {
        if self.live.contains_key(call_id) {
            return None;
        }
        let id = CallRef(self.next);
        self.next += 1;
        let deadline = now + EARLY_CALL_TTL;
        let call = Call {
            id,
            state: CallState::Early,
            streams: Vec::new(),
            origin: BySide::new(OriginState::new(), OriginState::new()),
            pending_offer: None,
            deadline: Some(deadline),
            cancelled: false,
            agents_addr: None,
            caller_side,
            invite_cseq,
            early: Vec::new(),
            answered_tag: None,
        };
        self.live.insert(call_id.clone(), call);
        self.by_ref.insert(id, call_id.clone());
        self.push_deadline(deadline, call_id);
        Some(id)
    }

    /// Queue a call deadline; when superseded entries outnumber the live calls (plus
    /// [`DEADLINE_SLACK`]), drop every entry [`Self::pop_due`] would skip (the call is gone or
    /// its deadline moved), so the queue stays proportional to the calls in progress.
    fn push_deadline(&mut self, at: Instant, call_id: &Bytes) {
        self.deadlines.push(Reverse((at, call_id.clone())));
        if self.deadlines.len() > 2 * self.live.len() + DEADLINE_SLACK {
            let live = &self.live;
            self.deadlines
                .retain(|Reverse((at, k))| live.get(k).is_some_and(|c| c.deadline == Some(*at)));
        }
    }

    /// Entries in the deadline queue, superseded ones included (tests).
    #[cfg(test)]
    pub(super) fn queued_deadlines(&self) -> usize {
        self.deadlines.len()
    }

    /// The callee tag of `msg` arriving from `side`, and whether it names another fork than
    /// the answered dialog (`(None, false)` without a call).
    pub(super) fn fork_of(
        &self,
        call_id: &Bytes,
        msg: &SipMessage,
        side: Side,
    ) -> (Option<Bytes>, bool) {
        let Some(call) = self.live.get(call_id) else {
            return (None, false);
        };
        let tag = callee_tag(msg, side, call.caller_side);
        let other = call.is_other_fork(tag.as_ref());
        (tag, other)
    }

    /// A request from `side` (`src`) for `call_id` is being forwarded: note where the agent
    /// is, and move the call on for BYE and CANCEL.
    pub(super) fn on_request(
        &mut self,
        call_id: &Bytes,
        msg: &SipMessage,
        method: &Method,
        side: Side,
        src: SocketAddr,
        now: Instant,
    ) -> Option<RequestSeen> {
        let call = self.live.get_mut(call_id)?;
        if side == Side::Agents {
            call.agents_addr = Some(src);
        }
        let other_fork = call.is_other_fork(callee_tag(msg, side, call.caller_side).as_ref());
        let seen = RequestSeen {
            call: call.id,
            other_fork,
        };
        match method {
            Method::Bye if other_fork => {}
            Method::Bye => {
                call.state = CallState::Terminating;
                let at = now + BYE_TTL;
                call.deadline = Some(at);
                self.push_deadline(at, call_id);
            }
            Method::Cancel => call.cancelled = true,
            _ => {}
        }
        Some(seen)
    }

    /// A CANCEL matched the call's pending INVITE.
    pub(super) fn cancelled(&mut self, call_id: &Bytes) {
        if let Some(call) = self.live.get_mut(call_id) {
            call.cancelled = true;
        }
    }

    /// A response `r` for `call_id` went upstream: the dialog moves on.
    pub(super) fn on_response(&mut self, call_id: &Bytes, r: ResponseSeen) -> CallChange {
        let Some(call) = self.live.get_mut(call_id) else {
            return CallChange::None;
        };
        if r.side == Side::Agents {
            call.agents_addr = Some(r.src);
        }
        let early = call.state == CallState::Early;
        let s = r.status;
        match r.method {
            Method::Invite if s.is_success() && early => {
                let moved = call.confirm(r.side, r.tag, r.with_sdp);
                CallChange::Answered(call.id, moved.then(|| call.stream_specs()))
            }
            Method::Invite if s.is_provisional() && r.with_sdp && early && r.tag.is_some() => {
                call.remember_early(r.side, r.tag.unwrap_or_default());
                CallChange::None
            }
            Method::Invite if s.is_final() && !s.is_success() && early => {
                if call.cancelled || s == StatusCode::REQUEST_TERMINATED {
                    CallChange::Ended(CallOutcome::Cancelled)
                } else {
                    CallChange::Ended(CallOutcome::Failed)
                }
            }
            Method::Bye if s.is_final() && !r.other_fork => {
                CallChange::Ended(CallOutcome::Completed)
            }
            _ => CallChange::None,
        }
    }

    /// A forwarded `method` got no final response: how the call ends, if it does.
    pub(super) fn on_failure(
        &self,
        call_id: &Bytes,
        method: &Method,
        outcome: CallOutcome,
    ) -> Option<CallOutcome> {
        let state = self.live.get(call_id)?.state;
        match method {
            Method::Invite if state == CallState::Early => Some(outcome),
            Method::Bye => Some(CallOutcome::Completed),
            _ => None,
        }
    }

    /// Earliest call deadline or ended-Call-ID expiry (possibly stale: waking is harmless).
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.deadlines.peek().map(|d| d.0 .0);
        let ended = self.ended_order.front().map(|e| e.0);
        [calls, ended].into_iter().flatten().min()
    }

    /// Forget ended Call-IDs older than 64·T1.
    pub(super) fn expire_ended(&mut self, now: Instant) {
        while self.ended_order.front().is_some_and(|e| e.0 <= now) {
            if let Some((at, k)) = self.ended_order.pop_front() {
                if self.ended.get(&k).map(|e| e.until) == Some(at) {
                    self.ended.remove(&k);
                }
            }
        }
    }

    /// The next call whose deadline passed at `now`, and how it ends.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(Bytes, CallOutcome)> {
        while self.deadlines.peek().is_some_and(|d| d.0 .0 <= now) {
            let Reverse((_, k)) = self.deadlines.pop()?;
            // Lazy deletion: the call may be gone or its deadline moved on.
            let Some(state) = self
                .live
                .get(&k)
                .filter(|c| c.deadline.is_some_and(|d| d <= now))
                .map(|c| c.state)
            else {
                continue;
            };
            let outcome = match state {
                CallState::Terminating => CallOutcome::Completed,
                _ => CallOutcome::TimedOut,
            };
            return Some((k, outcome));
        }
        None
    }

    /// Take the call out; its Call-ID is remembered as ended for 64·T1.
    fn remove(&mut self, call_id: &Bytes, now: Instant) -> Option<Call> {
        let call = self.live.remove(call_id)?;
        self.by_ref.remove(&call.id);
        let ended = Ended {
            until: now + PATH_TTL,
            invite_cseq: call.invite_cseq,
            answered: call.state != CallState::Early,
        };
        self.ended.insert(call_id.clone(), ended);
        self.ended_order
            .push_back((now + PATH_TTL, call_id.clone()));
        Some(call)
    }
}

impl ProxyCore {
    /// End a call: its ports go back to the pool, the media layer and the owner hear of it.
    pub(super) fn end_call(&mut self, call_id: &Bytes, outcome: CallOutcome, now: Instant) {
        let Some(call) = self.calls.remove(call_id, now) else {
            return;
        };
        // Quarantine guards a new call against late packets of this one; a call whose media
        // never flowed (no answer with SDP: rejected, cancelled, refused by callmask) has
        // nobody to send them, so its ports go straight back (a loop of rejected INVITEs
        // never empties the pool).
        let flowed = call
            .streams
            .iter()
            .any(|s| s.remote[Side::Pbx].is_some() && s.remote[Side::Agents].is_some());
        for pair in call
            .streams
            .iter()
            .filter_map(|s| s.local)
            .flat_map(|l| l.0)
        {
            // A pair freed twice would be a bug in this module; the pool refuses it.
            let _ = if flowed {
                self.ports.free(pair, now)
            } else {
                self.ports.free_now(pair)
            };
        }
        if call.streams.iter().any(|s| s.local.is_some()) {
            self.events
                .push_back(ProxyEvent::Media(MediaCommand::Remove { call: call.id }));
        }
        self.events.push_back(ProxyEvent::CallEnded {
            call: call.id,
            outcome,
        });
    }
}

/// The callee's dialog tag in `msg` arriving from `side` (a forked call's dialogs differ only
/// in it): the To tag of requests from the caller's side and of responses from the callee's
/// side, the From tag otherwise.
fn callee_tag(msg: &SipMessage, side: Side, caller_side: Side) -> Option<Bytes> {
    let in_to = msg.is_request() == (side == caller_side);
    let na = if in_to { msg.to() } else { msg.from() };
    na.ok()?.tag().cloned()
}
