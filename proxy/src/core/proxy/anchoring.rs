//! SDP anchoring: every SDP that crosses callmask is rewritten so its `c=`/`m=` point at
//! callmask's ports on the side it is sent to, and the sender's own address becomes the remote
//! of its side's leg. Ports are allocated here (a pair per side per active stream; an SDP with
//! more than `limits.streams_per_call` `m=` lines is refused first) and the
//! media layer is told what to relay ([`MediaCommand::Upsert`]).

use std::time::Instant;

use bytes::Bytes;
use config::types::{SrtpMode, UndecodableMode};

use super::calls::{Call, Stream};
use super::limits::LimitKind;
use super::types::{MediaCommand, ProxyEvent, Side};
use super::ProxyCore;
use crate::core::ports::{PortAllocator, PortPair};
use crate::core::sdes::{SdpRole, StreamSrtp};
use crate::core::sdp::{
    anchor, filter_codecs, undecodable_streams, CodecFilter, LocalAnchor, MediaPlan, Sdp,
    Undecodable,
};
use crate::core::side::BySide;
use crate::core::sip::{SipMessage, StatusCode};

/// An SDP admitted for anchoring: parsed, its codecs filtered, its streams read.
struct Admitted {
    sdp: Sdp,
    plan: MediaPlan,
    /// Per `m=` line: encrypted media callmask cannot decrypt.
    encrypted: Vec<Option<Undecodable>>,
}

impl ProxyCore {
    /// Anchor an SDP body that arrived from `from`: returns the body to send on, `None` if
    /// there is no call to anchor it for, or a SIP status to answer with on failure.
    ///
    /// With `commit` false (another fork's dialog) the body is still rewritten, so no SDP
    /// ever bypasses the tap, but the call's media does not move.
    pub(super) fn anchor_body(
        &mut self,
        call_id: &Bytes,
        from: Side,
        body: Bytes,
        now: Instant,
        commit: bool,
        role: Option<SdpRole>,
    ) -> Result<Option<Bytes>, StatusCode> {
        if self.calls.get(call_id).is_none() {
            return Ok(None);
        }
        let mut sdp = self.admit_sdp(from, body)?;
        let Some(call) = self.calls.get_mut(call_id) else {
            return Ok(None);
        };
        allocate_ports(&mut self.ports, call, &sdp.plan, now)?;
        let role = role.unwrap_or_else(|| sdp_role(call, from));
        apply_srtp(call, &mut sdp, from, role, self.config.srtp, commit)?;
        let to = from.other();
        let Admitted {
            sdp,
            plan,
            encrypted,
        } = sdp;
        let ports: Vec<Option<PortPair>> = plan
            .streams
            .iter()
            .zip(&call.streams)
            .map(|(p, s)| s.local.filter(|_| p.is_active()).map(|l| l[to]))
            .collect();
        let local = LocalAnchor {
            addr: self.config.side(to).media_ip,
            ports: &ports,
        };
        let anchored = anchor(sdp, &local, &mut call.origin[to])
            .map_err(|_| StatusCode::SERVER_INTERNAL_ERROR)?;
        if commit {
            let upsert = commit_media(call, from, &anchored.plan, &encrypted);
            self.events.push_back(ProxyEvent::Media(upsert));
        }
        Ok(Some(anchored.body))
    }

