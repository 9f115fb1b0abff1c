//! Spoken-identifier masking: VAD → segmenter → recognizer (behind a trait, on a worker) →
//! span policy → marks in the [`crate::mask::MaskPipeline`], failing closed.
//!
//! [`SpeechMasker`] is the sans-IO glue for one leg. Calling rules, per frame of 8 kHz audio,
//! before the pipeline's `process` for the same frame:
//!
//! ```
//! use dsp::mask::{MaskConfig, MaskPipeline, MaskReason};
//! use dsp::spoken::{FakeRecognizer, SpeechConfig, SpeechMasker};
//! let mut pipe = MaskPipeline::new(MaskConfig { lookahead_ms: 2000, ..MaskConfig::default() });
//! let mut sm = SpeechMasker::new(SpeechConfig::for_lookahead_ms(2000)).expect("valid");
//! let mut rec = FakeRecognizer::default();
//! let (frame, mut out) = ([0i16; 160], [0i16; 160]);
//! sm.push(&frame);
//! while let Some(job) = sm.take_job() {
//!     // normally on a worker pool; the result comes back later
//!     let result = job.run(&mut rec);
//!     sm.complete(job.id, result);
//! }
//! while let Some((start, end)) = sm.poll_marks() {
//!     pipe.mark(MaskReason::SpokenId, start, end);
//! }
//! pipe.set_undecided_from(sm.undecided_from());
//! pipe.process(&frame, &mut out);
//! ```
//!
//! Fail closed: [`SpeechMasker::undecided_from`] is the earliest sample of any speech whose
//! verdict is not in (the segment being collected, segments queued or out at a recognizer).
//! The pipeline mutes such audio when it must leave. A result that arrives after the
//! segment's [`Job::deadline`] is dropped (counted in [`SpeechStats::late_results`]) and the
//! segment stays undecided until its audio has left, so it comes out muted whole; a recognizer
//! error marks the whole segment (counted in [`SpeechStats::errors`]).
//!
//! Two legs: an ask ("can I get the card number?") on one leg widens the other leg's mask.
//! Forward [`SpeechMasker::poll_leg_event`] to the other leg's
//! [`SpeechMasker::apply_other_leg`] and keep [`SpeechMasker::set_other_leg_decided_through`]
//! current — or just call [`exchange`] for both legs every frame. A finished segment's marks
//! are held until the other leg is decided through the segment's end (so a late-recognised
//! ask still counts), or until its deadline, when the widened ("ask context") spans are used.
//!
//! PHI: words exist only between [`Recognizer::transcribe`] and [`SpeechMasker::complete`];
//! the masker keeps media times only, and no type here prints words or audio.

mod fake;
pub mod numbers;
pub mod policy;
pub mod segmenter;

use std::collections::VecDeque;

pub use fake::{FakeRecognizer, FakeReply};
pub use numbers::{classify, TokenClass};
pub use policy::{PolicyConfig, SegmentCues, SpanPolicy, Verdict};
pub use segmenter::{Segment, Segmenter, SegmenterConfig};

use crate::{DspError, MediaTime, SampleRate};

const SAMPLES_PER_MS: u64 = 8;

/// One recognised word. Times are offsets from the segment's first sample, in 8 kHz samples
/// (whatever rate the recognizer was fed). `Debug` prints times only, never the text.
#[derive(Clone, PartialEq)]
pub struct Word {
    /// The word as the recognizer wrote it ("4532", "3rd", "five,").
    pub text: String,
    /// Start offset within the segment.
    pub start: MediaTime,
    /// End offset within the segment.
    pub end: MediaTime,
    /// Confidence in 0..=1, if the engine gives one.
    pub confidence: Option<f32>,
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Word")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("confidence", &self.confidence)
            .finish_non_exhaustive()
    }
}

