//! RTP/RTCP port-pair allocator over the configured range (`media.ports`).
//!
//! Pairs are (even RTP, odd RTCP = RTP + 1), as RFC 3550 §11 recommends. Allocation and release
//! are O(1): a FIFO free list (so a port is reused as late as possible) and a FIFO quarantine
//! (every pair waits the same configured time, so the queue stays ordered by release time).
//! A freed pair is quarantined so that late packets of the old call never reach a new one.
//!
//! Time is a parameter; [`PortAllocator::poll_timeout`] says when the next quarantined pair
//! becomes available (for metrics only: allocation itself releases due pairs lazily).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A validated port range: starts on an even port and holds at least one pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    start: u16,
    end: u16,
}

/// Why a port range was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortRangeError {
    /// Not of the form `START-END`.
    #[error("port range must read \"START-END\", e.g. \"30000-40000\"")]
    Syntax,
    /// Start is odd.
    #[error("port range must start on an even port (RTP even, RTCP odd; RFC 3550 §11): try {0}")]
    OddStart(u16),
    /// Start is 0 or below 1024.
    #[error("port range must start at 1024 or above (privileged ports): got {0}")]
    Privileged(u16),
    /// Fewer than two ports.
    #[error("port range {0}-{1} holds no RTP/RTCP pair; make END at least START+1")]
    TooSmall(u16, u16),
}

impl PortRange {
    /// Validates `start..=end`.
    pub fn new(start: u16, end: u16) -> Result<Self, PortRangeError> {
        if start < 1024 {
            return Err(PortRangeError::Privileged(start));
        }
        if start % 2 != 0 {
            return Err(PortRangeError::OddStart(start.saturating_add(1)));
        }
        if end <= start {
            return Err(PortRangeError::TooSmall(start, end));
        }
        Ok(Self { start, end })
    }

    /// First port (even).
    pub const fn start(self) -> u16 {
        self.start
    }

    /// Last port (inclusive).
    pub const fn end(self) -> u16 {
        self.end
    }

    /// Number of whole pairs in the range.
    pub const fn pairs(self) -> usize {
        (self.end - self.start).div_ceil(2) as usize
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.trim().split_once('-').ok_or(PortRangeError::Syntax)?;
        let a = a.trim().parse().map_err(|_| PortRangeError::Syntax)?;
        let b = b.trim().parse().map_err(|_| PortRangeError::Syntax)?;
        Self::new(a, b)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// An allocated RTP/RTCP pair. Only [`PortAllocator::alloc`] makes these (and tests via
/// [`PortPair::from_rtp`]), so holding one means the ports are reserved for you.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortPair {
    rtp: u16,
}

impl PortPair {
    /// A pair from its even RTP port; `None` if odd or 65535-adjacent.
    pub fn from_rtp(rtp: u16) -> Option<Self> {
        (rtp % 2 == 0 && rtp < u16::MAX).then_some(Self { rtp })
    }

    /// RTP port (even).
    pub const fn rtp(self) -> u16 {
        self.rtp
    }

    /// RTCP port (RTP + 1).
    pub const fn rtcp(self) -> u16 {
        self.rtp + 1
    }
}

/// Why [`PortAllocator::free`] refused a pair. A bug in the caller, reported rather than panicking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FreeError {
    /// The pair is outside this allocator's range.
    #[error("port pair {0} is not in this allocator's range")]
    NotInRange(u16),
    /// The pair is not currently allocated (double free).
    #[error("port pair {0} is not allocated (double free)")]
    NotAllocated(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    InUse,
    Quarantined,
}

/// O(1) allocator of RTP/RTCP pairs with quarantine. One per media shard; not thread-safe by
/// design (each shard owns its own sub-range, see [`PortAllocator::split`]).
#[derive(Clone, Debug)]
pub struct PortAllocator {
    range: PortRange,
    slots: Vec<Slot>,
    free: VecDeque<u16>,
    quarantine: VecDeque<(u16, Instant)>,
    hold: Duration,
    in_use: usize,
}

impl PortAllocator {
    /// An allocator over `range`; freed pairs stay unavailable for `quarantine`.
    pub fn new(range: PortRange, quarantine: Duration) -> Self {
        let n = range.pairs();
        let free = (0..n).map(|i| i as u16).collect();
        Self {
            range,
            slots: vec![Slot::Free; n],
            free,
            quarantine: VecDeque::new(),
            hold: quarantine,
            in_use: 0,
        }
    }

