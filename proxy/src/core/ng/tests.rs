//! The NG core against dictionaries shaped as rtpengine's `ng` documentation and Kamailio's
//! `rtpengine` module write them.
#![allow(clippy::disallowed_methods)] // virtual clock origin

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::bencode::{decode, Limits, Value};
use super::*;
use crate::core::ports::PortRange;

const CALLER_SDP: &str = "v=0\r\no=- 1545997027 1 IN IP4 127.0.0.1\r\ns=tester\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=candidate:1 1 UDP 1 127.0.0.1 6000 typ host\r\n\
a=sendrecv\r\n";
const CALLEE_SDP: &str = "v=0\r\no=- 99 1 IN IP4 127.0.0.1\r\ns=tester\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

fn kamailio() -> SocketAddr {
    "127.0.0.1:40000".parse().expect("addr")
}

fn core() -> NgCore {
    let range = PortRange::new(30000, 30099).expect("range");
    NgCore::new(
        NgConfig::loopback(),
        PortAllocator::new(range, Duration::from_secs(5)),
    )
}

fn s(v: &str) -> Value {
    Value::str(v)
}

fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(|i| s(i)).collect())
}

fn dict(entries: &[(&str, Value)]) -> Value {
    Value::Dict(
        entries
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect(),
    )
}

/// Kamailio's `rtpengine_offer("replace-origin replace-session-connection ICE=remove RTP/AVP
/// trust-address symmetric direction=internal direction=external label=caller
/// record-call=yes DTMF-security=silence")` as the module encodes it.
fn offer(call: &str) -> Value {
    dict(&[
        ("command", s("offer")),
        ("call-id", s(call)),
        ("from-tag", s("ft1")),
        ("sdp", s(CALLER_SDP)),
        ("flags", list(&["trust-address", "symmetric"])),
        ("replace", list(&["origin", "session-connection"])),
        ("ICE", s("remove")),
        ("transport-protocol", s("RTP/AVP")),
        ("direction", list(&["internal", "external"])),
        ("label", s("caller")),
        ("record call", s("yes")),
        ("DTMF-security", s("silence")),
        ("via-branch", s("z9hG4bK.1")),
        ("received-from", list(&["IP4", "127.0.0.1"])),
        ("supports", list(&["load limit"])),
    ])
}

fn answer(call: &str) -> Value {
    dict(&[
        ("command", s("answer")),
        ("call-id", s(call)),
        ("from-tag", s("ft1")),
        ("to-tag", s("tt1")),
        ("sdp", s(CALLEE_SDP)),
        ("flags", list(&["trust-address"])),
        ("replace", list(&["origin", "session-connection"])),
        ("ICE", s("remove")),
    ])
}

struct Rig {
    core: NgCore,
    t0: Instant,
    n: u32,
}

impl Rig {
    fn new() -> Self {
        Rig {
            core: core(),
            t0: Instant::now(),
            n: 0,
        }
    }

    fn raw(&mut self, cookie: &str, v: &Value) -> Bytes {
        let mut data = format!("{cookie} ").into_bytes();
        v.encode_into(&mut data);
        self.core
            .handle_datagram(self.t0, kamailio(), &data)
            .expect("a reply")
    }

    /// Sends with a fresh cookie; returns the reply dictionary.
    fn send(&mut self, v: &Value) -> BTreeMap<Vec<u8>, Value> {
        self.n += 1;
        let cookie = format!("4711_{}", self.n);
        let reply = self.raw(&cookie, v);
        let body = reply
            .strip_prefix(format!("{cookie} ").as_bytes())
            .expect("reply starts with the cookie");
        match decode(body, Limits::default()).expect("reply decodes") {
            Value::Dict(d) => d,
            other => panic!("reply is not a dict: {other:?}"),
        }
    }

    fn events(&mut self) -> Vec<NgEvent> {
        std::iter::from_fn(|| self.core.poll_event())
            .filter(|e| !matches!(e, NgEvent::Handled { .. }))
            .collect()
    }
}

fn get<'a>(d: &'a BTreeMap<Vec<u8>, Value>, k: &str) -> Option<&'a str> {
    d.get(k.as_bytes()).and_then(Value::as_str)
}

fn port_of(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("m= port")
}

#[test]
fn ping_pongs() {
    let mut rig = Rig::new();
    let r = rig.send(&dict(&[("command", s("ping"))]));
    assert_eq!(get(&r, "result"), Some("pong"));
}

