//! The recording's timeline against the wall clock (issue 12 item 3): sipp sets up a call
//! between a PBX and an agent, and both sides send paced RTP (real time, 20 ms packets) with
//! gaps: the PBX side stops for 20 s, the agent's side for 12 s (a one-sided hold), partly
//! overlapping. The WAV must hold both channels for the whole call, every talk segment at the
//! position it was sent at (within 20 ms), and last as long as the call (± 0.25 s here; the
//! measured figure is printed).
#![allow(clippy::disallowed_methods)] // an e2e test reads the clock
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callmask_integration::phones::{best_alignment, channel, voice_signal};
use callmask_integration::*;

/// Talk segments `(start_ms, end_ms)` of one side, in a call of `CALL_MS`.
const PBX_TALK: [(u32, u32); 2] = [(0, 5_000), (25_000, 32_000)];
const AGENT_TALK: [(u32, u32); 2] = [(0, 10_000), (22_000, 32_000)];
const CALL_MS: u32 = 32_000;

/// Sends `voice` (8 kHz) as paced PCMU from `t0`, only inside `talk`; silent parts are
/// skipped (no packets, the timestamp jumps).
fn send_paced(
    mut ep: RtpEndpoint,
    dest: SocketAddr,
    voice: Vec<i16>,
    talk: [(u32, u32); 2],
    t0: Instant,
) -> RtpEndpoint {
    for k in 0..(CALL_MS / 20) {
        let ms = k * 20;
        let due = t0 + Duration::from_millis(u64::from(ms));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let on = talk.iter().any(|&(a, b)| (a..b).contains(&ms));
        if on {
            let s = (ms * 8) as usize;
            let frame: Vec<u8> = voice[s..s + 160]
                .iter()
                .map(|&x| dsp::g711::linear_to_ulaw(x))
                .collect();
            ep.send_pcmu(dest, &frame);
        } else {
            ep.skip(160);
        }
    }
    ep
}

/// Seconds of the day of the first log line containing `what` (RFC 3339 timestamps).
fn log_time(log: &str, what: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains(what))?;
    let time = line.split('T').nth(1)?.split('Z').next()?;
    let mut parts = time.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

#[test]
fn gaps_of_any_length_keep_both_channels_aligned_for_the_whole_call() {
    let cm = Callmask::start_with(CallmaskOpts {
        sets: vec!["masking.speech=false".into()],
        ..CallmaskOpts::default()
    });
    let l = cm.layout;
    let dir = TempDir::new("timeline");
    let pbx_media = RtpEndpoint::bind();
    let agent_media = RtpEndpoint::bind();
    let re = l.media_rtp_port_regex();
    let (uas_file, uac_file) = (dir.path().join("uas_port"), dir.path().join("uac_port"));
    let mut uas = Sipp::new(
        Scenario::file("uas_call.xml").with("MEDIA_RE", re.clone()),
        l.agents_peer.port(),
    )
    .set("mport", agent_media.port())
    .set("portfile", uas_file.display())
    .timeout_s(60)
    .spawn();
    let call_start = Instant::now();
    let mut uac = Sipp::new(
        Scenario::file("uac_call.xml").with("MEDIA_RE", re),
        l.pbx_peer.port(),
    )
    .remote(l.pbx_listen)
    .pause_ms(CALL_MS + 1_000)
    .set("mport", pbx_media.port())
    .set("portfile", uac_file.display())
    .timeout_s(60)
    .spawn();
    let port = |f: &std::path::Path| -> u16 {
        wait_file_line(f, Duration::from_secs(8))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no media port reported\n{}", cm.log_tail()))
    };
    let (cm_agents, cm_pbx) = (port(&uas_file), port(&uac_file));
    let pbx_voice = voice_signal(CALL_MS, 101);
    let agent_voice = voice_signal(CALL_MS, 202);
    let t0 = Instant::now() + Duration::from_millis(100);
    let answered_at = t0.duration_since(call_start);
    let (pv, av) = (pbx_voice.clone(), agent_voice.clone());
    let a = std::thread::spawn(move || {
        send_paced(
            pbx_media,
            SocketAddr::from((LOCALHOST, cm_pbx)),
            pv,
            PBX_TALK,
            t0,
        )
    });
    let b = std::thread::spawn(move || {
        send_paced(
            agent_media,
            SocketAddr::from((LOCALHOST, cm_agents)),
            av,
            AGENT_TALK,
            t0,
        )
    });
    let _pbx_media = a.join().unwrap();
    let _agent_media = b.join().unwrap();
    uac.wait().assert_success("UAC", &cm);
    let call_len = call_start.elapsed();
    uas.wait().assert_success("UAS", &cm);
    let mut cm = cm;
    cm.wait_metrics("1 completed", Duration::from_secs(10), |m| {
        m.calls("completed") == 1.0 && m.active() == 0.0
    });
    let log = cm.stderr();
    // The call as signalling saw it: INVITE in (call started) to BYE answered (call ended).
    let signalled = log_time(&log, "call started")
        .zip(log_time(&log, "call ended"))
        .map(|(a, b)| b - a);
    cm.stop(Duration::from_secs(10));
    let wav = std::fs::read_dir(&cm.rec_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "wav"))
        .unwrap_or_else(|| panic!("no WAV\n{log}"));
    let (ch, s) = read_wav(&wav);
    assert_eq!(ch, 2);
    let (left, right) = (channel(&s, 0), channel(&s, 1));
    let wav_s = left.len() as f64 / 8000.0;
    // Where each talk segment landed, relative to the first segment of the PBX side.
    let mut report = Vec::new();
    let mut first: Option<f64> = None;
    let mut worst_ms = 0.0f64;
    for (name, voice, talk, chan) in [
        ("pbx", &pbx_voice, PBX_TALK, &left),
        ("agent", &agent_voice, AGENT_TALK, &right),
    ] {
        for &(a, b) in &talk {
            let seg = &voice[(a * 8) as usize..(b * 8) as usize];
            let (corr, at) = best_alignment(seg, chan);
            let at_ms = at as f64 / 8.0;
            let base = *first.get_or_insert(at_ms - f64::from(a));
            let err = at_ms - base - f64::from(a);
            worst_ms = worst_ms.max(err.abs());
            report.push(format!(
                "{name}@{a}ms: corr {corr:.3}, at {at_ms:.1} ms, error {err:+.1} ms"
            ));
            assert!(
                corr > 0.95,
                "{name} segment at {a} ms not found (corr {corr:.3})\n{}\n{log}",
                report.join("\n")
            );
        }
    }
    let call_s = signalled.unwrap_or(call_len.as_secs_f64());
    let len_err = wav_s - call_s;
    eprintln!(
        "[figure] timeline: call {call_s:.3} s (INVITE to BYE in callmask's log; sipp ran {:.2} s, \
         media from {:.2} s), WAV {wav_s:.3} s ({len_err:+.3} s); segments aligned within \
         {worst_ms:.1} ms:\n  {}",
        call_len.as_secs_f64(),
        answered_at.as_secs_f64(),
        report.join("\n  ")
    );
    assert!(
        worst_ms <= 20.0,
        "misaligned by {worst_ms:.1} ms\n{}",
        report.join("\n")
    );
    assert!(
        len_err.abs() <= 0.1,
        "WAV {wav_s:.3} s for a {call_s:.3} s call"
    );
}
