//! RFC 4733 telephone-events: spec-rule vectors (`tests/vectors/rfc4733/`, one per RFC section
//! and named after it), the eval corpus' labelled event packets (clean and with loss), and
//! property tests for the parser and the tracker.
// Test helpers outside #[test] fns: unwrap on test vectors is the point of failing loudly.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::path::Path;

use dsp::dtmf::Digit;
use dsp::rfc4733::{
    parse_red, EndReason, EventCode, EventTracker, EventUpdate, TelephoneEvent, TrackerStats,
    Volume,
};
use proptest::prelude::*;

/// Payload type of the event blocks inside the RED vectors.
const EVENT_PT: u8 = 101;

/// One packet of a vector file (format in `tests/vectors/README.md`).
#[derive(Debug, Clone)]
struct Packet {
    ts: u32,
    marker: bool,
    red: bool,
    payload: Vec<u8>,
}

fn packets(mut bytes: &[u8]) -> Vec<Packet> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (hdr, rest) = bytes.split_at(6);
        let len = usize::from(hdr[5]);
        out.push(Packet {
            ts: u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]),
            marker: hdr[4] & 1 != 0,
            red: hdr[4] & 2 != 0,
            payload: rest[..len].to_vec(),
        });
        bytes = &rest[len..];
    }
    out
}

/// Feeds every packet and returns the updates, in order.
fn run(t: &mut EventTracker, pkts: &[Packet]) -> Vec<EventUpdate> {
    let mut out = Vec::new();
    for p in pkts {
        let first = if p.red {
            t.handle_red(p.ts, p.marker, &p.payload, EVENT_PT)
        } else {
            t.handle(p.ts, p.marker, &p.payload)
        }
        .expect("vector packets are well-formed");
        out.extend(first);
        while let Some(u) = t.poll_update() {
            out.push(u);
        }
    }
    out
}

fn digit(c: char) -> Option<Digit> {
    Digit::from_char(c)
}

fn began(d: char, start_ts: u32, duration: u32) -> EventUpdate {
    EventUpdate::Began {
        digit: digit(d),
        start_ts,
        duration,
    }
}

fn extended(start_ts: u32, duration: u32) -> EventUpdate {
    EventUpdate::Extended { start_ts, duration }
}

fn ended(start_ts: u32, duration: u32, reason: EndReason) -> EventUpdate {
    EventUpdate::Ended {
        start_ts,
        duration,
        reason,
    }
}

/// §2.3 Figure 1: field layout; the R bit is ignored on receipt and written as zero (§2.3.2).
#[test]
fn rfc4733_s2_3_figure1_report_layout() {
    let bytes = include_bytes!("vectors/rfc4733/s2_3_figure1_report.bin");
    let e = TelephoneEvent::parse(bytes).unwrap();
    assert_eq!(e.code, EventCode::from(digit('5').unwrap()));
    assert_eq!(e.code.digit(), digit('5'));
    assert!(e.end);
    assert_eq!(e.volume, Volume::new(10).unwrap());
    assert_eq!(e.duration, 1600);
    let mut expected = *bytes;
    expected[1] &= !0x40; // R cleared on write
    assert_eq!(e.write(), expected);
    assert!(TelephoneEvent::parse(&bytes[..3]).is_err());
}

/// §2.5.1.2 updates and §2.5.1.4 the end report sent three times: one event, the two
/// retransmissions of the end recognised as duplicates.
#[test]
fn rfc4733_s2_5_1_basic_digit_with_end_retransmissions() {
    let pkts = packets(include_bytes!("vectors/rfc4733/s2_5_1_basic_digit.bin"));
    let mut t = EventTracker::default();
    let u = run(&mut t, &pkts);
    let t0 = 0x1000;
    assert_eq!(
        u,
        [
            began('1', t0, 400),
            extended(t0, 800),
            extended(t0, 1200),
            extended(t0, 1600),
            ended(t0, 1600, EndReason::EndBit),
        ]
    );
    assert_eq!(t.stats().duplicates, 2);
    assert_eq!(t.stats().lost_starts, 0);
    assert_eq!(t.open_event(), None);
}

