//! The `siprec` sink driven with synthetic tap events (no proxy), against SRSs made of UDP
//! sockets on 127.0.0.1: an age-encrypted fallback when every SRS is dead (audio held while
//! the SRS timed out included), and a BYE from the SRS stopping the streams.

#![allow(clippy::disallowed_methods)] // the test waits on the wall clock (SIP timers)

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callmask::core::media::tap::TapEvent;
use callmask::core::proxy::{CallRef, Side};
use callmask::io::recorder::Recorders;
use callmask::metrics::Metrics;
use config::types::{AgeRecipient, ListenAddr, SipUri, SrsKeepaliveSecs, SrsTimeoutMs};
use config::{Config, RecorderConfig, SiprecRecorder};
use tokio::sync::mpsc;

mod common;
use common::{files, frame, tmpdir};

fn siprec(srs: SocketAddr, fallback: Option<&Path>, encrypt_to: Vec<AgeRecipient>) -> Config {
    Config {
        recorders: vec![RecorderConfig::Siprec(SiprecRecorder {
            srs: vec![SipUri::try_from(format!("sip:srs@{srs}").as_str()).expect("uri")],
            timeout_ms: SrsTimeoutMs::try_from(150).expect("timeout"),
            keepalive_s: SrsKeepaliveSecs::try_from(10).expect("keepalive"),
            probe_s: SrsKeepaliveSecs::try_from(0).expect("probe"),
            srtp: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_server_name: None,
            fallback_dir: fallback.map(Path::to_path_buf),
            encrypt_to,
            bind: ListenAddr::try_from("127.0.0.1:0").expect("bind"),
        })],
        ..Config::default()
    }
}

fn start(
    cfg: &Config,
) -> (
    mpsc::Sender<TapEvent>,
    tokio::task::JoinHandle<()>,
    Arc<Metrics>,
) {
    let metrics = Arc::new(Metrics::new());
    let rec = Recorders::from_config(cfg, metrics.clone());
    assert!(!rec.is_empty(), "the siprec sink must be built");
    let (tx, rx) = mpsc::channel(256);
    (tx, tokio::spawn(rec.run(rx)), metrics)
}

/// `ms` of caller audio (a ramp, never 0) from media time `from_ms`.
async fn talk(tx: &mpsc::Sender<TapEvent>, call: u64, from_ms: u64, ms: u64) {
    for t in (from_ms..from_ms + ms).step_by(20) {
        let at = t * 8;
        let s: Vec<i16> = (at..at + 160).map(|i| (i % 400) as i16 + 100).collect();
        tx.send(frame(call, Side::Pbx, at, &s))
            .await
            .expect("alive");
    }
}

fn counter(m: &Metrics, name: &str) -> f64 {
    m.render()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn every_srs_dead_gives_an_encrypted_fallback_with_the_held_audio() {
    let dead = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dir = tmpdir("siprec", "fallback");
    let id = age::x25519::Identity::generate();
    let recipient = AgeRecipient::try_from(id.to_public().to_string().as_str()).expect("recipient");
    let (tx, task, metrics) = start(&siprec(
        dead.local_addr().expect("addr"),
        Some(&dir),
        vec![recipient],
    ));
    tx.send(TapEvent::Start {
        call: CallRef(1),
        caller_side: Side::Pbx,
        meta: Default::default(),
    })
    .await
    .expect("alive");
    // 1 s of audio while the SRS is still being tried (held), then it times out.
    talk(&tx, 1, 0, 1000).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        counter(&metrics, "callmask_siprec_sessions_failed_total"),
        1.0
    );
    assert_eq!(
        counter(&metrics, "callmask_siprec_fallback_recordings_total"),
        1.0
    );
    talk(&tx, 1, 1000, 1000).await;
    tx.send(TapEvent::End {
        call: CallRef(1),
        length: None,
    })
    .await
    .expect("alive");
    drop(tx);
    task.await.expect("recorder");
    let names = files(&dir);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.ends_with(".age")), "{names:?}");
    let wav_name = names.iter().find(|n| n.ends_with(".wav.age")).expect("wav");
    let ct = std::fs::read(dir.join(wav_name)).expect("read");
    let pt = age::decrypt(&id, &ct).expect("decrypts with the configured key");
    assert_eq!(&pt[..4], b"RIFF");
    let left: Vec<i16> = pt[44..]
        .chunks_exact(4)
        .map(|f| i16::from_le_bytes([f[0], f[1]]))
        .collect();
    assert_eq!(left.len(), 2 * 8000, "the whole call, held audio first");
    assert!(left.iter().all(|&s| s >= 100), "no audio lost or zeroed");
    let _ = std::fs::remove_dir_all(dir);
}

