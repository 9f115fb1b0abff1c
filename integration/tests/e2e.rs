//! End-to-end: the real `callmask run` binary between two sipp peers on 127.0.0.1.
//!
//! sipp is the PBX (UAC, bound on `pbx.peer`, sending to `pbx.listen`) and the agent (UAS,
//! bound on `agents.peer`); the Rust [`RtpEndpoint`]s are their media. Every test starts its
//! own callmask on fresh ports, so the tests run in parallel.
#![allow(clippy::disallowed_methods)] // an e2e test reads the clock
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use callmask_integration::*;

const T: Duration = Duration::from_secs(5);

fn port_file(dir: &TempDir, name: &str) -> std::path::PathBuf {
    dir.path().join(name)
}

fn read_port(
    file: &std::path::Path,
    who: &str,
    uac: &mut SippChild,
    uas: &mut SippChild,
    cm: &Callmask,
) -> u16 {
    match wait_file_line(file, Duration::from_secs(8)).and_then(|s| s.parse().ok()) {
        Some(p) => p,
        None => {
            let a = uac.wait();
            let b = uas.wait();
            panic!(
                "{who} never reported callmask's media port\n=== UAC ===\n{}\n=== UAS ===\n{}\n--- callmask log ---\n{}",
                a.report(),
                b.report(),
                cm.log_tail()
            );
        }
    }
}

/// Sends `n` packets each way through callmask (pbx → callmask's PBX-side port → agent and
/// back) and asserts every payload arrives unchanged and in order.
fn exchange_rtp(
    cm: &Callmask,
    pbx: &mut RtpEndpoint,
    agent: &mut RtpEndpoint,
    cm_pbx_port: u16,
    cm_agents_port: u16,
    n: u32,
) {
    let to_pbx_side = SocketAddr::from((LOCALHOST, cm_pbx_port));
    let to_agents_side = SocketAddr::from((LOCALHOST, cm_agents_port));
    let mut sent_a = Vec::new();
    let mut sent_b = Vec::new();
    for i in 0..n {
        sent_a.push(pbx.send_pcmu(to_pbx_side, &RtpEndpoint::payload(1, i)));
        sent_b.push(agent.send_pcmu(to_agents_side, &RtpEndpoint::payload(2, i)));
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_agent = agent.wait_received(n as usize, T);
    let at_pbx = pbx.wait_received(n as usize, T);
    let got_a: Vec<Vec<u8>> = at_agent.iter().map(|p| p.payload.clone()).collect();
    let got_b: Vec<Vec<u8>> = at_pbx.iter().map(|p| p.payload.clone()).collect();
    assert_eq!(
        got_a.len(),
        sent_a.len(),
        "PBX→agent: {} of {} packets arrived\n{}",
        got_a.len(),
        sent_a.len(),
        cm.log_tail()
    );
    assert_eq!(
        got_b.len(),
        sent_b.len(),
        "agent→PBX: {} of {} packets arrived\n{}",
        got_b.len(),
        sent_b.len(),
        cm.log_tail()
    );
    assert!(got_a == sent_a, "PBX→agent payloads differ");
    assert!(got_b == sent_b, "agent→PBX payloads differ");
    // Media comes from callmask's ports, not from the other endpoint.
    assert!(
        at_agent.iter().all(|p| p.from == to_agents_side),
        "agent got media from elsewhere: {:?}",
        at_agent[0].from
    );
    assert!(
        at_pbx.iter().all(|p| p.from == to_pbx_side),
        "PBX got media from elsewhere: {:?}",
        at_pbx[0].from
    );
    assert!(at_agent.iter().all(|p| p.pt == 0));
}

// 1 ---------------------------------------------------------------------------------------

#[test]
fn call_basic() {
    let cm = Callmask::start();
    let l = cm.layout;
    let dir = TempDir::new("call_basic");
    let mut pbx_media = RtpEndpoint::bind();
    let mut agent_media = RtpEndpoint::bind();
    let re = l.media_rtp_port_regex();
    let uas_file = port_file(&dir, "uas_port");
    let uac_file = port_file(&dir, "uac_port");
    let mut uas = Sipp::new(
        Scenario::file("uas_call.xml").with("MEDIA_RE", re.clone()),
        l.agents_peer.port(),
    )
    .set("mport", agent_media.port())
    .set("portfile", uas_file.display())
    .spawn();
    let mut uac = Sipp::new(
        Scenario::file("uac_call.xml").with("MEDIA_RE", re),
        l.pbx_peer.port(),
    )
    .remote(l.pbx_listen)
    .pause_ms(2500)
    .set("mport", pbx_media.port())
    .set("portfile", uac_file.display())
    .spawn();

    // The ports callmask advertised: toward the agent (in the INVITE) and toward the PBX
    // (in the 200 OK).
    let cm_agents_port = read_port(&uas_file, "UAS", &mut uac, &mut uas, &cm);
    let cm_pbx_port = read_port(&uac_file, "UAC", &mut uac, &mut uas, &cm);
    assert!(l.in_media_range(cm_agents_port) && l.in_media_range(cm_pbx_port));
    assert_ne!(cm_agents_port, cm_pbx_port);
    // One stream: an RTP/RTCP pair on each side = 4 ports (the gauge counts ports).
    let m = cm.metrics();
    assert_eq!(m.active(), 1.0, "{}", m.callmask_lines());
    assert_eq!(m.ports_in_use(), 4.0, "{}", m.callmask_lines());

    exchange_rtp(
        &cm,
        &mut pbx_media,
        &mut agent_media,
        cm_pbx_port,
        cm_agents_port,
        50,
    );

    let a = uac.wait();
    a.assert_success("UAC", &cm);
    let b = uas.wait();
    b.assert_success("UAS", &cm);
    let m = cm.wait_metrics("1 completed, 0 active, 0 ports in use", T, |m| {
        m.calls("completed") == 1.0 && m.active() == 0.0 && m.ports_in_use() == 0.0
    });
    assert_eq!(
        m.calls("failed") + m.calls("cancelled") + m.calls("timed_out"),
        0.0
    );

    // SIGTERM: a clean exit, and the call's stereo WAV + JSON sidecar are on disk.
    let mut cm = cm;
    let st = cm.stop(Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| s.success()),
        "callmask exit {st:?}\n{}",
        cm.log_tail()
    );
    let files: Vec<String> = std::fs::read_dir(&cm.rec_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with(".wav")),
        "no wav in {files:?}"
    );
    assert!(
        files.iter().any(|f| f.ends_with(".json")),
        "no sidecar in {files:?}"
    );
}