/// §2.5.2: a receiver that missed the start packet still starts the event from the first
/// report it sees: the RTP timestamp is the event's start whatever the packet.
#[test]
fn rfc4733_s2_5_2_lost_start_packet_still_begins() {
    let pkts = packets(include_bytes!("vectors/rfc4733/s2_5_2_lost_start.bin"));
    let mut t = EventTracker::default();
    let u = run(&mut t, &pkts);
    assert_eq!(
        u,
        [
            began('9', 48000, 800),
            extended(48000, 1200),
            extended(48000, 1440),
            ended(48000, 1440, EndReason::EndBit),
        ]
    );
    assert_eq!(t.stats().lost_starts, 1);
}

/// §2.5.2: all end packets lost; a report with a new timestamp ends the previous event at its
/// last reported duration before the new one begins.
#[test]
fn rfc4733_s2_5_2_lost_end_superseded_by_next_event() {
    let pkts = packets(include_bytes!("vectors/rfc4733/s2_5_2_lost_end.bin"));
    let mut t = EventTracker::default();
    let u = run(&mut t, &pkts);
    assert_eq!(
        u,
        [
            began('4', 8000, 400),
            extended(8000, 800),
            ended(8000, 800, EndReason::Superseded),
            began('#', 10400, 400),
            extended(10400, 800),
            ended(10400, 800, EndReason::EndBit),
        ]
    );
    assert_eq!(t.stats().lost_ends, 1);
}

/// §2.5.2: reordered packets: an overtaken update adds nothing, and a late packet of an earlier
/// event is ignored once a newer event is being tracked.
#[test]
fn rfc4733_s2_5_2_reordered_and_stale_packets_ignored() {
    let pkts = packets(include_bytes!("vectors/rfc4733/s2_5_2_reordered.bin"));
    let mut t = EventTracker::default();
    let u = run(&mut t, &pkts);
    assert_eq!(
        u,
        [
            began('2', 16000, 400),
            extended(16000, 1200),
            extended(16000, 1600),
            ended(16000, 1600, EndReason::EndBit),
            began('3', 20000, 400),
            extended(20000, 800),
            ended(20000, 800, EndReason::EndBit),
        ]
    );
    assert_eq!(t.stats().stale, 1);
    assert_eq!(t.stats().duplicates, 1);
}

/// §2.5.1.3 long-duration events: the duration field saturates at 0xFFFF and the sender starts
/// a new segment at start + 0xFFFF; the tracker reports one event with the joined duration,
/// here across the 2^32 timestamp wrap.
#[test]
fn rfc4733_s2_5_1_3_long_event_segments_joined_across_wrap() {
    let pkts = packets(include_bytes!("vectors/rfc4733/s2_5_1_3_long_event.bin"));
    let mut t = EventTracker::default();
    let u = run(&mut t, &pkts);
    let t0 = 0xffff_8000;
    assert_eq!(
        u,
        [
            began('0', t0, 400),
            extended(t0, 32000),
            extended(t0, 0xffff),
            extended(t0, 0xffff + 400),
            extended(t0, 0xffff + 4000),
            ended(t0, 0xffff + 4000, EndReason::EndBit),
        ]
    );
    assert_eq!(t.stats().segments, 1);
    // Placed on the media line with an RtpClock started at the event: no wrap visible.
    let mut clock = dsp::rfc4733::RtpClock::new();
    clock.extend(t0);
    let (a, b) = u[5].media_span(&clock).unwrap();
    assert_eq!((a.0, b.0), (0, 0xffff + 4000));
}

/// §2.5.1.4 with RFC 2198 redundancy: the "911" scenario. The first RED packet carries the two
/// finished digits as redundant blocks and the running one as primary: three events, the first
/// two complete. The next packet repeats the old blocks (ignored) and extends the primary.
#[test]
fn rfc4733_s2_5_1_4_red_redundancy_911() {
    let pkts = packets(include_bytes!("vectors/rfc4733/s2_5_1_4_red_911.bin"));
    let blocks: Vec<_> = parse_red(&pkts[0].payload).unwrap().collect();
    assert_eq!(blocks.len(), 3);
    assert_eq!(
        blocks.iter().map(|b| b.ts_offset).collect::<Vec<_>>(),
        [11200, 4160, 0]
    );
    assert!(blocks.iter().all(|b| b.pt == EVENT_PT && b.data.len() == 4));

    let mut t = EventTracker::default();
    let u = run(&mut t, &pkts);
    assert_eq!(
        u,
        [
            began('9', 0, 1600),
            ended(0, 1600, EndReason::EndBit),
            began('1', 7040, 2000),
            ended(7040, 2000, EndReason::EndBit),
            began('1', 11200, 400),
            extended(11200, 800),
        ]
    );
    assert_eq!(t.open_event(), Some(11200));
    assert_eq!(t.stats().stale, 2);
    // The missing end is caught up by expire once media runs 200 ms past the last report.
    assert_eq!(t.expire(11200 + 800 + 1600), None);
    assert_eq!(
        t.expire(11200 + 800 + 1601),
        Some(ended(11200, 800, EndReason::Expired))
    );
}

