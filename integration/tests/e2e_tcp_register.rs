//! End to end: SIP over TCP with sipp, and registration mode (a phone REGISTERs through
//! callmask, the PBX then calls the Contact callmask registered for it).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use callmask_integration::{sip_header, sip_status, Callmask, CallmaskOpts, Scenario, Sipp};

const T: Duration = Duration::from_secs(10);

#[test]
fn tcp_calls_complete() {
    // Each call takes two RTP/RTCP pairs, and freed pairs sit 5 s in quarantine.
    let cm = Callmask::start_with(CallmaskOpts {
        media_pairs: 64,
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let mut uas = Sipp::new(Scenario::Builtin("uas"), l.agents_peer.port())
        .arg("-t")
        .arg("t1")
        .calls(10)
        .timeout_s(30)
        .spawn();
    let mut uac = Sipp::new(Scenario::Builtin("uac"), l.pbx_peer.port())
        .arg("-t")
        .arg("t1")
        .calls(10)
        .rate(10)
        .pause_ms(200)
        .timeout_s(30)
        .remote(l.pbx_listen)
        .spawn();
    let a = uac.wait();
    let b = uas.wait();
    assert!(
        a.success() && b.success(),
        "sipp over TCP failed\n{}\n{}\n{}",
        a.report(),
        b.report(),
        cm.log_tail()
    );
    assert_eq!(a.counts().0, Some(10), "{}", a.report());
    let m = cm.wait_metrics("10 completed over TCP", T, |m| m.calls("completed") == 10.0);
    let tcp = m.sum(
        "callmask_sip_messages_received_total",
        &["transport=\"tcp\""],
    );
    assert!(
        tcp >= 60.0,
        "TCP messages counted: {tcp}\n{}",
        m.callmask_lines()
    );
}

fn recv(sock: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65_536];
    sock.set_read_timeout(Some(T)).expect("timeout");
    let (n, _) = sock.recv_from(&mut buf).expect("a SIP message within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The response to `req`: its Vias, From, To (+ tag), Call-ID, CSeq, and `extra` headers.
fn answer(req: &str, status: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in req.lines() {
        let l = line.to_ascii_lowercase();
        if l.starts_with("via:")
            || l.starts_with("from:")
            || l.starts_with("call-id:")
            || l.starts_with("cseq:")
        {
            out.push_str(line.trim_end());
            out.push_str("\r\n");
        } else if l.starts_with("to:") {
            out.push_str(line.trim_end());
            if !l.contains("tag=") {
                out.push_str(";tag=srv1");
            }
            out.push_str("\r\n");
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

#[test]
fn register_then_pbx_calls_the_phone() {
    let cm = Callmask::start_with(CallmaskOpts {
        agents_peer: false,
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let pbx = UdpSocket::bind(l.pbx_peer).expect("bind the PBX address");
    let phone = UdpSocket::bind("127.0.0.1:0").expect("bind phone");
    let me: SocketAddr = phone.local_addr().expect("addr");

    // 1. The phone registers through callmask's agents side.
    let register = format!(
        "REGISTER sip:pbx.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-reg-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@pbx.test>;tag=ph1\r\n\
         To: <sip:1001@pbx.test>\r\n\
         Call-ID: reg-e2e-1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:1001@{me}>;expires=120\r\n\
         Content-Length: 0\r\n\r\n"
    );
    phone
        .send_to(register.as_bytes(), l.agents_listen)
        .expect("send");
    let at_pbx = recv(&pbx);
    assert!(at_pbx.starts_with("REGISTER "), "{at_pbx}");
    let contact = sip_header(&at_pbx, "Contact").expect("Contact").to_string();
    assert!(
        contact.contains("sip:rg-"),
        "callmask's own Contact: {contact}"
    );
    assert!(
        !contact.contains(&me.to_string()),
        "the phone's address is hidden: {contact}"
    );
    let uri = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .expect("uri")
        .to_string();
    // 2. The PBX accepts it.
    let ok = answer(
        &at_pbx,
        "200 OK",
        &format!("Contact: <{uri}>;expires=120\r\n"),
    );
    pbx.send_to(ok.as_bytes(), l.pbx_listen).expect("send");
    let at_phone = recv(&phone);
    assert_eq!(sip_status(&at_phone), Some(200), "{at_phone}");
    let m = cm.wait_metrics("one registration", T, |m| {
        m.value("callmask_registrations_active") == 1.0
    });
    drop(m);

    // 3. The PBX calls the registered Contact; the phone gets it with its own URI.
    let pbx_addr = pbx.local_addr().expect("addr");
    let invite = format!(
        "INVITE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {pbx_addr};branch=z9hG4bK-inv-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@pbx.test>;tag=pbx1\r\n\
         To: <sip:1001@pbx.test>\r\n\
         Call-ID: call-e2e-1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{pbx_addr}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    pbx.send_to(invite.as_bytes(), l.pbx_listen).expect("send");
    // A stateful proxy answers 100 Trying at once (RFC 3261 §16.7).
    let trying = recv(&pbx);
    assert_eq!(sip_status(&trying), Some(100), "{trying}");
    let inv = recv(&phone);
    let first = inv.lines().next().unwrap_or_default();
    assert_eq!(first, format!("INVITE sip:1001@{me} SIP/2.0"), "{inv}");
    // 4. Busy: the 486 goes back to the PBX.
    phone
        .send_to(
            answer(&inv, "486 Busy Here", "").as_bytes(),
            l.agents_listen,
        )
        .expect("send");
    // callmask ACKs the 486 itself, hop by hop (RFC 3261 §17.1.1.3)…
    let ack = recv(&phone);
    assert!(ack.starts_with(&format!("ACK sip:1001@{me} ")), "{ack}");
    let busy = recv(&pbx);
    assert_eq!(sip_status(&busy), Some(486), "{busy}");
    // …and absorbs the PBX's ACK (same branch as the INVITE), which stops the 486.
    let to = sip_header(&busy, "To").expect("To");
    let pbx_ack = format!(
        "ACK {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {pbx_addr};branch=z9hG4bK-inv-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@pbx.test>;tag=pbx1\r\n\
         To: {to}\r\n\
         Call-ID: call-e2e-1\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    pbx.send_to(pbx_ack.as_bytes(), l.pbx_listen).expect("send");
    cm.wait_metrics("1 failed call", T, |m| m.calls("failed") == 1.0);

    // 5. Un-REGISTER removes the binding once the PBX confirms.
    let unreg = register
        .replace("expires=120", "expires=0")
        .replace("z9hG4bK-reg-1", "z9hG4bK-reg-2")
        .replace("CSeq: 1 REGISTER", "CSeq: 2 REGISTER");
    phone
        .send_to(unreg.as_bytes(), l.agents_listen)
        .expect("send");
    let at_pbx = recv(&pbx);
    pbx.send_to(answer(&at_pbx, "200 OK", "").as_bytes(), l.pbx_listen)
        .expect("send");
    assert_eq!(sip_status(&recv(&phone)), Some(200));
    cm.wait_metrics("no registration", T, |m| {
        m.value("callmask_registrations_active") == 0.0
    });
}

/// RFC 3261 §16.9 over TCP: the agent cannot be reached (nothing listens on its TCP port),
/// so callmask answers the PBX's INVITE with 503 at once instead of 408 after 32 s.
#[test]
#[allow(clippy::disallowed_methods)] // an e2e test reads the clock
fn tcp_unreachable_agent_gets_503() {
    use std::io::{Read, Write};
    let cm = Callmask::start();
    let l = cm.layout;
    let mut pbx = std::net::TcpStream::connect(l.pbx_listen).expect("connect to callmask");
    let me = pbx.local_addr().expect("addr");
    let invite = format!(
        "INVITE sip:agent@{} SIP/2.0\r\n\
         Via: SIP/2.0/TCP {me};branch=z9hG4bK-tcp-503\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:pbx@{me}>;tag=t503\r\n\
         To: <sip:agent@127.0.0.1>\r\n\
         Call-ID: tcp-503@e2e\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:pbx@{me};transport=tcp>\r\n\
         Content-Length: 0\r\n\r\n",
        l.pbx_listen
    );
    let started = std::time::Instant::now();
    pbx.write_all(invite.as_bytes()).expect("send");
    pbx.set_read_timeout(Some(T)).expect("timeout");
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains("SIP/2.0 503") {
        match pbx.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(
        got.starts_with("SIP/2.0 100 Trying"),
        "{got}\n{}",
        cm.log_tail()
    );
    assert!(
        got.contains("SIP/2.0 503 Service Unavailable"),
        "{got}\n{}",
        cm.log_tail()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "503 at once, not at timer B"
    );
    cm.wait_metrics("1 failed call, 0 active", T, |m| {
        m.calls("failed") == 1.0 && m.active() == 0.0
    });
}