/// Starts the UAS then the UAC of a scenario pair, waits for both and asserts both passed.
fn run_pair(cm: &Callmask, uas: Sipp, uac: Sipp) -> (SippRun, SippRun) {
    let mut uas = uas.spawn();
    let mut uac = uac.remote(cm.layout.pbx_listen).spawn();
    let a = uac.wait();
    let b = uas.wait();
    if !a.success() || !b.success() {
        panic!(
            "sipp failed\n=== UAC ===\n{}\n=== UAS ===\n{}\n--- callmask log ---\n{}",
            a.report(),
            b.report(),
            cm.log_tail()
        );
    }
    (a, b)
}

// 4 ---------------------------------------------------------------------------------------

#[test]
fn busy_486() {
    let cm = Callmask::start();
    let l = cm.layout;
    let (uac, uas) = run_pair(
        &cm,
        Sipp::new(Scenario::file("uas_busy.xml"), l.agents_peer.port()),
        Sipp::new(Scenario::file("uac_busy.xml"), l.pbx_peer.port()),
    );
    // The UAC saw the 486 as the agent sent it; the agent got callmask's own ACK (hop by hop,
    // RFC 3261 §17.1.1.3: one Via, callmask's branch), not the PBX's.
    assert!(uac.messages.contains("SIP/2.0 486 Busy Here"));
    let acks: Vec<&str> = traced(&uas, "received")
        .into_iter()
        .filter(|m| m.starts_with("ACK "))
        .collect();
    assert_eq!(acks.len(), 1, "{}", uas.report());
    let vias = acks[0]
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("via:"))
        .collect::<Vec<_>>();
    assert!(
        vias.len() == 1 && vias[0].contains("z9hG4bKcm"),
        "callmask's ACK: {vias:?}"
    );
    let m = cm.wait_metrics("1 failed call, 0 active, 0 ports in use", T, |m| {
        m.calls("failed") == 1.0 && m.active() == 0.0 && m.ports_in_use() == 0.0
    });
    assert_eq!(
        m.calls("completed") + m.calls("cancelled"),
        0.0,
        "{}",
        m.callmask_lines()
    );
    // The PBX's ACK was absorbed: callmask never had to resend the 486 (timer G).
    std::thread::sleep(Duration::from_millis(1200));
    let m = cm.metrics();
    let resent = m.sum(
        "callmask_sip_retransmissions_total",
        &["side=\"pbx\"", "handling=\"resent\""],
    );
    assert_eq!(resent, 0.0, "{}", m.callmask_lines());
}

