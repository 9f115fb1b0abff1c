//! Deterministic simulation of the routing core: a UAC on the PBX side, a UAS on the agents'
//! side, callmask's core in between, virtual time. Asserts bytes and events.
// The virtual clock's base is read once per test; everything after is offsets.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::calls::EARLY_CALL_TTL;
use super::*;
use crate::core::ports::{PortAllocator, PortRange};
use crate::core::side::BySide;
use crate::core::sip::{parse_datagram, Frame, Limits, MaxForwards, SipMessage};

const PBX_UA: &str = "127.0.0.1:5070";
const AGENT_UA: &str = "127.0.0.1:5080";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn core() -> ProxyCore {
    let config = ProxyConfig {
        pbx: SideConfig {
            sip_addr: addr("127.0.0.1:5060"),
            media_ip: "127.0.0.1".parse().expect("ip"),
            peer: Some(addr(PBX_UA)),
        },
        agents: SideConfig {
            sip_addr: addr("127.0.0.1:5062"),
            media_ip: "127.0.0.1".parse().expect("ip"),
            peer: Some(addr(AGENT_UA)),
        },
        limits: Limits::default(),
        secret: 42,
        codecs: config::types::MediaCodec::DECODABLE.to_vec(),
        undecodable: config::types::UndecodableMode::Reject,
        srtp: crate::core::side::BySide::new(
            config::types::SrtpMode::Mirror,
            config::types::SrtpMode::Mirror,
        ),
        registration_key: [7; 32],
    };
    let range = PortRange::new(30000, 30099).expect("range");
    ProxyCore::new(config, PortAllocator::new(range, Duration::from_secs(5)))
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    )
}

fn request(
    method: &str,
    branch: &str,
    to_tag: Option<&str>,
    cseq: u32,
    body: Option<&str>,
) -> Bytes {
    let body = body.unwrap_or("");
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    let cseq_method = method;
    Bytes::from(format!(
        "{method} sip:agent@127.0.0.1:5062 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PBX_UA};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:pbx@127.0.0.1>;tag=abc\r\n\
         To: <sip:agent@127.0.0.1>{to_tag}\r\n\
         Call-ID: call-1@test\r\n\
         CSeq: {cseq} {cseq_method}\r\n\
         Contact: <sip:pbx@{PBX_UA}>\r\n\
         X-Bench-Call: 7\r\n\
         {ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// The response a UAS builds for a forwarded request: copy the Vias, add a to-tag.
fn response_to(req: &SipMessage, code: u16, body: Option<&str>) -> Bytes {
    let body = body.unwrap_or("");
    let mut head = format!("SIP/2.0 {code} Whatever\r\n");
    for v in req.header_values("Via") {
        head.push_str(&format!("Via: {}\r\n", String::from_utf8_lossy(&v)));
    }
    for name in ["From", "Call-ID", "CSeq"] {
        let v = req.header(name).expect("header present");
        head.push_str(&format!("{name}: {}\r\n", String::from_utf8_lossy(&v)));
    }
    let to = req.header("To").expect("To");
    let to = String::from_utf8_lossy(&to);
    if to.contains("tag=") {
        head.push_str(&format!("To: {to}\r\n"));
    } else {
        head.push_str(&format!("To: {to};tag=uas1\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/sdp\r\n");
    }
    head.push_str(&format!(
        "Contact: <sip:agent@{AGENT_UA}>\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    Bytes::from(head)
}

fn parse(b: &Bytes) -> SipMessage {
    match parse_datagram(b.clone(), &Limits::default()).expect("valid SIP") {
        Frame::Message(m) => m,
        other => panic!("not a message: {other:?}"),
    }
}

fn one_transmit(core: &mut ProxyCore) -> Transmit {
    let t = core.poll_transmit().expect("a transmit");
    assert!(core.poll_transmit().is_none(), "exactly one transmit");
    t
}

/// All queued transmits.
fn transmits(core: &mut ProxyCore) -> Vec<Transmit> {
    std::iter::from_fn(|| core.poll_transmit()).collect()
}

fn status_of(t: &Transmit) -> Option<u16> {
    parse(&t.payload).status().map(StatusCode::as_u16)
}

/// A stateful proxy answers an INVITE with 100 Trying upstream before it forwards it
/// (RFC 3261 §16.7 / §17.2.1): check the 100, return the forwarded INVITE.
fn trying_then_forward(core: &mut ProxyCore) -> Transmit {
    let ts = transmits(core);
    assert_eq!(ts.len(), 2, "100 Trying and the forwarded INVITE: {ts:?}");
    assert_eq!(status_of(&ts[0]), Some(100), "100 Trying first");
    assert_eq!(
        ts[0].side,
        ts[1].side.other(),
        "100 goes back where the INVITE came from"
    );
    ts[1].clone()
}

fn drain_events(core: &mut ProxyCore) -> Vec<ProxyEvent> {
    std::iter::from_fn(|| core.poll_event()).collect()
}

fn body_str(m: &SipMessage) -> String {
    String::from_utf8_lossy(&m.body()).into_owned()
}

#[test]
fn basic_call_anchors_media_and_returns_ports() {
    let mut c = core();
    let t0 = Instant::now();
    let offer = sdp("10.1.1.1", 4000);
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("INVITE", "z9hG4bKinv1", None, 1, Some(&offer)),
        t0,
    );
    let fwd = trying_then_forward(&mut c);
    assert_eq!((fwd.side, fwd.dest), (Side::Agents, addr(AGENT_UA)));
    let inv = parse(&fwd.payload);
    // Our Via on top, Max-Forwards decremented, two Record-Routes, unknown header kept.
    let vias = inv.vias().expect("vias");
    assert_eq!(vias.len(), 2);
    assert!(vias[0].branch().expect("branch").starts_with(b"z9hG4bKcm"));
    assert_eq!(inv.max_forwards().expect("mf"), Some(MaxForwards(69)));
    assert_eq!(inv.record_routes().expect("rr").len(), 2);
    assert_eq!(inv.header("X-Bench-Call").as_deref(), Some(&b"7"[..]));
    // The offer now points at callmask's agents-side port.
    let b = body_str(&inv);
    assert!(b.contains("c=IN IP4 127.0.0.1"), "{b}");
    assert!(!b.contains("10.1.1.1 \r\n") && !b.contains("c=IN IP4 10.1.1.1"));
    assert!(b.contains("a=rtpmap:101 telephone-event/8000"));
    let ev = drain_events(&mut c);
    assert!(ev.iter().any(|e| matches!(
        e,
        ProxyEvent::CallStarted {
            caller_side: Side::Pbx,
            ..
        }
    )));
    let Some(ProxyEvent::Media(MediaCommand::Upsert { streams, .. })) = ev
        .iter()
        .find(|e| matches!(e, ProxyEvent::Media(_)))
        .cloned()
    else {
        panic!("media upsert expected: {ev:?}");
    };
    assert_eq!(streams[0].pbx_remote, Some(addr("10.1.1.1:4000")));
    assert_eq!(streams[0].agents_remote, None);
    assert!(b.contains(&format!(
        "m=audio {} RTP/AVP",
        streams[0].agents_local.rtp()
    )));
    assert_eq!(c.ports().in_use(), 2);

    // 180 then 200 with the answer.
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 180, None),
        t0,
    );
    let ringing = one_transmit(&mut c);
    assert_eq!((ringing.side, ringing.dest), (Side::Pbx, addr(PBX_UA)));
    assert_eq!(
        parse(&ringing.payload).vias().expect("vias").len(),
        1,
        "our Via removed"
    );
    let answer = sdp("10.2.2.2", 5000);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 200, Some(&answer)),
        t0,
    );
    let ok = parse(&one_transmit(&mut c).payload);
    let ev = drain_events(&mut c);
    assert!(ev
        .iter()
        .any(|e| matches!(e, ProxyEvent::CallAnswered { .. })));
    let Some(ProxyEvent::Media(MediaCommand::Upsert { streams, .. })) = ev
        .iter()
        .find(|e| matches!(e, ProxyEvent::Media(_)))
        .cloned()
    else {
        panic!("media upsert expected");
    };
    assert_eq!(streams[0].agents_remote, Some(addr("10.2.2.2:5000")));
    assert!(body_str(&ok).contains(&format!("m=audio {} RTP/AVP", streams[0].pbx_local.rtp())));

    // ACK and BYE from the PBX side, 200 to BYE from the agent.
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("ACK", "z9hG4bKack1", Some("uas1"), 1, None),
        t0,
    );
    assert_eq!(one_transmit(&mut c).dest, addr(AGENT_UA));
    let bye = bye_from_pbx_answered(&mut c, "z9hG4bKbye1", "uas1", 2, t0);
    assert!(
        bye.record_routes().expect("rr").is_empty(),
        "no RR on in-dialog requests"
    );
    let ev = drain_events(&mut c);
    assert!(ev
        .iter()
        .any(|e| matches!(e, ProxyEvent::Media(MediaCommand::Remove { .. }))));
    assert!(ev.iter().any(|e| matches!(
        e,
        ProxyEvent::CallEnded {
            outcome: CallOutcome::Completed,
            ..
        }
    )));
    assert_eq!(c.active_calls(), 0);
    assert_eq!(c.ports().in_use(), 0, "ports returned");
}

#[test]
fn max_forwards_zero_gets_483_and_loops_get_482() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = String::from_utf8_lossy(&request("OPTIONS", "z9hG4bKo1", None, 1, None))
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(inv), t0);
    let r = parse(&one_transmit(&mut c).payload);
    assert_eq!(r.status().map(StatusCode::as_u16), Some(483));

    // Send a request through, then feed the forwarded copy back in on the same side.
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("OPTIONS", "z9hG4bKo2", None, 1, None),
        t0,
    );
    let fwd = one_transmit(&mut c);
    let looped = String::from_utf8_lossy(&fwd.payload).replacen(
        "Via: SIP/2.0/UDP 127.0.0.1:5062",
        "Via: SIP/2.0/UDP 127.0.0.1:9999;branch=z9hG4bKo2\r\nVia: SIP/2.0/UDP 127.0.0.1:5062",
        1,
    );
    c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(looped), t0);
    let r = parse(&one_transmit(&mut c).payload);
    assert_eq!(r.status().map(StatusCode::as_u16), Some(482));
}

#[test]
fn garbage_gets_400_or_is_dropped_never_panics() {
    let mut c = core();
    let t0 = Instant::now();
    let bad = "INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKb\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: many\r\nContent-Length: 0\r\n\r\n";
    c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(bad), t0);
    let r = parse(&one_transmit(&mut c).payload);
    assert_eq!(r.status().map(StatusCode::as_u16), Some(400));
    for junk in [&b"\x00\x01\x02"[..], b"SIP/2.0 200 OK\r\n\r\n", b"hello"] {
        c.handle_datagram(Side::Agents, addr(AGENT_UA), Bytes::from_static(junk), t0);
        while c.poll_transmit().is_some() {}
    }
    assert!(drain_events(&mut c)
        .iter()
        .any(|e| matches!(e, ProxyEvent::Rejected { .. })));
}

#[test]
fn late_offer_is_anchored_in_200_and_ack() {
    let mut c = core();
    let t0 = Instant::now();
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("INVITE", "z9hG4bKlo", None, 1, None),
        t0,
    );
    let inv = parse(&trying_then_forward(&mut c).payload);
    assert!(inv.body().is_empty());
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 200, Some(&sdp("10.2.2.2", 5000))),
        t0,
    );
    let ok = parse(&one_transmit(&mut c).payload);
    assert!(body_str(&ok).contains("c=IN IP4 127.0.0.1"));
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request(
            "ACK",
            "z9hG4bKack",
            Some("uas1"),
            1,
            Some(&sdp("10.1.1.1", 4000)),
        ),
        t0,
    );
    let ack = parse(&one_transmit(&mut c).payload);
    assert!(body_str(&ack).contains("c=IN IP4 127.0.0.1"));
    let ups: Vec<_> = drain_events(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            ProxyEvent::Media(MediaCommand::Upsert { streams, .. }) => Some(streams),
            _ => None,
        })
        .collect();
    let last = ups.last().expect("upserts");
    assert_eq!(last[0].pbx_remote, Some(addr("10.1.1.1:4000")));
    assert_eq!(last[0].agents_remote, Some(addr("10.2.2.2:5000")));
}

