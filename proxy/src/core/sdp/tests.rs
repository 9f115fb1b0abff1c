//! SDP tests: RFC 3264 / RFC 4317 examples as vectors, sloppy real-world inputs, rewrite and
//! origin-version rules, and property tests (identity, locality of edits, no panics).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::core::ports::PortPair;
use crate::core::relay::PayloadType;

/// CRLF-terminates every line of a test vector written with `\n`.
fn crlf(s: &str) -> Vec<u8> {
    s.lines()
        .flat_map(|l| format!("{l}\r\n").into_bytes())
        .collect()
}

fn parse(b: &[u8]) -> Sdp {
    Sdp::parse_slice(b).unwrap()
}

fn pt(n: u8) -> PayloadType {
    PayloadType::try_from(n).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn text(sdp: &Sdp) -> String {
    String::from_utf8(sdp.to_bytes().to_vec()).unwrap()
}

/// RFC 3264 §10.1 (Basic Exchange), the offer: one audio and two video streams.
const RFC3264_10_1_OFFER: &str = "v=0
o=alice 2890844526 2890844526 IN IP4 host.anywhere.com
s=
c=IN IP4 host.anywhere.com
t=0 0
m=audio 49170 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 51372 RTP/AVP 31
a=rtpmap:31 H261/90000
m=video 53000 RTP/AVP 32
a=rtpmap:32 MPV/90000
";

/// RFC 3264 §10.1, the answer: the first video stream is rejected with port 0.
const RFC3264_10_1_ANSWER: &str = "v=0
o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com
s=
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 49920 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 0 RTP/AVP 31
m=video 53000 RTP/AVP 32
a=rtpmap:32 MPV/90000
";

/// RFC 4317 §2.1 (Audio and Video 1), offer.
const RFC4317_2_1_OFFER: &str = "v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s=
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 49170 RTP/AVP 0 8 97
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 iLBC/8000
m=video 51372 RTP/AVP 31 32
a=rtpmap:31 H261/90000
a=rtpmap:32 MPV/90000
";

/// RFC 4317 §2.1, answer.
const RFC4317_2_1_ANSWER: &str = "v=0
o=bob 2808844564 2808844564 IN IP4 host.biloxi.example.com
s=
c=IN IP4 host.biloxi.example.com
t=0 0
m=audio 49174 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 49170 RTP/AVP 32
a=rtpmap:32 MPV/90000
";

/// RFC 4317 style telephone-event offer (§2.5 pattern) with IP literals, as PBXs send it.
const TELEPHONE_EVENT_OFFER: &str = "v=0
o=alice 2890844526 2890844526 IN IP4 192.0.2.10
s=-
c=IN IP4 192.0.2.10
t=0 0
m=audio 49170 RTP/AVP 0 97 98
a=rtpmap:0 PCMU/8000
a=rtpmap:97 iLBC/8000
a=rtpmap:98 telephone-event/8000
a=fmtp:98 0-15
a=ptime:20
";

/// RFC 4317 §2.3-style hold: the holder re-offers with `a=sendonly` and a bumped version.
const HOLD_OFFER: &str = "v=0
o=alice 2890844526 2890844527 IN IP4 192.0.2.10
s=
c=IN IP4 192.0.2.10
t=0 0
m=audio 49170 RTP/AVP 0 97
a=rtpmap:0 PCMU/8000
a=rtpmap:97 iLBC/8000
a=sendonly
";

#[test]
fn rfc3264_10_1_vectors_round_trip_and_plan() {
    for v in [RFC3264_10_1_OFFER, RFC3264_10_1_ANSWER] {
        let b = crlf(v);
        assert_eq!(parse(&b).to_bytes(), Bytes::from(b.clone()));
    }
    let offer = parse(&crlf(RFC3264_10_1_OFFER));
    assert_eq!(offer.media_count(), 3);
    let plan = MediaPlan::from_sdp(&offer);
    assert_eq!(plan.streams[1].port, 51372);
    assert_eq!(plan.streams[1].media, "video");
    assert_eq!(plan.streams[0].codecs[0].name, "PCMU");
    // FQDN connection: no socket address, but the host is reported for resolution.
    assert_eq!(plan.streams[0].remote, None);
    assert_eq!(
        plan.streams[0].remote_host.as_deref(),
        Some("host.anywhere.com")
    );

    let answer = parse(&crlf(RFC3264_10_1_ANSWER));
    let plan = MediaPlan::from_sdp(&answer);
    assert!(!plan.streams[1].is_active(), "port 0 rejects the stream");
    assert!(plan.streams[2].is_active());
    assert_eq!(plan.streams[2].codecs[0].name, "MPV");
}

#[test]
fn rfc4317_2_1_offer_answer_anchored() {
    let local = ip("203.0.113.1");
    let pairs = [PortPair::from_rtp(30000), PortPair::from_rtp(30002)];
    let mut origin = OriginState::new();
    let out = anchor(
        parse(&crlf(RFC4317_2_1_OFFER)),
        &LocalAnchor {
            addr: local,
            ports: &pairs,
        },
        &mut origin,
    )
    .unwrap();
    let expected = crlf(
        "v=0
o=alice 2890844526 2890844526 IN IP4 203.0.113.1
s=
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0 8 97
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 iLBC/8000
m=video 30002 RTP/AVP 31 32
a=rtpmap:31 H261/90000
a=rtpmap:32 MPV/90000
",
    );
    assert_eq!(out.body, Bytes::from(expected));
    assert_eq!(out.version, 2890844526);
    let audio = &out.plan.streams[0];
    let names: Vec<_> = audio.codecs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["PCMU", "PCMA", "iLBC"]);
    assert_eq!(audio.codec(pt(97)).unwrap().clock_rate, 8000);

    // The answer goes the other way, through the other leg's origin state.
    let mut origin_b = OriginState::new();
    let out = anchor(
        parse(&crlf(RFC4317_2_1_ANSWER)),
        &LocalAnchor {
            addr: ip("198.51.100.1"),
            ports: &[PortPair::from_rtp(31000), PortPair::from_rtp(31002)],
        },
        &mut origin_b,
    )
    .unwrap();
    let s = std::str::from_utf8(&out.body).unwrap();
    assert!(s.contains("m=audio 31000 RTP/AVP 0\r\n"));
    assert!(s.contains("m=video 31002 RTP/AVP 32\r\n"));
    assert!(s.contains("c=IN IP4 198.51.100.1\r\n"));
    assert!(!s.contains("biloxi"), "the far side's host is hidden");
}

