//! The remote speech engine against a real recognizer: `integration/asr_server/server.py`
//! (faster-whisper, Whisper tiny.en int8, the model the embedded engine uses) started on
//! 127.0.0.1, fed real human speech (Debian `pocketsphinx-testdata`, "two nine three four
//! zero"), through the telephone band and at 16 kHz, directly and through `dsp::spoken`'s
//! masker.
//!
//! Needs `scripts/setup_remote_asr.sh` (a venv in /var/tmp/callmask-asr/remote-venv, or
//! `CALLMASK_REMOTE_ASR_PYTHON`) and the clip; without either it prints why and passes.
//! `CALLMASK_ASR_MODEL_DIR` (from `/var/tmp/callmask-asr/env.sh`) points the server at the
//! embedded engine's model directory; otherwise it uses the same pinned package in its venv.
#![allow(clippy::disallowed_methods)] // an e2e test reads the clock and the environment
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use callmask::io::speech::remote::RemoteRecognizer;
use callmask_integration::{tail, terminate, wait_for, write_wav_mono, TempDir};
use dsp::g711;
use dsp::spoken::{classify, exchange, Recognizer, SpeechConfig, SpeechMasker, TokenClass, Word};
use dsp::SampleRate;

const DEFAULT_PYTHON: &str = "/var/tmp/callmask-asr/remote-venv/bin/python";
const CLIP: &str = "/usr/share/pocketsphinx/test/data/tidigits/dhd.2934z.raw";

/// One server at a time: each loads its own model and decodes on the shared cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The server process, ended by PID on drop.
struct AsrServer {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: TempDir,
    _turn: MutexGuard<'static, ()>,
}

impl Drop for AsrServer {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(3));
    }
}

