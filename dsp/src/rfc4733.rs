//! RFC 4733 telephone-events: the DTMF that never was audio.
//!
//! A phone or gateway may send keypresses as RTP `telephone-event` packets instead of (or as
//! well as) tones in the audio. Nothing in the audio path can see them, yet they still carry
//! card numbers, so the recorder path must know when each event began and ended in *media
//! time* to mute (and not forward) it. This module owns that:
//!
//! - [`TelephoneEvent`]: the 4-byte payload (RFC 4733 §2.3), parse and write, with newtypes
//!   for the event code and volume.
//! - [`parse_red`]: RFC 2198 redundancy, which senders use to repeat recent event reports in
//!   every packet (RFC 4733 §2.5.1.4, §2.6). It walks the caller's buffer; no allocation.
//! - [`EventTracker`]: one per RTP stream, the receiver procedures of RFC 4733 §2.5.2 as a
//!   sans-IO state machine. Packets go in, [`EventUpdate`]s come out, each with the RTP
//!   timestamp span it covers.
//! - [`RtpClock`]: turns 32-bit RTP timestamps into a `u64` [`MediaTime`] so spans can be
//!   compared with the audio's sample count even across the 2^32 wrap.
//!
//! Events are identified by their RTP timestamp (the event's start), never by the digit, and
//! nothing here logs or formats a digit: [`EventCode`]'s `Debug` hides DTMF codes (PHI rule).
//!
//! Calling rules for the tracker:
//! 1. For each telephone-event packet of the stream, in arrival order, call
//!    [`EventTracker::handle`] (or [`EventTracker::handle_red`] for a RED packet) with the RTP
//!    header's timestamp and marker bit. It returns the first pending update.
//! 2. Drain [`EventTracker::poll_update`] until `None`: one packet can end one event and begin
//!    another.
//! 3. As the stream's media advances, call [`EventTracker::expire`] with the newest media RTP
//!    timestamp so an event whose end packets were all lost still ends.
//!
//! While an event is open (between `Began` and `Ended`), a fail-closed consumer should treat it
//! as covering everything from its start onwards: the duration in `Began`/`Extended` is only
//! what the sender has reported so far.

use std::fmt;

use crate::dtmf::Digit;
use crate::error::DspError;
use crate::time::MediaTime;

/// A telephone-event code (RFC 4733 §2.3.1; the IANA registry). 0-15 are the DTMF keys
/// (§3.2); higher codes are other tones and signals (RFC 4734: fax and modem tones, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventCode(u8);

impl EventCode {
    /// Wraps a wire code. Every 8-bit value is a syntactically valid code.
    pub const fn new(code: u8) -> EventCode {
        EventCode(code)
    }

    /// The wire value. Reveals the key for DTMF codes: never log it.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Whether this is one of the sixteen DTMF keys (codes 0-15).
    pub const fn is_dtmf(self) -> bool {
        self.0 < 16
    }

    /// The DTMF key for codes 0-15, `None` for other events.
    pub fn digit(self) -> Option<Digit> {
        Digit::from_event_code(self.0)
    }
}

impl From<Digit> for EventCode {
    fn from(d: Digit) -> EventCode {
        EventCode(d.event_code())
    }
}

impl fmt::Debug for EventCode {
    /// DTMF codes are the digits themselves, so they are redacted; other codes are not PHI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_dtmf() {
            f.write_str("EventCode(<dtmf redacted>)")
        } else {
            write!(f, "EventCode({})", self.0)
        }
    }
}

/// Event power level in −dBm0, 0..=63 (RFC 4733 §2.3.3): 0 is loudest, 63 is −63 dBm0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Volume(u8);

impl Volume {
    /// The largest value the 6-bit field holds.
    pub const MAX: u8 = 63;

    /// `None` above 63.
    pub const fn new(minus_dbm0: u8) -> Option<Volume> {
        if minus_dbm0 <= Self::MAX {
            Some(Volume(minus_dbm0))
        } else {
            None
        }
    }

