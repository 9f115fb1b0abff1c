//! Per-leg receive statistics: RFC 3550 Appendix A.1 (sequence validation with probation and
//! wrap counting), A.3 (expected/lost), A.8 (interarrival jitter, integer form).
//!
//! Plain integer fields updated per packet: no allocation, no clock reads (arrival time is the
//! `now` the worker got from its socket read).
//!
//! One deliberate difference from A.1: a packet recognised as a duplicate (same sequence number
//! seen within the last 64) is counted in `duplicates` and *not* in `received`, so `lost()` does
//! not go negative when a network duplicates packets.

use std::num::NonZeroU32;
use std::time::Instant;

use super::rtp::RtpPacket;
use super::{ExtendedSeqNo, SeqNo, Ssrc};

/// RFC 3550 A.1 constants.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const MIN_SEQUENTIAL: u8 = 2;

/// RTP clock rate in Hz (non-zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClockRate(NonZeroU32);

impl ClockRate {
    /// 8 kHz (G.711, telephone-event).
    pub const NARROWBAND: ClockRate = ClockRate(match NonZeroU32::new(8000) {
        Some(v) => v,
        None => unreachable!(),
    });

    /// `None` for 0 Hz.
    pub const fn new(hz: u32) -> Option<Self> {
        match NonZeroU32::new(hz) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// Hz.
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

/// How [`ReceiveStats::on_packet`] classified a packet's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqClass {
    /// Next expected or ahead within `MAX_DROPOUT` (a gap means loss).
    InOrder,
    /// Behind the highest seen, not seen before.
    OutOfOrder,
    /// Seen before.
    Duplicate,
    /// Source not yet validated (first packets, or after an SSRC change).
    Probation,
    /// A large jump; two in a row restart the sequence (the sender restarted).
    Jump,
}

/// Receive statistics of one leg's incoming RTP stream.
#[derive(Clone, Debug, Default)]
pub struct ReceiveStats {
    /// Valid RTP packets seen (all classes).
    pub packets: u64,
    /// Payload bytes of those packets.
    pub bytes: u64,
    /// Duplicates (seen within the last 64 sequence numbers).
    pub duplicates: u64,
    /// Packets that arrived behind a later one.
    pub out_of_order: u64,
    /// Times the source changed SSRC or restarted its sequence.
    pub restarts: u64,
    ssrc: Option<Ssrc>,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u8,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    history: u64,
    arrival_ref: Option<Instant>,
    transit: Option<u32>,
    jitter_q4: u32,
}

impl ReceiveStats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accounts one valid packet received at `now`, whose payload runs at `clock`.
    pub fn on_packet(&mut self, pkt: &RtpPacket<'_>, now: Instant, clock: ClockRate) -> SeqClass {
        self.packets += 1;
        self.bytes += pkt.payload().len() as u64;
        if self.ssrc != Some(pkt.ssrc()) {
            if self.ssrc.is_some() {
                self.restarts += 1;
            }
            self.ssrc = Some(pkt.ssrc());
            self.init_seq(pkt.seq().get());
            self.max_seq = pkt.seq().get().wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
            self.transit = None;
        }
        let class = self.update_seq(pkt.seq().get());
        match class {
            SeqClass::Duplicate => self.duplicates += 1,
            SeqClass::OutOfOrder => self.out_of_order += 1,
            _ => {}
        }
        if class != SeqClass::Duplicate {
            self.update_jitter(pkt.timestamp().get(), now, clock);
        }
        class
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = 0x1_0001; // RTP_SEQ_MOD + 1: matches no sequence number
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.history = 1;
    }

