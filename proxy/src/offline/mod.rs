//! `callmask mask`: the offline sanitizer.
//!
//! Admins run it on recordings made before callmask, and CI runs it on the dev corpus. It
//! simulates the live recorder path exactly: each channel goes through a
//! [`dsp::mask::MaskPipeline`] with the live look-ahead, in 20 ms frames, and the output is
//! shifted back by the look-ahead so OUT is time-aligned with IN (same format, same length).
//! The report lists masked spans and reasons, never digits.

pub mod speech;

use std::io::Write;
use std::path::{Path, PathBuf};

use dsp::mask::{MaskConfig, MaskPipeline, MaskSpan};
use serde::Serialize;
use thiserror::Error;

use crate::audio::{self, Audio, AudioError};

/// Frame size the live relay uses (20 ms at 8 kHz).
const FRAME: usize = 160;

/// Why `callmask mask` failed. Each maps to a sysexits code in the binary.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OfflineError {
    /// The input could not be read as audio (exit 66 when it cannot be opened, 65 when it is
    /// not valid audio or in a format callmask does not process).
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The speech settings cannot run on this input (exit 65).
    #[error("unsupported input: {0}")]
    Unsupported(String),
    /// The output or report could not be written (exit 73).
    #[error("cannot create {path}: {source}")]
    Create {
        /// The path being written.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl OfflineError {
    /// The sysexits(3) code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            OfflineError::Audio(AudioError::Open { .. }) => 66,
            OfflineError::Audio(_) | OfflineError::Unsupported(_) => 65,
            OfflineError::Create { .. } => 73,
        }
    }
}

/// What to do.
#[derive(Debug, Clone)]
pub struct MaskOptions {
    /// Input file.
    pub input: PathBuf,
    /// Output file (same format as the input).
    pub output: PathBuf,
    /// Optional JSON span report.
    pub report: Option<PathBuf>,
    /// Pipeline settings (look-ahead, guards, replacement, detector).
    pub pipeline: MaskConfig,
}

/// One masked span in the report (milliseconds from the start of the file).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportSpan {
    /// Channel index (0 = left / caller, 1 = right / agent).
    pub channel: usize,
    /// Start, ms.
    pub start_ms: f64,
    /// End, ms.
    pub end_ms: f64,
    /// `dtmf_inband`, `rfc4733`, `spoken_id`, `secure_mode` or `fail_closed`.
    pub reason: &'static str,
}

/// The JSON report. Holds times and reasons only: never digits or words.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Report format version.
    pub version: u32,
    /// Input sample rate.
    pub sample_rate: u32,
    /// Input channels.
    pub channels: u16,
    /// Duration of the file, ms.
    pub duration_ms: f64,
    /// The look-ahead the live pipeline was simulated with.
    pub lookahead_ms: u32,
    /// Constant delay of OUT relative to IN (always 0: the tool re-aligns).
    pub output_delay_ms: u32,
    /// Masked spans, by channel then time.
    pub spans: Vec<ReportSpan>,
    /// Total masked ms per reason.
    pub masked_ms_by_reason: std::collections::BTreeMap<&'static str, f64>,
    /// Spans per reason.
    pub spans_by_reason: std::collections::BTreeMap<&'static str, usize>,
    /// Samples muted because a verdict was late (fail closed).
    pub fail_closed_ms: f64,
    /// Spoken-identifier masking totals (counts and times), when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech: Option<speech::SpeechSummary>,
}

/// Sanitize one file. Writes OUT (and the report) through temporary names and renames them,
/// so a failure never leaves a partial file.
pub fn run(opts: &MaskOptions) -> Result<Report, OfflineError> {
    run_with_speech(opts, None)
}