#[test]
fn offer_answer_delete_anchors_both_legs_in_the_media_core() {
    let mut rig = Rig::new();
    let r = rig.send(&offer("c1@x"));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
    let sdp_out = get(&r, "sdp").expect("sdp");
    assert!(!sdp_out.contains("a=candidate"), "ICE removed");
    assert!(sdp_out.contains("c=IN IP4 127.0.0.1"));
    let toward_callee = port_of(sdp_out);
    assert!((30000..30100).contains(&toward_callee));
    assert!(sdp_out.contains("telephone-event"), "codecs pass through");
    // Nothing for the media layer until the answer: no remote for the callee yet.
    assert!(rig.events().is_empty());

    let r = rig.send(&answer("c1@x"));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
    let toward_caller = port_of(get(&r, "sdp").expect("sdp"));
    assert_ne!(toward_caller, toward_callee);
    let ev = rig.events();
    let NgEvent::CallStarted { call, parties } = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(&parties.call_id[..], b"c1@x");
    assert_eq!(&parties.from_tag[..], b"ft1");
    assert_eq!(&parties.to_tag[..], b"tt1");
    let NgEvent::Media(MediaCommand::Upsert { streams, .. }) = &ev[1] else {
        panic!("{ev:?}")
    };
    let st = &streams[0];
    assert_eq!(st.pbx_local.rtp(), toward_caller);
    assert_eq!(st.agents_local.rtp(), toward_callee);
    assert_eq!(st.pbx_remote, Some("127.0.0.1:6000".parse().expect("addr")));
    assert_eq!(
        st.agents_remote,
        Some("127.0.0.1:7000".parse().expect("addr"))
    );

    let used = rig.core.ports().in_use();
    assert_eq!(used, 2);
    let r = rig.send(&dict(&[
        ("command", s("delete")),
        ("call-id", s("c1@x")),
        ("from-tag", s("ft1")),
    ]));
    assert_eq!(get(&r, "result"), Some("ok"));
    assert!(r.contains_key(&b"totals"[..]));
    assert_eq!(rig.core.ports().in_use(), 0);
    let ev = rig.events();
    assert_eq!(
        ev,
        vec![
            NgEvent::Media(MediaCommand::Remove { call: *call }),
            NgEvent::CallEnded { call: *call }
        ]
    );
    let r = rig.send(&dict(&[("command", s("delete")), ("call-id", s("c1@x"))]));
    assert_eq!(get(&r, "result"), Some("error"));
    assert_eq!(get(&r, "error-reason"), Some("Unknown call-id"));
}

#[test]
fn retransmitted_cookie_gets_the_same_reply_and_runs_once() {
    let mut rig = Rig::new();
    let a = rig.raw("77_1", &offer("c2@x"));
    let b = rig.raw("77_1", &offer("c2@x"));
    assert_eq!(a, b);
    assert_eq!(rig.core.ports().in_use(), 2, "one allocation, not two");
    // A new cookie with the same offer is a re-offer: same ports, new o= version not needed.
    let c = rig.raw("77_2", &offer("c2@x"));
    assert_eq!(rig.core.ports().in_use(), 2);
    let port = |r: &Bytes| port_of(std::str::from_utf8(r).expect("utf8"));
    assert_eq!(port(&a), port(&c));
}

#[test]
fn reoffer_from_the_callee_moves_the_callee_leg() {
    let mut rig = Rig::new();
    rig.send(&offer("c3@x"));
    rig.send(&answer("c3@x"));
    rig.events();
    let moved = CALLEE_SDP.replace("m=audio 7000", "m=audio 7100");
    let r = rig.send(&dict(&[
        ("command", s("offer")),
        ("call-id", s("c3@x")),
        ("from-tag", s("tt1")),
        ("to-tag", s("ft1")),
        ("sdp", s(&moved)),
    ]));
    assert_eq!(get(&r, "result"), Some("ok"));
    let ev = rig.events();
    let Some(NgEvent::Media(MediaCommand::Upsert { streams, .. })) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!(streams[0].agents_remote.map(|a| a.port()), Some(7100));
    assert_eq!(streams[0].pbx_remote.map(|a| a.port()), Some(6000));
}

