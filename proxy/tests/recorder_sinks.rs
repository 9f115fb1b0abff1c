//! Recorder sinks driven with synthetic tap events (no proxy): streamed stereo WAV + sidecar,
//! age encryption checked with the `age` CLI (Debian `age`, installed by scripts/setup.sh),
//! retention sweeper with its audit events, the RTP fork on 127.0.0.1, and write failures.

#![allow(clippy::disallowed_methods)] // the test sets file mtimes and waits on the wall clock

use std::io::Write as _;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use callmask::core::media::tap::TapEvent;
use callmask::core::proxy::{CallRef, Side};
use callmask::io::recorder::{retention, ManualClock, Recorders};
use callmask::metrics::Metrics;
use config::types::{AgeRecipient, HostPort, RetentionDays, RtpCodec};
use config::{Config, RecorderConfig, RtpRecorder, WavRecorder};
use dsp::mask::MaskReason;
use tokio::sync::mpsc;

mod common;
use common::{files, frame, tmpdir};

fn only_file(dir: &Path, suffix: &str) -> PathBuf {
    let names: Vec<String> = files(dir)
        .into_iter()
        .filter(|n| n.ends_with(suffix) && !n.starts_with('.'))
        .collect();
    assert_eq!(names.len(), 1, "{suffix} in {:?}", files(dir));
    dir.join(&names[0])
}

fn wav(dir: &Path, encrypt_to: Vec<AgeRecipient>, retention: Option<u16>) -> RecorderConfig {
    RecorderConfig::Wav(WavRecorder {
        dir: dir.to_path_buf(),
        encrypt_to,
        retention_days: retention
            .map(|d| RetentionDays::try_from(i64::from(d)).expect("retention days")),
        hash_numbers: true,
    })
}

fn config(recorders: Vec<RecorderConfig>) -> Config {
    Config {
        recorders,
        ..Config::default()
    }
}

/// A running recorder task fed by the test.
struct Driver {
    tx: mpsc::Sender<TapEvent>,
    task: tokio::task::JoinHandle<()>,
    clock: ManualClock,
    metrics: Arc<Metrics>,
}

impl Driver {
    fn start(cfg: &Config) -> Driver {
        let metrics = Arc::new(Metrics::new());
        let clock = ManualClock::new();
        let rec = Recorders::from_config(cfg, metrics.clone()).with_clock(clock.clone());
        assert!(!rec.is_empty());
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(rec.run(rx));
        Driver {
            tx,
            task,
            clock,
            metrics,
        }
    }

