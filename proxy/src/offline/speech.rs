//! Spoken-identifier masking for `callmask mask`: every leg of the file goes through a
//! [`SpeechMasker`] alongside its [`MaskPipeline`], in 20 ms frames, as on the live path.
//!
//! Timing: the live path sends each cut segment to a worker and applies the verdict when it
//! comes back, before the segment's deadline. Offline the recognizer runs synchronously at the
//! moment the segment is cut, so every verdict is in time; the time each call took is
//! measured, and [`SpeechSummary::live_late`] counts the jobs that a single real-time worker
//! per call (audio arriving in real time, jobs served in stream order) would have finished
//! after their deadline — those would have been muted whole live.
//!
//! Stereo files are one call: the two legs exchange asks and turn starts
//! ([`dsp::spoken::exchange`]), so the agent asking for a card number widens the caller's mask.
//!
//! PHI: words live only inside [`Recognizer::transcribe`] → [`SpeechMasker::complete`]; the
//! summary holds counts and times.

use std::time::Instant;

use dsp::mask::{MaskConfig, MaskPipeline, MaskReason, MaskSpan};
use dsp::spoken::{exchange, Recognizer, SpeechConfig, SpeechMasker, SpeechStats};
use serde::Serialize;

use super::FRAME;
use crate::speech::tuned_config;
#[cfg(feature = "whisper")]
use crate::speech::whisper;

/// The speech look-ahead `callmask mask` simulates unless `--lookahead-ms` says otherwise.
///
/// Measured on the dev corpus (scripts/eval_speech.sh, Whisper tiny.en): 8 s leaks 1 of 61
/// spoken identifiers, 5 s leaks 15, 3 s leaks 33 — short look-aheads force-cut segments
/// (at most look-ahead − budget − padding long), so the recognizer hears digit strings in
/// pieces and answers lose their context. The recognizer's CPU barely depends on it (the
/// encoder window follows the segment). Recorders tolerate the delay.
pub const DEFAULT_SPEECH_LOOKAHEAD_MS: u32 = 8000;

/// A recognizer and the settings to run it with.
pub struct SpeechMasking {
    /// Masker settings (its `lookahead_ms` is replaced by the pipeline's).
    pub config: SpeechConfig,
    /// The engine.
    pub recognizer: Box<dyn Recognizer>,
    /// Engine name for the report.
    pub engine: &'static str,
    /// The clock the recognizer calls are timed with (the caller's `Instant::now`).
    pub clock: fn() -> Instant,
}

impl std::fmt::Debug for SpeechMasking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechMasking")
            .field("config", &self.config)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// What `callmask mask` runs with: `None` with `--no-speech`; else the build's recognizer, or
/// `Err((exit code, message))` — 64 when this build has no recognizer or the look-ahead is too
/// short for speech, 66 when the model cannot be loaded (fail closed: never DTMF-only silently).
pub fn for_cli(
    no_speech: bool,
    model: Option<&std::path::Path>,
    model_name: config::types::SpeechModel,
    lookahead_ms: u32,
    clock: fn() -> Instant,
) -> Result<Option<SpeechMasking>, (u8, String)> {
    if no_speech {
        return Ok(None);
    }
    let config = tuned_config(lookahead_ms);
    if SpeechMasker::new(config).is_err() {
        return Err((
            64,
            format!("--lookahead-ms {lookahead_ms} is too short for spoken-identifier masking (try {DEFAULT_SPEECH_LOOKAHEAD_MS}), or pass --no-speech"),
        ));
    }
    load_recognizer(model, model_name, config, clock)
}

#[cfg(feature = "whisper")]
fn load_recognizer(
    model: Option<&std::path::Path>,
    model_name: config::types::SpeechModel,
    config: SpeechConfig,
    clock: fn() -> Instant,
) -> Result<Option<SpeechMasking>, (u8, String)> {
    let dir = whisper::model_dir(model, model_name);
    let rec = whisper::WhisperRecognizer::load(&dir, model_name).map_err(|e| {
        (
            66,
            format!("cannot load the {model_name} speech model from {}: {e} (see scripts/setup_asr.sh, --speech-model, --speech-model-name, or pass --no-speech)", dir.display()),
        )
    })?;
    Ok(Some(SpeechMasking {
        config,
        recognizer: Box::new(rec),
        engine: model_name.engine_label(),
        clock,
    }))
}