// ---------------------------------------------------------------- eval corpus

const CORPUS: &str = "/work/shared/eval/data/dev";

/// The flat objects of the JSON array under `key` as (name, raw value) pairs. Enough JSON for
/// the corpus labels (flat objects of numbers, booleans and short strings), no dependency.
fn json_objects(json: &str, key: &str) -> Vec<Vec<(String, String)>> {
    let Some(at) = json.find(&format!("\"{key}\"")) else {
        return Vec::new();
    };
    let rest = &json[at..];
    let Some(open) = rest.find('[') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut s = &rest[open + 1..];
    loop {
        let s_trim = s.trim_start();
        if s_trim.starts_with(']') {
            break;
        }
        let (Some(a), Some(b)) = (s.find('{'), s.find('}')) else {
            break;
        };
        if let Some(close) = s.find(']') {
            if close < a {
                break;
            }
        }
        let body = &s[a + 1..b];
        let fields = body
            .split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once(':')?;
                Some((
                    k.trim().trim_matches('"').to_string(),
                    v.trim().trim_matches('"').to_string(),
                ))
            })
            .collect();
        out.push(fields);
        s = &s[b + 1..];
    }
    out
}

fn field<'a>(obj: &'a [(String, String)], name: &str) -> &'a str {
    obj.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("corpus object lacks {name}"))
}

struct Label {
    digit: Option<Digit>,
    start_ts: u32,
    duration: u32,
}

/// (packets, labelled events) of every corpus call that has RFC 4733 events.
fn corpus_calls() -> Option<Vec<(String, Vec<Packet>, Vec<Label>)>> {
    let dir = Path::new(CORPUS);
    let entries = std::fs::read_dir(dir).ok()?;
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    let mut calls = Vec::new();
    for path in names {
        let json = std::fs::read_to_string(&path).ok()?;
        let labels: Vec<Label> = json_objects(&json, "rfc4733_events")
            .iter()
            .map(|o| Label {
                digit: field(o, "digit").chars().next().and_then(Digit::from_char),
                // Corpus convention: RTP timestamp 0 is the first sample of the file, 8 kHz.
                start_ts: field(o, "start_ms").parse::<u32>().unwrap() * 8,
                duration: field(o, "duration_ms").parse::<u32>().unwrap() * 8,
            })
            .collect();
        if labels.is_empty() {
            continue;
        }
        let pkts = json_objects(&json, "rfc4733_packets")
            .iter()
            .map(|o| {
                let e = TelephoneEvent {
                    code: EventCode::new(field(o, "event").parse().unwrap()),
                    end: field(o, "end") == "true",
                    volume: Volume::new(field(o, "volume").parse().unwrap()).unwrap(),
                    duration: field(o, "duration").parse().unwrap(),
                };
                Packet {
                    ts: field(o, "rtp_ts").parse().unwrap(),
                    marker: field(o, "marker") == "true",
                    red: false,
                    payload: e.write().to_vec(),
                }
            })
            .collect();
        let name = path.file_name()?.to_string_lossy().into_owned();
        calls.push((name, pkts, labels));
    }
    Some(calls)
}

/// Every labelled event of the corpus, found with its exact start and duration, and nothing
/// else; end retransmissions all recognised.
#[test]
fn corpus_rfc4733_events_found_exactly() {
    let Some(calls) = corpus_calls() else {
        println!("skipped: eval corpus not found at {CORPUS}");
        return;
    };
    let mut total = 0;
    for (name, pkts, labels) in &calls {
        let mut t = EventTracker::default();
        let u = run(&mut t, pkts);
        let begins: Vec<_> = u
            .iter()
            .filter(|x| matches!(x, EventUpdate::Began { .. }))
            .collect();
        let ends: Vec<_> = u
            .iter()
            .filter(|x| matches!(x, EventUpdate::Ended { .. }))
            .collect();
        assert_eq!(begins.len(), labels.len(), "{name}: events begun");
        assert_eq!(ends.len(), labels.len(), "{name}: events ended");
        for (i, l) in labels.iter().enumerate() {
            let EventUpdate::Began {
                digit, start_ts, ..
            } = *begins[i]
            else {
                unreachable!()
            };
            assert!(digit == l.digit, "{name}: event {i} key differs");
            assert_eq!(start_ts, l.start_ts, "{name}: event {i} start");
            assert_eq!(
                *ends[i],
                ended(l.start_ts, l.duration, EndReason::EndBit),
                "{name}: event {i} end"
            );
        }
        let s = t.stats();
        assert_eq!(
            s.duplicates,
            2 * labels.len() as u64,
            "{name}: 3 end packets each"
        );
        assert_eq!((s.lost_starts, s.lost_ends, s.stale), (0, 0, 0));
        total += labels.len();
    }
    println!(
        "corpus: {total} RFC 4733 events in {} calls matched",
        calls.len()
    );
    assert!(total > 0);
}