#[test]
fn unanswered_invite_times_out_and_frees_ports() {
    let mut c = core();
    let t0 = Instant::now();
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("INVITE", "z9hG4bKto", None, 1, Some(&sdp("10.1.1.1", 4000))),
        t0,
    );
    let _ = trying_then_forward(&mut c);
    let due = c.poll_timeout().expect("a timer");
    assert!(due <= t0 + EARLY_CALL_TTL);
    c.handle_timeout(t0 + EARLY_CALL_TTL);
    assert_eq!(c.active_calls(), 0);
    assert_eq!(c.ports().in_use(), 0);
}

fn registration_core() -> ProxyCore {
    let mut c = core();
    c.config.agents.peer = None;
    // Registration mode admits phones from `agents.allow` (closed otherwise).
    let mut policy = AccessPolicy::default();
    policy.allow[Side::Agents] =
        AllowList::Nets(vec![
            config::types::Cidr::try_from("127.0.0.0/8").expect("literal")
        ]);
    c.set_access(policy);
    c
}

/// Issue 13: an INVITE from a host that is not the side's peer is answered 403 statelessly
/// and never reaches the other side; a response from such a host is dropped unanswered.
#[test]
fn access_control_refuses_strangers_with_403_and_forwards_nothing() {
    let mut c = core();
    let now = Instant::now();
    let stranger = addr("127.0.0.2:5070");
    c.handle_datagram(
        Side::Pbx,
        stranger,
        request(
            "INVITE",
            "z9hG4bKx1",
            None,
            1,
            Some(&sdp("127.0.0.2", 4000)),
        ),
        now,
    );
    let t = one_transmit(&mut c);
    assert_eq!((t.side, t.dest), (Side::Pbx, stranger));
    assert!(t.payload.starts_with(b"SIP/2.0 403 "), "{:?}", t.payload);
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert_eq!(
        events,
        [ProxyEvent::AccessDenied {
            side: Side::Pbx,
            reason: AccessReason::NotAllowed
        }]
    );
    assert_eq!(c.active_calls(), 0);
    assert_eq!(c.transactions(), 0, "no state for a refused source");
    assert_eq!(c.ports().in_use(), 0);
    // The same host on the agents side (not its peer either): a response is dropped silently.
    let resp = Bytes::from_static(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKcmx\r\n\
          From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
          Content-Length: 0\r\n\r\n",
    );
    c.handle_datagram(Side::Agents, stranger, resp, now);
    assert!(c.poll_transmit().is_none());
    assert!(matches!(
        c.poll_event(),
        Some(ProxyEvent::AccessDenied {
            side: Side::Agents,
            ..
        })
    ));
    // The configured peer still gets through.
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request(
            "INVITE",
            "z9hG4bKx2",
            None,
            1,
            Some(&sdp("127.0.0.1", 4000)),
        ),
        now,
    );
    let sent: Vec<_> = std::iter::from_fn(|| c.poll_transmit()).collect();
    assert!(
        sent.iter()
            .any(|t| t.side == Side::Agents && t.payload.starts_with(b"INVITE ")),
        "the peer's INVITE is forwarded"
    );
}

/// Registration mode: a REGISTER from outside `agents.allow` is refused, so no binding (and
/// no route to it) ever exists.
#[test]
fn registration_mode_refuses_register_from_outside_the_allow_list() {
    let mut c = registration_core();
    let mut policy = AccessPolicy::default();
    policy.allow[Side::Agents] = AllowList::Nets(vec![
        config::types::Cidr::try_from("10.0.0.0/8").expect("literal")
    ]);
    c.set_access(policy);
    let now = Instant::now();
    c.handle_datagram(Side::Agents, addr(PHONE), register(600, "z9hG4bKr1"), now);
    let t = one_transmit(&mut c);
    assert_eq!(t.dest, addr(PHONE));
    assert!(t.payload.starts_with(b"SIP/2.0 403 "));
    assert_eq!(c.registrations(), 0);
}

const PHONE: &str = "127.0.0.1:5090";

fn register(expires: u32, branch: &str) -> Bytes {
    Bytes::from(format!(
        "REGISTER sip:pbx.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PHONE};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@pbx.example>;tag=r1\r\n\
         To: <sip:1001@pbx.example>\r\n\
         Call-ID: reg-1@phone\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:1001@192.168.7.7:5060>;expires={expires}\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

/// Registration mode (issue 3): REGISTER through callmask with its own Contact, binding kept,
/// the PBX's INVITE to that Contact reaches the phone, un-REGISTER removes it.
#[test]
fn registration_mode_routes_pbx_calls_to_registered_phone() {
    let mut c = registration_core();
    let t0 = Instant::now();
    c.handle_datagram(Side::Agents, addr(PHONE), register(120, "z9hG4bKr1"), t0);
    let fwd = one_transmit(&mut c);
    assert_eq!((fwd.side, fwd.dest), (Side::Pbx, addr(PBX_UA)));
    let reg = parse(&fwd.payload);
    let contact = reg.contacts().expect("contact").remove(0);
    let token = contact.uri().user().expect("user").clone();
    assert!(token.starts_with(b"rg-"));
    assert_eq!(contact.uri().host().as_ref(), b"127.0.0.1");
    assert_eq!(
        contact.uri().port(),
        Some(5060),
        "callmask's PBX-side address"
    );
    assert_eq!(c.registrations(), 0, "pending until the PBX says 2xx");
    // 200 OK from the PBX, granting 60 s on our contact.
    let ok = String::from_utf8_lossy(&response_to(&reg, 200, None)).replace(
        &format!("Contact: <sip:agent@{AGENT_UA}>"),
        &format!(
            "Contact: <sip:{}@127.0.0.1:5060>;expires=60",
            String::from_utf8_lossy(&token)
        ),
    );
    c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(ok), t0);
    let back = one_transmit(&mut c);
    assert_eq!(back.dest, addr(PHONE), "200 back to the phone");
    // RFC 3261 §10.2.4 (issue 12 item 9): the phone sees its own binding, with the expiry
    // the PBX granted, not callmask's token.
    let back = parse(&back.payload);
    let listed = back.contacts().expect("contacts");
    assert_eq!(listed.len(), 1, "one binding: {listed:?}");
    assert_eq!(
        listed[0].uri().as_bytes().as_ref(),
        b"sip:1001@192.168.7.7:5060"
    );
    assert_eq!(
        listed[0]
            .params()
            .get("expires")
            .flatten()
            .map(|v| v.as_ref()),
        Some(&b"60"[..])
    );
    assert!(!String::from_utf8_lossy(back.as_bytes()).contains("rg-"));
    assert_eq!(c.registrations(), 1);

    // The PBX calls the registered contact.
    let inv = String::from_utf8_lossy(&request(
        "INVITE",
        "z9hG4bKin",
        None,
        1,
        Some(&sdp("10.1.1.1", 4000)),
    ))
    .replace(
        "INVITE sip:agent@127.0.0.1:5062 SIP/2.0",
        &format!(
            "INVITE sip:{}@127.0.0.1:5060 SIP/2.0",
            String::from_utf8_lossy(&token)
        ),
    );
    c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(inv), t0);
    let t = trying_then_forward(&mut c);
    assert_eq!((t.side, t.dest), (Side::Agents, addr(PHONE)));
    let fwd = parse(&t.payload);
    assert_eq!(
        fwd.request_uri().map(|u| u.as_bytes().clone()),
        Some(Bytes::from_static(b"sip:1001@192.168.7.7:5060")),
        "Request-URI is the phone's own Contact"
    );

    // Unknown users get 480 in registration mode.
    let other = String::from_utf8_lossy(&request("INVITE", "z9hG4bKin2", None, 1, None))
        .replace("Call-ID: call-1@test", "Call-ID: call-2@test")
        .replace(
            "INVITE sip:agent@127.0.0.1:5062",
            "INVITE sip:rg-nobody@127.0.0.1:5060",
        );
    c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(other), t0);
    let r = parse(&one_transmit(&mut c).payload);
    assert_eq!(r.status().map(StatusCode::as_u16), Some(480));

    // Un-REGISTER.
    c.handle_datagram(Side::Agents, addr(PHONE), register(0, "z9hG4bKr2"), t0);
    let reg = parse(&one_transmit(&mut c).payload);
    c.handle_datagram(Side::Pbx, addr(PBX_UA), response_to(&reg, 200, None), t0);
    let back = parse(&one_transmit(&mut c).payload);
    assert!(
        !String::from_utf8_lossy(back.as_bytes()).contains("rg-"),
        "an un-REGISTER's 200 lists no token of ours"
    );
    assert_eq!(c.registrations(), 0);
}

#[test]
fn registration_expires_without_refresh() {
    let mut c = registration_core();
    let t0 = Instant::now();
    c.handle_datagram(Side::Agents, addr(PHONE), register(30, "z9hG4bKr3"), t0);
    let reg = parse(&one_transmit(&mut c).payload);
    c.handle_datagram(Side::Pbx, addr(PBX_UA), response_to(&reg, 200, None), t0);
    let _ = one_transmit(&mut c);
    assert_eq!(
        c.registrations(),
        1,
        "requested expiry used when the 2xx states none"
    );
    c.handle_timeout(t0 + Duration::from_secs(120));
    assert_eq!(c.registrations(), 0);
}

/// TCP: requests leave on the transport they came on, with a TCP Via and `transport=tcp`
/// Record-Routes; the response returns over TCP.
#[test]
fn tcp_requests_forward_over_tcp() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = parse(&request(
        "INVITE",
        "z9hG4bKtcp",
        None,
        1,
        Some(&sdp("10.1.1.1", 4000)),
    ));
    c.handle_stream_message(Side::Pbx, addr(PBX_UA), inv, t0);
    let t = trying_then_forward(&mut c);
    assert_eq!(t.transport, SipTransport::Tcp);
    let fwd = parse(&t.payload);
    assert!(fwd.top_via().expect("via").transport().is_reliable());
    let rr = fwd.header("Record-Route").expect("rr");
    assert!(String::from_utf8_lossy(&rr).contains("transport=tcp"));
    c.handle_stream_message(
        Side::Agents,
        addr(AGENT_UA),
        parse(&response_to(&fwd, 180, None)),
        t0,
    );
    let back = one_transmit(&mut c);
    assert_eq!(
        (back.transport, back.dest),
        (SipTransport::Tcp, addr(PBX_UA))
    );
}

