//! Live spoken-identifier masking end to end: the real `callmask run` binary with the embedded
//! Whisper engine, sipp playing an 11 s excerpt of dev-corpus call 003 (the caller says an
//! SSN's last four and a date of birth) as real-time RTP, and the `wav` recorder's output.
//!
//! - `spoken_identifiers_muted_live`: each labelled spoken identifier is muted in the
//!   recording and covered by a `spoken_id` span in the sidecar, while the rest of the speech
//!   stays audible; the recognizer metrics moved.
//! - `engine_missing_fails_closed`: with a model folder that does not exist, `/readyz` says
//!   the recognizer is not loaded and the recording's caller channel is silent throughout.
//!
//! Needs sipp, python3 and the dev corpus (`../shared/eval`); without them the tests print a
//! note and pass. The first also needs the model that `scripts/setup.sh` installs.
#![allow(clippy::disallowed_methods)] // an e2e test reads the clock and runs processes
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use callmask_integration::*;

/// The excerpt of call_003 played (ms).
const FROM_MS: u64 = 17_000;
const TO_MS: u64 = 28_000;
/// Labelled spoken identifiers inside it (call_003.json), in excerpt time (ms).
const IDS: [(u64, u64); 2] = [
    (19_704 - FROM_MS, 20_974 - FROM_MS),
    (24_214 - FROM_MS, 27_154 - FROM_MS),
];
/// Generous look-ahead: this machine's shared cores must not make the test flaky (the default
/// 3000 ms is exercised by the demo and measured separately).
const LOOKAHEAD_MS: u32 = 8000;

fn eval_dir() -> Option<PathBuf> {
    callmask_integration::eval_dir("data/dev/call_003.ulaw")
}

/// Write the excerpt as a corpus-style call and turn it into `call.pcap` with the eval kit.
fn make_pcap(eval: &Path, dir: &Path) -> Vec<i16> {
    let ulaw = std::fs::read(eval.join("data/dev/call_003.ulaw")).unwrap();
    let cut = &ulaw[(FROM_MS * 8) as usize..(TO_MS * 8) as usize];
    std::fs::write(dir.join("call.ulaw"), cut).unwrap();
    let label = serde_like_json(TO_MS - FROM_MS);
    std::fs::write(dir.join("call.json"), label).unwrap();
    let out = Command::new("python3")
        .arg(eval.join("rtp/make_pcap.py"))
        .arg(dir.join("call"))
        .arg("-o")
        .arg(dir.join("call.pcap"))
        .arg("--no-events")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_pcap.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["uac_play.xml", "uas_answer.xml"] {
        std::fs::copy(eval.join("rtp").join(f), dir.join(f)).unwrap();
    }
    cut.iter().map(|&b| ulaw_to_linear(b)).collect()
}

fn serde_like_json(duration_ms: u64) -> String {
    format!(
        "{{\"meta\":{{\"duration_ms\":{duration_ms},\"sample_rate\":8000,\"codec\":\"PCMU\"}},\
         \"rfc4733_events\":[],\"rfc4733_packets\":[]}}"
    )
}

/// G.711 µ-law to linear (the test's own copy, independent of callmask's).
fn ulaw_to_linear(b: u8) -> i16 {
    let b = !b;
    let sign = b & 0x80;
    let exp = (b >> 4) & 7;
    let mant = i32::from(b & 0x0f);
    let mag = (((mant << 3) + 0x84) << exp) - 0x84;
    (if sign != 0 { -mag } else { mag }) as i16
}

/// Kills (by PID) and reaps on drop.
struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            terminate(&mut c, Duration::from_secs(2));
        }
    }
}

