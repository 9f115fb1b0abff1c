//! Codec filtering of forwarded SDP (`media.codecs`): an audio codec that the recorder tap
//! cannot decode could never be masked, so it is taken out of the offer before the other side
//! can choose it.
//!
//! For each active RTP `audio` m= line, payload types whose codec is not allowed
//! ([`crate::core::codec::offer_filter`]) are removed from the format list together with their
//! `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines; every other line is left byte-identical. An
//! SRTP/encrypted stream is not touched (its payload cannot be decoded either way, and the
//! anchor relays it opaque). Video and other media are not recorded and pass unchanged.
//!
//! A line left without any allowed audio codec makes the whole SDP unacceptable
//! ([`CodecFilter::Unacceptable`]): the proxy answers 488 instead of relaying a call the
//! recorder could not hear (fail closed).

use bytes::Bytes;
use config::types::MediaCodec;

use super::anchor::MediaPlan;
use super::parse::{Fmtp, MediaLine, Rtpmap, Scope, Sdp};
use super::rewrite::RewriteError;
use crate::core::codec::{codec_of, offer_filter};
use crate::core::relay::PayloadType;

/// What [`filter_codecs`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecFilter {
    /// Every audio codec offered is allowed; the SDP is unchanged.
    Unchanged,
    /// This many payload types were removed; at least one allowed codec is left on every
    /// active audio line.
    Removed(usize),
    /// An active audio line offers no allowed codec (index of the first such m= line).
    Unacceptable {
        /// 0-based m= index.
        index: usize,
    },
}

/// Removes codecs not in `allowed` from every active, unencrypted RTP audio line of `sdp`.
/// On [`CodecFilter::Unacceptable`] the SDP may be partly edited and must not be sent.
pub fn filter_codecs(sdp: &mut Sdp, allowed: &[MediaCodec]) -> Result<CodecFilter, RewriteError> {
    let plan = MediaPlan::from_sdp(sdp);
    let mut removed = 0;
    for s in &plan.streams {
        if !s.is_active() || !s.media.eq_ignore_ascii_case("audio") || s.secure {
            continue;
        }
        let drop: Vec<PayloadType> = s
            .codecs
            .iter()
            .filter(|c| !offer_filter(allowed, &c.name, c.clock_rate))
            .map(|c| c.pt)
            .collect();
        let keeps_audio = s
            .codecs
            .iter()
            .any(|c| !drop.contains(&c.pt) && codec_of(&c.name, c.clock_rate).is_some());
        if !keeps_audio {
            return Ok(CodecFilter::Unacceptable { index: s.index });
        }
        if !drop.is_empty() {
            removed += remove_formats(sdp, s.index, &drop)?;
        }
    }
    Ok(if removed == 0 {
        CodecFilter::Unchanged
    } else {
        CodecFilter::Removed(removed)
    })
}

