//! The recording client against scripted SRSs on a virtual clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::core::sip::{build_response, SipMessage, StatusCode};

const SRS0: &str = "10.0.0.8:5060";
const SRS1: &str = "10.0.0.9:5060";
const LOCAL: &str = "10.0.0.1:5099";

/// The virtual clock's origin (the only real clock read: an arbitrary epoch).
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn client() -> Src<u64> {
    client_with(None)
}

fn client_with(keepalive: Option<Duration>) -> Src<u64> {
    Src::new(client_config(keepalive))
}

fn client_config(keepalive: Option<Duration>) -> SrcConfig {
    let t = |uri: &str, a: &str| SrsTarget {
        uri: uri.into(),
        addr: addr(a),
        local: addr(LOCAL),
        transport: SrsTransport::Udp,
    };
    SrcConfig {
        targets: vec![t("sip:srs@10.0.0.8", SRS0), t("sip:srs@10.0.0.9", SRS1)],
        timeout: Duration::from_millis(2000),
        timers: Timers::default(),
        keepalive,
        srtp: false,
    }
}

fn info() -> RecordingInfo {
    RecordingInfo {
        customer: "h:aaaaaaaaaaaa".into(),
        agent: "h:bbbbbbbbbbbb".into(),
        start_unix_ms: 1_700_000_000_000,
    }
}

/// Everything sent so far, parsed, with its destination.
fn sent(c: &mut Src<u64>) -> Vec<(SocketAddr, SipMessage)> {
    let mut v = Vec::new();
    while let Some(t) = c.poll_transmit() {
        v.push((
            t.dest,
            SipMessage::parse(t.payload).expect("we send valid SIP"),
        ));
    }
    v
}

fn events(c: &mut Src<u64>) -> Vec<SrcEvent> {
    let mut v = Vec::new();
    while let Some((k, e)) = c.poll_event() {
        assert_eq!(k, 7);
        v.push(e);
    }
    v
}

fn method(m: &SipMessage) -> String {
    m.method().map(|m| m.to_string()).unwrap_or_default()
}

const ANSWER: &str = "v=0\r\no=srs 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
    m=audio 6000 RTP/AVP 0\r\na=label:1\r\na=recvonly\r\n\
    m=audio 6002 RTP/AVP 0\r\na=label:2\r\na=recvonly\r\n";

fn reply(req: &SipMessage, code: u16, sdp: Option<&str>) -> Bytes {
    let r = build_response(req, StatusCode::new(code).expect("code"), "x").expect("response");
    let mut e = r.edit().add_header(b"Contact", b"<sip:rec@10.0.0.9:5060>");
    if let Some(sdp) = sdp {
        e = e
            .add_header(b"Content-Type", b"application/sdp")
            .set_body(Bytes::copy_from_slice(sdp.as_bytes()));
    }
    e.finish().expect("edit").as_bytes().clone()
}

/// Run every timer until nothing is left; each deadline must lie after the instant just
/// handled (a deadline that does not move would spin the shell's loop).
fn run_timers_out(c: &mut Src<u64>, from: Instant) {
    let mut now = from;
    while let Some(t) = c.poll_timeout() {
        now = t.max(now);
        c.handle_timeout(now);
        sent(c);
        if let Some(next) = c.poll_timeout() {
            assert!(next > now, "deadline stuck at {:?}", next - from);
        }
        assert!(now < from + Duration::from_secs(120), "timers never stop");
    }
}

/// Start call 7 and return the first INVITE.
fn started(c: &mut Src<u64>, now: Instant) -> SipMessage {
    c.start(7, "tok".into(), [4000, 4002], info(), now);
    let out = sent(c);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, addr(SRS0));
    out[0].1.clone()
}

