//! The demo's two phones: a PBX-side UAC (the caller) and an agent-side UAS, each a tokio task
//! on real UDP sockets. Just enough SIP for one call through a proxy: INVITE with SDP (PCMU and
//! telephone-event/8000), 100/180/200, ACK, BYE/200, with RFC 3261 timer-A/E style
//! retransmissions; and RTP at real time (20 ms packets) both ways.
#![allow(clippy::disallowed_methods)] // edge program: drives real sockets in real time

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::audio::{Packet, EVENT_PT};
use crate::core::relay::RtpPacket;
use crate::core::sip::{parse_datagram, Frame, Limits, Method, SipMessage};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// A phone's sockets.
pub(crate) struct Phone {
    pub sip: UdpSocket,
    pub rtp: Arc<UdpSocket>,
    /// Keeps the RTCP port (RTP + 1) from being taken while the call runs, when available.
    pub _rtcp: Option<UdpSocket>,
}

impl Phone {
    /// Bind SIP on an ephemeral port and an RTP/RTCP pair on 127.0.0.1.
    pub(crate) async fn bind() -> std::io::Result<Phone> {
        let sip = UdpSocket::bind("127.0.0.1:0").await?;
        let mut last = None;
        for _ in 0..32 {
            let rtp = UdpSocket::bind("127.0.0.1:0").await?;
            let port = rtp.local_addr()?.port();
            if port % 2 == 0 {
                if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)).await {
                    return Ok(Phone {
                        sip,
                        rtp: Arc::new(rtp),
                        _rtcp: Some(rtcp),
                    });
                }
            }
            last = Some(rtp);
        }
        let rtp = match last {
            Some(r) => r,
            None => UdpSocket::bind("127.0.0.1:0").await?,
        };
        Ok(Phone {
            sip,
            rtp: Arc::new(rtp),
            _rtcp: None,
        })
    }

    pub(crate) fn sip_addr(&self) -> SocketAddr {
        self.sip
            .local_addr()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn rtp_port(&self) -> u16 {
        self.rtp.local_addr().map(|a| a.port()).unwrap_or(0)
    }
}

/// What a phone saw of the call.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MediaStats {
    pub sent: u64,
    pub received_audio: u64,
    pub received_events: u64,
}

/// The caller's view of the call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallerReport {
    /// From ACK to the BYE's 200.
    pub talk_time: Duration,
    pub media: MediaStats,
}

fn token(rng_seed: &mut u64) -> String {
    *rng_seed = rng_seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    // Letters only: identifiers in the demo's SIP carry no digits.
    (0..10)
        .map(|i| (b'a' + ((*rng_seed >> (i * 5)) & 0x0F) as u8) as char)
        .collect()
}

