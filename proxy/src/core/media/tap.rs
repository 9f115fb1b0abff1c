//! The recorder path of one call: per direction, RTP time → pipeline time, RFC 4733 events
//! → mask spans, gap fill, the [`MaskPipeline`], and the sanitized [`TapEvent`]s that leave
//! for the recorder. Nothing unsanitized is ever queued here.
//!
//! Time: each direction's pipeline counts samples at the stream's [`SampleRate`];
//! `pipeline time = RTP media time + offset`. The recording keeps the call's wall-clock
//! timeline (issue 12): a gap in the RTP timestamps up to [`MAX_GAP_FILL_MS`] is filled with
//! silence in the pipeline; a longer one (hold, mute, DTX, one side silent for minutes) is not
//! pushed through the pipeline but announced as a [`TapEvent::Skip`], which the recorder adds
//! to the place of everything after it, so the WAV gets silence of exactly the gap's length at
//! the right place. When the RTP time line disagrees with the arrival clock (`now`) by more
//! than [`RTP_JUMP_MS`] (a new SSRC, a timestamp reset or jump) the arrival clock wins. Late
//! and duplicate packets are relayed live but dropped here, counted
//! (`callmask_recorder_dropped_samples_total`) and logged once per call. Audio that cannot be
//! decoded is silence inside a fail-closed span (sidecar mark, `callmask_masked_*` metrics).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsp::mask::{MaskConfig, MaskPipeline, MaskReason, SpanId};
use dsp::rfc4733::{EventTracker, EventUpdate, RtpClock};
use dsp::{MediaTime, SampleRate};

use super::trigger::{KeyMatch, KeyTrigger};
use crate::core::proxy::CallRef;
use crate::core::relay::{RtpPacket, RtpTimestamp, Ssrc};
use crate::core::side::{BySide, Side};
use crate::metrics::{self, CallStats, Metrics};

/// Rate of every tap frame and span time: the masking pipeline's (narrow band). A wide-band
/// codec's PCM is brought to this rate before the pipeline.
pub const TAP_RATE: SampleRate = SampleRate::NARROWBAND;
/// Samples carried by one tap frame at most (40 ms at 8 kHz); longer packets are split.
pub const TAP_FRAME_MAX: usize = 320;
/// Longest gap filled with silence inside the pipeline; a longer one is a [`TapEvent::Skip`]
/// (the recorder places what follows later by the gap's length).
pub const MAX_GAP_FILL_MS: u64 = 200;
/// How far the RTP time line may disagree with the arrival clock before the arrival clock is
/// trusted instead (a new SSRC, a timestamp reset or jump).
pub const RTP_JUMP_MS: u64 = 1_000;
/// Samples an undecodable packet is taken to cover (20 ms at 8 kHz).
const UNDECODABLE_SAMPLES: usize = 160;
/// A packet further than this behind the newest of its direction (same SSRC) is not late
/// but a restart of the sender's timestamps: the direction re-anchors instead of muting
/// everything until the timestamps catch up.
pub const MAX_LATE_MS: u64 = 2_000;
/// How long a SIP INFO key press is assumed to last on the recorder path (RFC 2976 bodies
/// often carry no usable duration; 250 ms covers a long press with margin).
pub const INFO_DTMF_MS: u64 = 300;
/// An RFC 4733 event with no end report ends when the media moved this far past it
/// (200 ms at 8 kHz, in RTP ticks).
const EVENT_END_TIMEOUT_MS: u64 = 200;
/// Tap events held between drains. One packet makes at most a 10 s gap fill (250 frames)
/// plus its own frames and spans; the shell drains after every datagram.
const TAP_QUEUE_MAX: usize = 1024;

static SILENCE: [i16; TAP_FRAME_MAX] = [0; TAP_FRAME_MAX];

