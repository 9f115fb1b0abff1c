//! SRTP termination of one leg (RFC 3711, issue 14), sans-IO: the peer's packets are
//! authenticated and decrypted (replay windows of 64 for SRTP and SRTCP) before anything else
//! reads them, and what goes to the peer is encrypted with callmask's own key. The crypto is
//! webrtc-rs's `rtc-srtp` on `ring`; callmask only picks the profile and counts the drops.
//!
//! Keys come from the SDP core ([`SrtpLeg`]); they are never logged (redacted `Debug`) and
//! are zeroized when the leg is dropped (the `SdesKey`s here, `rtc-srtp`'s session keys).

use bytes::BytesMut;
use rtc_shared::error::Error as SrtpError;
use rtc_srtp::context::Context;
use rtc_srtp::crypto::providers::RingProvider;
use rtc_srtp::crypto::RTCCryptoProvider as _;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc_srtp::protection_profile::ProtectionProfile;

use crate::core::sdp::{SdesKey, SrtpLeg, SrtpSuite};
use crate::metrics::SrtpDrop;

/// Packets remembered per SSRC against replays (RFC 3711 §3.3.2 asks for at least 64).
const REPLAY_WINDOW: usize = 64;

static PROVIDER: RingProvider = RingProvider::new();

/// One leg's SRTP state: decrypt from the peer, encrypt toward it.
pub(crate) struct LegCrypto {
    keys: SrtpLeg,
    rx: Context,
    tx: Context,
}

impl std::fmt::Debug for LegCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegCrypto")
            .field("rx", &self.keys.rx.suite())
            .field("tx", &self.keys.tx.suite())
            .finish_non_exhaustive()
    }
}

impl LegCrypto {
    /// Contexts for `keys`; `None` if the crypto provider refuses them (never for keys the
    /// SDP core accepted: their lengths are the suite's).
    pub(crate) fn new(keys: &SrtpLeg) -> Option<Self> {
        let rx = context(&keys.rx, true)?;
        let tx = context(&keys.tx, false)?;
        Some(LegCrypto {
            keys: keys.clone(),
            rx,
            tx,
        })
    }

    /// Whether these are the contexts of `keys` (a re-INVITE may bring new ones).
    pub(crate) fn is_for(&self, keys: &SrtpLeg) -> bool {
        &self.keys == keys
    }

    /// Authenticates and decrypts one SRTP (or, `rtcp`, SRTCP) packet from the peer.
    pub(crate) fn unprotect(&mut self, data: &[u8], rtcp: bool) -> Result<BytesMut, SrtpDrop> {
        let r = if rtcp {
            self.rx.decrypt_rtcp(data)
        } else {
            self.rx.decrypt_rtp(data)
        };
        r.map_err(|e| match e {
            SrtpError::RtpFailedToVerifyAuthTag
            | SrtpError::RtcpFailedToVerifyAuthTag
            | SrtpError::ErrFailedToVerifyAuthTag => SrtpDrop::Auth,
            SrtpError::SrtpSsrcDuplicated(..) | SrtpError::SrtcpSsrcDuplicated(..) => {
                SrtpDrop::Replay
            }
            _ => SrtpDrop::Malformed,
        })
    }

    /// Encrypts one RTP (or, `rtcp`, RTCP) packet toward the peer.
    pub(crate) fn protect(&mut self, data: &[u8], rtcp: bool) -> Result<BytesMut, SrtpDrop> {
        let r = if rtcp {
            self.tx.encrypt_rtcp(data)
        } else {
            self.tx.encrypt_rtp(data)
        };
        r.map_err(|_| SrtpDrop::Malformed)
    }
}

/// Encryption only, for a stream callmask originates (the SIPREC sink's streams toward the
/// SRS): the key is callmask's own, offered in its `a=crypto`.
pub(crate) struct SendCrypto {
    tx: Context,
}

impl std::fmt::Debug for SendCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendCrypto").finish_non_exhaustive()
    }
}

impl SendCrypto {
    /// A context for `key`; `None` if the crypto provider refuses it.
    pub(crate) fn new(key: &SdesKey) -> Option<Self> {
        Some(SendCrypto {
            tx: context(key, false)?,
        })
    }

    /// Encrypts one RTP packet.
    pub(crate) fn protect(&mut self, rtp: &[u8]) -> Result<BytesMut, SrtpDrop> {
        self.tx.encrypt_rtp(rtp).map_err(|_| SrtpDrop::Malformed)
    }
}

fn context(key: &SdesKey, remote: bool) -> Option<Context> {
    let (srtp, srtcp) = if remote {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(
        key.key(),
        key.salt(),
        profile(key.suite()),
        srtp,
        srtcp,
        PROVIDER.crypto(),
    )
    .ok()
}

fn profile(s: SrtpSuite) -> ProtectionProfile {
    match s {
        SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        SrtpSuite::Aes256CmHmacSha1_80 => ProtectionProfile::Aes256CmHmacSha1_80,
        SrtpSuite::Aes256CmHmacSha1_32 => ProtectionProfile::Aes256CmHmacSha1_32,
        SrtpSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpSuite::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(suite: SrtpSuite, b: u8) -> SdesKey {
        SdesKey::generate(suite, |buf| {
            buf.iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = b.wrapping_add(i as u8));
            true
        })
        .expect("key")
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0x5a; 160]);
        p
    }

    /// Two ends of one leg: the peer encrypts with its key (callmask's rx), callmask
    /// decrypts; both suites of RFC 4568 §6.2 at least; a flipped tag bit and a replay are
    /// dropped with their reason; SRTCP round-trips.
    #[test]
    fn decrypts_and_drops_tampered_and_replayed_packets() {
        for suite in [
            SrtpSuite::AesCm128HmacSha1_80,
            SrtpSuite::AesCm128HmacSha1_32,
        ] {
            let (peer_key, our_key) = (key(suite, 1), key(suite, 99));
            let mut cm = LegCrypto::new(&SrtpLeg {
                rx: peer_key.clone(),
                tx: our_key.clone(),
            })
            .expect("contexts");
            // The peer's view: it sends with peer_key, receives with our_key.
            let mut peer = LegCrypto::new(&SrtpLeg {
                rx: our_key,
                tx: peer_key,
            })
            .expect("contexts");
            let plain = rtp(1);
            let wire = peer.protect(&plain, false).expect("encrypt");
            let tag = if suite == SrtpSuite::AesCm128HmacSha1_80 {
                10
            } else {
                4
            };
            assert_eq!(wire.len(), plain.len() + tag);
            assert_ne!(&wire[12..172], &plain[12..]);
            assert_eq!(
                &cm.unprotect(&wire, false).expect("decrypt")[..],
                &plain[..]
            );
            assert_eq!(cm.unprotect(&wire, false), Err(SrtpDrop::Replay));
            let mut bad = peer.protect(&rtp(2), false).expect("encrypt").to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 0x01;
            assert_eq!(cm.unprotect(&bad, false), Err(SrtpDrop::Auth));
            // callmask → peer.
            let back = cm.protect(&rtp(7), false).expect("encrypt");
            assert_eq!(
                &peer.unprotect(&back, false).expect("decrypt")[..],
                &rtp(7)[..]
            );
            // SRTCP (an RR with no blocks).
            let rr = [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78];
            let wire = peer.protect(&rr, true).expect("srtcp");
            assert_eq!(&cm.unprotect(&wire, true).expect("srtcp")[..], &rr[..]);
        }
    }
}