fn sdp(port: u16, session: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns={session}\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 {EVENT_PT}\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:{EVENT_PT} telephone-event/8000\r\na=fmtp:{EVENT_PT} 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// The audio destination of an SDP body (`c=` and the first `m=audio` port).
fn sdp_target(body: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(body).ok()?;
    let mut ip = None;
    let mut port = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("c=IN IP4 ") {
            ip = rest.trim().parse::<std::net::IpAddr>().ok().or(ip);
        } else if let Some(rest) = line.strip_prefix("m=audio ") {
            if port.is_none() {
                port = rest.split_whitespace().next()?.parse::<u16>().ok();
            }
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

fn parse(buf: &[u8]) -> Option<SipMessage> {
    match parse_datagram(Bytes::copy_from_slice(buf), &Limits::default()) {
        Ok(Frame::Message(m)) => Some(m),
        _ => None,
    }
}

async fn recv_sip(sock: &UdpSocket, until: Instant) -> Option<(SipMessage, SocketAddr)> {
    let mut buf = vec![0u8; 65_536];
    loop {
        let r = tokio::time::timeout_at(until.into(), sock.recv_from(&mut buf)).await;
        match r {
            Err(_) => return None,
            Ok(Err(_)) => continue,
            Ok(Ok((n, src))) => {
                if let Some(m) = parse(&buf[..n]) {
                    return Some((m, src));
                }
            }
        }
    }
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn rtp_packet(p: &Packet, seq: u16, ts_base: u32, ssrc: u32) -> Vec<u8> {
    crate::core::relay::rtp::RtpHeader {
        pt: p.pt,
        marker: p.marker,
        seq,
        ts: ts_base.wrapping_add(p.ts),
        ssrc,
    }
    .packet(&p.payload)
}

/// Send `packets` to `dest` at their times while counting what arrives on the same socket;
/// stops early when `stop` turns true. Returns the counts.
pub(crate) async fn run_media(
    sock: Arc<UdpSocket>,
    dest: SocketAddr,
    packets: Vec<Packet>,
    ssrc: u32,
    mut stop: watch::Receiver<bool>,
) -> MediaStats {
    let mut stats = MediaStats::default();
    let start = Instant::now();
    let mut seq: u16 = (ssrc >> 8) as u16;
    let mut buf = vec![0u8; 2048];
    let mut next = 0usize;
    let mut stop_seen = *stop.borrow();
    while !stop_seen {
        let due = packets
            .get(next)
            .map(|p| start + Duration::from_millis(p.at_ms));
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                if let Ok((n, _)) = r {
                    if let Ok(pkt) = RtpPacket::parse(&buf[..n]) {
                        if pkt.payload_type().get() == EVENT_PT {
                            stats.received_events += 1;
                        } else {
                            stats.received_audio += 1;
                        }
                    }
                }
            }
            _ = async {
                match due {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(p) = packets.get(next) {
                    let bytes = rtp_packet(p, seq, ssrc.rotate_left(7), ssrc);
                    seq = seq.wrapping_add(1);
                    if sock.send_to(&bytes, dest).await.is_ok() {
                        stats.sent += 1;
                    }
                }
                next += 1;
            }
            r = stop.changed() => {
                stop_seen = r.is_err() || *stop.borrow();
            }
        }
    }
    stats
}

/// The dialog state the caller keeps after the 200 OK.
struct Dialog {
    call_id: String,
    from: String,
    to: String,
    remote_target: String,
    routes: Vec<String>,
}

impl Dialog {
    fn request(&self, method: &str, cseq: u32, local: SocketAddr, branch: &str) -> String {
        let mut s = format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n",
            self.remote_target
        );
        for r in &self.routes {
            s.push_str(&format!("Route: {r}\r\n"));
        }
        s.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            self.from, self.to, self.call_id
        ));
        s
    }
}

/// Retransmit `msg` to `dest` on the timer-A/E schedule until `accept` returns Some for a
/// received message or `deadline` passes. `other` sees every message that `accept` declined.
async fn transact<T>(
    sock: &UdpSocket,
    dest: SocketAddr,
    msg: &[u8],
    deadline: Instant,
    mut accept: impl FnMut(&SipMessage) -> Option<T>,
) -> Option<T> {
    let mut interval = T1;
    let mut resend = Instant::now();
    let mut provisional = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        if now >= resend && !provisional {
            let _ = sock.send_to(msg, dest).await;
            resend = now + interval;
            interval = (interval * 2).min(T2);
        }
        let wait = if provisional {
            deadline
        } else {
            resend.min(deadline)
        };
        if let Some((m, _)) = recv_sip(sock, wait).await {
            if m.status().is_some_and(|s| s.is_provisional()) {
                provisional = true;
            }
            if let Some(t) = accept(&m) {
                return Some(t);
            }
        }
    }
}