/// Why a recognizer produced no words. Never carries audio-derived text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecognizerError {
    /// The engine failed.
    #[error("recognizer engine failed: {0}")]
    Engine(&'static str),
    /// The engine gave up on time.
    #[error("recognizer timed out")]
    Timeout,
    /// The worker pool refused the job (backlog full).
    #[error("recognizer overloaded")]
    Overloaded,
    /// The input was not usable (rate, length).
    #[error("recognizer input rejected: {0}")]
    BadInput(&'static str),
}

/// A speech recognizer: a PCM segment in, words with times out.
///
/// Runs on a worker pool, never on the per-frame path, so it may allocate and take its time
/// (the segment's [`Job::deadline`] says how much). Implementations must not log the words.
pub trait Recognizer {
    /// Transcribe one segment (mono, 8 or 16 kHz). Word times are offsets from the
    /// segment's first sample in **8 kHz samples**.
    fn transcribe(&mut self, pcm: &[i16], rate: SampleRate) -> Result<Vec<Word>, RecognizerError>;

    /// Where the next segment lies in its stream; engines ignore it (the fake uses it).
    fn segment_hint(&mut self, _start: MediaTime, _end: MediaTime) {}
}

/// Identifies a job for [`SpeechMasker::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

/// A segment to recognise. `Debug` prints times only, never the audio.
pub struct Job {
    /// Pass back to [`SpeechMasker::complete`].
    pub id: JobId,
    /// First sample of the segment (stream media time).
    pub start: MediaTime,
    /// One past the last sample.
    pub end: MediaTime,
    /// Stream time (input side) by which the result must be completed; later results are
    /// dropped and the segment is muted whole.
    pub deadline: MediaTime,
    /// The audio (8 kHz).
    pub pcm: Vec<i16>,
    /// Always 8 kHz here; engines resample as they need.
    pub rate: SampleRate,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("start", &self.start)
            .field("end", &self.end)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// Run this job on `rec` (on a worker).
    pub fn run<R: Recognizer + ?Sized>(&self, rec: &mut R) -> Result<Vec<Word>, RecognizerError> {
        rec.segment_hint(self.start, self.end);
        rec.transcribe(&self.pcm, self.rate)
    }
}

/// What one leg tells the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEvent {
    /// An identifier was asked for (or announced) at this time: opens an ask context.
    Ask(MediaTime),
    /// This leg started a new turn at this time (ends the other leg's answer window).
    TurnStart(MediaTime),
}

impl LegEvent {
    /// The same event on a clock `by` samples ahead.
    fn shifted(self, by: i64) -> LegEvent {
        match self {
            LegEvent::Ask(t) => LegEvent::Ask(shift(t, by)),
            LegEvent::TurnStart(t) => LegEvent::TurnStart(shift(t, by)),
        }
    }
}

/// Speech masking settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechConfig {
    /// The pipeline's look-ahead (must match [`crate::mask::MaskConfig::lookahead_ms`]).
    pub lookahead_ms: u32,
    /// Time reserved for the recognizer after a segment is cut.
    pub recognizer_budget_ms: u32,
    /// Upper bound on segment length (also bounded by the look-ahead).
    pub max_segment_ms: u32,
    /// Safety margin kept before a segment's padded start must leave (pipeline guards).
    pub margin_ms: u32,
    /// An ask context lasts at most this long.
    pub context_max_ms: u32,
    /// An ask context ends at a pause this long in the answering leg once it has spoken.
    pub context_long_pause_ms: u32,
    /// An ask context covers at most this many of the leg's segments after the ask's own
    /// (0 = no limit; continuations of force-cut segments do not count): the answer comes at
    /// once, and on a mono recording (both voices in one channel) nothing else ends it.
    pub context_max_segments: u32,
    /// A segment whose loud frames are a single sinusoid in at least this share (whistle,
    /// held tone; [`segmenter::tonal_fraction`]) is not speech: it is never sent to the
    /// recognizer, mutes nothing, asks nothing and is no turn.
    pub tonal_share: f32,
    /// … where a frame counts as one sinusoid when an order-2 predictor removes this much.
    pub tonal_gain_db: f32,
    /// Segmenter and VAD.
    pub segmenter: SegmenterConfig,
    /// Span policy.
    pub policy: PolicyConfig,
}