/// [`run`], masking spoken identifiers too when `speech` is given.
pub fn run_with_speech(
    opts: &MaskOptions,
    speech: Option<&mut speech::SpeechMasking>,
) -> Result<Report, OfflineError> {
    let mut audio = audio::read(&opts.input)?;
    let report = mask_audio_with(&mut audio, &opts.pipeline, speech)?;
    write_atomic(&opts.output, &audio::encode(&audio))?;
    if let Some(path) = &opts.report {
        let json = serde_json::to_vec_pretty(&report).map_err(|e| OfflineError::Create {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(path, &json)?;
    }
    Ok(report)
}

/// Mask every channel of `audio` in place and describe what was masked.
pub fn mask_audio(audio: &mut Audio, config: &MaskConfig) -> Report {
    mask_report(audio, config, |audio| {
        let rate = audio.format.sample_rate;
        audio
            .channels
            .iter_mut()
            .map(|ch| {
                if rate == 8000 {
                    mask_channel_8k(ch, config)
                } else {
                    mask_channel_16k(ch, config)
                }
            })
            .collect()
    })
}

/// [`mask_audio`], with spoken identifiers masked too when `speech` is given (all channels
/// of the file are the legs of one call).
pub fn mask_audio_with(
    audio: &mut Audio,
    config: &MaskConfig,
    speech: Option<&mut speech::SpeechMasking>,
) -> Result<Report, OfflineError> {
    let Some(sp) = speech else {
        return Ok(mask_audio(audio, config));
    };
    let rate = audio.format.sample_rate;
    let mut narrow: Vec<Vec<i16>> = if rate == 8000 {
        audio.channels.clone()
    } else {
        audio.channels.iter().map(|c| decimate_by_2(c)).collect()
    };
    let (per_leg, summary) = speech::mask_legs_8k(&mut narrow, config, sp)
        .map_err(|e| OfflineError::Unsupported(format!("speech masking settings: {e}")))?;
    let mut report = mask_report(audio, config, move |audio| {
        if rate == 8000 {
            audio.channels = narrow;
        } else {
            let ramp = (config.ramp_ms.max(1) * 16) as usize;
            for (ch, (spans, _)) in audio.channels.iter_mut().zip(&per_leg) {
                apply_spans(ch, spans, 2, ramp);
            }
        }
        per_leg
    });
    report.speech = Some(summary);
    Ok(report)
}

/// Run `mask` (spans and fail-closed samples per channel) and build the report.
fn mask_report(
    audio: &mut Audio,
    config: &MaskConfig,
    mask: impl FnOnce(&mut Audio) -> Vec<(Vec<MaskSpan>, u64)>,
) -> Report {
    let rate = audio.format.sample_rate;
    let mut spans = Vec::new();
    let mut fail_closed_samples = 0u64;
    for (c, (ch_spans, fc)) in mask(audio).into_iter().enumerate() {
        fail_closed_samples += fc;
        spans.extend(ch_spans.into_iter().map(|s| ReportSpan {
            channel: c,
            start_ms: s.start.0 as f64 / 8.0,
            end_ms: s.end.0 as f64 / 8.0,
            reason: s.reason.as_str(),
        }));
    }
    let mut masked_ms_by_reason = std::collections::BTreeMap::new();
    let mut spans_by_reason = std::collections::BTreeMap::new();
    for s in &spans {
        *masked_ms_by_reason.entry(s.reason).or_insert(0.0) += s.end_ms - s.start_ms;
        *spans_by_reason.entry(s.reason).or_insert(0) += 1;
    }
    Report {
        version: 1,
        sample_rate: rate,
        channels: audio.format.channels,
        duration_ms: audio.frames() as f64 * 1000.0 / f64::from(rate),
        lookahead_ms: config.lookahead_ms,
        output_delay_ms: 0,
        spans,
        masked_ms_by_reason,
        spans_by_reason,
        fail_closed_ms: fail_closed_samples as f64 / 8.0,
        speech: None,
    }
}

/// Run the live pipeline over an 8 kHz channel (plus look-ahead of silence to flush it) and
/// write its aligned output back. Returns the spans and the fail-closed sample count.
fn mask_channel_8k(samples: &mut [i16], config: &MaskConfig) -> (Vec<MaskSpan>, u64) {
    let mut pipe = MaskPipeline::new(*config);
    let delay = pipe.delay_samples() as usize;
    let total = samples.len() + delay;
    let mut out = vec![0i16; total];
    let mut spans = Vec::new();
    let mut frame_in = [0i16; FRAME];
    let mut at = 0;
    while at < total {
        let n = FRAME.min(total - at);
        frame_in[..n].fill(0);
        if at < samples.len() {
            let m = n.min(samples.len() - at);
            frame_in[..m].copy_from_slice(&samples[at..at + m]);
        }
        pipe.process(&frame_in[..n], &mut out[at..at + n]);
        spans.extend(std::iter::from_fn(|| pipe.poll_span()));
        at += n;
    }
    pipe.finish();
    spans.extend(std::iter::from_fn(|| pipe.poll_span()));
    samples.copy_from_slice(&out[delay..]);
    let len = samples.len() as u64;
    let spans = clip_spans(spans, len);
    (spans, pipe.stats().fail_closed_samples)
}

/// 16 kHz: detect on a decimated 8 kHz copy, then mute the same spans at 16 kHz.
fn mask_channel_16k(samples: &mut [i16], config: &MaskConfig) -> (Vec<MaskSpan>, u64) {
    let mut narrow = decimate_by_2(samples);
    let (spans, fc) = mask_channel_8k(&mut narrow, config);
    let ramp = (config.ramp_ms.max(1) * 16) as usize;
    apply_spans(samples, &spans, 2, ramp);
    (spans, fc)
}

/// Half-band low-pass (windowed sinc, 31 taps, cutoff 3.6 kHz) then keep every other sample.
fn decimate_by_2(x: &[i16]) -> Vec<i16> {
    const TAPS: usize = 31;
    let mut h = [0f32; TAPS];
    let mid = (TAPS / 2) as f32;
    let fc = 3600.0 / 16000.0;
    for (i, v) in h.iter_mut().enumerate() {
        let n = i as f32 - mid;
        let sinc = if n == 0.0 {
            2.0 * fc
        } else {
            (std::f32::consts::TAU * fc * n).sin() / (std::f32::consts::PI * n)
        };
        let w = 0.54 - 0.46 * (std::f32::consts::TAU * i as f32 / (TAPS - 1) as f32).cos();
        *v = sinc * w;
    }
    let sum: f32 = h.iter().sum();
    h.iter_mut().for_each(|v| *v /= sum);
    (0..x.len() / 2)
        .map(|k| {
            let c = 2 * k;
            let acc: f32 = h
                .iter()
                .enumerate()
                .filter_map(|(i, &hv)| {
                    let j = (c + i).checked_sub(TAPS / 2)?;
                    x.get(j).map(|&s| hv * f32::from(s))
                })
                .sum();
            acc.clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// Mute `spans` (in 8 kHz samples) on a stream at `factor` × 8 kHz, with linear ramps of
/// `ramp` samples outside each span.
fn apply_spans(x: &mut [i16], spans: &[MaskSpan], factor: u64, ramp: usize) {
    let len = x.len();
    for s in spans {
        let a = ((s.start.0 * factor) as usize).min(len);
        let b = ((s.end.0 * factor) as usize).min(len);
        x[a..b].fill(0);
        for k in 1..=ramp {
            let g = k as f32 / (ramp + 1) as f32;
            if let Some(i) = a.checked_sub(k) {
                x[i] = (f32::from(x[i]) * g) as i16;
            }
            if b + k - 1 < len {
                x[b + k - 1] = (f32::from(x[b + k - 1]) * g) as i16;
            }
        }
    }
}

/// Merge overlapping spans of one reason, order by time and clip to the file.
fn clip_spans(mut spans: Vec<MaskSpan>, len: u64) -> Vec<MaskSpan> {
    spans.retain(|s| s.start.0 < len);
    for s in &mut spans {
        s.end.0 = s.end.0.min(len);
    }
    spans.sort_by_key(|s| (s.start, s.end));
    let mut out: Vec<MaskSpan> = Vec::with_capacity(spans.len());
    for s in spans {
        if let Some(last) = out.iter_mut().rev().find(|l| l.reason == s.reason) {
            if s.start <= last.end {
                last.end = last.end.max(s.end);
                continue;
            }
        }
        out.push(s);
    }
    out
}

/// Write `bytes` to `path` via a temporary file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OfflineError> {
    let err = |e: std::io::Error| OfflineError::Create {
        path: path.display().to_string(),
        source: e,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(std::io::Error::other("the output path names no file")))?;
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsp::mask::MaskReason;
    use dsp::MediaTime;

    #[test]
    fn output_is_aligned_and_same_length() {
        let mut a = Audio {
            format: audio::Format {
                container: audio::Container::Wav,
                encoding: audio::Encoding::Pcm16,
                sample_rate: 8000,
                channels: 1,
            },
            channels: vec![(0..8003).map(|i| ((i % 50) * 20) as i16).collect()],
        };
        let orig = a.clone();
        let r = mask_audio(&mut a, &MaskConfig::default());
        assert_eq!(a.frames(), orig.frames());
        assert_eq!(r.output_delay_ms, 0);
        if r.spans.is_empty() {
            assert_eq!(a, orig, "nothing masked: output identical to input");
        }
    }

    #[test]
    fn spans_apply_at_16k_with_ramps_outside() {
        let mut x = vec![1000i16; 400];
        let spans = [MaskSpan {
            start: MediaTime(50),
            end: MediaTime(100),
            reason: MaskReason::DtmfInband,
        }];
        apply_spans(&mut x, &spans, 2, 4);
        assert!(x[100..200].iter().all(|&v| v == 0));
        assert!(x[96..100].iter().all(|&v| v > 0 && v < 1000));
        assert!(x[200..204].iter().all(|&v| v > 0 && v < 1000));
        assert_eq!(x[95], 1000);
    }

    #[test]
    fn decimation_keeps_a_dtmf_band_tone() {
        let x: Vec<i16> = (0..1600)
            .map(|i| (8000.0 * (std::f32::consts::TAU * 1000.0 * i as f32 / 16000.0).sin()) as i16)
            .collect();
        let y = decimate_by_2(&x);
        let peak = y[100..700].iter().map(|v| v.abs()).max().unwrap_or(0);
        assert!((7000..9000).contains(&peak), "peak {peak}");
    }

    #[test]
    fn failed_write_leaves_no_file() {
        let dir = std::env::temp_dir().join(format!("callmask-wa-{}", std::process::id()));
        let path = dir.join("missing-subdir").join("out.wav");
        assert!(write_atomic(&path, b"x").is_err());
        assert!(!path.exists());
    }
}