#[test]
fn telephone_event_plan() {
    let sdp = parse(&crlf(TELEPHONE_EVENT_OFFER));
    let plan = MediaPlan::from_sdp(&sdp);
    let s = &plan.streams[0];
    assert_eq!(s.remote, Some("192.0.2.10:49170".parse().unwrap()));
    assert_eq!(s.remote_rtcp, Some("192.0.2.10:49171".parse().unwrap()));
    let te = s.telephone_event.as_ref().unwrap();
    assert_eq!((te.pt, te.clock_rate), (pt(98), 8000));
    assert_eq!(s.ptime, Some(20));
    assert_eq!(s.direction, Direction::SendRecv);
    assert!(!s.on_hold);
    let fmtp = sdp.media()[0].fmtps().next().unwrap();
    assert_eq!(fmtp.pt, pt(98));
    assert!(fmtp.has_event(11) && !fmtp.has_event(16));
}

#[test]
fn hold_sendonly_and_legacy_zero_address() {
    let plan = MediaPlan::from_sdp(&parse(&crlf(HOLD_OFFER)));
    assert!(plan.streams[0].on_hold);
    assert_eq!(plan.streams[0].direction, Direction::SendOnly);

    let legacy = HOLD_OFFER
        .replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0")
        .replace("a=sendonly\n", "");
    let sdp = parse(&crlf(&legacy));
    let plan = MediaPlan::from_sdp(&sdp);
    assert!(plan.streams[0].on_hold, "c=0.0.0.0 is hold (RFC 3264 §8.4)");
    assert_eq!(plan.streams[0].remote, None);
    // Anchoring keeps 0.0.0.0 so the other side still sees hold.
    let out = anchor(
        sdp,
        &LocalAnchor {
            addr: ip("203.0.113.1"),
            ports: &[PortPair::from_rtp(30000)],
        },
        &mut OriginState::new(),
    )
    .unwrap();
    let s = std::str::from_utf8(&out.body).unwrap();
    assert!(s.contains("c=IN IP4 0.0.0.0\r\n"));
    assert!(s.contains("m=audio 30000 "));
}

