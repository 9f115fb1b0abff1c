//! The mask pipeline: look-ahead delay line + detectors + span bookkeeping + renderer.
//!
//! One [`MaskPipeline`] per recorder-bound stream (one call leg, one direction). Every sample
//! that reaches a recorder has passed through [`MaskPipeline::process`]; that is the invariant
//! that makes the product safe, so nothing else in callmask renders recorder audio.
//!
//! How a verdict reaches the audio:
//! - Detectors and outside sources (RFC 4733 events, the speech recognizer, secure mode)
//!   mark **spans** in media time, possibly long after the audio entered, as long as it has
//!   not left the delay line yet. A span may be open (start known, end not yet).
//! - The in-band DTMF receiver runs inside `process` on the undelayed input; a confirmed tone
//!   opens a span at its onset, so the recorder never hears the tone's first milliseconds.
//! - **Fail closed**: while a source says a verdict is still open from sample `t` on (the DTMF
//!   receiver's `pending_since`, or [`MaskPipeline::set_undecided_from`] for the recognizer),
//!   audio from `t` that must leave is rendered as replacement and counted.
//! - Spans are widened by guards and rendered with short gain ramps placed *outside* the span,
//!   so a mute never clicks and a ramp never lets tone energy through.
//!
//! Calling rules: call `process` with each frame in order (any size, typically 160 samples =
//! 20 ms at 8 kHz); mark spans between calls with [`MaskPipeline::mark`] or
//! [`MaskPipeline::begin_span`]/[`MaskPipeline::end_span`] using [`MediaTime`]s of the input
//! stream; drain [`MaskPipeline::poll_span`] for reporting. No allocation after `new`.

use crate::delay_line::DelayLine;
use crate::dtmf::{DtmfConfig, DtmfDetector, ToneEvent};
use crate::MediaTime;

/// Capacity of the span table. Overflow never drops a span: the new one is merged into the
/// nearest existing one (mutes more, never less).
const MAX_SPANS: usize = 32;
/// Capacity of the report queue; if the owner does not drain it, the oldest entries are
/// dropped (reports are informational; the audio is already muted) and counted.
const MAX_REPORTS: usize = 64;
/// Samples per millisecond: the pipeline runs at 8 kHz.
const SAMPLES_PER_MS: u64 = 8;

/// Why audio was muted. Closed set: these are the metric labels and report reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskReason {
    /// In-band DTMF tone heard in the audio.
    DtmfInband,
    /// RFC 4733 telephone-event (or SIP INFO) signalled for this time.
    Rfc4733,
    /// A spoken identifier (card number, SSN, date of birth …).
    SpokenId,
    /// The call was put in secure mode (API or DTMF trigger).
    SecureMode,
    /// A verdict was not known when the audio had to leave.
    FailClosed,
}

impl MaskReason {
    /// Stable label for reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            MaskReason::DtmfInband => "dtmf_inband",
            MaskReason::Rfc4733 => "rfc4733",
            MaskReason::SpokenId => "spoken_id",
            MaskReason::SecureMode => "secure_mode",
            MaskReason::FailClosed => "fail_closed",
        }
    }

    /// Every reason, for metric registration.
    pub const ALL: [MaskReason; 5] = [
        MaskReason::DtmfInband,
        MaskReason::Rfc4733,
        MaskReason::SpokenId,
        MaskReason::SecureMode,
        MaskReason::FailClosed,
    ];
}

/// What muted audio is replaced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// Digital silence.
    Silence,
    /// Low-level white noise (about −65 dBm0), so listeners know the line did not drop.
    ComfortNoise,
    /// A steady tone at `hz` (should lie outside the DTMF band 697–1633 Hz), about −20 dBm0.
    Tone {
        /// Frequency in Hz.
        hz: u32,
    },
}

