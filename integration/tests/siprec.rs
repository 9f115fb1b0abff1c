//! End to end: callmask's `siprec` recorder sink against a real SRS (sipp, `srs_uas.xml`)
//! after a dead one, and against only dead ones (fallback to a local WAV).
//!
//! The call is sipp PBX → callmask → sipp agent (as in `e2e.rs`), with Rust RTP endpoints as
//! their media: the caller plays a synthetic voice with two in-band DTMF key presses. The
//! SRS's two RTP streams are captured by Rust receivers and turned back into PCM (and WAV,
//! kept with `CALLMASK_E2E_KEEP=1`).
//!
//! The `rtp` sink's SRTP fork (`srtp_key_file`) is tested here too: it is the other recorder
//! that sends the sanitized streams over the network, and it plays the same calls.
#![allow(clippy::disallowed_methods)] // an e2e test reads the clock
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use callmask_integration::*;

const T: Duration = Duration::from_secs(10);

/// The agent's audio: a steady 350 Hz tone, one 20 ms µ-law frame.
fn agent_frame(i: usize) -> Vec<u8> {
    (0..160)
        .map(|k| {
            let t = (i * 160 + k) as f32 / 8000.0;
            let s = 3000.0 * (2.0 * std::f32::consts::PI * 350.0 * t).sin();
            dsp::g711::linear_to_ulaw(s as i16)
        })
        .collect()
}

/// callmask with one `siprec` sink to `srs_uri` (no OPTIONS probes: a sipp SRS with `-m 1`
/// would count one as its call), `extra` settings (`key=value,…`, may be empty), the
/// fallback folder `fallback`; speech masking off.
fn start_with_srs(srs_uri: &str, extra: &str, fallback: &Path) -> Callmask {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!("{extra},")
    };
    Callmask::start_with(CallmaskOpts {
        sets: vec![
            format!(
                "recorder=[{{kind=\"siprec\",srs=[\"{srs_uri}\"],{extra}probe_s=0,bind=\"127.0.0.1:0\",fallback_dir=\"{}\"}}]",
                fallback.display()
            ),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    })
}

fn siprec_set(srs: &[String], timeout_ms: u32, fallback: &Path) -> String {
    let list: Vec<String> = srs.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "recorder=[{{kind=\"siprec\",srs=[{}],timeout_ms={timeout_ms},probe_s=0,bind=\"127.0.0.1:0\",fallback_dir=\"{}\"}}]",
        list.join(","),
        fallback.display()
    )
}

/// Plays one call through callmask: sipp UAC (PBX) and UAS (agent), `frames` from the PBX's
/// RTP endpoint and a tone from the agent's, 20 ms apart; the UAC hangs up `hangup_ms` after
/// its ACK.
fn play_call(cm: &Callmask, frames: &[Vec<u8>], hangup_ms: u32) {
    let l = cm.layout;
    let dir = TempDir::new("siprec-call");
    let mut pbx = RtpEndpoint::bind();
    let mut agent = RtpEndpoint::bind();
    let re = l.media_rtp_port_regex();
    let uas_file = dir.path().join("uas_port");
    let uac_file = dir.path().join("uac_port");
    let mut uas = Sipp::new(
        Scenario::file("uas_call.xml").with("MEDIA_RE", re.clone()),
        l.agents_peer.port(),
    )
    .set("mport", agent.port())
    .set("portfile", uas_file.display())
    .timeout_s(30)
    .spawn();
    let mut uac = Sipp::new(
        Scenario::file("uac_call.xml").with("MEDIA_RE", re),
        l.pbx_peer.port(),
    )
    .remote(l.pbx_listen)
    .pause_ms(hangup_ms)
    .set("mport", pbx.port())
    .set("portfile", uac_file.display())
    .timeout_s(30)
    .spawn();
    let port = |f: &Path| wait_file_line(f, T).and_then(|s| s.parse::<u16>().ok());
    let (Some(cm_agents), Some(cm_pbx)) = (port(&uas_file), port(&uac_file)) else {
        panic!(
            "no media ports\n=== UAC ===\n{}\n=== UAS ===\n{}\n{}",
            uac.wait().report(),
            uas.wait().report(),
            cm.log_tail()
        );
    };
    let to_pbx_side = SocketAddr::from((LOCALHOST, cm_pbx));
    let to_agents_side = SocketAddr::from((LOCALHOST, cm_agents));
    let start = std::time::Instant::now();
    for (i, f) in frames.iter().enumerate() {
        pbx.send_pcmu(to_pbx_side, f);
        agent.send_pcmu(to_agents_side, &agent_frame(i));
        let next = start + Duration::from_millis(20 * (i as u64 + 1));
        if let Some(d) = next.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(d);
        }
    }
    uac.wait().assert_success("UAC", cm);
    uas.wait().assert_success("UAS", cm);
}