#[cfg(not(feature = "whisper"))]
fn load_recognizer(
    _model: Option<&std::path::Path>,
    _model_name: config::types::SpeechModel,
    _config: SpeechConfig,
    _clock: fn() -> Instant,
) -> Result<Option<SpeechMasking>, (u8, String)> {
    Err((
        64,
        "spoken-identifier masking needs a recognizer, and this build has none — pass --no-speech to mask DTMF only (or build with --features whisper)".into(),
    ))
}

/// Speech totals for the report: counts and times, never words.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SpeechSummary {
    /// The engine that ran.
    pub engine: &'static str,
    /// Segments sent to the recognizer.
    pub segments: u64,
    /// Of those, force-cut at the length limit.
    pub forced_cuts: u64,
    /// Audio sent to the recognizer, ms.
    pub recognised_ms: f64,
    /// Recognizer results applied.
    pub results: u64,
    /// Recognizer errors (segment muted whole).
    pub errors: u64,
    /// Results dropped as late (segment muted whole).
    pub late_results: u64,
    /// Segments whose verdict never came (muted whole).
    pub expired: u64,
    /// Spoken-identifier spans marked.
    pub marks: u64,
    /// Asks for an identifier detected.
    pub asks: u64,
    /// Time spent in the recognizer, seconds (one thread: about its CPU time).
    pub recognizer_s: f64,
    /// Jobs a single real-time worker per call would have finished after their deadline.
    pub live_late: u64,
}

impl SpeechSummary {
    fn add(&mut self, s: &SpeechStats) {
        self.segments += s.segments;
        self.forced_cuts += s.forced_cuts;
        self.recognised_ms += s.recognised_samples as f64 / 8.0;
        self.results += s.results;
        self.errors += s.errors;
        self.late_results += s.late_results;
        self.expired += s.expired;
        self.marks += s.marks;
        self.asks += s.asks;
    }
}

/// One real-time worker serving the call's jobs in stream order (times in 8 kHz samples).
#[derive(Default)]
struct LiveWorker {
    free_at: f64,
    late: u64,
}

impl LiveWorker {
    fn serve(&mut self, cut_at: u64, deadline: u64, cost_s: f64) {
        let start = self.free_at.max(cut_at as f64);
        self.free_at = start + cost_s * 8000.0;
        if self.free_at > deadline as f64 {
            self.late += 1;
        }
    }
}

/// One leg's masked spans and fail-closed sample count.
pub type LegResult = (Vec<MaskSpan>, u64);

