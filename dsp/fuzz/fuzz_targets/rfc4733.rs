//! Arbitrary bytes into the RFC 4733 parsers and the event tracker.
//!
//! The input is used three ways: whole, as a telephone-event payload and as a RED payload;
//! then as a stream of tracker operations, each `[op][ts: u32 LE][len][payload...]`, so the
//! fuzzer can build packet sequences (reordering, lost packets, wraps, long events) as well
//! as malformed payloads. Besides "no panic", it checks the tracker's promises: every
//! `Extended`/`Ended` belongs to the open event and `Began` never overlaps one.
#![no_main]

use dsp::rfc4733::{parse_red, EventTracker, EventUpdate, TelephoneEvent};
use libfuzzer_sys::fuzz_target;

/// Payload type of the telephone-event blocks in RED payloads (the usual dynamic PT).
const EVENT_PT: u8 = 101;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = TelephoneEvent::parse(data) {
        assert_eq!(TelephoneEvent::parse(&e.write()), Ok(e));
    }
    if let Ok(blocks) = parse_red(data) {
        let mut total = 0usize;
        for b in blocks {
            total += b.data.len();
            let _ = TelephoneEvent::parse(b.data);
        }
        assert!(total <= data.len());
    }

    let mut tracker = EventTracker::new(1600);
    let mut open: Option<u32> = None;
    let mut rest = data;
    while let [op, t0, t1, t2, t3, len, tail @ ..] = rest {
        let ts = u32::from_le_bytes([*t0, *t1, *t2, *t3]);
        let n = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        let first = match op % 3 {
            0 => tracker.handle(ts, op & 0x80 != 0, payload).ok().flatten(),
            1 => tracker
                .handle_red(ts, op & 0x80 != 0, payload, EVENT_PT)
                .ok()
                .flatten(),
            _ => tracker.expire(ts),
        };
        let mut next_update = first;
        while let Some(u) = next_update {
            match u {
                EventUpdate::Began { start_ts, .. } => {
                    assert_eq!(open, None);
                    open = Some(start_ts);
                }
                EventUpdate::Extended { start_ts, .. } => assert_eq!(open, Some(start_ts)),
                EventUpdate::Ended { start_ts, .. } => {
                    assert_eq!(open, Some(start_ts));
                    open = None;
                }
            }
            next_update = tracker.poll_update();
        }
    }
    assert_eq!(tracker.open_event(), open);
});