#[test]
fn siprec_fails_over_to_the_second_srs_and_sends_sanitized_streams() {
    let dead = UdpCapture::bind();
    let srs_port = free_udp_port();
    let caller_rx = RtpEndpoint::bind();
    let agent_rx = RtpEndpoint::bind();
    let fallback = TempDir::new("siprec-fallback-unused");
    let srs_list = [
        format!("sip:srs@{}", dead.addr()),
        format!("sip:srs@127.0.0.1:{srs_port}"),
    ];
    let cm = Callmask::start_with(CallmaskOpts {
        sets: vec![
            siprec_set(&srs_list, 1000, fallback.path()),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    });
    // -aa: sipp would answer OPTIONS with 200 (none come: probe_s=0, as sipp's -m 1 would
    // count a probe as its one call).
    let mut srs = Sipp::new(Scenario::file("srs_uas.xml"), srs_port)
        .set("p1", caller_rx.port())
        .set("p2", agent_rx.port())
        .arg("-aa")
        .timeout_s(40)
        .spawn();

    // 4 s of caller audio, keys "5", "9", "1" pressed at 0.6, 0.85 and 1.1 s: the first two
    // while the dead SRS is still being tried (held audio), the last after the failover.
    let (frames, sent) = synth_call_with_dtmf(4000, 600, "591");
    assert_eq!(
        dtmf_digit_count(&sent),
        3,
        "the test call must carry 3 DTMF digits"
    );
    play_call(&cm, &frames, 5000);

    let run = srs.wait();
    run.assert_success("SRS (sipp)", &cm);
    assert!(
        run.actions.contains("siprec invite ok") && run.actions.contains("siprec bye received"),
        "{}",
        run.report()
    );

    // The dead SRS got the INVITE (retransmitted) and, having sent no 1xx, no CANCEL
    // (besides the OPTIONS probes every SRS gets).
    let at_dead: Vec<(String, SocketAddr)> = dead
        .texts()
        .into_iter()
        .filter(|(t, _)| !t.starts_with("OPTIONS "))
        .collect();
    assert!(
        !at_dead.is_empty() && at_dead.iter().all(|(t, _)| t.starts_with("INVITE ")),
        "dead SRS saw {:?}",
        at_dead
            .iter()
            .map(|(t, _)| t.lines().next())
            .collect::<Vec<_>>()
    );
    let m = cm.wait_metrics("one failover, one session", T, |m| {
        m.value("callmask_siprec_failovers_total") == 1.0
            && m.value("callmask_siprec_sessions_established_total") == 1.0
    });
    assert_eq!(m.value("callmask_siprec_sessions_failed_total"), 0.0);
    assert_eq!(m.value("callmask_siprec_fallback_recordings_total"), 0.0);
    assert!(m.value("callmask_recorder_bytes_total{sink=\"siprec\"}") > 0.0);

    // Both streams arrived, PCMU only (no RFC 4733 event ever), one SSRC each.
    let caller = caller_rx.wait_received(150, T);
    let agent = agent_rx.wait_received(150, T);
    assert!(
        caller.len() >= 150,
        "caller stream: {} packets",
        caller.len()
    );
    assert!(agent.len() >= 150, "agent stream: {} packets", agent.len());
    for (name, s) in [("caller", &caller), ("agent", &agent)] {
        assert!(s.iter().all(|p| p.pt == 0), "{name}: a non-PCMU packet");
        assert!(
            s.iter().all(|p| p.ssrc == s[0].ssrc),
            "{name}: SSRC changed"
        );
    }
    let caller_pcm = rtp_to_pcm(&caller);
    let agent_pcm = rtp_to_pcm(&agent);
    let out = TempDir::new("siprec-received");
    write_wav_mono(&out.path().join("caller.wav"), &caller_pcm);
    write_wav_mono(&out.path().join("agent.wav"), &agent_pcm);
    // The audio held while the first SRS timed out was sent too: (nearly) the whole call.
    assert!(
        caller_pcm.len() >= 3500 * 8,
        "caller stream holds {} ms",
        caller_pcm.len() / 8
    );
    assert!(rms(&caller_pcm) > 1000.0 && rms(&agent_pcm) > 1000.0);
    // DTMF muted: no digit decodable, and the key presses are silence.
    assert_eq!(
        dtmf_digit_count(&caller_pcm),
        0,
        "DTMF leaked to the SRS (see {})",
        out.path().display()
    );
    let silent_ms = caller_pcm
        .chunks(80)
        .filter(|c| c.len() == 80 && rms(c) < 50.0)
        .count()
        * 10;
    eprintln!(
        "[siprec] caller stream {} ms ({} packets), agent {} ms; {silent_ms} ms silent; \
         dead SRS got {} INVITE(s)",
        caller_pcm.len() / 8,
        caller.len(),
        agent_pcm.len() / 8,
        at_dead.len()
    );
    assert!(
        (270..=1200).contains(&silent_ms),
        "{silent_ms} ms of the caller stream silent; the three 100 ms key presses should be \
         muted, the voice kept"
    );
    assert!(
        std::fs::read_dir(fallback.path()).unwrap().next().is_none(),
        "no fallback file when an SRS recorded the call"
    );
}

#[test]
fn siprec_falls_back_to_a_local_wav_when_every_srs_is_dead() {
    let dead = UdpCapture::bind();
    let nobody = free_udp_port(); // nothing listens there
    let fallback = TempDir::new("siprec-fallback");
    let srs_list = [
        format!("sip:srs@{}", dead.addr()),
        format!("sip:srs@127.0.0.1:{nobody}"),
    ];
    let cm = Callmask::start_with(CallmaskOpts {
        sets: vec![
            siprec_set(&srs_list, 300, fallback.path()),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    });
    let (frames, _) = synth_call_with_dtmf(2000, 200, "3");
    play_call(&cm, &frames, 2500);

    let m = cm.wait_metrics("every SRS failed, one fallback", T, |m| {
        m.value("callmask_siprec_sessions_failed_total") == 1.0
            && m.value("callmask_siprec_fallback_recordings_total") == 1.0
    });
    assert_eq!(m.value("callmask_siprec_failovers_total"), 2.0);
    assert_eq!(m.value("callmask_siprec_sessions_established_total"), 0.0);
    let wav = wait_for(T, || {
        std::fs::read_dir(fallback.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "wav"))
    })
    .unwrap_or_else(|| panic!("no fallback WAV\n{}", cm.log_tail()));
    let sidecar = wav.with_extension("json");
    assert!(
        wait_for(T, || sidecar.exists().then_some(())).is_some(),
        "no sidecar"
    );
    let (channels, samples) = read_wav(&wav);
    assert_eq!(channels, 2);
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    // Audio from the call's start (held while the SRSs timed out) is in the file.
    assert!(
        left.len() >= 1800 * 8,
        "fallback holds {} ms",
        left.len() / 8
    );
    let voiced_ms = left
        .chunks(80)
        .filter(|c| c.len() == 80 && rms(c) > 500.0)
        .count()
        * 10;
    eprintln!(
        "[siprec] fallback WAV {} ms, {voiced_ms} ms voiced",
        left.len() / 8
    );
    assert!(
        voiced_ms >= 1500,
        "only {voiced_ms} ms of caller audio in the fallback file"
    );
    assert_eq!(
        dtmf_digit_count(&left),
        0,
        "DTMF leaked to the fallback file"
    );
    // The dead SRS saw INVITEs only (and the OPTIONS probes).
    assert!(dead
        .texts()
        .iter()
        .all(|(t, _)| t.starts_with("INVITE ") || t.starts_with("OPTIONS ")));
}

/// The SRS goes away mid-call (its process killed, so nothing answers): the keep-alive
/// OPTIONS (every 1 s here, 500 ms to answer) finds it gone, and with no other SRS in the
/// list the rest of the call goes to the encrypted-or-plain fallback file: recorded, DTMF
/// muted, placed at its time in the call (the part the SRS got is silence there).
#[test]
fn siprec_srs_lost_mid_call_records_the_rest_to_the_fallback() {
    let srs_port = free_udp_port();
    let caller_rx = RtpEndpoint::bind();
    let agent_rx = RtpEndpoint::bind();
    let fallback = TempDir::new("siprec-lost");
    let cm = start_with_srs(
        &format!("sip:srs@127.0.0.1:{srs_port}"),
        "timeout_ms=500,keepalive_s=1",
        fallback.path(),
    );
    // -aa: the SRS answers the in-dialog OPTIONS with 200 while it lives.
    let mut srs = Sipp::new(Scenario::file("srs_uas.xml"), srs_port)
        .set("p1", caller_rx.port())
        .set("p2", agent_rx.port())
        .arg("-aa")
        .timeout_s(30)
        .spawn();
    let srs_pid = srs.pid().expect("sipp SRS pid");
    // 6 s of caller audio; keys "3" and "7" at 4.0 and 4.25 s, after the SRS is gone.
    let (frames, sent) = synth_call_with_dtmf(6000, 4000, "37");
    assert_eq!(
        dtmf_digit_count(&sent),
        2,
        "the test call must carry 2 digits"
    );
    let killer = std::thread::spawn(move || {
        // Established at once; one keep-alive answered at ~1 s; killed at ~1.8 s.
        std::thread::sleep(Duration::from_millis(1800));
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &srs_pid.to_string()])
            .status();
    });
    play_call(&cm, &frames, 6500);
    killer.join().unwrap();
    let _ = srs.wait();

    let m = cm.wait_metrics("the SRS lost, the rest to the fallback", T, |m| {
        m.value("callmask_siprec_srs_lost_total") == 1.0
            && m.value("callmask_siprec_fallback_recordings_total") == 1.0
    });
    assert_eq!(m.value("callmask_siprec_sessions_established_total"), 1.0);
    // The SRS got the start of the call.
    let got = caller_rx.received().len();
    assert!(got >= 40, "the SRS got {got} caller packets before it died");
    let wav = wait_for(T, || {
        std::fs::read_dir(fallback.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "wav"))
    })
    .unwrap_or_else(|| panic!("no fallback WAV\n{}", cm.log_tail()));
    let (channels, samples) = read_wav(&wav);
    assert_eq!(channels, 2);
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let voiced = |from_ms: usize, to_ms: usize| {
        left.get(from_ms * 8..(to_ms * 8).min(left.len()))
            .unwrap_or(&[])
            .chunks(80)
            .filter(|c| c.len() == 80 && rms(c) > 500.0)
            .count()
            * 10
    };
    let (before, after) = (voiced(0, 1500), voiced(3000, 6000));
    eprintln!(
        "[siprec] SRS killed at ~1.8 s: it got {got} caller packets; fallback WAV {} ms, \
         voiced {before} ms in 0-1.5 s (sent to the SRS), {after} ms in 3-6 s",
        left.len() / 8
    );
    assert_eq!(
        before, 0,
        "the part the SRS recorded is not in the fallback"
    );
    assert!(
        after >= 2500,
        "the rest of the call is in the fallback: {after} ms voiced"
    );
    assert_eq!(
        dtmf_digit_count(&left),
        0,
        "DTMF leaked to the fallback file"
    );
    // The gap is bounded by the keep-alive interval plus its answer time.
    let first_voiced_ms = left
        .chunks(80)
        .position(|c| c.len() == 80 && rms(c) > 500.0)
        .map_or(usize::MAX, |i| i * 10);
    assert!(
        first_voiced_ms <= 1800 + 1000 + 500 + 700,
        "fallback starts at {first_voiced_ms} ms"
    );
}