/// A sanitized chunk of one direction of a call's audio: this is all a recorder ever gets.
#[derive(Debug, Clone)]
pub struct TapFrame {
    /// The call.
    pub call: CallRef,
    /// The side the audio came from.
    pub from: Side,
    /// Media time (samples at [`TAP_RATE`] since this direction's first packet) of `pcm[0]`.
    pub media_time: MediaTime,
    /// Valid samples in `pcm`.
    pub len: usize,
    /// Sanitized linear PCM at [`TAP_RATE`].
    pub pcm: [i16; TAP_FRAME_MAX],
}

impl TapFrame {
    /// The valid samples.
    pub fn samples(&self) -> &[i16] {
        &self.pcm[..self.len]
    }
}

/// Call metadata for recording sidecars: the SIP Call-ID (to correlate with PBX logs),
/// caller and callee only as keyed hashes, codecs. Never digits heard on the call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallMeta {
    /// SIP Call-ID.
    pub sip_call_id: String,
    /// Caller number, hashed (`h:…`) unless the admin opted in to revealing numbers.
    pub from: String,
    /// Callee number, hashed likewise.
    pub to: String,
    /// Caller and callee numbers in clear (URI user parts), only for a `wav` sink configured
    /// with `hash_numbers = false`; never formatted into logs.
    pub numbers_clear: crate::redact::Redacted<(String, String)>,
    /// Audio codecs in use (encoding names): each stream's first audio codec of the latest
    /// SDP, i.e. the answer's choice once answered; never the whole offer.
    pub codecs: Vec<String>,
    /// The SIP dialog's From and To tags, when a controller told them (NG media-node mode;
    /// the SIP mode leaves them out). Random tokens, not PHI.
    pub tags: Option<DialogTags>,
}

/// A SIP dialog's tags as an NG controller names them (`from-tag`, `to-tag`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialogTags {
    /// `from-tag`: the caller's tag.
    pub from_tag: String,
    /// `to-tag`: the callee's tag.
    pub to_tag: String,
}

/// What the recorder side receives.
#[derive(Debug, Clone)]
pub enum TapEvent {
    /// A call's media started (first Upsert).
    Start {
        /// The call.
        call: CallRef,
        /// Side of the caller (recordings put the caller left).
        caller_side: Side,
        /// Metadata for the sidecar.
        meta: CallMeta,
    },
    /// Sanitized audio.
    Frame(Box<TapFrame>),
    /// A masked span finished (times in this direction's media time). Never digits.
    Span {
        /// The call.
        call: CallRef,
        /// Direction (side the audio came from).
        from: Side,
        /// Start.
        start: MediaTime,
        /// End.
        end: MediaTime,
        /// Why.
        reason: MaskReason,
    },
    /// Direction `from`'s audio from pipeline time `at` on belongs `samples` later in the
    /// call than its media time says (a long gap that was not pushed through the pipeline).
    Skip {
        /// The call.
        call: CallRef,
        /// Direction.
        from: Side,
        /// First media time the skip applies to.
        at: u64,
        /// Samples skipped (8 kHz).
        samples: u64,
    },
    /// The codecs in use changed (the answer named them after the offer's `Start`): the
    /// sidecar lists these, not the offer (issue 12 item 9).
    Codecs {
        /// The call.
        call: CallRef,
        /// Encoding names, one per stream, as in [`CallMeta::codecs`].
        codecs: Vec<String>,
    },
    /// The call's media ended.
    End {
        /// The call.
        call: CallRef,
        /// How long the call lasted, from its media core's creation (the recorder's `Start`)
        /// to its end (before the look-ahead was flushed): the WAV is made that long.
        /// `None`: the recorder uses its own clock.
        length: Option<Duration>,
    },
}

/// Spoken-identifier masking of a call's recorder path, as the media core drives it. The
/// implementation (`io::speech::CallSpeech`) hands segments to the recognizer pool; the
/// shell applies its verdicts through [`super::CallMedia::speech_mut`].
pub trait SpeechHook {
    /// `side`'s media time 0 was at `origin` (first audio), to line the two legs up.
    fn set_origin(&mut self, side: Side, origin: Instant);
    /// `side` skipped `samples` of a long gap (its pipeline time jumped back that much).
    fn rebased(&mut self, side: Side, samples: u64);
    /// `input` is about to enter `side`'s pipeline; bring both pipelines' marks up to date.
    fn before_frame(&mut self, side: Side, input: &[i16], pipes: [&mut MaskPipeline; 2]);
}