/// Issue 14: a PBX side with `transport = "tls"`, the agents' side plain. A request from the
/// TLS side leaves the agents' side over UDP with a `transport=tls` Record-Route for the PBX
/// side; one toward the TLS side leaves over TLS with a TLS Via; responses go back on the
/// stream they came from.
#[test]
fn tls_side_sends_over_tls_with_tls_via_and_record_route() {
    let mut c = core();
    c.set_tls(BySide::new(true, false));
    let t0 = Instant::now();
    let inv = parse(&request(
        "INVITE",
        "z9hG4bKtls",
        None,
        1,
        Some(&sdp("10.1.1.1", 4000)),
    ));
    c.handle_stream_message(Side::Pbx, addr(PBX_UA), inv, t0);
    let t = trying_then_forward(&mut c);
    assert_eq!(
        t.transport,
        SipTransport::Udp,
        "the agents' side has no TLS"
    );
    let fwd = parse(&t.payload);
    let rrs: Vec<String> = fwd
        .header_values("Record-Route")
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let rrs = rrs.join(",");
    assert!(
        rrs.contains("<sip:127.0.0.1:5060;transport=tls;lr>"),
        "{rrs}"
    );
    assert!(rrs.contains("<sip:127.0.0.1:5062;lr>"), "{rrs}");
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&fwd, 180, None),
        t0,
    );
    let back = one_transmit(&mut c);
    assert_eq!(
        (back.transport, back.dest),
        (SipTransport::Tls, addr(PBX_UA))
    );

    // The other way: a BYE from the agent leaves toward the PBX over TLS, TLS Via.
    let mut c = core();
    c.set_tls(BySide::new(true, false));
    let bye = format!(
        "BYE sip:pbx@{PBX_UA} SIP/2.0\r\nVia: SIP/2.0/UDP {AGENT_UA};branch=z9hG4bKbye\r\n\
         Max-Forwards: 70\r\nFrom: <sip:agent@127.0.0.1>;tag=x\r\nTo: <sip:pbx@127.0.0.1>;tag=y\r\n\
         Call-ID: other@test\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    c.handle_datagram(Side::Agents, addr(AGENT_UA), Bytes::from(bye), t0);
    let t = one_transmit(&mut c);
    assert_eq!((t.transport, t.dest), (SipTransport::Tls, addr(PBX_UA)));
    let via = parse(&t.payload).top_via().expect("via");
    assert_eq!(via.transport(), &crate::core::sip::Transport::Tls);

    // A response routed statelessly by its Via goes to the TLS side over TLS, even when
    // that Via names UDP: never plaintext toward a TLS side.
    let stray = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKcm0000000000000001\r\n\
         Via: SIP/2.0/UDP {PBX_UA};branch=z9hG4bKup\r\nFrom: <sip:pbx@127.0.0.1>;tag=y\r\n\
         To: <sip:agent@127.0.0.1>;tag=x\r\nCall-ID: stray@test\r\nCSeq: 3 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    c.handle_datagram(Side::Agents, addr(AGENT_UA), Bytes::from(stray), t0);
    let t = one_transmit(&mut c);
    assert_eq!((t.transport, t.dest), (SipTransport::Tls, addr(PBX_UA)));
}

/// RFC 5630 §5.3 / RFC 3261 §26.2.2: a `sips:` request is never downgraded. Toward a side
/// without TLS (or arriving without TLS) it is refused 480 with Warning 380 "SIPS Not
/// Allowed"; over TLS on both hops it passes with `sips:` Record-Routes.
#[test]
fn sips_requests_are_refused_rather_than_downgraded() {
    let sips_invite = |branch: &str| {
        let raw = String::from_utf8(
            request("INVITE", branch, None, 1, Some(&sdp("10.1.1.1", 4000))).to_vec(),
        )
        .expect("utf8");
        parse(&Bytes::from(raw.replacen(
            "INVITE sip:agent@",
            "INVITE sips:agent@",
            1,
        )))
    };
    // PBX side TLS, agents plain: refused.
    let mut c = core();
    c.set_tls(BySide::new(true, false));
    let t0 = Instant::now();
    c.handle_stream_message(Side::Pbx, addr(PBX_UA), sips_invite("z9hG4bKs1"), t0);
    let t = one_transmit(&mut c);
    assert_eq!(status_of(&t), Some(480));
    assert_eq!((t.transport, t.dest), (SipTransport::Tls, addr(PBX_UA)));
    let resp = parse(&t.payload);
    let warning = resp.header("Warning").expect("Warning");
    assert_eq!(
        String::from_utf8_lossy(&warning),
        "380 127.0.0.1:5060 \"SIPS Not Allowed\""
    );
    assert_eq!(
        c.active_calls(),
        0,
        "no call started for a refused sips request"
    );

    // Both sides TLS but the request arrived over UDP: refused too.
    let mut c = core();
    c.set_tls(BySide::new(false, true));
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        sips_invite("z9hG4bKs2").as_bytes().clone(),
        t0,
    );
    assert_eq!(status_of(&one_transmit(&mut c)), Some(480));

    // TLS on both hops: forwarded, Record-Routes are sips: URIs.
    let mut c = core();
    c.set_tls(BySide::new(true, true));
    c.handle_stream_message(Side::Pbx, addr(PBX_UA), sips_invite("z9hG4bKs3"), t0);
    let t = trying_then_forward(&mut c);
    assert_eq!(t.transport, SipTransport::Tls);
    let fwd = parse(&t.payload);
    let rr = fwd.header_values("Record-Route");
    let rr: Vec<String> = rr
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(
        rr.join(","),
        "<sips:127.0.0.1:5062;lr>,<sips:127.0.0.1:5060;lr>"
    );
    assert_eq!(
        fwd.request_uri().expect("uri").scheme().as_ref(),
        b"sips",
        "the Request-URI keeps its scheme"
    );
}

// ---------------------------------------------------------------------------------------------
// Transaction-stateful behaviour (RFC 3261 §16 on the §17 machines), on a virtual clock.
// ---------------------------------------------------------------------------------------------

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An initial INVITE from the PBX side, forwarded; returns the forwarded copy.
fn invite_through(c: &mut ProxyCore, branch: &str, t0: Instant) -> SipMessage {
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("INVITE", branch, None, 1, Some(&sdp("10.1.1.1", 4000))),
        t0,
    );
    parse(&trying_then_forward(c).payload)
}

fn outcome(events: &[ProxyEvent]) -> Option<CallOutcome> {
    events.iter().find_map(|e| match e {
        ProxyEvent::CallEnded { outcome, .. } => Some(*outcome),
        _ => None,
    })
}

/// §17.2.1: a retransmitted INVITE is absorbed by the server transaction, which resends its
/// latest response (100, then 180 once forwarded); one call, nothing new downstream.
#[test]
fn invite_retransmission_absorbed_and_latest_provisional_resent() {
    let mut c = core();
    let t0 = Instant::now();
    let raw = request("INVITE", "z9hG4bKrx", None, 1, Some(&sdp("10.1.1.1", 4000)));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw.clone(), t0);
    let inv = parse(&trying_then_forward(&mut c).payload);
    let _ = drain_events(&mut c);
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw.clone(), t0 + ms(400));
    let t = one_transmit(&mut c);
    assert_eq!((status_of(&t), t.dest), (Some(100), addr(PBX_UA)));
    assert!(drain_events(&mut c).contains(&ProxyEvent::Retransmission {
        side: Side::Pbx,
        resent: false
    }));
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 180, None),
        t0 + ms(450),
    );
    assert_eq!(status_of(&one_transmit(&mut c)), Some(180));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw, t0 + ms(900));
    let t = one_transmit(&mut c);
    assert_eq!((status_of(&t), t.side), (Some(180), Side::Pbx));
    assert_eq!(c.active_calls(), 1);
    assert_eq!(c.ports().in_use(), 2);
}

/// §17.1.1.2: on UDP the proxy retransmits the INVITE itself at T1, 2·T1, 4·T1 … (timer A,
/// no cap) and gives up at 64·T1 (timer B) with a 408 upstream (§16.8); the call ends as
/// timed out, its ports come back, and the ACK for the 408 is absorbed.
#[test]
fn timer_a_doubles_and_timer_b_answers_408_upstream() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = invite_through(&mut c, "z9hG4bKta", t0);
    let mut sent_at = Vec::new();
    let mut now = t0;
    while let Some(due) = c.poll_timeout() {
        if due > t0 + Duration::from_secs(40) {
            break;
        }
        now = due;
        c.handle_timeout(now);
        for t in transmits(&mut c) {
            if t.dest == addr(AGENT_UA) {
                assert_eq!(t.payload, *inv.as_bytes(), "the same bytes again");
                sent_at.push((now - t0).as_millis());
            } else {
                assert_eq!(status_of(&t), Some(408), "408 upstream at timer B");
                assert_eq!((now - t0).as_millis(), 32_000);
                let ev = drain_events(&mut c);
                assert_eq!(outcome(&ev), Some(CallOutcome::TimedOut), "{ev:?}");
                assert!(ev
                    .iter()
                    .any(|e| matches!(e, ProxyEvent::TransactionTimedOut { .. })));
            }
        }
        if c.active_calls() == 0 {
            break;
        }
    }
    assert_eq!(sent_at, [500, 1500, 3500, 7500, 15_500, 31_500]);
    assert_eq!(c.active_calls(), 0);
    let _ = drain_events(&mut c);
    // The caller ACKs the 408: absorbed by the server transaction, nothing goes downstream.
    let ack =
        String::from_utf8_lossy(&request("ACK", "z9hG4bKta", Some("x"), 1, None)).into_owned();
    c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(ack), now);
    assert!(c.poll_transmit().is_none());
}

/// §17.1.2.2: timer E doubles up to T2 (4 s) for a non-INVITE; timer F → 408 upstream.
#[test]
fn timer_e_caps_at_t2_and_timer_f_answers_408() {
    let mut c = core();
    let t0 = Instant::now();
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("OPTIONS", "z9hG4bKte", None, 1, None),
        t0,
    );
    assert_eq!(
        one_transmit(&mut c).dest,
        addr(AGENT_UA),
        "no 100 for OPTIONS"
    );
    let mut sent_at = Vec::new();
    let mut got_408 = None;
    while let Some(due) = c.poll_timeout() {
        if due > t0 + Duration::from_secs(33) || got_408.is_some() {
            break;
        }
        c.handle_timeout(due);
        for t in transmits(&mut c) {
            if t.dest == addr(AGENT_UA) {
                sent_at.push((due - t0).as_millis());
            } else {
                got_408 = Some(((due - t0).as_millis(), status_of(&t)));
            }
        }
    }
    assert_eq!(
        sent_at,
        [500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert_eq!(got_408, Some((32_000, Some(408))));
}

/// TCP is reliable: no retransmissions downstream (timer A off), timer B still applies.
#[test]
fn tcp_forwarding_never_retransmits() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = parse(&request("INVITE", "z9hG4bKtt", None, 1, None));
    c.handle_stream_message(Side::Pbx, addr(PBX_UA), inv, t0);
    let fwd = trying_then_forward(&mut c);
    assert_eq!(fwd.transport, SipTransport::Tcp);
    c.handle_timeout(t0 + Duration::from_secs(20));
    assert!(c.poll_transmit().is_none(), "nothing resent over TCP");
    c.handle_timeout(t0 + Duration::from_secs(32));
    let t = one_transmit(&mut c);
    assert_eq!((status_of(&t), t.transport), (Some(408), SipTransport::Tcp));
}