    /// Parse `body` and check it may cross: `media.codecs` (audio the recorder tap cannot
    /// decode never gets through; an offer with none it can decode is refused: fail closed,
    /// never an unrecorded call), `media.undecodable` (encrypted media callmask cannot decrypt
    /// is refused, or relayed with the stream marked so the media core mutes its recorder
    /// path), `limits.streams_per_call` (refused before a single port is taken).
    fn admit_sdp(&mut self, from: Side, body: Bytes) -> Result<Admitted, StatusCode> {
        let mut sdp = Sdp::parse(body).map_err(|_| StatusCode::NOT_ACCEPTABLE_HERE)?;
        match filter_codecs(&mut sdp, &self.config.codecs) {
            Ok(CodecFilter::Unacceptable { .. }) => return Err(StatusCode::NOT_ACCEPTABLE_HERE),
            Ok(CodecFilter::Unchanged | CodecFilter::Removed(_)) => {}
            Err(_) => return Err(StatusCode::SERVER_INTERNAL_ERROR),
        }
        let encrypted = undecodable_streams(&sdp);
        if encrypted.iter().any(Option::is_some)
            && self.config.undecodable == UndecodableMode::Reject
        {
            return Err(StatusCode::NOT_ACCEPTABLE_HERE);
        }
        let plan = MediaPlan::from_sdp(&sdp);
        if plan.streams.len() > self.limits.streams_per_call {
            self.events.push_back(ProxyEvent::LimitRefused {
                side: from,
                limit: LimitKind::StreamsPerCall,
            });
            return Err(StatusCode::NOT_ACCEPTABLE_HERE);
        }
        Ok(Admitted {
            sdp,
            plan,
            encrypted,
        })
    }
}

/// A stream entry per `m=` line, and ports (a pair per side) for the active streams that have
/// none yet; 503 when the pool is empty.
fn allocate_ports(
    ports: &mut PortAllocator,
    call: &mut Call,
    plan: &MediaPlan,
    now: Instant,
) -> Result<(), StatusCode> {
    while call.streams.len() < plan.streams.len() {
        call.streams.push(Stream {
            local: None,
            remote: BySide::default(),
            codecs: Vec::new(),
            encrypted: false,
            srtp: StreamSrtp::default(),
        });
    }
    for (p, s) in plan.streams.iter().zip(call.streams.iter_mut()) {
        if !p.is_active() || s.local.is_some() {
            continue;
        }
        let Some(a) = ports.alloc(now) else {
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        };
        let Some(b) = ports.alloc(now) else {
            // Give the first pair back: it was never advertised.
            let _ = ports.free_now(a);
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        };
        s.local = Some(BySide::new(a, b));
    }
    Ok(())
}

/// The role of an SDP from `from` that is not known to be one (a response's): it answers the
/// other side's outstanding offer, else it is an offer itself (a 2xx to an INVITE without
/// SDP).
fn sdp_role(call: &Call, from: Side) -> SdpRole {
    if call.pending_offer == Some(from.other()) {
        SdpRole::Answer
    } else {
        SdpRole::Offer
    }
}

/// SDES-SRTP per leg: learn the sender's key, write callmask's own toward the other side (for
/// the active streams callmask can decrypt); an offer is now outstanding from `from`.
fn apply_srtp(
    call: &mut Call,
    sdp: &mut Admitted,
    from: Side,
    role: SdpRole,
    modes: BySide<SrtpMode>,
    commit: bool,
) -> Result<(), StatusCode> {
    for (i, (p, enc)) in sdp.plan.streams.iter().zip(&sdp.encrypted).enumerate() {
        if p.is_active() && enc.is_none() {
            if let Some(st) = call.streams.get_mut(i) {
                st.srtp.apply(&mut sdp.sdp, i, from, role, modes, commit)?;
            }
        }
    }
    if role == SdpRole::Offer {
        call.pending_offer = Some(from);
    }
    Ok(())
}

/// The call's media moves to what `from` signalled (`plan`, as the anchor read it): each
/// stream's remote on that side, codecs, encrypted marks. Returns the media command.
fn commit_media(
    call: &mut Call,
    from: Side,
    plan: &MediaPlan,
    encrypted: &[Option<Undecodable>],
) -> MediaCommand {
    for ((s, p), enc) in call.streams.iter_mut().zip(&plan.streams).zip(encrypted) {
        s.encrypted |= enc.is_some();
        s.remote[from] = if p.is_active() { p.remote } else { None };
        if !p.codecs.is_empty() {
            s.codecs = p.codecs.clone();
        }
    }
    MediaCommand::Upsert {
        call: call.id,
        streams: call.stream_specs(),
    }
}

/// Whether `msg` carries an SDP body.
pub(super) fn has_sdp(msg: &SipMessage) -> bool {
    msg.content_type().is_some_and(|ct| {
        ct.as_ref()
            .get(..15)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"application/sdp"))
    }) && !msg.body().is_empty()
}