impl SpeechConfig {
    /// Defaults for a pipeline look-ahead of `lookahead_ms`.
    pub fn for_lookahead_ms(lookahead_ms: u32) -> Self {
        SpeechConfig {
            lookahead_ms,
            recognizer_budget_ms: 800,
            max_segment_ms: 4000,
            margin_ms: 100,
            context_max_ms: 15_000,
            context_long_pause_ms: 2500,
            context_max_segments: 2,
            tonal_share: 0.8,
            tonal_gain_db: 12.0,
            segmenter: SegmenterConfig::default(),
            policy: PolicyConfig::default(),
        }
    }

    /// Samples between a segment's start and the moment its result must be in.
    fn accept_window(&self) -> i64 {
        let ms = i64::from(self.lookahead_ms)
            - i64::from(self.policy.pad_before_ms)
            - i64::from(self.margin_ms);
        ms * SAMPLES_PER_MS as i64
    }

    /// Longest segment: it must be cut with the recognizer budget still left.
    fn max_segment_samples(&self) -> i64 {
        let by_deadline =
            self.accept_window() - i64::from(self.recognizer_budget_ms) * SAMPLES_PER_MS as i64;
        by_deadline.min(i64::from(self.max_segment_ms) * SAMPLES_PER_MS as i64)
    }
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self::for_lookahead_ms(3000)
    }
}

/// Running totals for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpeechStats {
    /// Speech segments cut.
    pub segments: u64,
    /// Of those, cut because of the length limit.
    pub forced_cuts: u64,
    /// Samples sent to the recognizer.
    pub recognised_samples: u64,
    /// Samples skipped as silence.
    pub silence_samples: u64,
    /// Results applied in time.
    pub results: u64,
    /// Recognizer errors (segment muted whole).
    pub errors: u64,
    /// Results that came after the deadline (dropped; segment muted whole).
    pub late_results: u64,
    /// Segments whose result never came before their audio left (muted whole).
    pub expired: u64,
    /// Held results resolved at the deadline with the widened spans (other leg too slow).
    pub held_to_deadline: u64,
    /// Spans handed out by `poll_marks`.
    pub marks: u64,
    /// Asks detected on this leg.
    pub asks: u64,
    /// Segments taken for tones (whistles), not sent to the recognizer.
    pub tonal_segments: u64,
}

enum State {
    /// Cut, not yet taken by a worker.
    Queued(Vec<i16>),
    /// Out at a recognizer.
    Running,
    /// Result in, marks held for the other leg's context.
    Ready {
        plain: Vec<(MediaTime, MediaTime)>,
        widened: Vec<(MediaTime, MediaTime)>,
        epoch: usize,
    },
}

struct Pending {
    id: JobId,
    start: MediaTime,
    end: MediaTime,
    deadline: MediaTime,
    /// Force-cut: the continuation re-hears audio from here on.
    defer_from: Option<MediaTime>,
    /// Pauses inside the segment (for the policy's answer onset).
    pauses: Vec<(MediaTime, MediaTime)>,
    /// Continues a force-cut segment.
    continuation: bool,
    state: State,
}

/// Ask contexts known to one leg, and the turn timing that ends them. Media times only.
#[derive(Debug, Clone, Default)]
struct Context {
    /// Start of each ask context (bounded; oldest dropped).
    asks: VecDeque<u64>,
    /// Added so far (an epoch counter, never decreases).
    added: usize,
    /// This leg's segments `(start, end)` (bounded).
    own: VecDeque<(u64, u64)>,
    /// The other leg's turn starts (bounded).
    other_turns: VecDeque<u64>,
    /// Starts of this leg's segments that are not continuations of a force-cut one (bounded).
    own_turns: VecDeque<u64>,
    /// Asks answered: `(ask, end of the answer)`; the context ends there (bounded).
    answered: VecDeque<(u64, u64)>,
    /// Contexts opened by an announced value (a turn ending on a dangling copula) rather
    /// than by an ask: the complement of "it's …", "that would be …" is the very next
    /// phrase, so they cover one turn of this leg, not `max_segments` (bounded).
    announced: VecDeque<u64>,
    max: u64,
    long_pause: u64,
    max_segments: usize,
}

