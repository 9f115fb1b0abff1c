//! SDES-SRTP in the SDP that crosses callmask (RFC 4568, issue 14): each leg is keyed on its
//! own. A side's `a=crypto` is kept as the key to decrypt what it sends; the SDP sent toward a
//! side carries callmask's own key for that side (never the other side's), or no key at all
//! where that leg is plain (`pbx.srtp` / `agents.srtp`, [`SrtpMode`]).
//!
//! Offer from X toward Y: X's first supported `a=crypto` is X's key; toward Y the stream is
//! SRTP when Y's mode says so (`require`, or `mirror` and X offered SRTP), with callmask's key
//! for Y under tag 1. Answer from Y toward X: Y's key is kept; toward X the answer is SRTP iff
//! X offered it, with callmask's key for X under X's tag and suite. A leg is encrypted on the
//! media path once both its keys are known ([`StreamSrtp::leg`]).
//!
//! Shared by the SIP core (`core::proxy`, modes from `pbx.srtp` / `agents.srtp`) and the NG
//! media-node core (`core::ng`, modes from the controller's `transport-protocol` / `SDES`).

use config::types::SrtpMode;

use crate::core::sdp::{first_supported, RewriteError, Scope, SdesKey, Sdp, SrtpLeg, SrtpSuite};
use crate::core::side::{BySide, Side};
use crate::core::sip::StatusCode;

/// Whether an SDP offers or answers (RFC 3264).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SdpRole {
    /// A new offer.
    Offer,
    /// The answer to the other side's offer.
    Answer,
}

/// A side's own key, as it signalled it.
#[derive(Clone, Debug)]
struct PeerCrypto {
    tag: u32,
    key: SdesKey,
    /// The `m=` proto it used (`RTP/SAVP`, or `RTP/AVP` for best-effort SRTP): an answer
    /// toward it must use the same.
    proto: String,
}

/// One stream's SDES state.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamSrtp {
    /// The key each side encrypts with (from its latest SDP), if it speaks SRTP.
    peer: BySide<Option<PeerCrypto>>,
    /// callmask's key toward each side (kept across re-INVITEs).
    ours: BySide<Option<SdesKey>>,
    /// The latest offer toward this side asked it for SRTP.
    offered: BySide<bool>,
}

impl StreamSrtp {
    /// The media path's keys for `side`'s leg, once both are known.
    pub(crate) fn leg(&self, side: Side) -> Option<SrtpLeg> {
        let peer = self.peer[side].as_ref()?;
        let ours = self.ours[side].as_ref()?;
        Some(SrtpLeg {
            rx: peer.key.clone(),
            tx: ours.clone(),
        })
    }

    /// Rewrites m-line `i` of `sdp` (from `from`, as `role`) for the leg it goes to, and
    /// learns `from`'s key (when `commit`). `Err(488)`: the SDP breaks `modes`.
    pub(crate) fn apply(
        &mut self,
        sdp: &mut Sdp,
        i: usize,
        from: Side,
        role: SdpRole,
        modes: BySide<SrtpMode>,
        commit: bool,
    ) -> Result<(), StatusCode> {
        let to = from.other();
        let (offered, proto) = {
            let m = &sdp.media()[i];
            (
                first_supported(m.cryptos()),
                m.media_line().proto.to_owned(),
            )
        };
        let from_srtp = offered.is_some();
        if commit || role == SdpRole::Offer {
            self.peer[from] = offered.map(|(tag, key)| PeerCrypto {
                tag,
                key,
                proto: proto.clone(),
            });
        }
        let toward = match role {
            SdpRole::Offer => {
                if !from_srtp && modes[from] == SrtpMode::Require {
                    return Err(StatusCode::NOT_ACCEPTABLE_HERE);
                }
                let want = match modes[to] {
                    SrtpMode::Require => true,
                    SrtpMode::Optional => false,
                    SrtpMode::Mirror => from_srtp,
                };
                self.offered[to] = want;
                want.then(|| {
                    let suite = self.peer[from]
                        .as_ref()
                        .map_or(SrtpSuite::AesCm128HmacSha1_80, |p| p.key.suite());
                    let proto = if from_srtp {
                        proto.clone()
                    } else {
                        secure(&proto)
                    };
                    (1, suite, proto)
                })
            }
            SdpRole::Answer => {
                if !from_srtp && self.offered[from] && modes[from] == SrtpMode::Require {
                    // The answerer declined SRTP on a leg that requires it.
                    return Err(StatusCode::NOT_ACCEPTABLE_HERE);
                }
                self.peer[to]
                    .as_ref()
                    .map(|p| (p.tag, p.key.suite(), p.proto.clone()))
            }
        };
        let internal = |_: RewriteError| StatusCode::SERVER_INTERNAL_ERROR;
        sdp.remove_attribute(Scope::Media(i), "crypto")
            .map_err(internal)?;
        match toward {
            Some((tag, suite, proto)) => {
                let ours = match self.ours[to].take() {
                    Some(k) if k.suite() == suite => k,
                    _ => SdesKey::generate(suite, fill_random)
                        .map_err(|_| StatusCode::SERVER_INTERNAL_ERROR)?,
                };
                sdp.set_media_proto(i, &proto).map_err(internal)?;
                let value = ours.crypto_value(tag);
                sdp.add_attribute(Scope::Media(i), "crypto", Some(&value))
                    .map_err(internal)?;
                self.ours[to] = Some(ours);
            }
            None => sdp.set_media_proto(i, &plain(&proto)).map_err(internal)?,
        }
        Ok(())
    }
}

/// OS-backed randomness for new keys.
pub(crate) fn fill_random(buf: &mut [u8]) -> bool {
    use rtc_srtp::crypto::RTCRandom as _;
    rtc_srtp::crypto::providers::RingRandom.fill(buf).is_ok()
}

/// The SRTP profile of a plain one (`RTP/AVP` → `RTP/SAVP`, `RTP/AVPF` → `RTP/SAVPF`).
fn secure(proto: &str) -> String {
    match proto.to_ascii_uppercase().as_str() {
        "RTP/AVP" => "RTP/SAVP".to_owned(),
        "RTP/AVPF" => "RTP/SAVPF".to_owned(),
        _ => proto.to_owned(),
    }
}

/// The plain profile of an SRTP one (`RTP/SAVP` → `RTP/AVP`, `RTP/SAVPF` → `RTP/AVPF`).
fn plain(proto: &str) -> String {
    match proto.to_ascii_uppercase().as_str() {
        "RTP/SAVP" => "RTP/AVP".to_owned(),
        "RTP/SAVPF" => "RTP/AVPF".to_owned(),
        _ => proto.to_owned(),
    }
}
