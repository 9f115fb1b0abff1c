//! Issue 13, "safe to put inline": access control and limits, tried from outside with the real
//! binary. A stranger is played by sipp bound on 127.0.0.2 (Linux routes all of 127/8 to `lo`);
//! the configured peers stay on 127.0.0.1. Every test runs in seconds.
#![allow(clippy::disallowed_methods)] // an e2e test reads the clock
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use callmask_integration::*;

/// An INVITE from 127.0.0.2 (not a configured peer) on either side is answered 403 and never
/// reaches the other side; the legitimate call from the PBX peer still goes through.
#[test]
fn invite_from_outside_the_allow_list_never_reaches_the_other_side() {
    let cm = Callmask::start();
    let l = cm.layout;
    // The agent answers exactly one call: a stranger's INVITE reaching it would use it up and
    // the legitimate call below would then fail.
    let mut uas = Sipp::new(Scenario::Builtin("uas"), l.agents_peer.port())
        .timeout_s(20)
        .spawn();
    for (side, listen) in [("pbx", l.pbx_listen), ("agents", l.agents_listen)] {
        let stranger = Sipp::new(Scenario::file("uac_forbidden.xml"), free_udp_port())
            .local_ip("127.0.0.2")
            .remote(listen)
            .timeout_s(10)
            .run();
        assert!(
            stranger.success(),
            "the stranger on the {side} side did not get 403\n{}\n--- callmask log ---\n{}",
            stranger.report(),
            cm.log_tail()
        );
    }
    let legit = Sipp::new(Scenario::Builtin("uac"), l.pbx_peer.port())
        .remote(l.pbx_listen)
        .timeout_s(15)
        .run();
    let agent = uas.wait();
    assert!(
        legit.success() && agent.success(),
        "the legitimate call failed\n=== UAC ===\n{}\n=== UAS ===\n{}\n--- callmask log ---\n{}",
        legit.report(),
        agent.report(),
        cm.log_tail()
    );
    assert_eq!(agent.counts().0, Some(1), "{}", agent.report());
    let m = cm.wait_metrics(
        "both stranger INVITEs counted",
        Duration::from_secs(5),
        |m| {
            m.value("callmask_sip_access_denied_total{reason=\"not_allowed\",side=\"pbx\"}") >= 1.0
                && m.value(
                    "callmask_sip_access_denied_total{reason=\"not_allowed\",side=\"agents\"}",
                ) >= 1.0
        },
    );
    // Only the legitimate INVITE entered the proxy logic.
    assert_eq!(
        m.value("callmask_sip_requests_total{method=\"INVITE\",side=\"pbx\"}"),
        1.0,
        "{}",
        m.callmask_lines()
    );
    assert_eq!(
        m.value("callmask_sip_requests_total{method=\"INVITE\",side=\"agents\"}"),
        0.0
    );
}

