//! Run the in-band DTMF receiver over the evaluation corpus and write masked audio.
//!
//! ```text
//! cargo run -p callmask-dsp --example dtmf_corpus -- SET_DIR OUT_DIR [LOOKAHEAD_MS]
//! python3 /work/shared/eval/score.py --set-dir SET_DIR --masked-dir OUT_DIR
//! ```
//!
//! For every `call_NNN.ulaw` in `SET_DIR` the receiver is fed 160-sample chunks and the mask
//! pipeline's rule is simulated exactly, with look-ahead `L` (default 80 ms): output sample `n`
//! leaves once the receiver has consumed `n + L` samples, and it is muted iff
//! (a) a tone reported by then covers it, widened by 5 ms on each side (`[onset − 5 ms,
//! end + 5 ms)`, an open tone extending to infinity), or (b) `pending_since() ≤ n` at that
//! moment (fail closed). Output is aligned to input (no delay), 16-bit mono 8 kHz WAV.
//! Per-call counters go to stdout; no digits are printed (PHI rule).
//!
//! `DTMF_BENCH=1` times the receiver alone (CPU time per 20 ms frame); `DTMF_TRACE` and
//! `DTMF_DUMP` explain verdicts (see [`trace`] and `main`).

// A measurement tool, not the product core: it reads the clock to time the receiver.
#![allow(clippy::disallowed_methods)]

use std::error::Error;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dsp::dtmf::{DtmfConfig, DtmfDetector, ToneEvent};

const CHUNK: usize = 160;
const GUARD: u64 = 40; // 5 ms at 8 kHz

/// G.711 µ-law decode (the eval kit's `common.py` formula).
fn ulaw_decode(b: u8) -> i16 {
    let u = !b;
    let sign = u & 0x80;
    let exp = (u >> 4) & 0x07;
    let mant = i32::from(u & 0x0f);
    let mag = (((mant << 3) + 0x84) << exp) - 0x84;
    (if sign != 0 { -mag } else { mag }) as i16
}