    /// Send and wait until the recorder has handled the event (current-thread runtime: once
    /// the event is taken off the queue, its handling finishes before the task yields).
    async fn send(&self, ev: TapEvent) {
        self.tx.send(ev).await.expect("recorder alive");
        while self.tx.capacity() < self.tx.max_capacity() {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
    }

    async fn stop(self) -> Arc<Metrics> {
        drop(self.tx);
        self.task.await.expect("recorder task");
        self.metrics
    }
}

/// Caller and agent test signals (distinct, never 0).
fn caller_sample(i: u64) -> i16 {
    (i % 500) as i16 + 1
}
fn agent_sample(i: u64) -> i16 {
    -((i % 700) as i16) - 1
}

/// One call: the caller talks from the call start for `caller_ms`, the agent's audio starts
/// `agent_delay_ms` later and lasts `agent_ms`; 20 ms frames, one clock tick per frame.
async fn drive_call(d: &Driver, call: u64, caller_ms: u64, agent_delay_ms: u64, agent_ms: u64) {
    d.send(TapEvent::Start {
        call: CallRef(call),
        caller_side: Side::Pbx,
        meta: Default::default(),
    })
    .await;
    let total = caller_ms.max(agent_delay_ms + agent_ms);
    for t in (0..total).step_by(20) {
        if t < caller_ms {
            let at = t * 8;
            let s: Vec<i16> = (at..at + 160).map(caller_sample).collect();
            d.send(frame(call, Side::Pbx, at, &s)).await;
        }
        if t >= agent_delay_ms && t < agent_delay_ms + agent_ms {
            let at = (t - agent_delay_ms) * 8;
            let s: Vec<i16> = (at..at + 160).map(agent_sample).collect();
            d.send(frame(call, Side::Agents, at, &s)).await;
        }
        d.clock.advance(Duration::from_millis(20));
    }
}

struct Wav {
    channels: u16,
    rate: u32,
    left: Vec<i16>,
    right: Vec<i16>,
}

fn parse_wav(b: &[u8]) -> Wav {
    assert_eq!(&b[0..4], b"RIFF");
    assert_eq!(&b[8..16], b"WAVEfmt ");
    let riff = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    assert_eq!(riff + 8, b.len(), "RIFF size patched");
    let data = u32::from_le_bytes([b[40], b[41], b[42], b[43]]) as usize;
    assert_eq!(&b[36..40], b"data");
    assert_eq!(data + 44, b.len(), "data size patched");
    let mut left = Vec::new();
    let mut right = Vec::new();
    for f in b[44..].chunks(4) {
        left.push(i16::from_le_bytes([f[0], f[1]]));
        right.push(i16::from_le_bytes([f[2], f[3]]));
    }
    Wav {
        channels: u16::from_le_bytes([b[22], b[23]]),
        rate: u32::from_le_bytes([b[24], b[25], b[26], b[27]]),
        left,
        right,
    }
}

#[tokio::test]
async fn wav_is_stereo_time_aligned_streamed_with_sidecar() {
    let dir = tmpdir("sinks", "wav");
    let d = Driver::start(&config(vec![wav(&dir, vec![], None)]));
    // Caller 12 s from the start, agent from 0.5 s for 12 s: 12.5 s in all.
    drive_call(&d, 7, 12_000, 500, 12_000).await;
    // Streamed, not kept in memory: most of the audio is already in the temporary file.
    let partial: Vec<String> = files(&dir);
    assert_eq!(partial.len(), 1, "{partial:?}");
    assert!(partial[0].starts_with('.') && partial[0].ends_with(".wav.partial"));
    let size = std::fs::metadata(dir.join(&partial[0]))
        .expect("partial")
        .len();
    assert!(size > 8 * 32_000, "only {size} bytes streamed so far");
    d.send(TapEvent::Span {
        call: CallRef(7),
        from: Side::Agents,
        start: dsp::MediaTime(800),
        end: dsp::MediaTime(1600),
        reason: MaskReason::DtmfInband,
    })
    .await;
    d.send(TapEvent::End {
        call: CallRef(7),
        length: None,
    })
    .await;
    d.send(TapEvent::End {
        call: CallRef(7),
        length: None,
    })
    .await; // the other direction's End
    let metrics = d.stop().await;

    let w = parse_wav(&std::fs::read(only_file(&dir, ".wav")).expect("wav"));
    assert_eq!((w.channels, w.rate), (2, 8000));
    assert_eq!(w.left.len(), 12_500 * 8);
    for i in 0..w.left.len() {
        let li = i as u64;
        let want_l = if li < 96_000 { caller_sample(li) } else { 0 };
        let want_r = if li >= 4_000 {
            agent_sample(li - 4_000)
        } else {
            0
        };
        assert_eq!((w.left[i], w.right[i]), (want_l, want_r), "sample {i}");
    }
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(only_file(&dir, ".json")).expect("json"))
            .expect("sidecar json");
    assert_eq!(side["call"], 7);
    assert_eq!(side["sample_rate"], 8000);
    assert_eq!(side["channels"], serde_json::json!(["customer", "agent"]));
    assert_eq!(side["direction"], "inbound");
    let spans = side["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["channel"], "agent");
    assert_eq!(spans[0]["start_ms"], 600.0);
    assert_eq!(spans[0]["end_ms"], 700.0);
    assert_eq!(spans[0]["reason"], MaskReason::DtmfInband.as_str());
    assert_eq!(files(&dir).len(), 2, "{:?}", files(&dir));
    let m = metrics.render();
    assert!(
        m.contains("callmask_recorder_sessions_active{sink=\"wav\"} 0"),
        "{m}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `hash_numbers` is per sink: a sink with `hash_numbers = false` gets the numbers in clear,
/// the default sink only the keyed hashes.
/// A configuration reload (SIGHUP) swaps the `wav` sinks for calls that start afterwards; the
/// call in progress finishes in the folder it started in.
#[tokio::test]
async fn a_reload_moves_new_calls_to_the_new_sinks_and_keeps_the_call_in_progress() {
    let (a, b) = (tmpdir("sinks", "reload-a"), tmpdir("sinks", "reload-b"));
    let metrics = Arc::new(Metrics::new());
    let clock = ManualClock::new();
    let (reload, reloads) = mpsc::unbounded_channel();
    let rec = Recorders::from_config(&config(vec![wav(&a, vec![], None)]), metrics.clone())
        .with_clock(clock.clone())
        .with_reloads(reloads);
    let (tx, rx) = mpsc::channel(64);
    let d = Driver {
        tx,
        task: tokio::spawn(rec.run(rx)),
        clock,
        metrics,
    };
    let start = |call: u64| TapEvent::Start {
        call: CallRef(call),
        caller_side: Side::Pbx,
        meta: Default::default(),
    };
    let end = |call: u64| TapEvent::End {
        call: CallRef(call),
        length: None,
    };
    let s: Vec<i16> = (0..160).map(caller_sample).collect();
    d.send(start(1)).await;
    d.send(frame(1, Side::Pbx, 0, &s)).await;
    reload
        .send(vec![wav(&b, vec![], None)])
        .expect("recorder alive");
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    d.send(frame(1, Side::Pbx, 160, &s)).await;
    d.clock.advance(Duration::from_millis(40));
    d.send(end(1)).await;
    d.send(start(2)).await;
    d.send(frame(2, Side::Pbx, 0, &s)).await;
    d.clock.advance(Duration::from_millis(20));
    d.send(end(2)).await;
    d.stop().await;
    let call_of = |dir: &Path| -> u64 {
        let side: serde_json::Value =
            serde_json::from_slice(&std::fs::read(only_file(dir, ".json")).expect("json"))
                .expect("sidecar json");
        side["call"].as_u64().expect("call number")
    };
    assert_eq!(call_of(&a), 1, "the call in progress stays in its folder");
    assert_eq!(
        call_of(&b),
        2,
        "a call after the reload goes to the new folder"
    );
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}

#[tokio::test]
async fn hash_numbers_is_honoured_per_sink() {
    let hashed_dir = tmpdir("sinks", "hashed");
    let clear_dir = tmpdir("sinks", "clear");
    let mut clear = wav(&clear_dir, vec![], None);
    if let RecorderConfig::Wav(w) = &mut clear {
        w.hash_numbers = false;
    }
    let d = Driver::start(&config(vec![wav(&hashed_dir, vec![], None), clear]));
    d.send(TapEvent::Start {
        call: CallRef(9),
        caller_side: Side::Pbx,
        meta: callmask::core::media::tap::CallMeta {
            sip_call_id: "cid-9@test".into(),
            from: "h:0123456789ab".into(),
            to: "h:ba9876543210".into(),
            codecs: vec!["PCMU".into()],
            tags: None,
            numbers_clear: callmask::redact::Redacted::new(("+15550100".into(), "2001".into())),
        },
    })
    .await;
    // The answer chose PCMA after the offer's PCMU (issue 12 item 9): the sidecar says PCMA.
    d.send(TapEvent::Codecs {
        call: CallRef(9),
        codecs: vec!["PCMA".into()],
    })
    .await;
    let s: Vec<i16> = (0..160).map(caller_sample).collect();
    d.send(frame(9, Side::Pbx, 0, &s)).await;
    d.clock.advance(Duration::from_millis(20));
    d.send(TapEvent::End {
        call: CallRef(9),
        length: None,
    })
    .await;
    d.send(TapEvent::End {
        call: CallRef(9),
        length: None,
    })
    .await;
    d.stop().await;
    let read = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(only_file(dir, ".json")).expect("json"))
            .expect("sidecar json")
    };
    let hashed = read(&hashed_dir);
    assert_eq!(
        (hashed["from"].as_str(), hashed["to"].as_str()),
        (Some("h:0123456789ab"), Some("h:ba9876543210"))
    );
    assert_eq!(hashed["sip_call_id"], "cid-9@test");
    assert_eq!(
        hashed["codecs"],
        serde_json::json!(["PCMA"]),
        "the codec in use"
    );
    let clear = read(&clear_dir);
    assert_eq!(
        (clear["from"].as_str(), clear["to"].as_str()),
        (Some("+15550100"), Some("2001"))
    );
    let _ = std::fs::remove_dir_all(hashed_dir);
    let _ = std::fs::remove_dir_all(clear_dir);
}

#[tokio::test]
async fn a_stalled_direction_is_filled_with_silence_and_the_call_goes_on() {
    let dir = tmpdir("sinks", "stall");
    let d = Driver::start(&config(vec![wav(&dir, vec![], None)]));
    // The agent stops after 1 s while the caller goes on for 10 s.
    drive_call(&d, 1, 10_000, 0, 1_000).await;
    d.send(TapEvent::End {
        call: CallRef(1),
        length: None,
    })
    .await;
    d.stop().await;
    let w = parse_wav(&std::fs::read(only_file(&dir, ".wav")).expect("wav"));
    assert_eq!(w.left.len(), 80_000);
    assert!((0..80_000).all(|i| w.left[i] == caller_sample(i as u64)));
    assert!((0..8_000).all(|i| w.right[i] == agent_sample(i as u64)));
    assert!(w.right[8_000..].iter().all(|&s| s == 0));
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 12: a 20 s gap the media side skipped ([`TapEvent::Skip`]) is 20 s of silence at
/// its place; the other channel is untouched, the WAV lasts as long as the call (its clock),
/// and the agent-originated call is labelled `outbound` with the PBX side still on the left.
#[tokio::test]
async fn a_skipped_gap_is_silence_at_its_place_and_the_wav_lasts_the_call() {
    let dir = tmpdir("sinks", "skip");
    let d = Driver::start(&config(vec![wav(&dir, vec![], None)]));
    d.send(TapEvent::Start {
        call: CallRef(3),
        caller_side: Side::Agents,
        meta: Default::default(),
    })
    .await;
    // PBX side: 2 s of audio (media time 0..16000), a gap of 20 s that the media side did
    // not push (announced as a skip at media time 16000), then 2 s more (media time
    // 16000..32000). Agent: 24 s continuous. One clock tick per 20 ms.
    d.send(TapEvent::Skip {
        call: CallRef(3),
        from: Side::Pbx,
        at: 16_000,
        samples: 160_000,
    })
    .await;
    for k in 0..1200u64 {
        let t = k * 160;
        let s: Vec<i16> = (t..t + 160).map(agent_sample).collect();
        d.send(frame(3, Side::Agents, t, &s)).await;
        let pbx_media = if k < 100 {
            Some(t)
        } else if k >= 1100 {
            Some(t - 160_000)
        } else {
            None
        };
        if let Some(mt) = pbx_media {
            let s: Vec<i16> = (t..t + 160).map(caller_sample).collect();
            d.send(frame(3, Side::Pbx, mt, &s)).await;
        }
        d.clock.advance(Duration::from_millis(20));
    }
    // The call goes on 1 s without media before it ends.
    d.clock.advance(Duration::from_millis(1000));
    d.send(TapEvent::End {
        call: CallRef(3),
        length: None,
    })
    .await;
    d.stop().await;
    let w = parse_wav(&std::fs::read(only_file(&dir, ".wav")).expect("wav"));
    assert_eq!(w.left.len(), 25 * 8000, "the WAV lasts the call");
    for i in 0..24 * 8000usize {
        let li = i as u64;
        let want_l = if !(16_000..176_000).contains(&li) {
            caller_sample(li)
        } else {
            0
        };
        assert_eq!(
            (w.left[i], w.right[i]),
            (want_l, agent_sample(li)),
            "sample {i}"
        );
    }
    assert!(w.left[24 * 8000..]
        .iter()
        .chain(&w.right[24 * 8000..])
        .all(|&s| s == 0));
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(only_file(&dir, ".json")).expect("json"))
            .expect("sidecar json");
    assert_eq!(side["direction"], "outbound");
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue 12: a call that never had media (407, 408, 487, 488) leaves no recording.
#[tokio::test]
async fn a_call_without_media_leaves_no_files() {
    let dir = tmpdir("sinks", "nomedia");
    let d = Driver::start(&config(vec![wav(&dir, vec![], None)]));
    d.send(TapEvent::Start {
        call: CallRef(4),
        caller_side: Side::Pbx,
        meta: Default::default(),
    })
    .await;
    d.clock.advance(Duration::from_millis(500));
    d.send(TapEvent::End {
        call: CallRef(4),
        length: None,
    })
    .await;
    d.stop().await;
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
    let _ = std::fs::remove_dir_all(dir);
}

fn have_age_cli() -> bool {
    Command::new("age").arg("--version").output().is_ok()
        && Command::new("age-keygen").arg("--help").output().is_ok()
}

/// Every file in `dir` is age ciphertext (or still empty): no plaintext on disk.
fn assert_no_plaintext(dir: &Path) {
    for n in files(dir) {
        let b = std::fs::read(dir.join(&n)).expect("read");
        assert!(
            b.is_empty() || b.starts_with(b"age-encryption.org/v1\n"),
            "{n} is not age ciphertext"
        );
    }
}

fn age_decrypt(key: &Path, file: &Path) -> Vec<u8> {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg(file)
        .output()
        .expect("run age");
    assert!(
        out.status.success(),
        "age -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn age_encrypted_recording_decrypts_with_the_cli_to_the_plain_recording() {
    assert!(
        have_age_cli(),
        "the `age` CLI is needed (Debian package `age`, see scripts/setup.sh)"
    );
    let keys = tmpdir("sinks", "keys");
    let key = keys.join("key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("age-keygen");
    assert!(out.status.success());
    let text = std::fs::read_to_string(&key).expect("key");
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key line")
        .trim()
        .to_owned();
    let recipient = AgeRecipient::try_from(public.as_str()).expect("recipient");

    let plain = tmpdir("sinks", "plain");
    let enc = tmpdir("sinks", "enc");
    // The same call into a plain and an encrypted sink at once.
    let d = Driver::start(&config(vec![
        wav(&plain, vec![], None),
        wav(&enc, vec![recipient], None),
    ]));
    drive_call(&d, 3, 8_000, 300, 7_000).await;
    assert_eq!(files(&enc).len(), 1, "{:?}", files(&enc));
    assert_no_plaintext(&enc);
    d.send(TapEvent::Span {
        call: CallRef(3),
        from: Side::Pbx,
        start: dsp::MediaTime(100),
        end: dsp::MediaTime(900),
        reason: MaskReason::Rfc4733,
    })
    .await;
    d.send(TapEvent::End {
        call: CallRef(3),
        length: None,
    })
    .await;
    let metrics = d.stop().await;

    assert_no_plaintext(&enc);
    let names = files(&enc);
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names
        .iter()
        .all(|n| n.ends_with(".wav.age") || n.ends_with(".json.age")));
    let wav_plain = std::fs::read(only_file(&plain, ".wav")).expect("plain wav");
    let wav_dec = age_decrypt(&key, &only_file(&enc, ".wav.age"));
    assert_eq!(wav_plain.len(), 44 + 8 * 32_000);
    assert!(
        wav_dec == wav_plain,
        "decrypted WAV differs from the plain one"
    );
    let json_plain = std::fs::read(only_file(&plain, ".json")).expect("plain json");
    let json_dec = age_decrypt(&key, &only_file(&enc, ".json.age"));
    assert_eq!(json_dec, json_plain);
    assert!(metrics
        .render()
        .contains("callmask_recorder_errors_total{sink=\"wav\"} 0"));
    for d in [keys, plain, enc] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn make_file(dir: &Path, name: &str, age_days: u64) {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).expect("create");
    f.write_all(b"x").expect("write");
    f.set_modified(SystemTime::now() - Duration::from_secs(age_days * 86_400 + 60))
        .expect("set mtime");
}

#[test]
fn retention_deletes_old_recordings_keeps_new_ones_and_audits() {
    let dir = tmpdir("sinks", "retention");
    make_file(&dir, "100-call1.wav", 10);
    make_file(&dir, "100-call1.json", 10);
    make_file(&dir, "200-call2.wav.age", 8);
    make_file(&dir, "200-call2.json.age", 8);
    make_file(&dir, "300-call3.wav", 6);
    make_file(&dir, "300-call3.json", 0);
    make_file(&dir, "notes.txt", 30); // not a recording
    let metrics = Metrics::new();
    let log = Captured::default();
    let sub = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let n = tracing::subscriber::with_default(sub, || {
        retention::sweep(&dir, 7, SystemTime::now(), &metrics)
    });
    assert_eq!(n, 4);
    assert_eq!(
        files(&dir),
        ["300-call3.json", "300-call3.wav", "notes.txt"]
    );
    assert!(metrics
        .render()
        .contains("callmask_recorder_retention_deleted_files_total 4"));
    let text = String::from_utf8(log.0.lock().expect("lock").clone()).expect("utf8");
    let audit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("callmask::audit"))
        .collect();
    assert_eq!(audit.len(), 4, "{text}");
    for name in [
        "100-call1.wav",
        "100-call1.json",
        "200-call2.wav.age",
        "200-call2.json.age",
    ] {
        assert!(
            audit.iter().any(|l| l.contains(name)
                && l.contains("retention_delete")
                && l.contains("age_hours=")),
            "{name}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_sweeper_runs_at_start() {
    let dir = tmpdir("sinks", "sweeper");
    make_file(&dir, "1-call1.wav", 3);
    make_file(&dir, "2-call2.wav", 0);
    let d = Driver::start(&config(vec![wav(&dir, vec![], Some(2))]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while files(&dir).len() != 1 {
        assert!(std::time::Instant::now() < deadline, "{:?}", files(&dir));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = d.stop().await;
    assert_eq!(files(&dir), ["2-call2.wav"]);
    assert!(m
        .render()
        .contains("callmask_recorder_retention_deleted_files_total 1"));
    let _ = std::fs::remove_dir_all(dir);
}

/// Two UDP sockets on 127.0.0.1 at ports P and P + 2.
fn port_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..100 {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let p = a.local_addr().expect("addr").port();
        if p > 65_000 {
            continue;
        }
        if let Ok(b) = UdpSocket::bind(("127.0.0.1", p + 2)) {
            return (a, b);
        }
    }
    panic!("no free port pair");
}

struct Pkt {
    marker_pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    pcm: Vec<i16>,
}

fn receive(sock: &UdpSocket) -> Vec<Pkt> {
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let mut v = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        assert_eq!(n, 12 + 160, "20 ms PCMU packets");
        assert_eq!(buf[0], 0x80, "RTP v2, no padding/extension/CSRC");
        v.push(Pkt {
            marker_pt: buf[1],
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            pcm: buf[12..n]
                .iter()
                .map(|&b| dsp::g711::ulaw_to_linear(b))
                .collect(),
        });
    }
    v
}

/// The leg's audio by RTP timestamp; checks one SSRC, PCMU, continuous seq and timestamps.
fn check_leg(pkts: &[Pkt]) -> Vec<i16> {
    assert!(!pkts.is_empty());
    let ssrc = pkts[0].ssrc;
    assert_eq!(pkts[0].marker_pt, 0x80, "first packet marked, PT 0");
    for w in pkts.windows(2) {
        assert_eq!(w[1].ssrc, ssrc);
        assert_eq!(w[1].marker_pt, 0, "PT 0, no marker");
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence continuous");
        assert_eq!(w[1].ts, w[0].ts.wrapping_add(160), "timestamps continuous");
    }
    pkts.iter().flat_map(|p| p.pcm.iter().copied()).collect()
}

fn close(got: i16, want: i16) -> bool {
    (i32::from(got) - i32::from(want)).abs() <= i32::from(want).abs() / 16 + 16
}

fn tone(i: u64, amp: f64) -> i16 {
    (amp * (i as f64 * 0.13).sin()) as i16
}

#[tokio::test]
async fn rtp_sink_sends_both_legs_continuous_and_decodable() {
    let (caller_rx, agent_rx) = port_pair();
    let port = caller_rx.local_addr().expect("addr").port();
    let d = Driver::start(&config(vec![RecorderConfig::Rtp(RtpRecorder {
        target: HostPort::try_from(format!("127.0.0.1:{port}").as_str()).expect("target"),
        codec: RtpCodec::Pcmu,
        srtp_key_file: None,
    })]));
    d.send(TapEvent::Start {
        call: CallRef(9),
        caller_side: Side::Agents, // the caller is on the agents' side this time
        meta: Default::default(),
    })
    .await;
    // Caller: 33 frames of 240 samples (30 ms), a muted stretch in the middle (silence).
    let caller = |i: u64| {
        if (3000..4000).contains(&i) {
            0
        } else {
            tone(i, 8000.0)
        }
    };
    for k in 0..33u64 {
        let s: Vec<i16> = (k * 240..k * 240 + 240).map(caller).collect();
        d.send(frame(9, Side::Agents, k * 240, &s)).await;
    }
    // Agent: 20 frames, a 200 ms gap (no frames), 20 frames.
    let agent = |i: u64| tone(i, -3000.0);
    for k in (0..20u64).chain(30..50) {
        let s: Vec<i16> = (k * 160..k * 160 + 160).map(agent).collect();
        d.send(frame(9, Side::Pbx, k * 160, &s)).await;
    }
    d.send(TapEvent::End {
        call: CallRef(9),
        length: None,
    })
    .await;
    let m = d.stop().await;

    // Channels by side (issue 12): the PBX side goes to `port`, the agents' side to
    // `port + 2`, whoever called; here the caller is the agents' side.
    let c = receive(&agent_rx);
    let a = receive(&caller_rx);
    assert_ne!(c[0].ssrc, a[0].ssrc, "each leg its own SSRC");
    let cp = check_leg(&c);
    assert_eq!(cp.len(), 50 * 160, "7920 samples padded to whole packets");
    for (i, &got) in cp.iter().enumerate().take(7920) {
        assert!(close(got, caller(i as u64)), "caller sample {i}: {got}");
    }
    assert!(
        cp[3000..4000].iter().all(|&s| s.abs() <= 8),
        "muted = silence"
    );
    let ap = check_leg(&a);
    assert_eq!(ap.len(), 50 * 160, "the gap is filled");
    for (i, &got) in ap.iter().enumerate() {
        let want = if (3200..4800).contains(&i) {
            0
        } else {
            agent(i as u64)
        };
        assert!(close(got, want), "agent sample {i}: {got} vs {want}");
    }
    let rendered = m.render();
    assert!(
        rendered.contains(&format!(
            "callmask_recorder_bytes_total{{sink=\"rtp\"}} {}",
            100 * 172
        )),
        "{rendered}"
    );
    assert!(rendered.contains("callmask_recorder_sessions_active{sink=\"rtp\"} 0"));
}

#[tokio::test]
async fn an_unwritable_dir_neither_panics_nor_leaves_a_partial_file() {
    let base = tmpdir("sinks", "unwritable");
    let blocker = base.join("blocker");
    std::fs::write(&blocker, b"a regular file").expect("blocker");
    // The recording dir would be below a regular file: cannot be created.
    let bad = blocker.join("rec");
    // A second dir that disappears in the middle of the call.
    let vanishing = base.join("vanishing");
    let d = Driver::start(&config(vec![
        wav(&bad, vec![], None),
        wav(&vanishing, vec![], None),
    ]));
    drive_call(&d, 5, 6_000, 0, 6_000).await;
    assert_eq!(files(&vanishing).len(), 1);
    std::fs::remove_dir_all(&vanishing).expect("remove");
    d.send(TapEvent::End {
        call: CallRef(5),
        length: None,
    })
    .await;
    let m = d.stop().await;
    assert_eq!(files(&base), ["blocker"], "nothing but the blocker");
    let rendered = m.render();
    let errors: u64 = rendered
        .lines()
        .find_map(|l| l.strip_prefix("callmask_recorder_errors_total{sink=\"wav\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("error counter");
    assert_eq!(errors, 2, "{rendered}");
    assert!(rendered.contains("callmask_recorder_disk_full 0"));
    let _ = std::fs::remove_dir_all(base);
}