/// Run the pipeline and the speech masker over 8 kHz legs of one call (all the same length),
/// writing each leg's aligned output back. Returns per leg the spans and fail-closed samples.
pub fn mask_legs_8k(
    legs: &mut [Vec<i16>],
    config: &MaskConfig,
    speech: &mut SpeechMasking,
) -> Result<(Vec<LegResult>, SpeechSummary), dsp::DspError> {
    let sconf = SpeechConfig {
        lookahead_ms: config.lookahead_ms,
        ..speech.config
    };
    let mut pipes: Vec<MaskPipeline> = legs.iter().map(|_| MaskPipeline::new(*config)).collect();
    let mut maskers = legs
        .iter()
        .map(|_| SpeechMasker::new(sconf))
        .collect::<Result<Vec<_>, _>>()?;
    let len = legs.iter().map(Vec::len).max().unwrap_or(0);
    let delay = pipes.first().map_or(0, |p| p.delay_samples() as usize);
    let total = len + delay;
    let mut outs: Vec<Vec<i16>> = legs.iter().map(|_| vec![0i16; total]).collect();
    let mut spans: Vec<Vec<MaskSpan>> = legs.iter().map(|_| Vec::new()).collect();
    let mut worker = LiveWorker::default();
    let mut summary = SpeechSummary {
        engine: speech.engine,
        ..SpeechSummary::default()
    };
    let mut frame = [0i16; FRAME];
    let mut flushed = false;
    let mut at = 0;
    while at < total {
        let n = FRAME.min(total - at);
        // 1. Audio in; cut segments are recognised at once (in stream order, leg by leg).
        for (leg, sm) in legs.iter().zip(maskers.iter_mut()) {
            frame[..n].fill(0);
            if at < leg.len() {
                let m = n.min(leg.len() - at);
                frame[..m].copy_from_slice(&leg[at..at + m]);
            }
            sm.push(&frame[..n]);
            if !flushed && at + n >= len {
                sm.flush();
            }
            while let Some(job) = sm.take_job() {
                let t0 = (speech.clock)();
                let result = job.run(speech.recognizer.as_mut());
                let cost = (speech.clock)().duration_since(t0).as_secs_f64();
                summary.recognizer_s += cost;
                worker.serve(sm.input_time().0, job.deadline.0, cost);
                sm.complete(job.id, result);
            }
        }
        flushed |= at + n >= len;
        // 2. The legs tell each other about asks, turns and how far they are decided.
        if let [a, b] = maskers.as_mut_slice() {
            exchange(a, b);
        }
        // 3. Marks and the undecided region into the pipeline, then the frame leaves.
        for (i, (sm, pipe)) in maskers.iter_mut().zip(pipes.iter_mut()).enumerate() {
            while let Some((s, e)) = sm.poll_marks() {
                pipe.mark(MaskReason::SpokenId, s, e);
            }
            pipe.set_undecided_from(sm.undecided_from());
            frame[..n].fill(0);
            if at < legs[i].len() {
                let m = n.min(legs[i].len() - at);
                frame[..m].copy_from_slice(&legs[i][at..at + m]);
            }
            pipe.process(&frame[..n], &mut outs[i][at..at + n]);
            if let Some(t) = pipe.stats().last_keypad_onset {
                sm.note_keypad(t);
            }
            spans[i].extend(std::iter::from_fn(|| pipe.poll_span()));
        }
        at += n;
    }
    let mut result = Vec::with_capacity(legs.len());
    for (i, leg) in legs.iter_mut().enumerate() {
        let pipe = &mut pipes[i];
        pipe.finish();
        spans[i].extend(std::iter::from_fn(|| pipe.poll_span()));
        let l = leg.len();
        leg.copy_from_slice(&outs[i][delay..delay + l]);
        let s = super::clip_spans(std::mem::take(&mut spans[i]), l as u64);
        result.push((s, pipe.stats().fail_closed_samples));
        summary.add(&maskers[i].stats());
    }
    summary.live_late = worker.late;
    Ok((result, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsp::spoken::FakeRecognizer;

    #[allow(clippy::disallowed_methods)] // a constant instant; nothing reads the time
    fn fixed_clock() -> Instant {
        static T: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T.get_or_init(Instant::now)
    }

    fn voice(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f32 / 8000.0;
                let env = if (i / 4000) % 2 == 0 { 1.0 } else { 0.0 };
                // a buzz rich in harmonics (one sinusoid would be taken for a tone)
                let buzz: f32 = (1..=20)
                    .map(|h| (std::f32::consts::TAU * 220.0 * h as f32 * t).sin() / h as f32)
                    .sum();
                (env * 4000.0 * buzz) as i16
            })
            .collect()
    }

    #[test]
    fn stereo_legs_keep_length_and_decide_everything() {
        let mut legs = vec![voice(40_003), voice(40_003)];
        let config = MaskConfig {
            lookahead_ms: DEFAULT_SPEECH_LOOKAHEAD_MS,
            ..MaskConfig::default()
        };
        let mut sm = SpeechMasking {
            config: tuned_config(DEFAULT_SPEECH_LOOKAHEAD_MS),
            recognizer: Box::new(FakeRecognizer::default()),
            engine: "fake",
            clock: fixed_clock,
        };
        let (res, summary) = mask_legs_8k(&mut legs, &config, &mut sm).expect("valid config");
        assert_eq!(res.len(), 2);
        assert!(legs.iter().all(|l| l.len() == 40_003));
        assert!(summary.segments > 0);
        assert_eq!(summary.results, summary.segments, "{summary:?}");
        assert_eq!(summary.live_late, 0);
        assert_eq!(
            res.iter().map(|r| r.1).sum::<u64>(),
            0,
            "nothing fail-closed"
        );
    }
}