/// The PBX-side caller: call `proxy`, play `caller_packets`, hang up.
pub(crate) async fn caller(
    phone: Phone,
    proxy: SocketAddr,
    agent_uri: String,
    caller_packets: Vec<Packet>,
    deadline: Instant,
) -> Result<CallerReport, String> {
    let mut seed = 0x0DE0_CA11u64 ^ u64::from(phone.sip_addr().port());
    let local = phone.sip_addr();
    let call_id = format!("{}@callmask-demo", token(&mut seed));
    let from = format!(
        "\"Demo caller\" <sip:caller@{local}>;tag={}",
        token(&mut seed)
    );
    let to_plain = format!("<{agent_uri}>");
    let body = sdp(phone.rtp_port(), "callmask demo caller");
    let invite = format!(
        "INVITE {agent_uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{};rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to_plain}\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{local}>\r\nUser-Agent: callmask-demo\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        token(&mut seed),
        body.len()
    );
    let ok = transact(&phone.sip, proxy, invite.as_bytes(), deadline, |m| {
        let st = m.status()?;
        if m.cseq().ok()?.method != Method::Invite {
            return None;
        }
        st.is_final().then(|| m.clone())
    })
    .await
    .ok_or("no answer to the INVITE (is the proxy running?)")?;
    let code = ok.status().map(|s| s.as_u16()).unwrap_or(0);
    if !(200..300).contains(&code) {
        return Err(format!("the call was refused with SIP {code}"));
    }
    let target = sdp_target(&ok.body()).ok_or("the 200 OK carried no usable SDP answer")?;
    let to = ok
        .header("To")
        .map(|b| text(&b))
        .ok_or("the 200 OK has no To header")?;
    let remote_target = ok
        .contacts()
        .ok()
        .and_then(|c| c.first().map(|c| text(c.uri().as_bytes())))
        .unwrap_or(agent_uri.clone());
    let mut routes: Vec<String> = ok.header_values("Record-Route").iter().map(text).collect();
    routes.reverse();
    let dialog = Dialog {
        call_id,
        from,
        to,
        remote_target,
        routes,
    };
    let ack = dialog.request("ACK", 1, local, &token(&mut seed));
    let _ = phone.sip.send_to(ack.as_bytes(), proxy).await;
    let answered = Instant::now();

    // Media, while answering 200 retransmissions with the same ACK.
    let (stop_tx, stop_rx) = watch::channel(false);
    let media_len = caller_packets.last().map(|p| p.at_ms).unwrap_or(0);
    let media = tokio::spawn(run_media(
        phone.rtp.clone(),
        target,
        caller_packets,
        0x5EC0_DE01,
        stop_rx,
    ));
    let media_end = answered + Duration::from_millis(media_len + 40);
    while let Some((m, _)) = recv_sip(&phone.sip, media_end.min(deadline)).await {
        if m.status().is_some_and(|s| s.is_success()) {
            let _ = phone.sip.send_to(ack.as_bytes(), proxy).await;
        }
    }
    if Instant::now() >= deadline {
        let _ = stop_tx.send(true);
        return Err("the call did not finish in time".into());
    }

    let bye = dialog.request("BYE", 2, local, &token(&mut seed));
    let bye_ok = transact(&phone.sip, proxy, bye.as_bytes(), deadline, |m| {
        let st = m.status()?;
        (m.cseq().ok()?.method == Method::Bye && st.is_final()).then_some(st.is_success())
    })
    .await;
    let talk_time = answered.elapsed();
    let _ = stop_tx.send(true);
    let media = media.await.unwrap_or_default();
    match bye_ok {
        Some(true) => Ok(CallerReport { talk_time, media }),
        Some(false) => Err("the BYE was refused".into()),
        None => Err("no answer to the BYE".into()),
    }
}