/// An SRS stand-in that answers every request with 200 while `answering` is set (the
/// probes' OPTIONS), on its own thread until `stop`.
fn options_answerer(
    sock: std::net::UdpSocket,
    answering: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    use std::sync::atomic::Ordering;
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        let mut answered = 0;
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !answering.load(Ordering::SeqCst) || !req.starts_with("OPTIONS ") {
                continue;
            }
            let mut resp = String::from("SIP/2.0 200 OK\r\n");
            for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                if let Some(v) = sip_header(&req, name) {
                    let tag = if name == "To" { ";tag=srs" } else { "" };
                    resp.push_str(&format!("{name}: {v}{tag}\r\n"));
                }
            }
            resp.push_str("Content-Length: 0\r\n\r\n");
            let _ = sock.send_to(resp.as_bytes(), from);
            answered += 1;
        }
        answered
    })
}

/// Between calls, every `probe_s` an OPTIONS probes the SRS: `/readyz` is ready while it
/// answers, not ready (`sinks_reachable`) once it stops (no fallback folder: a call now
/// could not be recorded), and ready again when it answers again;
/// `callmask_siprec_srs_reachable` follows.
#[test]
fn siprec_readyz_follows_the_srs_probes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let sock = std::net::UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let srs = sock.local_addr().unwrap();
    let answering = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let answerer = options_answerer(sock, answering.clone(), stop.clone());
    let cm = Callmask::start_with(CallmaskOpts {
        sets: vec![
            format!(
                "recorder=[{{kind=\"siprec\",srs=[\"sip:srs@{srs}\"],timeout_ms=300,probe_s=1,bind=\"127.0.0.1:0\"}}]"
            ),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    });
    let readyz = |want: u16| {
        wait_for(T, || {
            http_get(cm.layout.http, "/readyz").filter(|(s, _)| *s == want)
        })
    };
    assert!(readyz(200).is_some(), "not ready with the SRS answering");
    cm.wait_metrics("the SRS reachable", T, |m| {
        m.value("callmask_siprec_srs_reachable") == 1.0
    });
    answering.store(false, Ordering::SeqCst);
    let (_, body) = readyz(503).expect("still ready with the SRS silent");
    assert!(body.contains("sinks_reachable"), "{body}");
    cm.wait_metrics("the SRS unreachable", T, |m| {
        m.value("callmask_siprec_srs_reachable") == 0.0
    });
    answering.store(true, Ordering::SeqCst);
    assert!(readyz(200).is_some(), "not ready again with the SRS back");
    stop.store(true, Ordering::SeqCst);
    let answered = answerer.join().unwrap();
    assert!(answered >= 2, "{answered} probes answered");
}