/// Pipeline settings. Times in milliseconds at 8 kHz.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskConfig {
    /// Recorder-path delay. Must exceed the slowest verdict (DTMF: ~60 ms).
    pub lookahead_ms: u32,
    /// Run the in-band DTMF receiver.
    pub inband_dtmf: bool,
    /// Muted before each span's start (covers onset estimate error).
    pub guard_before_ms: u32,
    /// Muted after each span's end (covers tails and end estimate error).
    pub guard_after_ms: u32,
    /// Gain ramp length outside each muted region (no clicks).
    pub ramp_ms: u32,
    /// What muted audio becomes.
    pub replacement: Replacement,
    /// DTMF receiver settings.
    pub detector: DtmfConfig,
    /// Treat all audio as undecided from the start (a required verdict source, such as the
    /// speech recognizer, is missing): everything is muted and counted as fail-closed until an
    /// owner calls [`MaskPipeline::set_undecided_from`].
    pub undecided_until_told: bool,
}

impl Default for MaskConfig {
    fn default() -> Self {
        MaskConfig {
            lookahead_ms: 80,
            inband_dtmf: true,
            guard_before_ms: 10,
            guard_after_ms: 10,
            ramp_ms: 2,
            replacement: Replacement::Silence,
            detector: DtmfConfig::default(),
            undecided_until_told: false,
        }
    }
}

/// A masked span for reports: media time of the input stream, guards included. Never holds
/// the digit or words that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskSpan {
    /// First muted sample.
    pub start: MediaTime,
    /// One past the last muted sample.
    pub end: MediaTime,
    /// Why.
    pub reason: MaskReason,
}

/// Handle to an open span, returned by [`MaskPipeline::begin_span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanId {
    idx: u16,
    gen: u32,
}

/// What one `process` call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameReport {
    /// Output samples fully replaced (gain 0) in this frame.
    pub muted_samples: u32,
    /// Of those, samples muted only because a verdict was still open (fail closed).
    pub fail_closed_samples: u32,
}

/// Running totals for metrics (plain integers, read at scrape time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Samples output.
    pub samples_out: u64,
    /// Samples output fully muted.
    pub muted_samples: u64,
    /// Samples muted because a verdict was open when they left.
    pub fail_closed_samples: u64,
    /// Spans marked, by any source.
    pub spans_marked: u64,
    /// Samples of marked spans that had already left unmuted when the span was marked
    /// (the look-ahead was too short for that source): a leak, alarmed by the owner.
    pub late_samples: u64,
    /// Spans merged because the table was full.
    pub overflow_merges: u64,
    /// Reports dropped because the owner did not drain `poll_span`.
    pub reports_dropped: u64,
    /// In-band DTMF tones detected.
    pub dtmf_tones: u64,
    /// Samples between the last in-band tone's onset and its confirmation (the receiver's
    /// decision latency; must stay below the look-ahead).
    pub last_dtmf_latency_samples: u64,
    /// Onset of the latest keypad press (in-band tone or RFC 4733 / SIP INFO event), for the
    /// speech masker: a keypad answer ends an ask context ([`crate::spoken::SpeechMasker::note_keypad`]).
    pub last_keypad_onset: Option<MediaTime>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    used: bool,
    gen: u32,
    /// First muted sample (guard included); may be negative near the stream start.
    start: i64,
    /// One past the last muted sample (guard included); `i64::MAX` while open.
    end: i64,
    /// Open holders (begin without end yet).
    open: u8,
    /// Latest end among the holders that have closed.
    closed_end: i64,
    reason: MaskReason,
}

const EMPTY_SLOT: Slot = Slot {
    used: false,
    gen: 0,
    start: 0,
    end: 0,
    open: 0,
    closed_end: i64::MIN,
    reason: MaskReason::FailClosed,
};