/// Build a response to `req` from the agent (Via, From, To with `tag`, Call-ID, CSeq and
/// Record-Route copied).
fn response(
    req: &SipMessage,
    code: u16,
    phrase: &str,
    tag: &str,
    extra: &str,
    body: &str,
) -> String {
    let mut s = format!("SIP/2.0 {code} {phrase}\r\n");
    for v in req.header_values("Via") {
        s.push_str(&format!("Via: {}\r\n", text(&v)));
    }
    if let Some(f) = req.header("From") {
        s.push_str(&format!("From: {}\r\n", text(&f)));
    }
    if let Some(t) = req.header("To") {
        let t = text(&t);
        if code > 100 && req.to().ok().and_then(|n| n.tag().cloned()).is_none() {
            s.push_str(&format!("To: {t};tag={tag}\r\n"));
        } else {
            s.push_str(&format!("To: {t}\r\n"));
        }
    }
    if let Some(c) = req.header("Call-ID") {
        s.push_str(&format!("Call-ID: {}\r\n", text(&c)));
    }
    if let Some(c) = req.header("CSeq") {
        s.push_str(&format!("CSeq: {}\r\n", text(&c)));
    }
    if code > 100 && req.method() == Some(&Method::Invite) {
        for r in req.header_values("Record-Route") {
            s.push_str(&format!("Record-Route: {}\r\n", text(&r)));
        }
    }
    s.push_str(extra);
    if body.is_empty() {
        s.push_str("Content-Length: 0\r\n\r\n");
    } else {
        s.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    s
}

/// The agent: answer one INVITE after a short ring, talk back quietly, hang up on BYE.
pub(crate) async fn agent(
    phone: Phone,
    agent_packets: Vec<Packet>,
    deadline: Instant,
) -> Result<MediaStats, String> {
    let local = phone.sip_addr();
    let tag = "agenttag";
    let (invite, proxy) = loop {
        let (m, src) = recv_sip(&phone.sip, deadline)
            .await
            .ok_or("the agent never received the INVITE")?;
        if m.method() == Some(&Method::Invite) {
            break (m, src);
        }
    };
    let target = sdp_target(&invite.body()).ok_or("the INVITE carried no usable SDP offer")?;
    let send = |s: String| {
        let sock = &phone.sip;
        async move {
            let _ = sock.send_to(s.as_bytes(), proxy).await;
        }
    };
    send(response(&invite, 100, "Trying", tag, "", "")).await;
    send(response(&invite, 180, "Ringing", tag, "", "")).await;
    // Ring briefly (answering INVITE retransmissions with the 180).
    let ring_end = Instant::now() + Duration::from_millis(400);
    while let Some((m, _)) = recv_sip(&phone.sip, ring_end).await {
        if m.method() == Some(&Method::Invite) {
            send(response(&invite, 180, "Ringing", tag, "", "")).await;
        }
    }
    let contact = format!("Contact: <sip:agent@{local}>\r\nUser-Agent: callmask-demo\r\n");
    let body = sdp(phone.rtp_port(), "callmask demo agent");
    let ok = response(&invite, 200, "OK", tag, &contact, &body);
    // Timer G: retransmit the 200 until the ACK.
    let mut interval = T1;
    loop {
        send(ok.clone()).await;
        let wait = (Instant::now() + interval).min(deadline);
        let mut acked = false;
        while let Some((m, _)) = recv_sip(&phone.sip, wait).await {
            match m.method() {
                Some(Method::Ack) => {
                    acked = true;
                    break;
                }
                Some(Method::Invite) => send(ok.clone()).await,
                _ => {}
            }
        }
        if acked {
            break;
        }
        if Instant::now() >= deadline {
            return Err("the agent's 200 OK was never acknowledged".into());
        }
        interval = (interval * 2).min(T2);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let media = tokio::spawn(run_media(
        phone.rtp.clone(),
        target,
        agent_packets,
        0x0A6E_0701,
        stop_rx,
    ));
    loop {
        let Some((m, _)) = recv_sip(&phone.sip, deadline).await else {
            let _ = stop_tx.send(true);
            return Err("the agent never received the BYE".into());
        };
        match m.method() {
            Some(Method::Bye) => {
                send(response(&m, 200, "OK", tag, "", "")).await;
                break;
            }
            Some(Method::Invite) => send(ok.clone()).await,
            _ => {}
        }
    }
    let _ = stop_tx.send(true);
    // Answer BYE retransmissions for a moment (the caller may not have our 200 yet).
    let linger = Instant::now() + Duration::from_millis(300);
    while let Some((m, _)) = recv_sip(&phone.sip, linger).await {
        if m.method() == Some(&Method::Bye) {
            send(response(&m, 200, "OK", tag, "", "")).await;
        }
    }
    Ok(media.await.unwrap_or_default())
}
