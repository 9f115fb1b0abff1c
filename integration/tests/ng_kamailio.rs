//! Media-node mode with a real controller: Kamailio 5.6 (Debian) with its `rtpengine` module
//! pointed at callmask's NG socket (`ng.listen`) relays a call from a sipp caller to a sipp
//! callee, all on 127.0.0.1. Kamailio does SIP only; callmask answers `offer` / `answer` /
//! `delete`, anchors the media and records it.
//!
//! The caller plays a 10 s cut of dev call 007 (in-band DTMF sent together with RFC 4733
//! events, off-frequency negative controls, speech) as real-time RTP. Checked: the callee's
//! SDP points at callmask, its RTP arrives from callmask, the NG commands were answered `ok`,
//! the recording's sidecar keeps Call-ID and both tags, and `../shared/eval/score.py` on the
//! recorded caller channel finds 0 in-band DTMF leaked, 0 RFC 4733 events forwarded (every
//! digit spandsp decodes in the recording counts as forwarded) and 0 negative controls muted.
//! Two seconds in, the caller's in-dialog INFO makes Kamailio call `block_dtmf()` (NG `block
//! DTMF`): the callee then receives no RFC 4733 packet and hears no key.
//!
//! Needs kamailio (+ its rtpengine module), sipp, python3 with numpy/scipy/soundfile and
//! `../shared/eval` (or `CALLMASK_SHARED`); a missing one fails the test unless
//! `CALLMASK_ALLOW_SKIP=1`.
#![allow(clippy::disallowed_methods)] // test harness: reads env, the clock

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use callmask_integration::ng::{
    cut_call, kamailio_bin, ng_prerequisites, score_caller_channel, NgKamailio,
};
use callmask_integration::{
    free_udp_port, missing, wait_for, Callmask, CallmaskOpts, Scenario, Sipp, TempDir, UdpCapture,
};

/// The cut of dev call 007 played: quiet at both ends (no label crosses them).
const CUT_MS: (u64, u64) = (26_000, 35_860);
/// When the caller's INFO makes Kamailio call `block_dtmf()`: before the cut's keys (4.25 s).
const BLOCK_MS: u32 = 2_000;

fn eval_dir() -> Option<PathBuf> {
    callmask_integration::eval_dir("data/dev/call_007.json")
}

/// DTMF keys the callee can hear in the PCMU it received.
fn callee_media_digits(rtp: &[callmask_integration::RtpPacket]) -> usize {
    callmask_integration::dtmf_digit_count(&callmask_integration::rtp_to_pcm(rtp))
}

/// What the caller's in-dialog INFO makes Kamailio do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum InfoAction {
    /// `block_dtmf()`: NG `block DTMF`.
    BlockDtmf,
    /// `silence_media()`: NG `silence media`.
    SilenceMedia,
}

#[test]
fn kamailio_drives_callmask_over_ng() {
    run_call(InfoAction::BlockDtmf);
}

/// Kamailio's `silence_media()` on the live call: from then on the callee gets the caller's
/// RTP with silent payloads (still flowing, same packets), so no key reaches it, while the
/// recording is sanitized exactly as without it (the gate is about what the callee hears).
#[test]
fn kamailio_silence_media_silences_the_callers_audio_toward_the_callee() {
    run_call(InfoAction::SilenceMedia);
}