    /// RFC 3550 A.1 `update_seq`, plus duplicate detection over a 64-bit history window.
    fn update_seq(&mut self, seq: u16) -> SeqClass {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return SeqClass::InOrder;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return SeqClass::Probation;
        }
        if udelta == 0 {
            return SeqClass::Duplicate;
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += 0x1_0000;
            }
            self.max_seq = seq;
            self.history = if udelta >= 64 {
                1
            } else {
                (self.history << udelta) | 1
            };
            self.received += 1;
            return SeqClass::InOrder;
        }
        if udelta <= u16::MAX - MAX_MISORDER + 1 {
            // Very large jump. Two sequential packets after it mean the sender restarted.
            if u32::from(seq) == self.bad_seq {
                self.restarts += 1;
                self.init_seq(seq);
                self.received += 1;
                self.transit = None;
                return SeqClass::InOrder;
            }
            self.bad_seq = u32::from(seq.wrapping_add(1));
            return SeqClass::Jump;
        }
        // Behind max_seq by 1..=MAX_MISORDER: reordered or duplicated.
        let back = self.max_seq.wrapping_sub(seq);
        if back < 64 {
            let bit = 1u64 << back;
            if self.history & bit != 0 {
                return SeqClass::Duplicate;
            }
            self.history |= bit;
        }
        self.received += 1;
        SeqClass::OutOfOrder
    }

    /// RFC 3550 A.8, integer form: `jitter` is kept ×16.
    fn update_jitter(&mut self, ts: u32, now: Instant, clock: ClockRate) {
        let reference = *self.arrival_ref.get_or_insert(now);
        let nanos = now.saturating_duration_since(reference).as_nanos();
        let arrival = (nanos * u128::from(clock.get()) / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(ts);
        if let Some(prev) = self.transit {
            let d = (transit.wrapping_sub(prev) as i32).unsigned_abs();
            let j =
                i64::from(self.jitter_q4) + i64::from(d) - ((i64::from(self.jitter_q4) + 8) >> 4);
            self.jitter_q4 = j.clamp(0, i64::from(u32::MAX)) as u32;
        }
        self.transit = Some(transit);
    }

    /// The SSRC being tracked.
    pub fn ssrc(&self) -> Option<Ssrc> {
        self.ssrc
    }

    /// Highest extended sequence number received (A.1 `cycles + max_seq`).
    pub fn extended_max(&self) -> ExtendedSeqNo {
        ExtendedSeqNo::new((self.cycles >> 16) as u16, SeqNo::new(self.max_seq))
    }

    /// Packets counted as received by A.1 (validated, duplicates excluded).
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Packets expected (A.3): `extended_max - base_seq + 1`, 0 before validation.
    pub fn expected(&self) -> u32 {
        if self.received == 0 {
            return 0;
        }
        (self.cycles + u32::from(self.max_seq))
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Cumulative packets lost (A.3), may be negative with undetected duplicates.
    pub fn lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
    }

    /// Fraction lost since the previous call (A.3), /256, for an RR report block.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        }
    }

    /// Interarrival jitter in timestamp units (A.8 `jitter >> 4`).
    pub fn jitter(&self) -> u32 {
        self.jitter_q4 >> 4
    }

    /// Interarrival jitter in milliseconds at `clock`.
    pub fn jitter_ms(&self, clock: ClockRate) -> f64 {
        f64::from(self.jitter_q4) / 16.0 * 1000.0 / f64::from(clock.get())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::rtp::tests::packet;
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    struct Feed {
        stats: ReceiveStats,
        t0: Instant,
    }

    impl Feed {
        fn new() -> Self {
            Self {
                stats: ReceiveStats::new(),
                t0: t0(),
            }
        }

        /// Packet with `seq`, timestamp `ts`, arriving at `at_ms`.
        fn rx(&mut self, seq: u16, ts: u32, at_ms: u64) -> SeqClass {
            let b = packet(0, seq, ts, 0x1234, &[0; 160]);
            let p = RtpPacket::parse(&b).unwrap();
            let now = self.t0 + Duration::from_millis(at_ms);
            self.stats.on_packet(&p, now, ClockRate::NARROWBAND)
        }
    }

    #[test]
    fn probation_then_in_order() {
        let mut f = Feed::new();
        assert_eq!(f.rx(100, 0, 0), SeqClass::Probation);
        assert_eq!(f.rx(101, 160, 20), SeqClass::InOrder);
        assert_eq!(f.rx(102, 320, 40), SeqClass::InOrder);
        assert_eq!(f.stats.received(), 2);
        assert_eq!(f.stats.expected(), 2);
        assert_eq!(f.stats.lost(), 0);
        assert_eq!(f.stats.packets, 3);
        assert_eq!(f.stats.bytes, 480);
        assert_eq!(f.stats.jitter(), 0, "perfectly paced");
    }

    #[test]
    fn loss_reorder_duplicate() {
        let mut f = Feed::new();
        for s in 0..10u16 {
            f.rx(s, u32::from(s) * 160, u64::from(s) * 20);
        }
        assert_eq!(f.rx(12, 12 * 160, 240), SeqClass::InOrder); // 10, 11 missing
        assert_eq!(f.stats.lost(), 2);
        assert_eq!(f.rx(10, 1600, 245), SeqClass::OutOfOrder);
        assert_eq!(f.rx(10, 1600, 246), SeqClass::Duplicate);
        assert_eq!(f.rx(12, 12 * 160, 247), SeqClass::Duplicate);
        assert_eq!(f.stats.lost(), 1);
        assert_eq!((f.stats.out_of_order, f.stats.duplicates), (1, 2));
        // A.3 fraction: expected 12 (1..=12), received 11 -> 1/12 * 256 = 21
        assert_eq!(f.stats.take_fraction_lost(), 21);
        assert_eq!(f.stats.take_fraction_lost(), 0);
    }

    #[test]
    fn sequence_wraps_into_cycles() {
        let mut f = Feed::new();
        let mut ts = 0;
        for (i, s) in (65530..=65535u16).chain(0..5).enumerate() {
            f.rx(s, ts, i as u64 * 20);
            ts += 160;
        }
        assert_eq!(f.stats.extended_max().get(), 0x0001_0004);
        assert_eq!(f.stats.lost(), 0);
        assert_eq!(f.stats.received(), 10);
    }

    #[test]
    fn restart_after_two_sequential_jumps() {
        let mut f = Feed::new();
        for s in 0..5u16 {
            f.rx(s, u32::from(s) * 160, u64::from(s) * 20);
        }
        assert_eq!(f.rx(40000, 0, 100), SeqClass::Jump);
        assert_eq!(f.rx(40001, 160, 120), SeqClass::InOrder);
        assert_eq!(f.stats.restarts, 1);
        assert_eq!(f.stats.lost(), 0);
    }

    #[test]
    fn jitter_converges_to_a8_value() {
        // Alternate arrival offsets of 0 and +5 ms: |D| = 40 ticks each packet; J -> 40.
        let mut f = Feed::new();
        for s in 0..2000u16 {
            let at = u64::from(s) * 20 + if s % 2 == 1 { 5 } else { 0 };
            f.rx(s, u32::from(s) * 160, at);
        }
        let j = f.stats.jitter();
        assert!((38..=40).contains(&j), "jitter {j}");
        let ms = f.stats.jitter_ms(ClockRate::NARROWBAND);
        assert!((4.7..=5.01).contains(&ms), "jitter {ms} ms");
    }

    #[test]
    fn ssrc_change_restarts_tracking() {
        let mut f = Feed::new();
        for s in 0..5u16 {
            f.rx(s, 0, 0);
        }
        let b = packet(0, 9000, 0, 0x9999, &[]);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(
            f.stats.on_packet(&p, f.t0, ClockRate::NARROWBAND),
            SeqClass::Probation
        );
        assert_eq!(f.stats.restarts, 1);
        assert_eq!(f.stats.ssrc(), Some(Ssrc::new(0x9999)));
    }
}
