//! SDP anchoring: every SDP that crosses callmask is rewritten so its `c=`/`m=` point at
//! callmask's ports on the side it is sent to, and the sender's own address becomes the remote
//! of its side's leg. Ports are allocated here (a pair per side per active stream; an SDP with
//! more than `limits.streams_per_call` `m=` lines is refused first) and the
//! media layer is told what to relay ([`MediaCommand::Upsert`]).

use std::time::Instant;

use bytes::Bytes;
use config::types::UndecodableMode;

use super::calls::Stream;
use super::limits::LimitKind;
use super::types::{MediaCommand, ProxyEvent, Side};
use super::ProxyCore;
use crate::core::ports::PortPair;
use crate::core::sdes::{SdpRole, StreamSrtp};
use crate::core::sdp::{
    anchor, filter_codecs, undecodable_streams, CodecFilter, LocalAnchor, MediaPlan, Sdp,
};
use crate::core::side::BySide;
use crate::core::sip::{SipMessage, StatusCode};

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
        let Some(call) = self.calls.get_mut(call_id) else {
            return Ok(None);
        };
        let mut sdp = Sdp::parse(body).map_err(|_| StatusCode::NOT_ACCEPTABLE_HERE)?;
        // `media.codecs`: audio the recorder tap cannot decode never gets through (an offer
        // with none it can decode is refused: fail closed, never an unrecorded call).
        match filter_codecs(&mut sdp, &self.config.codecs) {
            Ok(CodecFilter::Unacceptable { .. }) => return Err(StatusCode::NOT_ACCEPTABLE_HERE),
            Ok(CodecFilter::Unchanged | CodecFilter::Removed(_)) => {}
            Err(_) => return Err(StatusCode::SERVER_INTERNAL_ERROR),
        }
        // Encrypted media callmask cannot decrypt (`media.undecodable`): refused (fail safe:
        // never relayed to a recorder that would hear ciphertext as audio), or relayed with
        // the stream marked so the media core mutes its recorder path.
        let encrypted = undecodable_streams(&sdp);
        if encrypted.iter().any(Option::is_some)
            && self.config.undecodable == UndecodableMode::Reject
        {
            return Err(StatusCode::NOT_ACCEPTABLE_HERE);
        }
        let plan = MediaPlan::from_sdp(&sdp);
        if plan.streams.len() > self.limits.streams_per_call {
            // `limits.streams_per_call`: refused before a single port is taken.
            self.events.push_back(ProxyEvent::LimitRefused {
                side: from,
                limit: LimitKind::StreamsPerCall,
            });
            return Err(StatusCode::NOT_ACCEPTABLE_HERE);
        }
        let to = from.other();
        while call.streams.len() < plan.streams.len() {
            call.streams.push(Stream {
                local: None,
                remote: BySide::default(),
                codecs: Vec::new(),
                encrypted: false,
                srtp: StreamSrtp::default(),
            });
        }
        // Ports (a pair per side) only for active streams that have none yet.
        for (p, s) in plan.streams.iter().zip(call.streams.iter_mut()) {
            if !p.is_active() || s.local.is_some() {
                continue;
            }
            let Some(a) = self.ports.alloc(now) else {
                return Err(StatusCode::SERVICE_UNAVAILABLE);
            };
            let Some(b) = self.ports.alloc(now) else {
                // Give the first pair back: it was never advertised.
                let _ = self.ports.free_now(a);
                return Err(StatusCode::SERVICE_UNAVAILABLE);
            };
            s.local = Some(BySide::new(a, b));
        }
        // SDES-SRTP per leg: learn the sender's key, write callmask's own toward `to`.
        // `None` role (a response): it answers the other side's outstanding offer, else it
        // is an offer itself (a 2xx to an INVITE without SDP).
        let role = role.unwrap_or(if call.pending_offer == Some(to) {
            SdpRole::Answer
        } else {
            SdpRole::Offer
        });
        for (i, (p, enc)) in plan.streams.iter().zip(&encrypted).enumerate() {
            if p.is_active() && enc.is_none() {
                if let Some(st) = call.streams.get_mut(i) {
                    st.srtp
                        .apply(&mut sdp, i, from, role, self.config.srtp, commit)?;
                }
            }
        }
        if role == SdpRole::Offer {
            call.pending_offer = Some(from);
        }
        let ports: Vec<Option<PortPair>> = plan
            .streams
            .iter()
            .zip(&call.streams)
            .map(|(p, s)| s.local.filter(|_| p.is_active()).map(|l| l[to]))
            .collect();
        let media_ip = self.config.side(to).media_ip;
        let anchored = anchor(
            sdp,
            &LocalAnchor {
                addr: media_ip,
                ports: &ports,
            },
            &mut call.origin[to],
        )
        .map_err(|_| StatusCode::SERVER_INTERNAL_ERROR)?;
        if !commit {
            return Ok(Some(anchored.body));
        }
        for ((s, p), enc) in call
            .streams
            .iter_mut()
            .zip(&anchored.plan.streams)
            .zip(&encrypted)
        {
            s.encrypted |= enc.is_some();
            s.remote[from] = if p.is_active() { p.remote } else { None };
            if !p.codecs.is_empty() {
                s.codecs = p.codecs.clone();
            }
        }
        let streams = call.stream_specs();
        let id = call.id;
        self.events
            .push_back(ProxyEvent::Media(MediaCommand::Upsert {
                call: id,
                streams,
            }));
        Ok(Some(anchored.body))
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
