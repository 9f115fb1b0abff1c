//! End-to-end, issue 14 (encrypted calls): the real `callmask run` binary between sipp peers
//! offering SDES-SRTP on 127.0.0.1, with Rust [`RtpEndpoint`]s as their media.
//!
//! - An offer callmask cannot decrypt is answered 488 toward the offerer by default.
//! - With `media.undecodable = "relay-muted"` it is relayed end to end (the peers' own keys)
//!   and the recording is silence, never the ciphertext decoded as G.711.
//! - A supported suite is terminated: packets that fail authentication (a flipped tag bit)
//!   are dropped and counted, never relayed or recorded.
#![allow(clippy::disallowed_methods)] // an e2e test reads the clock
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use callmask_integration::*;

const T: Duration = Duration::from_secs(5);
/// An RFC 4568 suite callmask does not terminate (AES f8 mode): refused or relayed muted.
const UNSUPPORTED_SUITE: &str = "F8_128_HMAC_SHA1_80";
/// Test keys (30 bytes of key + salt, base64), one per peer.
const PBX_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
const AGENT_KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";

#[test]
fn undecodable_srtp_offer_is_refused_488() {
    let cm = Callmask::start();
    let l = cm.layout;
    let mut uac = Sipp::new(
        Scenario::file("uac_srtp_refused.xml").with("SUITE", UNSUPPORTED_SUITE),
        l.pbx_peer.port(),
    )
    .remote(l.pbx_listen)
    .spawn();
    let run = uac.wait();
    run.assert_success("UAC", &cm);
    assert!(run.messages.contains("SIP/2.0 488"), "{}", run.report());
    let m = cm.wait_metrics("1 failed call, 0 ports in use", T, |m| {
        m.calls("failed") == 1.0 && m.active() == 0.0 && m.ports_in_use() == 0.0
    });
    assert_eq!(m.calls("completed"), 0.0, "{}", m.callmask_lines());
}

/// An SDES call set up through `cm`: sipp as the PBX (offering `suite` with [`PBX_KEY`],
/// media at `pbx_port`, hanging up `hangup_ms` after its ACK) and as the agent (answering
/// with [`AGENT_KEY`], media at `agent_port`). Returns once both have callmask's media ports.
struct SdesCall {
    uac: SippChild,
    uas: SippChild,
    /// callmask's media port toward the agent, and the key callmask's offer gave the agent.
    cm_agents: (u16, String),
    /// callmask's media port toward the PBX, and the key callmask's answer gave the PBX.
    cm_pbx: (u16, String),
    _dir: TempDir,
}

impl SdesCall {
    fn start(cm: &Callmask, suite: &str, pbx_port: u16, agent_port: u16, hangup_ms: u32) -> Self {
        let l = cm.layout;
        let dir = TempDir::new("srtp_call");
        let re = l.media_rtp_port_regex();
        let uas_file = dir.path().join("uas_port");
        let uac_file = dir.path().join("uac_port");
        let uas = Sipp::new(
            Scenario::file("uas_srtp_call.xml")
                .with("MEDIA_RE", re.clone())
                .with("SUITE", suite)
                .with("KEY", AGENT_KEY),
            l.agents_peer.port(),
        )
        .set("mport", agent_port)
        .set("portfile", uas_file.display())
        .spawn();
        let uac = Sipp::new(
            Scenario::file("uac_srtp_call.xml")
                .with("MEDIA_RE", re)
                .with("SUITE", suite)
                .with("KEY", PBX_KEY),
            l.pbx_peer.port(),
        )
        .remote(l.pbx_listen)
        .pause_ms(hangup_ms)
        .set("mport", pbx_port)
        .set("portfile", uac_file.display())
        .spawn();
        let port = |f: &std::path::Path| -> (u16, String) {
            let p = wait_file_line(f, Duration::from_secs(8))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no media port in {}\n{}", f.display(), cm.log_tail()));
            let key = wait_file_line(&f.with_extension("key"), T).unwrap();
            (p, key)
        };
        SdesCall {
            cm_agents: port(&uas_file),
            cm_pbx: port(&uac_file),
            uac,
            uas,
            _dir: dir,
        }
    }