/// No speech masking (tests, benches, calls without a recognizer).
#[derive(Debug)]
pub enum NoSpeech {}

impl SpeechHook for NoSpeech {
    fn set_origin(&mut self, _: Side, _: Instant) {
        match *self {}
    }
    fn rebased(&mut self, _: Side, _: u64) {
        match *self {}
    }
    fn before_frame(&mut self, _: Side, _: &[i16], _: [&mut MaskPipeline; 2]) {
        match *self {}
    }
}

/// One direction's recorder path state.
#[derive(Debug)]
pub(crate) struct Direction {
    clock: RtpClock,
    /// Pipeline input time (samples pushed so far).
    pushed: MediaTime,
    /// `pipeline time = rtp media time + offset` (changes only on a long discontinuity).
    offset: i64,
    pub(crate) pipeline: MaskPipeline,
    tracker: EventTracker,
    open_event: Option<SpanId>,
    secure: Option<SpanId>,
    started: bool,
    /// SSRC and newest RTP timestamp seen (to tell a restart from a late packet).
    ssrc: Option<Ssrc>,
    newest_ts: Option<RtpTimestamp>,
    end_timeout: u32,
    /// When audio was last pushed (the arrival-clock check).
    last_push_at: Option<Instant>,
    /// Open fail-closed span over audio the tap cannot decode.
    undecodable: Option<SpanId>,
    /// Whether the undecodable-audio warning was logged for this direction.
    undecodable_warned: bool,
    /// Samples dropped as late (logged at the end of the call).
    late_samples: u64,
    /// RTP timestamp units per 8 kHz sample of the latest audio (Opus 6, else 1): RFC 4733
    /// event times share the stream's RTP clock and are scaled the same way.
    ticks: u64,
}

impl Direction {
    fn new(mask: MaskConfig, rate: SampleRate) -> Self {
        let end_timeout = u32::try_from(rate.samples_in_ms(EVENT_END_TIMEOUT_MS)).unwrap_or(1600);
        Direction {
            clock: RtpClock::new(),
            pushed: MediaTime::ZERO,
            offset: 0,
            pipeline: MaskPipeline::new(mask),
            tracker: EventTracker::new(end_timeout),
            open_event: None,
            secure: None,
            started: false,
            ssrc: None,
            newest_ts: None,
            end_timeout,
            last_push_at: None,
            undecodable: None,
            undecodable_warned: false,
            late_samples: 0,
            ticks: 1,
        }
    }

    /// Places `ts` of `ssrc` on this direction's RTP media time line (advancing it). A new
    /// SSRC, or a timestamp more than `max_late` behind the newest, starts a new time line
    /// that continues where the pipeline input stands: nothing is lost or overlapped.
    /// `None` for a packet from before the line's first timestamp (late, skipped).
    fn track(&mut self, ssrc: Ssrc, ts: RtpTimestamp, max_late: u64) -> Option<MediaTime> {
        let restart = match (self.ssrc, self.newest_ts) {
            (Some(old), _) if old != ssrc => true,
            (_, Some(newest)) => {
                let behind = -i64::from(ts.diff(newest));
                behind > i64::try_from(max_late).unwrap_or(i64::MAX)
            }
            _ => false,
        };
        if restart {
            self.clock = RtpClock::new();
            self.offset = i64::try_from(self.pushed.0).unwrap_or(i64::MAX);
            // An event of the old time line cannot be ended by the new one's reports.
            if let Some(id) = self.open_event.take() {
                self.pipeline.end_span(id, self.pushed);
            }
            self.tracker = EventTracker::new(self.end_timeout);
            self.newest_ts = None;
        }
        self.ssrc = Some(ssrc);
        if self.newest_ts.is_none_or(|n| ts.diff(n) > 0) {
            self.newest_ts = Some(ts);
        }
        self.clock.extend(ts.get())
    }

