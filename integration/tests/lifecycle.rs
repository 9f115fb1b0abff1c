//! Issue 13, "hardened runtime": the real `callmask run` binary reloads its configuration on
//! SIGHUP (allow-lists swapped in, a broken file or a restart-only change refused, the process
//! up) and drains on SIGTERM (new calls 503, the call in progress ends normally, its recording
//! complete, exit 0; a second SIGTERM stops at once). All on 127.0.0.1.
#![allow(clippy::disallowed_methods)] // an e2e test reads the clock
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use callmask_integration::*;

const T: Duration = Duration::from_secs(5);

/// An INVITE (no body) from `raw` to callmask's PBX side; `tag` makes it a new call.
fn invite(raw: &RawSip, to: SocketAddr, tag: &str) -> String {
    let me = raw.addr();
    format!(
        "INVITE sip:agent@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-life-{tag}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:pbx@{me}>;tag=life{tag}\r\n\
         To: <sip:agent@{to}>\r\n\
         Call-ID: life-{tag}@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:pbx@{me}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends an INVITE and returns the status of the first response (None: none within `T`).
fn invite_status(raw: &RawSip, to: SocketAddr, tag: &str) -> (Option<u16>, String) {
    raw.send(to, invite(raw, to, tag).as_bytes());
    match raw.recv(T) {
        Some(r) => (sip_status(&r), r),
        None => (None, String::new()),
    }
}

/// Whether an INVITE with Call-ID `life-{tag}@…` reached `agent` (the agents' peer socket).
fn agent_got(agent: &UdpSocket, tag: &str) -> bool {
    agent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + T;
    let mut buf = [0u8; 65_536];
    while Instant::now() < end {
        if let Ok((n, _)) = agent.recv_from(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]);
            if msg.starts_with("INVITE ") && msg.contains(&format!("life-{tag}@")) {
                return true;
            }
        }
    }
    false
}

fn reloads(cm: &Callmask, result: &str) -> f64 {
    cm.metrics().value(&format!(
        "callmask_config_reloads_total{{result=\"{result}\"}}"
    ))
}

/// SIGHUP swaps in a new `pbx.allow` (an INVITE from 127.0.0.1 is 403 before, relayed to the
/// agent after); a broken file and a restart-only change are refused (logged with the reason
/// or the key, `result="failure"` counted), the process stays up and the allow-list in force
/// stays.
#[test]
fn sighup_reloads_the_allow_list_and_refuses_broken_or_restart_only_changes() {
    let dir = TempDir::new("sighup");
    let file = dir.path().join("callmask.toml");
    // Only 127.0.0.2 may send on the PBX side: the peer on 127.0.0.1 is shut out.
    std::fs::write(&file, "[pbx]\nallow = [\"127.0.0.2\"]\n").unwrap();
    let cm = Callmask::start_with(CallmaskOpts {
        config: Some(file.clone()),
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let agent = UdpSocket::bind(l.agents_peer).unwrap();
    let raw = RawSip::bind();

    let (st, resp) = invite_status(&raw, l.pbx_listen, "a");
    assert_eq!(
        st,
        Some(403),
        "before the reload: {resp}\n{}",
        cm.log_tail()
    );
    assert!(
        !agent_got(&agent, "a"),
        "a refused INVITE reached the agent"
    );

    // Allow 127.0.0.1; SIGHUP.
    std::fs::write(&file, "[pbx]\nallow = [\"127.0.0.1\"]\n").unwrap();
    cm.signal("HUP");
    cm.wait_metrics("one successful reload", T, |m| {
        m.value("callmask_config_reloads_total{result=\"success\"}") == 1.0
    });
    let (st, resp) = invite_status(&raw, l.pbx_listen, "b");
    assert_eq!(st, Some(100), "after the reload: {resp}\n{}", cm.log_tail());
    assert!(
        agent_got(&agent, "b"),
        "the INVITE did not reach the agent after the reload\n{}",
        cm.log_tail()
    );

    // A broken file: refused with the reason, the process up, the allow-list kept.
    std::fs::write(
        &file,
        "[pbx]\nallow = [\"127.0.0.1\"]\n[limits]\ncalls = -5\n",
    )
    .unwrap();
    cm.signal("HUP");
    cm.wait_metrics("one refused reload", T, |m| {
        m.value("callmask_config_reloads_total{result=\"failure\"}") == 1.0
    });
    assert!(cm.is_running(), "callmask exited\n{}", cm.log_tail());
    assert!(
        cm.stderr().contains("limits.calls"),
        "the refusal does not name the bad key\n{}",
        cm.log_tail()
    );
    let (st, resp) = invite_status(&raw, l.pbx_listen, "c");
    assert_eq!(st, Some(100), "after the refused reload: {resp}");
    assert!(agent_got(&agent, "c"));

    // A key that needs a restart (with a live one): refused whole, naming the key.
    std::fs::write(
        &file,
        "[pbx]\nallow = [\"127.0.0.2\"]\n[sip]\nmax_headers = 64\n",
    )
    .unwrap();
    cm.signal("HUP");
    cm.wait_metrics("two refused reloads", T, |m| {
        m.value("callmask_config_reloads_total{result=\"failure\"}") == 2.0
    });
    let log = cm.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("sip.max_headers") && l.contains("restart needed")),
        "no log line names sip.max_headers as restart needed\n{}",
        cm.log_tail()
    );
    // Nothing of that file was applied: 127.0.0.1 is still allowed.
    let (st, _) = invite_status(&raw, l.pbx_listen, "d");
    assert_eq!(st, Some(100));
    assert_eq!(reloads(&cm, "success"), 1.0);
    assert!(cm.is_running());
}