fn write_wav(path: &Path, x: &[i16]) -> std::io::Result<()> {
    let data_len = (x.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + x.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in x {
        out.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, out)
}

/// A reported tone: `[start, end)` to mute, `end = u64::MAX` while open.
struct Span {
    start: u64,
    end: u64,
}

#[derive(Default)]
struct Stats {
    tones: u64,
    muted: u64,
    muted_pending_only: u64,
    max_pending_ms: u64,
    /// Samples consumed while a candidate was pending (per chunk).
    pending_samples: u64,
}

fn mask_call(input: &[i16], lookahead: u64, dump: &mut Option<fs::File>) -> (Vec<i16>, Stats) {
    let mut det = DtmfDetector::new(DtmfConfig::default());
    let mut out = input.to_vec();
    let mut spans: Vec<Span> = Vec::new();
    let mut st = Stats::default();
    let mut next_out = 0u64; // next sample to leave
    let total = input.len() as u64;
    let mut pending_start: Option<u64> = None;
    let mut consumed = 0u64;
    let mut emit =
        |upto: u64, spans: &[Span], pending: Option<u64>, st: &mut Stats, next: &mut u64| {
            while *next < upto.min(total) {
                let n = *next;
                let by_span = spans.iter().any(|s| n >= s.start && n < s.end);
                let by_pending = pending.is_some_and(|p| p <= n);
                if by_span || by_pending {
                    out[n as usize] = 0;
                    st.muted += 1;
                    if !by_span {
                        st.muted_pending_only += 1;
                    }
                }
                *next += 1;
            }
        };
    let mut judged = 0;
    for chunk in input.chunks(CHUNK) {
        det.process(chunk);
        if let Some(f) = dump.as_mut() {
            if det.candidates_judged() != judged {
                judged = det.candidates_judged();
                let m = det.last_measurement();
                let _ = writeln!(
                    f,
                    "{} {:?} {} {} {} {} {} {} {} {}",
                    det.now().samples() / 8,
                    det.last_candidate_verdict(),
                    m.deviation_pct[0],
                    m.deviation_pct[1],
                    m.level_dbm0[0],
                    m.level_dbm0[1],
                    m.energy_ratio_db,
                    m.harmonic_db,
                    m.duration_ms,
                    m.group_db
                );
            }
        }
        consumed += chunk.len() as u64;
        while let Some(ev) = det.poll_event() {
            match ev {
                ToneEvent::Started { onset, .. } => {
                    st.tones += 1;
                    spans.push(Span {
                        start: onset.samples().saturating_sub(GUARD),
                        end: u64::MAX,
                    });
                }
                ToneEvent::Ended { end, .. } => {
                    if let Some(s) = spans.iter_mut().rev().find(|s| s.end == u64::MAX) {
                        s.end = end.samples() + GUARD;
                    }
                }
            }
        }
        let pending = det.pending_since().map(|t| t.samples());
        if pending.is_some() {
            st.pending_samples += chunk.len() as u64;
        }
        // Time from a candidate's pending_since to its verdict (a new candidate replacing an
        // open one counts as the old one's verdict), at chunk granularity.
        match (pending, pending_start) {
            (Some(p), None) => pending_start = Some(p),
            (None, Some(p)) => {
                st.max_pending_ms = st.max_pending_ms.max((consumed - p) / 8);
                pending_start = None;
            }
            (Some(p1), Some(p0)) if p1 != p0 => {
                st.max_pending_ms = st.max_pending_ms.max((consumed - p0) / 8);
                pending_start = Some(p1);
            }
            _ => {}
        }
        emit(
            consumed.saturating_sub(lookahead),
            &spans,
            pending,
            &mut st,
            &mut next_out,
        );
    }
    emit(
        total,
        &spans,
        det.pending_since().map(|t| t.samples()),
        &mut st,
        &mut next_out,
    );
    (out, st)
}

/// `DTMF_TRACE=call_NNN:FROM_MS:TO_MS`: print each block's verdict in that range (no digits).
fn trace(x: &[i16], from_ms: u64, to_ms: u64) {
    let mut det = DtmfDetector::new(DtmfConfig::default());
    for (k, block) in x.chunks(dsp::dtmf::BLOCK).enumerate() {
        let judged = det.candidates_judged();
        det.process(block);
        let ms = (k * dsp::dtmf::BLOCK) as u64 / 8;
        let mut evs = String::new();
        while let Some(e) = det.poll_event() {
            match e {
                ToneEvent::Started { onset, .. } => {
                    evs += &format!(" STARTED onset={}ms", onset.samples() / 8)
                }
                ToneEvent::Ended { end, .. } => {
                    evs += &format!(" ENDED end={}ms", end.samples() / 8)
                }
            }
        }
        if (from_ms..to_ms).contains(&ms) {
            let c = det.last_candidate_verdict();
            let cs = if det.candidates_judged() != judged {
                format!(" cand={c:?} {:?}", det.last_measurement())
            } else {
                String::new()
            };
            println!(
                "{ms:>7} ms block {:?}{cs} pending={:?}{evs}",
                det.last_block_verdict(),
                det.pending_since().map(|t| t.samples() / 8)
            );
        }
    }
}

/// `DTMF_BENCH=1`: the receiver alone over every call, 10 times, with CPU time from
/// `/proc/self/stat` (wall time is meaningless on a shared, loaded machine).
fn bench(set_dir: &Path) -> Result<(), Box<dyn Error>> {
    let mut calls = Vec::new();
    for e in fs::read_dir(set_dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|e| e == "ulaw") {
            calls.push(
                fs::read(&p)?
                    .iter()
                    .map(|&b| ulaw_decode(b))
                    .collect::<Vec<i16>>(),
            );
        }
    }
    let cpu = || -> f64 {
        // utime + stime in clock ticks (fields 14 and 15), 100 Hz on Linux.
        let st = fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<&str> = st
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (t(11) + t(12)) / 100.0
    };
    let (c0, t0) = (cpu(), Instant::now());
    let mut frames = 0usize;
    for _ in 0..10 {
        for x in &calls {
            let mut det = DtmfDetector::new(DtmfConfig::default());
            for c in x.chunks(CHUNK) {
                det.process(c);
                while det.poll_event().is_some() {}
            }
            frames += x.len() / CHUNK;
        }
    }
    let (cpu_s, wall_s) = (cpu() - c0, t0.elapsed().as_secs_f64());
    println!(
        "receiver alone, {frames} frames: {:.3} us CPU per 160-sample frame ({:.0} frames/s per core); wall {:.3} us",
        cpu_s * 1e6 / frames as f64,
        frames as f64 / cpu_s.max(1e-9),
        wall_s * 1e6 / frames as f64
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Ok(spec) = std::env::var("DTMF_TRACE") {
        let f: Vec<&str> = spec.split(':').collect();
        if f.len() == 3 {
            let bytes = fs::read(PathBuf::from(&args[1]).join(format!("{}.ulaw", f[0])))?;
            let shift: usize = std::env::var("DTMF_SHIFT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let x: Vec<i16> = std::iter::repeat_n(0, shift)
                .chain(bytes.iter().map(|&b| ulaw_decode(b)))
                .collect();
            trace(&x, f[1].parse()?, f[2].parse()?);
            return Ok(());
        }
    }
    if args.len() < 3 {
        return Err("usage: dtmf_corpus SET_DIR OUT_DIR [LOOKAHEAD_MS]".into());
    }
    let set_dir = PathBuf::from(&args[1]);
    if std::env::var("DTMF_BENCH").is_ok() {
        return bench(&set_dir);
    }
    let out_dir = PathBuf::from(&args[2]);
    let lookahead_ms: u64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(80);
    fs::create_dir_all(&out_dir)?;
    let mut names: Vec<PathBuf> = fs::read_dir(&set_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ulaw"))
        .collect();
    names.sort();
    for p in names {
        let bytes = fs::read(&p)?;
        // DTMF_SHIFT=N: prepend N samples of silence (moves the block grid against the audio;
        // the output drops them again, so it stays aligned with the input).
        let shift: usize = std::env::var("DTMF_SHIFT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let x: Vec<i16> = std::iter::repeat_n(0, shift)
            .chain(bytes.iter().map(|&b| ulaw_decode(b)))
            .collect();
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("call");
        // DTMF_DUMP=DIR: one line per judged candidate (time, verdict, measurements; no digit).
        let mut dump = match std::env::var("DTMF_DUMP") {
            Ok(d) => Some(fs::File::create(
                Path::new(&d).join(format!("{stem}.cand")),
            )?),
            Err(_) => None,
        };
        let (y, st) = mask_call(&x, lookahead_ms * 8, &mut dump);
        write_wav(&out_dir.join(format!("{stem}.wav")), &y[shift..])?;
        println!(
            "{stem}: tones {:>4}  muted {:>7.1} ms  pending-only {:>6.1} ms  max pending {:>3} ms  \
             pending {:>5.2} % of the call",
            st.tones,
            st.muted as f64 / 8.0,
            st.muted_pending_only as f64 / 8.0,
            st.max_pending_ms,
            100.0 * st.pending_samples as f64 / x.len().max(1) as f64
        );
    }
    Ok(())
}