    /// Splits `range` into `n` allocators over disjoint sub-ranges (one per shard). Returns
    /// fewer than `n` if the range has fewer pairs than shards.
    pub fn split(range: PortRange, n: usize, quarantine: Duration) -> Vec<Self> {
        let pairs = range.pairs();
        let n = n.clamp(1, pairs);
        let per = pairs / n;
        (0..n)
            .filter_map(|i| {
                let first = usize::from(range.start) + 2 * i * per;
                let count = if i + 1 == n { pairs - i * per } else { per };
                let last = first + 2 * count - 1;
                let sub = PortRange::new(first as u16, last as u16).ok()?;
                Some(Self::new(sub, quarantine))
            })
            .collect()
    }

    /// The range served.
    pub fn range(&self) -> PortRange {
        self.range
    }

    /// Takes a pair, or `None` if every pair is in use or quarantined. First releases pairs
    /// whose quarantine has ended by `now`.
    pub fn alloc(&mut self, now: Instant) -> Option<PortPair> {
        self.release_due(now);
        let idx = self.free.pop_front()?;
        self.slots[usize::from(idx)] = Slot::InUse;
        self.in_use += 1;
        Some(PortPair {
            rtp: self.range.start + 2 * idx,
        })
    }

    /// Returns a pair; it becomes available again at `now + quarantine`.
    pub fn free(&mut self, pair: PortPair, now: Instant) -> Result<(), FreeError> {
        let idx = self.index_of(pair)?;
        let slot = &mut self.slots[usize::from(idx)];
        if *slot != Slot::InUse {
            return Err(FreeError::NotAllocated(pair.rtp));
        }
        self.in_use -= 1;
        if self.hold.is_zero() {
            *slot = Slot::Free;
            self.free.push_back(idx);
        } else {
            *slot = Slot::Quarantined;
            self.quarantine.push_back((idx, now + self.hold));
        }
        Ok(())
    }

    /// Returns a pair that never carried media: available again at once (at the back of the
    /// free list, so still reused as late as possible).
    pub fn free_now(&mut self, pair: PortPair) -> Result<(), FreeError> {
        let idx = self.index_of(pair)?;
        let slot = &mut self.slots[usize::from(idx)];
        if *slot != Slot::InUse {
            return Err(FreeError::NotAllocated(pair.rtp));
        }
        self.in_use -= 1;
        *slot = Slot::Free;
        self.free.push_back(idx);
        Ok(())
    }

    /// Pairs currently handed out.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Pairs that `alloc` could hand out at `now`, without releasing anything.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Pairs waiting in quarantine (some may be due; see [`Self::release_due`]).
    pub fn quarantined(&self) -> usize {
        self.quarantine.len()
    }

    /// Total pairs in the range (`in_use + available + quarantined`).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// When the next quarantined pair becomes available.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.quarantine.front().map(|&(_, at)| at)
    }

    /// Moves pairs whose quarantine ended by `now` to the free list (amortised O(1)).
    pub fn release_due(&mut self, now: Instant) {
        while let Some(&(idx, at)) = self.quarantine.front() {
            if at > now {
                break;
            }
            self.quarantine.pop_front();
            self.slots[usize::from(idx)] = Slot::Free;
            self.free.push_back(idx);
        }
    }

