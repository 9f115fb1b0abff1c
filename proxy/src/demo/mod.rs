//! `callmask demo`: the first-run experience. One real call through the real proxy, on
//! 127.0.0.1, with no external tools:
//!
//! ```text
//! callmask demo [--dir DIR] [--keep-running]
//! ```
//!
//! - Starts the proxy in-process (trunk mode, ephemeral SIP/HTTP ports, a free media block in
//!   41000-59999, one `wav` recorder writing to DIR, default `/tmp/callmask-demo-<unix time>`)
//!   and prints the metrics URL. With the embedded speech engine and its model (the default
//!   build after `scripts/setup.sh`): DTMF and spoken-identifier masking, a 6 s look-ahead
//!   and two recognizer workers, started once the model is loaded; otherwise DTMF masking
//!   with a 120 ms look-ahead, and it says why.
//! - A simulated PBX (UAC) calls a simulated agent (UAS) through it over real UDP sockets:
//!   INVITE with SDP (PCMU + telephone-event/8000), 100/180/200, ACK, 20 ms RTP both ways in
//!   real time, BYE. The caller plays a ~24 s excerpt of the eval corpus (`call_014`, found
//!   as `shared/eval/data/dev` above the current directory or the binary) with in-band DTMF,
//!   its labelled RFC 4733 packets (PT 101) and a spoken card number; without the corpus,
//!   a synthetic script: speech-like bursts, 4 in-band keys (Q.23, -10 dBm0, 80 ms on/off),
//!   3 RFC 4733 events and a 6.4 s clip of a caller reading a made-up card number (embedded,
//!   synthesised with espeak-ng, not from the eval corpus; calls of 12 s or more). The agent
//!   answers with a quieter synthetic voice.
//! - At the end it prints the folder with the sanitized stereo WAV (caller left, agent right)
//!   and its JSON span report (also copied as `recording.wav` / `spans.json`), a summary from
//!   the sidecar and the metrics ("4 DTMF spans masked (in-band), 3 RFC 4733 events masked,
//!   1 spoken identifier masked …"; an identifier counts as masked only when `spoken_id` spans
//!   cover it: audio muted because a verdict came late is reported apart, as fail-closed
//!   seconds), a check of its own recording (callmask's DTMF detector run over the file: the
//!   keys left decodable, which must be 0), and how to listen. Never a digit heard on the call.
//! - Exit 0; 70 if the call fails or does not finish within ~60 s, 71 if the proxy cannot
//!   bind, 73 if DIR cannot be created. `--keep-running` leaves the proxy (and its metrics
//!   page) up after the call until Ctrl-C. Hidden test flags: `--synthetic` (ignore the
//!   corpus), `--duration-s N` (call length; 4 s minimum for the synthetic script) and
//!   `--no-speech` (DTMF masking only).
#![allow(clippy::disallowed_methods)] // edge program like main.rs: reads the clock, binds sockets