    /// The level as a positive number of dB below 0 dBm0.
    pub const fn minus_dbm0(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Volume {
    type Error = DspError;
    fn try_from(v: u8) -> Result<Volume, DspError> {
        Volume::new(v).ok_or(DspError::BadParameter {
            what: "RFC 4733 volume",
            detail: "0..=63 (-dBm0)",
        })
    }
}

/// One telephone-event report (RFC 4733 §2.3, Figure 1):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     event     |E|R| volume    |          duration             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TelephoneEvent {
    /// Which event.
    pub code: EventCode,
    /// E bit: this report is the event's last (sent three times, §2.5.1.4).
    pub end: bool,
    /// Power level of the tone.
    pub volume: Volume,
    /// Duration so far, in RTP timestamp units, counted from the packet's RTP timestamp
    /// (the start of the event or of its current segment, §2.5.1.3).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Length of one report on the wire.
    pub const LEN: usize = 4;

    /// Parses the first report of a payload. Bytes after the first four are ignored here
    /// (they are further packed reports, §2.5.1.5; see [`TelephoneEvent::parse_packed`]).
    /// The R bit is ignored on receipt, as §2.3.2 requires.
    pub fn parse(buf: &[u8]) -> Result<TelephoneEvent, DspError> {
        match buf {
            [a, b, c, d, ..] => Ok(TelephoneEvent::from_bytes([*a, *b, *c, *d])),
            _ => Err(DspError::EventTooShort { len: buf.len() }),
        }
    }

    /// Every whole 4-byte report in a payload, in order (§2.5.1.5 packs consecutive events;
    /// each starts where the previous one's duration ends). A ragged tail is ignored.
    pub fn parse_packed(buf: &[u8]) -> impl Iterator<Item = TelephoneEvent> + '_ {
        buf.chunks_exact(Self::LEN)
            .map(|c| TelephoneEvent::from_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Decodes one report; infallible because every bit pattern is a report.
    pub fn from_bytes(b: [u8; 4]) -> TelephoneEvent {
        TelephoneEvent {
            code: EventCode(b[0]),
            end: b[1] & 0x80 != 0,
            volume: Volume(b[1] & 0x3f),
            duration: u16::from_be_bytes([b[2], b[3]]),
        }
    }

    /// The wire form; the R bit is sent as zero (§2.3.2).
    pub fn write(&self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        let e = if self.end { 0x80 } else { 0x00 };
        [self.code.0, e | (self.volume.0 & 0x3f), d0, d1]
    }
}

/// One block of an RFC 2198 redundant payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedBlock<'a> {
    /// The block's RTP payload type (7 bits).
    pub pt: u8,
    /// How far before the packet's RTP timestamp this block's timestamp lies (14 bits);
    /// 0 for the primary block.
    pub ts_offset: u16,
    /// The block's payload.
    pub data: &'a [u8],
    /// Whether this is the primary (last, newest) block.
    pub primary: bool,
}

/// The blocks of a RED payload, oldest first, borrowed from the packet buffer.
/// Built by [`parse_red`], which has already checked every length.
#[derive(Debug, Clone)]
pub struct RedBlocks<'a> {
    buf: &'a [u8],
    /// Next block header.
    header: usize,
    /// Next block's data.
    data: usize,
    done: bool,
}

impl<'a> Iterator for RedBlocks<'a> {
    type Item = RedBlock<'a>;

    fn next(&mut self) -> Option<RedBlock<'a>> {
        if self.done {
            return None;
        }
        let first = *self.buf.get(self.header)?;
        if first & 0x80 == 0 {
            // Primary: 1-byte header; its data is the rest of the payload.
            self.done = true;
            return Some(RedBlock {
                pt: first & 0x7f,
                ts_offset: 0,
                data: self.buf.get(self.data..)?,
                primary: true,
            });
        }
        let h = self.buf.get(self.header..self.header + 4)?;
        let ts_offset = (u16::from(h[1]) << 6) | u16::from(h[2] >> 2);
        let len = (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
        let data = self.buf.get(self.data..self.data + len)?;
        self.header += 4;
        self.data += len;
        Some(RedBlock {
            pt: first & 0x7f,
            ts_offset,
            data,
            primary: false,
        })
    }
}