const CONTEXT_HISTORY: usize = 64;

/// Frames quieter than this RMS (−50 dBFS) are left out of a segment's tonal share: the
/// noise floor between words is neither a tone nor speech.
const TONAL_MIN_RMS: f32 = 100.0;

fn push_bounded<T>(q: &mut VecDeque<T>, x: T) {
    if q.len() == CONTEXT_HISTORY {
        q.pop_front();
    }
    q.push_back(x);
}

impl Context {
    fn add_ask(&mut self, t: MediaTime) {
        push_bounded(&mut self.asks, t.0);
        self.added += 1;
    }

    /// A context opened by an announced value: one turn long (see `announced`).
    fn add_announced(&mut self, t: MediaTime) {
        push_bounded(&mut self.announced, t.0);
        self.add_ask(t);
    }

    /// Is `t` inside the ask context opened at `a`?
    fn covers(&self, a: u64, t: u64) -> bool {
        if t < a || t >= a + self.max {
            return false;
        }
        if self.answered.iter().any(|&(x, end)| x == a && t >= end) {
            return false;
        }
        let max_segments = if self.announced.contains(&a) {
            1
        } else {
            self.max_segments
        };
        if max_segments > 0
            && self.own_turns.iter().filter(|&&s| s > a && s <= t).count() > max_segments
        {
            return false;
        }
        // The answer starts with this leg's first segment reaching past the ask.
        let Some(first) = self.own.iter().position(|&(_, e)| e > a) else {
            return true;
        };
        let answer_start = self.own[first].0.max(a);
        // A long pause in this leg after the answer started ends it.
        let mut prev_end = self.own[first].1;
        for &(s, e) in self.own.iter().skip(first + 1) {
            if s >= t {
                break;
            }
            if s > prev_end && s - prev_end >= self.long_pause {
                return false;
            }
            prev_end = prev_end.max(e);
        }
        if t > prev_end && t - prev_end >= self.long_pause {
            return false;
        }
        // The other leg taking its turn back ends it.
        !self.other_turns.iter().any(|&u| u > answer_start && u <= t)
    }

    fn active_at(&self, t: MediaTime) -> bool {
        self.asks.iter().any(|&a| self.covers(a, t.0))
    }

    /// A segment `[s, e)` in the contexts open at `s` held an identifier: those asks are
    /// answered, and their contexts end with the segment.
    fn answer(&mut self, s: MediaTime, e: MediaTime) {
        let open: Vec<u64> = self
            .asks
            .iter()
            .copied()
            .filter(|&a| a < s.0 && self.covers(a, s.0))
            .collect();
        for a in open {
            push_bounded(&mut self.answered, (a, e.0));
        }
    }

    /// Did an ask added after `epoch` touch `[s, e)`?
    fn new_ask_overlaps(&self, epoch: usize, s: MediaTime, e: MediaTime) -> bool {
        let new = self.added.saturating_sub(epoch).min(self.asks.len());
        self.asks
            .iter()
            .rev()
            .take(new)
            .any(|&a| a < e.0 && a + self.max > s.0)
    }
}

/// Spoken-identifier masking for one leg; see the module docs for the calling rules.
pub struct SpeechMasker {
    config: SpeechConfig,
    policy: SpanPolicy,
    segmenter: Segmenter,
    accept_window: u64,
    overlap: u64,
    next_id: u64,
    pending: VecDeque<Pending>,
    marks: VecDeque<(MediaTime, MediaTime)>,
    events: VecDeque<LegEvent>,
    context: Context,
    /// Onsets of keypad presses on this leg (bounded).
    keypad: VecDeque<u64>,
    other_through: Option<MediaTime>,
    stats: SpeechStats,
}

