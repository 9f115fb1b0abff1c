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

/// SSRCs whose packet index a leg remembers (a stream rarely has more than one or two).
const MAX_TRACKED_SSRCS: usize = 8;

/// One leg's SRTP state: decrypt from the peer, encrypt toward it.
pub(crate) struct LegCrypto {
    keys: SrtpLeg,
    rx: Context,
    tx: Context,
    /// Highest packet index (ROC · 2^16 + SEQ, RFC 3711 §3.3.1) authenticated per SSRC from
    /// the peer: a new key from the peer starts a new context, and the index must go on from
    /// here (rtc-srtp does not let a context start at a given rollover counter).
    rx_index: Vec<(u32, u64)>,
    /// After a peer's new key on a stream past its first 2^16 packets: a second context for
    /// that key whose rollover counter starts at 0. RFC 3711 keeps the ROC with the stream,
    /// but a peer that builds a new session for the new key (as libsrtp-based ones do)
    /// starts again at 0; whichever context authenticates the peer's first packet is kept.
    rx_restarted: Option<Context>,
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
            rx_index: Vec::new(),
            rx_restarted: None,
        })
    }

    /// Whether these are the contexts of `keys` (a re-INVITE may bring new ones).
    pub(crate) fn is_for(&self, keys: &SrtpLeg) -> bool {
        &self.keys == keys
    }

    /// New keys for the leg (a re-INVITE), keeping each stream's packet index: a side whose
    /// key did not change keeps its context as it is; a new key starts a context whose
    /// rollover counter goes on from the stream's (RFC 3711 §3.3.1: the ROC belongs to the
    /// stream, not the key — a context restarted at 0 would fail every packet after the
    /// first 2^16 of a long call). `false` if the provider refuses a key.
    pub(crate) fn rekey(&mut self, keys: &SrtpLeg) -> bool {
        if keys.tx != self.keys.tx {
            // callmask's own key toward the peer changed (it keeps it across re-INVITEs,
            // so this is a new stream as far as the peer knows).
            match context(&keys.tx, false) {
                Some(tx) => self.tx = tx,
                None => return false,
            }
        }
        if keys.rx != self.keys.rx {
            let (Some(mut rx), Some(restarted)) =
                (context(&keys.rx, true), context(&keys.rx, true))
            else {
                return false;
            };
            let mut wrapped = false;
            for &(ssrc, index) in &self.rx_index {
                wrapped |= index >= 1 << 16;
                if !continue_index(&mut rx, &keys.rx, ssrc, index) {
                    return false;
                }
            }
            self.rx = rx;
            self.rx_restarted = wrapped.then_some(restarted);
        }
        self.keys = keys.clone();
        true
    }

    /// Remembers the packet index of an authenticated packet from the peer.
    fn track(&mut self, ssrc: u32, seq: u16) {
        if let Some((_, index)) = self.rx_index.iter_mut().find(|(s, _)| *s == ssrc) {
            // The index nearest the last one with this sequence number (RFC 3711 §3.3.1).
            let delta = i64::from(seq.wrapping_sub(*index as u16) as i16);
            let next = (*index as i64).saturating_add(delta).max(0) as u64;
            *index = (*index).max(next);
        } else if self.rx_index.len() < MAX_TRACKED_SSRCS {
            self.rx_index.push((ssrc, u64::from(seq)));
        }
    }

    /// Authenticates and decrypts one SRTP (or, `rtcp`, SRTCP) packet from the peer.
    pub(crate) fn unprotect(&mut self, data: &[u8], rtcp: bool) -> Result<BytesMut, SrtpDrop> {
        let r = if rtcp {
            self.rx.decrypt_rtcp(data)
        } else {
            let mut r = self.rx.decrypt_rtp(data);
            if let Some(restarted) = &mut self.rx_restarted {
                // Until one of them authenticates a packet: the stream's rollover counter
                // (self.rx) or the new key's own from 0 (see `rx_restarted`).
                if r.is_err() {
                    let again = restarted.decrypt_rtp(data);
                    if again.is_ok() {
                        if let Some(c) = self.rx_restarted.take() {
                            self.rx = c;
                        }
                        r = again;
                    }
                } else {
                    self.rx_restarted = None;
                }
            }
            if r.is_ok() {
                if let (Some(seq), Some(ssrc)) = (data.get(2..4), data.get(8..12)) {
                    self.track(
                        u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]),
                        u16::from_be_bytes([seq[0], seq[1]]),
                    );
                }
            }
            r
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