#[test]
fn rfc7866_invite_shape() {
    let mut c = client();
    let inv = started(&mut c, epoch());
    assert_eq!(method(&inv), "INVITE");
    assert_eq!(inv.require(), vec![Bytes::from_static(b"siprec")]);
    let contact = inv.header("Contact").expect("contact");
    assert!(contact.ends_with(b";+sip.src"), "{contact:?}");
    let accept = String::from_utf8_lossy(&inv.header_values("Accept").concat()).into_owned();
    assert!(accept.contains("application/sdp") && accept.contains("application/rs-metadata+xml"));
    let ct = inv.content_type().expect("content type");
    assert!(ct.starts_with(b"multipart/mixed;boundary="));
    let body = String::from_utf8_lossy(&inv.body()).into_owned();
    assert!(body.contains("Content-Type: application/sdp"));
    assert!(body.contains("Content-Type: application/rs-metadata+xml"));
    assert!(body.contains("Content-Disposition: recording-session"));
    assert!(body.contains("m=audio 4000 RTP/AVP 0") && body.contains("m=audio 4002 RTP/AVP 0"));
    assert_eq!(body.matches("a=sendonly").count(), 2);
    assert!(body.contains("c=IN IP4 10.0.0.1"));
    assert!(!body.contains("telephone-event"));
}

#[test]
fn happy_path_ack_media_bye() {
    let mut c = client();
    let t0 = epoch();
    let inv = started(&mut c, t0);
    c.handle_datagram(reply(&inv, 100, None), addr(SRS0), t0);
    c.handle_datagram(reply(&inv, 200, Some(ANSWER)), addr(SRS0), t0);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!(method(&out[0].1), "ACK");
    assert_eq!(out[0].0, addr(SRS0));
    // The ACK goes to the 2xx's Contact, in the dialog (To tag of the 2xx).
    assert_eq!(
        out[0].1.request_uri().map(|u| u.as_bytes().clone()),
        Some(Bytes::from_static(b"sip:rec@10.0.0.9:5060"))
    );
    assert!(out[0].1.to().expect("to").tag().is_some());
    assert_eq!(
        events(&mut c),
        [SrcEvent::Established {
            srs: 0,
            dests: [Some(addr("10.0.0.9:6000")), Some(addr("10.0.0.9:6002"))],
            keys: None,
        }]
    );
    // A retransmitted 200 is ACKed again.
    c.handle_datagram(
        reply(&inv, 200, Some(ANSWER)),
        addr(SRS0),
        t0 + Duration::from_millis(500),
    );
    assert_eq!(method(&sent(&mut c)[0].1), "ACK");
    // No timer fires while established (no failover).
    let later = t0 + Duration::from_secs(10);
    c.handle_timeout(later);
    assert!(sent(&mut c).is_empty() && events(&mut c).is_empty());
    // Call end: BYE, then the session goes once its answer came.
    c.end(7, later);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1);
    let bye = &out[0].1;
    assert_eq!(method(bye), "BYE");
    assert_eq!(bye.cseq().expect("cseq").seq, 2);
    c.handle_datagram(reply(bye, 200, None), addr(SRS0), later);
    assert!(events(&mut c).is_empty());
    // Forgotten once the BYE transaction's linger (timer K, T4) ran out.
    let k = c.poll_timeout().expect("timer K");
    assert_eq!(k, later + Duration::from_secs(5));
    c.handle_timeout(k);
    assert!(sent(&mut c).is_empty());
    assert_eq!(c.sessions(), 0, "session forgotten after the BYE's answer");
}

#[test]
fn timeout_failover_retransmits_then_tries_the_next_srs_without_cancel() {
    let mut c = client();
    let t0 = epoch();
    let inv = started(&mut c, t0);
    let mut retransmits = 0;
    while let Some(t) = c.poll_timeout() {
        if t >= t0 + Duration::from_millis(2000) {
            break;
        }
        c.handle_timeout(t);
        for (dest, m) in sent(&mut c) {
            assert_eq!(dest, addr(SRS0));
            assert_eq!(
                m.as_bytes(),
                inv.as_bytes(),
                "timer A resends the same INVITE"
            );
            retransmits += 1;
        }
    }
    assert_eq!(retransmits, 2, "timer A at 500 ms and 1500 ms");
    assert!(events(&mut c).is_empty());
    let now = t0 + Duration::from_millis(2000);
    assert_eq!(c.poll_timeout(), Some(now));
    c.handle_timeout(now);
    assert_eq!(
        events(&mut c),
        [SrcEvent::FailedOver {
            from: 0,
            reason: FailoverReason::Timeout
        }]
    );
    let out = sent(&mut c);
    assert_eq!(out.len(), 1, "no CANCEL without a provisional answer");
    assert_eq!(out[0].0, addr(SRS1));
    let inv1 = out[0].1.clone();
    assert_eq!(method(&inv1), "INVITE");
    assert_ne!(inv1.call_id().ok(), inv.call_id().ok());
    // The abandoned SRS stays silent: no more retransmissions to it.
    c.handle_datagram(reply(&inv1, 200, Some(ANSWER)), addr(SRS1), now);
    assert!(matches!(
        events(&mut c)[..],
        [SrcEvent::Established { srs: 1, .. }]
    ));
    let later = now + Duration::from_secs(5);
    c.handle_timeout(later);
    assert!(sent(&mut c)
        .iter()
        .all(|(d, m)| *d != addr(SRS0) && method(m) != "INVITE"));
}