impl std::fmt::Debug for SpeechMasker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechMasker")
            .field("time", &self.segmenter.time())
            .field("pending", &self.pending.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SpeechMasker {
    /// A masker; fails when the look-ahead leaves no room for a segment after the recognizer
    /// budget, padding and margin.
    pub fn new(config: SpeechConfig) -> Result<SpeechMasker, DspError> {
        let max_len = config.max_segment_samples();
        if max_len <= 0 {
            return Err(DspError::BadParameter {
                what: "speech lookahead_ms",
                detail: "must exceed recognizer budget + pad_before + margin + a segment",
            });
        }
        let segmenter = Segmenter::new(config.segmenter, max_len as u64)?;
        Ok(SpeechMasker {
            policy: SpanPolicy::new(config.policy),
            segmenter,
            accept_window: config.accept_window() as u64,
            overlap: u64::from(config.segmenter.overlap_ms) * SAMPLES_PER_MS,
            next_id: 0,
            pending: VecDeque::new(),
            marks: VecDeque::new(),
            events: VecDeque::new(),
            context: Context {
                max: u64::from(config.context_max_ms) * SAMPLES_PER_MS,
                long_pause: u64::from(config.context_long_pause_ms) * SAMPLES_PER_MS,
                max_segments: config.context_max_segments as usize,
                ..Context::default()
            },
            keypad: VecDeque::new(),
            other_through: None,
            stats: SpeechStats::default(),
            config,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &SpeechConfig {
        &self.config
    }

    /// Running totals.
    pub fn stats(&self) -> SpeechStats {
        SpeechStats {
            silence_samples: self.segmenter.silence_samples(),
            ..self.stats
        }
    }

    /// Media time of the next sample to push.
    pub fn input_time(&self) -> MediaTime {
        self.segmenter.time()
    }

    /// Segments cut but not decided yet (queued, running or held): the backlog.
    pub fn backlog(&self) -> usize {
        self.pending.len()
    }

    /// Feed this leg's 8 kHz audio (any count, in order). Cuts segments, queues jobs and
    /// applies deadlines.
    pub fn push(&mut self, samples: &[i16]) {
        self.segmenter.push(samples);
        self.collect_segments();
        self.tick();
    }

    /// End of stream: cut the open segment.
    pub fn flush(&mut self) {
        self.segmenter.flush();
        self.collect_segments();
        self.tick();
    }

    /// Next segment to send to a recognizer, oldest first.
    pub fn take_job(&mut self) -> Option<Job> {
        let p = self
            .pending
            .iter_mut()
            .find(|p| matches!(p.state, State::Queued(_)))?;
        let State::Queued(pcm) = std::mem::replace(&mut p.state, State::Running) else {
            return None;
        };
        Some(Job {
            id: p.id,
            start: p.start,
            end: p.end,
            deadline: p.deadline,
            pcm,
            rate: SampleRate::NARROWBAND,
        })
    }

    /// Hand in a job's result. Words are read by the policy here and dropped.
    pub fn complete(&mut self, id: JobId, result: Result<Vec<Word>, RecognizerError>) {
        let now = self.segmenter.time();
        let Some(i) = self.pending.iter().position(|p| p.id == id) else {
            // Unknown, or already expired: its audio left muted.
            self.stats.late_results += 1;
            return;
        };
        if !matches!(self.pending[i].state, State::Running | State::Queued(_)) {
            return;
        }
        if now >= self.pending[i].deadline {
            // Too late to mark ahead of the audio: leave it undecided (muted whole).
            self.stats.late_results += 1;
            return;
        }
        let (start, end) = (self.pending[i].start, self.pending[i].end);
        let defer = self.pending[i].defer_from;
        let pauses = std::mem::take(&mut self.pending[i].pauses);
        let cues = SegmentCues {
            pauses: &pauses,
            continuation: self.pending[i].continuation,
        };
        match result {
            Err(_) => {
                self.stats.errors += 1;
                self.pending.remove(i);
                self.push_mark(start, end);
            }
            Ok(words) => {
                self.stats.results += 1;
                let ctx = &self.context;
                let plain = self
                    .policy
                    .evaluate_cut(&words, start, end, defer, cues, |t| ctx.active_at(t));
                let widened = self
                    .policy
                    .evaluate_cut(&words, start, end, defer, cues, |_| true)
                    .spans;
                // An answer (numbers muted) or keypad presses instead of one end the open
                // contexts; a decode the policy takes for noise does not, nor a turn muted only
                // for its garbled words (a mumbled lead-in is not an answer, and the digits
                // may still come; keypad tones are known from the DTMF detector).
                // (A force-cut turn is judged at its last piece: look back to the turn's start.)
                let turn = ctx
                    .own_turns
                    .iter()
                    .rev()
                    .find(|&&t| t <= start.0)
                    .map_or(start.0, |&t| t.min(start.0));
                let keypad = self.keypad.iter().any(|&k| k >= turn && k < end.0);
                let answered = plain.numbers || keypad;
                if plain.ask.is_none() && defer.is_none() && answered {
                    self.context.answer(start, end);
                }
                drop(words);
                if let Some(a) = plain.ask {
                    self.stats.asks += 1;
                    self.context.add_ask(a);
                    if defer.is_none() && plain.spans.iter().any(|&(_, e)| e > a) {
                        // Asked and answered in one breath ("my card number is 4532 …", a
                        // read-back): this leg's context ends with the segment.
                        push_bounded(&mut self.context.answered, (a.0, end.0));
                    }
                    push_bounded(&mut self.events, LegEvent::Ask(a));
                } else if let Some(a) = plain.announces.filter(|_| defer.is_none()) {
                    // "okay, it's …": the value comes next, on this leg (fail closed).
                    self.context.add_announced(a);
                }
                self.pending[i].state = State::Ready {
                    plain: plain.spans,
                    widened,
                    epoch: self.context.added,
                };
            }
        }
        self.resolve(false);
    }

    /// Next span to mark in the pipeline with [`crate::mask::MaskReason::SpokenId`].
    pub fn poll_marks(&mut self) -> Option<(MediaTime, MediaTime)> {
        self.marks.pop_front()
    }

    /// Earliest sample whose verdict is not in yet; give it to
    /// [`crate::mask::MaskPipeline::set_undecided_from`] before each `process`.
    pub fn undecided_from(&self) -> Option<MediaTime> {
        let pending = self.pending.iter().map(|p| p.start).min();
        match (pending, self.segmenter.open_since()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Next event for the other leg ([`SpeechMasker::apply_other_leg`]).
    pub fn poll_leg_event(&mut self) -> Option<LegEvent> {
        self.events.pop_front()
    }

    /// A keypad press began at `onset` on this leg (in-band tone or RFC 4733 event; the mask
    /// pipeline's [`crate::mask::PipelineStats::last_keypad_onset`]): a segment holding one is
    /// a keypad answer and ends the open ask contexts. Repeated onsets are ignored.
    pub fn note_keypad(&mut self, onset: MediaTime) {
        if self.keypad.back() != Some(&onset.0) {
            push_bounded(&mut self.keypad, onset.0);
        }
    }

    /// Take in an event from the other leg (the agent's ask widens the caller's mask).
    pub fn apply_other_leg(&mut self, event: LegEvent) {
        match event {
            LegEvent::Ask(t) => self.context.add_ask(t),
            LegEvent::TurnStart(t) => push_bounded(&mut self.context.other_turns, t.0),
        }
        self.resolve(false);
    }

    /// How far the other leg is decided (its `undecided_from`, or its input time when fully
    /// decided); `None` for a single leg (marks are never held).
    pub fn set_other_leg_decided_through(&mut self, t: Option<MediaTime>) {
        self.other_through = t;
        self.resolve(false);
    }

    /// How far this leg is decided, for the other leg.
    pub fn decided_through(&self) -> MediaTime {
        self.undecided_from().unwrap_or(self.segmenter.time())
    }

    fn collect_segments(&mut self) {
        while let Some(seg) = self.segmenter.pop() {
            self.stats.segments += 1;
            self.stats.forced_cuts += u64::from(seg.forced);
            let id = JobId(self.next_id);
            self.next_id += 1;
            let tonal =
                segmenter::tonal_fraction(&seg.pcm, self.config.tonal_gain_db, TONAL_MIN_RMS);
            if tonal >= self.config.tonal_share {
                // A whistle or a held tone: decided at once, nothing to mute, no turn.
                self.stats.tonal_segments += 1;
                self.pending.push_back(Pending {
                    id,
                    start: seg.start,
                    end: seg.end,
                    deadline: seg.start + self.accept_window,
                    defer_from: None,
                    pauses: Vec::new(),
                    continuation: seg.continuation,
                    state: State::Ready {
                        plain: Vec::new(),
                        widened: Vec::new(),
                        epoch: self.context.added,
                    },
                });
                continue;
            }
            self.stats.recognised_samples += seg.pcm.len() as u64;
            push_bounded(&mut self.context.own, (seg.start.0, seg.end.0));
            if !seg.continuation {
                push_bounded(&mut self.events, LegEvent::TurnStart(seg.start));
                push_bounded(&mut self.context.own_turns, seg.start.0);
            }
            self.pending.push_back(Pending {
                id,
                start: seg.start,
                end: seg.end,
                deadline: seg.start + self.accept_window,
                defer_from: seg.forced.then(|| seg.end.saturating_sub(self.overlap)),
                pauses: segmenter::pauses(
                    &seg.pcm,
                    seg.start,
                    self.config.policy.pause_ms,
                    self.config.policy.pause_below_db,
                ),
                continuation: seg.continuation,
                state: State::Queued(seg.pcm),
            });
        }
    }

    /// Deadlines: held results resolve with widened spans; undecided segments whose audio
    /// has left entirely are dropped (they were muted whole by the pipeline).
    fn tick(&mut self) {
        self.resolve(true);
        let now = self.segmenter.time();
        let lookahead = u64::from(self.config.lookahead_ms) * SAMPLES_PER_MS;
        let before = self.pending.len();
        self.pending
            .retain(|p| matches!(p.state, State::Ready { .. }) || p.end.0 + lookahead > now.0);
        self.stats.expired += (before - self.pending.len()) as u64;
    }

    fn resolve(&mut self, deadlines: bool) {
        let now = self.segmenter.time();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let State::Ready { epoch, .. } = p.state else {
                i += 1;
                continue;
            };
            let other_done = self.other_through.is_none_or(|t| t >= p.end);
            let at_deadline = deadlines && now >= p.deadline;
            if !other_done && !at_deadline {
                i += 1;
                continue;
            }
            let Some(p) = self.pending.remove(i) else {
                break;
            };
            let State::Ready { plain, widened, .. } = p.state else {
                continue;
            };
            let spans = if !other_done {
                self.stats.held_to_deadline += 1;
                widened
            } else if self.context.new_ask_overlaps(epoch, p.start, p.end) {
                widened
            } else {
                plain
            };
            for (s, e) in spans {
                self.push_mark(s, e);
            }
        }
    }

    fn push_mark(&mut self, s: MediaTime, e: MediaTime) {
        self.stats.marks += 1;
        self.marks.push_back((s, e));
    }
}

/// Forward events and decided-through times between two legs of one call (call every frame
/// after pushing both).
pub fn exchange(a: &mut SpeechMasker, b: &mut SpeechMasker) {
    exchange_offset(a, b, 0);
}

/// [`exchange`] for legs whose media clocks differ (they started at different moments):
/// `t_b = t_a - delta`, in samples.
pub fn exchange_offset(a: &mut SpeechMasker, b: &mut SpeechMasker, delta: i64) {
    while let Some(ev) = a.poll_leg_event() {
        b.apply_other_leg(ev.shifted(-delta));
    }
    while let Some(ev) = b.poll_leg_event() {
        a.apply_other_leg(ev.shifted(delta));
    }
    let (ta, tb) = (a.decided_through(), b.decided_through());
    b.set_other_leg_decided_through(Some(shift(ta, -delta)));
    a.set_other_leg_decided_through(Some(shift(tb, delta)));
}

fn shift(t: MediaTime, by: i64) -> MediaTime {
    MediaTime(t.0.saturating_add_signed(by))
}