/// Parses an RFC 2198 RED payload (§3):
///
/// ```text
/// redundant block header (F=1):                         primary header (F=0):
/// |F| block PT  |  timestamp offset (14)  | length (10) |    |F| block PT  |
/// ```
///
/// followed by the blocks' data in header order. Every header and announced length is checked
/// here, so the returned iterator cannot fail. No allocation: blocks borrow from `buf`.
pub fn parse_red(buf: &[u8]) -> Result<RedBlocks<'_>, DspError> {
    let mut pos = 0;
    let mut redundant_len = 0usize;
    loop {
        let Some(&b) = buf.get(pos) else {
            return Err(DspError::RedTruncatedHeader { len: buf.len() });
        };
        if b & 0x80 == 0 {
            pos += 1;
            break;
        }
        let Some(h) = buf.get(pos..pos + 4) else {
            return Err(DspError::RedTruncatedHeader { len: buf.len() });
        };
        redundant_len += (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
        pos += 4;
    }
    let need = pos + redundant_len;
    if need > buf.len() {
        return Err(DspError::RedBlockOverrun {
            need,
            have: buf.len(),
        });
    }
    Ok(RedBlocks {
        buf,
        header: 0,
        data: pos,
        done: false,
    })
}

/// Why an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// A report with the E bit arrived (§2.5.1.4).
    EndBit,
    /// A newer event began before any end report of this one arrived: its end packets were
    /// lost. The duration is the last one reported.
    Superseded,
    /// [`EventTracker::expire`] ended it: no end arrived and the media moved on.
    Expired,
}

/// What the tracker learned from a packet. Spans are in RTP timestamp units: an event covers
/// `[start_ts, start_ts + duration)` (mod 2^32; use [`RtpClock`] or
/// [`EventUpdate::media_span`] to place it on the media time line).
///
/// `duration` is `u32`: a long event is reported in 16-bit segments (§2.5.1.3) that the
/// tracker joins, so the total may exceed 0xFFFF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventUpdate {
    /// A new event. Also reported when the first packet seen is a mid-event update (its start
    /// packets were lost), and when an expired event turns out to go on.
    Began {
        /// The key, for DTMF events (codes 0-15); `None` for other telephone-events.
        /// Its `Debug` is redacted.
        digit: Option<Digit>,
        /// RTP timestamp of the event's first sample.
        start_ts: u32,
        /// Duration reported so far.
        duration: u32,
    },
    /// The open event has grown.
    Extended {
        /// Identifies the event.
        start_ts: u32,
        /// New total duration.
        duration: u32,
    },
    /// The event is over; `duration` is final.
    Ended {
        /// Identifies the event.
        start_ts: u32,
        /// Final duration (the last one reported when the end was lost).
        duration: u32,
        /// How the end was learned.
        reason: EndReason,
    },
}

impl EventUpdate {
    /// RTP timestamp of the event's first sample.
    pub fn start_ts(&self) -> u32 {
        match *self {
            EventUpdate::Began { start_ts, .. }
            | EventUpdate::Extended { start_ts, .. }
            | EventUpdate::Ended { start_ts, .. } => start_ts,
        }
    }

    /// Duration covered so far, in RTP timestamp units.
    pub fn duration(&self) -> u32 {
        match *self {
            EventUpdate::Began { duration, .. }
            | EventUpdate::Extended { duration, .. }
            | EventUpdate::Ended { duration, .. } => duration,
        }
    }

    /// One past the last covered timestamp (mod 2^32).
    pub fn end_ts(&self) -> u32 {
        self.start_ts().wrapping_add(self.duration())
    }

