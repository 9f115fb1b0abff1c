//! The calls family: calls in progress and ended (`callmask_calls_*`) and the per-call
//! hot-path counters summed at scrape time (`callmask_rtp_*` packets, bytes, loss, reordering,
//! `callmask_fail_closed_muted_seconds_total`). Owned by the media shell (`io/media.rs`),
//! which hands each call a [`CallStats`], and the signalling shell, which counts outcomes.
//!
//! Per-packet counts do not share a cache line between calls: each call owns a
//! [`CallCounters`] of plain atomics, and a custom [`Collector`] sums the live calls plus a
//! retired-calls accumulator at scrape time. A call's counts move into the accumulator under
//! the same lock the scrape takes, so the exported counters never go backwards when a call
//! ends.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::{by, int_counter_vec, By, Direction, Label, Side};

label_enum! {
    /// How a call ended.
    CallOutcome, "outcome" {
        /// Answered, then ended by BYE.
        Completed => "completed",
        /// Cancelled before answer.
        Cancelled => "cancelled",
        /// Final 3xx–6xx from a peer.
        Failed => "failed",
        /// Refused by callmask itself (bad input, no ports, no route).
        Rejected => "rejected",
        /// Ended by a SIP timer (no final response, no ACK).
        TimedOut => "timed_out",
        /// Torn down by callmask after media inactivity.
        MediaTimeout => "media_timeout",
    }
}

impl From<crate::core::proxy::CallOutcome> for CallOutcome {
    fn from(o: crate::core::proxy::CallOutcome) -> Self {
        use crate::core::proxy::CallOutcome as O;
        match o {
            O::Completed => CallOutcome::Completed,
            O::Cancelled => CallOutcome::Cancelled,
            O::Failed => CallOutcome::Failed,
            O::TimedOut => CallOutcome::TimedOut,
        }
    }
}

/// Per-leg RTP counters of one call: plain atomics, written only by the call's relay task.
#[derive(Debug, Default)]
pub struct LegCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    out_of_order: AtomicU64,
}

