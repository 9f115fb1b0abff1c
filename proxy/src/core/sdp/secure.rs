//! Encrypted media in an SDP: which streams callmask's recorder tap could not hear.
//!
//! An SRTP stream relayed with its keys passed through end to end carries ciphertext; a tap
//! that decoded it as G.711 would record noise and mask nothing. [`undecodable_streams`]
//! names those streams so the proxy can refuse the offer (488) or relay it with the
//! recorder path muted (`media.undecodable`).

use super::parse::{Sdp, Transport};
use super::sdes::first_supported;

/// Why a stream's media is undecodable by callmask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undecodable {
    /// SDES-SRTP (`RTP/SAVP(F)`, `a=crypto`) that callmask does not terminate: no `a=crypto`
    /// of a supported suite ([`super::sdes::SrtpSuite`]), or one with an MKI.
    Sdes,
    /// DTLS-SRTP (`UDP/TLS/RTP/SAVP(F)`, `a=fingerprint`): keys negotiated end to end.
    Dtls,
}

/// Per `m=` line, in order: `Some(why)` for an active RTP stream whose media callmask cannot
/// decrypt, `None` for plain RTP and for disabled (port 0) or non-RTP streams.
pub fn undecodable_streams(sdp: &Sdp) -> Vec<Option<Undecodable>> {
    // RFC 8122 §5: a session-level fingerprint applies to every m= line.
    let session_dtls = sdp.session_attributes().any(|a| a.name == "fingerprint");
    sdp.media()
        .iter()
        .map(|m| {
            let ml = m.media_line();
            let transport = ml.transport();
            if ml.port == 0 || !transport.is_rtp() {
                return None;
            }
            let dtls = matches!(
                transport,
                Transport::UdpTlsRtpSavp | Transport::UdpTlsRtpSavpf
            ) || session_dtls
                || m.has_attribute("fingerprint");
            if dtls {
                Some(Undecodable::Dtls)
            } else if first_supported(m.cryptos()).is_some() {
                // SDES callmask terminates (core/media/srtp.rs): decodable.
                None
            } else if transport.is_secure() || m.cryptos().next().is_some() {
                Some(Undecodable::Sdes)
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(media: &str) -> Sdp {
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{media}"
        );
        Sdp::parse_slice(body.as_bytes()).expect("test SDP")
    }

    const CRYPTO: &str =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";

    #[test]
    fn plain_rtp_is_decodable() {
        let s = sdp("m=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVPF 8\r\n");
        assert_eq!(undecodable_streams(&s), [None, None]);
    }

    /// RFC 4568 / RFC 3711: every way an offer says SDES-SRTP.
    #[test]
    fn sdes_profiles_and_crypto_lines_are_undecodable() {
        let f8 = CRYPTO.replace("AES_CM_128_HMAC_SHA1_80", "F8_128_HMAC_SHA1_80");
        for m in [
            format!("m=audio 4000 RTP/SAVP 0\r\n{f8}"),
            format!("m=audio 4000 RTP/SAVPF 0\r\n{f8}"),
            format!(
                "m=audio 4000 RTP/SAVP 0\r\n{}",
                CRYPTO.replace("VubGVz", "VubGVz|2^20|1:4")
            ),
            "m=audio 4000 RTP/SAVP 0\r\n".to_owned(),
            // An unsupported suite on an AVP line (best-effort SRTP offers do this).
            "m=audio 4000 RTP/AVP 0\r\na=crypto:1 F8_128_HMAC_SHA1_80 inline:AAAA\r\n".to_owned(),
        ] {
            assert_eq!(
                undecodable_streams(&sdp(&m)),
                [Some(Undecodable::Sdes)],
                "{m}"
            );
        }
    }

    /// RFC 5763 / RFC 8122: DTLS-SRTP by profile or by a fingerprint at either level.
    #[test]
    fn dtls_is_undecodable() {
        let fp = "a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B\r\n";
        let m = "m=audio 4000 UDP/TLS/RTP/SAVPF 111\r\n";
        assert_eq!(undecodable_streams(&sdp(m)), [Some(Undecodable::Dtls)]);
        let m = format!("m=audio 4000 RTP/SAVP 0\r\n{fp}");
        assert_eq!(undecodable_streams(&sdp(&m)), [Some(Undecodable::Dtls)]);
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{fp}\
             m=audio 4000 RTP/AVP 0\r\n"
        );
        let s = Sdp::parse_slice(body.as_bytes()).expect("test SDP");
        assert_eq!(undecodable_streams(&s), [Some(Undecodable::Dtls)]);
    }

    /// Issue 14: SDES with a suite callmask terminates is decodable (callmask holds the keys).
    #[test]
    fn supported_sdes_is_decodable() {
        let m = format!(
            "m=audio 4000 RTP/SAVP 0\r\na=crypto:2 F8_128_HMAC_SHA1_80 inline:AA\r\n{CRYPTO}"
        );
        assert_eq!(undecodable_streams(&sdp(&m)), [None]);
    }

    #[test]
    fn disabled_streams_do_not_count() {
        let s = sdp("m=audio 0 RTP/SAVP 0\r\nm=audio 4000 RTP/AVP 0\r\n");
        assert_eq!(undecodable_streams(&s), [None, None]);
    }
}