/// Play the pcap from a sipp UAC (the PBX) to a sipp UAS (the agent) through `cm`; returns the
/// recording's caller channel and its sidecar once the call is over.
fn play(cm: &Callmask, dir: &Path, name: &str) -> (Vec<i16>, String) {
    let l = cm.layout;
    let dur = TO_MS - FROM_MS;
    let (uac_mp, uas_mp) = (free_udp_port() & !1, free_udp_port() & !1);
    let sipp = |scenario: &str, port: u16, mp: u16, extra: &[String]| {
        Command::new("sipp")
            .current_dir(dir)
            .args(["-sf", scenario, "-i", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "-mi",
                "127.0.0.1",
                "-mp",
                &mp.to_string(),
                "-m",
                "1",
                "-nostdin",
            ])
            .args([
                "-timeout",
                &format!("{}s", dur / 1000 + 60),
                "-timeout_error",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let uas = Proc(Some(sipp(
        "uas_answer.xml",
        l.agents_peer.port(),
        uas_mp,
        &[],
    )));
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = Proc(Some(sipp(
        "uac_play.xml",
        l.pbx_peer.port(),
        uac_mp,
        &[
            "-d".into(),
            (dur + 1500).to_string(),
            format!("127.0.0.1:{}", l.pbx_listen.port()),
        ],
    )));
    let st = uac.0.as_mut().unwrap().wait().unwrap();
    uac.0 = None;
    assert!(st.success(), "sipp UAC failed ({st})\n{}", cm.log_tail());
    drop(uas);
    let (wav, json) = wait_for(Duration::from_secs(30), || {
        let entries = std::fs::read_dir(&cm.rec_dir).ok()?;
        let wav = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "wav"))?;
        let json = std::fs::read_to_string(wav.with_extension("json")).ok()?;
        Some((wav, json))
    })
    .unwrap_or_else(|| {
        panic!(
            "no recording in {}\n{}",
            cm.rec_dir.display(),
            cm.log_tail()
        )
    });
    // Kept for a listen after a failure.
    let _ = std::fs::copy(
        &wav,
        std::env::temp_dir().join(format!("callmask-{name}.wav")),
    );
    (left_channel(&std::fs::read(wav).unwrap()), json)
}

/// Left channel of a 16-bit stereo WAV (finds the `data` chunk).
fn left_channel(wav: &[u8]) -> Vec<i16> {
    let mut i = 12;
    while i + 8 <= wav.len() {
        let id = &wav[i..i + 4];
        let len = u32::from_le_bytes(wav[i + 4..i + 8].try_into().unwrap()) as usize;
        if id == b"data" {
            let data = &wav[i + 8..(i + 8 + len).min(wav.len())];
            return data
                .chunks_exact(4)
                .map(|f| i16::from_le_bytes([f[0], f[1]]))
                .collect();
        }
        i += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}

/// Offset (samples, 10 ms steps) of the excerpt within the recording: the best Pearson
/// correlation of 10 ms log-energy envelopes over the recording's unmuted frames. The recorder
/// places a direction at its first frame's arrival, about one look-ahead after the audio.
fn align(orig: &[i16], rec: &[i16]) -> usize {
    let env = |x: &[i16]| -> Vec<f64> {
        x.chunks_exact(80)
            .map(|c| (c.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 80.0 + 1.0).ln())
            .collect()
    };
    let (eo, er) = (env(orig), env(rec));
    let mut best = (f64::MIN, 0);
    for off in 0..=er.len().saturating_sub(eo.len()) {
        let pairs: Vec<(f64, f64)> = eo
            .iter()
            .zip(&er[off..])
            .filter(|(_, r)| **r > 0.5) // muted frames say nothing
            .map(|(o, r)| (*o, *r))
            .collect();
        let n = pairs.len().max(1) as f64;
        let (mo, mr) = (
            pairs.iter().map(|p| p.0).sum::<f64>() / n,
            pairs.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
        for (o, r) in pairs {
            xy += (o - mo) * (r - mr);
            xx += (o - mo).powi(2);
            yy += (r - mr).powi(2);
        }
        let c = xy / ((xx * yy).sqrt() + 1e-9);
        if c > best.0 {
            best = (c, off);
        }
    }
    best.1 * 80
}

/// Spans `(start_ms, end_ms, reason)` of the sidecar (a tiny scan, no JSON crate here).
fn spans(json: &str) -> Vec<(f64, f64, String)> {
    let num = |s: &str, key: &str| -> Option<f64> {
        let at = s.find(&format!("\"{key}\""))?;
        let rest = s[at + key.len() + 2..].trim_start_matches([':', ' ']);
        let end = rest.find([',', '}'])?;
        rest[..end].trim().parse().ok()
    };
    let Some(at) = json.find("\"spans\"") else {
        return Vec::new();
    };
    json[at..]
        .split('{')
        .skip(1)
        .filter_map(|obj| {
            let obj = obj.split('}').next()?;
            let reason = obj
                .split("\"reason\"")
                .nth(1)?
                .split('"')
                .nth(1)?
                .to_string();
            Some((num(obj, "start_ms")?, num(obj, "end_ms")?, reason))
        })
        .collect()
}

fn start(eval: &Path, sets: &[String]) -> Option<(Callmask, TempDir, Vec<i16>)> {
    if !callmask_integration::have("sipp") || !callmask_integration::have("python3") {
        missing("[speech_live] sipp or python3 missing (scripts/setup.sh)");
        return None;
    }
    let dir = TempDir::new("speech-live");
    let orig = make_pcap(eval, dir.path());
    let mut all = vec![
        "masking.speech=true".to_string(),
        // CALLMASK_SPEECH_LIVE_LOOKAHEAD_MS: measure other look-aheads (the checks assume 8000).
        format!(
            "masking.lookahead_ms={}",
            std::env::var("CALLMASK_SPEECH_LIVE_LOOKAHEAD_MS").unwrap_or(LOOKAHEAD_MS.to_string())
        ),
    ];
    all.extend_from_slice(sets);
    let cm = Callmask::start_with(CallmaskOpts {
        sets: all,
        ..CallmaskOpts::default()
    });
    Some((cm, dir, orig))
}

#[test]
fn spoken_identifiers_muted_live() {
    let Some(eval) = eval_dir() else {
        missing("[speech_live] dev corpus ../shared/eval not found");
        return;
    };
    if !Path::new("/var/lib/callmask/models/whisper-tiny.en/model.bin").is_file() {
        missing("[speech_live] no speech model (run scripts/setup.sh)");
        return;
    }
    let Some((cm, dir, orig)) = start(&eval, &[]) else {
        return;
    };
    check_live(&cm, dir.path(), &orig, "speech-live");
}

/// Waits for `/readyz`, plays the excerpt through `cm`, and checks the recording: every
/// labelled identifier muted and covered by `spoken_id` spans, the rest audible.
fn check_live(cm: &Callmask, dir: &Path, orig: &[i16], name: &str) {
    let ready = wait_for(Duration::from_secs(60), || {
        (http_get(cm.layout.http, "/readyz").map(|r| r.0) == Some(200)).then_some(())
    });
    assert!(
        ready.is_some(),
        "recognizer never loaded\n{}",
        cm.log_tail()
    );
    let (rec, json) = play(cm, dir, name);
    let off = align(orig, &rec);
    let sp = spans(&json);
    let m = cm.metrics();
    eprintln!(
        "[{name}] offset {} ms; spans {:?}; segments ok {} late {} failed {} dropped {}; \
         recognizer: {:.1} s audio, {:.2} busy-s",
        off / 8,
        sp,
        m.sum("callmask_recognizer_segments_total", &["outcome=\"ok\""]),
        m.sum("callmask_recognizer_segments_total", &["outcome=\"late\""]),
        m.sum(
            "callmask_recognizer_segments_total",
            &["outcome=\"failed\""]
        ),
        m.sum(
            "callmask_recognizer_segments_total",
            &["outcome=\"dropped\""]
        ),
        m.value("callmask_recognizer_audio_seconds_total"),
        m.value("callmask_recognizer_busy_seconds_total"),
    );
    let mut in_ids = vec![false; orig.len()];
    for (s, e) in IDS {
        let (a, b) = ((s * 8) as usize, (e * 8) as usize);
        in_ids[a..b].iter_mut().for_each(|x| *x = true);
        let window = &rec[(a + off).min(rec.len())..(b + off).min(rec.len())];
        let zero = window.iter().filter(|&&x| x == 0).count() as f64 / window.len().max(1) as f64;
        assert!(
            zero > 0.95,
            "spoken identifier {s}-{e} ms only {:.0} % muted",
            zero * 100.0
        );
        let (rs, re) = ((s + off as u64 / 8) as f64, (e + off as u64 / 8) as f64);
        let covered: f64 = sp
            .iter()
            .filter(|x| x.2 == "spoken_id")
            .map(|x| (x.1.min(re) - x.0.max(rs)).max(0.0))
            .sum();
        assert!(
            covered >= 0.9 * (re - rs),
            "spoken identifier {s}-{e} ms: only {covered} ms covered by spoken_id spans: {sp:?}"
        );
    }
    // The rest of the speech is not muted wholesale (not fail-closed).
    let (mut loud, mut heard) = (0usize, 0usize);
    for (i, &o) in orig.iter().enumerate() {
        if !in_ids[i] && o.unsigned_abs() > 500 && i + off < rec.len() {
            loud += 1;
            heard += usize::from(rec[i + off] != 0);
        }
    }
    assert!(
        heard as f64 > 0.3 * loud as f64,
        "only {heard}/{loud} loud samples outside the identifiers are audible"
    );
    assert!(m.sum("callmask_recognizer_segments_total", &["outcome=\"ok\""]) >= 1.0);
    assert!(m.value("callmask_recognizer_audio_seconds_total") > 1.0);
}

#[test]
fn engine_missing_fails_closed() {
    let Some(eval) = eval_dir() else {
        missing("[speech_live] dev corpus ../shared/eval not found");
        return;
    };
    let Some((cm, dir, _orig)) = start(
        &eval,
        &["speech.model_dir=\"/nonexistent/callmask-model\"".into()],
    ) else {
        return;
    };
    // The workers fail to load: not ready, and stays so.
    std::thread::sleep(Duration::from_millis(1500));
    let r = http_get(cm.layout.http, "/readyz").unwrap();
    assert_eq!(r.0, 503, "{}", r.1);
    assert!(r.1.contains("recognizer_loaded"), "{}", r.1);
    let (rec, _json) = play(&cm, dir.path(), "speech-fail-closed");
    let nonzero = rec.iter().filter(|&&x| x != 0).count();
    assert!(rec.len() > 8000 * 8, "recording too short: {}", rec.len());
    assert_eq!(
        nonzero, 0,
        "the caller channel must be silent without an engine"
    );
    let m = cm.metrics();
    assert!(m.value("callmask_fail_closed_muted_seconds_total") > 5.0);
}

/// The default build links the CTranslate2 library from /var/tmp/callmask-asr with an rpath:
/// the binary starts with no LD_LIBRARY_PATH.
#[test]
fn binary_runs_without_ld_library_path() {
    let out = Command::new(callmask_bin())
        .arg("--version")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "callmask --version failed without LD_LIBRARY_PATH: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The same call with `speech.engine = "remote"`: the pool's workers post the segments to
/// `integration/asr_server/server.py` (faster-whisper on the same model). Needs
/// `scripts/setup_remote_asr.sh`; fails without it (unless CALLMASK_ALLOW_SKIP=1).
#[test]
fn spoken_identifiers_muted_live_remote_engine() {
    let Some(eval) = eval_dir() else {
        missing("[speech_live] dev corpus ../shared/eval not found");
        return;
    };
    let python = Path::new("/var/tmp/callmask-asr/remote-venv/bin/python");
    if !python.exists() {
        missing("[speech_live] remote: run scripts/setup_remote_asr.sh");
        return;
    }
    let srv_dir = TempDir::new("speech-live-asr");
    let log = srv_dir.path().join("server.log");
    let child = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("asr_server/server.py"))
        // Greedy decoding: this test is about the live path through a remote engine, and a
        // beam of 5 on one thread decodes near real time on a shared 2-core machine, which
        // made the first segment late (muted fail-closed instead of as an identifier).
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args(["--threads", "1", "--beam-size", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Proc(Some(child));
    let url = wait_for(Duration::from_secs(90), || {
        if let Some(Ok(Some(st))) = server.0.as_mut().map(Child::try_wait) {
            panic!("asr server exited ({st})");
        }
        let text = std::fs::read_to_string(&log).ok()?;
        let rest = text.split("ready on ").nth(1)?;
        Some(rest.split_whitespace().next()?.to_owned())
    })
    .expect("asr server ready");
    let Some((cm, dir, orig)) = start(
        &eval,
        &[
            "speech.engine=\"remote\"".into(),
            format!("speech.remote_url=\"{url}\""),
        ],
    ) else {
        return;
    };
    check_live(&cm, dir.path(), &orig, "speech-live-remote");
    drop(cm);
    drop(server);
}