/// SIGHUP with another `wav` folder: the calls that start afterwards are recorded there, the
/// earlier call's recording stays where it was made.
#[test]
fn sighup_moves_new_recordings_to_the_reloaded_wav_sink() {
    let dir = TempDir::new("sighup-sinks");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let file = dir.path().join("callmask.toml");
    let sink =
        |d: &std::path::Path| format!("[[recorder]]\nkind = \"wav\"\ndir = \"{}\"\n", d.display());
    std::fs::write(&file, sink(&a)).unwrap();
    let cm = Callmask::start_with(CallmaskOpts {
        config: Some(file.clone()),
        recorders_in_config: true,
        ..CallmaskOpts::default()
    });
    let one_call = |cm: &Callmask| {
        let mut call = MediaCall::start(cm, 1500);
        call.talk(25);
        call.uac.wait().assert_success("UAC", cm);
        call.uas.wait().assert_success("UAS", cm);
    };
    one_call(&cm);
    cm.wait_metrics("the first call over", T, |m| m.active() == 0.0);
    std::fs::write(&file, sink(&b)).unwrap();
    cm.signal("HUP");
    cm.wait_metrics("one successful reload", T, |m| {
        m.value("callmask_config_reloads_total{result=\"success\"}") == 1.0
    });
    one_call(&cm);
    let count = |d: &std::path::Path| recordings(d).0.len();
    wait_for(T, || (count(&a) == 1 && count(&b) == 1).then_some(()));
    assert_eq!(
        (count(&a), count(&b)),
        (1, 1),
        "one recording before the reload in a, one after in b\n{}",
        cm.log_tail()
    );
}

/// SIGHUP adds a `siprec` sink: the next call is recorded by the SRS (sipp). SIGHUP again,
/// during a call, removes it: that call's session goes on to the call's end (the retired
/// sink keeps its socket and sends the BYE), and the SRS sees a complete session.
#[test]
fn sighup_adds_a_siprec_sink_and_a_removed_one_finishes_its_call() {
    let dir = TempDir::new("sighup-siprec");
    let rec = dir.path().join("rec");
    let file = dir.path().join("callmask.toml");
    let wav = format!(
        "[[recorder]]\nkind = \"wav\"\ndir = \"{}\"\n",
        rec.display()
    );
    std::fs::write(&file, &wav).unwrap();
    let cm = Callmask::start_with(CallmaskOpts {
        config: Some(file.clone()),
        recorders_in_config: true,
        sets: vec!["masking.speech=false".into()],
        ..CallmaskOpts::default()
    });
    let srs_port = free_udp_port();
    let (caller_rx, agent_rx) = (RtpEndpoint::bind(), RtpEndpoint::bind());
    // -aa: in-dialog OPTIONS are answered (none come in this short call); probe_s = 0:
    // sipp's -m 1 would take a probe for its one call.
    let mut srs = Sipp::new(Scenario::file("srs_uas.xml"), srs_port)
        .set("p1", caller_rx.port())
        .set("p2", agent_rx.port())
        .arg("-aa")
        .timeout_s(40)
        .spawn();
    let siprec = format!(
        "{wav}[[recorder]]\nkind = \"siprec\"\nsrs = [\"sip:srs@127.0.0.1:{srs_port}\"]\n\
         bind = \"127.0.0.1:0\"\nprobe_s = 0\n"
    );
    std::fs::write(&file, siprec).unwrap();
    cm.signal("HUP");
    cm.wait_metrics("the siprec sink added", T, |m| {
        m.value("callmask_config_reloads_total{result=\"success\"}") == 1.0
    });
    let mut call = MediaCall::start(&cm, 3000);
    call.talk(50);
    cm.wait_metrics("a session with the SRS", T, |m| {
        m.value("callmask_siprec_sessions_established_total") == 1.0
    });
    // The sink goes while its call is in progress.
    std::fs::write(&file, &wav).unwrap();
    cm.signal("HUP");
    cm.wait_metrics("the siprec sink removed", T, |m| {
        m.value("callmask_config_reloads_total{result=\"success\"}") == 2.0
    });
    call.talk(50);
    call.assert_completed(&cm);
    let run = srs.wait();
    run.assert_success("SRS (sipp): INVITE, media, BYE at the call's end", &cm);
    assert!(run.actions.contains("siprec invite ok"), "{}", run.report());
    let got = caller_rx.received().len();
    assert!(
        got >= 75,
        "the SRS got {got} caller packets (the whole call: ~100)"
    );
    assert_eq!(
        cm.metrics()
            .value("callmask_config_reloads_total{result=\"failure\"}"),
        0.0
    );
}