/// Removes payload types `drop` from the format list of m= line `index` and their
/// `rtpmap`/`fmtp`/`rtcp-fb` attributes. Returns how many formats left the m= line.
fn remove_formats(
    sdp: &mut Sdp,
    index: usize,
    drop: &[PayloadType],
) -> Result<usize, RewriteError> {
    let Some(lines) = sdp.lines_mut(Scope::Media(index)) else {
        return Err(RewriteError::NoSuchMedia { index });
    };
    let is_dropped = |tok: &str| {
        tok.parse::<u8>()
            .ok()
            .and_then(|n| PayloadType::try_from(n).ok())
            .is_some_and(|pt| drop.contains(&pt))
    };
    let Some(m) = lines.first_mut() else {
        return Err(RewriteError::NoSuchMedia { index });
    };
    let value = m.value().unwrap_or_default().to_owned();
    let Some(ml) = MediaLine::parse(&value) else {
        return Err(RewriteError::NoSuchMedia { index });
    };
    let port = match ml.port_count {
        Some(c) => format!("{}/{c}", ml.port),
        None => ml.port.to_string(),
    };
    let kept: Vec<&str> = ml.formats().filter(|f| !is_dropped(f)).collect();
    let gone = ml.formats().count() - kept.len();
    let text = format!("m={} {port} {} {}", ml.media, ml.proto, kept.join(" "));
    m.set_text(Bytes::from(text));
    lines.retain(|l| {
        let Some(a) = l.attribute() else {
            return true;
        };
        let v = a.value.unwrap_or_default();
        let pt = match a.name {
            "rtpmap" => Rtpmap::parse(v).map(|r| r.pt),
            "fmtp" => Fmtp::parse(v).map(|f| f.pt),
            "rtcp-fb" => v
                .split_ascii_whitespace()
                .next()
                .and_then(|t| t.parse::<u8>().ok())
                .and_then(|n| PayloadType::try_from(n).ok()),
            _ => None,
        };
        !pt.is_some_and(|pt| drop.contains(&pt))
    });
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crlf(s: &str) -> Vec<u8> {
        s.lines()
            .flat_map(|l| format!("{l}\r\n").into_bytes())
            .collect()
    }

    /// baresip 1.0's default offer (G.722 first, Opus, G.711, telephone-event), trimmed.
    const HD_PHONE: &str = "v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 10000 RTP/AVP 9 96 0 8 97 18 13 101
a=rtpmap:9 G722/8000
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 AMR/8000
a=fmtp:97 octet-align=1
a=rtcp-fb:97 nack
a=rtpmap:18 G729/8000
a=rtpmap:13 CN/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
m=video 10002 RTP/AVP 99
a=rtpmap:99 H264/90000
";

    fn text(sdp: &Sdp) -> String {
        String::from_utf8(sdp.to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn undecodable_codecs_leave_the_offer() {
        let mut sdp = Sdp::parse_slice(&crlf(HD_PHONE)).unwrap();
        let r = filter_codecs(&mut sdp, &MediaCodec::DECODABLE).unwrap();
        assert_eq!(r, CodecFilter::Removed(3));
        let t = text(&sdp);
        assert!(t.contains("m=audio 10000 RTP/AVP 9 96 0 8 101\r\n"), "{t}");
        for gone in ["AMR", "97", "G729", "CN/8000"] {
            assert!(!t.contains(gone), "{gone} left in {t}");
        }
        // Kept lines are untouched, video too.
        assert!(t.contains("a=fmtp:96 stereo=1;sprop-stereo=1\r\n"));
        assert!(t.contains("a=fmtp:101 0-15\r\n"));
        assert!(t.contains("m=video 10002 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\n"));
        // Idempotent.
        assert_eq!(
            filter_codecs(&mut sdp, &MediaCodec::DECODABLE).unwrap(),
            CodecFilter::Unchanged
        );
    }

    #[test]
    fn config_narrows_the_offer_in_offer_order() {
        let mut sdp = Sdp::parse_slice(&crlf(HD_PHONE)).unwrap();
        filter_codecs(&mut sdp, &[MediaCodec::Pcma, MediaCodec::G722]).unwrap();
        assert!(text(&sdp).contains("m=audio 10000 RTP/AVP 9 8 101\r\n"));
    }

    #[test]
    fn nothing_decodable_is_unacceptable() {
        let offer = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
                     m=audio 4000 RTP/AVP 18 101\na=rtpmap:101 telephone-event/8000\n";
        let mut sdp = Sdp::parse_slice(&crlf(offer)).unwrap();
        assert_eq!(
            filter_codecs(&mut sdp, &MediaCodec::DECODABLE).unwrap(),
            CodecFilter::Unacceptable { index: 0 }
        );
        // A static type without rtpmap is still recognised (RFC 3551).
        let offer = offer.replace("18 101", "0 18");
        let mut sdp = Sdp::parse_slice(&crlf(&offer)).unwrap();
        assert_eq!(
            filter_codecs(&mut sdp, &MediaCodec::DECODABLE).unwrap(),
            CodecFilter::Removed(1)
        );
        assert!(text(&sdp).contains("m=audio 4000 RTP/AVP 0\r\n"));
    }

    #[test]
    fn inactive_and_encrypted_lines_are_left_alone() {
        let offer = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
                     m=audio 0 RTP/AVP 18\n\
                     m=audio 4000 RTP/SAVP 18\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\n";
        let mut sdp = Sdp::parse_slice(&crlf(offer)).unwrap();
        assert_eq!(
            filter_codecs(&mut sdp, &MediaCodec::DECODABLE).unwrap(),
            CodecFilter::Unchanged
        );
    }
}