#[test]
fn proceeding_srs_that_times_out_is_cancelled_and_its_487_acked() {
    let mut c = client();
    let t0 = epoch();
    let inv = started(&mut c, t0);
    c.handle_datagram(reply(&inv, 180, None), addr(SRS0), t0);
    assert!(sent(&mut c).is_empty());
    let now = t0 + Duration::from_millis(2000);
    c.handle_timeout(now);
    let out = sent(&mut c);
    let methods: Vec<(SocketAddr, String)> = out.iter().map(|(d, m)| (*d, method(m))).collect();
    assert!(
        methods.contains(&(addr(SRS0), "CANCEL".into())),
        "{methods:?}"
    );
    assert!(
        methods.contains(&(addr(SRS1), "INVITE".into())),
        "{methods:?}"
    );
    let cancel = &out
        .iter()
        .find(|(_, m)| method(m) == "CANCEL")
        .expect("cancel")
        .1;
    assert_eq!(cancel.call_id().ok(), inv.call_id().ok());
    assert_eq!(cancel.top_via().ok(), inv.top_via().ok());
    c.handle_datagram(reply(cancel, 200, None), addr(SRS0), now);
    c.handle_datagram(reply(&inv, 487, None), addr(SRS0), now);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!(method(&out[0].1), "ACK");
    assert_eq!(out[0].0, addr(SRS0));
    assert_eq!(out[0].1.cseq().expect("cseq").seq, 1);
    // The cancelled attempt lingers (timer D) without spinning; then all is forgotten.
    c.end(7, now);
    sent(&mut c);
    run_timers_out(&mut c, now);
    assert_eq!(c.sessions(), 0);
}

#[test]
fn server_error_fails_over_at_once_and_all_failing_asks_for_the_fallback() {
    let mut c = client();
    let t0 = epoch();
    let inv = started(&mut c, t0);
    c.handle_datagram(reply(&inv, 503, None), addr(SRS0), t0);
    let out = sent(&mut c);
    let methods: Vec<(SocketAddr, String)> = out.iter().map(|(d, m)| (*d, method(m))).collect();
    assert_eq!(
        methods,
        [(addr(SRS0), "ACK".into()), (addr(SRS1), "INVITE".into())]
    );
    assert_eq!(
        events(&mut c),
        [SrcEvent::FailedOver {
            from: 0,
            reason: FailoverReason::Rejected(StatusCode::SERVICE_UNAVAILABLE)
        }]
    );
    // The second one rejects too (a 4xx counts: any non-2xx final).
    let inv1 = out[1].1.clone();
    c.handle_datagram(reply(&inv1, 488, None), addr(SRS1), t0);
    assert_eq!(
        events(&mut c),
        [
            SrcEvent::FailedOver {
                from: 1,
                reason: FailoverReason::Rejected(StatusCode::new(488).expect("488"))
            },
            SrcEvent::AllFailed
        ]
    );
    assert_eq!(method(&sent(&mut c)[0].1), "ACK");
    // After the call ends and the linger timers run out, nothing is left.
    c.end(7, t0);
    run_timers_out(&mut c, t0);
    assert_eq!(c.sessions(), 0);
    assert!(events(&mut c).is_empty());
}

#[test]
fn all_timing_out_fails_after_each_timeout() {
    let mut c = client();
    let t0 = epoch();
    started(&mut c, t0);
    let mut seen = Vec::new();
    let mut now = t0;
    while seen.last() != Some(&SrcEvent::AllFailed) {
        now = c.poll_timeout().expect("a deadline while inviting");
        c.handle_timeout(now);
        sent(&mut c);
        seen.extend(events(&mut c));
    }
    assert_eq!(now, t0 + Duration::from_millis(4000));
    assert_eq!(seen.len(), 3);
}

