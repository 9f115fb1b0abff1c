//! The INVITE body of a recording session: an SDP offer of two `sendonly` PCMU streams
//! (`a=label:1` the PBX side's audio, `a=label:2` the agents' side's) and RFC 7865 metadata, as `multipart/mixed`.
//!
//! No `telephone-event` is offered: recorders never get RFC 4733 events. Participants carry
//! the call's parties as callmask's call metadata holds them (hashed `h:…` unless the admin
//! opted in to numbers), never digits heard on the call.

use std::fmt::Write as _;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::core::sdp::SdesKey;

/// Who is recorded, for the metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingInfo {
    /// The PBX side's party (the customer), whoever dialled: the sender of stream 1 (label
    /// 1). As the call metadata holds it (`h:…` unless numbers are revealed).
    pub customer: String,
    /// The agents' side's party, likewise: the sender of stream 2.
    pub agent: String,
    /// Call start, Unix milliseconds (for `associate-time`).
    pub start_unix_ms: u128,
}

/// Stream labels (RFC 4574) of the two offered streams: caller audio, agent audio.
pub const LABELS: [&str; 2] = ["1", "2"];

/// The SDP offer: two `sendonly` PCMU streams at `ip`, ports `ports` (caller, agent); with
/// `keys`, as SDES-SRTP (`RTP/SAVP`, each stream's key in its `a=crypto`, tag 1).
pub(crate) fn sdp_offer(
    session_id: u64,
    ip: IpAddr,
    ports: [u16; 2],
    keys: Option<&[SdesKey; 2]>,
) -> String {
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(400);
    let _ = write!(
        s,
        "v=0\r\no=callmask {session_id} 1 IN {fam} {ip}\r\ns=callmask SIPREC\r\n\
         c=IN {fam} {ip}\r\nt=0 0\r\n"
    );
    for (i, (port, label)) in ports.iter().zip(LABELS).enumerate() {
        let proto = if keys.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        let _ = write!(
            s,
            "m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n\
             a=label:{label}\r\n"
        );
        if let Some(k) = keys.and_then(|k| k.get(i)) {
            let _ = write!(s, "a=crypto:{}\r\n", k.crypto_value(1));
        }
        s.push_str("a=sendonly\r\n");
    }
    s
}

/// RFC 7865 metadata for one recording session. Identifiers are derived from `token` (unique
/// per call), so a retransmission or a failover attempt describes the same session.
pub(crate) fn metadata_xml(token: &str, info: &RecordingInfo) -> String {
    let id = |what: &str| {
        let d = Sha256::digest(format!("{token}:{what}").as_bytes());
        base64(&d[..16])
    };
    let (group, session) = (id("group"), id("session"));
    let parts = [id("caller"), id("callee")];
    let streams = [id("stream1"), id("stream2")];
    let time = rfc3339(info.start_unix_ms);
    let mut x = String::with_capacity(2048);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n");
    x.push_str("<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\">\r\n");
    x.push_str("  <datamode>complete</datamode>\r\n");
    let _ = write!(
        x,
        "  <group group_id=\"{group}\">\r\n    <associate-time>{time}</associate-time>\r\n  </group>\r\n\
         \x20 <session session_id=\"{session}\">\r\n    <group-ref>{group}</group-ref>\r\n  </session>\r\n"
    );
    for (pid, who) in parts.iter().zip([&info.customer, &info.agent]) {
        let _ = write!(
            x,
            "  <participant participant_id=\"{pid}\">\r\n    <nameID aor=\"{}\">\r\n      \
             <name>{}</name>\r\n    </nameID>\r\n  </participant>\r\n",
            escape(&aor(who)),
            escape(who)
        );
    }
    for (sid, label) in streams.iter().zip(LABELS) {
        let _ = write!(
            x,
            "  <stream stream_id=\"{sid}\" session_id=\"{session}\">\r\n    <label>{label}</label>\r\n  </stream>\r\n"
        );
    }
    let _ = write!(
        x,
        "  <sessionrecordingassoc session_id=\"{session}\">\r\n    <associate-time>{time}</associate-time>\r\n  </sessionrecordingassoc>\r\n"
    );
    for pid in &parts {
        let _ = write!(
            x,
            "  <participantsessionassoc participant_id=\"{pid}\" session_id=\"{session}\">\r\n    \
             <associate-time>{time}</associate-time>\r\n  </participantsessionassoc>\r\n"
        );
    }
    // The customer (PBX side) sends stream 1 and hears stream 2; the agent the other way
    // round, whoever dialled.
    for (i, pid) in parts.iter().enumerate() {
        let _ = write!(
            x,
            "  <participantstreamassoc participant_id=\"{pid}\">\r\n    <send>{}</send>\r\n    \
             <recv>{}</recv>\r\n  </participantstreamassoc>\r\n",
            streams[i],
            streams[1 - i]
        );
    }
    x.push_str("</recording>\r\n");
    x
}

/// The `multipart/mixed` body (RFC 7866 §8.1): SDP first, then the metadata with
/// `Content-Disposition: recording-session`.
pub(crate) fn multipart(boundary: &str, sdp: &str, xml: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Type: application/sdp\r\n\r\n{sdp}\
         --{boundary}\r\nContent-Type: application/rs-metadata+xml\r\n\
         Content-Disposition: recording-session\r\n\r\n{xml}--{boundary}--\r\n"
    )
}

