//! The NG shell's wiring (`ng.listen`): `callmask run` in-process on 127.0.0.1, commands sent
//! as a controller would over UDP. The protocol logic is unit-tested in `core::ng`; this checks
//! that replies go back to the source with the cookie, that offer/answer anchor on the media
//! range and bind the relay, and that the NG metrics count.
#![allow(clippy::disallowed_methods)] // test: real sockets and time

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use callmask::core::ng::bencode::{decode, Limits, Value};

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn dict(entries: &[(&str, &str)]) -> Vec<u8> {
    Value::Dict(
        entries
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), Value::str(v)))
            .collect(),
    )
    .encode()
}

fn ask(sock: &UdpSocket, to: SocketAddr, cookie: &str, body: &[u8]) -> Value {
    let mut msg = format!("{cookie} ").into_bytes();
    msg.extend_from_slice(body);
    sock.send_to(&msg, to).expect("send");
    let mut buf = vec![0u8; 65_536];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("a reply within the timeout");
    assert_eq!(from, to, "the reply comes from the NG socket");
    let reply = &buf[..n];
    let rest = reply
        .strip_prefix(format!("{cookie} ").as_bytes())
        .expect("reply starts with the cookie");
    decode(rest, Limits::default()).expect("bencoded reply")
}

fn field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.as_dict()?.get(k.as_bytes())?.as_str()
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

#[test]
fn ng_socket_answers_a_controller() {
    let ports = free_udp();
    let media = 42_000 + (ports % 500) * 20;
    let sets = [
        "pbx.listen=\"127.0.0.1:0\"".to_string(),
        "agents.listen=\"127.0.0.1:0\"".to_string(),
        "http.listen=\"127.0.0.1:0\"".to_string(),
        "ng.listen=\"127.0.0.1:0\"".to_string(),
        format!("media.ports=\"{media}-{}\"", media + 19),
        "masking.speech=false".to_string(),
    ];
    let cfg = config::load_with_overrides(None, &sets).expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let task = rt.spawn(callmask::io::run::run(cfg, stop_rx, move |b| {
        let _ = bound_tx.send(b);
    }));
    let bound = bound_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("callmask bound its sockets");
    let ng = bound.ng.expect("ng.listen bound");

    let sock = UdpSocket::bind("127.0.0.1:0").expect("controller socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let pong = ask(&sock, ng, "1_1", &dict(&[("command", "ping")]));
    assert_eq!(field(&pong, "result"), Some("pong"));

    let offer = ask(
        &sock,
        ng,
        "1_2",
        &dict(&[
            ("command", "offer"),
            ("call-id", "sock@test"),
            ("from-tag", "a"),
            ("sdp", OFFER),
        ]),
    );
    assert_eq!(field(&offer, "result"), Some("ok"), "{offer:?}");
    let sdp = field(&offer, "sdp").expect("sdp");
    let port: u16 = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next()?.parse().ok())
        .expect("m= port");
    // The NG calls' half of media.ports is the upper one.
    assert!(
        (media + 10..=media + 19).contains(&port),
        "{port} not in the NG half"
    );
    let answer = ask(
        &sock,
        ng,
        "1_3",
        &dict(&[
            ("command", "answer"),
            ("call-id", "sock@test"),
            ("from-tag", "a"),
            ("to-tag", "b"),
            ("sdp", &OFFER.replace("7000", "7002")),
        ]),
    );
    assert_eq!(field(&answer, "result"), Some("ok"));
    // The relay binds the callee-facing port once the answer started the media.
    let bound_port = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        UdpSocket::bind(("127.0.0.1", port)).is_err()
    });
    assert!(bound_port, "the relay did not bind {port}");
    // A retransmission of the offer's cookie: the same reply.
    let again = ask(
        &sock,
        ng,
        "1_2",
        &dict(&[("command", "offer"), ("call-id", "other")]),
    );
    assert_eq!(again, offer);
    let bad = ask(&sock, ng, "1_4", &dict(&[("command", "teleport")]));
    assert_eq!(field(&bad, "result"), Some("error"));
    let del = ask(
        &sock,
        ng,
        "1_5",
        &dict(&[("command", "delete"), ("call-id", "sock@test")]),
    );
    assert_eq!(field(&del, "result"), Some("ok"));

    let metrics = http_get(bound.http, "/metrics");
    for want in [
        "callmask_ng_commands_total{command=\"offer\",result=\"ok\"} 1",
        "callmask_ng_commands_total{command=\"unknown\",result=\"replayed\"} 1",
        "callmask_ng_commands_total{command=\"unknown\",result=\"error\"} 1",
        "callmask_ng_calls_active 0",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }
    let _ = stop_tx.send(true);
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(15), task).await });
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("http connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