/// `srtp = true`: the SIPREC offer is RTP/SAVP with one fresh key per stream, the SRS (sipp,
/// answering RTP/SAVP) receives SRTP that authenticates and decrypts with those keys, and the
/// decrypted caller stream has its DTMF muted; on the wire the payloads are ciphertext
/// (decoded as G.711 they hold no DTMF and do not match the decrypted audio).
#[test]
fn siprec_sends_sdes_srtp_when_configured() {
    let srs_port = free_udp_port();
    let (caller_rx, agent_rx) = (UdpCapture::bind(), UdpCapture::bind());
    let fallback = TempDir::new("siprec-srtp-unused");
    let cm = start_with_srs(
        &format!("sip:srs@127.0.0.1:{srs_port}"),
        "srtp=true",
        fallback.path(),
    );
    let mut srs = Sipp::new(Scenario::file("srs_uas_srtp.xml"), srs_port)
        .set("p1", caller_rx.addr().port())
        .set("p2", agent_rx.addr().port())
        .arg("-aa")
        .timeout_s(40)
        .spawn();
    let (frames, sent) = synth_call_with_dtmf(3000, 800, "48");
    assert_eq!(dtmf_digit_count(&sent), 2);
    play_call(&cm, &frames, 3500);
    let run = srs.wait();
    run.assert_success("SRS (sipp, SRTP)", &cm);
    let key = |n: u32| {
        let tag = format!("siprec key {n}: ");
        run.actions
            .lines()
            .find_map(|l| l.split(&tag).nth(1))
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|| panic!("no key {n} in the SRS log\n{}", run.report()))
    };
    let (k1, k2) = (key(1), key(2));
    assert_ne!(k1, k2, "one key per stream");
    let caller_wire = wait_for(T, || {
        let d = caller_rx.datagrams();
        (d.len() >= 140).then_some(d)
    })
    .expect("the caller stream reached the SRS");
    let agent_wire = agent_rx.datagrams();
    let caller = srtp_decrypt(&k1, &caller_wire);
    let agent = srtp_decrypt(&k2, &agent_wire);
    assert!(
        caller.iter().chain(&agent).all(|p| p.pt == 0),
        "PCMU inside"
    );
    let caller_pcm = rtp_to_pcm(&caller);
    assert!(rms(&caller_pcm) > 1000.0 && rms(&rtp_to_pcm(&agent)) > 1000.0);
    assert_eq!(dtmf_digit_count(&caller_pcm), 0, "DTMF leaked to the SRS");
    // On the wire: ciphertext, not the audio.
    let wire_as_g711: Vec<RtpPacket> = caller_wire
        .iter()
        .filter_map(|(b, f)| RtpPacket::parse(&b[..b.len() - 10], *f))
        .collect();
    let same = wire_as_g711
        .iter()
        .zip(&caller)
        .filter(|(w, p)| w.payload == p.payload)
        .count();
    assert_eq!(same, 0, "{same} packets went out in the clear");
    eprintln!(
        "[siprec] SRTP: {} caller / {} agent packets, all authenticated and decrypted; \
         caller {} ms, 0 DTMF digits",
        caller.len(),
        agent.len(),
        caller_pcm.len() / 8
    );
    assert_eq!(
        cm.metrics()
            .value("callmask_siprec_sessions_established_total"),
        1.0
    );
    // The keys go into the SDP only: never into callmask's log (debug level here).
    let log = cm.stderr();
    assert!(
        !log.contains(&k1) && !log.contains(&k2),
        "an SRTP key in the log"
    );
}