/// A participant's AOR: the value itself if it is a URI, else a SIP URI around it.
fn aor(who: &str) -> String {
    if who.starts_with("sip:") || who.starts_with("sips:") || who.starts_with("tel:") {
        return who.to_owned();
    }
    let mut user = String::with_capacity(who.len() + 8);
    for b in who.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
            user.push(char::from(b));
        } else {
            let _ = write!(user, "%{b:02X}");
        }
    }
    if user.is_empty() {
        user.push_str("unknown");
    }
    format!("sip:{user}@callmask.invalid")
}

/// XML text / attribute escaping.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if c.is_control() => {}
            c => o.push(c),
        }
    }
    o
}

/// Standard base64 with padding (RFC 4648 §4), as the RFC 7865 examples write identifiers.
fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                o.push(char::from(A[((n >> shift) & 0x3f) as usize]));
            } else {
                o.push('=');
            }
        }
    }
    o
}

/// Unix milliseconds as `YYYY-MM-DDThh:mm:ss.sssZ`.
fn rfc3339(unix_ms: u128) -> String {
    let secs = (unix_ms / 1000) as i64;
    let ms = (unix_ms % 1000) as u32;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2010-12-16T23:41:07Z, the RFC 7865 example's time.
        assert_eq!(rfc3339(1_292_542_867_250), "2010-12-16T23:41:07.250Z");
        assert_eq!(rfc3339(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
    }

    #[test]
    fn an_srtp_offer_carries_one_fresh_key_per_stream() {
        use crate::core::sdp::{SdesKey, SrtpSuite};
        let key = |b: u8| {
            SdesKey::generate(SrtpSuite::AesCm128HmacSha1_80, |buf| {
                buf.fill(b);
                true
            })
            .expect("key")
        };
        let keys = [key(1), key(2)];
        let s = sdp_offer(
            7,
            "10.0.0.1".parse().expect("ip"),
            [4000, 4002],
            Some(&keys),
        );
        let sdp = crate::core::sdp::Sdp::parse_slice(s.as_bytes()).expect("sdp parses");
        assert_eq!(sdp.media_count(), 2);
        assert_eq!(s.matches("m=audio 4000 RTP/SAVP 0").count(), 1);
        assert_eq!(s.matches("m=audio 4002 RTP/SAVP 0").count(), 1);
        for k in &keys {
            assert_eq!(
                s.matches(&format!("a=crypto:{}", k.crypto_value(1)))
                    .count(),
                1
            );
        }
        assert!(s.contains("a=label:1\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    }

    #[test]
    fn offer_has_two_labelled_sendonly_pcmu_streams_and_no_telephone_event() {
        let s = sdp_offer(7, "10.0.0.1".parse().expect("ip"), [4000, 4002], None);
        let sdp = crate::core::sdp::Sdp::parse_slice(s.as_bytes()).expect("sdp parses");
        assert_eq!(sdp.media_count(), 2);
        for (m, (port, label)) in sdp.media().iter().zip([(4000, "1"), (4002, "2")]) {
            assert_eq!(m.media_line().port, port);
            assert_eq!(m.label(), Some(label));
            assert!(m.has_attribute("sendonly"));
        }
        assert!(!s.contains("telephone-event"));
    }

    /// Elements nest and close properly (a tiny well-formedness check: tags balance, every
    /// attribute value is quoted, no bare `&` or `<` in text).
    fn well_formed(x: &str) {
        let body = x.split_once("?>").map_or(x, |(_, b)| b);
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = body;
        while let Some(i) = rest.find('<') {
            let text = &rest[..i];
            assert!(!text.contains('>'), "stray > in {text:?}");
            for (j, _) in text.match_indices('&') {
                let ent = &text[j..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                        .iter()
                        .any(|e| ent.starts_with(e)),
                    "bare & in {text:?}"
                );
            }
            let end = rest[i..].find('>').expect("tag closes") + i;
            let tag = &rest[i + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().expect("tag name");
                assert_eq!(
                    tag.matches('"').count() % 2,
                    0,
                    "unquoted attribute in <{tag}>"
                );
                stack.push(name);
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
    }

    #[test]
    fn metadata_is_well_formed_even_with_markup_in_names() {
        for who in ["h:0123456789ab", "<b>&\"'", "sip:+1555@example.com", ""] {
            let info = RecordingInfo {
                customer: who.into(),
                agent: who.into(),
                start_unix_ms: 1,
            };
            well_formed(&metadata_xml("t", &info));
        }
    }

    #[test]
    fn metadata_maps_participants_to_streams_and_escapes() {
        let info = RecordingInfo {
            customer: "h:0123456789ab".into(),
            agent: "<x&y>".into(),
            start_unix_ms: 0,
        };
        let x = metadata_xml("tok", &info);
        assert!(
            x.contains("aor=\"sip:h%3A0123456789ab@callmask.invalid\""),
            "{x}"
        );
        assert!(x.contains("<name>&lt;x&amp;y&gt;</name>"), "{x}");
        assert_eq!(x.matches("<participant ").count(), 2);
        assert_eq!(x.matches("<stream ").count(), 2);
        assert_eq!(x.matches("<participantsessionassoc ").count(), 2);
        assert_eq!(x.matches("<participantstreamassoc ").count(), 2);
        assert!(x.contains("<label>1</label>") && x.contains("<label>2</label>"));
        // Same token, same identifiers (a failover attempt describes the same session).
        assert_eq!(x, metadata_xml("tok", &info));
        assert_ne!(x, metadata_xml("other", &info));
    }
}