/// The same corpus with the start packets (marker) dropped, then with every end packet
/// dropped: every event is still found at its start; without ends, the duration falls short
/// by at most one 20 ms update and the end comes from the next event or from `expire`.
#[test]
fn corpus_rfc4733_events_survive_lost_starts_and_lost_ends() {
    let Some(calls) = corpus_calls() else {
        println!("skipped: eval corpus not found at {CORPUS}");
        return;
    };
    for (name, pkts, labels) in &calls {
        let no_starts: Vec<_> = pkts.iter().filter(|p| !p.marker).cloned().collect();
        let mut t = EventTracker::default();
        let ends: Vec<_> = run(&mut t, &no_starts)
            .into_iter()
            .filter(|x| matches!(x, EventUpdate::Ended { .. }))
            .collect();
        assert_eq!(ends.len(), labels.len(), "{name}");
        for (e, l) in ends.iter().zip(labels) {
            assert_eq!(
                *e,
                ended(l.start_ts, l.duration, EndReason::EndBit),
                "{name}"
            );
        }
        assert_eq!(t.stats().lost_starts, labels.len() as u64);

        let no_ends: Vec<_> = pkts
            .iter()
            .filter(|p| p.payload[1] & 0x80 == 0)
            .cloned()
            .collect();
        let mut t = EventTracker::default();
        let mut u = run(&mut t, &no_ends);
        let last = no_ends.last().map_or(0, |p| p.ts);
        u.extend(t.expire(last.wrapping_add(0x10_0000)));
        let ends: Vec<_> = u
            .iter()
            .filter(|x| matches!(x, EventUpdate::Ended { .. }))
            .collect();
        assert_eq!(ends.len(), labels.len(), "{name}");
        for (e, l) in ends.iter().zip(labels) {
            assert_eq!(e.start_ts(), l.start_ts, "{name}");
            assert!(
                e.duration() <= l.duration && e.duration() + 160 >= l.duration,
                "{name}: duration {} vs {}",
                e.duration(),
                l.duration
            );
        }
    }
}

// ---------------------------------------------------------------- properties

fn any_event() -> impl Strategy<Value = TelephoneEvent> {
    (any::<u8>(), any::<bool>(), 0u8..=63, any::<u16>()).prop_map(|(c, end, v, d)| TelephoneEvent {
        code: EventCode::new(c),
        end,
        volume: Volume::new(v).unwrap(),
        duration: d,
    })
}

/// One step of a stream: a packet (structured reports or raw bytes, plain or RED) or a clock
/// tick for `expire`.
#[derive(Debug, Clone)]
enum Op {
    Packet {
        ts_rel: u32,
        marker: bool,
        payload: Vec<u8>,
    },
    Red {
        ts_rel: u32,
        payload: Vec<u8>,
    },
    Expire {
        ts_rel: u32,
    },
}

/// Timestamps relative to the stream's base, all at least one RED offset (14 bits) in so that
/// redundant blocks never date from before the base.
fn ts_rel() -> impl Strategy<Value = u32> {
    prop_oneof![
        (0u32..25).prop_map(|k| k * 8000),
        (0u32..25).prop_map(|k| k * 8000 + 0xffff),
        0u32..400_000,
    ]
    .prop_map(|t| t + 0x4000)
}