#[test]
fn session_direction_applies_unless_media_overrides() {
    let body = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=inactive\n\
                m=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\na=recvonly\n";
    let plan = MediaPlan::from_sdp(&parse(body.as_bytes()));
    assert_eq!(plan.streams[0].direction, Direction::Inactive);
    assert_eq!(plan.streams[1].direction, Direction::RecvOnly);
}

#[test]
fn sloppy_lf_only_trailing_spaces_no_final_newline() {
    let body = b"v=0\no=- 42 7 IN IP4 10.0.0.1 \ns=-\nc=IN IP4 10.0.0.1  \nt=0 0\nm=audio 4000 RTP/AVP 8 101 \na=rtpmap:101 telephone-event/8000\na=sendrecv";
    let sdp = parse(body);
    assert_eq!(sdp.to_bytes().as_ref(), body);
    assert_eq!(sdp.preferred_ending(), LineEnding::Lf);
    let plan = MediaPlan::from_sdp(&sdp);
    assert_eq!(
        plan.streams[0].remote,
        Some("10.0.0.1:4000".parse().unwrap())
    );
    assert_eq!(plan.streams[0].codecs[0].name, "PCMA");
    assert_eq!(
        plan.streams[0].telephone_event.as_ref().unwrap().pt,
        pt(101)
    );

    // An added attribute goes after the unterminated last line, which gets an LF.
    let mut sdp = sdp;
    sdp.add_attribute(Scope::Media(0), "label", Some("1"))
        .unwrap();
    assert!(text(&sdp).ends_with("a=sendrecv\na=label:1"));
}

#[test]
fn insert_after_unterminated_last_line() {
    // Found by the fuzz target: the new line must not run into the unterminated one.
    let mut sdp = parse(b"v=0\r\no=- 1 1 IN IP4 10.0.0.1");
    sdp.set_connection(Scope::Session, ip("192.0.2.1")).unwrap();
    assert_eq!(
        text(&sdp),
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 192.0.2.1"
    );
    let mut sdp = parse(b"v=0\no=- 1 1 IN IP4 10.0.0.1\nm=audio 4000 RTP/AVP 0");
    sdp.set_connection(Scope::Media(0), ip("192.0.2.1"))
        .unwrap();
    assert_eq!(
        Sdp::parse(sdp.to_bytes()).unwrap().media()[0]
            .connection()
            .unwrap()
            .address,
        "192.0.2.1"
    );
    assert!(text(&sdp).ends_with("m=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.1"));
}

#[test]
fn mixed_line_endings_survive() {
    let body = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\ns=-\r\nt=0 0\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\n\r\n";
    let sdp = parse(body);
    assert_eq!(sdp.to_bytes().as_ref(), body);
}

#[test]
fn media_level_connection_missing_uses_session() {
    let body = crlf(
        "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 4000 RTP/AVP 0
m=audio 5000 RTP/AVP 0
c=IN IP4 10.0.0.9
",
    );
    let sdp = parse(&body);
    let plan = MediaPlan::from_sdp(&sdp);
    assert_eq!(
        plan.streams[0].remote,
        Some("10.0.0.1:4000".parse().unwrap())
    );
    assert_eq!(
        plan.streams[1].remote,
        Some("10.0.0.9:5000".parse().unwrap())
    );
}

#[test]
fn no_connection_anywhere_gets_one_inserted() {
    let body = crlf(
        "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\ni=voice\na=sendrecv\n",
    );
    let out = anchor(
        parse(&body),
        &LocalAnchor {
            addr: ip("203.0.113.1"),
            ports: &[PortPair::from_rtp(30000)],
        },
        &mut OriginState::new(),
    )
    .unwrap();
    let s = std::str::from_utf8(&out.body).unwrap();
    assert!(
        s.contains("i=voice\r\nc=IN IP4 203.0.113.1\r\na=sendrecv"),
        "{s}"
    );
}