    /// The covered span on the media time line, `[start, end)`; `None` if it starts before the
    /// clock's first timestamp. Assumes RTP ticks are samples (true for 8 kHz
    /// telephone-event, the rate that goes with G.711).
    pub fn media_span(&self, clock: &RtpClock) -> Option<(MediaTime, MediaTime)> {
        let start = clock.resolve(self.start_ts())?;
        Some((start, start + u64::from(self.duration())))
    }
}

/// Counters for metrics and tests: how the stream deviated from the happy path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackerStats {
    /// Reports that added nothing (end retransmissions, redundant copies, reordered updates).
    pub duplicates: u64,
    /// Events first seen through a packet without the marker bit (start packets lost).
    pub lost_starts: u64,
    /// Events ended because a newer one began ([`EndReason::Superseded`]).
    pub lost_ends: u64,
    /// Events ended by [`EventTracker::expire`].
    pub expired: u64,
    /// Packets older than the current event, ignored.
    pub stale: u64,
    /// Long-event segments joined (§2.5.1.3).
    pub segments: u64,
    /// Updates dropped because the caller did not drain [`EventTracker::poll_update`].
    pub dropped_updates: u64,
}

/// Where the current event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    Ended(EndReason),
}

/// The event the tracker follows: the newest one seen.
#[derive(Debug, Clone, Copy)]
struct Current {
    /// RTP timestamp of the first segment: the event's identity.
    start_ts: u32,
    /// RTP timestamp of the segment being reported now.
    seg_ts: u32,
    code: EventCode,
    /// Samples from `start_ts` to the furthest end reported.
    duration: u32,
    phase: Phase,
}

/// Capacity of the update queue. One report yields at most three updates (end of the previous
/// event, begin, end), and one call handles at most [`MAX_REPORTS_PER_CALL`] reports.
const QUEUE_LEN: usize = 64;
/// Reports handled per `handle`/`handle_red` call (packed reports or RED blocks). Senders use
/// a handful (RFC 4733 recommends a few redundant generations); more is abuse, and the
/// newest reports are the ones kept.
const MAX_REPORTS_PER_CALL: usize = 16;

/// RFC 4733 §2.5.2 receiver state for one RTP stream. See the module docs for the calling
/// rules. Fixed size, no allocation.
#[derive(Debug, Clone)]
pub struct EventTracker {
    cur: Option<Current>,
    end_timeout: u32,
    queue: [Option<EventUpdate>; QUEUE_LEN],
    head: usize,
    len: usize,
    stats: TrackerStats,
}

impl Default for EventTracker {
    fn default() -> Self {
        EventTracker::new(Self::DEFAULT_END_TIMEOUT)
    }
}

impl EventTracker {
    /// Default for [`EventTracker::new`]: 200 ms at 8 kHz. Senders update every 50 ms or less
    /// (§2.5.1.2 suggests 50 ms), so this is four missed updates plus jitter. Ending early
    /// costs little: a later report of the same event re-opens it with a fresh `Began`.
    pub const DEFAULT_END_TIMEOUT: u32 = 1600;

    /// A tracker that [`expire`](EventTracker::expire)s an open event once the media timestamp
    /// is more than `end_timeout` RTP ticks past the event's last reported end.
    pub fn new(end_timeout: u32) -> EventTracker {
        EventTracker {
            cur: None,
            // The wrap-aware comparison in `expire` needs the timeout below 2^31.
            end_timeout: end_timeout.min(i32::MAX as u32),
            queue: [None; QUEUE_LEN],
            head: 0,
            len: 0,
            stats: TrackerStats::default(),
        }
    }

    /// Counters since construction.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Whether an event is open, and its start timestamp.
    pub fn open_event(&self) -> Option<u32> {
        self.cur
            .filter(|c| c.phase == Phase::Open)
            .map(|c| c.start_ts)
    }