/// A 486 is ACKed hop by hop (§16.7, §17.1.1.3): callmask ACKs it downstream, forwards it
/// upstream once, absorbs the agent's retransmissions (re-ACKing each), answers the caller's
/// INVITE retransmission with the 486, resends it on timer G until the caller's ACK, which it
/// absorbs.
#[test]
fn busy_486_acked_hop_by_hop_and_retransmissions_absorbed() {
    let mut c = core();
    let t0 = Instant::now();
    let raw = request("INVITE", "z9hG4bKbz", None, 1, Some(&sdp("10.1.1.1", 4000)));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw.clone(), t0);
    let inv = parse(&trying_then_forward(&mut c).payload);
    let busy = response_to(&inv, 486, None);
    c.handle_datagram(Side::Agents, addr(AGENT_UA), busy.clone(), t0 + ms(10));
    let ts = transmits(&mut c);
    assert_eq!(ts.len(), 2, "{ts:?}");
    let ack = parse(&ts[0].payload);
    assert_eq!(ts[0].dest, addr(AGENT_UA));
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(
        ack.top_via().expect("via").branch(),
        inv.top_via().expect("via").branch(),
        "§17.1.1.3: the ACK has the INVITE's branch"
    );
    assert_eq!(
        ack.to().expect("to").tag().map(|t| t.as_ref()),
        Some(&b"uas1"[..])
    );
    assert_eq!((status_of(&ts[1]), ts[1].dest), (Some(486), addr(PBX_UA)));
    assert_eq!(outcome(&drain_events(&mut c)), Some(CallOutcome::Failed));
    // The agent resends its 486: re-ACKed, not forwarded.
    c.handle_datagram(Side::Agents, addr(AGENT_UA), busy, t0 + ms(510));
    let t = one_transmit(&mut c);
    assert_eq!(
        (t.dest, t.payload.clone()),
        (addr(AGENT_UA), ack.as_bytes().clone())
    );
    // The caller resends its INVITE: answered with the 486, nothing downstream.
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw, t0 + ms(300));
    let t = one_transmit(&mut c);
    assert_eq!((status_of(&t), t.dest), (Some(486), addr(PBX_UA)));
    // Timer G: the 486 again at +T1 without an ACK.
    let _ = drain_events(&mut c);
    c.handle_timeout(t0 + ms(510));
    let t = one_transmit(&mut c);
    assert_eq!((status_of(&t), t.dest), (Some(486), addr(PBX_UA)));
    assert_eq!(
        drain_events(&mut c),
        [ProxyEvent::Retransmission {
            side: Side::Pbx,
            resent: true
        }]
    );
    // The caller's ACK (same branch as its INVITE): absorbed.
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("ACK", "z9hG4bKbz", Some("uas1"), 1, None),
        t0 + ms(600),
    );
    assert!(c.poll_transmit().is_none(), "the upstream ACK stops here");
    c.handle_timeout(t0 + Duration::from_secs(3));
    assert!(c.poll_transmit().is_none(), "no more 486 after the ACK");
    assert_eq!(c.ports().in_use(), 0);
    c.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(c.transactions(), 0, "every transaction ends");
}

/// §16.10: callmask answers the CANCEL with 200 itself, forwards a CANCEL (with the INVITE's
/// downstream branch) to the pending client transaction, absorbs the agent's 200 to it, and
/// the 487 comes back through the INVITE's transactions (ACKed downstream by callmask).
#[test]
fn cancel_gets_200_forwarded_downstream_and_487_comes_back() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = invite_through(&mut c, "z9hG4bKcx", t0);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 180, None),
        t0 + ms(5),
    );
    assert_eq!(status_of(&one_transmit(&mut c)), Some(180));
    let cancel_raw = request("CANCEL", "z9hG4bKcx", None, 1, None);
    c.handle_datagram(Side::Pbx, addr(PBX_UA), cancel_raw.clone(), t0 + ms(50));
    let ts = transmits(&mut c);
    assert_eq!(ts.len(), 2, "{ts:?}");
    assert_eq!((status_of(&ts[0]), ts[0].dest), (Some(200), addr(PBX_UA)));
    let cancel = parse(&ts[1].payload);
    assert_eq!(ts[1].dest, addr(AGENT_UA));
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(
        cancel.top_via().expect("via").branch(),
        inv.top_via().expect("via").branch(),
        "§9.1: the CANCEL has the INVITE's branch"
    );
    assert_eq!(cancel.vias().expect("vias").len(), 1, "a single Via");
    // A retransmitted CANCEL gets the 200 again.
    c.handle_datagram(Side::Pbx, addr(PBX_UA), cancel_raw, t0 + ms(550));
    let t = one_transmit(&mut c);
    assert_eq!((status_of(&t), t.dest), (Some(200), addr(PBX_UA)));
    // The agent's 200 to the CANCEL stops at callmask.
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&cancel, 200, None),
        t0 + ms(60),
    );
    assert!(c.poll_transmit().is_none(), "200 to our CANCEL is ours");
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 487, None),
        t0 + ms(61),
    );
    let ts = transmits(&mut c);
    assert_eq!(ts.len(), 2, "{ts:?}");
    assert_eq!(parse(&ts[0].payload).method(), Some(&Method::Ack));
    assert_eq!((status_of(&ts[1]), ts[1].dest), (Some(487), addr(PBX_UA)));
    assert_eq!(outcome(&drain_events(&mut c)), Some(CallOutcome::Cancelled));
    assert_eq!(c.ports().in_use(), 0);
}

/// §9.1: a CANCEL that arrives before any provisional response waits for one.
#[test]
fn cancel_before_any_provisional_waits_for_one() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = invite_through(&mut c, "z9hG4bKcw", t0);
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("CANCEL", "z9hG4bKcw", None, 1, None),
        t0 + ms(5),
    );
    let t = one_transmit(&mut c);
    assert_eq!((status_of(&t), t.dest), (Some(200), addr(PBX_UA)));
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 180, None),
        t0 + ms(20),
    );
    let ts = transmits(&mut c);
    assert_eq!(ts.len(), 2, "{ts:?}");
    assert_eq!(status_of(&ts[0]), Some(180));
    assert_eq!(parse(&ts[1].payload).method(), Some(&Method::Cancel));
}

/// §16.7 step 10: a 2xx and its retransmissions go end to end (re-anchored with the same
/// SDP); an INVITE retransmission crossing the 2xx is absorbed; the ACK for the 2xx is
/// forwarded.
#[test]
fn ok_retransmissions_forwarded_and_crossing_invite_absorbed() {
    let mut c = core();
    let t0 = Instant::now();
    let raw = request("INVITE", "z9hG4bKok", None, 1, Some(&sdp("10.1.1.1", 4000)));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw.clone(), t0);
    let inv = parse(&trying_then_forward(&mut c).payload);
    let ok = response_to(&inv, 200, Some(&sdp("10.2.2.2", 5000)));
    c.handle_datagram(Side::Agents, addr(AGENT_UA), ok.clone(), t0 + ms(10));
    let first = one_transmit(&mut c);
    assert_eq!((status_of(&first), first.dest), (Some(200), addr(PBX_UA)));
    for i in 1..=3u64 {
        c.handle_datagram(
            Side::Agents,
            addr(AGENT_UA),
            ok.clone(),
            t0 + ms(10 + 500 * i),
        );
        let again = one_transmit(&mut c);
        assert_eq!(
            again.payload, first.payload,
            "same bytes, same anchored SDP"
        );
    }
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw, t0 + ms(600));
    assert!(
        c.poll_transmit().is_none(),
        "INVITE copy after the 2xx is absorbed"
    );
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("ACK", "z9hG4bKok-ack", Some("uas1"), 1, None),
        t0 + ms(700),
    );
    assert_eq!(
        one_transmit(&mut c).dest,
        addr(AGENT_UA),
        "2xx ACK end to end"
    );
    assert_eq!(c.active_calls(), 1);
    assert_eq!(c.ports().in_use(), 2);
    // The lingering entries (64·T1) go away.
    c.handle_timeout(t0 + Duration::from_secs(40));
    assert_eq!(c.transactions(), 0);
}

/// A downstream 100 Trying is never forwarded (§16.7 step 3): callmask sent its own.
#[test]
fn downstream_100_is_not_forwarded() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = invite_through(&mut c, "z9hG4bK1h", t0);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 100, None),
        t0 + ms(5),
    );
    assert!(c.poll_transmit().is_none());
    // …but it stops timer A.
    c.handle_timeout(t0 + Duration::from_secs(5));
    assert!(c.poll_transmit().is_none());
}

/// Timer C (§16.8): a ringing INVITE with no final response is cancelled downstream after
/// more than 3 minutes; if the CANCEL brings no final either, 408 upstream 64·T1 later.
#[test]
fn timer_c_cancels_a_ringing_invite_then_408() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = invite_through(&mut c, "z9hG4bKtc", t0);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 180, None),
        t0 + ms(5),
    );
    assert_eq!(status_of(&one_transmit(&mut c)), Some(180));
    c.handle_timeout(t0 + TIMER_C);
    assert!(c.poll_transmit().is_none(), "nothing before timer C");
    c.handle_timeout(t0 + ms(5) + TIMER_C);
    let t = one_transmit(&mut c);
    assert_eq!(parse(&t.payload).method(), Some(&Method::Cancel));
    assert_eq!(t.dest, addr(AGENT_UA));
    // CANCEL retransmissions (timer E) and, 64·T1 on, the 408 upstream.
    let mut got_408 = false;
    let end = t0 + ms(5) + TIMER_C + Duration::from_secs(33);
    while let Some(due) = c.poll_timeout() {
        if due > end {
            break;
        }
        c.handle_timeout(due);
        for t in transmits(&mut c) {
            if t.dest == addr(PBX_UA) {
                assert_eq!(status_of(&t), Some(408));
                got_408 = true;
            }
        }
    }
    assert!(got_408);
    assert_eq!(c.active_calls(), 0);
}

/// A BYE nobody answers: 408 upstream at timer F, the call ends (completed: both sides
/// wanted it over).
#[test]
fn unanswered_bye_gets_408_and_ends_the_call() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = invite_through(&mut c, "z9hG4bKby", t0);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 200, Some(&sdp("10.2.2.2", 5000))),
        t0,
    );
    let _ = one_transmit(&mut c);
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("BYE", "z9hG4bKby2", Some("uas1"), 2, None),
        t0 + ms(100),
    );
    let _ = one_transmit(&mut c);
    let _ = drain_events(&mut c);
    c.handle_timeout(t0 + ms(100) + Duration::from_secs(32));
    let sent = transmits(&mut c);
    assert!(sent
        .iter()
        .any(|t| t.dest == addr(PBX_UA) && status_of(t) == Some(408)));
    assert_eq!(outcome(&drain_events(&mut c)), Some(CallOutcome::Completed));
    assert_eq!(c.active_calls(), 0);
}

/// Rejects go through the server transaction too: a 483 to an INVITE is resent on the
/// INVITE's retransmission and its ACK is absorbed (no 100 before a reject).
#[test]
fn reject_of_invite_is_transactional() {
    let mut c = core();
    let t0 = Instant::now();
    let raw = String::from_utf8_lossy(&request("INVITE", "z9hG4bKmf", None, 1, None))
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(raw.clone()), t0);
    assert_eq!(status_of(&one_transmit(&mut c)), Some(483));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(raw), t0 + ms(100));
    assert_eq!(status_of(&one_transmit(&mut c)), Some(483));
    let ack =
        String::from_utf8_lossy(&request("ACK", "z9hG4bKmf", Some("x"), 1, None)).into_owned();
    c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(ack), t0 + ms(200));
    assert!(c.poll_transmit().is_none());
}