#[test]
fn ipv6_connection_and_rtcp_attribute() {
    let body = crlf(
        "v=0
o=- 1 1 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 4000 RTP/SAVP 0
a=rtcp:4005 IN IP6 2001:db8::2
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32
a=label:caller
",
    );
    let sdp = parse(&body);
    let plan = MediaPlan::from_sdp(&sdp);
    let s = &plan.streams[0];
    assert_eq!(s.remote, Some("[2001:db8::1]:4000".parse().unwrap()));
    assert_eq!(s.remote_rtcp, Some("[2001:db8::2]:4005".parse().unwrap()));
    assert!(s.secure);
    assert_eq!(s.label.as_deref(), Some("caller"));
    let c = sdp.media()[0].cryptos().next().unwrap();
    assert_eq!((c.tag, c.suite), (1, "AES_CM_128_HMAC_SHA1_80"));
    assert!(c.key_params.starts_with("inline:PS1uQ"));
    // SRTP keys never reach logs through Debug.
    assert!(!format!("{c:?}").contains("PS1uQ"));
    assert!(!format!("{sdp:?}").contains("PS1uQ"));
    assert!(format!("{sdp:?}").contains("a=label:caller"));

    let out = anchor(
        sdp,
        &LocalAnchor {
            addr: ip("2001:db8::ffff"),
            ports: &[PortPair::from_rtp(30010)],
        },
        &mut OriginState::new(),
    )
    .unwrap();
    let t = std::str::from_utf8(&out.body).unwrap();
    assert!(t.contains("c=IN IP6 2001:db8::ffff\r\n"));
    assert!(t.contains("a=rtcp:30011 IN IP6 2001:db8::ffff\r\n"));
    assert!(
        t.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "crypto passes through"
    );
    assert!(t.contains("o=- 1 1 IN IP6 2001:db8::ffff\r\n"));
}

#[test]
fn anchor_strips_ice_and_disables_unallocated_streams() {
    let body = crlf(
        "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
a=ice-lite
c=IN IP4 10.0.0.1
t=0 0
m=audio 4000 RTP/AVP 0
a=ice-ufrag:abcd
a=ice-pwd:secretsecretsecretsecret
a=candidate:1 1 UDP 2130706431 10.0.0.1 4000 typ host
a=rtcp-mux
m=video 4002 RTP/AVP 96
a=rtpmap:96 H264/90000
",
    );
    let out = anchor(
        parse(&body),
        &LocalAnchor {
            addr: ip("203.0.113.1"),
            ports: &[PortPair::from_rtp(30000)],
        },
        &mut OriginState::new(),
    )
    .unwrap();
    let s = std::str::from_utf8(&out.body).unwrap();
    assert!(!s.contains("ice-") && !s.contains("candidate"), "{s}");
    assert!(s.contains("a=rtcp-mux\r\n"));
    assert!(s.contains("m=video 0 RTP/AVP 96\r\n"));
    assert!(out.plan.streams[0].rtcp_mux);
}

#[test]
fn rewrite_primitives_touch_only_their_lines() {
    let mut sdp = parse(&crlf(TELEPHONE_EVENT_OFFER));
    sdp.set_media_port(0, 30000).unwrap();
    sdp.set_connection(Scope::Session, ip("203.0.113.1"))
        .unwrap();
    sdp.set_rtcp(
        0,
        Some(RtcpTarget {
            port: 30001,
            addr: None,
        }),
    )
    .unwrap();
    sdp.set_direction(Scope::Media(0), Direction::SendOnly)
        .unwrap();
    let expected = crlf(
        "v=0
o=alice 2890844526 2890844526 IN IP4 192.0.2.10
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0 97 98
a=rtpmap:0 PCMU/8000
a=rtpmap:97 iLBC/8000
a=rtpmap:98 telephone-event/8000
a=fmtp:98 0-15
a=ptime:20
a=rtcp:30001
a=sendonly
",
    );
    assert_eq!(sdp.to_bytes(), Bytes::from(expected));
    sdp.set_direction(Scope::Media(0), Direction::Inactive)
        .unwrap();
    assert_eq!(sdp.media()[0].direction(), Some(Direction::Inactive));
    assert_eq!(sdp.remove_attribute(Scope::Media(0), "rtcp").unwrap(), 1);
    assert_eq!(sdp.media()[0].rtcp(), None);
    assert_eq!(
        sdp.set_media_port(5, 1),
        Err(RewriteError::NoSuchMedia { index: 5 })
    );
    assert_eq!(
        sdp.add_attribute(Scope::Session, "x", Some("a\r\nb")),
        Err(RewriteError::InvalidText)
    );
}

#[test]
fn media_port_count_is_dropped() {
    let mut sdp = parse(b"v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 4000/2 RTP/AVP 0 8\n");
    assert_eq!(sdp.media()[0].media_line().port_count, Some(2));
    sdp.set_media_port(0, 30000).unwrap();
    assert!(text(&sdp).ends_with("m=audio 30000 RTP/AVP 0 8\n"));
}