/// Brings the fresh decryption context `rx` (key `key`) to packet index `index` of `ssrc`:
/// it sees packets of that SSRC encrypted under the same key at indices climbing from 0 in
/// steps of 2^14 (under half the sequence space, so both sides count every wrap) up to
/// `index`, and so expects the stream's next packet at the stream's rollover counter.
/// Nothing at ROC 0 needs it. `false` if a step fails (it cannot for a key the context took).
fn continue_index(rx: &mut Context, key: &SdesKey, ssrc: u32, index: u64) -> bool {
    if index < 1 << 16 {
        return true;
    }
    let Some(mut tx) = context(key, false) else {
        return false;
    };
    let mut packet = [0x80u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let mut at = 0u64;
    loop {
        packet[2..4].copy_from_slice(&(at as u16).to_be_bytes());
        let ok = tx
            .encrypt_rtp(&packet)
            .is_ok_and(|wire| rx.decrypt_rtp(&wire).is_ok());
        if !ok {
            return false;
        }
        if at == index {
            return true;
        }
        at = (at + (1 << 14)).min(index);
    }
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

    /// A leg whose peer sends under key 1 and receives under callmask's key 99, and the
    /// peer's next key (50): (suite, callmask's key, the peer's new key, callmask's leg, the
    /// peer's sending context).
    fn rekey_rig() -> (SrtpSuite, SdesKey, SdesKey, LegCrypto, Context) {
        let suite = SrtpSuite::AesCm128HmacSha1_80;
        let (peer_key, our_key, peer_new) = (key(suite, 1), key(suite, 99), key(suite, 50));
        let cm = LegCrypto::new(&SrtpLeg {
            rx: peer_key.clone(),
            tx: our_key.clone(),
        })
        .expect("contexts");
        let peer_tx = context(&peer_key, false).expect("peer tx");
        (suite, our_key, peer_new, cm, peer_tx)
    }

    /// A long call's rekey: the peer's packets have wrapped the sequence space twice (ROC 2)
    /// when a re-INVITE brings the peer's new key. The peer goes on at the stream's index
    /// under the new key (RFC 3711: the ROC belongs to the stream) and callmask decrypts it;
    /// callmask's own key did not change, so its context toward the peer goes on too and the
    /// peer's long-lived context still authenticates what callmask sends.
    #[test]
    fn a_rekey_after_the_sequence_wrapped_keeps_the_rollover_counter() {
        let (_, our_key, peer_new, mut cm, mut peer_tx) = rekey_rig();
        let mut peer_rx = context(&our_key, true).expect("peer rx");
        // Both directions past two wraps, in steps the rollover estimate follows.
        let mut index = 0u64;
        while index < 2 * 65_536 + 100 {
            let p = rtp(index as u16);
            let wire = peer_tx.encrypt_rtp(&p).expect("peer encrypts");
            assert!(cm.unprotect(&wire, false).is_ok(), "index {index}");
            let back = cm.protect(&p, false).expect("encrypt");
            assert!(peer_rx.decrypt_rtp(&back).is_ok(), "index {index}");
            index += 8_000;
        }
        let last = index - 8_000;
        // The peer's new key: its new context goes on at the stream's index.
        let mut peer_tx2 = context(&peer_new, false).expect("peer tx 2");
        // (Its sending context climbs to the index as a peer that keeps the ROC would be.)
        let mut at = 0u64;
        while at < last {
            let p = rtp(at as u16);
            let _ = peer_tx2.encrypt_rtp(&p).expect("peer advances");
            at = (at + (1 << 14)).min(last);
        }
        let keys2 = SrtpLeg {
            rx: peer_new,
            tx: our_key.clone(),
        };
        // Without the index carried over, a fresh context fails the next packet.
        let mut naive = LegCrypto::new(&keys2).expect("contexts");
        let next = rtp((last + 1) as u16);
        let wire = peer_tx2.encrypt_rtp(&next).expect("peer encrypts");
        assert_eq!(naive.unprotect(&wire, false), Err(SrtpDrop::Auth));
        assert!(cm.rekey(&keys2));
        assert_eq!(
            &cm.unprotect(&wire, false)
                .expect("decrypts after the rekey")[..],
            &next[..]
        );
        // callmask → peer still authenticates (its context was kept).
        let back = cm.protect(&rtp((last + 1) as u16), false).expect("encrypt");
        assert!(peer_rx.decrypt_rtp(&back).is_ok());
    }

    /// The other reading of a rekey: the peer builds a new session for its new key and
    /// starts its rollover counter at 0 again (libsrtp-based peers do). callmask's context
    /// that goes on with the stream's ROC fails that packet, the restarted one authenticates
    /// it and is kept; a forged packet authenticates with neither.
    #[test]
    fn a_rekey_from_a_peer_that_restarts_its_rollover_counter_is_followed() {
        let (suite, our_key, peer_new, mut cm, mut peer_tx) = rekey_rig();
        let mut index = 0u64;
        while index < 65_536 + 20_000 {
            let wire = peer_tx.encrypt_rtp(&rtp(index as u16)).expect("encrypt");
            assert!(cm.unprotect(&wire, false).is_ok(), "index {index}");
            index += 8_000;
        }
        assert!(cm.rekey(&SrtpLeg {
            rx: peer_new.clone(),
            tx: our_key,
        }));
        assert!(
            cm.rx_restarted.is_some(),
            "the stream had wrapped: both readings kept"
        );
        let mut forged = context(&key(suite, 7), false).expect("another key");
        let bad = forged.encrypt_rtp(&rtp(index as u16)).expect("encrypt");
        assert_eq!(cm.unprotect(&bad, false), Err(SrtpDrop::Auth));
        // A new session at the peer: ROC 0, the sequence number going on.
        let mut peer_tx2 = context(&peer_new, false).expect("peer tx 2");
        for i in 0..3u64 {
            let p = rtp((index + i) as u16);
            let wire = peer_tx2.encrypt_rtp(&p).expect("encrypt");
            assert_eq!(
                &cm.unprotect(&wire, false).expect("the restarted context")[..],
                &p[..]
            );
            assert!(cm.rx_restarted.is_none(), "decided by the first packet");
        }
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