/// Issue 13 soak: short calls leave no trail in the timer queues. Each call queues deadlines
/// far in the future (the INVITE server transaction's give-up time, 277 s; the early-call
/// expiry, 300 s) that are superseded within a second; the lazy queues must not keep them
/// (and the INVITE datagram their keys share) for minutes. 4,000 calls at 20 calls/s (200 s
/// of virtual time, past the 32 s that finished transactions linger), 20 in progress at a
/// time: every call completes and both queues stay
/// within a small multiple of the live entries (compaction keeps them under twice the live
/// entries plus a slack at each push; entries ending since then are still queued; without
/// compaction the queues grow by about 3 and 2 entries per call).
#[test]
fn timer_queues_stay_proportional_to_live_calls() {
    const CALLS: usize = 4_000;
    const OPEN: usize = 20;
    let mut c = core();
    c.ports = PortAllocator::new(
        PortRange::new(10_000, 19_999).expect("range"),
        Duration::from_secs(5),
    );
    // One PBX address places every call: above the per-source default of 100 calls/s.
    c.set_limits(CoreLimits {
        source_calls_per_s: 1_000.0,
        source_requests_per_s: 10_000.0,
        ..CoreLimits::default()
    });
    let t0 = Instant::now();
    let offer = sdp("10.1.1.1", 4000);
    let answer = sdp("10.2.2.2", 5000);
    let per_call =
        |i: usize, m: &str, b: &str, tag: Option<&str>, cseq: u32, body: Option<&str>| {
            let raw = request(m, b, tag, cseq, body);
            Bytes::from(
                String::from_utf8_lossy(&raw).replace("call-1@test", &format!("call-{i}@test")),
            )
        };
    let mut pending: std::collections::VecDeque<(usize, SipMessage)> = Default::default();
    let (mut completed, mut worst_txn_queue, mut worst_call_queue) = (0, 0, 0);
    for i in 0..CALLS + OPEN {
        let now = t0 + ms(50 * i as u64);
        if i < CALLS {
            let inv = per_call(i, "INVITE", &format!("z9hG4bKi{i}"), None, 1, Some(&offer));
            c.handle_datagram(Side::Pbx, addr(PBX_UA), inv, now);
            let fwd = parse(&transmits(&mut c).pop().expect("forwarded").payload);
            c.handle_datagram(
                Side::Agents,
                addr(AGENT_UA),
                response_to(&fwd, 180, None),
                now,
            );
            pending.push_back((i, fwd));
        }
        if pending.len() > OPEN || i >= CALLS {
            let Some((j, fwd)) = pending.pop_front() else {
                break;
            };
            let ok = response_to(&fwd, 200, Some(&answer));
            c.handle_datagram(Side::Agents, addr(AGENT_UA), ok, now);
            let ack = per_call(j, "ACK", &format!("z9hG4bKa{j}"), Some("uas1"), 1, None);
            c.handle_datagram(Side::Pbx, addr(PBX_UA), ack, now);
            let bye = per_call(j, "BYE", &format!("z9hG4bKb{j}"), Some("uas1"), 2, None);
            c.handle_datagram(Side::Pbx, addr(PBX_UA), bye, now);
            let fwd_bye = parse(&transmits(&mut c).pop().expect("BYE forwarded").payload);
            let done = response_to(&fwd_bye, 200, None);
            c.handle_datagram(Side::Agents, addr(AGENT_UA), done, now);
        }
        while c.poll_transmit().is_some() {}
        completed += drain_events(&mut c)
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    ProxyEvent::CallEnded {
                        outcome: CallOutcome::Completed,
                        ..
                    }
                )
            })
            .count();
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        worst_txn_queue = worst_txn_queue.max(c.txns.queued());
        worst_call_queue = worst_call_queue.max(c.calls.queued_deadlines());
        assert!(
            c.txns.queued() <= 3 * c.txns.len() + 64,
            "call {i}: {} timer entries for {} transactions",
            c.txns.queued(),
            c.txns.len()
        );
        assert!(
            c.calls.queued_deadlines() <= 3 * c.calls.len() + 64,
            "call {i}: {} deadlines for {} calls",
            c.calls.queued_deadlines(),
            c.calls.len()
        );
    }
    assert_eq!(completed, CALLS, "every call completed");
    eprintln!(
        "timer queues: at most {worst_txn_queue} transaction timers, {worst_call_queue} call \
         deadlines over {CALLS} calls"
    );
}

/// Throughput of the stateful core alone: whole calls (INVITE/100/180/200/ACK/BYE/200, SDP
/// anchored both ways) with 1,000 calls in progress at any time and timers driven on a
/// virtual clock (1 ms per call). Run in release:
/// `cargo test --release -p callmask --lib core_call_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; run in release"]
fn core_call_throughput() {
    const CALLS: usize = 50_000;
    const OPEN: usize = 1_000;
    let mut c = core();
    c.ports = PortAllocator::new(
        PortRange::new(10_000, 59_999).expect("range"),
        Duration::from_secs(5),
    );
    let t0 = Instant::now();
    let offer = sdp("10.1.1.1", 4000);
    let answer = sdp("10.2.2.2", 5000);
    let per_call =
        |i: usize, m: &str, b: &str, tag: Option<&str>, cseq: u32, body: Option<&str>| {
            let raw = request(m, b, tag, cseq, body);
            Bytes::from(
                String::from_utf8_lossy(&raw).replace("call-1@test", &format!("call-{i}@test")),
            )
        };
    let mut pending: std::collections::VecDeque<(usize, SipMessage)> = Default::default();
    let started = std::time::Instant::now();
    // Time spent inside the core only (the harness builds and parses messages too).
    let mut in_core = Duration::ZERO;
    fn timed(c: &mut ProxyCore, acc: &mut Duration, side: Side, from: &str, m: Bytes, at: Instant) {
        let t = std::time::Instant::now();
        c.handle_datagram(side, addr(from), m, at);
        *acc += t.elapsed();
    }
    let mut messages = 0u64;
    for i in 0..CALLS + OPEN {
        let now = t0 + ms(i as u64);
        if i < CALLS {
            let inv = per_call(i, "INVITE", &format!("z9hG4bKi{i}"), None, 1, Some(&offer));
            timed(&mut c, &mut in_core, Side::Pbx, PBX_UA, inv, now);
            let fwd = transmits(&mut c).pop().expect("forwarded");
            let fwd = parse(&fwd.payload);
            c.handle_datagram(
                Side::Agents,
                addr(AGENT_UA),
                response_to(&fwd, 180, None),
                now,
            );
            messages += 2;
            pending.push_back((i, fwd));
        }
        if pending.len() > OPEN || i >= CALLS {
            let Some((j, fwd)) = pending.pop_front() else {
                break;
            };
            timed(
                &mut c,
                &mut in_core,
                Side::Agents,
                AGENT_UA,
                response_to(&fwd, 200, Some(&answer)),
                now,
            );
            let ack = per_call(j, "ACK", &format!("z9hG4bKa{j}"), Some("uas1"), 1, None);
            timed(&mut c, &mut in_core, Side::Pbx, PBX_UA, ack, now);
            let bye = per_call(j, "BYE", &format!("z9hG4bKb{j}"), Some("uas1"), 2, None);
            timed(&mut c, &mut in_core, Side::Pbx, PBX_UA, bye, now);
            let fwd_bye = transmits(&mut c).pop().expect("BYE forwarded");
            let fwd_bye = parse(&fwd_bye.payload);
            timed(
                &mut c,
                &mut in_core,
                Side::Agents,
                AGENT_UA,
                response_to(&fwd_bye, 200, None),
                now,
            );
            messages += 4;
        }
        while c.poll_transmit().is_some() {}
        while c.poll_event().is_some() {}
        let t = std::time::Instant::now();
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        in_core += t.elapsed();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(c.active_calls(), 0);
    let core_secs = in_core.as_secs_f64();
    println!(
        "{CALLS} calls ({messages} SIP messages in, {OPEN} open at a time) in {secs:.2} s \
         ({core_secs:.2} s inside the core): {:.0} calls/s, {:.0} messages/s in the core \
         ({:.1} µs per message); {} transactions lingering",
        CALLS as f64 / core_secs,
        messages as f64 / core_secs,
        core_secs * 1e6 / messages as f64,
        c.transactions()
    );
}

/// A next hop that answers the INVITE from a copy of callmask's CANCEL (only callmask's Via,
/// as sipp's `[last_Via:]` does): the response still reaches the caller, with the INVITE's
/// own Vias restored from the server transaction.
#[test]
fn response_with_only_our_via_gets_the_request_vias_back() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = invite_through(&mut c, "z9hG4bKsv", t0);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 180, None),
        t0,
    );
    let _ = one_transmit(&mut c);
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("CANCEL", "z9hG4bKsv", None, 1, None),
        t0 + ms(10),
    );
    let ts = transmits(&mut c);
    let cancel = parse(&ts[1].payload);
    // 487 built from the CANCEL's Via (one value) but the INVITE's CSeq.
    let terminated = String::from_utf8_lossy(&response_to(&cancel, 487, None))
        .replace("CSeq: 1 CANCEL", "CSeq: 1 INVITE");
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        Bytes::from(terminated),
        t0 + ms(20),
    );
    let ts = transmits(&mut c);
    let up = ts
        .iter()
        .find(|t| t.dest == addr(PBX_UA))
        .expect("487 upstream");
    let resp = parse(&up.payload);
    assert_eq!(resp.status().map(StatusCode::as_u16), Some(487));
    let vias = resp.vias().expect("vias");
    assert_eq!(vias.len(), 1);
    assert_eq!(
        vias[0].branch().map(|b| b.as_ref()),
        Some(&b"z9hG4bKsv"[..])
    );
}

/// `response_to` with the callee tag `tag` instead of `uas1` (a forking downstream).
fn response_tagged(req: &SipMessage, code: u16, tag: &str, body: Option<&str>) -> Bytes {
    Bytes::from(
        String::from_utf8_lossy(&response_to(req, code, body))
            .replace("tag=uas1", &format!("tag={tag}")),
    )
}

/// The PBX hangs up the dialog with callee tag `tag` (BYE with `branch` and CSeq `cseq` at
/// `at`): the BYE is forwarded to the agent, whose 200 goes back to the PBX. Returns the BYE
/// as forwarded.
fn bye_from_pbx_answered(
    c: &mut ProxyCore,
    branch: &str,
    tag: &str,
    cseq: u32,
    at: Instant,
) -> SipMessage {
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("BYE", branch, Some(tag), cseq, None),
        at,
    );
    let bye = parse(&one_transmit(c).payload);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_tagged(&bye, 200, tag, None),
        at + ms(5),
    );
    assert_eq!(
        one_transmit(c).dest,
        addr(PBX_UA),
        "the 200 goes back to the PBX"
    );
    bye
}

fn upserts(events: &[ProxyEvent]) -> Vec<Vec<StreamSpec>> {
    events
        .iter()
        .filter_map(|e| match e {
            ProxyEvent::Media(MediaCommand::Upsert { streams, .. }) => Some(streams.clone()),
            _ => None,
        })
        .collect()
}

/// A forked INVITE (RFC 3261 §16.7, §13.2.2.4): two early dialogs answer with their own
/// media; the 2xx of the first one (no SDP: its answer was in the 183) brings that dialog's
/// media back; the other fork's late 2xx is forwarded anchored but moves nothing, and the BYE
/// that ends that fork leaves the answered call alone.
#[test]
fn forked_early_dialogs_the_answered_one_wins() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = invite_through(&mut c, "z9hG4bKfk", t0);
    let _ = drain_events(&mut c);
    let remote = |ev: &[ProxyEvent]| upserts(ev).last().map(|s| s[0].agents_remote);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_tagged(&inv, 183, "fa", Some(&sdp("10.2.2.1", 5000))),
        t0,
    );
    assert!(body_str(&parse(&one_transmit(&mut c).payload)).contains("c=IN IP4 127.0.0.1"));
    assert_eq!(
        remote(&drain_events(&mut c)),
        Some(Some(addr("10.2.2.1:5000")))
    );
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_tagged(&inv, 183, "fb", Some(&sdp("10.2.2.2", 6000))),
        t0 + ms(5),
    );
    let _ = one_transmit(&mut c);
    assert_eq!(
        remote(&drain_events(&mut c)),
        Some(Some(addr("10.2.2.2:6000")))
    );
    // Fork A answers without SDP: A's media is restored.
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_tagged(&inv, 200, "fa", None),
        t0 + ms(10),
    );
    let _ = one_transmit(&mut c);
    let ev = drain_events(&mut c);
    assert_eq!(remote(&ev), Some(Some(addr("10.2.2.1:5000"))), "{ev:?}");
    assert!(ev
        .iter()
        .any(|e| matches!(e, ProxyEvent::CallAnswered { .. })));
    // Fork B answers too: forwarded (the caller will ACK and BYE it), anchored, media kept.
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_tagged(&inv, 200, "fb", Some(&sdp("10.2.2.2", 6000))),
        t0 + ms(15),
    );
    let b = body_str(&parse(&one_transmit(&mut c).payload));
    assert!(
        b.contains("c=IN IP4 127.0.0.1") && !b.contains("10.2.2.2"),
        "{b}"
    );
    assert!(
        upserts(&drain_events(&mut c)).is_empty(),
        "fork B moves no media"
    );
    assert_eq!(c.ports().in_use(), 2);
    // The caller hangs up fork B: the call goes on.
    bye_from_pbx_answered(&mut c, "z9hG4bKfk-b", "fb", 2, t0 + ms(20));
    assert_eq!(outcome(&drain_events(&mut c)), None);
    assert_eq!(c.active_calls(), 1);
    // …and the answered dialog ends it.
    bye_from_pbx_answered(&mut c, "z9hG4bKfk-a", "fa", 3, t0 + ms(30));
    assert_eq!(outcome(&drain_events(&mut c)), Some(CallOutcome::Completed));
    assert_eq!(c.ports().in_use(), 0);
}