/// An SRS over TCP (`sip:…;transport=tcp`): sipp as the SRS in TCP mode gets the INVITE,
/// ACK and BYE over callmask's connection (TCP Via, `transport=tcp` Contact), and the two
/// streams arrive (RTP over UDP, as negotiated) with the DTMF muted.
#[test]
fn siprec_over_tcp_records_the_call() {
    let srs_port = free_tcp_port();
    let (caller_rx, agent_rx) = (RtpEndpoint::bind(), RtpEndpoint::bind());
    let fallback = TempDir::new("siprec-tcp-unused");
    let cm = start_with_srs(
        &format!("sip:srs@127.0.0.1:{srs_port};transport=tcp"),
        "",
        fallback.path(),
    );
    let mut srs = Sipp::new(Scenario::file("srs_uas.xml"), srs_port)
        .arg("-t")
        .arg("t1")
        .set("p1", caller_rx.port())
        .set("p2", agent_rx.port())
        .timeout_s(40)
        .spawn();
    let (frames, sent) = synth_call_with_dtmf(3000, 800, "48");
    assert_eq!(dtmf_digit_count(&sent), 2);
    play_call(&cm, &frames, 3500);
    let run = srs.wait();
    run.assert_success("SRS (sipp over TCP)", &cm);
    assert!(
        run.actions.contains("siprec invite ok") && run.actions.contains("siprec bye received"),
        "{}",
        run.report()
    );
    let caller = caller_rx.wait_received(140, T);
    let pcm = rtp_to_pcm(&caller);
    assert!(rms(&pcm) > 1000.0, "the caller stream arrived");
    assert_eq!(dtmf_digit_count(&pcm), 0, "DTMF leaked to the SRS");
    assert!(
        std::fs::read_dir(fallback.path()).unwrap().next().is_none(),
        "no fallback file when the SRS recorded the call"
    );
    eprintln!(
        "[siprec] over TCP: INVITE/ACK/BYE on callmask's connection, {} caller packets, 0 DTMF digits",
        caller.len()
    );
}