/// A minimal SRS: answers the INVITE with 200 (media to `media`), takes the ACK, then (with
/// `hang_up`) ends the session with a BYE and returns the BYE's response status line, or
/// waits for callmask's BYE, answers it and returns its request line.
fn minimal_srs(sock: UdpSocket, media: u16, hang_up: bool) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = vec![0u8; 65_536];
        let (n, from) = sock.recv_from(&mut buf).expect("INVITE");
        let invite = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(invite.starts_with("INVITE "), "{invite}");
        let header = |name: &str| -> String {
            invite
                .lines()
                .find(|l| {
                    l.to_ascii_lowercase()
                        .starts_with(&format!("{}:", name.to_ascii_lowercase()))
                })
                .unwrap_or_default()
                .to_owned()
        };
        let (via, from_h, to, call_id, cseq) = (
            header("Via"),
            header("From"),
            header("To"),
            header("Call-ID"),
            header("CSeq"),
        );
        let local = sock.local_addr().expect("addr");
        let sdp = format!(
            "v=0\r\no=srs 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {media} RTP/AVP 0\r\na=label:1\r\na=recvonly\r\n\
             m=audio 0 RTP/AVP 0\r\na=label:2\r\n"
        );
        let ok = format!(
            "SIP/2.0 200 OK\r\n{via}\r\n{from_h}\r\n{to};tag=srs1\r\n{call_id}\r\n{cseq}\r\n\
             Contact: <sip:srs@{local}>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        sock.send_to(ok.as_bytes(), from).expect("200");
        let (n, _) = sock.recv_from(&mut buf).expect("ACK");
        assert!(buf[..n].starts_with(b"ACK "));
        if !hang_up {
            let (n, from) = sock.recv_from(&mut buf).expect("BYE from callmask");
            let bye = String::from_utf8_lossy(&buf[..n]).into_owned();
            let copy: Vec<&str> = bye
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    ["via:", "from:", "to:", "call-id:", "cseq:"]
                        .iter()
                        .any(|h| l.starts_with(h))
                })
                .collect();
            let ok = format!(
                "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
                copy.join("\r\n")
            );
            sock.send_to(ok.as_bytes(), from).expect("200");
            return bye.lines().next().unwrap_or_default().to_owned();
        }
        std::thread::sleep(Duration::from_millis(300));
        let bye = format!(
            "BYE sip:callmask@{from} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKsrsbye\r\n\
             From: {};tag=srs1\r\nTo: {}\r\n{call_id}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n",
            to.trim_start_matches("To:").trim(),
            from_h.trim_start_matches("From:").trim(),
        );
        sock.send_to(bye.as_bytes(), from).expect("BYE");
        let (n, _) = sock.recv_from(&mut buf).expect("BYE response");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    })
}

#[tokio::test]
async fn a_bye_from_the_srs_stops_the_stream_and_is_counted() {
    let srs = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let srs_addr = srs.local_addr().expect("addr");
    let media = UdpSocket::bind("127.0.0.1:0").expect("bind");
    media
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let srs = minimal_srs(srs, media.local_addr().expect("addr").port(), true);
    let (tx, task, metrics) = start(&siprec(srs_addr, None, Vec::new()));
    tx.send(TapEvent::Start {
        call: CallRef(2),
        caller_side: Side::Pbx,
        meta: Default::default(),
    })
    .await
    .expect("alive");
    talk(&tx, 2, 0, 200).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        counter(&metrics, "callmask_siprec_sessions_established_total"),
        1.0
    );
    let status = tokio::task::spawn_blocking(move || srs.join().expect("srs"))
        .await
        .expect("join");
    assert_eq!(status, "SIP/2.0 200 OK");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(counter(&metrics, "callmask_siprec_srs_byes_total"), 1.0);
    // Held audio went out (10 packets of 20 ms), with the declined agent stream not sent.
    let mut buf = [0u8; 2048];
    let mut before = 0;
    while media.recv(&mut buf).is_ok() {
        before += 1;
    }
    assert_eq!(before, 10);
    // After the BYE nothing more is sent.
    talk(&tx, 2, 200, 400).await;
    tx.send(TapEvent::End {
        call: CallRef(2),
        length: None,
    })
    .await
    .expect("alive");
    drop(tx);
    task.await.expect("recorder");
    assert!(
        media.recv(&mut buf).is_err(),
        "audio sent after the SRS's BYE"
    );
}

#[tokio::test]
async fn a_call_without_audio_opens_no_session() {
    let srs = UdpSocket::bind("127.0.0.1:0").expect("bind");
    srs.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let dir = tmpdir("siprec", "no-audio");
    let (tx, task, metrics) = start(&siprec(
        srs.local_addr().expect("addr"),
        Some(&dir),
        Vec::new(),
    ));
    tx.send(TapEvent::Start {
        call: CallRef(3),
        caller_side: Side::Pbx,
        meta: Default::default(),
    })
    .await
    .expect("alive");
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(TapEvent::End {
        call: CallRef(3),
        length: None,
    })
    .await
    .expect("alive");
    drop(tx);
    task.await.expect("recorder");
    let mut buf = [0u8; 4096];
    assert!(
        srs.recv(&mut buf).is_err(),
        "an INVITE for a call without audio"
    );
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
    assert_eq!(counter(&metrics, "callmask_siprec_failovers_total"), 0.0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn shutdown_byes_an_established_session() {
    let srs = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let srs_addr = srs.local_addr().expect("addr");
    let media = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let srs = minimal_srs(srs, media.local_addr().expect("addr").port(), false);
    let (tx, task, metrics) = start(&siprec(srs_addr, None, Vec::new()));
    tx.send(TapEvent::Start {
        call: CallRef(4),
        caller_side: Side::Pbx,
        meta: Default::default(),
    })
    .await
    .expect("alive");
    talk(&tx, 4, 0, 200).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        counter(&metrics, "callmask_siprec_sessions_established_total"),
        1.0
    );
    // The process stops with the call still up: the tap closes without an End.
    drop(tx);
    task.await.expect("recorder");
    let line = tokio::task::spawn_blocking(move || srs.join().expect("srs"))
        .await
        .expect("join");
    assert!(line.starts_with("BYE sip:srs@"), "{line}");
}
