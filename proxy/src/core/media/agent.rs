//! The PBX→agents live clamp of one call (`masking.agent_dtmf` = `drop` / `flat-tone`).
//!
//! Audio toward the agents goes through a causal [`LiveClamp`] *before* it is forwarded: a
//! packet during which a tone may be sounding is sent as a copy whose G.711 payload is
//! silence (`drop`) or a flat 440 Hz tone (`flat-tone`), RTP header unchanged. RFC 4733
//! packets are not forwarded (`drop`), or (`flat-tone`) each is sent instead as a 20 ms
//! audio packet of the flat tone with the same sequence number, the last audio payload type
//! seen toward the agents and timestamp `event start + duration − 160` (repeated end reports
//! are dropped). Packets after a removed one get their sequence numbers lowered to close the
//! gap (a gap reads as loss to the agent's jitter buffer). Audio callmask cannot decode is
//! relayed as is. Every header change goes through [`RtpHeaderMut`].

use dsp::clamp::{ClampMode, LiveClamp};
use dsp::g711::Law;
use dsp::rfc4733::TelephoneEvent;

use super::codec::PayloadMap;
use crate::core::relay::{PayloadType, RtpHeaderMut, RtpPacket, SeqNo};

/// Samples (= bytes of G.711) of one converted RFC 4733 report (`flat-tone`).
const EVENT_FRAME: usize = 160;
/// Largest datagram the clamp rewrites (the shells receive into 2048-byte buffers).
const MAX_DATAGRAM: usize = 2048;

/// What to send toward the agents instead of the received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// The datagram as received.
    Original,
    /// The first `n` bytes of [`AgentClamp::rewritten`].
    Rewritten(usize),
    /// Nothing (the packet was removed).
    Nothing,
}

/// See the module docs.
pub(crate) struct AgentClamp {
    clamp: LiveClamp,
    /// Last G.711 payload type seen toward the agents (for converted events).
    audio: Option<(PayloadType, Law)>,
    /// Timestamp of the last converted event report (repeats are dropped).
    last_event_ts: Option<u32>,
    /// Rewritten packets are built here (allocated once per call).
    buf: Box<[u8]>,
    /// Packets removed toward the agents so far: later sequence numbers are lowered by this
    /// much, so the agent's jitter buffer sees a continuous stream, not loss to conceal.
    seq_shift: u16,
}

impl std::fmt::Debug for AgentClamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClamp")
            .field("clamp", &self.clamp)
            .field("seq_shift", &self.seq_shift)
            .finish_non_exhaustive()
    }
}

impl AgentClamp {
    pub(crate) fn new(mode: ClampMode) -> Self {
        AgentClamp {
            clamp: LiveClamp::new(mode),
            audio: None,
            last_event_ts: None,
            buf: vec![0u8; MAX_DATAGRAM + EVENT_FRAME].into_boxed_slice(),
            seq_shift: 0,
        }
    }

    /// The clamp's mode.
    pub(crate) fn mode(&self) -> ClampMode {
        self.clamp.mode()
    }

    /// The bytes of the last [`Rewrite::Rewritten`].
    pub(crate) fn rewritten(&self, n: usize) -> &[u8] {
        &self.buf[..n]
    }

    fn removed(&mut self) -> Rewrite {
        self.seq_shift = self.seq_shift.wrapping_add(1);
        Rewrite::Nothing
    }

    /// Copies `data` into the buffer with its sequence number lowered by the shift.
    fn copy_renumbered(&mut self, data: &[u8]) -> Option<usize> {
        let out = self.buf.get_mut(..data.len())?;
        out.copy_from_slice(data);
        let shifted =
            SeqNo::new(u16::from_be_bytes([data[2], data[3]]).wrapping_sub(self.seq_shift));
        RtpHeaderMut::new(out).ok()?.set_seq(shifted);
        Some(data.len())
    }

    fn renumbered(&mut self, data: &[u8]) -> Rewrite {
        if self.seq_shift == 0 {
            return Rewrite::Original;
        }
        self.copy_renumbered(data)
            .map_or(Rewrite::Nothing, Rewrite::Rewritten)
    }

    /// A packet toward the agents whose payload callmask does not touch.
    pub(crate) fn other(&mut self, packet: &RtpPacket<'_>) -> Rewrite {
        self.renumbered(packet.as_bytes())
    }

    /// A G.711 packet toward the agents; `pcm` is its payload, decoded.
    pub(crate) fn audio(&mut self, packet: &RtpPacket<'_>, law: Law, pcm: &[i16]) -> Rewrite {
        self.audio = Some((packet.payload_type(), law));
        if !self.clamp.inspect_pcm(pcm) {
            return self.renumbered(packet.as_bytes());
        }
        let data = packet.as_bytes();
        let Some(n) = self.copy_renumbered(data) else {
            return Rewrite::Nothing;
        };
        let (start, end) = (
            packet.header_len(),
            packet.header_len() + packet.payload().len(),
        );
        self.clamp.fill(&mut self.buf[start..end], law);
        Rewrite::Rewritten(n)
    }

    /// An RFC 4733 packet toward the agents.
    pub(crate) fn event(&mut self, packet: &RtpPacket<'_>, payloads: &PayloadMap) -> Rewrite {
        if self.clamp.mode() == ClampMode::Silence {
            return self.removed();
        }
        let Some((apt, law)) = self.audio.or_else(|| {
            payloads
                .first_audio()
                .and_then(|(pt, c)| c.law().map(|l| (pt, l)))
        }) else {
            // No audio payload type to speak in: the event cannot be converted.
            return self.removed();
        };
        let Ok(ev) = TelephoneEvent::parse(packet.payload()) else {
            return self.removed();
        };
        let ts = packet
            .timestamp()
            .wrapping_add(u32::from(ev.duration).saturating_sub(EVENT_FRAME as u32));
        if self.last_event_ts == Some(ts.get()) {
            return self.removed();
        }
        self.last_event_ts = Some(ts.get());
        let hl = packet.header_len();
        let Some(out) = self.buf.get_mut(..hl + EVENT_FRAME) else {
            return self.removed();
        };
        out[..hl].copy_from_slice(&packet.as_bytes()[..hl]);
        let seq = SeqNo::new(packet.seq().get().wrapping_sub(self.seq_shift));
        match RtpHeaderMut::new(out) {
            Ok(mut h) => {
                h.set_padding(false)
                    .set_marker(false)
                    .set_payload_type(apt)
                    .set_timestamp(ts)
                    .set_seq(seq);
            }
            Err(_) => return self.removed(),
        }
        self.clamp.fill(&mut out[hl..], law);
        Rewrite::Rewritten(hl + EVENT_FRAME)
    }
}