#[test]
fn origin_version_rfc3264_section_8() {
    let local = ip("203.0.113.1");
    let pairs = [PortPair::from_rtp(30000)];
    let la = LocalAnchor {
        addr: local,
        ports: &pairs,
    };
    let mut origin = OriginState::new();
    let first = anchor(parse(&crlf(TELEPHONE_EVENT_OFFER)), &la, &mut origin).unwrap();
    assert_eq!(first.version, 2890844526);
    // Unchanged offer re-sent (e.g. session refresh): same version, identical bytes.
    let again = anchor(parse(&crlf(TELEPHONE_EVENT_OFFER)), &la, &mut origin).unwrap();
    assert_eq!(again.version, first.version);
    assert_eq!(again.body, first.body);
    // Upstream bumped its version without changing anything: our output is unchanged too.
    let bumped = TELEPHONE_EVENT_OFFER.replace("2890844526 2890844526", "2890844526 2890844999");
    let out = anchor(parse(&crlf(&bumped)), &la, &mut origin).unwrap();
    assert_eq!(out.version, first.version);
    // Hold: content changed -> version + 1.
    let hold = TELEPHONE_EVENT_OFFER.replace("a=ptime:20\n", "a=ptime:20\na=sendonly\n");
    let out = anchor(parse(&crlf(&hold)), &la, &mut origin).unwrap();
    assert_eq!(out.version, first.version + 1);
    // A new originator upstream (e.g. after a transfer) keeps our pinned origin fields.
    let other = TELEPHONE_EVENT_OFFER.replace("o=alice 2890844526 2890844526", "o=carol 77 1");
    let out = anchor(parse(&crlf(&other)), &la, &mut origin).unwrap();
    assert_eq!(out.version, first.version + 2);
    let s = std::str::from_utf8(&out.body).unwrap();
    assert!(s.contains(&format!(
        "o=alice 2890844526 {} IN IP4 203.0.113.1\r\n",
        first.version + 2
    )));
}

#[test]
fn errors_are_values() {
    assert_eq!(Sdp::parse_slice(b""), Err(SdpError::Empty));
    assert_eq!(Sdp::parse_slice(b"x=1\r\n"), Err(SdpError::MissingVersion));
    assert_eq!(
        Sdp::parse_slice(b"v=0\r\ns=-\r\n"),
        Err(SdpError::MissingOrigin)
    );
    assert_eq!(
        Sdp::parse_slice(b"v=0\r\no=- 1 IN IP4 x\r\n"),
        Err(SdpError::BadOrigin { line: 2 })
    );
    assert_eq!(
        Sdp::parse_slice(b"v=0\r\no=- 1 1 IN IP4 x\r\nc=IN IPX 1.2.3.4\r\n"),
        Err(SdpError::BadConnection { line: 3 })
    );
    assert_eq!(
        Sdp::parse_slice(b"v=0\r\no=- 1 1 IN IP4 x\r\nm=audio 99999 RTP/AVP 0\r\n"),
        Err(SdpError::BadMedia { line: 3 })
    );
    let big = vec![b'a'; super::parse::MAX_SDP_LEN + 1];
    assert!(matches!(
        Sdp::parse_slice(&big),
        Err(SdpError::TooLarge { .. })
    ));
    assert_eq!(SdpError::Empty.as_label(), "sdp_empty");
}

#[test]
fn typed_views() {
    assert_eq!(
        Rtpmap::parse("97 opus/48000/2"),
        Some(Rtpmap {
            pt: pt(97),
            encoding: "opus",
            clock_rate: 48000,
            channels: Some(2)
        })
    );
    assert_eq!(Rtpmap::parse("200 x/8000"), None);
    assert_eq!(Rtpmap::parse("97 x"), None);
    let r = RtcpAttr::parse("53020 IN IP4 126.16.64.4").unwrap();
    assert_eq!(r.port, 53020);
    assert_eq!(r.connection.unwrap().ip(), Some(ip("126.16.64.4")));
    assert_eq!(RtcpAttr::parse("53020").unwrap().connection, None);
    assert_eq!(
        MediaLine::parse("audio 9 UDP/TLS/RTP/SAVPF 111")
            .unwrap()
            .transport(),
        Transport::UdpTlsRtpSavpf
    );
    assert_eq!(
        Connection::parse("IN IP4 224.2.1.1/127/3").unwrap().address,
        "224.2.1.1"
    );
    assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
}

// ---- property tests -------------------------------------------------------------------