/// Port-pool exhaustion attempt: INVITEs with 100 `m=` lines (refused 488 before any port is
/// taken) and a loop of INVITEs the agent rejects (486: ports back at once, no quarantine),
/// both well past the pool's size; then a legitimate call is set up at once.
#[test]
fn port_pool_survives_many_streams_and_rejected_invites() {
    let cm = Callmask::start_with(CallmaskOpts {
        media_pairs: 8,
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let mlines: Vec<String> = (0..100)
        .map(|i| format!("      m=audio {} RTP/AVP 0", 6000 + 2 * i))
        .collect();
    let many = Sipp::new(
        Scenario::file("uac_streams.xml").with("MLINES", mlines.join("\n")),
        l.pbx_peer.port(),
    )
    .remote(l.pbx_listen)
    .calls(5)
    .rate(20)
    .timeout_s(10)
    .run();
    many.assert_success("100-stream UAC", &cm);
    // 12 rejected calls × 2 pairs each = 24 pairs through a pool of 8 (4 with quarantine).
    let mut busy_uas = Sipp::new(Scenario::file("uas_busy.xml"), l.agents_peer.port())
        .calls(12)
        .timeout_s(15)
        .spawn();
    let busy_uac = Sipp::new(Scenario::file("uac_busy.xml"), l.pbx_peer.port())
        .remote(l.pbx_listen)
        .calls(12)
        .rate(40)
        .timeout_s(15)
        .run();
    busy_uac.assert_success("busy UAC", &cm);
    busy_uas.wait().assert_success("busy UAS", &cm);
    let m = cm.metrics();
    assert_eq!(
        m.value("callmask_limit_refusals_total{limit=\"streams_per_call\",side=\"pbx\"}"),
        5.0,
        "{}",
        m.callmask_lines()
    );
    assert_eq!(m.ports_in_use(), 0.0, "{}", m.callmask_lines());
    // At once: no waiting for a quarantine to end.
    let started = std::time::Instant::now();
    let mut uas = Sipp::new(Scenario::Builtin("uas"), l.agents_peer.port())
        .timeout_s(10)
        .spawn();
    let uac = Sipp::new(Scenario::Builtin("uac"), l.pbx_peer.port())
        .remote(l.pbx_listen)
        .timeout_s(10)
        .run();
    uac.assert_success("legitimate UAC", &cm);
    uas.wait().assert_success("legitimate UAS", &cm);
    eprintln!(
        "[figure] legitimate call after the exhaustion attempt: {:.2} s from starting its UAS to its BYE (pool of 8 pairs)",
        started.elapsed().as_secs_f64()
    );
}

/// The HTTP API is never reachable from other hosts without a token: a non-loopback
/// `http.listen` and no token refuses to start, before anything is bound.
#[test]
fn non_loopback_http_without_a_token_refuses_to_start() {
    let out = std::process::Command::new(callmask_bin())
        .args([
            "run",
            "--set",
            &format!("http.listen=0.0.0.0:{}", free_tcp_port()),
            "--set",
            "pbx.listen=127.0.0.1:0",
            "--set",
            "agents.listen=127.0.0.1:0",
        ])
        .env_remove("CALLMASK_HTTP_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(
        stderr.contains("http.token_file") && stderr.contains("CALLMASK_HTTP_TOKEN"),
        "{stderr}"
    );
}

/// Slowloris on TCP: 20 connections trickling one byte every 300 ms are cut at the idle
/// timeout (2 s here), counted, while legitimate TCP calls complete meanwhile.
#[test]
fn slowloris_connections_are_cut_and_tcp_calls_complete() {
    use std::io::{Read, Write};
    let cm = Callmask::start_with(CallmaskOpts {
        media_pairs: 32,
        sets: vec!["limits.tcp_idle_timeout_s=2".into()],
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let target = l.pbx_listen;
    let trickler = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let mut conns: Vec<Option<std::net::TcpStream>> = (0..20)
            .map(|_| {
                let s = std::net::TcpStream::connect(target).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
                Some(s)
            })
            .collect();
        let head = b"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\nX-Slow: ";
        let mut closed_after = Vec::new();
        for i in 0..40 {
            for c in conns.iter_mut() {
                let Some(s) = c else { continue };
                let byte = head.get(i).copied().unwrap_or(b'a');
                let mut probe = [0u8; 64];
                let gone = s.write_all(&[byte]).is_err() || matches!(s.read(&mut probe), Ok(0));
                if gone {
                    closed_after.push(started.elapsed());
                    *c = None;
                }
            }
            if conns.iter().all(Option::is_none) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        (closed_after, conns.iter().filter(|c| c.is_some()).count())
    });
    let mut uas = Sipp::new(Scenario::Builtin("uas"), l.agents_peer.port())
        .arg("-t")
        .arg("t1")
        .calls(3)
        .timeout_s(20)
        .spawn();
    let uac = Sipp::new(Scenario::Builtin("uac"), l.pbx_peer.port())
        .arg("-t")
        .arg("t1")
        .calls(3)
        .rate(3)
        .timeout_s(20)
        .remote(l.pbx_listen)
        .run();
    uac.assert_success("TCP UAC during the slowloris", &cm);
    uas.wait()
        .assert_success("TCP UAS during the slowloris", &cm);
    let (closed_after, still_open) = trickler.join().unwrap();
    assert_eq!(still_open, 0, "trickling connections left open");
    let worst = closed_after.iter().max().copied().unwrap_or_default();
    assert!(worst < Duration::from_secs(5), "cut after {worst:?}");
    eprintln!(
        "[figure] slowloris: 20 trickling connections cut, the last after {:.1} s (idle timeout 2 s); 3 TCP calls completed",
        worst.as_secs_f64()
    );
    let m = cm.wait_metrics("idle cuts counted", Duration::from_secs(3), |m| {
        m.value("callmask_limit_refusals_total{limit=\"tcp_idle_timeout\",side=\"pbx\"}") >= 20.0
    });
    drop(m);
}