    /// Waits for both sipps; panics unless both succeeded.
    fn assert_completed(mut self, cm: &Callmask) {
        self.uac.wait().assert_success("UAC", cm);
        self.uas.wait().assert_success("UAS", cm);
    }
}

#[test]
fn relay_muted_srtp_call_records_silence() {
    let mut cm = Callmask::start_with(CallmaskOpts {
        // DTMF masking only: without a recognizer speech masking mutes everything, and the
        // silence must come from the encryption.
        sets: vec![
            "media.undecodable=\"relay-muted\"".into(),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    });
    let mut pbx_media = RtpEndpoint::bind();
    let mut agent_media = RtpEndpoint::bind();
    let call = SdesCall::start(
        &cm,
        UNSUPPORTED_SUITE,
        pbx_media.port(),
        agent_media.port(),
        2500,
    );
    let (cm_agents_port, cm_pbx_port) = (call.cm_agents.0, call.cm_pbx.0);
    // Relayed end to end: each peer got the other's own key, untouched.
    assert_eq!(call.cm_agents.1, PBX_KEY);
    assert_eq!(call.cm_pbx.1, AGENT_KEY);

    // "SRTP" both ways: loud DTMF tones as payload plus a 10-byte tag. Whatever it is,
    // callmask holds no keys: it relays the bytes as they are and records silence.
    let (frames, _) = synth_call_with_dtmf(1000, 200, "4532");
    let to_pbx_side = SocketAddr::from((LOCALHOST, cm_pbx_port));
    let to_agents_side = SocketAddr::from((LOCALHOST, cm_agents_port));
    let mut sent = Vec::new();
    for f in &frames {
        let mut p = f.clone();
        p.extend_from_slice(&[0xa5; 10]);
        sent.push(pbx_media.send_pcmu(to_pbx_side, &p));
        agent_media.send_pcmu(to_agents_side, &p);
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = agent_media.wait_received(frames.len(), T);
    let got: Vec<Vec<u8>> = got.into_iter().map(|p| p.payload).collect();
    assert!(got == sent, "SRTP relayed byte for byte\n{}", cm.log_tail());
    pbx_media.wait_received(frames.len(), T);
    call.assert_completed(&cm);
    let m = cm.wait_metrics("1 completed call", T, |m| {
        m.calls("completed") == 1.0 && m.active() == 0.0
    });
    let muted = m.sum("callmask_masking_undecodable_seconds_total", &[]);
    assert!(
        muted >= 1.5,
        "both legs' second counted: {muted}\n{}",
        m.callmask_lines()
    );
    let (channels, samples, wav) = stop_and_read_recording(&mut cm);
    assert_eq!(channels, 2);
    assert!(
        samples.len() >= 2 * 8000,
        "about a second recorded: {}",
        samples.len()
    );
    assert_eq!(
        rms(&samples),
        0.0,
        "the recording is silence, never ciphertext"
    );
    assert_eq!(dtmf_digit_count(&samples), 0);
    let sidecar = std::fs::read_to_string(wav.with_extension("json")).unwrap();
    assert!(sidecar.contains("fail_closed"), "{sidecar}");
    assert!(!sidecar.contains(PBX_KEY) && !sidecar.contains(AGENT_KEY));
    assert!(!cm.stderr().contains(PBX_KEY), "keys never logged");
}

/// Stops callmask (it must exit cleanly) and reads its one recording: (channels, samples,
/// its path).
fn stop_and_read_recording(cm: &mut Callmask) -> (u16, Vec<i16>, std::path::PathBuf) {
    let st = cm.stop(Duration::from_secs(10));
    assert!(st.is_some_and(|s| s.success()), "{}", cm.log_tail());
    let wav = std::fs::read_dir(&cm.rec_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wav"))
        .expect("a recording");
    let (channels, samples) = read_wav(&wav);
    (channels, samples, wav)
}

/// Power of `freq` Hz in `x` (8 kHz) relative to the signal's total power (Goertzel).
fn tone_share(x: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let total: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
    if total == 0.0 {
        0.0
    } else {
        2.0 * power / (x.len() as f64 * total)
    }
}

/// Terminated SDES-SRTP (AES_CM_128_HMAC_SHA1_80) with tampering: the PBX side sends 100
/// SRTP packets under its key, every 10th of them carrying a loud 1 kHz tone and a flipped
/// bit in its authentication tag. The 10 tampered packets are dropped and counted
/// (`callmask_srtp_packets_dropped_total{reason="auth"}`): the agent gets the other 90,
/// re-encrypted under callmask's own key (the one in the SDP it was sent), none with the
/// tone, and the recording holds no trace of the tone.
#[test]
fn tampered_srtp_packets_are_dropped_counted_and_never_recorded() {
    let mut cm = Callmask::start_with(CallmaskOpts {
        sets: vec!["masking.speech=false".into()],
        ..CallmaskOpts::default()
    });
    let mut pbx_media = RtpEndpoint::bind();
    let agent_rx = UdpCapture::bind();
    let call = SdesCall::start(
        &cm,
        "AES_CM_128_HMAC_SHA1_80",
        pbx_media.port(),
        agent_rx.addr().port(),
        3000,
    );
    let cm_pbx_port = call.cm_pbx.0;
    // Terminated: each peer got a key of callmask's own, not the other's.
    let toward_agent = call.cm_agents.1.clone();
    assert!(toward_agent != PBX_KEY && call.cm_pbx.1 != AGENT_KEY);

    let (voice, _) = synth_call_with_dtmf(2000, 5000, "");
    let tone: Vec<u8> = (0..160)
        .map(|k| {
            let s = 12_000.0 * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(k) / 8000.0).sin();
            dsp::g711::linear_to_ulaw(s as i16)
        })
        .collect();
    let mut ctx = srtp_context(PBX_KEY);
    let to_pbx_side = SocketAddr::from((LOCALHOST, cm_pbx_port));
    let mut tampered = 0;
    for (i, f) in voice.iter().enumerate() {
        let tamper = i % 10 == 5;
        let payload = if tamper { &tone } else { f };
        pbx_media.send_with(to_pbx_side, payload, |p| {
            let mut s = ctx.encrypt_rtp(&p).unwrap().to_vec();
            if tamper {
                let last = s.len() - 1;
                s[last] ^= 0x01;
            }
            s
        });
        tampered += usize::from(tamper);
        std::thread::sleep(Duration::from_millis(20));
    }
    let wire = wait_for(T, || {
        let d = agent_rx.datagrams();
        (d.len() >= voice.len() - tampered).then_some(d)
    })
    .unwrap_or_else(|| panic!("the agent got {} packets", agent_rx.datagrams().len()));
    call.assert_completed(&cm);
    let m = cm.wait_metrics("1 completed call", T, |m| m.calls("completed") == 1.0);
    let auth = m.sum(
        "callmask_srtp_packets_dropped_total",
        &["reason=\"auth\"", "side=\"pbx\""],
    );
    let decrypted = m.sum("callmask_srtp_packets_decrypted_total", &["side=\"pbx\""]);
    // What reached the agent: every packet authenticates under callmask's key toward it.
    let relayed = srtp_decrypt(&toward_agent, &wire);
    assert_eq!(
        relayed.len(),
        voice.len() - tampered,
        "only the genuine packets"
    );
    assert!(
        relayed.iter().all(|p| p.payload != tone),
        "a tampered packet's audio was relayed"
    );
    assert_eq!(auth, tampered as f64, "{}", m.callmask_lines());
    assert_eq!(decrypted, (voice.len() - tampered) as f64);
    let (_, samples, _) = stop_and_read_recording(&mut cm);
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let (share_rec, share_tone) = (
        tone_share(&left, 1000.0),
        tone_share(
            &tone
                .iter()
                .map(|&b| dsp::g711::ulaw_to_linear(b))
                .collect::<Vec<_>>(),
            1000.0,
        ),
    );
    eprintln!(
        "[figure] tampered SRTP: {tampered} of {} packets with a flipped tag bit dropped \
         (auth {auth}), {} relayed re-encrypted under callmask's key, 1 kHz share of the \
         recording {share_rec:.4} (of a tampered payload {share_tone:.2})",
        voice.len(),
        relayed.len()
    );
    assert!(rms(&left) > 1000.0, "the genuine voice was recorded");
    assert!(
        share_rec < 0.01,
        "the tampered tone reached the recording: {share_rec}"
    );
}