fn line_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("s=-".to_owned()),
        Just("t=0 0".to_owned()),
        Just("c=IN IP4 10.1.2.3".to_owned()),
        Just("c=IN IP6 ::1 ".to_owned()),
        (1024u16..65000).prop_map(|p| format!("m=audio {p} RTP/AVP 0 8 101")),
        Just("a=rtpmap:101 telephone-event/8000".to_owned()),
        Just("a=sendonly".to_owned()),
        Just("a=rtcp:9 IN IP4 0.0.0.0".to_owned()),
        Just(String::new()),
        "[a-z]=[ -~]{0,30}",
        "[ -~]{0,20}",
    ]
}

fn ending_strategy() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\r\n"), Just("\n")]
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((line_strategy(), ending_strategy()), 0..20),
        any::<bool>(),
    )
        .prop_map(|(lines, last_unterminated)| {
            let mut b = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n".to_vec();
            let n = lines.len();
            for (i, (l, e)) in lines.into_iter().enumerate() {
                b.extend_from_slice(l.as_bytes());
                if !(last_unterminated && i + 1 == n) {
                    b.extend_from_slice(e.as_bytes());
                }
            }
            b
        })
}

proptest! {
    #[test]
    fn parse_print_identity(body in body_strategy()) {
        if let Ok(sdp) = Sdp::parse_slice(&body) {
            let printed = sdp.to_bytes();
            prop_assert_eq!(printed.as_ref(), body.as_slice());
            prop_assert_eq!(sdp.len(), body.len());
        }
    }

    #[test]
    fn rewrite_keeps_unrelated_lines(body in body_strategy(), port in 1024u16..65000) {
        let Ok(mut sdp) = Sdp::parse_slice(&body) else { return Ok(()) };
        let before: Vec<Line> = sdp.all_lines().cloned().collect();
        let n = sdp.media_count();
        sdp.set_connection(Scope::Session, "192.0.2.1".parse().unwrap()).unwrap();
        for i in 0..n {
            sdp.set_media_port(i, port).unwrap();
            sdp.set_connection(Scope::Media(i), "192.0.2.2".parse().unwrap()).unwrap();
            sdp.add_attribute(Scope::Media(i), "label", Some("x")).unwrap();
        }
        sdp.add_attribute(Scope::Session, "label", Some("x")).unwrap();
        let touched = |l: &Line| {
            matches!(l.kind(), Some(b'c' | b'm')) || l.text() == b"a=label:x"
        };
        let kept_before: Vec<&Line> = before.iter().filter(|l| !touched(l)).collect();
        let after: Vec<Line> = sdp.all_lines().cloned().collect();
        let kept_after: Vec<&Line> = after.iter().filter(|l| !touched(l)).collect();
        // Texts identical; endings too, except that a previously unterminated last line
        // gains the terminator of the line appended after it.
        prop_assert_eq!(kept_before.len(), kept_after.len());
        for (b, a) in kept_before.iter().zip(&kept_after) {
            prop_assert_eq!(b.text(), a.text());
            prop_assert!(b.ending() == a.ending() || b.ending() == LineEnding::None);
        }
        // Still parses, and the ports are what we set.
        let again = Sdp::parse(sdp.to_bytes()).unwrap();
        for m in again.media() {
            prop_assert_eq!(m.media_line().port, port);
        }
    }

    #[test]
    fn parse_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Sdp::parse_slice(&body).map(|s| MediaPlan::from_sdp(&s));
    }

    #[test]
    fn anchor_never_panics(body in body_strategy()) {
        if let Ok(sdp) = Sdp::parse_slice(&body) {
            let pairs: Vec<_> = (0..sdp.media_count()).map(|i| PortPair::from_rtp(30000 + 2 * i as u16)).collect();
            let la = LocalAnchor { addr: "203.0.113.1".parse().unwrap(), ports: &pairs };
            let out = anchor(sdp, &la, &mut OriginState::new()).unwrap();
            prop_assert!(Sdp::parse(out.body).is_ok());
        }
    }
}

#[test]
fn plan_socket_addresses_for_ipv4_literal() {
    let sdp = parse(&crlf(TELEPHONE_EVENT_OFFER));
    let plan = MediaPlan::from_sdp(&sdp);
    let want: SocketAddr = "192.0.2.10:49170".parse().unwrap();
    assert_eq!(plan.streams[0].remote, Some(want));
}