impl AsrServer {
    /// Starts the server on a port it picks; `None` (with the reason printed) when the venv
    /// or the clip is missing.
    fn start(test: &str) -> Option<AsrServer> {
        let python = std::env::var_os("CALLMASK_REMOTE_ASR_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PYTHON));
        if !python.exists() {
            callmask_integration::missing(&format!(
                "[remote_asr] {test}: {} not found; run scripts/setup_remote_asr.sh \
                 (faster-whisper venv from PyPI, ~550 MB) to test the remote engine",
                python.display()
            ));
            return None;
        }
        if !Path::new(CLIP).exists() {
            callmask_integration::missing(&format!(
                "[remote_asr] {test}: {CLIP} not found; apt-get install pocketsphinx-testdata"
            ));
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("asr_server/server.py");
        let dir = TempDir::new("remote-asr");
        let log = dir.path().join("server.log");
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .args(["--host", "127.0.0.1", "--port", "0", "--threads", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        if let Some(m) = std::env::var_os("CALLMASK_ASR_MODEL_DIR") {
            cmd.arg("--model-dir").arg(m);
        }
        let child = cmd.spawn().unwrap();
        let mut srv = AsrServer {
            child,
            url: String::new(),
            log,
            _dir: dir,
            _turn: turn,
        };
        // The server prints its address once the model is loaded and the socket bound.
        let url = wait_for(Duration::from_secs(90), || {
            if let Ok(Some(st)) = srv.child.try_wait() {
                panic!("asr server exited ({st}):\n{}", srv.log_tail());
            }
            let log = std::fs::read_to_string(&srv.log).ok()?;
            let rest = log.split("ready on ").nth(1)?;
            Some(rest.split_whitespace().next()?.to_owned())
        });
        srv.url = url.unwrap_or_else(|| panic!("asr server not ready:\n{}", srv.log_tail()));
        assert!(srv.url.starts_with("http://127.0.0.1:"), "{}", srv.url);
        Some(srv)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        tail(&log, 3000).to_owned()
    }
}

/// The clip at 16 kHz.
fn clip_16k() -> Vec<i16> {
    std::fs::read(CLIP)
        .unwrap()
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// 16 kHz → 8 kHz (windowed-sinc low-pass at 3.6 kHz, then every other sample) → µ-law and
/// back: what a G.711 call carries.
fn telephone_band(x: &[i16]) -> Vec<i16> {
    const TAPS: usize = 63;
    let mid = (TAPS / 2) as f64;
    let fc = 3600.0 / 16000.0;
    let mut h: Vec<f64> = (0..TAPS)
        .map(|i| {
            let n = i as f64 - mid;
            let sinc = if n == 0.0 {
                2.0 * fc
            } else {
                (2.0 * std::f64::consts::PI * fc * n).sin() / (std::f64::consts::PI * n)
            };
            let w = 0.54 - 0.46 * (2.0 * std::f64::consts::PI * i as f64 / (TAPS - 1) as f64).cos();
            sinc * w
        })
        .collect();
    let sum: f64 = h.iter().sum();
    h.iter_mut().for_each(|v| *v /= sum);
    let narrow: Vec<i16> = (0..x.len() / 2)
        .map(|k| {
            let c = 2 * k;
            let acc: f64 = (0..TAPS)
                .filter_map(|i| {
                    let j = (c + i).checked_sub(TAPS / 2)?;
                    x.get(j).map(|&s| f64::from(s) * h[i])
                })
                .sum();
            acc.round().clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    let mut law = vec![0u8; narrow.len()];
    g711::encode_ulaw(&narrow, &mut law);
    let mut out = vec![0i16; law.len()];
    g711::decode_ulaw(&law, &mut out);
    out
}

/// 20 ms frames (8 kHz) whose energy says speech: where the words must be.
fn voiced_frames(pcm8: &[i16]) -> Vec<bool> {
    let rms: Vec<f64> = pcm8
        .chunks(160)
        .map(|f| (f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64).sqrt())
        .collect();
    let peak = rms.iter().copied().fold(0.0, f64::max);
    rms.iter().map(|&r| r > peak * 0.1).collect()
}

fn number_words(words: &[Word]) -> Vec<&Word> {
    words
        .iter()
        .filter(|w| classify(&w.text) != TokenClass::Plain)
        .collect()
}

/// Share of voiced 20 ms frames inside some `[start, end)` (8 kHz samples).
fn voiced_coverage(voiced: &[bool], spans: &[(u64, u64)]) -> f64 {
    let (mut n, mut hit) = (0usize, 0usize);
    for (i, v) in voiced.iter().enumerate() {
        if !v {
            continue;
        }
        n += 1;
        let mid = i as u64 * 160 + 80;
        if spans.iter().any(|&(s, e)| s <= mid && mid < e) {
            hit += 1;
        }
    }
    hit as f64 / n.max(1) as f64
}

/// Every number word has a sane time inside the segment, in order, and together they sit on
/// the voiced part of the clip.
fn check_words(words: &[Word], seg_len_8k: u64, voiced: &[bool], what: &str) {
    let nums = number_words(words);
    assert!(
        nums.len() >= 4,
        "{what}: {} of 5 spoken digits came back as number tokens ({} words)",
        nums.len(),
        words.len()
    );
    let mut last_start = 0;
    for w in words {
        assert!(w.start <= w.end && w.end.0 <= seg_len_8k, "{what}: {w:?}");
        assert!(w.start.0 >= last_start, "{what}: words out of order");
        last_start = w.start.0;
    }
    let spans: Vec<(u64, u64)> = nums.iter().map(|w| (w.start.0, w.end.0)).collect();
    let cov = voiced_coverage(voiced, &spans);
    assert!(
        cov >= 0.7,
        "{what}: number words cover {:.0} % of the speech",
        cov * 100.0
    );
    eprintln!(
        "[remote_asr] {what}: {} number tokens, {:.0} % of voiced frames inside their times",
        nums.len(),
        cov * 100.0
    );
}

#[test]
fn spoken_digits_come_back_with_times_from_a_real_server() {
    let Some(srv) = AsrServer::start("spoken_digits_come_back_with_times_from_a_real_server")
    else {
        return;
    };
    let mut rec = RemoteRecognizer::new(&srv.url, Duration::from_secs(30)).unwrap();
    let wide = clip_16k();
    let narrow = telephone_band(&wide);
    let voiced = voiced_frames(&narrow);

    let t0 = Instant::now();
    let words = rec
        .transcribe(&narrow, SampleRate::NARROWBAND)
        .unwrap_or_else(|e| panic!("{e}\n{}", srv.log_tail()));
    let first = t0.elapsed();
    check_words(&words, narrow.len() as u64, &voiced, "8 kHz µ-law");

    let t1 = Instant::now();
    let words = rec.transcribe(&wide, SampleRate::WIDEBAND).unwrap();
    let second = t1.elapsed();
    check_words(&words, narrow.len() as u64, &voiced, "16 kHz");
    eprintln!(
        "[remote_asr] {:.1} s clip: {:.2} s (first request), {:.2} s (second, same connection)",
        narrow.len() as f64 / 8000.0,
        first.as_secs_f64(),
        second.as_secs_f64()
    );
}

#[test]
fn the_speech_masker_mutes_the_digits_with_the_remote_engine() {
    let Some(srv) = AsrServer::start("the_speech_masker_mutes_the_digits_with_the_remote_engine")
    else {
        return;
    };
    let mut rec = RemoteRecognizer::new(&srv.url, Duration::from_secs(30)).unwrap();
    // Half a second of silence, the digits, two seconds of silence: one caller turn.
    let lead = 4000usize;
    let mut caller = vec![0i16; lead];
    caller.extend(telephone_band(&clip_16k()));
    caller.resize(caller.len() + 16000, 0);
    caller.resize(caller.len().div_ceil(160) * 160, 0);

    let cfg = SpeechConfig::for_lookahead_ms(3000);
    let mut a = SpeechMasker::new(cfg).unwrap();
    let mut b = SpeechMasker::new(cfg).unwrap(); // the agent, silent
    let silence = [0i16; 160];
    let mut marks = Vec::new();
    for frame in caller.chunks(160) {
        a.push(frame);
        b.push(&silence);
        // Results come back at once here (media time stands still while we wait).
        while let Some(job) = a.take_job() {
            let r = job.run(&mut rec);
            a.complete(job.id, r);
        }
        exchange(&mut a, &mut b);
        while let Some((s, e)) = a.poll_marks() {
            marks.push((s.0, e.0));
        }
    }
    let st = a.stats();
    assert_eq!(st.errors, 0, "recognizer errors:\n{}", srv.log_tail());
    assert!(st.results >= 1, "no segment was recognised");
    assert_eq!((st.late_results, st.expired), (0, 0));

    let voiced = voiced_frames(&caller);
    let cov = voiced_coverage(&voiced, &marks);
    eprintln!(
        "[remote_asr] masker: {} segments, {} marks, {:.0} % of the spoken digits muted",
        st.results,
        marks.len(),
        cov * 100.0
    );
    assert!(cov >= 0.95, "only {:.0} % of the digits muted", cov * 100.0);
    // The silence before the digits stays audible (beyond the policy's padding).
    let pad = 8 * 400;
    assert!(
        marks.iter().all(|&(s, _)| s + pad >= lead as u64),
        "muted long before the speech: {marks:?}"
    );
}

/// The dev corpus's labelled call 008 (synthetic voices, µ-law): eight spoken identifiers
/// (two card numbers, CVVs, an expiry, SSN last four, a date of birth). Each is cut with
/// 400 ms either side and sent alone; each must come back with number tokens on the label.
/// How much of each label the token times cover (±150 ms) is printed: Whisper writes "four
/// seven oh" as one token "470" with a short time, which is why the span policy pads and
/// widens rather than trusting word times.
#[test]
fn dev_corpus_identifiers_come_back_as_number_tokens_on_their_labels() {
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/eval/data/dev");
    let (wav, labels) = (dev.join("call_008.wav"), dev.join("call_008.json"));
    if !wav.exists() || !labels.exists() {
        callmask_integration::missing(&format!(
            "[remote_asr] dev corpus: {} not found",
            wav.display()
        ));
        return;
    }
    let Some(srv) = AsrServer::start("dev_corpus_identifiers_come_back_as_number_tokens") else {
        return;
    };
    let mut rec = RemoteRecognizer::new(&srv.url, Duration::from_secs(60)).unwrap();
    let pcm = wav_pcm(&std::fs::read(&wav).unwrap());
    let spans = spoken_id_spans(&std::fs::read_to_string(&labels).unwrap());
    assert!(spans.len() >= 8, "{} labelled identifiers", spans.len());

    let pad = 8 * 400u64;
    let slack = 8 * 150u64;
    let (mut found, mut good) = (0, 0);
    for &(start_ms, end_ms) in &spans {
        let (s, e) = (start_ms * 8, end_ms * 8);
        let from = s.saturating_sub(pad);
        let to = (e + pad).min(pcm.len() as u64);
        let seg = &pcm[from as usize..to as usize];
        let words = rec.transcribe(seg, SampleRate::NARROWBAND).unwrap();
        let covered: Vec<(u64, u64)> = number_words(&words)
            .iter()
            .map(|w| {
                (
                    from + w.start.0.saturating_sub(slack),
                    from + w.end.0 + slack,
                )
            })
            .collect();
        // Share of the label's 20 ms frames inside some number token.
        let frames = (s..e).step_by(160).collect::<Vec<_>>();
        let hit = frames
            .iter()
            .filter(|&&t| covered.iter().any(|&(a, b)| a <= t && t < b))
            .count();
        let cov = hit as f64 / frames.len().max(1) as f64;
        eprintln!(
            "[remote_asr] dev call_008 id at {:.1}-{:.1} s: {} number tokens, {:.0} % covered",
            start_ms as f64 / 1000.0,
            end_ms as f64 / 1000.0,
            number_words(&words).len(),
            cov * 100.0
        );
        found += usize::from(hit > 0);
        good += usize::from(cov >= 0.8);
    }
    eprintln!(
        "[remote_asr] dev call_008: {found} of {} identifiers with number tokens on the label, \
         {good} ≥ 80 % covered by their times",
        spans.len()
    );
    assert_eq!(
        found,
        spans.len(),
        "identifiers without a number token on them"
    );
}

/// Samples of a 16-bit mono WAV (the corpus's format).
fn wav_pcm(bytes: &[u8]) -> Vec<i16> {
    let mut i = 12;
    while i + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[i + 4..i + 8].try_into().unwrap()) as usize;
        if &bytes[i..i + 4] == b"data" {
            let end = (i + 8 + len).min(bytes.len());
            return bytes[i + 8..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
        }
        i += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}

/// (start_ms, end_ms) of each `spoken_id` label.
fn spoken_id_spans(json: &str) -> Vec<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["spoken_id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["start_ms"].as_u64().unwrap(),
                l["end_ms"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `callmask mask --remote-url`: the real binary, the real server, the digits clip as an
/// 8 kHz WAV; the report's spoken_id spans must cover the digits.
#[test]
fn callmask_mask_uses_the_remote_engine() {
    let Some(srv) = AsrServer::start("callmask_mask_uses_the_remote_engine") else {
        return;
    };
    let dir = TempDir::new("remote-mask");
    let (input, output, report) = (
        dir.path().join("in.wav"),
        dir.path().join("out.wav"),
        dir.path().join("spans.json"),
    );
    let mut pcm = vec![0i16; 4000];
    pcm.extend(telephone_band(&clip_16k()));
    pcm.resize(pcm.len() + 16000, 0);
    write_wav_mono(&input, &pcm);

    let out = Command::new(callmask_integration::callmask_bin())
        .arg("mask")
        .args([&input, &output])
        .arg("--report")
        .arg(&report)
        .args(["--remote-url", &srv.url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", srv.log_tail());
    assert!(!stderr.contains("failed in the recognizer"), "{stderr}");

    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(rep["speech"]["engine"], "remote");
    assert_eq!(rep["speech"]["errors"], 0);
    let spans: Vec<(u64, u64)> = rep["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reason"] == "spoken_id")
        .map(|s| {
            let ms = |k: &str| (s[k].as_f64().unwrap() * 8.0) as u64;
            (ms("start_ms"), ms("end_ms"))
        })
        .collect();
    let cov = voiced_coverage(&voiced_frames(&pcm), &spans);
    eprintln!(
        "[remote_asr] callmask mask --remote-url: {} spoken_id spans, {:.0} % of the digits muted",
        spans.len(),
        cov * 100.0
    );
    assert!(cov >= 0.95, "{:.0} % of the digits muted", cov * 100.0);
    // The output really is silent there.
    let masked = wav_pcm(&std::fs::read(&output).unwrap());
    assert_eq!(masked.len(), pcm.len());
    let (s, e) = spans[0];
    assert!(masked[s as usize..e as usize].iter().all(|&x| x.abs() < 64));
}