#[test]
fn bye_from_the_srs_is_answered_and_reported_once() {
    let mut c = client();
    let t0 = epoch();
    let inv = started(&mut c, t0);
    c.handle_datagram(reply(&inv, 200, Some(ANSWER)), addr(SRS0), t0);
    sent(&mut c);
    events(&mut c);
    let ack_to_tag = {
        let r = SipMessage::parse(reply(&inv, 200, Some(ANSWER))).expect("reply");
        r.header("To").expect("to")
    };
    let call_id = String::from_utf8_lossy(&inv.call_id().expect("call id")).into_owned();
    let bye = format!(
        "BYE sip:callmask@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {SRS0};branch=z9hG4bKsrs1\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        String::from_utf8_lossy(&ack_to_tag),
        String::from_utf8_lossy(&inv.header("From").expect("from")),
    );
    c.handle_datagram(Bytes::from(bye), addr(SRS0), t0);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.status(), Some(StatusCode::OK));
    assert_eq!(events(&mut c), [SrcEvent::RemoteBye]);
    // Ending the call afterwards sends no BYE of ours.
    c.end(7, t0);
    assert!(sent(&mut c).is_empty());
    assert_eq!(c.sessions(), 0);
}

#[test]
fn a_late_2xx_from_an_abandoned_srs_is_acked_and_ended() {
    let mut c = client();
    let t0 = epoch();
    let inv = started(&mut c, t0);
    let now = t0 + Duration::from_millis(2000);
    c.handle_timeout(now);
    sent(&mut c);
    events(&mut c);
    c.handle_datagram(reply(&inv, 200, Some(ANSWER)), addr(SRS0), now);
    let out = sent(&mut c);
    let methods: Vec<(SocketAddr, String)> = out.iter().map(|(d, m)| (*d, method(m))).collect();
    assert_eq!(
        methods,
        [(addr(SRS0), "ACK".into()), (addr(SRS0), "BYE".into())]
    );
    assert!(events(&mut c).is_empty(), "the late session is not used");
}

#[test]
fn unusable_answer_is_ended_and_fails_over() {
    let mut c = client();
    let t0 = epoch();
    let inv = started(&mut c, t0);
    let rejected = "v=0\r\no=srs 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n\
        m=audio 0 RTP/AVP 0\r\nm=audio 0 RTP/AVP 0\r\n";
    c.handle_datagram(reply(&inv, 200, Some(rejected)), addr(SRS0), t0);
    let mut methods: Vec<(SocketAddr, String)> =
        sent(&mut c).iter().map(|(d, m)| (*d, method(m))).collect();
    methods.sort();
    assert_eq!(
        methods,
        [
            (addr(SRS0), "ACK".into()),
            (addr(SRS0), "BYE".into()),
            (addr(SRS1), "INVITE".into())
        ]
    );
    assert_eq!(
        events(&mut c),
        [SrcEvent::FailedOver {
            from: 0,
            reason: FailoverReason::BadAnswer(BadAnswer::NoStream)
        }]
    );
}

#[test]
fn stray_requests_get_481_and_garbage_is_ignored() {
    let mut c = client();
    let t0 = epoch();
    started(&mut c, t0);
    c.handle_datagram(Bytes::from_static(b"\x00\x01garbage"), addr(SRS0), t0);
    let bye = "BYE sip:x@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.8;branch=z9hG4bKq\r\n\
        From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: nope\r\nCSeq: 1 BYE\r\n\
        Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    c.handle_datagram(Bytes::from_static(bye.as_bytes()), addr(SRS0), t0);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.status().map(StatusCode::as_u16), Some(481));
    assert!(events(&mut c).is_empty());
}

#[test]
fn ending_while_inviting_gives_up_quietly() {
    let mut c = client();
    let t0 = epoch();
    started(&mut c, t0);
    c.end(7, t0 + Duration::from_millis(100));
    assert!(sent(&mut c).is_empty());
    assert!(events(&mut c).is_empty());
    // No retransmission, no failover afterwards.
    while let Some(t) = c.poll_timeout() {
        c.handle_timeout(t);
        assert!(sent(&mut c).is_empty());
    }
    assert!(events(&mut c).is_empty());
    assert_eq!(c.sessions(), 0);
}