/// The WAV header's data size matches the file (patched at the end: the file is final).
fn assert_final(wav: &std::path::Path) {
    let b = std::fs::read(wav).unwrap();
    let data = u32::from_le_bytes([b[40], b[41], b[42], b[43]]) as usize;
    assert_eq!(data, b.len() - 44, "{}: header not patched", wav.display());
}

/// The recordings in `dir`: (WAV files, sidecars); none if it does not exist yet.
fn recordings(dir: &std::path::Path) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    let of = |ext: &str| {
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .cloned()
            .collect::<Vec<_>>()
    };
    (of("wav"), of("json"))
}

/// SIGTERM with a call in progress: a new INVITE gets 503 with Retry-After (counted as
/// `draining`, `/readyz` not ready), the call goes on and its BYE completes, then callmask
/// exits 0 by itself with the call's WAV and sidecar final on disk.
#[test]
fn sigterm_drains_the_call_in_progress_and_refuses_new_ones() {
    let mut cm = Callmask::start_with(CallmaskOpts {
        sets: vec!["shutdown.drain_timeout_s=30".into()],
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let mut call = MediaCall::start(&cm, 6000);
    call.talk(25);
    cm.signal("TERM");
    // `kill` returns before callmask has seen the signal: wait until the drain is in force
    // (readiness flips before the signalling task is told), then try a new call.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !http_get(l.http, "/readyz").is_some_and(|(_, body)| body.contains("not_draining"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let raw = RawSip::bind();
    let (st, resp) = invite_status(&raw, l.pbx_listen, "drain");
    assert_eq!(
        st,
        Some(503),
        "a new call while draining: {resp}\n{}",
        cm.log_tail()
    );
    assert_eq!(sip_header(&resp, "Retry-After"), Some("5"), "{resp}");
    let m = cm.metrics();
    assert_eq!(
        m.value("callmask_limit_refusals_total{limit=\"draining\",side=\"pbx\"}"),
        1.0,
        "{}",
        m.callmask_lines()
    );
    assert_eq!(m.active(), 1.0, "the call in progress was cut");
    let (status, body) = http_get(l.http, "/readyz").unwrap();
    assert_eq!(status, 503, "/readyz while draining: {body}");
    // The call goes on: media still flows both ways.
    call.talk(25);
    assert!(
        call.agent_media.wait_received(50, T).len() >= 50,
        "media stopped during the drain\n{}",
        cm.log_tail()
    );
    call.uac.wait().assert_success("UAC (BYE answered)", &cm);
    call.uas.wait().assert_success("UAS", &cm);
    let st = cm.wait_exit(Duration::from_secs(15));
    assert!(
        st.is_some_and(|s| s.success()),
        "callmask did not exit 0 after the drain: {st:?}\n{}",
        cm.log_tail()
    );
    let (wavs, sidecars) = recordings(&cm.rec_dir);
    assert_eq!(
        (wavs.len(), sidecars.len()),
        (1, 1),
        "{wavs:?} {sidecars:?}"
    );
    assert_final(&wavs[0]);
    let (channels, samples) = read_wav(&wavs[0]);
    assert_eq!(channels, 2);
    // The whole call: ~2 s of talk in two bursts within ~6 s from the answer to the BYE.
    let secs = samples.len() as f64 / 2.0 / 8000.0;
    assert!(secs >= 5.0, "recording {secs:.2} s: cut short");
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sidecars[0]).unwrap()).unwrap();
    assert!(
        side.get("end_unix_ms").and_then(|v| v.as_u64()).is_some(),
        "sidecar without an end: {side}"
    );
    assert!(
        cm.stderr().contains("drained: no call in progress"),
        "{}",
        cm.log_tail()
    );
}