pub(crate) mod audio;
mod ua;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Arguments of `callmask demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Folder for the sanitized recording and its span report
    /// (default: a new /tmp/callmask-demo-<unix time>).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the proxy and its metrics page running after the call, until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// Play the synthetic caller even when the eval corpus is available.
    #[arg(long, hide = true)]
    pub synthetic: bool,
    /// Length of the call's audio in seconds (default 20).
    #[arg(long, hide = true, value_name = "S")]
    pub duration_s: Option<u64>,
    /// DTMF masking only (a 120 ms look-ahead), even when the speech engine is available.
    #[arg(long, hide = true)]
    pub no_speech: bool,
}

/// Why the demo failed: a one-line message and an exit status.
#[derive(Debug)]
struct DemoError {
    code: u8,
    msg: String,
}

fn fail(code: u8, msg: impl Into<String>) -> DemoError {
    DemoError {
        code,
        msg: msg.into(),
    }
}

/// Run `callmask demo` and map the outcome to an exit status.
pub fn main(args: DemoArgs) -> ExitCode {
    let _ = crate::logging::init(crate::logging::LogFormat::Human, "warn");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callmask demo: cannot start the runtime: {e}");
            return ExitCode::from(71);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callmask demo: {}", e.msg);
            ExitCode::from(e.code)
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A free, even-based block of 8 UDP ports on 127.0.0.1 in 41000-59999 (bound, checked and
/// released; the proxy binds them again per call).
fn free_media_block() -> Option<(u16, u16)> {
    let mut seed = u64::from(std::process::id()) ^ unix_secs().rotate_left(17);
    for _ in 0..64 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let base = 41_000 + ((seed >> 33) % 9_496) as u16 * 2;
        let held: Vec<StdUdpSocket> = (base..base + 8)
            .filter_map(|p| StdUdpSocket::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == 8 {
            return Some((base, base + 7));
        }
    }
    None
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Files in `dir` ending in `.json` (not `spans.json`).
fn sidecars(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "json")
                        && p.file_name().is_some_and(|n| n != "spans.json")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn scrape(http: SocketAddr) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(http).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

/// The embedded engine's model folder when this build has the engine and the model is there,
/// else why spoken-identifier masking is off in the demo.
fn speech_engine() -> Result<PathBuf, String> {
    if !cfg!(feature = "whisper") {
        return Err("this build has no speech engine (built without the `whisper` feature)".into());
    }
    let dir = PathBuf::from(config::model::DEFAULT_MODEL_DIR);
    if dir.join("model.bin").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "no speech model in {} (run ./scripts/setup.sh)",
            dir.display()
        ))
    }
}

async fn ready(http: SocketAddr) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(http).await else {
        return false;
    };
    if s.write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200")
}

/// Sum of the samples of metric `name` whose labels contain `label` (e.g. `source="inband"`).
fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/callmask-demo-{}", unix_secs())));
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(73, format!("cannot create {}: {e}", dir.display())))?;
    let dir = dir.canonicalize().unwrap_or(dir);
    let before = sidecars(&dir);

    let duration_ms = args.duration_s.map(|s| s.clamp(1, 120) * 1000);
    let script = match (args.synthetic, audio::find_corpus()) {
        (false, Some((cdir, name, start, end))) => {
            let end = duration_ms.map_or(end, |d| end.min(start + d));
            audio::corpus_excerpt(&cdir, name, start, end).map_err(|e| fail(66, e))?
        }
        _ => audio::synthetic(duration_ms.unwrap_or(20_000)),
    };
    let caller_packets = script.schedule();
    let agent_packets = audio::agent_schedule(script.duration_ms());

    let bind_err =
        |e: std::io::Error| fail(71, format!("cannot bind a UDP socket on 127.0.0.1: {e}"));
    let caller_phone = ua::Phone::bind().await.map_err(bind_err)?;
    let agent_phone = ua::Phone::bind().await.map_err(bind_err)?;
    let (m0, m1) = free_media_block().ok_or_else(|| {
        fail(
            71,
            "no free block of media ports in 41000-59999 on 127.0.0.1",
        )
    })?;
    let recorder = format!(
        "recorder=[{{kind=\"wav\",dir={}}}]",
        toml_str(&dir.display().to_string())
    );
    let speech = if args.no_speech {
        Err("--no-speech".to_string())
    } else {
        speech_engine()
    };
    // Speech: 6 s of look-ahead buys longer segments (Whisper costs about the same per segment
    // whatever its length) and time for a busy machine; two workers for the two legs.
    let lookahead_ms = if speech.is_ok() { 6000 } else { 120 };
    let overrides = vec![
        "pbx.listen=\"127.0.0.1:0\"".to_string(),
        "agents.listen=\"127.0.0.1:0\"".to_string(),
        format!("pbx.peer=\"{}\"", caller_phone.sip_addr()),
        format!("agents.peer=\"{}\"", agent_phone.sip_addr()),
        "http.listen=\"127.0.0.1:0\"".to_string(),
        format!("media.ports=\"{m0}-{m1}\""),
        "masking.dtmf=true".to_string(),
        format!("masking.speech={}", speech.is_ok()),
        format!("masking.lookahead_ms={lookahead_ms}"),
        "speech.workers=2".to_string(),
        "log.level=\"warn\"".to_string(),
        recorder,
    ];
    let cfg = config::load_with_overrides(None, &overrides)
        .map_err(|e| fail(70, format!("embedded configuration rejected: {e}")))?;

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let proxy = tokio::spawn(crate::io::run::run(cfg, shutdown_rx, move |b| {
        let _ = bound_tx.send(b);
    }));
    let bound = match bound_rx.await {
        Ok(b) => b,
        Err(_) => {
            let msg = match proxy.await {
                Ok(Err(e)) => e.to_string(),
                _ => "the proxy stopped before it was listening".into(),
            };
            return Err(fail(71, msg));
        }
    };
    let metrics_url = format!("http://{}/metrics", bound.http);
    println!("callmask demo: one call through the proxy on 127.0.0.1");
    println!(
        "  proxy    PBX side {}, agents side {}, media ports {m0}-{m1}",
        bound.pbx_sip, bound.agents_sip
    );
    println!("  metrics  {metrics_url}   (try: curl -s {metrics_url} | grep -E 'dtmf|masked')");
    println!("  caller   {}", script.source);
    match &speech {
        Ok(model) => println!(
            "  speech   Whisper tiny.en ({}), recorder look-ahead {lookahead_ms} ms",
            model.display()
        ),
        Err(why) => println!("  speech   spoken-identifier masking off: {why}"),
    }
    println!(
        "  call     PBX {} -> callmask -> agent {}: INVITE, 100/180/200, ACK, {:.0} s of RTP both ways, BYE ...",
        caller_phone.sip_addr(),
        agent_phone.sip_addr(),
        script.duration_ms() as f64 / 1000.0
    );

    if speech.is_ok() {
        // Start the call once the model is loaded, or its first words would be muted whole.
        let until = Instant::now() + Duration::from_secs(30);
        while !ready(bound.http).await && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let result = call_and_report(
        &dir,
        &before,
        &script,
        bound,
        caller_phone,
        agent_phone,
        caller_packets,
        agent_packets,
    )
    .await;

    if result.is_ok() && args.keep_running {
        println!();
        println!("The proxy keeps running (metrics: {metrics_url}); press Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), proxy).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn call_and_report(
    dir: &Path,
    before: &[PathBuf],
    script: &audio::CallerScript,
    bound: crate::io::run::Bound,
    caller_phone: ua::Phone,
    agent_phone: ua::Phone,
    caller_packets: Vec<audio::Packet>,
    agent_packets: Vec<audio::Packet>,
) -> Result<(), DemoError> {
    let deadline = Instant::now() + Duration::from_millis(script.duration_ms() + 40_000);
    let agent_uri = format!("sip:agent@{}", agent_phone.sip_addr());
    let agent = tokio::spawn(ua::agent(agent_phone, agent_packets, deadline));
    let caller = ua::caller(
        caller_phone,
        bound.pbx_sip,
        agent_uri,
        caller_packets,
        deadline,
    )
    .await;
    let agent = match agent.await {
        Ok(r) => r,
        Err(e) => Err(format!("the agent task failed: {e}")),
    };
    let caller = caller.map_err(|e| fail(70, format!("call failed: {e}")))?;
    let agent = agent.map_err(|e| fail(70, format!("call failed: {e}")))?;
    println!(
        "  done     call ended after {:.1} s (caller sent {} packets, agent heard {} audio + {} RFC 4733 packets live)",
        caller.talk_time.as_secs_f64(),
        caller.media.sent,
        agent.received_audio,
        agent.received_events
    );

    // The recorder writes the WAV and then its sidecar when the relay for the call ends.
    let wait_until = Instant::now() + Duration::from_secs(15);
    let sidecar = loop {
        if let Some(p) = sidecars(dir).into_iter().find(|p| !before.contains(p)) {
            break p;
        }
        if Instant::now() >= wait_until {
            return Err(fail(
                70,
                format!("no recording appeared in {} within 15 s", dir.display()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wav = sidecar.with_extension("wav");
    let metrics = scrape(bound.http).await.unwrap_or_default();

    let json: serde_json::Value = std::fs::read(&sidecar)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| fail(70, format!("cannot read {}", sidecar.display())))?;
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for s in json
        .get("spans")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let r = s.get("reason").and_then(|r| r.as_str()).unwrap_or("other");
        *by_reason.entry(r.to_string()).or_default() += 1;
    }
    let rec = crate::audio::read(&wav)
        .map_err(|e| fail(70, format!("cannot read {}: {e}", wav.display())))?;
    let rec_secs = rec.frames() as f64 / f64::from(rec.format.sample_rate);

    let recording = dir.join("recording.wav");
    let spans = dir.join("spans.json");
    std::fs::copy(&wav, &recording)
        .and_then(|_| std::fs::copy(&sidecar, &spans))
        .map_err(|e| {
            fail(
                73,
                format!("cannot copy the recording in {}: {e}", dir.display()),
            )
        })?;

    let n = |k: &str| by_reason.get(k).copied().unwrap_or(0);
    println!();
    println!("Sanitized recording in {}", dir.display());
    println!(
        "  recording.wav   stereo 8 kHz 16-bit, {rec_secs:.1} s, caller left, agent right ({})",
        file_name(&wav)
    );
    println!(
        "  spans.json      masked spans: times and reasons, never digits ({})",
        file_name(&sidecar)
    );
    println!();
    let spoken = spoken_identifiers_masked(&json, script);
    let decodable = decodable_keys(&rec.channels[0]);
    println!(
        "Summary: {} masked (in-band), {} masked, {} masked ({}, {})",
        plural(n("dtmf_inband"), "DTMF span", "DTMF spans"),
        plural(n("rfc4733"), "RFC 4733 event", "RFC 4733 events"),
        plural(spoken, "spoken identifier", "spoken identifiers"),
        plural(n("spoken_id"), "spoken_id span", "spoken_id spans"),
        plural(n("fail_closed"), "fail_closed span", "fail_closed spans"),
    );
    println!(
        "  the caller's script holds {} in-band DTMF tones, {} RFC 4733 events, {} spoken identifier(s)",
        script.expected_inband, script.expected_events, script.expected_spoken
    );
    if !metrics.is_empty() {
        println!(
            "  metrics: DTMF detected {} in-band + {} RFC 4733; {:.2} s masked; {} RTP packets relayed; {} call(s) completed",
            metric(&metrics, "callmask_dtmf_detected_total", "source=\"inband\""),
            metric(&metrics, "callmask_dtmf_detected_total", "source=\"rfc4733\""),
            metric(&metrics, "callmask_masked_seconds_total", ""),
            metric(&metrics, "callmask_rtp_packets_total", "direction=\"inbound\""),
            metric(&metrics, "callmask_calls_total", "outcome=\"completed\""),
        );
        let dropped = metric(&metrics, "callmask_recorder_queue_dropped_frames_total", "");
        let failed_closed = metric(&metrics, "callmask_fail_closed_muted_seconds_total", "");
        if dropped > 0.0 || failed_closed > 0.0 {
            println!(
                "  note: {dropped} recorder frames dropped, {failed_closed:.2} s muted fail-closed"
            );
        }
    }
    println!(
        "  check: {} decodable in the recording's caller channel (callmask's DTMF detector run over the file)",
        plural(decodable, "DTMF key", "DTMF keys")
    );
    println!("  the agent heard the call unchanged; only the recorder's copy is masked");
    println!();
    println!("Listen: aplay {}", recording.display());
    println!("    or: play {}   (sox)", recording.display());
    if decodable > 0 {
        return Err(fail(
            70,
            "DTMF keys are still decodable in the sanitized recording",
        ));
    }
    Ok(())
}

/// Keys a DTMF receiver still finds in `pcm` (8 kHz): callmask's own detector, at its
/// defaults, over the recorded file.
fn decodable_keys(pcm: &[i16]) -> usize {
    use dsp::dtmf::{DtmfConfig, DtmfDetector, ToneEvent};
    let mut det = DtmfDetector::new(DtmfConfig::default());
    let mut keys = 0;
    for block in pcm.chunks(160) {
        det.process(block);
        while let Some(ev) = det.poll_event() {
            keys += usize::from(matches!(ev, ToneEvent::Started { .. }));
        }
    }
    keys
}

/// The script's spoken identifiers that the caller channel's `spoken_id` spans mute (≥ 90 %
/// covered). Audio muted because a verdict came too late (`fail_closed`) does not count: the
/// summary reports those seconds apart. Span times are
/// on the recording's clock: the recorder places the caller's audio at its first frame's
/// arrival less the look-ahead, so about where the call's media started; the best offset in a
/// 5 s band (a busy machine delays frames) is used.
fn spoken_identifiers_masked(json: &serde_json::Value, script: &audio::CallerScript) -> usize {
    let spans: Vec<(f64, f64)> = json
        .get("spans")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter(|s| s.get("reason").and_then(|r| r.as_str()) == Some("spoken_id"))
        .filter(|s| s.get("channel").and_then(|c| c.as_str()) != Some("agent"))
        .filter_map(|s| Some((s.get("start_ms")?.as_f64()?, s.get("end_ms")?.as_f64()?)))
        .collect();
    let covered_with = |off: f64| {
        script
            .spoken_at
            .iter()
            .filter(|&&(a, b)| {
                let (a, b) = (a as f64 + off, b as f64 + off);
                // Spans of different reasons may overlap: measure the union on a 10 ms grid.
                let steps = ((b - a) / 10.0).ceil().max(1.0) as usize;
                let hit = (0..steps)
                    .filter(|k| {
                        let t = a + *k as f64 * 10.0 + 5.0;
                        spans.iter().any(|&(s, e)| s <= t && t < e)
                    })
                    .count();
                hit as f64 >= 0.9 * steps as f64
            })
            .count()
    };
    (0..=250)
        .map(|k| covered_with(f64::from(k) * 20.0))
        .max()
        .unwrap_or(0)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recording_check_finds_the_scripts_keys_before_masking() {
        // The check must be able to fail: the unmasked script holds 4 in-band keys.
        let script = audio::synthetic(20_000);
        let pcm: Vec<i16> = script
            .ulaw
            .iter()
            .map(|&b| dsp::g711::ulaw_to_linear(b))
            .collect();
        assert_eq!(decodable_keys(&pcm), 4);
        assert_eq!(decodable_keys(&vec![0i16; 16_000]), 0);
    }
}