    fn index_of(&self, pair: PortPair) -> Result<u16, FreeError> {
        let off = pair
            .rtp
            .checked_sub(self.range.start)
            .ok_or(FreeError::NotInRange(pair.rtp))?;
        let idx = off / 2;
        if usize::from(idx) >= self.slots.len() {
            return Err(FreeError::NotInRange(pair.rtp));
        }
        Ok(idx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    /// Tests need some base instant; the core itself never reads the clock.
    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    /// A pair that never carried media skips the quarantine; a double free is still refused.
    #[test]
    fn free_now_skips_quarantine() {
        let r = PortRange::new(30000, 30003).expect("two pairs");
        let mut a = PortAllocator::new(r, Duration::from_secs(5));
        let now = t0();
        let p = a.alloc(now).expect("free pair");
        assert_eq!(a.free_now(p), Ok(()));
        assert_eq!((a.in_use(), a.available(), a.quarantined()), (0, 2, 0));
        assert_eq!(a.free_now(p), Err(FreeError::NotAllocated(p.rtp())));
    }

    fn range(a: u16, b: u16) -> PortRange {
        PortRange::new(a, b).unwrap()
    }

    #[test]
    fn range_validation() {
        assert_eq!("30000-40000".parse::<PortRange>().unwrap().pairs(), 5000);
        assert_eq!(range(30000, 30001).pairs(), 1);
        assert_eq!(range(30000, 30002).pairs(), 1);
        assert_eq!(
            PortRange::new(30001, 30010),
            Err(PortRangeError::OddStart(30002))
        );
        assert_eq!(PortRange::new(80, 90), Err(PortRangeError::Privileged(80)));
        assert_eq!(
            PortRange::new(30000, 30000),
            Err(PortRangeError::TooSmall(30000, 30000))
        );
        assert_eq!("30000".parse::<PortRange>(), Err(PortRangeError::Syntax));
        assert_eq!(range(65534, 65535).pairs(), 1);
    }

    #[test]
    fn pairs_are_even_odd_and_exhaust() {
        let t0 = t0();
        let mut a = PortAllocator::new(range(30000, 30007), Duration::ZERO);
        let got: Vec<_> = std::iter::from_fn(|| a.alloc(t0)).collect();
        assert_eq!(got.len(), 4);
        assert!(got
            .iter()
            .all(|p| p.rtp() % 2 == 0 && p.rtcp() == p.rtp() + 1));
        assert_eq!(got[3].rtcp(), 30007);
        assert_eq!((a.in_use(), a.available()), (4, 0));
        a.free(got[1], t0).unwrap();
        assert_eq!(a.alloc(t0), Some(got[1]));
    }

    #[test]
    fn quarantine_delays_reuse() {
        let t0 = t0();
        let q = Duration::from_secs(30);
        let mut a = PortAllocator::new(range(30000, 30001), q);
        let p = a.alloc(t0).unwrap();
        a.free(p, t0).unwrap();
        assert_eq!(a.quarantined(), 1);
        assert_eq!(a.poll_timeout(), Some(t0 + q));
        assert_eq!(a.alloc(t0 + q - Duration::from_millis(1)), None);
        assert_eq!(a.alloc(t0 + q), Some(p));
        assert_eq!(a.quarantined(), 0);
    }

    #[test]
    fn double_free_and_foreign_pairs_are_errors() {
        let t0 = t0();
        let mut a = PortAllocator::new(range(30000, 30009), Duration::from_secs(1));
        let p = a.alloc(t0).unwrap();
        a.free(p, t0).unwrap();
        assert_eq!(a.free(p, t0), Err(FreeError::NotAllocated(30000)));
        let foreign = PortPair::from_rtp(40000).unwrap();
        assert_eq!(a.free(foreign, t0), Err(FreeError::NotInRange(40000)));
        let below = PortPair::from_rtp(20000).unwrap();
        assert_eq!(a.free(below, t0), Err(FreeError::NotInRange(20000)));
        assert_eq!(a.in_use(), 0);
    }

    #[test]
    fn split_is_disjoint_and_complete() {
        let r = range(30000, 30999);
        let shards = PortAllocator::split(r, 3, Duration::ZERO);
        assert_eq!(shards.len(), 3);
        assert_eq!(
            shards.iter().map(|s| s.capacity()).sum::<usize>(),
            r.pairs()
        );
        for w in shards.windows(2) {
            assert_eq!(w[0].range().end() + 1, w[1].range().start());
        }
        assert_eq!(
            PortAllocator::split(range(30000, 30003), 8, Duration::ZERO).len(),
            2
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        Alloc,
        Free(usize),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Alloc),
            2 => any::<usize>().prop_map(Op::Free),
            1 => (0u64..2000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        #[test]
        fn random_ops_never_duplicate(ops in proptest::collection::vec(op(), 0..400)) {
            let t0 = t0();
            let mut now = t0;
            let mut a = PortAllocator::new(range(30000, 30039), Duration::from_millis(500));
            let mut held: Vec<PortPair> = Vec::new();
            let mut freed_at: std::collections::HashMap<u16, Instant> = Default::default();
            for op in ops {
                match op {
                    Op::Alloc => {
                        if let Some(p) = a.alloc(now) {
                            prop_assert!(!held.contains(&p), "pair handed out twice");
                            if let Some(&t) = freed_at.get(&p.rtp()) {
                                prop_assert!(now >= t + Duration::from_millis(500));
                            }
                            held.push(p);
                        }
                    }
                    Op::Free(i) if !held.is_empty() => {
                        let p = held.swap_remove(i % held.len());
                        a.free(p, now).unwrap();
                        freed_at.insert(p.rtp(), now);
                    }
                    Op::Free(_) => {}
                    Op::Wait(ms) => now += Duration::from_millis(ms),
                }
                let distinct: HashSet<_> = held.iter().collect();
                prop_assert_eq!(distinct.len(), held.len());
                prop_assert_eq!(a.in_use(), held.len());
                prop_assert_eq!(a.in_use() + a.available() + a.quarantined(), a.capacity());
            }
        }
    }
}
