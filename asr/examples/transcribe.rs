//! `transcribe FILE.wav|.ulaw|.raw [start_ms end_ms]` — words with times, CPU time, memory.
//! Model dir: $CALLMASK_ASR_MODEL_DIR (scripts/setup_asr.sh). Env: ASR_THREADS (1), ASR_COMPUTE
//! (int8), ASR_BEAM (1).
#![allow(clippy::disallowed_methods)] // a measuring tool: it reads the clock, like main.rs
use std::path::PathBuf;
use std::time::Instant;

use callmask_asr::util::{options_from_env, process_cpu_seconds, read_8k, rss_mib};
use callmask_asr::WhisperEngine;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.first() else {
        anyhow::bail!("usage: transcribe FILE.wav|.ulaw|.raw [start_ms end_ms]");
    };
    let model = std::env::var("CALLMASK_ASR_MODEL_DIR").map_err(|_| {
        anyhow::anyhow!("set CALLMASK_ASR_MODEL_DIR (source /var/tmp/callmask-asr/env.sh)")
    })?;
    let pcm = read_8k(&PathBuf::from(file)).map_err(anyhow::Error::msg)?;
    let (s, e) = match (args.get(1), args.get(2)) {
        (Some(s), Some(e)) => (s.parse::<usize>()? * 8, e.parse::<usize>()? * 8),
        _ => (0, pcm.len()),
    };
    let seg = &pcm[s.min(pcm.len())..e.min(pcm.len())];
    if seg.len() > 30 * 8000 {
        anyhow::bail!("segment longer than 30 s; give start_ms end_ms");
    }
    let (rss0, _) = rss_mib();
    let (c0, w0) = (process_cpu_seconds(), Instant::now());
    let mut engine = WhisperEngine::load_with(&model, options_from_env())?;
    let (c1, w1) = (process_cpu_seconds(), Instant::now());
    let (rss1, _) = rss_mib();
    let words = engine.transcribe(seg)?;
    let (c2, w2) = (process_cpu_seconds(), Instant::now());
    let (rss2, hwm) = rss_mib();
    let offset_ms = s / 8;
    for w in &words {
        println!(
            "{:>7} {:>7}  {:<20} p={:.2}",
            w.start_ms as usize + offset_ms,
            w.end_ms as usize + offset_ms,
            w.text,
            w.confidence
        );
    }
    let audio_s = seg.len() as f64 / 8000.0;
    let t = &engine.last;
    eprintln!("text: {:?} ({} tokens)", t.text, t.tokens);
    eprintln!(
        "load: {:.2} s wall, {:.2} CPU-s, RSS {:.0} → {:.0} MiB | transcribe {:.2} s audio: {:.2} s wall, {:.2} CPU-s ({:.3} CPU-s per audio-s); mel {:.0} ms, encode {:.0} ms, generate {:.0} ms, align {:.0} ms | RSS {:.0} MiB, peak {:.0} MiB",
        (w1 - w0).as_secs_f64(), c1 - c0, rss0, rss1, audio_s, (w2 - w1).as_secs_f64(), c2 - c1, (c2 - c1) / audio_s,
        t.mel_ms, t.encode_ms, t.generate_ms, t.align_ms, rss2, hwm
    );
    Ok(())
}