    /// Feeds one telephone-event packet: `rtp_ts` and `marker` from its RTP header, `payload`
    /// its payload. Several packed reports (§2.5.1.5) are handled in order, each starting
    /// where the previous one's duration ends. Returns the first pending update; drain the
    /// rest with [`poll_update`](EventTracker::poll_update).
    ///
    /// Errors leave the state unchanged (a payload under 4 bytes).
    pub fn handle(
        &mut self,
        rtp_ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Option<EventUpdate>, DspError> {
        TelephoneEvent::parse(payload)?;
        let n = payload.len() / TelephoneEvent::LEN;
        // Keep the newest reports if a sender packs absurdly many.
        let skip = n.saturating_sub(MAX_REPORTS_PER_CALL);
        let mut ts = rtp_ts;
        for (i, ev) in TelephoneEvent::parse_packed(payload).enumerate() {
            if i >= skip {
                self.handle_report(ts, marker && i == 0, ev);
            }
            ts = ts.wrapping_add(u32::from(ev.duration));
        }
        Ok(self.poll_update())
    }

    /// Feeds one RFC 2198 RED packet whose blocks of payload type `event_pt` are
    /// telephone-events (§2.5.1.4 sends recent reports again in each packet). Blocks are
    /// handled oldest first at `rtp_ts - ts_offset`; other payload types and blocks shorter
    /// than a report are skipped. Returns the first pending update, like
    /// [`handle`](EventTracker::handle).
    pub fn handle_red(
        &mut self,
        rtp_ts: u32,
        marker: bool,
        payload: &[u8],
        event_pt: u8,
    ) -> Result<Option<EventUpdate>, DspError> {
        let blocks = parse_red(payload)?;
        let usable = |b: &RedBlock<'_>| b.pt == event_pt && b.data.len() >= TelephoneEvent::LEN;
        let n = blocks.clone().filter(usable).count();
        let skip = n.saturating_sub(MAX_REPORTS_PER_CALL);
        for (i, block) in blocks.filter(usable).enumerate() {
            if i < skip {
                continue;
            }
            // Checked by `usable`; `parse` cannot fail here.
            if let Ok(ev) = TelephoneEvent::parse(block.data) {
                let ts = rtp_ts.wrapping_sub(u32::from(block.ts_offset));
                self.handle_report(ts, marker && block.primary, ev);
            }
        }
        Ok(self.poll_update())
    }

    /// Next pending update, oldest first.
    pub fn poll_update(&mut self) -> Option<EventUpdate> {
        if self.len == 0 {
            return None;
        }
        let u = self.queue[self.head].take();
        self.head = (self.head + 1) % QUEUE_LEN;
        self.len -= 1;
        u
    }

    /// Ends the open event if the stream's media has moved more than the end timeout past its
    /// last reported end: its end packets were all lost (§2.5.2 leaves this to the receiver).
    /// `now_ts` is the RTP timestamp of the newest media, on the same clock as the events.
    pub fn expire(&mut self, now_ts: u32) -> Option<EventUpdate> {
        let cur = self.cur.as_mut()?;
        if cur.phase != Phase::Open {
            return None;
        }
        let end = cur.start_ts.wrapping_add(cur.duration);
        let past = now_ts.wrapping_sub(end) as i32;
        if past <= 0 || past as u32 <= self.end_timeout {
            return None;
        }
        cur.phase = Phase::Ended(EndReason::Expired);
        self.stats.expired += 1;
        Some(EventUpdate::Ended {
            start_ts: cur.start_ts,
            duration: cur.duration,
            reason: EndReason::Expired,
        })
    }

    /// One report at timestamp `ts`: the §2.5.2 receiver rules.
    fn handle_report(&mut self, ts: u32, marker: bool, ev: TelephoneEvent) {
        let Some(cur) = self.cur else {
            self.begin(ts, marker, ev);
            return;
        };
        let since_seg = ts.wrapping_sub(cur.seg_ts) as i32;
        if since_seg == 0 {
            // Same segment: an update, an end, or a retransmission of either.
            let total = cur
                .seg_ts
                .wrapping_sub(cur.start_ts)
                .saturating_add(u32::from(ev.duration));
            self.grow(total, ev.end);
            return;
        }
        if since_seg < 0 {
            // Older than what we follow: a reordered packet of an earlier segment or event,
            // or a redundant copy. The newer reports already cover it.
            self.stats.stale += 1;
            return;
        }
        // A newer timestamp. The next segment of a long event starts where the previous
        // segment's reports reached (§2.5.1.3), with the same code and no end seen.
        let since_start = ts.wrapping_sub(cur.start_ts);
        let continues = ev.code == cur.code
            && cur.phase != Phase::Ended(EndReason::EndBit)
            && since_start <= cur.duration;
        if continues {
            if let Some(c) = self.cur.as_mut() {
                c.seg_ts = ts;
            }
            self.stats.segments += 1;
            self.grow(since_start.saturating_add(u32::from(ev.duration)), ev.end);
            return;
        }
        // A new event. If the previous one is still open, its end packets were lost.
        if cur.phase == Phase::Open {
            self.stats.lost_ends += 1;
            self.push(EventUpdate::Ended {
                start_ts: cur.start_ts,
                duration: cur.duration,
                reason: EndReason::Superseded,
            });
        }
        self.begin(ts, marker, ev);
    }

    fn begin(&mut self, ts: u32, marker: bool, ev: TelephoneEvent) {
        if !marker {
            self.stats.lost_starts += 1;
        }
        let duration = u32::from(ev.duration);
        self.cur = Some(Current {
            start_ts: ts,
            seg_ts: ts,
            code: ev.code,
            duration,
            phase: Phase::Open,
        });
        self.push(EventUpdate::Began {
            digit: ev.code.digit(),
            start_ts: ts,
            duration,
        });
        if ev.end {
            self.finish(EndReason::EndBit);
        }
    }

    /// A report for the current event says it lasts `total` samples from its start.
    fn grow(&mut self, total: u32, end: bool) {
        let Some(cur) = self.cur.as_mut() else {
            return;
        };
        let longer = total > cur.duration;
        match cur.phase {
            Phase::Open => {
                if longer {
                    cur.duration = total;
                    let u = EventUpdate::Extended {
                        start_ts: cur.start_ts,
                        duration: total,
                    };
                    self.push(u);
                } else if !end {
                    self.stats.duplicates += 1;
                }
                if end {
                    self.finish(EndReason::EndBit);
                }
            }
            Phase::Ended(EndReason::Expired) if longer => {
                // We gave up too early: the event goes on. Re-open it, covering all of it.
                cur.duration = total;
                cur.phase = Phase::Open;
                let u = EventUpdate::Began {
                    digit: cur.code.digit(),
                    start_ts: cur.start_ts,
                    duration: total,
                };
                self.push(u);
                if end {
                    self.finish(EndReason::EndBit);
                }
            }
            // End retransmissions (§2.5.1.4) and late copies of an ended event.
            Phase::Ended(_) => self.stats.duplicates += 1,
        }
    }

    fn finish(&mut self, reason: EndReason) {
        let Some(cur) = self.cur.as_mut() else {
            return;
        };
        cur.phase = Phase::Ended(reason);
        let u = EventUpdate::Ended {
            start_ts: cur.start_ts,
            duration: cur.duration,
            reason,
        };
        self.push(u);
    }

    fn push(&mut self, u: EventUpdate) {
        if self.len == QUEUE_LEN {
            self.stats.dropped_updates += 1;
            return;
        }
        let tail = (self.head + self.len) % QUEUE_LEN;
        self.queue[tail] = Some(u);
        self.len += 1;
    }
}

/// Extends 32-bit RTP timestamps to a `u64` [`MediaTime`] counted from the stream's first
/// timestamp.
///
/// Why: RTP timestamps start at a random value and wrap at 2^32 (about 6.2 days at 8 kHz, but
/// a random start can put the wrap in the first second of a call), and an event that
/// straddles the wrap has a start above its end. The delay line and the mask count samples
/// in `u64`; this puts events on that line. Timestamps are read as serial numbers (RFC 1982):
/// one within 2^31 after the newest seen is newer, otherwise older (a reordered packet).
#[derive(Debug, Clone, Copy, Default)]
pub struct RtpClock {
    /// First timestamp seen (media time 0).
    first: Option<u32>,
    /// Newest timestamp seen.
    newest: u32,
    /// Media time of `newest`.
    newest_ext: u64,
}

impl RtpClock {
    /// A clock that has seen nothing; the first timestamp given becomes media time 0.
    pub fn new() -> RtpClock {
        RtpClock::default()
    }