#[test]
fn block_dtmf_and_recording_map_to_media_commands() {
    let mut rig = Rig::new();
    rig.send(&offer("c4@x"));
    // Before the answer: remembered, applied when the media starts.
    let r = rig.send(&dict(&[
        ("command", s("block DTMF")),
        ("call-id", s("c4@x")),
    ]));
    assert_eq!(get(&r, "result"), Some("ok"));
    assert!(rig.events().is_empty());
    rig.send(&answer("c4@x"));
    let ev = rig.events();
    assert!(ev.iter().any(|e| matches!(
        e,
        NgEvent::Call {
            command: CallCommand::AgentDtmf(Some(dsp::clamp::ClampMode::Silence)),
            ..
        }
    )));
    rig.send(&dict(&[
        ("command", s("unblock DTMF")),
        ("call-id", s("c4@x")),
    ]));
    rig.send(&dict(&[
        ("command", s("stop recording")),
        ("call-id", s("c4@x")),
    ]));
    let cmds: Vec<_> = rig
        .events()
        .into_iter()
        .filter_map(|e| match e {
            NgEvent::Call { command, .. } => Some(command),
            _ => None,
        })
        .collect();
    assert_eq!(
        cmds,
        vec![CallCommand::AgentDtmf(None), CallCommand::Secure(true)]
    );
    let q = rig.send(&dict(&[("command", s("query")), ("call-id", s("c4@x"))]));
    assert_eq!(get(&q, "recording"), Some("no"));
    let tags = q.get(&b"tags"[..]).and_then(Value::as_dict).expect("tags");
    let caller = tags.get(&b"ft1"[..]).and_then(Value::as_dict).expect("ft1");
    assert_eq!(
        caller.get(&b"label"[..]).and_then(Value::as_str),
        Some("caller")
    );
    // The callee's DTMF cannot be clamped: an honest error.
    let r = rig.send(&dict(&[
        ("command", s("block DTMF")),
        ("call-id", s("c4@x")),
        ("from-tag", s("tt1")),
    ]));
    assert_eq!(get(&r, "result"), Some("error"));
}

#[test]
fn list_names_live_calls() {
    let mut rig = Rig::new();
    rig.send(&offer("a@x"));
    rig.send(&offer("b@x"));
    let r = rig.send(&dict(&[("command", s("list"))]));
    let calls = r
        .get(&b"calls"[..])
        .and_then(Value::as_list)
        .expect("calls");
    assert_eq!(calls, &[s("a@x"), s("b@x")]);
}