/// The recorder-path masking pipeline for one 8 kHz stream. See the module docs.
#[derive(Debug, Clone)]
pub struct MaskPipeline {
    config: MaskConfig,
    delay: DelayLine,
    detector: Option<DtmfDetector>,
    lookahead: i64,
    guard_before: i64,
    guard_after: i64,
    ramp: i64,
    /// Samples consumed so far (media time of the next input sample).
    input_time: i64,
    slots: [Slot; MAX_SPANS],
    open_tone: Option<SpanId>,
    external_undecided: Option<i64>,
    /// Start of the fail-closed run being rendered, for the report.
    fail_run: Option<i64>,
    reports: [MaskSpan; MAX_REPORTS],
    report_head: usize,
    report_len: usize,
    stats: PipelineStats,
    rng: u32,
    phase: u32,
}

impl MaskPipeline {
    /// A pipeline; allocates the delay line and nothing after.
    pub fn new(config: MaskConfig) -> Self {
        let ms = |v: u32| i64::from(v) * SAMPLES_PER_MS as i64;
        let lookahead = ms(config.lookahead_ms);
        MaskPipeline {
            delay: DelayLine::new(lookahead as usize),
            detector: config
                .inband_dtmf
                .then(|| DtmfDetector::new(config.detector)),
            lookahead,
            guard_before: ms(config.guard_before_ms),
            guard_after: ms(config.guard_after_ms),
            ramp: ms(config.ramp_ms).max(1),
            input_time: 0,
            slots: [EMPTY_SLOT; MAX_SPANS],
            open_tone: None,
            external_undecided: config.undecided_until_told.then_some(0),
            fail_run: None,
            reports: [MaskSpan {
                start: MediaTime::ZERO,
                end: MediaTime::ZERO,
                reason: MaskReason::FailClosed,
            }; MAX_REPORTS],
            report_head: 0,
            report_len: 0,
            stats: PipelineStats::default(),
            rng: 0x1234_5678,
            phase: 0,
            config,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &MaskConfig {
        &self.config
    }

    /// The look-ahead in samples (the constant delay between input and output).
    pub fn delay_samples(&self) -> u64 {
        self.lookahead as u64
    }

    /// Media time of the next input sample.
    pub fn input_time(&self) -> MediaTime {
        MediaTime(self.input_time as u64)
    }

    /// Media time (of the input stream) of the next sample to leave. Spans starting before
    /// this are late.
    pub fn output_time(&self) -> MediaTime {
        MediaTime((self.input_time - self.lookahead).max(0) as u64)
    }

    /// Running totals.
    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    /// Process one frame: `input` enters, `output` (same length) receives the samples leaving
    /// the delay line, with every span and undecided region muted.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> FrameReport {
        let n = input.len().min(output.len());
        let (input, output) = (&input[..n], &mut output[..n]);
        self.delay.push_pop(input, output);
        if let Some(det) = self.detector.as_mut() {
            det.process(input);
        }
        while let Some(ev) = self.detector.as_mut().and_then(DtmfDetector::poll_event) {
            match ev {
                ToneEvent::Started { onset, .. } => {
                    self.stats.dtmf_tones += 1;
                    self.stats.last_dtmf_latency_samples =
                        (self.input_time + n as i64 - onset.0 as i64).max(0) as u64;
                    if let Some(old) = self.open_tone.take() {
                        // A start without an end: close the old one at the new onset.
                        self.end_span(old, onset);
                    }
                    self.open_tone = Some(self.begin_span(MaskReason::DtmfInband, onset));
                }
                ToneEvent::Ended { end, .. } => {
                    if let Some(id) = self.open_tone.take() {
                        self.end_span(id, end);
                    }
                }
            }
        }
        let out_start = self.input_time - self.lookahead;
        self.input_time += n as i64;
        let undecided = self.undecided_from();
        let report = self.render(out_start, output, undecided);
        self.retire(out_start + n as i64);
        self.stats.samples_out += n as u64;
        self.stats.muted_samples += u64::from(report.muted_samples);
        self.stats.fail_closed_samples += u64::from(report.fail_closed_samples);
        report
    }

    /// Mark a closed span `[start, end)` (input media time, before guards).
    pub fn mark(&mut self, reason: MaskReason, start: MediaTime, end: MediaTime) {
        let id = self.begin_span(reason, start);
        self.end_span(id, end);
    }

    /// Open a span at `start` (input media time, before the guard); it mutes everything from
    /// there until [`MaskPipeline::end_span`].
    pub fn begin_span(&mut self, reason: MaskReason, start: MediaTime) -> SpanId {
        self.stats.spans_marked += 1;
        if matches!(reason, MaskReason::DtmfInband | MaskReason::Rfc4733) {
            let last = self.stats.last_keypad_onset.get_or_insert(start);
            *last = (*last).max(start);
        }
        let s = start.0 as i64 - self.guard_before;
        let out_now = self.input_time - self.lookahead;
        if s < out_now {
            self.stats.late_samples += (out_now - s.max(0)).max(0) as u64;
        }
        let idx = match self.slots.iter().position(|sl| !sl.used) {
            Some(i) => {
                let gen = self.slots[i].gen.wrapping_add(1);
                self.slots[i] = Slot {
                    used: true,
                    gen,
                    start: s,
                    end: i64::MAX,
                    open: 1,
                    closed_end: i64::MIN,
                    reason,
                };
                i
            }
            None => {
                // Table full: widen the nearest span to cover this one (never drop a mute).
                self.stats.overflow_merges += 1;
                let i = self.nearest_slot(s);
                let sl = &mut self.slots[i];
                sl.start = sl.start.min(s);
                sl.open = sl.open.saturating_add(1);
                sl.end = i64::MAX;
                i
            }
        };
        SpanId {
            idx: idx as u16,
            gen: self.slots[idx].gen,
        }
    }

    /// Close a span opened with `begin_span` at `end` (input media time, before the guard).
    /// Unknown or stale ids are ignored.
    pub fn end_span(&mut self, id: SpanId, end: MediaTime) {
        let guard_after = self.guard_after;
        let Some(sl) = self.slots.get_mut(usize::from(id.idx)) else {
            return;
        };
        if !sl.used || sl.gen != id.gen || sl.open == 0 {
            return;
        }
        let e = (end.0 as i64).saturating_add(guard_after).max(sl.start + 1);
        sl.open -= 1;
        // A merged slot keeps the latest end of its holders and stays open while any is.
        sl.closed_end = sl.closed_end.max(e);
        sl.end = if sl.open > 0 { i64::MAX } else { sl.closed_end };
    }

    /// Tell the pipeline that an outside source (the recognizer) has not decided audio from
    /// `t` on; `None` when it is up to date. Undecided audio that must leave is muted.
    pub fn set_undecided_from(&mut self, t: Option<MediaTime>) {
        self.external_undecided = t.map(|t| t.0 as i64);
    }

    /// Next finished span for the report, oldest first.
    pub fn poll_span(&mut self) -> Option<MaskSpan> {
        if self.report_len == 0 {
            return None;
        }
        let s = self.reports[self.report_head];
        self.report_head = (self.report_head + 1) % MAX_REPORTS;
        self.report_len -= 1;
        Some(s)
    }

    /// Close everything still open at the current input time and report it (end of stream).
    /// Audio still in the delay line is pushed out with `process` on silence first.
    pub fn finish(&mut self) {
        let now = MediaTime(self.input_time.max(0) as u64);
        if let Some(id) = self.open_tone.take() {
            self.end_span(id, now);
        }
        if let Some(start) = self.fail_run.take() {
            self.push_report(
                start,
                self.input_time - self.lookahead,
                MaskReason::FailClosed,
            );
        }
        for i in 0..MAX_SPANS {
            let sl = self.slots[i];
            if sl.used {
                let end = if sl.end == i64::MAX {
                    self.input_time
                } else {
                    sl.end
                };
                self.push_report(sl.start, end, sl.reason);
                self.slots[i].used = false;
            }
        }
    }

    fn undecided_from(&self) -> Option<i64> {
        let det = self
            .detector
            .as_ref()
            .and_then(DtmfDetector::pending_since)
            .map(|t| t.0 as i64 - self.guard_before);
        match (det, self.external_undecided) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn nearest_slot(&self, s: i64) -> usize {
        let mut best = 0;
        let mut best_d = i64::MAX;
        for (i, sl) in self.slots.iter().enumerate() {
            let d = if s < sl.start {
                sl.start - s
            } else if s >= sl.end {
                s - sl.end
            } else {
                0
            };
            if d < best_d {
                best_d = d;
                best = i;
            }
        }
        best
    }

    /// Distance (samples) from `t` to the nearest muted region among `near`; 0 inside one.
    /// Also says whether `t` is inside only the undecided region (fail closed).
    fn distance(near: &[(i64, i64)], t: i64, undecided: Option<i64>) -> (i64, bool) {
        let mut d = i64::MAX;
        for &(start, end) in near {
            let dd = if t < start {
                start - t
            } else if t >= end {
                t - end + 1
            } else {
                return (0, false);
            };
            d = d.min(dd);
        }
        if let Some(u) = undecided {
            if t >= u {
                return (0, true);
            }
            d = d.min(u - t);
        }
        (d, false)
    }

    fn render(
        &mut self,
        out_start: i64,
        output: &mut [i16],
        undecided: Option<i64>,
    ) -> FrameReport {
        let n = output.len() as i64;
        let out_end = out_start + n;
        let r = self.ramp;
        // Only spans within a ramp of this frame matter; gather them once per frame so the
        // per-sample loop looks at one or two spans, not the whole table.
        let mut near = [(0i64, 0i64); MAX_SPANS];
        let mut k = 0;
        for s in &self.slots {
            if s.used && s.start - r < out_end && s.end.saturating_add(r) > out_start {
                near[k] = (s.start, s.end);
                k += 1;
            }
        }
        let near = &near[..k];
        let near_undecided = undecided.is_some_and(|u| u - r < out_end);
        let mut report = FrameReport::default();
        // Fast path: nothing muted or ramping anywhere near this frame.
        if near.is_empty() && !near_undecided {
            if let Some(start) = self.fail_run.take() {
                self.push_report(start, out_start, MaskReason::FailClosed);
            }
            return report;
        }
        for (i, x) in output.iter_mut().enumerate() {
            let t = out_start + i as i64;
            let (d, fail_closed) = Self::distance(near, t, undecided);
            if fail_closed {
                report.fail_closed_samples += 1;
                if self.fail_run.is_none() {
                    self.fail_run = Some(t);
                }
            } else if let Some(start) = self.fail_run.take() {
                self.push_report(start, t, MaskReason::FailClosed);
            }
            if d >= r {
                continue;
            }
            let rep = self.replacement_sample();
            if d == 0 {
                report.muted_samples += 1;
                *x = rep;
            } else {
                let g = d as f32 / r as f32;
                *x = (g * f32::from(*x) + (1.0 - g) * f32::from(rep)) as i16;
            }
        }
        report
    }

    fn replacement_sample(&mut self) -> i16 {
        match self.config.replacement {
            Replacement::Silence => 0,
            Replacement::ComfortNoise => {
                // Numerical Recipes LCG; the top bits are uniform enough for noise.
                self.rng = self.rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((self.rng >> 27) as i16) - 16
            }
            Replacement::Tone { hz } => {
                // 32-bit phase accumulator; −20 dBm0 ≈ peak 2283 (0 dBm0 peak 22826).
                self.phase = self
                    .phase
                    .wrapping_add(((u64::from(hz) << 32) / 8000) as u32);
                let ph = self.phase as f32 / 4_294_967_296.0 * std::f32::consts::TAU;
                (2283.0 * ph.sin()) as i16
            }
        }
    }

    /// Drop spans that can no longer affect output from `out_next` on, reporting them.
    fn retire(&mut self, out_next: i64) {
        for i in 0..MAX_SPANS {
            let sl = self.slots[i];
            if sl.used && sl.open == 0 && sl.end.saturating_add(self.ramp) <= out_next {
                self.push_report(sl.start, sl.end, sl.reason);
                self.slots[i].used = false;
            }
        }
    }

    fn push_report(&mut self, start: i64, end: i64, reason: MaskReason) {
        let span = MaskSpan {
            start: MediaTime(start.max(0) as u64),
            end: MediaTime(end.max(0) as u64),
            reason,
        };
        if span.end <= span.start {
            return;
        }
        if self.report_len == MAX_REPORTS {
            self.report_head = (self.report_head + 1) % MAX_REPORTS;
            self.report_len -= 1;
            self.stats.reports_dropped += 1;
        }
        let at = (self.report_head + self.report_len) % MAX_REPORTS;
        self.reports[at] = span;
        self.report_len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe(lookahead_ms: u32) -> MaskPipeline {
        MaskPipeline::new(MaskConfig {
            lookahead_ms,
            inband_dtmf: false,
            guard_before_ms: 0,
            guard_after_ms: 0,
            ramp_ms: 1,
            ..MaskConfig::default()
        })
    }

    /// Runs `total` samples of a constant 1000 through `p`, calling `hook` before each
    /// 160-sample frame with the frame's input start time; returns the aligned output.
    fn run(
        p: &mut MaskPipeline,
        total: usize,
        mut hook: impl FnMut(&mut MaskPipeline, u64),
    ) -> Vec<i16> {
        let d = p.delay_samples() as usize;
        let input = [1000i16; 160];
        let mut out = vec![0i16; total + d + 160];
        let mut at = 0;
        while at < total + d {
            hook(p, at as u64);
            p.process(&input, &mut out[at..at + 160]);
            at += 160;
        }
        out.drain(..d);
        out.truncate(total);
        out
    }

    #[test]
    fn passes_audio_delayed_when_nothing_marked() {
        let mut p = pipe(20);
        let out = run(&mut p, 1600, |_, _| {});
        assert!(out.iter().all(|&x| x == 1000));
        assert_eq!(p.stats().muted_samples, 0);
    }

    #[test]
    fn span_marked_late_but_within_lookahead_is_muted_from_its_start() {
        let mut p = pipe(80);
        // At input time 800 we learn that [500, 700) was sensitive (300 samples late, < 640).
        let out = run(&mut p, 2000, |p, t| {
            if t == 800 {
                p.mark(MaskReason::SpokenId, MediaTime(500), MediaTime(700));
            }
        });
        assert!(out[500..700].iter().all(|&x| x == 0), "span muted whole");
        assert!(out[..490].iter().all(|&x| x == 1000));
        assert!(out[710..].iter().all(|&x| x == 1000));
        // ramps lie outside the span
        assert!(out[493..500].iter().all(|&x| x > 0 && x < 1000));
        assert_eq!(p.stats().late_samples, 0);
        let span = p.poll_span().expect("reported");
        assert_eq!(
            (span.start, span.end, span.reason),
            (MediaTime(500), MediaTime(700), MaskReason::SpokenId)
        );
    }

    #[test]
    fn too_late_marks_are_counted_as_leaks() {
        let mut p = pipe(10);
        run(&mut p, 1600, |p, t| {
            if t == 960 {
                p.mark(MaskReason::SpokenId, MediaTime(0), MediaTime(100));
            }
        });
        assert!(p.stats().late_samples > 0);
    }

    #[test]
    fn open_span_mutes_until_closed() {
        let mut p = pipe(40);
        let mut id = None;
        let out = run(&mut p, 3200, |p, t| {
            if t == 320 {
                id = Some(p.begin_span(MaskReason::SecureMode, MediaTime(320)));
            }
            if t == 1600 {
                p.end_span(id.expect("opened"), MediaTime(1600));
            }
        });
        assert!(out[320..1600].iter().all(|&x| x == 0));
        assert!(out[1610..].iter().all(|&x| x == 1000));
    }

    #[test]
    fn undecided_audio_fails_closed() {
        let mut p = pipe(20);
        let out = run(&mut p, 1600, |p, t| {
            p.set_undecided_from((480..960).contains(&t).then_some(MediaTime(480)));
        });
        // Audio from 480 left while undecided: muted and counted.
        assert!(out[480..800].iter().all(|&x| x == 0));
        assert!(p.stats().fail_closed_samples >= 320);
        let span = p.poll_span().expect("fail-closed run reported");
        assert_eq!(span.reason, MaskReason::FailClosed);
    }

    #[test]
    fn table_overflow_merges_never_drops() {
        let mut p = pipe(500);
        for k in 0..(MAX_SPANS as u64 + 10) {
            p.mark(
                MaskReason::Rfc4733,
                MediaTime(100 * k + 10),
                MediaTime(100 * k + 20),
            );
        }
        assert!(p.stats().overflow_merges >= 10);
        let out = run(&mut p, 6000, |_, _| {});
        for k in 0..(MAX_SPANS + 10) {
            let s = 100 * k + 10;
            assert!(out[s..s + 10].iter().all(|&x| x == 0), "span {k} muted");
        }
    }

    #[test]
    fn merged_open_spans_stay_open_until_all_close() {
        let mut p = pipe(500);
        for k in 0..MAX_SPANS as u64 {
            p.mark(
                MaskReason::Rfc4733,
                MediaTime(10 * k),
                MediaTime(10 * k + 1),
            );
        }
        let a = p.begin_span(MaskReason::SecureMode, MediaTime(2000));
        let b = p.begin_span(MaskReason::SecureMode, MediaTime(2100));
        p.end_span(a, MediaTime(2200));
        let out = run(&mut p, 4000, |p, t| {
            if t == 3200 {
                p.end_span(b, MediaTime(3200));
            }
        });
        assert!(out[2100..3200].iter().all(|&x| x == 0));
    }

    #[test]
    fn replacements_stay_quiet_or_out_of_band() {
        for rep in [Replacement::ComfortNoise, Replacement::Tone { hz: 2000 }] {
            let mut p = MaskPipeline::new(MaskConfig {
                inband_dtmf: false,
                replacement: rep,
                ..MaskConfig::default()
            });
            p.mark(MaskReason::SecureMode, MediaTime(0), MediaTime(100_000));
            let mut out = [0i16; 160];
            for _ in 0..20 {
                p.process(&[1000; 160], &mut out);
            }
            assert!(out.iter().all(|&x| x != 1000));
            assert!(out.iter().map(|&x| i32::from(x).abs()).max().unwrap_or(0) <= 2300);
        }
    }

    #[test]
    fn missing_verdict_source_mutes_everything() {
        let mut p = MaskPipeline::new(MaskConfig {
            undecided_until_told: true,
            ..MaskConfig::default()
        });
        let mut out = [1i16; 160];
        for _ in 0..20 {
            p.process(&[1000; 160], &mut out);
            assert!(out.iter().all(|&x| x == 0));
        }
        // Everything after the look-ahead's pre-roll (which is silence that never existed).
        assert_eq!(p.stats().fail_closed_samples, 20 * 160 - p.delay_samples());
    }

    #[test]
    fn finish_reports_open_spans() {
        let mut p = pipe(20);
        let _ = p.begin_span(MaskReason::SecureMode, MediaTime(0));
        let mut out = [0i16; 160];
        p.process(&[1; 160], &mut out);
        p.finish();
        let s = p.poll_span().expect("reported");
        assert_eq!(s.reason, MaskReason::SecureMode);
        assert_eq!(s.end, MediaTime(160));
    }
}