    /// Records `ts` (advancing the clock if it is newer) and returns its media time;
    /// `None` if it lies before the first timestamp seen.
    pub fn extend(&mut self, ts: u32) -> Option<MediaTime> {
        if self.first.is_none() {
            self.first = Some(ts);
            self.newest = ts;
            self.newest_ext = 0;
        }
        let t = self.resolve(ts)?;
        if t.0 > self.newest_ext {
            self.newest = ts;
            self.newest_ext = t.0;
        }
        Some(t)
    }

    /// The media time of `ts` without advancing the clock; `None` before the first timestamp
    /// or before any timestamp was seen.
    pub fn resolve(&self, ts: u32) -> Option<MediaTime> {
        self.first?;
        let delta = i64::from(ts.wrapping_sub(self.newest) as i32);
        let t = i64::try_from(self.newest_ext).ok()?.checked_add(delta)?;
        u64::try_from(t).ok().map(MediaTime)
    }

    /// Media time of the newest timestamp seen.
    pub fn latest(&self) -> Option<MediaTime> {
        self.first.map(|_| MediaTime(self.newest_ext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent {
            code: EventCode::new(code),
            end,
            volume: Volume(10),
            duration,
        }
        .write()
    }

    fn feed(t: &mut EventTracker, ts: u32, marker: bool, payload: &[u8]) -> Vec<EventUpdate> {
        let first = t.handle(ts, marker, payload).unwrap();
        let mut v: Vec<_> = first.into_iter().collect();
        while let Some(u) = t.poll_update() {
            v.push(u);
        }
        v
    }

    #[test]
    fn parse_rejects_short_and_ignores_reserved_bit_s2_3() {
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(DspError::EventTooShort { len: 3 })
        );
        let with_r = TelephoneEvent::parse(&[0x05, 0x40 | 0x0a, 0x01, 0x90]).unwrap();
        let without = TelephoneEvent::parse(&[0x05, 0x0a, 0x01, 0x90]).unwrap();
        assert_eq!(with_r, without);
        assert_eq!(with_r.duration, 400);
        assert_eq!(with_r.volume.minus_dbm0(), 10);
        assert_eq!(with_r.write(), [0x05, 0x0a, 0x01, 0x90]);
    }

    #[test]
    fn event_code_debug_hides_dtmf() {
        assert_eq!(
            format!("{:?}", EventCode::new(7)),
            "EventCode(<dtmf redacted>)"
        );
        assert_eq!(format!("{:?}", EventCode::new(32)), "EventCode(32)");
        let e = TelephoneEvent::parse(&ev(9, false, 1)).unwrap();
        assert!(!format!("{e:?}").contains('9'));
        assert!(Volume::try_from(64).is_err());
    }

    #[test]
    fn red_parse_and_errors_rfc2198() {
        // Two redundant blocks (offsets 320 and 160, 4 bytes each) and a primary.
        let mut p = vec![0x80 | 101, (320 >> 6) as u8, ((320 & 0x3f) << 2) as u8, 4];
        p.extend([0x80 | 101, (160 >> 6) as u8, ((160 & 0x3f) << 2) as u8, 4]);
        p.push(101);
        p.extend(ev(1, false, 160));
        p.extend(ev(1, false, 320));
        p.extend(ev(1, false, 480));
        let blocks: Vec<_> = parse_red(&p).unwrap().collect();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].ts_offset, 320);
        assert_eq!(blocks[1].ts_offset, 160);
        assert!(blocks[2].primary && blocks[2].ts_offset == 0);
        assert_eq!(blocks[2].data, &ev(1, false, 480));
        assert_eq!(
            parse_red(&[]).err(),
            Some(DspError::RedTruncatedHeader { len: 0 })
        );
        assert_eq!(
            parse_red(&p[..3]).err(),
            Some(DspError::RedTruncatedHeader { len: 3 })
        );
        assert_eq!(
            parse_red(&p[..10]).err(),
            Some(DspError::RedBlockOverrun { need: 17, have: 10 })
        );
    }