/// A second SIGTERM during the drain stops at once; the recording of the cut call is still
/// finished and closed.
#[test]
fn second_sigterm_stops_at_once_and_closes_the_recording() {
    let mut cm = Callmask::start_with(CallmaskOpts {
        sets: vec!["shutdown.drain_timeout_s=600".into()],
        ..CallmaskOpts::default()
    });
    let mut call = MediaCall::start(&cm, 60_000);
    call.talk(25);
    cm.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        cm.is_running(),
        "the first SIGTERM did not drain\n{}",
        cm.log_tail()
    );
    let started = Instant::now();
    cm.signal("TERM");
    let st = cm.wait_exit(Duration::from_secs(12));
    assert!(
        st.is_some_and(|s| s.success()),
        "no clean exit after the second SIGTERM: {st:?}\n{}",
        cm.log_tail()
    );
    println!(
        "[figure] exit {:.2} s after the second SIGTERM",
        started.elapsed().as_secs_f64()
    );
    let (wavs, sidecars) = recordings(&cm.rec_dir);
    assert_eq!(
        (wavs.len(), sidecars.len()),
        (1, 1),
        "{wavs:?} {sidecars:?}"
    );
    assert_final(&wavs[0]);
    let (channels, samples) = read_wav(&wavs[0]);
    assert_eq!(channels, 2);
    assert!(!samples.is_empty());
    drop(call);
}

/// One NG command (bencoded dictionary of strings) to `to`; the reply dictionary's
/// `result` and `error-reason`.
fn ng_ask(
    sock: &UdpSocket,
    to: SocketAddr,
    cookie: &str,
    entries: &[(&str, &str)],
) -> (String, String) {
    use callmask::core::ng::bencode::{decode, Limits, Value};
    let body = Value::Dict(
        entries
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), Value::str(v)))
            .collect(),
    )
    .encode();
    let mut msg = format!("{cookie} ").into_bytes();
    msg.extend_from_slice(&body);
    sock.send_to(&msg, to).unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, _) = sock.recv_from(&mut buf).expect("an NG reply");
    let rest = buf[..n]
        .strip_prefix(format!("{cookie} ").as_bytes())
        .expect("the reply starts with the cookie");
    let v = decode(rest, Limits::default()).expect("bencoded reply");
    let field = |k: &str| {
        v.as_dict()
            .and_then(|d| d.get(k.as_bytes()))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (field("result"), field("error-reason"))
}

/// SIGTERM in media-node mode: an NG offer for a new call gets an error ("draining", so the
/// controller uses another node), the NG call in progress keeps callmask up, and once the
/// controller deletes it callmask exits 0 without waiting out the drain time.
#[test]
fn sigterm_waits_for_ng_calls_and_refuses_new_offers() {
    let ng = SocketAddr::from((LOCALHOST, free_udp_port()));
    let mut cm = Callmask::start_with(CallmaskOpts {
        media_pairs: 32,
        sets: vec![
            format!("ng.listen=\"{ng}\""),
            "shutdown.drain_timeout_s=30".into(),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    });
    let sock = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let sdp = |port: u16| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
    };
    let offer = |cookie: &str, call: &str| {
        ng_ask(
            &sock,
            ng,
            cookie,
            &[
                ("command", "offer"),
                ("call-id", call),
                ("from-tag", "a"),
                ("sdp", &sdp(7000)),
            ],
        )
    };
    assert_eq!(offer("1", "ng1@test").0, "ok");
    let answered = ng_ask(
        &sock,
        ng,
        "2",
        &[
            ("command", "answer"),
            ("call-id", "ng1@test"),
            ("from-tag", "a"),
            ("to-tag", "b"),
            ("sdp", &sdp(7002)),
        ],
    );
    assert_eq!(answered.0, "ok");
    cm.signal("TERM");
    let l = cm.layout;
    assert!(
        wait_for(T, || http_get(l.http, "/readyz")
            .filter(|(_, body)| body.contains("not_draining")))
        .is_some(),
        "/readyz never said not_draining"
    );
    let (result, reason) = offer("3", "ng2@test");
    assert_eq!(result, "error", "a new NG call during the drain");
    assert!(reason.contains("draining"), "{reason}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(cm.is_running(), "callmask left with an NG call in progress");
    let started = Instant::now();
    let deleted = ng_ask(
        &sock,
        ng,
        "4",
        &[("command", "delete"), ("call-id", "ng1@test")],
    );
    assert_eq!(deleted.0, "ok");
    let st = cm.wait_exit(Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| s.success()),
        "no clean exit after the last NG call: {st:?}\n{}",
        cm.log_tail()
    );
    eprintln!(
        "[figure] NG drain: exit {:.2} s after the last NG call was deleted (drain time 30 s)",
        started.elapsed().as_secs_f64()
    );
}