fn run_call(action: InfoAction) {
    let Some(eval) = eval_dir() else {
        return missing("../shared/eval/data/dev/call_007 not found (set CALLMASK_SHARED)");
    };
    if let Some(why) = ng_prerequisites(&eval) {
        return missing(&why);
    }
    let kamailio = kamailio_bin().expect("checked above");

    let t0 = std::time::Instant::now();
    let phase =
        |what: &str| eprintln!("[ng_kamailio] {:>6.1} s {what}", t0.elapsed().as_secs_f64());
    // The call: a 10 s cut of dev call 007, as sipp's pcap.
    let work = TempDir::new("ng-kamailio");
    let base = work.path().join("call_ng");
    let pcap = work.path().join("call.pcap");
    let counts = cut_call(&eval, "call_007", CUT_MS, &base, &pcap);
    eprintln!("cut: in-band, RFC 4733, negative controls = {counts:?}");

    phase("pcap written");
    let ng = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    let cm = Callmask::start_with(CallmaskOpts {
        media_pairs: 16,
        sets: vec![format!("ng.listen=\"{ng}\""), "masking.speech=false".into()],
        ..CallmaskOpts::default()
    });
    phase("callmask up");
    let callee_media = UdpCapture::bind();
    let callee_port = free_udp_port();
    let callee = SocketAddr::from(([127, 0, 0, 1], callee_port));
    let k = NgKamailio::start(&kamailio, &format!("udp:{ng}"), "", callee);

    let portfile = work.path().join("offer_port");
    let mut uas = Sipp::new(
        Scenario::file("uas_call.xml").with("MEDIA_RE", cm.layout.media_rtp_port_regex()),
        callee_port,
    )
    .set("mport", callee_media.addr().port())
    .set("portfile", portfile.display())
    .timeout_s(60)
    .spawn();
    let call_ms = CUT_MS.1 - CUT_MS.0;
    let uac = Sipp::new(
        Scenario::file("ng_uac_play.xml")
            .with("PCAP", pcap.display().to_string())
            .with("BLOCK_MS", BLOCK_MS.to_string())
            .with(
                "INFO_ACTION",
                match action {
                    InfoAction::BlockDtmf => "dtmf",
                    InfoAction::SilenceMedia => "silence",
                },
            ),
        free_udp_port(),
    )
    .remote(k.sip)
    .pause_ms(call_ms as u32 + 1500)
    .arg("-mi")
    .arg("127.0.0.1")
    .arg("-mp")
    .arg(free_udp_port().to_string())
    .timeout_s(60)
    .run();
    phase("caller done");
    let uas_run = uas.wait();
    phase("callee done");
    assert!(
        uac.success() && uas_run.success(),
        "call through Kamailio failed\n--- uac ---\n{}\n--- uas ---\n{}\n--- kamailio ---\n{}\n--- callmask ---\n{}",
        uac.report(),
        uas_run.report(),
        k.log_tail(),
        cm.log_tail()
    );

    // The NG commands were answered ok, and media went through callmask's ports.
    let m = cm.wait_metrics("the NG delete", Duration::from_secs(10), |m| {
        m.sum(
            "callmask_ng_commands_total",
            &["command=\"delete\"", "result=\"ok\""],
        ) >= 1.0
    });
    for c in ["offer", "answer"] {
        let ok = m.sum(
            "callmask_ng_commands_total",
            &[&format!("command=\"{c}\""), "result=\"ok\""],
        );
        assert!(ok >= 1.0, "no ok {c}:\n{}", m.callmask_lines());
    }
    let errors = m.sum("callmask_ng_commands_total", &["result=\"error\""]);
    assert_eq!(
        errors,
        0.0,
        "NG errors:\n{}\n{}",
        m.callmask_lines(),
        cm.log_tail()
    );
    let relayed = callee_media.texts();
    assert!(
        relayed.len() > 400,
        "the callee got {} RTP packets (expected ~{} from the caller, through callmask)",
        relayed.len(),
        call_ms / 20
    );
    // Kamailio's block_dtmf() (NG `block DTMF`) clamped the callee's leg before the keys: no
    // RFC 4733 packet reached the callee and no key is heard in its audio.
    let label = match action {
        InfoAction::BlockDtmf => "command=\"block_dtmf\"",
        InfoAction::SilenceMedia => "command=\"silence_media\"",
    };
    let answered = m.sum("callmask_ng_commands_total", &[label, "result=\"ok\""]);
    assert_eq!(answered, 1.0, "{label} not answered ok:\n{}", k.log_tail());
    let rtp = callee_media.rtp();
    let events = rtp.iter().filter(|p| p.pt == 101).count();
    let heard = callee_media_digits(&rtp);
    eprintln!(
        "[figure] callee leg ({label} 2 s in): {} RTP packets, {events} RFC 4733, {heard} keys decodable",
        rtp.len()
    );
    assert_eq!((events, heard), (0, 0), "DTMF reached the callee ({label})");
    if action == InfoAction::SilenceMedia {
        // Audio packets keep flowing; from half a second after the INFO, every one is silent.
        let audio: Vec<_> = rtp.iter().filter(|p| p.pt == 0).collect();
        let ts0 = audio.first().map(|p| p.ts).unwrap_or_default();
        let after =
            |p: &&callmask_integration::RtpPacket| p.ts.wrapping_sub(ts0) > (BLOCK_MS + 500) * 8;
        let loud_before = audio
            .iter()
            .filter(|p| !after(p) && p.payload.iter().any(|&b| b != 0xFF))
            .count();
        let loud_after = audio
            .iter()
            .filter(|p| after(p) && p.payload.iter().any(|&b| b != 0xFF))
            .count();
        let silent_after = audio.iter().filter(|p| after(p)).count() - loud_after;
        eprintln!(
            "[figure] silence media: {loud_before} audible packets before, {loud_after} audible and {silent_after} silent after"
        );
        assert!(loud_before > 0, "the caller was audible before the INFO");
        assert!(
            silent_after > 300,
            "silenced packets keep flowing: {silent_after}"
        );
        assert_eq!(
            loud_after, 0,
            "audio reached the callee after silence media"
        );
    }
    let from_callmask = relayed.iter().all(|(_, from)| {
        from.ip().is_loopback() && (cm.layout.media.0..=cm.layout.media.1).contains(&from.port())
    });
    assert!(from_callmask, "callee RTP not from callmask's media ports");
    let offered: u16 = fs::read_to_string(&portfile)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("the callee saw the offer's port");
    assert!((cm.layout.media.0..=cm.layout.media.1).contains(&offered));

    // The recording: sidecar with the NG dictionary's identifiers, caller channel scored.
    let rec = wait_for(Duration::from_secs(10), || {
        let wav = fs::read_dir(&cm.rec_dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "wav"))?;
        wav.with_extension("json").exists().then_some(wav)
    })
    .unwrap_or_else(|| panic!("no recording\n{}", cm.log_tail()));
    let sidecar = fs::read_to_string(rec.with_extension("json")).expect("sidecar");
    for key in ["\"sip_call_id\"", "\"from_tag\"", "\"to_tag\""] {
        assert!(sidecar.contains(key), "sidecar lacks {key}:\n{sidecar}");
    }
    phase("recording written");
    let v = score_caller_channel(&eval, &rec, &base, work.path());
    phase("scored");
    assert!(v[0] > 0 && v[4] > 0, "the cut holds DTMF: {v:?}");
    assert_eq!(
        (v[1], v[2], v[3], v[5], v[6]),
        (0, 0, 0, 0, 0),
        "in-band leaked, still decodable (spandsp, multimon), RFC 4733 forwarded, negatives muted: {v:?}"
    );
}
