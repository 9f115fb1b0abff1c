//! `eval_dev MODE ARG CORPUS_DIR CALL...` — transcribe dev-corpus segments, one JSON line each.
//!
//! MODE `ids PAD_MS`: each labelled `spoken_id` span ± PAD_MS; `speech PAD_MS`: each labelled
//! `speech` span ± PAD_MS; `tile LEN_MS`: the whole call cut into consecutive LEN_MS windows.
//! Word times are ms in call time. Score with `python3 asr/examples/score_dev.py`.
#![allow(clippy::disallowed_methods)] // a measuring tool: it reads the clock, like main.rs
use std::path::Path;
use std::time::Instant;

use callmask_asr::util::{options_from_env, process_cpu_seconds, read_8k, rss_mib};
use callmask_asr::WhisperEngine;
use serde_json::{json, Value};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        anyhow::bail!("usage: eval_dev ids|speech|tile ARG_MS CORPUS_DIR CALL...");
    }
    let (mode, arg): (&str, u64) = (&args[0], args[1].parse()?);
    let dir = Path::new(&args[2]);
    let model = std::env::var("CALLMASK_ASR_MODEL_DIR")?;
    let (c0, w0) = (process_cpu_seconds(), Instant::now());
    let mut engine = WhisperEngine::load_with(&model, options_from_env())?;
    eprintln!(
        "load {:.2} s wall {:.2} CPU-s, RSS {:?}",
        w0.elapsed().as_secs_f64(),
        process_cpu_seconds() - c0,
        rss_mib()
    );
    let (mut total_audio, mut total_cpu, mut total_wall) = (0.0f64, 0.0f64, 0.0f64);
    for call in &args[3..] {
        let labels: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{call}.json")))?)?;
        let pcm = read_8k(&dir.join(format!("{call}.ulaw"))).map_err(anyhow::Error::msg)?;
        let len_ms = pcm.len() as u64 / 8;
        let mut segs: Vec<(u64, u64, Value)> = Vec::new();
        match mode {
            "ids" | "speech" => {
                let key = if mode == "ids" { "spoken_id" } else { "speech" };
                for l in labels[key].as_array().into_iter().flatten() {
                    let (s, e) = (
                        l["start_ms"].as_u64().unwrap_or(0),
                        l["end_ms"].as_u64().unwrap_or(0),
                    );
                    segs.push((s.saturating_sub(arg), (e + arg).min(len_ms), l.clone()));
                }
            }
            "tile" => {
                let mut s = 0;
                while s < len_ms {
                    segs.push((s, (s + arg).min(len_ms), Value::Null));
                    s += arg;
                }
            }
            m => anyhow::bail!("unknown mode {m}"),
        }
        for (s, e, label) in segs {
            let seg = &pcm[(s * 8) as usize..(e * 8) as usize];
            let (c1, w1) = (process_cpu_seconds(), Instant::now());
            let words = engine.transcribe(seg)?;
            let (cpu, wall) = (process_cpu_seconds() - c1, w1.elapsed().as_secs_f64());
            let audio = (e - s) as f64 / 1000.0;
            total_audio += audio;
            total_cpu += cpu;
            total_wall += wall;
            let t = &engine.last;
            let words: Vec<Value> = words
                .iter()
                .map(|w| json!({"text": w.text, "start_ms": w.start_ms + s, "end_ms": w.end_ms + s, "p": w.confidence}))
                .collect();
            println!(
                "{}",
                json!({"call": call, "mode": mode, "arg": arg, "seg_start_ms": s, "seg_end_ms": e, "label": label,
                       "text": t.text, "words": words, "cpu_s": cpu, "wall_s": wall,
                       "no_speech_prob": t.no_speech_prob, "avg_logprob": t.avg_logprob,
                       "repeated_fraction": t.repeated_fraction, "looped": t.looped, "truncated": t.truncated,
                       "encode_ms": t.encode_ms, "generate_ms": t.generate_ms, "align_ms": t.align_ms, "mel_ms": t.mel_ms})
            );
        }
    }
    let (rss, hwm) = rss_mib();
    eprintln!(
        "{mode} {arg}: {total_audio:.1} s audio, {total_cpu:.2} CPU-s ({:.3} CPU-s/audio-s), {total_wall:.2} s wall; RSS {rss:.0} MiB, peak {hwm:.0} MiB",
        total_cpu / total_audio.max(1e-9)
    );
    Ok(())
}
