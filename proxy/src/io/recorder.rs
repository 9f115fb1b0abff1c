//! Recorder sinks: consume the sanitized tap (never raw audio) and write recordings.
//!
//! `wav`: one stereo 8 kHz 16-bit WAV per call (caller left, agent right, time-aligned by
//! each direction's arrival time, gaps silent), written to a temporary name, fsynced and
//! renamed when the call ends, with a JSON sidecar of the masked spans (times and reasons,
//! never digits).
#![allow(clippy::disallowed_methods)] // io shell: reads the clock

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

use super::media::TapEvent;
use crate::core::proxy::{CallRef, Side};
use crate::metrics::{Metrics, SinkKind};
use crate::offline::audio::{self, Audio, Container, Encoding, Format};

#[derive(Debug, Serialize)]
struct SpanOut {
    channel: &'static str,
    start_ms: f64,
    end_ms: f64,
    reason: &'static str,
}

#[derive(Debug, Serialize)]
struct Sidecar {
    version: u32,
    call: u64,
    start_unix_ms: u128,
    end_unix_ms: u128,
    sample_rate: u32,
    channels: [&'static str; 2],
    spans: Vec<SpanOut>,
}

struct CallRec {
    caller_side: Side,
    started: Instant,
    start_unix_ms: u128,
    /// Index 0 = caller, 1 = agent: samples, and each direction's offset (samples) from the
    /// call start to its media time 0.
    chans: [Vec<i16>; 2],
    offsets: [Option<u64>; 2],
    spans: Vec<SpanOut>,
}

/// All configured sinks.
pub struct Recorders {
    wav_dirs: Vec<PathBuf>,
    metrics: Arc<Metrics>,
}

impl Recorders {
    /// The sinks the config asks for (kinds not built yet are reported and skipped).
    pub fn from_config(cfg: &config::Config, metrics: Arc<Metrics>) -> Self {
        let mut wav_dirs = Vec::new();
        for r in &cfg.recorders {
            match r {
                config::RecorderConfig::Wav(w) => wav_dirs.push(w.dir.clone()),
                other => {
                    tracing::warn!(kind = ?std::mem::discriminant(other), "recorder kind not supported yet; skipped")
                }
            }
        }
        Recorders { wav_dirs, metrics }
    }

    /// No sink configured: the tap can be switched off.
    pub fn is_empty(&self) -> bool {
        self.wav_dirs.is_empty()
    }

    /// Consume the tap until every sender is gone.
    pub async fn run(self, mut rx: mpsc::Receiver<TapEvent>) {
        let mut calls: HashMap<CallRef, CallRec> = HashMap::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                TapEvent::Start { call, caller_side } => {
                    self.metrics.recorder_session_opened(SinkKind::Wav);
                    calls.insert(
                        call,
                        CallRec {
                            caller_side,
                            started: Instant::now(),
                            start_unix_ms: unix_ms(),
                            chans: [Vec::new(), Vec::new()],
                            offsets: [None, None],
                            spans: Vec::new(),
                        },
                    );
                }
                TapEvent::Frame(f) => {
                    let Some(rec) = calls.get_mut(&f.call) else {
                        continue;
                    };
                    let ch = usize::from(f.from != rec.caller_side);
                    let offset = *rec.offsets[ch].get_or_insert_with(|| {
                        // First audio of this direction: place it at its arrival time.
                        let since = rec.started.elapsed().as_millis() as u64 * 8;
                        since.saturating_sub(f.media_time)
                    });
                    let at = (offset + f.media_time) as usize;
                    let buf = &mut rec.chans[ch];
                    if buf.len() < at {
                        buf.resize(at, 0);
                    }
                    let samples = f.samples();
                    let end = at + samples.len();
                    if buf.len() < end {
                        buf.resize(end, 0);
                    }
                    buf[at..end].copy_from_slice(samples);
                }
                TapEvent::Span {
                    call,
                    from,
                    start,
                    end,
                    reason,
                } => {
                    if let Some(rec) = calls.get_mut(&call) {
                        let ch = usize::from(from != rec.caller_side);
                        let off = rec.offsets[ch].unwrap_or(0);
                        rec.spans.push(SpanOut {
                            channel: if ch == 0 { "caller" } else { "agent" },
                            start_ms: (start + off) as f64 / 8.0,
                            end_ms: (end + off) as f64 / 8.0,
                            reason: reason.as_str(),
                        });
                    }
                }
                TapEvent::End { call } => {
                    // Both directions' relay tasks send End; finish on the first, keep
                    // accepting nothing after.
                    if let Some(rec) = calls.remove(&call) {
                        self.finish(call, rec);
                    }
                }
            }
        }
        for (call, rec) in calls.drain() {
            self.finish(call, rec);
        }
    }

    fn finish(&self, call: CallRef, rec: CallRec) {
        let n = rec.chans[0].len().max(rec.chans[1].len());
        let mut chans = rec.chans;
        for c in &mut chans {
            c.resize(n, 0);
        }
        let wav = audio::encode(&Audio {
            format: Format {
                container: Container::Wav,
                encoding: Encoding::Pcm16,
                sample_rate: 8000,
                channels: 2,
            },
            channels: chans.to_vec(),
        });
        let sidecar = Sidecar {
            version: 1,
            call: call.0,
            start_unix_ms: rec.start_unix_ms,
            end_unix_ms: unix_ms(),
            sample_rate: 8000,
            channels: ["caller", "agent"],
            spans: rec.spans,
        };
        let name = format!("{}-call{}", rec.start_unix_ms, call.0);
        for dir in &self.wav_dirs {
            let _ = std::fs::create_dir_all(dir);
            let wav_path = dir.join(format!("{name}.wav"));
            let json_path = dir.join(format!("{name}.json"));
            let json = serde_json::to_vec_pretty(&sidecar).unwrap_or_default();
            let ok = crate::offline::write_atomic(&wav_path, &wav)
                .and_then(|()| crate::offline::write_atomic(&json_path, &json));
            match ok {
                Ok(()) => {
                    self.metrics
                        .recorder_bytes(SinkKind::Wav)
                        .inc_by(wav.len() as u64);
                    tracing::info!(call = call.0, path = %wav_path.display(), "recording written");
                }
                Err(e) => {
                    self.metrics.recorder_error(SinkKind::Wav);
                    tracing::error!(call = call.0, error = %e, "recording could not be written");
                }
            }
        }
        self.metrics.recorder_session_closed(SinkKind::Wav);
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}