/// A re-INVITE from the callee's side (its tag is then the From tag) belongs to the answered
/// dialog and moves media as before.
#[test]
fn reinvite_from_the_callee_side_is_the_same_dialog() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = invite_through(&mut c, "z9hG4bKrv", t0);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 200, Some(&sdp("10.2.2.2", 5000))),
        t0,
    );
    let _ = one_transmit(&mut c);
    let _ = drain_events(&mut c);
    // Agent → PBX re-INVITE: From carries the callee tag uas1, To the caller's tag.
    let reinvite = format!(
        "INVITE sip:pbx@{PBX_UA} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {AGENT_UA};branch=z9hG4bKre1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:agent@127.0.0.1>;tag=uas1\r\n\
         To: <sip:pbx@127.0.0.1>;tag=abc\r\n\
         Call-ID: call-1@test\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{}",
        sdp("10.2.2.9", 7000).len(),
        sdp("10.2.2.9", 7000)
    );
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        Bytes::from(reinvite),
        t0 + ms(50),
    );
    let fwd = trying_then_forward(&mut c);
    assert_eq!(fwd.dest, addr(PBX_UA));
    let ev = drain_events(&mut c);
    assert_eq!(
        upserts(&ev).last().map(|s| s[0].agents_remote),
        Some(Some(addr("10.2.2.9:7000")))
    );
}

/// A final response callmask cannot forward (here: a 200 whose SDP it cannot parse) leaves
/// the server transaction unanswered; it is forgotten after its give-up time, so nothing
/// leaks, while a ringing call that keeps sending provisionals is kept.
#[test]
fn unanswerable_server_transaction_is_forgotten() {
    let mut c = core();
    let t0 = Instant::now();
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("OPTIONS", "z9hG4bKgu", None, 1, None),
        t0,
    );
    let fwd = parse(&one_transmit(&mut c).payload);
    let bad = String::from_utf8_lossy(&response_to(&fwd, 200, Some("v=0\r\nbroken"))).into_owned();
    c.handle_datagram(Side::Agents, addr(AGENT_UA), Bytes::from(bad), t0 + ms(10));
    // OPTIONS has no call: its SDP cannot be anchored, the 200 is dropped.
    assert!(c.poll_transmit().is_none());
    c.handle_timeout(t0 + Duration::from_secs(200));
    assert_eq!(c.transactions(), 0, "nothing lingers");

    // A ringing INVITE re-announced every 70 s outlives the first give-up time (277 s; the
    // call itself is given up at 300 s).
    let inv = invite_through(&mut c, "z9hG4bKlr", t0);
    for i in 1..=4u64 {
        let at = t0 + Duration::from_secs(70 * i);
        c.handle_datagram(
            Side::Agents,
            addr(AGENT_UA),
            response_to(&inv, 180, None),
            at,
        );
        let _ = transmits(&mut c);
        c.handle_timeout(at);
    }
    // Still the same server transaction: a resent INVITE gets the 180 again.
    c.handle_timeout(t0 + Duration::from_secs(285));
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("INVITE", "z9hG4bKlr", None, 1, Some(&sdp("10.1.1.1", 4000))),
        t0 + Duration::from_secs(285),
    );
    let t = one_transmit(&mut c);
    assert_eq!((status_of(&t), t.dest), (Some(180), addr(PBX_UA)));
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 200, Some(&sdp("10.2.2.2", 5000))),
        t0 + Duration::from_secs(290),
    );
    let t = one_transmit(&mut c);
    assert_eq!((status_of(&t), t.dest), (Some(200), addr(PBX_UA)));
}

/// RFC 3261 §16.9: a TCP next hop that cannot be reached fails the forwarded INVITE with 503
/// at once (not 408 at timer B); the call ends as failed.
#[test]
fn tcp_connect_failure_answers_503() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = parse(&request(
        "INVITE",
        "z9hG4bKte3",
        None,
        1,
        Some(&sdp("10.1.1.1", 4000)),
    ));
    c.handle_stream_message(Side::Pbx, addr(PBX_UA), inv, t0);
    let _ = trying_then_forward(&mut c);
    let _ = drain_events(&mut c);
    // Another destination's failure concerns nobody here.
    c.handle_transport_error(Side::Agents, addr("127.0.0.1:9"), t0 + ms(5));
    assert!(c.poll_transmit().is_none());
    c.handle_transport_error(Side::Agents, addr(AGENT_UA), t0 + ms(10));
    let t = one_transmit(&mut c);
    assert_eq!(
        (status_of(&t), t.dest, t.transport),
        (Some(503), addr(PBX_UA), SipTransport::Tcp)
    );
    assert_eq!(outcome(&drain_events(&mut c)), Some(CallOutcome::Failed));
    assert_eq!(c.ports().in_use(), 0);
}

#[test]
fn media_timeout_ends_the_call_it_names_and_only_that_one() {
    let mut c = core();
    let t0 = Instant::now();
    let offer = sdp("10.1.1.1", 4000);
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("INVITE", "z9hG4bKmt1", None, 1, Some(&offer)),
        t0,
    );
    let inv = parse(&trying_then_forward(&mut c).payload);
    let answer = sdp("10.2.2.2", 5000);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 200, Some(&answer)),
        t0,
    );
    let ev = drain_events(&mut c);
    let Some(call) = ev.iter().find_map(|e| match e {
        ProxyEvent::CallStarted { call, .. } => Some(*call),
        _ => None,
    }) else {
        panic!("call started expected: {ev:?}");
    };
    assert_eq!((c.active_calls(), c.ports().in_use()), (1, 2));

    // A ref the core never handed out (or already ended) changes nothing.
    c.handle_media_timeout(CallRef(call.0 + 100), t0);
    assert!(drain_events(&mut c).is_empty());
    assert_eq!(c.active_calls(), 1);

    c.handle_media_timeout(call, t0);
    let ev = drain_events(&mut c);
    assert!(
        ev.contains(&ProxyEvent::Media(MediaCommand::Remove { call })),
        "{ev:?}"
    );
    assert!(ev.contains(&ProxyEvent::CallEnded {
        call,
        outcome: CallOutcome::TimedOut
    }));
    assert_eq!(c.active_calls(), 0);
    // Ended once: a second timeout for it is a no-op.
    c.handle_media_timeout(call, t0);
    assert!(drain_events(&mut c).is_empty());
}

/// RFC 3261 §22.2: a 407 (or 401) ends the first INVITE transaction; the UAC's retry with
/// credentials (same Call-ID and From tag, CSeq + 1, new branch) is a new attempt that is
/// forwarded and anchored, not a stale copy. A late copy of the first INVITE (same CSeq, after
/// its transaction ended) is still dropped, and so is an INVITE reusing an answered call's
/// Call-ID.
#[test]
fn auth_retry_after_407_is_a_new_attempt() {
    let mut c = core();
    let t0 = Instant::now();
    let inv = invite_through(&mut c, "z9hG4bKa1", t0);
    let challenge = response_to(&inv, 407, None);
    c.handle_datagram(Side::Agents, addr(AGENT_UA), challenge, t0 + ms(10));
    let ts = transmits(&mut c);
    assert_eq!(ts.len(), 2, "ACK downstream, 407 upstream: {ts:?}");
    assert_eq!(status_of(&ts[1]), Some(407));
    assert_eq!(outcome(&drain_events(&mut c)), Some(CallOutcome::Failed));
    assert_eq!(c.ports().in_use(), 0);
    // The UAC ACKs the 407 (absorbed) and retries with CSeq 2 on a new branch.
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("ACK", "z9hG4bKa1", Some("uas1"), 1, None),
        t0 + ms(20),
    );
    assert!(c.poll_transmit().is_none());
    let retry = request("INVITE", "z9hG4bKa2", None, 2, Some(&sdp("10.1.1.1", 4000)));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), retry, t0 + ms(30));
    let fwd = parse(&trying_then_forward(&mut c).payload);
    assert_eq!(fwd.cseq().expect("cseq").seq, 2);
    assert!(
        body_str(&fwd).contains("m=audio 300"),
        "anchored: {}",
        body_str(&fwd)
    );
    let events = drain_events(&mut c);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProxyEvent::CallStarted { .. })),
        "{events:?}"
    );
    let ok = response_to(&fwd, 200, Some(&sdp("10.2.2.2", 5000)));
    c.handle_datagram(Side::Agents, addr(AGENT_UA), ok, t0 + ms(40));
    let ts = transmits(&mut c);
    assert_eq!(status_of(ts.last().expect("200 upstream")), Some(200));
    let events = drain_events(&mut c);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ProxyEvent::CallAnswered { .. })),
        "{events:?}"
    );

    // A second core: a late copy of the challenged INVITE (CSeq 1, new branch so no
    // transaction matches) is still a stale copy.
    let mut c = core();
    let inv = invite_through(&mut c, "z9hG4bKb1", t0);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 407, None),
        t0 + ms(10),
    );
    let _ = transmits(&mut c);
    let _ = drain_events(&mut c);
    let copy = request("INVITE", "z9hG4bKb9", None, 1, Some(&sdp("10.1.1.1", 4000)));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), copy, t0 + ms(30));
    assert!(c.poll_transmit().is_none(), "stale copy forwarded");
    assert!(drain_events(&mut c).iter().any(|e| matches!(
        e,
        ProxyEvent::Dropped {
            reason: DropReason::StaleInvite,
            ..
        }
    )));
}

/// `media.codecs`: an offer's undecodable codecs are removed before it is forwarded; an offer
/// with nothing decodable is answered 488 and the call ends at once (no ports held).
#[test]
fn offers_keep_only_decodable_codecs() {
    let mut c = core();
    let t0 = Instant::now();
    let offer = "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n\
                 m=audio 4000 RTP/AVP 18 9 0 101\r\na=rtpmap:18 G729/8000\r\n\
                 a=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\n";
    let raw = request("INVITE", "z9hG4bKc1", None, 1, Some(offer));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw, t0);
    let fwd = parse(&trying_then_forward(&mut c).payload);
    let body = body_str(&fwd);
    assert!(body.contains(" RTP/AVP 9 0 101\r\n"), "{body}");
    assert!(!body.contains("G729") && !body.contains("annexb"), "{body}");

    let mut c = core();
    let offer = offer.replace("18 9 0 101", "18 101");
    let raw = request("INVITE", "z9hG4bKc2", None, 1, Some(&offer));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw, t0);
    let ts = transmits(&mut c);
    assert_eq!(
        ts.iter().map(status_of).collect::<Vec<_>>(),
        [Some(488)],
        "{ts:?}"
    );
    assert_eq!(outcome(&drain_events(&mut c)), Some(CallOutcome::Failed));
    assert_eq!(c.ports().in_use(), 0);
}

