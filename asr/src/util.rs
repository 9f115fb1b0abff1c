//! Helpers for the examples: reading corpus audio, process CPU time and memory.

use std::path::Path;

use crate::audio::{downsample2, ulaw_decode, ulaw_encode};

/// Read 8 kHz mono audio: `.ulaw` (raw G.711 µ-law), `.wav` (16-bit PCM 8 kHz, or 16 kHz which is
/// sent through a simulated phone line), `.raw` (16 kHz s16le, e.g. pocketsphinx test data, sent
/// through the phone line: 16→8 kHz then µ-law encode/decode).
pub fn read_8k(path: &Path) -> Result<Vec<i16>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let s16 = |b: &[u8]| -> Vec<i16> {
        b.chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    };
    let phone = |pcm16k: &[i16]| -> Vec<i16> {
        downsample2(pcm16k)
            .into_iter()
            .map(|s| ulaw_decode(ulaw_encode(s)))
            .collect()
    };
    match ext {
        "ulaw" | "mulaw" | "pcmu" => Ok(bytes.iter().map(|&b| ulaw_decode(b)).collect()),
        "raw" => Ok(phone(&s16(&bytes))),
        "wav" => {
            if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
                return Err("not a RIFF/WAVE file".into());
            }
            let (mut pos, mut rate, mut bits, mut channels) = (12usize, 0u32, 0u16, 0u16);
            while pos + 8 <= bytes.len() {
                let id = &bytes[pos..pos + 4];
                let len = u32::from_le_bytes([
                    bytes[pos + 4],
                    bytes[pos + 5],
                    bytes[pos + 6],
                    bytes[pos + 7],
                ]) as usize;
                let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
                if id == b"fmt " && body.len() >= 16 {
                    channels = u16::from_le_bytes([body[2], body[3]]);
                    rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                    bits = u16::from_le_bytes([body[14], body[15]]);
                } else if id == b"data" {
                    if bits != 16 || channels != 1 {
                        return Err(format!(
                            "want mono 16-bit WAV, got {channels} ch {bits} bit"
                        ));
                    }
                    let pcm = s16(body);
                    return match rate {
                        8000 => Ok(pcm),
                        16000 => Ok(phone(&pcm)),
                        r => Err(format!("unsupported WAV rate {r}")),
                    };
                }
                pos += 8 + len + (len & 1);
            }
            Err("no data chunk".into())
        }
        other => Err(format!("unknown extension {other:?}")),
    }
}

/// User+system CPU seconds of this process so far (all threads).
pub fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the comm: state is index 0, utime is field 14 overall → index 11.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// (VmRSS, VmHWM) in MiB.
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// Options from the environment, for this crate's examples (measurements) only: ASR_THREADS,
/// ASR_COMPUTE, ASR_BEAM, ASR_TOKENS_PER_S, … (asr/README.md). The `callmask` binary never
/// calls this: no environment variable changes the product's engine (issue 13).
#[cfg(feature = "whisper")]
pub fn options_from_env() -> crate::EngineOptions {
    let mut o = crate::EngineOptions::default();
    let var = |k: &str| std::env::var(k).ok();
    if let Some(v) = var("ASR_THREADS").and_then(|v| v.parse().ok()) {
        o.threads = v;
    }
    if let Some(v) = var("ASR_COMPUTE") {
        o.compute_type = v;
    }
    if let Some(v) = var("ASR_BEAM").and_then(|v| v.parse().ok()) {
        o.beam_size = v;
    }
    if let Some(v) = var("ASR_TOKENS_PER_S").and_then(|v| v.parse().ok()) {
        o.max_tokens_per_second = v;
    }
    if let Some(v) = var("ASR_PROMPT") {
        o.prompt = Some(v);
    }
    if let Some(v) = var("ASR_WINDOW").and_then(|v| v.parse().ok()) {
        o.window_frames = v;
    }
    if let Some(v) = var("ASR_TAIL").and_then(|v| v.parse().ok()) {
        o.tail_frames = v;
    }
    if let Some(v) = var("ASR_NO_REPEAT").and_then(|v| v.parse().ok()) {
        o.no_repeat_ngram = v;
    }
    if let Some(v) = var("ASR_TIMESTAMPS") {
        o.timestamps = Some(v == "1");
    }
    if var("ASR_DROP_LOOPED").is_some() {
        o.drop_looped = true;
    }
    if var("ASR_NO_CLAMP").is_some() {
        o.clamp_first_word = false;
    }
    o
}