/// An SDES key line for a key file: `AES_CM_128_HMAC_SHA1_80 inline:<base64>` of 30 bytes
/// derived from `seed` (a test key, not a secret), and the base64 alone.
fn test_key(seed: u8) -> (String, String) {
    use base64::Engine as _;
    let bytes: Vec<u8> = (0..30u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(seed.wrapping_mul(101)) ^ 0x5a)
        .collect();
    let inline = base64::engine::general_purpose::STANDARD.encode(bytes);
    (format!("AES_CM_128_HMAC_SHA1_80 inline:{inline}\n"), inline)
}

fn write_key_file(path: &Path, line: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, line).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The `rtp` sink with `srtp_key_file` (issue 14): both legs reach the recorder as SRTP
/// that authenticates and decrypts with the shared key (every packet: `srtp_decrypt` fails
/// on any other), the decrypted caller leg has its DTMF muted and the wire is ciphertext;
/// a new key in the same file is used from the next call after SIGHUP, a key file others
/// can read is refused at reload (the old key stays), and no key reaches callmask's log.
#[test]
fn rtp_sink_sends_srtp_with_the_shared_key_and_rotates_it_on_sighup() {
    let dir = TempDir::new("rtp-srtp");
    let key_file = dir.path().join("recorder-srtp.key");
    let (line_a, key_a) = test_key(1);
    let (line_b, key_b) = test_key(2);
    write_key_file(&key_file, &line_a, 0o600);
    let (caller_rx, agent_rx) = UdpCapture::bind_pair();
    let cm = Callmask::start_with(CallmaskOpts {
        sets: vec![
            format!(
                "recorder=[{{kind=\"rtp\",target=\"{}\",srtp_key_file=\"{}\"}}]",
                caller_rx.addr(),
                key_file.display()
            ),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    });
    let (frames, sent) = synth_call_with_dtmf(3000, 800, "48");
    assert_eq!(dtmf_digit_count(&sent), 2);
    play_call(&cm, &frames, 3500);
    let caller_wire = wait_for(T, || {
        let d = caller_rx.datagrams();
        (d.len() >= 140).then_some(d)
    })
    .expect("the caller leg reached the recorder");
    let agent_wire = wait_for(T, || {
        let d = agent_rx.datagrams();
        (d.len() >= 140).then_some(d)
    })
    .expect("the agent leg reached the recorder");
    let caller = srtp_decrypt(&key_a, &caller_wire);
    let agent = srtp_decrypt(&key_a, &agent_wire);
    let caller_pcm = rtp_to_pcm(&caller);
    assert!(rms(&caller_pcm) > 1000.0 && rms(&rtp_to_pcm(&agent)) > 1000.0);
    assert_eq!(
        dtmf_digit_count(&caller_pcm),
        0,
        "DTMF leaked to the recorder"
    );
    assert_ne!(
        caller[0].ssrc, agent[0].ssrc,
        "one SSRC per leg under the key"
    );
    let same = caller_wire
        .iter()
        .zip(&caller)
        .filter(|((w, _), p)| w.len() >= 172 && w[12..172] == p.payload[..])
        .count();
    assert_eq!(same, 0, "{same} packets went out in the clear");

    // Rotation: a new key in the same file, SIGHUP; the next call uses it.
    write_key_file(&key_file, &line_b, 0o600);
    cm.signal("HUP");
    cm.wait_metrics("one successful reload", T, |m| {
        m.value("callmask_config_reloads_total{result=\"success\"}") == 1.0
    });
    let before = caller_rx.datagrams().len();
    let (frames, _) = synth_call_with_dtmf(1500, 400, "5");
    play_call(&cm, &frames, 2000);
    let rotated = wait_for(T, || {
        let d = caller_rx.datagrams();
        (d.len() >= before + 60).then(|| d[before..].to_vec())
    })
    .expect("the second call reached the recorder");
    let second = srtp_decrypt(&key_b, &rotated);
    assert_eq!(dtmf_digit_count(&rtp_to_pcm(&second)), 0);

    // A key file others can read: the reload is refused and names the key.
    write_key_file(&key_file, &line_a, 0o644);
    cm.signal("HUP");
    cm.wait_metrics("one refused reload", T, |m| {
        m.value("callmask_config_reloads_total{result=\"failure\"}") == 1.0
    });
    let log = cm.stderr();
    assert!(log.contains("recorder.srtp_key_file") && log.contains("readable by others"));
    assert!(
        !log.contains(&key_a) && !log.contains(&key_b),
        "an SRTP key in the log"
    );
    eprintln!(
        "[figure] rtp sink SRTP: {} caller / {} agent packets authenticated and decrypted with \
         the shared key, 0 DTMF digits; after SIGHUP the next call's {} packets under the new key",
        caller.len(),
        agent.len(),
        second.len()
    );
}