/// Issue 12 item 4: a phone that registered over TCP is reached over TCP (its own
/// connection: the shell keys connections by peer address) when the PBX's INVITE arrives over
/// UDP; the Via and the agents-side Record-Route name TCP, the PBX-side entry stays UDP.
#[test]
fn tcp_registered_phone_is_reached_over_tcp() {
    let mut c = registration_core();
    let t0 = Instant::now();
    let reg = parse(&register(120, "z9hG4bKt1"));
    c.handle_stream_message(Side::Agents, addr(PHONE), reg, t0);
    let fwd = one_transmit(&mut c);
    assert_eq!(
        fwd.transport,
        SipTransport::Tcp,
        "REGISTER goes on as it came"
    );
    let reg = parse(&fwd.payload);
    let token = reg
        .contacts()
        .expect("contact")
        .remove(0)
        .uri()
        .user()
        .cloned();
    let token = String::from_utf8_lossy(&token.expect("token")).into_owned();
    let ok = String::from_utf8_lossy(&response_to(&reg, 200, None)).replace(
        &format!("Contact: <sip:agent@{AGENT_UA}>"),
        &format!("Contact: <sip:{token}@127.0.0.1:5060>;expires=60"),
    );
    c.handle_stream_message(Side::Pbx, addr(PBX_UA), parse(&Bytes::from(ok)), t0);
    let back = one_transmit(&mut c);
    assert_eq!(
        (back.transport, back.dest),
        (SipTransport::Tcp, addr(PHONE))
    );
    // The PBX calls the phone over UDP.
    let inv = String::from_utf8_lossy(&request(
        "INVITE",
        "z9hG4bKt2",
        None,
        1,
        Some(&sdp("10.1.1.1", 4000)),
    ))
    .replace(
        "INVITE sip:agent@127.0.0.1:5062 SIP/2.0",
        &format!("INVITE sip:{token}@127.0.0.1:5060 SIP/2.0"),
    );
    c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(inv), t0);
    let t = trying_then_forward(&mut c);
    assert_eq!(
        (t.side, t.transport, t.dest),
        (Side::Agents, SipTransport::Tcp, addr(PHONE))
    );
    let fwd = parse(&t.payload);
    assert!(fwd.top_via().expect("via").transport().is_reliable());
    let rr: Vec<String> = fwd
        .header_values("Record-Route")
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let rr = rr.join(",");
    assert!(rr.contains("5062;transport=tcp;lr"), "{rr}");
    assert!(rr.contains("5060;lr"), "{rr}");
}

/// An SDP with `n` audio `m=` lines, the first `active` of them on a real port, the rest on
/// port 0 (disabled).
fn sdp_streams(n: usize, active: usize) -> String {
    let mut s =
        String::from("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n");
    for i in 0..n {
        let port = if i < active { 4000 + 2 * i } else { 0 };
        s.push_str(&format!(
            "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        ));
    }
    s
}

fn drain_transmits(c: &mut ProxyCore) -> Vec<Transmit> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

/// Issue 13 item 2: an INVITE with 100 `m=` lines is refused 488 before a single port is
/// taken, counted, and leaves no call behind.
#[test]
fn too_many_streams_are_refused_before_any_port_is_taken() {
    let mut c = core();
    let now = Instant::now();
    let body = sdp_streams(100, 100);
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("INVITE", "z9hG4bKm1", None, 1, Some(&body)),
        now,
    );
    let sent = drain_transmits(&mut c);
    assert!(
        sent.iter().all(|t| t.side == Side::Pbx),
        "nothing forwarded"
    );
    assert!(sent.iter().any(|t| t.payload.starts_with(b"SIP/2.0 488 ")));
    assert_eq!(c.ports().in_use() + c.ports().quarantined(), 0);
    assert_eq!(c.active_calls(), 0);
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(events.contains(&ProxyEvent::LimitRefused {
        side: Side::Pbx,
        limit: LimitKind::StreamsPerCall
    }));
}

/// Ports only for active streams: disabled (port 0) `m=` lines get none.
#[test]
fn disabled_streams_get_no_ports() {
    let mut c = core();
    let now = Instant::now();
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request("INVITE", "z9hG4bKm2", None, 1, Some(&sdp_streams(4, 1))),
        now,
    );
    assert_eq!(c.ports().in_use(), 2, "one stream, a pair per side");
    let fwd = drain_transmits(&mut c)
        .into_iter()
        .find(|t| t.side == Side::Agents)
        .expect("INVITE forwarded");
    let text = String::from_utf8_lossy(&fwd.payload);
    assert_eq!(text.matches("m=audio 0 ").count(), 3, "{text}");
    let specs = std::iter::from_fn(|| c.poll_event()).find_map(|e| match e {
        ProxyEvent::Media(MediaCommand::Upsert { streams, .. }) => Some(streams),
        _ => None,
    });
    let specs = specs.expect("media upsert");
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].index, 0);
}

/// A call rejected before any answer carried media (here a 486 from the agent, in a loop)
/// returns its ports at once: the pool never drains, whatever the quarantine.
#[test]
fn rejected_calls_return_their_ports_at_once() {
    let mut c = core();
    let now = Instant::now();
    let capacity = c.ports().capacity();
    for i in 0..(capacity as u32) {
        let branch = format!("z9hG4bKrej{i}");
        let mut req = String::from_utf8_lossy(&request(
            "INVITE",
            &branch,
            None,
            1,
            Some(&sdp("127.0.0.1", 4000)),
        ))
        .into_owned();
        req = req.replace("call-1@test", &format!("call-rej-{i}@test"));
        c.handle_datagram(Side::Pbx, addr(PBX_UA), Bytes::from(req), now);
        let fwd = drain_transmits(&mut c)
            .into_iter()
            .find(|t| t.side == Side::Agents)
            .unwrap_or_else(|| panic!("INVITE {i} forwarded: pool drained"));
        let busy = response_to(&parse(&fwd.payload), 486, None);
        c.handle_datagram(Side::Agents, addr(AGENT_UA), busy, now);
        drain_transmits(&mut c);
        while c.poll_event().is_some() {}
        assert_eq!(c.ports().in_use(), 0, "call {i} ended with its ports");
        assert_eq!(c.ports().quarantined(), 0, "no media flowed: no quarantine");
    }
    assert_eq!(c.active_calls(), 0);
}

/// An answer callmask cannot anchor ends the unanswered call at once (ports back), rather
/// than leaving it to the five-minute early-call timeout.
#[test]
fn unanchorable_answer_ends_the_call_at_once() {
    let mut c = core();
    let now = Instant::now();
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        request(
            "INVITE",
            "z9hG4bKa9",
            None,
            1,
            Some(&sdp("127.0.0.1", 4000)),
        ),
        now,
    );
    let fwd = drain_transmits(&mut c)
        .into_iter()
        .find(|t| t.side == Side::Agents)
        .expect("INVITE forwarded");
    assert_eq!(c.ports().in_use(), 2);
    // The answer grows to more streams than the limit allows.
    let ok = response_to(&parse(&fwd.payload), 200, Some(&sdp_streams(9, 9)));
    c.handle_datagram(Side::Agents, addr(AGENT_UA), ok, now);
    assert_eq!(c.active_calls(), 0);
    assert_eq!(c.ports().in_use(), 0);
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        ProxyEvent::CallEnded {
            outcome: CallOutcome::Failed,
            ..
        }
    )));
}

fn invite_with_call_id(branch: &str, call_id: &str) -> Bytes {
    let req = String::from_utf8_lossy(&request(
        "INVITE",
        branch,
        None,
        1,
        Some(&sdp("127.0.0.1", 4000)),
    ))
    .replace("call-1@test", call_id);
    Bytes::from(req)
}

/// Issue 13 item 4: over `limits.calls` (or the source's call rate) a new INVITE gets 503
/// with Retry-After and makes no state; the call in progress is untouched.
#[test]
fn calls_over_the_limit_get_503_with_retry_after() {
    let mut c = core();
    c.set_limits(CoreLimits {
        calls: 1,
        ..CoreLimits::default()
    });
    let now = Instant::now();
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        invite_with_call_id("z9hG4bKl1", "a@t"),
        now,
    );
    drain_transmits(&mut c);
    assert_eq!(c.active_calls(), 1);
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        invite_with_call_id("z9hG4bKl2", "b@t"),
        now,
    );
    let t = one_transmit(&mut c);
    let text = String::from_utf8_lossy(&t.payload);
    assert!(text.starts_with("SIP/2.0 503 "), "{text}");
    assert!(text.contains("Retry-After: 5\r\n"), "{text}");
    assert_eq!(c.active_calls(), 1);
    assert!(std::iter::from_fn(|| c.poll_event()).any(|e| e
        == ProxyEvent::LimitRefused {
            side: Side::Pbx,
            limit: LimitKind::Calls
        }));

    let mut c = core();
    c.set_limits(CoreLimits {
        source_calls_per_s: 1.0,
        ..CoreLimits::default()
    });
    let refused = (0..5)
        .filter(|i| {
            let inv = invite_with_call_id(&format!("z9hG4bKr{i}"), &format!("r{i}@t"));
            c.handle_datagram(Side::Pbx, addr(PBX_UA), inv, now);
            drain_transmits(&mut c)
                .iter()
                .any(|t| t.payload.starts_with(b"SIP/2.0 503 "))
        })
        .count();
    assert_eq!(refused, 3, "burst of 2, then refused");
}

/// Draining (SIGTERM): a new call is answered 503 with Retry-After and counted; the call in
/// progress goes on (its BYE is forwarded and answered) and ends the drain when it ends.
#[test]
fn draining_refuses_new_calls_and_lets_calls_in_progress_finish() {
    let mut c = core();
    let t0 = Instant::now();
    let fwd = invite_through(&mut c, "z9hG4bKd1", t0);
    assert!(c.pending_transactions() > 0, "the INVITE awaits its answer");
    let ok = response_to(&fwd, 200, Some(&sdp("10.2.2.2", 5000)));
    c.handle_datagram(Side::Agents, addr(AGENT_UA), ok, t0);
    let _ = transmits(&mut c);
    let _ = drain_events(&mut c);
    assert_eq!(c.active_calls(), 1);

    c.set_draining(true);
    assert!(c.is_draining());
    c.handle_datagram(
        Side::Pbx,
        addr(PBX_UA),
        invite_with_call_id("z9hG4bKd2", "b@t"),
        t0,
    );
    let t = one_transmit(&mut c);
    let text = String::from_utf8_lossy(&t.payload);
    assert!(text.starts_with("SIP/2.0 503 "), "{text}");
    assert!(text.contains("Retry-After: 5\r\n"), "{text}");
    assert_eq!(c.active_calls(), 1, "the refused INVITE made no call");
    assert!(drain_events(&mut c).contains(&ProxyEvent::LimitRefused {
        side: Side::Pbx,
        limit: LimitKind::Draining
    }));

    // The call in progress: its BYE goes through, the 200 comes back, the call is over.
    let bye = request("BYE", "z9hG4bKd3", Some("uas1"), 2, None);
    c.handle_datagram(Side::Pbx, addr(PBX_UA), bye, t0);
    let sent = transmits(&mut c);
    let fwd_bye = sent
        .iter()
        .find(|t| t.side == Side::Agents && t.payload.starts_with(b"BYE "))
        .unwrap_or_else(|| panic!("the BYE was not forwarded: {sent:?}"));
    let fwd_bye = parse(&fwd_bye.payload);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&fwd_bye, 200, None),
        t0,
    );
    let up = transmits(&mut c);
    assert!(up.iter().any(|t| status_of(t) == Some(200)), "{up:?}");
    assert_eq!(c.active_calls(), 0);
    assert_eq!(c.pending_transactions(), 0, "nothing left to answer");
}