/// An established session with keep-alives every 10 s: (client, INVITE, when established).
fn established_with_keepalive() -> (Src<u64>, SipMessage, Instant) {
    let mut c = client_with(Some(Duration::from_secs(10)));
    let t0 = epoch();
    let inv = started(&mut c, t0);
    c.handle_datagram(reply(&inv, 200, Some(ANSWER)), addr(SRS0), t0);
    sent(&mut c);
    assert!(matches!(events(&mut c)[..], [SrcEvent::Established { .. }]));
    (c, inv, t0)
}

/// The keep-alive the client sends when its timer fires at `at`.
fn ping(c: &mut Src<u64>, at: Instant) -> SipMessage {
    // Other timers (an answered OPTIONS' linger) may come first; they send nothing.
    while let Some(t) = c.poll_timeout().filter(|&t| t < at) {
        c.handle_timeout(t);
        assert!(sent(c).is_empty());
    }
    assert_eq!(c.poll_timeout(), Some(at), "keep-alive timer");
    c.handle_timeout(at);
    let out = sent(c);
    assert_eq!(out.len(), 1, "one OPTIONS");
    assert_eq!(out[0].0, addr(SRS0));
    assert_eq!(method(&out[0].1), "OPTIONS");
    out[0].1.clone()
}

#[test]
fn keepalive_options_go_in_dialog_and_an_answer_keeps_the_session() {
    let (mut c, inv, t0) = established_with_keepalive();
    let p1 = ping(&mut c, t0 + Duration::from_secs(10));
    assert_eq!(p1.cseq().expect("cseq").seq, 2);
    assert_eq!(p1.call_id().ok(), inv.call_id().ok());
    assert!(p1.to().expect("to").tag().is_some(), "in the dialog");
    c.handle_datagram(
        reply(&p1, 200, None),
        addr(SRS0),
        t0 + Duration::from_secs(10),
    );
    assert!(events(&mut c).is_empty());
    // The next one 10 s after the answer, with the next CSeq; then the BYE after both.
    let p2 = ping(&mut c, t0 + Duration::from_secs(20));
    assert_eq!(p2.cseq().expect("cseq").seq, 3);
    // Any final answer but 408/481 proves the SRS is there (it may not do OPTIONS).
    c.handle_datagram(
        reply(&p2, 405, None),
        addr(SRS0),
        t0 + Duration::from_secs(20),
    );
    assert!(events(&mut c).is_empty());
    c.end(7, t0 + Duration::from_secs(25));
    let out = sent(&mut c);
    assert_eq!(method(&out[0].1), "BYE");
    assert_eq!(out[0].1.cseq().expect("cseq").seq, 4);
}

#[test]
fn an_srs_that_stops_answering_keepalives_is_lost_and_ended() {
    let (mut c, _inv, t0) = established_with_keepalive();
    let _p = ping(&mut c, t0 + Duration::from_secs(10));
    // Retransmissions of the OPTIONS until the failover timeout (2 s) runs out.
    let due = t0 + Duration::from_secs(12);
    while let Some(now) = c.poll_timeout() {
        if now >= due {
            break;
        }
        c.handle_timeout(now);
        assert!(sent(&mut c).iter().all(|(_, m)| method(m) == "OPTIONS"));
        assert!(events(&mut c).is_empty(), "not lost before {:?}", now - t0);
    }
    assert_eq!(c.poll_timeout(), Some(due));
    c.handle_timeout(due);
    assert_eq!(events(&mut c), [SrcEvent::Lost { srs: 0 }]);
    let out = sent(&mut c);
    assert!(
        out.iter().any(|(_, m)| method(m) == "BYE"),
        "a BYE in case it is deaf only"
    );
    // Ending the call afterwards reports nothing more, and the session goes away.
    c.end(7, due);
    assert!(events(&mut c).is_empty());
    run_timers_out(&mut c, due);
    assert_eq!(c.sessions(), 0);
}

#[test]
fn a_481_to_a_keepalive_is_lost_at_once() {
    let (mut c, _inv, t0) = established_with_keepalive();
    let at = t0 + Duration::from_secs(10);
    let p = ping(&mut c, at);
    c.handle_datagram(reply(&p, 481, None), addr(SRS0), at);
    assert_eq!(events(&mut c), [SrcEvent::Lost { srs: 0 }]);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!(method(&out[0].1), "BYE");
}