#[test]
fn unknown_commands_and_flags_get_an_error_reason() {
    let mut rig = Rig::new();
    for bad in [
        dict(&[("command", s("publish"))]),
        dict(&[("nothing", s("here"))]),
        dict(&[("command", Value::Int(3))]),
        {
            let Value::Dict(mut d) = offer("e@x") else {
                unreachable!()
            };
            d.insert(b"flags".to_vec(), list(&["strict-source"]));
            Value::Dict(d)
        },
        {
            let Value::Dict(mut d) = offer("e@x") else {
                unreachable!()
            };
            d.insert(b"ICE".to_vec(), s("force"));
            Value::Dict(d)
        },
        {
            let Value::Dict(mut d) = offer("e@x") else {
                unreachable!()
            };
            d.insert(b"SDES".to_vec(), list(&["no-AES_CM_128_HMAC_SHA1_32"]));
            Value::Dict(d)
        },
        dict(&[("command", s("offer")), ("call-id", s("e@x"))]),
        dict(&[
            ("command", s("answer")),
            ("call-id", s("nope")),
            ("from-tag", s("a")),
            ("to-tag", s("b")),
            ("sdp", s(CALLEE_SDP)),
        ]),
        dict(&[
            ("command", s("offer")),
            ("call-id", s("e@x")),
            ("from-tag", s("a")),
            ("sdp", s("not sdp")),
        ]),
    ] {
        let r = rig.send(&bad);
        assert_eq!(get(&r, "result"), Some("error"), "{bad:?} → {r:?}");
        assert!(get(&r, "error-reason").is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(rig.core.ports().in_use(), 0);
    // Not bencode at all: still an error reply, since there is a cookie.
    let reply = rig
        .core
        .handle_datagram(rig.t0, kamailio(), b"9_9 d3:foo")
        .expect("reply");
    assert!(reply.starts_with(b"9_9 d"));
    // No cookie: nothing to answer.
    assert_eq!(
        rig.core.handle_datagram(rig.t0, kamailio(), b"garbage"),
        None
    );
}

/// An offer without a from-tag is refused before a call is made for it (no entry left to
/// expire, nothing counted against the call limit).
#[test]
fn an_offer_without_from_tag_leaves_no_call() {
    let mut rig = Rig::new();
    let r = rig.send(&dict(&[
        ("command", s("offer")),
        ("call-id", s("nf@x")),
        ("sdp", s(CALLER_SDP)),
    ]));
    assert_eq!(get(&r, "result"), Some("error"), "{r:?}");
    assert_eq!(rig.core.calls(), 0);
}

#[test]
fn undecodable_codecs_are_refused_as_in_sip_mode() {
    let mut rig = Rig::new();
    let g729 = CALLER_SDP
        .replace("RTP/AVP 0 101", "RTP/AVP 18")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "");
    let r = rig.send(&dict(&[
        ("command", s("offer")),
        ("call-id", s("g@x")),
        ("from-tag", s("a")),
        ("sdp", s(&g729)),
    ]));
    assert_eq!(get(&r, "result"), Some("error"), "{r:?}");
}

/// SDES keys (RFC 4568 §4.1 shape: 30 bytes of key and salt, base64), one per peer.
const CALLER_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
const CALLEE_KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";

/// `sdp` with its audio stream made SDES-SRTP under `key`.
fn sdes(sdp: &str, key: &str) -> String {
    sdp.replace("RTP/AVP 0 101", "RTP/SAVP 0 101").replace(
        "a=sendrecv\r\n",
        &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\na=sendrecv\r\n"),
    )
}

/// `offer("…")` / `answer("…")` with another SDP and transport-protocol (`None`: left out).
fn with(v: Value, sdp: &str, transport: Option<&str>) -> Value {
    let Value::Dict(mut d) = v else {
        unreachable!()
    };
    d.insert(b"sdp".to_vec(), s(sdp));
    match transport {
        Some(t) => d.insert(b"transport-protocol".to_vec(), s(t)),
        None => d.remove(&b"transport-protocol"[..]),
    };
    Value::Dict(d)
}

/// The SRTP legs of the first stream the last `Upsert` gave the media layer.
fn legs(events: &[NgEvent]) -> BySide<bool> {
    let spec = events
        .iter()
        .rev()
        .find_map(|e| match e {
            NgEvent::Media(MediaCommand::Upsert { streams, .. }) => streams.first().cloned(),
            _ => None,
        })
        .expect("an Upsert");
    assert!(!spec.encrypted, "no stream is relayed undecrypted");
    BySide::new(
        spec.srtp[Side::Pbx].is_some(),
        spec.srtp[Side::Agents].is_some(),
    )
}

fn sdp_of(r: &BTreeMap<Vec<u8>, Value>) -> String {
    get(r, "sdp").expect("an SDP").to_owned()
}

/// Kamailio's common `RTP/AVP` flag with an SRTP caller: callmask terminates the caller's SRTP
/// (the recorder path hears plaintext), offers plain RTP to the callee, and answers the caller
/// with SRTP under a key of its own: the caller's key never leaves callmask.
#[test]
fn sdes_caller_is_terminated_toward_a_plain_callee() {
    let mut rig = Rig::new();
    let r = rig.send(&with(
        offer("sdes1@x"),
        &sdes(CALLER_SDP, CALLER_KEY),
        Some("RTP/AVP"),
    ));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
    let toward_callee = sdp_of(&r);
    assert!(toward_callee.contains("RTP/AVP 0 101"), "{toward_callee}");
    assert!(!toward_callee.contains("a=crypto"), "{toward_callee}");
    let r = rig.send(&answer("sdes1@x"));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
    let toward_caller = sdp_of(&r);
    assert!(toward_caller.contains("RTP/SAVP 0 101"), "{toward_caller}");
    assert!(
        toward_caller.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{toward_caller}"
    );
    assert!(
        !toward_caller.contains(CALLER_KEY),
        "the caller's own key echoed"
    );
    let legs = legs(&rig.events());
    assert!(legs[Side::Pbx] && !legs[Side::Agents], "{legs:?}");
}

/// `RTP/SAVP` toward a plain caller's callee: SRTP with callmask's key on the callee's leg,
/// plain RTP back to the caller.
#[test]
fn rtp_savp_flag_offers_sdes_to_the_callee() {
    let mut rig = Rig::new();
    let r = rig.send(&with(offer("sdes2@x"), CALLER_SDP, Some("RTP/SAVP")));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
    let toward_callee = sdp_of(&r);
    assert!(toward_callee.contains("RTP/SAVP 0 101"), "{toward_callee}");
    assert!(toward_callee.contains("a=crypto:1 "), "{toward_callee}");
    let r = rig.send(&with(
        answer("sdes2@x"),
        &sdes(CALLEE_SDP, CALLEE_KEY),
        None,
    ));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
    let toward_caller = sdp_of(&r);
    assert!(toward_caller.contains("RTP/AVP 0 101"), "{toward_caller}");
    assert!(!toward_caller.contains("a=crypto"), "{toward_caller}");
    let legs = legs(&rig.events());
    assert!(!legs[Side::Pbx] && legs[Side::Agents], "{legs:?}");
}

/// No `transport-protocol`: the callee's leg mirrors the caller's (rtpengine's default), each
/// leg with its own key.
#[test]
fn sdes_is_mirrored_by_default_with_a_key_per_leg() {
    let mut rig = Rig::new();
    let r = rig.send(&with(offer("sdes3@x"), &sdes(CALLER_SDP, CALLER_KEY), None));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
    let toward_callee = sdp_of(&r);
    assert!(toward_callee.contains("RTP/SAVP 0 101"), "{toward_callee}");
    assert!(
        !toward_callee.contains(CALLER_KEY),
        "the caller's key forwarded"
    );
    let r = rig.send(&with(
        answer("sdes3@x"),
        &sdes(CALLEE_SDP, CALLEE_KEY),
        None,
    ));
    let toward_caller = sdp_of(&r);
    assert!(
        !toward_caller.contains(CALLEE_KEY),
        "the callee's key forwarded"
    );
    let legs = legs(&rig.events());
    assert!(legs[Side::Pbx] && legs[Side::Agents], "{legs:?}");
}

/// What callmask cannot decrypt, or a profile only DTLS-SRTP could serve, is an NG error (no
/// ports taken), never relayed to a tap that would record ciphertext (issue 14, fail safe).
#[test]
fn undecryptable_srtp_is_refused() {
    let mut rig = Rig::new();
    let f8 = sdes(CALLER_SDP, CALLER_KEY).replace("AES_CM_128_HMAC_SHA1_80", "F8_128_HMAC_SHA1_80");
    let dtls = CALLER_SDP
        .replace("RTP/AVP 0 101", "UDP/TLS/RTP/SAVP 0 101")
        .replace(
            "a=sendrecv",
            "a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\na=sendrecv",
        );
    let sdes_off = {
        let Value::Dict(mut d) = with(offer("r3@x"), CALLER_SDP, Some("RTP/SAVP")) else {
            unreachable!()
        };
        d.insert(b"SDES".to_vec(), list(&["off"]));
        Value::Dict(d)
    };
    for (what, v) in [
        ("unsupported suite", with(offer("r1@x"), &f8, None)),
        ("DTLS-SRTP", with(offer("r2@x"), &dtls, None)),
        ("RTP/SAVP with SDES-off", sdes_off),
        (
            "DTLS transport asked",
            with(offer("r4@x"), CALLER_SDP, Some("UDP/TLS/RTP/SAVP")),
        ),
    ] {
        let r = rig.send(&v);
        assert_eq!(get(&r, "result"), Some("error"), "{what}: {r:?}");
    }
    assert_eq!(rig.core.ports().in_use(), 0);
    // SDES-off on a plain offer is plain RTP: fine.
    let Value::Dict(mut d) = with(offer("ok@x"), CALLER_SDP, None) else {
        unreachable!()
    };
    d.insert(b"SDES".to_vec(), list(&["off"]));
    let r = rig.send(&Value::Dict(d));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
    assert!(!sdp_of(&r).contains("a=crypto"));
}

/// `block media` / `silence media` (Kamailio's `block_media()`, `silence_media()`): the
/// `from-tag` party's media, or every party's; asked before the answer, applied when media
/// starts; an `un-` lifts only its own kind.
#[test]
fn media_gates_map_to_forward_commands() {
    let mut rig = Rig::new();
    rig.send(&offer("g@x"));
    let gate = |cmd: &str, tag: Option<&str>| {
        let mut d = vec![("command", s(cmd)), ("call-id", s("g@x"))];
        if let Some(t) = tag {
            d.push(("from-tag", s(t)));
        }
        dict(&d)
    };
    // Before the answer: remembered.
    let r = rig.send(&gate("silence media", Some("ft1")));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
    rig.events();
    rig.send(&answer("g@x"));
    let forwards = |events: Vec<NgEvent>| -> Vec<(Side, ForwardGate)> {
        events
            .into_iter()
            .filter_map(|e| match e {
                NgEvent::Call {
                    command: CallCommand::Forward { from, gate },
                    ..
                } => Some((from, gate)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        forwards(rig.events()),
        vec![(Side::Pbx, ForwardGate::Silence)]
    );
    // Unblock does not lift a silence; unsilence does.
    rig.send(&gate("unblock media", Some("ft1")));
    assert!(forwards(rig.events()).is_empty());
    rig.send(&gate("unsilence media", Some("ft1")));
    assert_eq!(forwards(rig.events()), vec![(Side::Pbx, ForwardGate::Open)]);
    // No tag: every party.
    rig.send(&gate("block media", None));
    assert_eq!(
        forwards(rig.events()),
        vec![
            (Side::Pbx, ForwardGate::Block),
            (Side::Agents, ForwardGate::Block)
        ]
    );
    let r = rig.send(&gate("block media", Some("nobody")));
    assert_eq!(get(&r, "result"), Some("error"), "{r:?}");
}

#[test]
fn unanswered_calls_expire_and_free_their_ports() {
    let mut rig = Rig::new();
    rig.send(&offer("late@x"));
    assert_eq!(rig.core.calls(), 1);
    let at = rig.core.poll_timeout().expect("a deadline");
    assert!(at <= rig.t0 + UNANSWERED_TTL);
    rig.core.handle_timeout(rig.t0 + UNANSWERED_TTL);
    assert_eq!(rig.core.calls(), 0);
    assert_eq!(rig.core.ports().in_use(), 0);
}

#[test]
fn media_timeout_ends_the_call() {
    let mut rig = Rig::new();
    rig.send(&offer("m@x"));
    rig.send(&answer("m@x"));
    let call = match rig.events().first() {
        Some(NgEvent::CallStarted { call, .. }) => *call,
        other => panic!("{other:?}"),
    };
    assert!(call.0 >= NG_CALL_REF_BASE);
    rig.core.handle_media_timeout(call, rig.t0);
    assert!(rig.events().contains(&NgEvent::CallEnded { call }));
    assert_eq!(rig.core.calls(), 0);
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut c = core();
        let _ = c.handle_datagram(Instant::now(), kamailio(), &data);
    }

    #[test]
    fn arbitrary_dictionaries_get_a_result(
        cmd in prop::sample::select(vec!["offer", "answer", "delete", "query", "list", "ping", "block DTMF", "x"]),
        keys in proptest::collection::vec((prop::sample::select(vec!["call-id", "from-tag", "to-tag", "sdp", "flags", "ICE", "label", "limit"]), any::<u8>()), 0..6),
    ) {
        let mut c = core();
        let mut d = BTreeMap::from([(b"command".to_vec(), s(cmd))]);
        for (k, b) in keys {
            let v = match b % 3 { 0 => Value::Int(i64::from(b)), 1 => s(CALLER_SDP), _ => list(&["x"]) };
            d.insert(k.as_bytes().to_vec(), v);
        }
        let mut data = b"c ".to_vec();
        Value::Dict(d).encode_into(&mut data);
        let reply = c.handle_datagram(Instant::now(), kamailio(), &data).expect("reply");
        let body = decode(&reply[2..], Limits::default()).expect("bencoded reply");
        let result = body.as_dict().and_then(|d| d.get(&b"result"[..])).and_then(Value::as_str);
        prop_assert!(matches!(result, Some("ok" | "pong" | "error")));
    }
}

#[test]
fn a_draining_node_refuses_new_calls_and_keeps_the_ones_it_has() {
    let mut rig = Rig::new();
    let r = rig.send(&offer("c1@x"));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
    rig.core.set_draining(true);
    // A new call: refused before anything is allocated.
    let r = rig.send(&offer("c2@x"));
    assert_eq!(get(&r, "result"), Some("error"), "{r:?}");
    assert!(
        get(&r, "error-reason").is_some_and(|e| e.contains("draining")),
        "{r:?}"
    );
    assert_eq!(rig.core.calls(), 1);
    // The call in progress: its re-offer and answer go on.
    let r = rig.send(&offer("c1@x"));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
    let r = rig.send(&answer("c1@x"));
    assert_eq!(get(&r, "result"), Some("ok"), "{r:?}");
}