// 8 ---------------------------------------------------------------------------------------

#[test]
fn load_200_calls() {
    // Freed pairs wait 5 s in quarantine: 20 calls/s × 2 pairs × ~6 s, plus the live ones.
    let cm = Callmask::start_with(CallmaskOpts {
        media_pairs: 400,
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let (uac, uas) = run_pair(
        &cm,
        Sipp::new(Scenario::Builtin("uas"), l.agents_peer.port())
            .calls(200)
            .timeout_s(45),
        Sipp::new(Scenario::Builtin("uac"), l.pbx_peer.port())
            .calls(200)
            .rate(20)
            .pause_ms(300)
            .timeout_s(45),
    );
    let (ok, failed) = uac.counts();
    assert_eq!(ok, Some(200), "UAC successful calls\n{}", uac.report());
    assert_eq!(failed, Some(0), "UAC failed calls\n{}", uac.report());
    assert_eq!(
        uas.counts().0,
        Some(200),
        "UAS successful calls\n{}",
        uas.report()
    );
    let m = cm.wait_metrics("200 completed, 0 active, 0 ports in use", 3 * T, |m| {
        m.calls("completed") == 200.0 && m.active() == 0.0 && m.ports_in_use() == 0.0
    });
    assert_eq!(
        m.calls("failed") + m.calls("cancelled") + m.calls("timed_out"),
        0.0,
        "{}",
        m.callmask_lines()
    );
}

/// Two media workers (issue 15): concurrent calls are spread over both worker threads (the
/// per-worker `callmask_media_worker_calls` gauges both carry calls at once), every call
/// completes, and both gauges return to 0 when the calls end.
#[test]
fn two_media_workers_share_concurrent_calls() {
    let cm = Callmask::start_with(CallmaskOpts {
        media_pairs: 200,
        sets: vec!["media.workers=2".into()],
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let w0 = "callmask_media_worker_calls{worker=\"0\"}";
    let w1 = "callmask_media_worker_calls{worker=\"1\"}";
    let idle = cm.metrics();
    assert_eq!(
        (idle.get(w0), idle.get(w1)),
        (Some(0.0), Some(0.0)),
        "both workers exported, idle\n{}",
        idle.callmask_lines()
    );
    let mut uas = Sipp::new(Scenario::Builtin("uas"), l.agents_peer.port())
        .calls(40)
        .timeout_s(45)
        .spawn();
    let mut uac = Sipp::new(Scenario::Builtin("uac"), l.pbx_peer.port())
        .calls(40)
        .rate(20)
        .pause_ms(2000)
        .timeout_s(45)
        .remote(l.pbx_listen)
        .spawn();
    // 20 calls/s held 2 s: ~40 up at the peak, split over the two workers.
    let mut peak = (0.0f64, 0.0f64);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let m = cm.metrics();
        let (a, b) = (m.value(w0), m.value(w1));
        if a.min(b) > peak.0.min(peak.1) {
            peak = (a, b);
        }
        if peak.0 >= 5.0 && peak.1 >= 5.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = uac.wait();
    let b = uas.wait();
    assert!(
        a.success() && b.success(),
        "sipp failed\n=== UAC ===\n{}\n=== UAS ===\n{}\n--- callmask log ---\n{}",
        a.report(),
        b.report(),
        cm.log_tail()
    );
    assert!(
        peak.0 >= 5.0 && peak.1 >= 5.0,
        "both workers carry calls at once (peak seen: worker 0 {}, worker 1 {})",
        peak.0,
        peak.1
    );
    assert!(
        (peak.0 - peak.1).abs() <= 2.0,
        "least-loaded placement keeps the workers even: {peak:?}"
    );
    let m = cm.wait_metrics("40 completed, both workers idle", 3 * T, |m| {
        m.calls("completed") == 40.0 && m.value(w0) == 0.0 && m.value(w1) == 0.0
    });
    assert_eq!(m.calls("failed") + m.calls("timed_out"), 0.0);
}

// 9 ---------------------------------------------------------------------------------------

fn options_with(raw: &RawSip, extra: &str, tag: &str) -> String {
    let me = raw.addr();
    format!(
        "OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-e2e-{tag}\r\n\
         From: <sip:probe@{me}>;tag=e2e{tag}\r\n\
         To: <sip:agent@127.0.0.1>\r\n\
         Call-ID: e2e-{tag}@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         {extra}\
         \r\n"
    )
}

#[test]
fn malformed_sip_400() {
    let cm = Callmask::start();
    let raw = RawSip::bind();
    let to = cm.layout.pbx_listen;
    let expect = |what: &str, msg: String, code: u16| {
        raw.send(to, msg.as_bytes());
        let resp = raw
            .recv(Duration::from_secs(3))
            .unwrap_or_else(|| panic!("{what}: no response (expected {code})\n{}", cm.log_tail()));
        assert_eq!(sip_status(&resp), Some(code), "{what}: got\n{resp}");
        // The response goes back in the request's transaction.
        let via = sip_header(&resp, "Via").unwrap_or_default();
        assert!(
            via.contains("z9hG4bK-e2e-"),
            "{what}: Via not echoed: {resp}"
        );
    };

    expect(
        "bad Max-Forwards",
        options_with(&raw, "Max-Forwards: abc\r\nContent-Length: 0\r\n", "mf"),
        400,
    );
    expect(
        "Content-Length past the datagram",
        options_with(&raw, "Max-Forwards: 70\r\nContent-Length: 500\r\n", "cl") + "short body",
        400,
    );
    expect(
        "Max-Forwards 0",
        options_with(&raw, "Max-Forwards: 0\r\nContent-Length: 0\r\n", "mf0"),
        483,
    );

    // Pure junk: nothing to answer, nothing may crash.
    let junk: [&[u8]; 7] = [
        b"hello world",
        b"\x00\x01\x02\x03\xff\xfe\xfd",
        b"INVITE",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0xffu8; 1400],
    ];
    for j in junk {
        raw.send(to, j);
        raw.send(cm.layout.agents_listen, j);
    }
    let huge = vec![b'A'; 60_000];
    raw.send(to, &huge);
    // Drain whatever was answered to the junk (a 400 to "INVITE" would be fine too).
    while raw.recv(Duration::from_millis(300)).is_some() {}

    assert!(cm.is_running(), "callmask died on junk\n{}", cm.log_tail());
    assert_eq!(cm.healthz(), Some(200));
    // And SIP is still served.
    expect(
        "bad Max-Forwards after junk",
        options_with(&raw, "Max-Forwards: -1\r\nContent-Length: 0\r\n", "mf2"),
        400,
    );
    let m = cm.metrics();
    assert!(
        m.sum("callmask_sip_messages_rejected_total", &[]) >= 3.0,
        "{}",
        m.callmask_lines()
    );
    assert_eq!(m.active(), 0.0);
}

/// The `key=value` fields of the scenario `<log>` line that starts with `tag ` (the harness
/// convention of these scenarios: `TAG ver=… port=… dir=…`).
fn logged(run: &SippRun, tag: &str) -> std::collections::HashMap<String, String> {
    let line = run
        .actions
        .lines()
        .find_map(|l| {
            let i = l.find(&format!("{tag} "))?;
            Some(&l[i + tag.len() + 1..])
        })
        .unwrap_or_else(|| panic!("no `{tag}` line in the sipp log\n{}", run.report()));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(fields: &std::collections::HashMap<String, String>, k: &str) -> u64 {
    fields
        .get(k)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("field {k} missing or not a number in {fields:?}"))
}

// 2 ---------------------------------------------------------------------------------------

#[test]
fn cancel() {
    let cm = Callmask::start();
    let l = cm.layout;
    let (uac, uas) = run_pair(
        &cm,
        Sipp::new(Scenario::file("uas_cancel.xml"), l.agents_peer.port()),
        Sipp::new(Scenario::file("uac_cancel.xml"), l.pbx_peer.port()),
    );
    assert!(uas.messages.contains("CANCEL sip:"), "{}", uas.report());
    assert!(uac.messages.contains("SIP/2.0 487"), "{}", uac.report());
    let m = cm.wait_metrics("1 cancelled call, 0 active, 0 ports in use", T, |m| {
        m.calls("cancelled") == 1.0 && m.active() == 0.0 && m.ports_in_use() == 0.0
    });
    assert_eq!(
        m.calls("completed") + m.calls("failed") + m.calls("timed_out"),
        0.0,
        "{}",
        m.callmask_lines()
    );
}

// 3 ---------------------------------------------------------------------------------------

#[test]
fn bye_from_agent() {
    let cm = Callmask::start();
    let l = cm.layout;
    let (uac, uas) = run_pair(
        &cm,
        Sipp::new(Scenario::file("uas_hangs_up.xml"), l.agents_peer.port()),
        Sipp::new(Scenario::file("uac_callee_hangs_up.xml"), l.pbx_peer.port()),
    );
    // The agent's BYE reached the PBX through callmask (callmask's own Via on top) and the
    // 200 came back to the agent.
    assert!(uac.messages.contains("BYE sip:pbx@"), "{}", uac.report());
    assert!(uas.messages.contains("SIP/2.0 200 OK"), "{}", uas.report());
    let m = cm.wait_metrics("1 completed call, 0 active, 0 ports in use", T, |m| {
        m.calls("completed") == 1.0 && m.active() == 0.0 && m.ports_in_use() == 0.0
    });
    assert_eq!(m.calls("timed_out") + m.calls("failed"), 0.0);
}

// 5 ---------------------------------------------------------------------------------------

#[test]
fn reinvite_hold_resume() {
    let cm = Callmask::start();
    let l = cm.layout;
    let re = l.media_rtp_port_regex();
    let (uac, uas) = run_pair(
        &cm,
        Sipp::new(
            Scenario::file("uas_reinvite.xml").with("MEDIA_RE", re.clone()),
            l.agents_peer.port(),
        )
        .set("mport", 40_000),
        Sipp::new(
            Scenario::file("uac_reinvite.xml").with("MEDIA_RE", re),
            l.pbx_peer.port(),
        )
        .set("mport", 40_002),
    );
    // What the agent saw: every offer anchored at the same callmask port, direction kept,
    // o= version strictly increasing.
    let offers: Vec<_> = (0..3).map(|i| logged(&uas, &format!("OFFER{i}"))).collect();
    let answers: Vec<_> = (0..3)
        .map(|i| logged(&uac, &format!("ANSWER{i}")))
        .collect();
    let dirs = |v: &[std::collections::HashMap<String, String>]| -> Vec<String> {
        v.iter().map(|f| f["dir"].clone()).collect()
    };
    assert_eq!(dirs(&offers), ["sendrecv", "sendonly", "sendrecv"]);
    assert_eq!(dirs(&answers), ["sendrecv", "recvonly", "sendrecv"]);
    for (who, seen) in [("agent", &offers), ("PBX", &answers)] {
        let vers: Vec<u64> = seen.iter().map(|f| num(f, "ver")).collect();
        assert!(
            vers.windows(2).all(|w| w[1] > w[0]),
            "o= versions toward the {who} not increasing: {vers:?}"
        );
        let ports: Vec<u64> = seen.iter().map(|f| num(f, "port")).collect();
        assert!(
            ports.iter().all(|p| *p == ports[0]),
            "media port toward the {who} changed across re-INVITEs: {ports:?}"
        );
        assert!(seen.iter().all(|f| f["o"] == "127.0.0.1"));
    }
    let m = cm.wait_metrics("1 completed call, 0 active, 0 ports in use", T, |m| {
        m.calls("completed") == 1.0 && m.active() == 0.0 && m.ports_in_use() == 0.0
    });
    assert_eq!(m.calls("failed") + m.calls("timed_out"), 0.0);
}

// 6 ---------------------------------------------------------------------------------------

#[test]
fn late_offer() {
    let cm = Callmask::start();
    let l = cm.layout;
    let dir = TempDir::new("late_offer");
    let mut pbx_media = RtpEndpoint::bind();
    let mut agent_media = RtpEndpoint::bind();
    let re = l.media_rtp_port_regex();
    let uas_file = port_file(&dir, "uas_port");
    let uac_file = port_file(&dir, "uac_port");
    let mut uas = Sipp::new(
        Scenario::file("uas_late_offer.xml").with("MEDIA_RE", re.clone()),
        l.agents_peer.port(),
    )
    .set("mport", agent_media.port())
    .set("portfile", uas_file.display())
    .spawn();
    let mut uac = Sipp::new(
        Scenario::file("uac_late_offer.xml").with("MEDIA_RE", re),
        l.pbx_peer.port(),
    )
    .remote(l.pbx_listen)
    .pause_ms(2000)
    .set("mport", pbx_media.port())
    .set("portfile", uac_file.display())
    .spawn();
    // Offer in the 200 → callmask's PBX-side port; answer in the ACK → agents-side port.
    let cm_pbx_port = read_port(&uac_file, "UAC", &mut uac, &mut uas, &cm);
    let cm_agents_port = read_port(&uas_file, "UAS", &mut uac, &mut uas, &cm);
    assert!(l.in_media_range(cm_agents_port) && l.in_media_range(cm_pbx_port));
    assert_ne!(cm_agents_port, cm_pbx_port);
    exchange_rtp(
        &cm,
        &mut pbx_media,
        &mut agent_media,
        cm_pbx_port,
        cm_agents_port,
        30,
    );
    let a = uac.wait();
    a.assert_success("UAC", &cm);
    let b = uas.wait();
    b.assert_success("UAS", &cm);
    cm.wait_metrics("1 completed call, 0 active, 0 ports in use", T, |m| {
        m.calls("completed") == 1.0 && m.active() == 0.0 && m.ports_in_use() == 0.0
    });
}

// 7 ---------------------------------------------------------------------------------------

#[test]
fn lost_200_retransmission() {
    let cm = Callmask::start();
    let l = cm.layout;
    let dir = TempDir::new("lost_200");
    let re = l.media_rtp_port_regex();
    let mut uas = Sipp::new(
        Scenario::file("uas_call.xml").with("MEDIA_RE", re.clone()),
        l.agents_peer.port(),
    )
    .set("mport", 40_000)
    .set("portfile", port_file(&dir, "uas_port").display())
    .spawn();
    let mut uac = Sipp::new(
        Scenario::file("uac_slow_ack.xml").with("MEDIA_RE", re),
        l.pbx_peer.port(),
    )
    .remote(l.pbx_listen)
    .pause_ms(300)
    .set("mport", 40_002)
    .spawn();
    // While the ACK is late, the retransmitted 200s must not allocate new ports (still one
    // RTP/RTCP pair per side = 4 ports).
    std::thread::sleep(Duration::from_millis(1000));
    let m = cm.metrics();
    assert_eq!(m.ports_in_use(), 4.0, "{}", m.callmask_lines());
    assert_eq!(m.active(), 1.0, "{}", m.callmask_lines());
    let a = uac.wait();
    let b = uas.wait();
    if !a.success() || !b.success() {
        panic!(
            "sipp failed\n=== UAC ===\n{}\n=== UAS ===\n{}\n--- callmask log ---\n{}",
            a.report(),
            b.report(),
            cm.log_tail()
        );
    }
    // The UAC really got the 200 more than once, each time with the same anchored SDP.
    let oks: Vec<&str> = a
        .messages
        .split("UDP message received")
        .skip(1)
        .filter(|m| m.contains("SIP/2.0 200 OK") && m.contains("INVITE"))
        .collect();
    assert!(
        oks.len() >= 2,
        "the 200 was not retransmitted\n{}",
        a.report()
    );
    // Same anchored SDP each time: o= (no version bump for a retransmission), c=, m=.
    let sdp: Vec<Vec<&str>> = oks
        .iter()
        .map(|m| {
            m.lines()
                .filter(|l| l.starts_with("o=") || l.starts_with("c=") || l.starts_with("m="))
                .collect()
        })
        .collect();
    assert!(
        sdp.iter().all(|x| *x == sdp[0] && x.len() == 3),
        "retransmitted 200s differ: {sdp:?}"
    );
    let m = cm.wait_metrics("1 completed call, 0 active, 0 ports in use", T, |m| {
        m.calls("completed") == 1.0 && m.active() == 0.0 && m.ports_in_use() == 0.0
    });
    assert_eq!(m.calls("failed") + m.calls("timed_out"), 0.0);
}

// Transaction-stateful proxy (RFC 3261 §16/§17) ----------------------------------------------

/// The SIP messages of one direction in a sipp `-trace_msg` log (`"sent"` or `"received"`),
/// each starting at its first line.
fn traced<'a>(run: &'a SippRun, dir: &str) -> Vec<&'a str> {
    run.messages
        .split(&format!("UDP message {dir}"))
        .skip(1)
        .filter_map(|m| m.split_once("\n\n").map(|(_, rest)| rest.trim_start()))
        .collect()
}

/// callmask answers 100 Trying at once (so the PBX stops retransmitting), exactly once.
#[test]
fn trying_100_arrives() {
    let cm = Callmask::start();
    let l = cm.layout;
    let dir = TempDir::new("trying_100");
    let re = l.media_rtp_port_regex();
    let (uac, _uas) = run_pair(
        &cm,
        Sipp::new(
            Scenario::file("uas_call.xml").with("MEDIA_RE", re.clone()),
            l.agents_peer.port(),
        )
        .set("mport", 40_000)
        .set("portfile", port_file(&dir, "uas_port").display()),
        Sipp::new(
            Scenario::file("uac_call_trying.xml").with("MEDIA_RE", re),
            l.pbx_peer.port(),
        )
        .pause_ms(200)
        .set("mport", 40_002)
        .set("portfile", port_file(&dir, "uac_port").display()),
    );
    let got = traced(&uac, "received");
    let trying = got
        .iter()
        .filter(|m| m.starts_with("SIP/2.0 100 Trying") && m.contains(" INVITE"))
        .count();
    assert_eq!(trying, 1, "one 100 Trying\n{}", uac.report());
    let first = got.first().copied().unwrap_or_default();
    assert!(
        first.starts_with("SIP/2.0 100"),
        "the 100 comes first: {first}"
    );
    let sent_invites = traced(&uac, "sent")
        .iter()
        .filter(|m| m.starts_with("INVITE "))
        .count();
    assert_eq!(
        sent_invites,
        1,
        "the PBX never had to resend\n{}",
        uac.report()
    );
    cm.wait_metrics("1 completed call, 0 active", T, |m| {
        m.calls("completed") == 1.0 && m.active() == 0.0
    });
}

/// The agent misses the first INVITE copy (its socket is not up yet when callmask forwards
/// it) and the PBX, answered with 100 Trying, never resends: only callmask's own timer A
/// retransmission can get the call through.
#[test]
fn callmask_retransmits_invite_the_agent_missed() {
    let cm = Callmask::start();
    let l = cm.layout;
    let dir = TempDir::new("retransmit_invite");
    let re = l.media_rtp_port_regex();
    let mut uac = Sipp::new(
        Scenario::file("uac_call_trying.xml").with("MEDIA_RE", re.clone()),
        l.pbx_peer.port(),
    )
    .remote(l.pbx_listen)
    .pause_ms(200)
    .set("mport", 40_002)
    .set("portfile", port_file(&dir, "uac_port").display())
    .spawn();
    // The INVITE has reached callmask and gone to the (not yet bound) agent.
    let m = cm.wait_metrics("the call started", T, |m| m.active() == 1.0);
    assert_eq!(m.calls("completed"), 0.0);
    let mut uas = Sipp::new(
        Scenario::file("uas_call.xml").with("MEDIA_RE", re),
        l.agents_peer.port(),
    )
    .set("mport", 40_000)
    .set("portfile", port_file(&dir, "uas_port").display())
    .spawn();
    let a = uac.wait();
    let b = uas.wait();
    if !a.success() || !b.success() {
        panic!(
            "sipp failed\n=== UAC ===\n{}\n=== UAS ===\n{}\n--- callmask log ---\n{}",
            a.report(),
            b.report(),
            cm.log_tail()
        );
    }
    let sent_invites = traced(&a, "sent")
        .iter()
        .filter(|m| m.starts_with("INVITE "))
        .count();
    assert_eq!(
        sent_invites,
        1,
        "the PBX sent its INVITE once\n{}",
        a.report()
    );
    // What the agent got was callmask's copy (its Via on top).
    let inv = traced(&b, "received")
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .unwrap_or_else(|| panic!("agent saw no INVITE\n{}", b.report()));
    let top_via = sip_header(inv, "Via").unwrap_or_default();
    assert!(
        top_via.contains(&l.agents_listen.port().to_string()) && top_via.contains("z9hG4bKcm"),
        "top Via is callmask's: {top_via}"
    );
    let m = cm.wait_metrics("1 completed call, 0 active, 0 ports in use", T, |m| {
        m.calls("completed") == 1.0 && m.active() == 0.0 && m.ports_in_use() == 0.0
    });
    let resent = m.sum(
        "callmask_sip_retransmissions_total",
        &["side=\"agents\"", "handling=\"resent\""],
    );
    assert!(
        resent >= 1.0,
        "resent toward the agent: {resent}\n{}",
        m.callmask_lines()
    );
}