impl LegCounters {
    /// One RTP/RTCP packet of `len` bytes (UDP payload) relayed on this leg.
    #[inline]
    pub fn record_packet(&self, len: usize) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Packets and bytes so far (NG `query`).
    pub fn totals(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// `n` packets found missing by sequence-number tracking.
    #[inline]
    pub fn add_lost(&self, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` packets that arrived after a later sequence number.
    #[inline]
    pub fn add_out_of_order(&self, n: u64) {
        self.out_of_order.fetch_add(n, Ordering::Relaxed);
    }

    fn load(&self) -> [u64; 4] {
        [
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
            self.out_of_order.load(Ordering::Relaxed),
        ]
    }
}

const LEGS: usize = 4;

/// One call's hot-path counters. Obtain through [`Metrics::new_call`]; read at scrape time.
#[derive(Debug, Default)]
pub struct CallCounters {
    legs: [LegCounters; LEGS],
    fail_closed_us: AtomicU64,
}

impl CallCounters {
    /// Counters of one leg: `side`, seen from callmask in `direction`.
    #[inline]
    pub fn leg(&self, side: Side, direction: Direction) -> &LegCounters {
        &self.legs[leg_index(side, direction)]
    }

    /// Recorder-bound audio rendered as silence because its verdict was not known in time.
    #[inline]
    pub fn add_fail_closed_samples(&self, samples: u64, sample_rate_hz: u32) {
        let us = samples.saturating_mul(1_000_000) / u64::from(sample_rate_hz.max(1));
        self.fail_closed_us.fetch_add(us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for (i, leg) in self.legs.iter().enumerate() {
            s.legs[i] = leg.load();
        }
        s.fail_closed_us = self.fail_closed_us.load(Ordering::Relaxed);
        s
    }
}

fn leg_index(side: Side, direction: Direction) -> usize {
    side.index() * Direction::ALL.len() + direction.index()
}

/// Summed counter values (live calls or the retired accumulator).
#[derive(Debug, Default, Clone, Copy)]
struct Snapshot {
    /// Per leg: packets, bytes, lost, out of order.
    legs: [[u64; 4]; LEGS],
    fail_closed_us: u64,
}

impl Snapshot {
    fn add(&mut self, other: &Snapshot) {
        for (mine, theirs) in self.legs.iter_mut().zip(other.legs.iter()) {
            for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                *m = m.wrapping_add(*t);
            }
        }
        self.fail_closed_us = self.fail_closed_us.wrapping_add(other.fail_closed_us);
    }
}

/// A call's handle on its [`CallCounters`]. Clone it into every task that counts for the call;
/// when the last clone drops, the call's counts move to the retired accumulator.
#[derive(Debug, Clone)]
pub struct CallStats(Arc<CallStatsInner>);

#[derive(Debug)]
struct CallStatsInner {
    id: u64,
    counters: Arc<CallCounters>,
    agg: Arc<CallAggregator>,
}

impl Deref for CallStats {
    type Target = CallCounters;
    fn deref(&self) -> &CallCounters {
        &self.0.counters
    }
}

impl Drop for CallStatsInner {
    fn drop(&mut self) {
        let mut state = self.agg.lock();
        // All handles are gone: nobody writes these counters any more, and the scrape cannot
        // run between the removal and the add because it needs the same lock.
        if let Some(counters) = state.live.remove(&self.id) {
            let snap = counters.snapshot();
            state.retired.add(&snap);
        }
    }
}

#[derive(Debug, Default)]
struct AggState {
    next_id: u64,
    live: HashMap<u64, Arc<CallCounters>>,
    retired: Snapshot,
}

/// The scrape-time collector over all calls' [`CallCounters`].
#[derive(Debug)]
struct CallAggregator {
    state: Mutex<AggState>,
    active: IntGauge,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    lost: IntCounterVec,
    out_of_order: IntCounterVec,
    fail_closed: Counter,
    legs: [[IntCounter; 4]; LEGS],
}

impl CallAggregator {
    fn new() -> prometheus::Result<Self> {
        let leg_labels = &[Side::NAME, Direction::NAME];
        let packets = IntCounterVec::new(
            Opts::new(
                "callmask_rtp_packets_total",
                "RTP/RTCP packets relayed, by side and direction seen from callmask.",
            ),
            leg_labels,
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "callmask_rtp_bytes_total",
                "RTP/RTCP bytes (UDP payload) relayed, by side and direction.",
            ),
            leg_labels,
        )?;
        let lost = IntCounterVec::new(
            Opts::new(
                "callmask_rtp_lost_packets_total",
                "RTP packets missing by sequence number, by side and direction.",
            ),
            leg_labels,
        )?;
        let out_of_order = IntCounterVec::new(
            Opts::new(
                "callmask_rtp_out_of_order_packets_total",
                "RTP packets arriving after a later sequence number, by side and direction.",
            ),
            leg_labels,
        )?;
        let leg_children = |v: &IntCounterVec| -> [IntCounter; LEGS] {
            let c = |s: Side, d: Direction| v.with_label_values(&[s.as_str(), d.as_str()]);
            // Order matches `leg_index`.
            [
                c(Side::Pbx, Direction::Inbound),
                c(Side::Pbx, Direction::Outbound),
                c(Side::Agents, Direction::Inbound),
                c(Side::Agents, Direction::Outbound),
            ]
        };
        let per_field = [&packets, &bytes, &lost, &out_of_order].map(leg_children);
        // Transpose to [leg][field].
        let legs = std::array::from_fn(|leg| std::array::from_fn(|f| per_field[f][leg].clone()));
        Ok(CallAggregator {
            state: Mutex::new(AggState::default()),
            active: IntGauge::new(
                "callmask_calls_active",
                "Calls in progress (calls holding a metrics handle).",
            )?,
            fail_closed: Counter::new(
                "callmask_fail_closed_muted_seconds_total",
                "Recorder-bound audio rendered as silence because its mask verdict was late.",
            )?,
            packets,
            bytes,
            lost,
            out_of_order,
            legs,
        })
    }

    fn lock(&self) -> MutexGuard<'_, AggState> {
        // A panic while holding the lock leaves plain counters behind, still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(self: &Arc<Self>) -> CallStats {
        let counters = Arc::new(CallCounters::default());
        let id = {
            let mut state = self.lock();
            let id = state.next_id;
            state.next_id += 1;
            state.live.insert(id, Arc::clone(&counters));
            id
        };
        CallStats(Arc::new(CallStatsInner {
            id,
            counters,
            agg: Arc::clone(self),
        }))
    }
}

/// Registered in the [`Registry`]; delegates to the shared aggregator.
struct CallCollector(Arc<CallAggregator>);

impl Collector for CallCollector {
    fn desc(&self) -> Vec<&Desc> {
        let a = &self.0;
        let mut d = a.active.desc();
        d.extend(a.packets.desc());
        d.extend(a.bytes.desc());
        d.extend(a.lost.desc());
        d.extend(a.out_of_order.desc());
        d.extend(a.fail_closed.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let a = &self.0;
        let state = a.lock();
        let mut total = state.retired;
        for counters in state.live.values() {
            total.add(&counters.snapshot());
        }
        a.active
            .set(i64::try_from(state.live.len()).unwrap_or(i64::MAX));
        for (leg, values) in a.legs.iter().zip(total.legs.iter()) {
            for (counter, value) in leg.iter().zip(values.iter()) {
                // Set, not add: the total is recomputed from scratch each scrape, and the lock
                // keeps a concurrent scrape from seeing the intermediate zero.
                counter.reset();
                counter.inc_by(*value);
            }
        }
        a.fail_closed.reset();
        a.fail_closed.inc_by(total.fail_closed_us as f64 / 1e6);
        let mut out = a.active.collect();
        out.extend(a.packets.collect());
        out.extend(a.bytes.collect());
        out.extend(a.lost.collect());
        out.extend(a.out_of_order.collect());
        out.extend(a.fail_closed.collect());
        out
    }
}

/// The calls family: the scrape-time aggregator over every call's counters and the outcome
/// counter.
pub struct CallMetrics {
    calls: Arc<CallAggregator>,
    calls_total: By<CallOutcome, IntCounter>,
}

impl std::fmt::Debug for CallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMetrics").finish_non_exhaustive()
    }
}

impl CallMetrics {
    /// Register the family in `r` and resolve its label children.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let calls = Arc::new(CallAggregator::new()?);
        r.register(Box::new(CallCollector(Arc::clone(&calls))))?;
        let calls_total = int_counter_vec(
            r,
            "callmask_calls_total",
            "Calls ended, by outcome.",
            &[CallOutcome::NAME],
        )?;
        Ok(CallMetrics {
            calls,
            calls_total: by(&calls_total),
        })
    }

    /// Start counting a call: returns the handle its relay task(s) count into. The call is
    /// active (in `callmask_calls_active`) until the last clone of the handle drops.
    pub fn new_call(&self) -> CallStats {
        self.calls.register()
    }

    /// A call ended with `outcome`.
    pub fn call_ended(&self, outcome: CallOutcome) {
        self.calls_total.get(outcome).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{test_series, test_value as value};
    use super::*;

    #[test]
    fn exact_output() {
        let r = Registry::new();
        let m = CallMetrics::register(&r).expect("register");
        let call = m.new_call();
        call.leg(Side::Agents, Direction::Outbound)
            .record_packet(172);
        call.leg(Side::Agents, Direction::Outbound).add_lost(2);
        call.add_fail_closed_samples(4000, 8000);
        m.call_ended(CallOutcome::Completed);
        assert_eq!(
            test_series(&r, "callmask_calls_active"),
            "callmask_calls_active 1\n"
        );
        drop(call);
        assert_eq!(
            test_series(&r, "callmask_calls_total"),
            "callmask_calls_total{outcome=\"cancelled\"} 0\n\
             callmask_calls_total{outcome=\"completed\"} 1\n\
             callmask_calls_total{outcome=\"failed\"} 0\n\
             callmask_calls_total{outcome=\"media_timeout\"} 0\n\
             callmask_calls_total{outcome=\"rejected\"} 0\n\
             callmask_calls_total{outcome=\"timed_out\"} 0\n"
        );
        assert_eq!(
            test_series(&r, "callmask_rtp_bytes_total"),
            "callmask_rtp_bytes_total{direction=\"inbound\",side=\"agents\"} 0\n\
             callmask_rtp_bytes_total{direction=\"inbound\",side=\"pbx\"} 0\n\
             callmask_rtp_bytes_total{direction=\"outbound\",side=\"agents\"} 172\n\
             callmask_rtp_bytes_total{direction=\"outbound\",side=\"pbx\"} 0\n"
        );
        assert_eq!(
            test_series(&r, "callmask_rtp_lost_packets_total"),
            "callmask_rtp_lost_packets_total{direction=\"inbound\",side=\"agents\"} 0\n\
             callmask_rtp_lost_packets_total{direction=\"inbound\",side=\"pbx\"} 0\n\
             callmask_rtp_lost_packets_total{direction=\"outbound\",side=\"agents\"} 2\n\
             callmask_rtp_lost_packets_total{direction=\"outbound\",side=\"pbx\"} 0\n"
        );
        assert_eq!(
            test_series(&r, "callmask_fail_closed_muted_seconds_total"),
            "callmask_fail_closed_muted_seconds_total 0.5\n"
        );
        assert_eq!(
            test_series(&r, "callmask_calls_active"),
            "callmask_calls_active 0\n"
        );
    }

    const PBX_IN: &str = "callmask_rtp_packets_total{direction=\"inbound\",side=\"pbx\"}";
    const AGENTS_OUT_BYTES: &str =
        "callmask_rtp_bytes_total{direction=\"outbound\",side=\"agents\"}";

    #[test]
    fn call_counters_survive_call_end_and_never_go_backwards() {
        let m = crate::metrics::Metrics::new();
        let a = m.calls().new_call();
        let b = m.calls().new_call();
        let a_relay = a.clone();
        for _ in 0..3 {
            a_relay
                .leg(Side::Pbx, Direction::Inbound)
                .record_packet(172);
        }
        b.leg(Side::Pbx, Direction::Inbound).record_packet(172);
        b.leg(Side::Agents, Direction::Outbound).record_packet(100);
        let t = m.render();
        assert_eq!(value(&t, PBX_IN), 4.0);
        assert_eq!(value(&t, AGENTS_OUT_BYTES), 100.0);
        assert_eq!(value(&t, "callmask_calls_active"), 2.0);

        // The call ends in two steps (handle, then relay clone): nothing is lost or doubled.
        drop(a);
        assert_eq!(value(&m.render(), "callmask_calls_active"), 2.0);
        drop(a_relay);
        let t = m.render();
        assert_eq!(value(&t, PBX_IN), 4.0);
        assert_eq!(value(&t, "callmask_calls_active"), 1.0);

        b.leg(Side::Pbx, Direction::Inbound).record_packet(172);
        drop(b);
        let t = m.render();
        assert_eq!(value(&t, PBX_IN), 5.0);
        assert_eq!(value(&t, "callmask_calls_active"), 0.0);
    }

    #[test]
    fn concurrent_calls_and_scrapes_stay_monotonic() {
        let m = Arc::new(crate::metrics::Metrics::new());
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let call = m.calls().new_call();
                        for _ in 0..10 {
                            call.leg(Side::Agents, Direction::Inbound).record_packet(10);
                        }
                        call.leg(Side::Agents, Direction::Inbound).add_lost(1);
                    }
                })
            })
            .collect();
        let series = "callmask_rtp_packets_total{direction=\"inbound\",side=\"agents\"}";
        let mut last = 0.0;
        while !workers.iter().all(|w| w.is_finished()) {
            let v = value(&m.render(), series);
            assert!(v >= last, "went backwards: {last} -> {v}");
            last = v;
        }
        for w in workers {
            w.join().unwrap();
        }
        let t = m.render();
        assert_eq!(value(&t, series), 8000.0);
        assert_eq!(
            value(
                &t,
                "callmask_rtp_lost_packets_total{direction=\"inbound\",side=\"agents\"}"
            ),
            800.0
        );
    }

    #[test]
    fn fail_closed_seconds_from_samples() {
        let m = crate::metrics::Metrics::new();
        let call = m.calls().new_call();
        call.add_fail_closed_samples(8000, 8000);
        call.add_fail_closed_samples(8000, 16000);
        drop(call);
        assert_eq!(
            value(&m.render(), "callmask_fail_closed_muted_seconds_total"),
            1.5
        );
    }
}