fn report() -> impl Strategy<Value = [u8; 4]> {
    (
        prop_oneof![4 => 0u8..3, 1 => any::<u8>()],
        any::<bool>(),
        prop_oneof![4 => 0u16..4000, 1 => Just(0xffff), 1 => any::<u16>()],
    )
        .prop_map(|(c, end, d)| {
            TelephoneEvent {
                code: EventCode::new(c),
                end,
                volume: Volume::new(10).unwrap(),
                duration: d,
            }
            .write()
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (ts_rel(), any::<bool>(), prop::collection::vec(report(), 1..3)).prop_map(
            |(ts_rel, marker, r)| Op::Packet { ts_rel, marker, payload: r.concat() }
        ),
        1 => (ts_rel(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..12)).prop_map(
            |(ts_rel, marker, payload)| Op::Packet { ts_rel, marker, payload }
        ),
        1 => (ts_rel(), prop::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(ts_rel, payload)| Op::Red { ts_rel, payload }),
        2 => ts_rel().prop_map(|ts_rel| Op::Expire { ts_rel }),
    ]
}

/// Merges `[a, b)` intervals and says whether `[s, e)` lies inside one of them.
fn covered(told: &[(u64, u64)], s: u64, e: u64) -> bool {
    if s >= e {
        return true;
    }
    let mut v: Vec<_> = told.iter().copied().filter(|(a, b)| a < b).collect();
    v.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in v {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged.iter().any(|&(a, b)| a <= s && e <= b)
}

proptest! {
    // Integration tests have no lib.rs for proptest's regression files; failures print the
    // minimal case instead.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn prop_parse_write_round_trip(e in any_event()) {
        prop_assert_eq!(TelephoneEvent::parse(&e.write()), Ok(e));
    }

    #[test]
    fn prop_parse_and_parse_red_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let parsed = TelephoneEvent::parse(&bytes);
        prop_assert_eq!(parsed.is_ok(), bytes.len() >= 4);
        if let Ok(blocks) = parse_red(&bytes) {
            let total: usize = blocks.clone().map(|b| b.data.len()).sum();
            prop_assert!(total <= bytes.len());
            prop_assert_eq!(blocks.filter(|b| b.primary).count(), 1);
        }
    }

    /// The tracker never panics, its updates are balanced (every Extended/Ended belongs to the
    /// open event, a Began never overlaps an open one), and no reported span covers a sample
    /// that no report described.
    #[test]
    fn prop_tracker_reports_only_told_samples(
        base in any::<u32>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut t = EventTracker::new(1600);
        let mut told: Vec<(u64, u64)> = Vec::new();
        let mut open: Option<u32> = None;
        for op in ops {
            let mut updates = Vec::new();
            match op {
                Op::Packet { ts_rel, marker, payload } => {
                    let mut at = u64::from(ts_rel);
                    for e in TelephoneEvent::parse_packed(&payload) {
                        told.push((at, at + u64::from(e.duration)));
                        at += u64::from(e.duration);
                    }
                    let r = t.handle(base.wrapping_add(ts_rel), marker, &payload);
                    prop_assert_eq!(r.is_err(), payload.len() < 4);
                    updates.extend(r.ok().flatten());
                }
                Op::Red { ts_rel, payload } => {
                    if let Ok(blocks) = parse_red(&payload) {
                        for b in blocks.filter(|b| b.pt == EVENT_PT) {
                            if let Ok(e) = TelephoneEvent::parse(b.data) {
                                let at = u64::from(ts_rel - u32::from(b.ts_offset));
                                told.push((at, at + u64::from(e.duration)));
                            }
                        }
                    }
                    let r = t.handle_red(base.wrapping_add(ts_rel), false, &payload, EVENT_PT);
                    updates.extend(r.ok().flatten());
                }
                Op::Expire { ts_rel } => updates.extend(t.expire(base.wrapping_add(ts_rel))),
            }
            while let Some(u) = t.poll_update() {
                updates.push(u);
            }
            for u in updates {
                let start = u64::from(u.start_ts().wrapping_sub(base));
                prop_assert!(
                    covered(&told, start, start + u64::from(u.duration())),
                    "{:?} covers samples never reported", u
                );
                match u {
                    EventUpdate::Began { start_ts, .. } => {
                        prop_assert_eq!(open, None);
                        open = Some(start_ts);
                    }
                    EventUpdate::Extended { start_ts, .. } => {
                        prop_assert_eq!(open, Some(start_ts));
                    }
                    EventUpdate::Ended { start_ts, .. } => {
                        prop_assert_eq!(open, Some(start_ts));
                        open = None;
                    }
                }
            }
        }
        prop_assert_eq!(t.open_event(), open);
        let TrackerStats { dropped_updates, .. } = t.stats();
        prop_assert_eq!(dropped_updates, 0);
    }
}