    #[test]
    fn tracker_long_event_segments_s2_5_1_3() {
        let mut t = EventTracker::default();
        let t0 = 0xffff_0000u32; // and straddle the 2^32 wrap on the way
        feed(&mut t, t0, true, &ev(5, false, 400));
        let u = feed(&mut t, t0, false, &ev(5, false, 0xffff));
        assert_eq!(
            u,
            [EventUpdate::Extended {
                start_ts: t0,
                duration: 0xffff
            }]
        );
        // New segment at start + 0xFFFF, same event.
        let seg = t0.wrapping_add(0xffff);
        let u = feed(&mut t, seg, false, &ev(5, false, 800));
        assert_eq!(
            u,
            [EventUpdate::Extended {
                start_ts: t0,
                duration: 0xffff + 800
            }]
        );
        let u = feed(&mut t, seg, false, &ev(5, true, 1000));
        assert_eq!(u.len(), 2);
        assert_eq!(
            u[1],
            EventUpdate::Ended {
                start_ts: t0,
                duration: 0xffff + 1000,
                reason: EndReason::EndBit
            }
        );
        assert_eq!(t.stats().segments, 1);
    }

    #[test]
    fn expire_then_late_update_reopens() {
        let mut t = EventTracker::new(800);
        feed(&mut t, 1000, true, &ev(3, false, 160));
        assert_eq!(t.expire(1000 + 160 + 800), None);
        assert_eq!(
            t.expire(1000 + 160 + 801),
            Some(EventUpdate::Ended {
                start_ts: 1000,
                duration: 160,
                reason: EndReason::Expired
            })
        );
        assert_eq!(t.expire(99_999), None);
        let u = feed(&mut t, 1000, false, &ev(3, false, 320));
        assert!(matches!(
            u[..],
            [EventUpdate::Began {
                start_ts: 1000,
                duration: 320,
                ..
            }]
        ));
    }