/// A source over `limits.source_requests_per_s` is dropped silently (no amplification).
#[test]
fn request_flood_from_one_source_is_dropped_unanswered() {
    let mut c = core();
    c.set_limits(CoreLimits {
        source_requests_per_s: 2.0,
        ..CoreLimits::default()
    });
    let now = Instant::now();
    let mut answered = 0;
    for i in 0..10 {
        let opt = request("OPTIONS", &format!("z9hG4bKo{i}"), None, 1, None);
        c.handle_datagram(Side::Pbx, addr(PBX_UA), opt, now);
        answered += drain_transmits(&mut c).len();
    }
    assert_eq!(answered, 4, "burst of 4 forwarded, the rest dropped");
    let dropped = std::iter::from_fn(|| c.poll_event())
        .filter(|e| {
            *e == ProxyEvent::LimitRefused {
                side: Side::Pbx,
                limit: LimitKind::SourceRequests,
            }
        })
        .count();
    assert_eq!(dropped, 6);
}

/// An SDES-SRTP offer (RFC 4568) whose keys would pass end to end.
fn srtp_offer(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/SAVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=crypto:1 F8_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
    )
}

/// Issue 14, fail safe: by default an offer callmask cannot decrypt (SDES it does not
/// terminate, DTLS-SRTP) is answered 488 toward the offerer and the call ends at once (no
/// ports held); it is never relayed to a tap that would record ciphertext as audio.
#[test]
fn undecodable_offers_are_refused_with_488() {
    let dtls = "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n\
                m=audio 4000 UDP/TLS/RTP/SAVPF 0\r\na=fingerprint:sha-256 4A:AD:B9\r\n\
                a=setup:actpass\r\n";
    for offer in [srtp_offer("10.1.1.1", 4000), dtls.to_owned()] {
        let mut c = core();
        let t0 = Instant::now();
        let raw = request("INVITE", "z9hG4bKs1", None, 1, Some(&offer));
        c.handle_datagram(Side::Pbx, addr(PBX_UA), raw, t0);
        let ts = transmits(&mut c);
        assert_eq!(ts.iter().map(status_of).collect::<Vec<_>>(), [Some(488)]);
        assert_eq!(ts[0].dest, addr(PBX_UA), "answered toward the offerer");
        assert_eq!(outcome(&drain_events(&mut c)), Some(CallOutcome::Failed));
        assert_eq!(c.ports().in_use(), 0);
    }
}

/// Issue 14, `media.undecodable = "relay-muted"`: the offer goes on with its profile and
/// `a=crypto` untouched (the peers' keys, end to end), and the media layer is told the stream
/// is encrypted, for good: a later plain answer does not un-mute it.
#[test]
fn relay_muted_marks_encrypted_streams() {
    let mut c = core();
    c.config.undecodable = config::types::UndecodableMode::RelayMuted;
    let t0 = Instant::now();
    let offer = srtp_offer("10.1.1.1", 4000);
    let raw = request("INVITE", "z9hG4bKs2", None, 1, Some(&offer));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw, t0);
    let inv = parse(&trying_then_forward(&mut c).payload);
    let body = body_str(&inv);
    assert!(body.contains(" RTP/SAVP 0 101\r\n"), "{body}");
    assert!(
        body.contains("a=crypto:1 F8_128_HMAC_SHA1_80 inline:WVNf"),
        "{body}"
    );
    let ups = upserts(&drain_events(&mut c));
    assert!(ups.last().expect("upsert")[0].encrypted);
    let plain = sdp("10.2.2.2", 6000);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 200, Some(&plain)),
        t0,
    );
    let ups = upserts(&drain_events(&mut c));
    assert!(ups.last().expect("upsert")[0].encrypted, "sticky");
}

const SDES_PBX: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
const SDES_AGENT: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";

fn sdes_sdp(ip: &str, port: u16, tag: u32, suite: &str, key: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/SAVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=crypto:{tag} {suite} inline:{key}\r\n"
    )
}

/// The `a=crypto` lines of a body.
fn cryptos(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("a=crypto:"))
        .map(str::to_owned)
        .collect()
}

fn last_specs(c: &mut ProxyCore) -> Vec<StreamSpec> {
    upserts(&drain_events(c)).pop().expect("an upsert")
}

/// Issue 14, RFC 4568 per leg (`mirror` both sides): each side gets callmask's own key, never
/// the other side's; the answer toward the offerer keeps its tag and suite; the media layer
/// gets both legs' keys (the peer's to decrypt, callmask's to encrypt).
#[test]
fn sdes_is_terminated_per_leg_with_own_keys() {
    let mut c = core();
    let t0 = Instant::now();
    let offer = sdes_sdp("10.1.1.1", 4000, 7, "AES_CM_128_HMAC_SHA1_32", SDES_PBX);
    let raw = request("INVITE", "z9hG4bKd1", None, 1, Some(&offer));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw, t0);
    let inv = parse(&trying_then_forward(&mut c).payload);
    let body = body_str(&inv);
    assert!(body.contains(" RTP/SAVP 0 101\r\n"), "{body}");
    let toward_agent = cryptos(&body);
    assert_eq!(toward_agent.len(), 1, "{body}");
    assert!(toward_agent[0].starts_with("1 AES_CM_128_HMAC_SHA1_32 inline:"));
    assert!(
        !body.contains(SDES_PBX),
        "the PBX's key never leaves its leg"
    );
    assert!(
        last_specs(&mut c)[0].srtp[Side::Pbx].is_none(),
        "no key of ours yet"
    );

    let answer = sdes_sdp("10.2.2.2", 6000, 1, "AES_CM_128_HMAC_SHA1_32", SDES_AGENT);
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 200, Some(&answer)),
        t0,
    );
    let ok = parse(&one_transmit(&mut c).payload);
    let body = body_str(&ok);
    assert!(body.contains(" RTP/SAVP 0 101\r\n"), "{body}");
    let toward_pbx = cryptos(&body);
    assert_eq!(toward_pbx.len(), 1, "{body}");
    assert!(
        toward_pbx[0].starts_with("7 AES_CM_128_HMAC_SHA1_32 inline:"),
        "{body}"
    );
    assert!(
        !body.contains(SDES_AGENT),
        "the agent's key never leaves its leg"
    );
    assert_ne!(toward_pbx[0][2..], toward_agent[0][2..], "one key per leg");
    let spec = last_specs(&mut c).remove(0);
    assert!(!spec.encrypted);
    let pbx = spec.srtp[Side::Pbx].clone().expect("PBX leg keys");
    let agents = spec.srtp[Side::Agents].clone().expect("agents leg keys");
    assert!(pbx.rx.crypto_value(7).ends_with(SDES_PBX));
    assert_eq!(pbx.tx.crypto_value(7), toward_pbx[0]);
    assert!(agents.rx.crypto_value(1).ends_with(SDES_AGENT));
    assert_eq!(agents.tx.crypto_value(1), toward_agent[0]);
    assert!(
        !format!("{spec:?}").contains(SDES_PBX),
        "Debug redacts keys"
    );
}

/// `agents.srtp = "optional"`: the agents' leg is plain (RTP/AVP, no key), the PBX's stays
/// SRTP; `pbx.srtp = "require"` refuses a plain offer from the PBX with 488.
#[test]
fn srtp_modes_mix_and_require() {
    use config::types::SrtpMode;
    let mut c = core();
    c.config.srtp = BySide::new(SrtpMode::Mirror, SrtpMode::Optional);
    let t0 = Instant::now();
    let offer = sdes_sdp("10.1.1.1", 4000, 1, "AES_CM_128_HMAC_SHA1_80", SDES_PBX);
    let raw = request("INVITE", "z9hG4bKd2", None, 1, Some(&offer));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw, t0);
    let inv = parse(&trying_then_forward(&mut c).payload);
    let body = body_str(&inv);
    assert!(
        body.contains(" RTP/AVP 0 101\r\n") && cryptos(&body).is_empty(),
        "{body}"
    );
    c.handle_datagram(
        Side::Agents,
        addr(AGENT_UA),
        response_to(&inv, 200, Some(&sdp("10.2.2.2", 6000))),
        t0,
    );
    let body = body_str(&parse(&one_transmit(&mut c).payload));
    assert!(body.contains(" RTP/SAVP 0 101\r\n"), "{body}");
    assert_eq!(cryptos(&body).len(), 1);
    let spec = last_specs(&mut c).remove(0);
    assert!(spec.srtp[Side::Pbx].is_some() && spec.srtp[Side::Agents].is_none());

    // Plain PBX toward a `require` agents' side: SRTP with callmask's key.
    let mut c = core();
    c.config.srtp = BySide::new(SrtpMode::Mirror, SrtpMode::Require);
    let raw = request("INVITE", "z9hG4bKd3", None, 1, Some(&sdp("10.1.1.1", 4000)));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw, t0);
    let body = body_str(&parse(&trying_then_forward(&mut c).payload));
    assert!(body.contains(" RTP/SAVP 0 101\r\n"), "{body}");
    assert!(cryptos(&body)[0].starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:"));

    let mut c = core();
    c.config.srtp = BySide::new(SrtpMode::Require, SrtpMode::Mirror);
    let raw = request("INVITE", "z9hG4bKd4", None, 1, Some(&sdp("10.1.1.1", 4000)));
    c.handle_datagram(Side::Pbx, addr(PBX_UA), raw, t0);
    let ts = transmits(&mut c);
    assert_eq!(ts.iter().map(status_of).collect::<Vec<_>>(), [Some(488)]);
    assert_eq!(c.ports().in_use(), 0);
}

/// A flood of requests from a stranger, or of garbage, gets few answers: each source's
/// refusals (403, 400) are answered within a budget of 5 per second (burst 10); beyond it
/// they are dropped unanswered, and every one is still counted.
#[test]
fn refusals_to_one_source_are_answered_within_a_budget() {
    let mut c = core();
    let now = Instant::now();
    let stranger = addr("203.0.113.7:5060");
    let mut answered = 0;
    for i in 0..100 {
        let opt = request("OPTIONS", &format!("z9hG4bKs{i}"), None, 1, None);
        c.handle_datagram(Side::Pbx, stranger, opt, now);
        c.handle_datagram(
            Side::Pbx,
            stranger,
            Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\nVia: broken\r\n\r\n"),
            now,
        );
        answered += drain_transmits(&mut c).len();
    }
    assert_eq!(
        answered, 10,
        "the burst of refusals answered, the rest dropped"
    );
    let counted = std::iter::from_fn(|| c.poll_event())
        .filter(|e| {
            matches!(
                e,
                ProxyEvent::AccessDenied { .. } | ProxyEvent::Rejected { .. }
            )
        })
        .count();
    assert_eq!(counted, 200, "every refusal counted");
    // A second later the budget has 5 more.
    let later = now + Duration::from_secs(1);
    for i in 0..20 {
        let opt = request("OPTIONS", &format!("z9hG4bKt{i}"), None, 1, None);
        c.handle_datagram(Side::Pbx, stranger, opt, later);
    }
    assert_eq!(drain_transmits(&mut c).len(), 5);
    // Another source has its own budget; the allowed peer is not affected.
    let opt = request("OPTIONS", "z9hG4bKu", None, 1, None);
    c.handle_datagram(Side::Pbx, addr("203.0.113.8:5060"), opt, later);
    assert_eq!(drain_transmits(&mut c).len(), 1);
}