#[test]
fn no_keepalive_without_the_setting_and_start_from_skips_earlier_srss() {
    let mut c = client();
    let t0 = epoch();
    c.start_from(7, "tok".into(), [4000, 4002], info(), 1, t0);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, addr(SRS1), "the SRS after the lost one");
    assert_eq!(c.targets(), 2);
    let inv = out[0].1.clone();
    c.handle_datagram(reply(&inv, 200, Some(ANSWER)), addr(SRS1), t0);
    sent(&mut c);
    assert!(matches!(
        events(&mut c)[..],
        [SrcEvent::Established { srs: 1, .. }]
    ));
    // Established without keep-alives: no timer at all.
    assert_eq!(c.poll_timeout(), None);
}

/// With `srtp`: the offer is RTP/SAVP with one key per stream; an SRS that takes the streams
/// as plain RTP is failed over (never sent plaintext); one that answers RTP/SAVP is used,
/// and the keys it is given are the ones its offer carried, fresh per attempt.
#[test]
fn srtp_offers_keys_and_a_plain_answer_fails_over() {
    let mut c = Src::new(SrcConfig {
        srtp: true,
        ..client_config(None)
    });
    let t0 = epoch();
    let inv = started(&mut c, t0);
    let body = String::from_utf8_lossy(&inv.body()).into_owned();
    assert_eq!(body.matches("RTP/SAVP 0").count(), 2, "{body}");
    let keys0: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"))
        .collect();
    assert_eq!(keys0.len(), 2);
    assert_ne!(keys0[0], keys0[1], "one key per stream");
    // SRS 0 takes the streams as plain RTP: not usable.
    c.handle_datagram(reply(&inv, 200, Some(ANSWER)), addr(SRS0), t0);
    let out = sent(&mut c);
    let inv1 = out
        .iter()
        .find(|(d, m)| *d == addr(SRS1) && method(m) == "INVITE")
        .map(|(_, m)| m.clone())
        .expect("the next SRS invited");
    assert_eq!(
        events(&mut c),
        [SrcEvent::FailedOver {
            from: 0,
            reason: FailoverReason::BadAnswer(BadAnswer::NotSrtp)
        }]
    );
    let body1 = String::from_utf8_lossy(&inv1.body()).into_owned();
    assert!(
        keys0.iter().all(|k| !body1.contains(k)),
        "fresh keys per attempt"
    );
    let savp = ANSWER.replace("RTP/AVP", "RTP/SAVP").replace(
        "a=recvonly",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=recvonly",
    );
    c.handle_datagram(reply(&inv1, 200, Some(&savp)), addr(SRS1), t0);
    sent(&mut c);
    match &events(&mut c)[..] {
        [SrcEvent::Established {
            srs: 1,
            keys: Some(k),
            ..
        }] => {
            for key in k {
                let line = format!("a=crypto:{}", key.crypto_value(1));
                assert!(body1.contains(&line), "the offered key is the one used");
            }
        }
        other => panic!("{other:?}"),
    }
}

/// An SRS over TCP: the INVITE carries a TCP Via and a `transport=tcp` Contact and is not
/// retransmitted (reliable transport); the failover timeout still applies.
#[test]
fn tcp_srs_gets_a_tcp_via_and_no_retransmissions() {
    let mut cfg = client_config(None);
    for t in &mut cfg.targets {
        t.transport = SrsTransport::Tcp;
    }
    let mut c = Src::new(cfg);
    let t0 = epoch();
    let inv = started(&mut c, t0);
    let via = String::from_utf8_lossy(&inv.header("Via").expect("via")).into_owned();
    assert!(via.starts_with("SIP/2.0/TCP "), "{via}");
    let contact = String::from_utf8_lossy(&inv.header("Contact").expect("contact")).into_owned();
    assert!(contact.contains(";transport=tcp>"), "{contact}");
    // Nothing is resent before the failover timeout moves on to the next SRS.
    let mut resent = 0;
    while let Some(t) = c.poll_timeout() {
        if t > t0 + Duration::from_millis(2000) {
            break;
        }
        c.handle_timeout(t);
        for (dest, m) in sent(&mut c) {
            if dest == addr(SRS0) && method(&m) == "INVITE" {
                resent += 1;
            }
        }
    }
    assert_eq!(resent, 0, "an INVITE over TCP is not retransmitted");
}