    #[test]
    fn packed_reports_s2_5_1_5() {
        let mut t = EventTracker::default();
        let mut p = ev(1, true, 800).to_vec();
        p.extend(ev(2, false, 400));
        let u = feed(&mut t, 5000, true, &p);
        assert_eq!(u.len(), 3);
        assert!(matches!(
            u[2],
            EventUpdate::Began {
                start_ts: 5800,
                duration: 400,
                ..
            }
        ));
    }

    #[test]
    fn rtp_clock_wraps_and_reorders() {
        let mut c = RtpClock::new();
        assert_eq!(c.resolve(5), None);
        assert_eq!(c.extend(u32::MAX - 99), Some(MediaTime(0)));
        assert_eq!(c.extend(60), Some(MediaTime(160)));
        assert_eq!(c.extend(u32::MAX - 19), Some(MediaTime(80))); // reordered, older
        assert_eq!(c.latest(), Some(MediaTime(160)));
        assert_eq!(c.extend(u32::MAX - 200), None); // before the first
        assert_eq!(
            c.extend(60 + 0x7000_0000),
            Some(MediaTime(160 + 0x7000_0000))
        );
        assert_eq!(
            c.extend(60 + 0xE000_0000),
            Some(MediaTime(160 + 0xE000_0000))
        );
        // More than a whole wrap later.
        assert_eq!(
            c.extend(60 + 0x5000_0000),
            Some(MediaTime(160 + 0x1_5000_0000))
        );
    }
}