    fn pipeline_time(&self, ts: u32) -> Option<MediaTime> {
        // RTP ticks to 8 kHz samples as the audio of this direction counts them (Opus: 6).
        let t = self.clock.resolve(ts)?.0 / self.ticks.max(1);
        u64::try_from(i64::try_from(t).ok()? + self.offset)
            .ok()
            .map(MediaTime)
    }
}

/// Both directions' recorder paths and the queue of sanitized output.
pub(crate) struct RecorderPath<S> {
    call: CallRef,
    /// Whether a recorder exists: without one nothing is sanitized or queued (RFC 4733 events
    /// are still tracked, for the metrics and the key trigger).
    enabled: bool,
    rate: SampleRate,
    pub(crate) dirs: BySide<Direction>,
    pub(crate) speech: Option<S>,
    out: VecDeque<TapEvent>,
    metrics: Arc<Metrics>,
    stats: CallStats,
}

impl<S: SpeechHook> RecorderPath<S> {
    pub(crate) fn new(
        call: CallRef,
        enabled: bool,
        mask: MaskConfig,
        metrics: Arc<Metrics>,
        stats: CallStats,
    ) -> Self {
        let rate = TAP_RATE;
        RecorderPath {
            call,
            enabled,
            rate,
            dirs: BySide::from_fn(|_| Direction::new(mask, rate)),
            speech: None,
            out: VecDeque::with_capacity(if enabled { 16 } else { 0 }),
            metrics,
            stats,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    fn emit(&mut self, ev: TapEvent) {
        if !self.enabled {
            return;
        }
        if self.out.len() >= TAP_QUEUE_MAX {
            self.metrics.recorder().tap_queue_dropped(1);
            return;
        }
        self.out.push_back(ev);
    }

    pub(crate) fn start(&mut self, caller_side: Side, meta: CallMeta) {
        let call = self.call;
        self.emit(TapEvent::Start {
            call,
            caller_side,
            meta,
        });
    }

    /// The codecs in use are now `codecs`.
    pub(crate) fn codecs(&mut self, codecs: Vec<String>) {
        let call = self.call;
        self.emit(TapEvent::Codecs { call, codecs });
    }

    pub(crate) fn poll(&mut self) -> Option<TapEvent> {
        self.out.pop_front()
    }

    /// Events queued, and whether they are all audio frames.
    pub(crate) fn backlog(&self) -> (usize, bool) {
        let frames_only = self.out.iter().all(|e| matches!(e, TapEvent::Frame(_)));
        (self.out.len(), frames_only)
    }

    /// An RFC 4733 packet from `side`; key presses go to `trigger` (the caller's only).
    pub(crate) fn event(
        &mut self,
        side: Side,
        packet: &RtpPacket<'_>,
        mut trigger: Option<&mut KeyTrigger>,
    ) -> Option<KeyMatch> {
        let (ts, marker, payload) = (packet.timestamp(), packet.marker(), packet.payload());
        let max_late = self.rate.samples_in_ms(MAX_LATE_MS);
        let dir = &mut self.dirs[side];
        dir.track(packet.ssrc(), ts, max_late);
        let Ok(first) = dir.tracker.handle(ts.get(), marker, payload) else {
            return None;
        };
        let mut key_match = None;
        let mut next = first;
        while let Some(u) = next {
            if let (Some(t), EventUpdate::Began { digit: Some(d), .. }) =
                (trigger.as_deref_mut(), u)
            {
                key_match = t.rfc4733(d).or(key_match);
            }
            self.apply_event(side, u);
            next = self.dirs[side].tracker.poll_update();
        }
        key_match
    }

    fn apply_event(&mut self, side: Side, u: EventUpdate) {
        let dir = &mut self.dirs[side];
        match u {
            EventUpdate::Began { start_ts, .. } => {
                self.metrics
                    .media()
                    .dtmf_detected(metrics::DtmfSource::Rfc4733);
                let Some(start) = dir.pipeline_time(start_ts) else {
                    return;
                };
                if let Some(old) = dir.open_event.take() {
                    dir.pipeline.end_span(old, start);
                }
                dir.open_event = Some(dir.pipeline.begin_span(MaskReason::Rfc4733, start));
            }
            EventUpdate::Extended { .. } => {}
            EventUpdate::Ended { .. } => {
                let end = dir.pipeline_time(u.end_ts());
                if let (Some(id), Some(end)) = (dir.open_event.take(), end) {
                    dir.pipeline.end_span(id, end);
                }
            }
        }
        self.drain_spans(side);
    }

    /// Decoded audio (`None`: audio the tap cannot decode) from `side`, arrived at `now`;
    /// `ticks` RTP timestamp units per 8 kHz sample (Opus 6, else 1). See the module docs
    /// for the timeline rules: [`Self::place`] finds the gap before it, [`Self::mark_start`]
    /// lines the legs up and opens or closes a fail-closed span, [`Self::push`] runs it.
    pub(crate) fn audio(
        &mut self,
        now: Instant,
        side: Side,
        packet: &RtpPacket<'_>,
        pcm: Option<&[i16]>,
        ticks: u32,
    ) {
        let ts = packet.timestamp();
        let ticks = u64::from(ticks.max(1));
        let max_late = self.rate.samples_in_ms(MAX_LATE_MS) * ticks;
        let dir = &mut self.dirs[side];
        dir.ticks = ticks;
        let Some(rtp_time) = dir.track(packet.ssrc(), ts, max_late) else {
            // Before this direction's first timestamp: the path has moved on.
            return;
        };
        if let Some(u) = dir.tracker.expire(ts.get()) {
            self.apply_event(side, u);
        }
        if !self.enabled {
            return;
        }
        let n = pcm.map_or(UNDECODABLE_SAMPLES, <[i16]>::len);
        let Ok(rtp_time) = i64::try_from(rtp_time.0 / ticks) else {
            return;
        };
        let Some(gap) = self.place(now, side, rtp_time, n) else {
            return;
        };
        let t = self.dirs[side].pushed.0 + gap;
        self.mark_start(now, side, t, pcm.is_none(), packet);
        self.push(side, gap, pcm);
    }

    /// The silence to push before a packet of `n` samples at `rtp_time` (in samples), from
    /// its RTP time checked against the arrival clock; `None` for a late or duplicate packet
    /// (relayed live, but the recorder path has moved on). A gap longer than
    /// [`MAX_GAP_FILL_MS`] is not pushed: the recorder is told to skip the rest.
    fn place(&mut self, now: Instant, side: Side, rtp_time: i64, n: usize) -> Option<u64> {
        let hz = f64::from(self.rate.hz());
        let dir = &mut self.dirs[side];
        let pushed = i64::try_from(dir.pushed.0).unwrap_or(i64::MAX);
        let mut rtp_gap = rtp_time + dir.offset - pushed;
        if let Some(last) = dir.last_push_at {
            // The gap the arrival clock implies: time since the previous packet, less this
            // one's own duration (a packet arrives once its audio is complete).
            let elapsed = now.saturating_duration_since(last).as_secs_f64() * hz;
            let wall_gap = (elapsed as i64 - n as i64).max(0);
            let jump = i64::try_from(self.rate.samples_in_ms(RTP_JUMP_MS)).unwrap_or(i64::MAX);
            if (rtp_gap - wall_gap).abs() > jump {
                dir.offset += wall_gap - rtp_gap;
                rtp_gap = wall_gap;
            }
        }
        let Ok(mut gap) = u64::try_from(rtp_gap) else {
            dir.late_samples += n as u64;
            self.metrics.recorder().recorder_dropped_samples(n as u64);
            return None;
        };
        let max_gap = self.rate.samples_in_ms(MAX_GAP_FILL_MS);
        if gap > max_gap && dir.started {
            let skipped = gap - max_gap;
            dir.offset -= i64::try_from(skipped).unwrap_or(i64::MAX);
            let at = (dir.pushed + max_gap).0;
            if let Some(sp) = self.speech.as_mut() {
                sp.rebased(side, skipped);
            }
            let call = self.call;
            self.emit(TapEvent::Skip {
                call,
                from: side,
                at,
                samples: skipped,
            });
            gap = max_gap;
        }
        Some(gap)
    }

    /// At media time `t`: the leg's first audio tells speech where its time 0 lies (to line
    /// the two legs up); undecodable audio opens (decodable audio closes) a fail-closed span.
    fn mark_start(
        &mut self,
        now: Instant,
        side: Side,
        t: u64,
        undecodable: bool,
        packet: &RtpPacket<'_>,
    ) {
        let hz = f64::from(self.rate.hz());
        let dir = &mut self.dirs[side];
        if !dir.started {
            dir.started = true;
            if let Some(sp) = self.speech.as_mut() {
                let ago = Duration::from_secs_f64(t as f64 / hz);
                sp.set_origin(side, now.checked_sub(ago).unwrap_or(now));
            }
        }
        let dir = &mut self.dirs[side];
        dir.last_push_at = Some(now);
        match (undecodable, dir.undecodable.take()) {
            (true, None) => {
                dir.undecodable = Some(
                    dir.pipeline
                        .begin_span(MaskReason::FailClosed, MediaTime(t)),
                );
                if !dir.undecodable_warned {
                    dir.undecodable_warned = true;
                    tracing::warn!(
                        call = self.call.0,
                        side = side.as_str(),
                        payload_type = packet.payload_type().get(),
                        "recorder path muted: audio callmask cannot decode (fail closed)"
                    );
                }
            }
            (true, open) => dir.undecodable = open,
            (false, Some(id)) => dir.pipeline.end_span(id, MediaTime(t)),
            (false, None) => {}
        }
    }

    /// `gap` samples of silence, then the packet's audio (or, undecodable, its silence),
    /// through the pipeline in frames.
    fn push(&mut self, side: Side, mut gap: u64, pcm: Option<&[i16]>) {
        while gap > 0 {
            let k = usize::try_from(gap)
                .unwrap_or(TAP_FRAME_MAX)
                .min(TAP_FRAME_MAX);
            self.run(side, &SILENCE[..k]);
            gap -= k as u64;
        }
        match pcm {
            Some(pcm) => {
                for chunk in pcm.chunks(TAP_FRAME_MAX) {
                    self.run(side, chunk);
                }
            }
            None => self.run(side, &SILENCE[..UNDECODABLE_SAMPLES]),
        }
    }

    /// One frame (≤ [`TAP_FRAME_MAX`] samples) through `side`'s pipeline, out to the tap.
    fn run(&mut self, side: Side, input: &[i16]) {
        if let Some(sp) = self.speech.as_mut() {
            // Segments out, verdicts and the undecided region in, before this frame enters.
            let [a, b] = self.dirs.both_mut();
            sp.before_frame(side, input, [&mut a.pipeline, &mut b.pipeline]);
        }
        let dir = &mut self.dirs[side];
        let mut frame = TapFrame {
            call: self.call,
            from: side,
            media_time: MediaTime::ZERO,
            len: input.len(),
            pcm: [0; TAP_FRAME_MAX],
        };
        let before = dir.pipeline.stats();
        // Output time of this frame's first sample; negative during the look-ahead pre-roll,
        // which is silence that never existed in the call and is not sent.
        let delay = i64::try_from(dir.pipeline.delay_samples()).unwrap_or(i64::MAX);
        let out_start = i64::try_from(dir.pushed.0).unwrap_or(i64::MAX) - delay;
        let report = dir.pipeline.process(input, &mut frame.pcm[..input.len()]);
        dir.pushed = dir.pushed + input.len() as u64;
        let skip = usize::try_from(-out_start).unwrap_or(0).min(input.len());
        if skip > 0 {
            frame.pcm.copy_within(skip..input.len(), 0);
            frame.len = input.len() - skip;
        }
        frame.media_time = MediaTime(u64::try_from(out_start).unwrap_or(0));
        let after = dir.pipeline.stats();
        let hz = f64::from(self.rate.hz());
        for _ in before.dtmf_tones..after.dtmf_tones {
            self.metrics
                .media()
                .dtmf_detected(metrics::DtmfSource::Inband);
            self.metrics.media().mask_decision_latency(
                MaskReason::DtmfInband,
                after.last_dtmf_latency_samples as f64 / hz,
            );
        }
        if report.fail_closed_samples > 0 {
            self.stats
                .add_fail_closed_samples(u64::from(report.fail_closed_samples), self.rate.hz());
        }
        self.drain_spans(side);
        if frame.len > 0 {
            self.emit(TapEvent::Frame(Box::new(frame)));
        }
    }

    fn drain_spans(&mut self, side: Side) {
        let hz = f64::from(self.rate.hz());
        while let Some(s) = self.dirs[side].pipeline.poll_span() {
            self.metrics
                .media()
                .masked_span(s.reason, (s.end - s.start) as f64 / hz);
            let call = self.call;
            self.emit(TapEvent::Span {
                call,
                from: side,
                start: s.start,
                end: s.end,
                reason: s.reason,
            });
        }
    }

    /// Secure mode on (mute both directions from the earliest sample not yet sent: nothing
    /// still in the look-ahead leaves unmuted) or off (from the newest sample in).
    pub(crate) fn secure(&mut self, on: bool) {
        for side in Side::BOTH {
            let d = &mut self.dirs[side];
            match (on, d.secure.take()) {
                (true, None) => {
                    let at = d.pipeline.output_time();
                    d.secure = Some(d.pipeline.begin_span(MaskReason::SecureMode, at));
                }
                (true, Some(id)) => d.secure = Some(id),
                (false, Some(id)) => {
                    let at = d.pipeline.input_time();
                    d.pipeline.end_span(id, at);
                }
                (false, None) => {}
            }
            self.drain_spans(side);
        }
    }

    /// A SIP INFO key press from `from`: mute that direction around now.
    pub(crate) fn info_dtmf(&mut self, from: Side) {
        let len = self.rate.samples_in_ms(INFO_DTMF_MS);
        let d = &mut self.dirs[from];
        let start = d.pipeline.output_time();
        let end = d.pipeline.input_time() + len;
        d.pipeline.mark(MaskReason::Rfc4733, start, end);
    }

    /// Push each started direction's look-ahead worth of silence so its last real audio
    /// leaves the line, close its spans, and queue `End`.
    pub(crate) fn finish(&mut self, length: Option<Duration>) {
        for side in Side::BOTH {
            if !self.dirs[side].started {
                continue;
            }
            let mut left = self.dirs[side].pipeline.delay_samples();
            while left > 0 {
                let n = usize::try_from(left)
                    .unwrap_or(TAP_FRAME_MAX)
                    .min(TAP_FRAME_MAX);
                self.run(side, &SILENCE[..n]);
                left -= n as u64;
            }
            let dir = &mut self.dirs[side];
            if let Some(id) = dir.undecodable.take() {
                let at = dir.pipeline.input_time();
                dir.pipeline.end_span(id, at);
            }
            if dir.late_samples > 0 {
                tracing::warn!(
                    call = self.call.0,
                    side = side.as_str(),
                    samples = dir.late_samples,
                    "recorder path dropped late audio (duplicate or reordered RTP)"
                );
            }
            dir.pipeline.finish();
            self.drain_spans(side);
        }
        let call = self.call;
        self.emit(TapEvent::End { call, length });
    }
}
