//! Prometheus metrics: one [`Metrics`] struct, its own [`Registry`], typed labels.
//!
//! Families move out per component, each registered as a unit into the one registry: the
//! SIP signalling family is [`SipMetrics`] (`metrics/sip.rs`, reached through
//! [`Metrics::sip`], with its own exact-output test); the media, recorder, recognizer and
//! HTTP families are still fields of [`Metrics`] below.
//!
//! Rules (see `docs/metrics.md` for the catalogue, which a test keeps in step with this file):
//!
//! - Every name starts with `callmask_`, uses base units (seconds, bytes) and counters end in
//!   `_total`. Process metrics keep their standard `process_*` names.
//! - Label values come only from the closed enums in this module ([`Side`], [`Direction`],
//!   [`SipMethod`], …), so a Call-ID, a phone number or an agent name can never become a label,
//!   and the number of series is fixed at compile time.
//! - Nothing on the packet path touches a label map. Children of every labelled family are
//!   resolved once, in [`Metrics::new`], into arrays indexed by the enums; the accessors below are
//!   an index plus an atomic add.
//! - Per-packet counts (RTP packets, bytes, loss, reordering, fail-closed time) do not even share
//!   a cache line between calls: each call owns a [`CallCounters`] of plain atomics, handed out
//!   as a [`CallStats`] (an `Arc` the relay task clones), and a custom
//!   [`Collector`] sums the live calls plus a retired-calls accumulator at
//!   scrape time. A call's counts move into the accumulator under the same lock the scrape takes,
//!   so the exported counters never go backwards when a call ends.
//!
//! ```
//! use callmask::metrics::{Direction, Metrics, Side};
//!
//! let metrics = Metrics::new();
//! let call = metrics.new_call();          // one per call, cloned into its relay task
//! call.leg(Side::Pbx, Direction::Inbound).record_packet(172);
//! drop(call);                             // counts move to the retired accumulator
//! assert!(metrics.render().contains("callmask_rtp_packets_total{direction=\"inbound\",side=\"pbx\"} 1"));
//! ```

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dsp::mask::MaskReason;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Counter, CounterVec, Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// A closed set of label values.
///
/// Implemented by every enum used as a label, so families can be pre-resolved for every value.
pub trait Label: Copy + 'static {
    /// Label name (`side`, `method`, …).
    const NAME: &'static str;
    /// Every value, in index order.
    const ALL: &'static [Self];
    /// Stable label value, as exported.
    fn as_str(self) -> &'static str;
    /// Position in [`Label::ALL`].
    fn index(self) -> usize;
}

/// Declares a closed label enum with its `Label` impl.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $label:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl Label for $name {
            const NAME: &'static str = $label;
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

/// Which side of callmask a message or packet belongs to: the domain's own [`Side`] is the
/// label (`pbx`, `agents`), so the shells pass the core's side straight through.
pub use crate::core::side::Side;

impl Label for Side {
    const NAME: &'static str = "side";
    const ALL: &'static [Self] = &Side::BOTH;
    fn as_str(self) -> &'static str {
        Side::as_str(self)
    }
    fn index(self) -> usize {
        Side::index(self)
    }
}

mod access;
mod ng;
mod sip;
mod srtp;
pub use access::{AccessDenial, AccessMetrics, LimitLabel};
pub use ng::{NgCommand, NgMetrics, NgResult};
pub use sip::SipMetrics;
pub use srtp::{SrtpDrop, SrtpMetrics};

label_enum! {
    /// Seen from callmask: received from a side (`inbound`) or sent to it (`outbound`).
    Direction, "direction" {
        /// Received by callmask.
        Inbound => "inbound",
        /// Sent by callmask.
        Outbound => "outbound",
    }
}

label_enum! {
    /// SIP transport.
    Transport, "transport" {
        /// UDP.
        Udp => "udp",
        /// TCP.
        Tcp => "tcp",
        /// TLS over TCP.
        Tls => "tls",
    }
}

label_enum! {
    /// SIP method, closed: anything unknown is `other`.
    SipMethod, "method" {
        /// INVITE
        Invite => "INVITE",
        /// ACK
        Ack => "ACK",
        /// BYE
        Bye => "BYE",
        /// CANCEL
        Cancel => "CANCEL",
        /// REGISTER
        Register => "REGISTER",
        /// OPTIONS
        Options => "OPTIONS",
        /// INFO
        Info => "INFO",
        /// PRACK
        Prack => "PRACK",
        /// UPDATE
        Update => "UPDATE",
        /// SUBSCRIBE
        Subscribe => "SUBSCRIBE",
        /// NOTIFY
        Notify => "NOTIFY",
        /// REFER
        Refer => "REFER",
        /// MESSAGE
        Message => "MESSAGE",
        /// PUBLISH
        Publish => "PUBLISH",
        /// Any extension method (never exported by name: the token is sender-controlled).
        Other => "other",
    }
}

impl SipMethod {
    /// Classify a method token (case-sensitive, RFC 3261 §7.1).
    pub fn from_token(token: &[u8]) -> Self {
        // Each label is the method's token (RFC 3261 §7.1), so the label list is the one
        // token table; `other` is the fallback either way.
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.as_str().as_bytes() == token)
            .unwrap_or(Self::Other)
    }
}

impl From<&crate::core::sip::Method> for SipMethod {
    fn from(m: &crate::core::sip::Method) -> Self {
        SipMethod::from_token(m.as_bytes())
    }
}

label_enum! {
    /// SIP response status class.
    StatusClass, "status_class" {
        /// 100–199
        Provisional => "1xx",
        /// 200–299
        Success => "2xx",
        /// 300–399
        Redirection => "3xx",
        /// 400–499
        ClientError => "4xx",
        /// 500–599
        ServerError => "5xx",
        /// 600–699
        GlobalFailure => "6xx",
    }
}

impl StatusClass {
    /// Class of a status code; `None` outside `100..=699`.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            100..=199 => Self::Provisional,
            200..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            500..=599 => Self::ServerError,
            600..=699 => Self::GlobalFailure,
            _ => return None,
        })
    }
}

label_enum! {
    /// RFC 3261 §17 transaction kind.
    TransactionKind, "kind" {
        /// INVITE client transaction (§17.1.1).
        Invite => "invite",
        /// Non-INVITE client transaction (§17.1.2).
        NonInvite => "non_invite",
    }
}

label_enum! {
    /// What happened to a SIP retransmission in callmask's transactions (RFC 3261 §17).
    RetransmitAction, "handling" {
        /// callmask resent a request or response on its own timer (A, E, G).
        Resent => "resent",
        /// A peer's retransmission was absorbed by a transaction (answered or dropped there).
        Absorbed => "absorbed",
    }
}

label_enum! {
    /// Recorder sink kind (config `[[recorder]] kind`).
    SinkKind, "sink" {
        /// Local stereo WAV files.
        Wav => "wav",
        /// Sanitized RTP fork.
        Rtp => "rtp",
        /// RFC 7866 SIPREC session recording client.
        Siprec => "siprec",
    }
}

label_enum! {
    /// Where a DTMF digit was learned from.
    DtmfSource, "source" {
        /// In-band tone detected in the audio.
        Inband => "inband",
        /// RFC 4733 telephone-event.
        Rfc4733 => "rfc4733",
        /// SIP INFO (`application/dtmf-relay`, `application/dtmf`).
        Info => "info",
    }
}

label_enum! {
    /// Why an input (SIP message or RTP packet) was rejected or dropped. Closed catalogue.
    ///
    /// The SIP parser's finer `RejectReason` maps onto these (every parse error is `malformed`
    /// except size limits, version, hop count, loops and unimplemented methods).
    DropReason, "reason" {
        /// Does not parse (bad start line, header, Content-Length, not RTP …).
        Malformed => "malformed",
        /// Over a size, header-count or line-length limit.
        TooLarge => "too_large",
        /// From an address that is not the signalled or latched peer.
        UnexpectedSource => "unexpected_source",
        /// A bounded queue was full.
        QueueFull => "queue_full",
        /// SIP version other than 2.0.
        UnsupportedVersion => "unsupported_version",
        /// Max-Forwards reached zero.
        TooManyHops => "too_many_hops",
        /// Loop detected.
        LoopDetected => "loop_detected",
        /// Method callmask will not handle (501).
        NotImplemented => "not_implemented",
        /// A response, an SDP answer or a late INVITE copy matching no live transaction or call.
        NoTransaction => "no_transaction",
        /// No route or peer for the request, or no way back for a response.
        NoRoute => "no_route",
        /// The transport to the next hop failed (TCP connect); answered 503.
        TransportError => "transport_error",
        /// An SDP could not be anchored (no free media ports, unusable SDP).
        MediaAnchorFailed => "media_anchor_failed",
        /// RTP from outside the signalled network and the side's allow-list tried to latch.
        LatchOutOfScope => "latch_out_of_scope",
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

impl From<crate::core::proxy::DropReason> for DropReason {
    /// Bucket of the SIP core's drop reasons (its fine label goes to the debug log).
    fn from(r: crate::core::proxy::DropReason) -> Self {
        use crate::core::proxy::DropReason as D;
        match r {
            D::NoRoute | D::UnroutableVia => DropReason::NoRoute,
            D::BadVia => DropReason::Malformed,
            D::NotOurVia | D::StaleInvite | D::SdpWithoutCall => DropReason::NoTransaction,
            D::TransportError => DropReason::TransportError,
            D::MediaAnchorFailed => DropReason::MediaAnchorFailed,
        }
    }
}

impl From<crate::core::sip::RejectReason> for DropReason {
    /// Coarse bucket of the parser's reject catalogue (its fine label goes to the debug log).
    fn from(r: crate::core::sip::RejectReason) -> Self {
        use crate::core::sip::RejectReason as R;
        match r {
            R::TooLarge | R::TooManyHeaders | R::LineTooLong => DropReason::TooLarge,
            R::UnsupportedVersion => DropReason::UnsupportedVersion,
            R::TooManyHops => DropReason::TooManyHops,
            R::LoopDetected => DropReason::LoopDetected,
            R::NotImplemented => DropReason::NotImplemented,
            _ => DropReason::Malformed,
        }
    }
}

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

label_enum! {
    /// Result of a config reload.
    ReloadResult, "result" {
        /// New config applied.
        Success => "success",
        /// Rejected; the old config stays in force.
        Failure => "failure",
    }
}

label_enum! {
    /// Secure-mode change requested for a call.
    SecureAction, "action" {
        /// Recorder path muted until released.
        Secure => "secure",
        /// Released.
        Unsecure => "unsecure",
    }
}

label_enum! {
    /// What became of a speech segment sent to the recognizer. Anything but `ok` means the
    /// segment left the recorder path muted whole (fail closed).
    RecognizerOutcome, "outcome" {
        /// Words came back in time; the span policy decided what to mute.
        Ok => "ok",
        /// The result (or the worker) came after the segment's deadline.
        Late => "late",
        /// The engine failed on the segment.
        Failed => "failed",
        /// Never sent: the worker queue was full or no worker is running.
        Dropped => "dropped",
    }
}

impl Label for MaskReason {
    const NAME: &'static str = "reason";
    const ALL: &'static [Self] = &MaskReason::ALL;
    fn as_str(self) -> &'static str {
        MaskReason::as_str(self)
    }
    fn index(self) -> usize {
        MaskReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Children of a one-label family, resolved once.
#[derive(Debug)]
pub struct By<L, M> {
    children: Vec<M>,
    _label: std::marker::PhantomData<L>,
}

impl<L: Label, M> By<L, M> {
    /// The child for `label`.
    #[inline]
    pub fn get(&self, label: L) -> &M {
        &self.children[label.index()]
    }
}

/// Children of a two-label family, resolved once.
#[derive(Debug)]
pub struct By2<A, B, M> {
    children: Vec<M>,
    _labels: std::marker::PhantomData<(A, B)>,
}

impl<A: Label, B: Label, M> By2<A, B, M> {
    /// The child for `(a, b)`.
    #[inline]
    pub fn get(&self, a: A, b: B) -> &M {
        &self.children[a.index() * B::ALL.len() + b.index()]
    }
}

/// Families whose children [`By`]/[`By2`] can resolve.
trait Resolve {
    type Child;
    fn child(&self, values: &[&str]) -> Self::Child;
}

macro_rules! resolve_impl {
    ($vec:ty, $child:ty) => {
        impl Resolve for $vec {
            type Child = $child;
            fn child(&self, values: &[&str]) -> $child {
                self.with_label_values(values)
            }
        }
    };
}
resolve_impl!(IntCounterVec, IntCounter);
resolve_impl!(CounterVec, Counter);
resolve_impl!(IntGaugeVec, IntGauge);
resolve_impl!(HistogramVec, prometheus::Histogram);

fn by<L: Label, V: Resolve>(vec: &V) -> By<L, V::Child> {
    By {
        children: L::ALL.iter().map(|l| vec.child(&[l.as_str()])).collect(),
        _label: std::marker::PhantomData,
    }
}

fn by2<A: Label, B: Label, V: Resolve>(vec: &V) -> By2<A, B, V::Child> {
    let mut children = Vec::with_capacity(A::ALL.len() * B::ALL.len());
    for a in A::ALL {
        for b in B::ALL {
            children.push(vec.child(&[a.as_str(), b.as_str()]));
        }
    }
    By2 {
        children,
        _labels: std::marker::PhantomData,
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

/// Every metric callmask exports. Build once, share as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    calls: Arc<CallAggregator>,
    calls_total: By<CallOutcome, IntCounter>,
    /// The SIP signalling family.
    sip: SipMetrics,
    /// The NG control family (media-node mode).
    ng: NgMetrics,
    /// The access-control family.
    access: AccessMetrics,
    /// The encrypted-media family.
    srtp: SrtpMetrics,
    rtp_dropped: By2<Side, DropReason, IntCounter>,
    rtp_jitter: By<Side, prometheus::Histogram>,
    media_ports_in_use: IntGauge,
    media_ports_free: IntGauge,
    dtmf_detected: By<DtmfSource, IntCounter>,
    masked_spans: By<MaskReason, IntCounter>,
    masked_seconds: By<MaskReason, Counter>,
    mask_decision_latency: HistogramVec,
    secure_mode_changes: By<SecureAction, IntCounter>,
    recorder_sessions: By<SinkKind, IntCounter>,
    recorder_sessions_active: By<SinkKind, IntGauge>,
    recorder_bytes: By<SinkKind, IntCounter>,
    recorder_errors: By<SinkKind, IntCounter>,
    recorder_queue_dropped: By<SinkKind, IntCounter>,
    /// Sink kinds fed by the shared tap queue (set once at startup): a frame the queue drops
    /// is lost to each of them.
    tap_sinks: std::sync::OnceLock<Vec<SinkKind>>,
    recorder_disk_full: IntGauge,
    recorder_retention_deleted: IntCounter,
    recorder_dropped_samples: IntCounter,
    siprec_failovers: IntCounter,
    siprec_established: IntCounter,
    siprec_failed: IntCounter,
    siprec_fallbacks: IntCounter,
    siprec_srs_byes: IntCounter,
    recognizer_rtf: Gauge,
    recognizer_backlog: Gauge,
    recognizer_segments: By<RecognizerOutcome, IntCounter>,
    recognizer_audio_seconds: Counter,
    recognizer_busy_seconds: Counter,
    recognizer_queued_jobs: IntGauge,
    config_reloads: By<ReloadResult, IntCounter>,
    http_unauthorized: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Interarrival jitter (RFC 3550 §6.4.1), seconds.
const JITTER_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32];
/// Mask decision latency, seconds: DTMF ~25–40 ms, spoken identifiers ~1–2 s.
const MASK_LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0,
];

impl Metrics {
    /// Build and register every family. Label children are resolved here, once.
    pub fn new() -> Self {
        // Names, label names and buckets are literals in this file: failing here is a
        // programming error caught by every test, never a runtime condition.
        Self::try_new().expect("metric definitions are static and valid")
    }

    fn try_new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let r = &registry;

        let calls = Arc::new(CallAggregator::new()?);
        r.register(Box::new(CallCollector(Arc::clone(&calls))))?;

        let calls_total = int_counter_vec(
            r,
            "callmask_calls_total",
            "Calls ended, by outcome.",
            &[CallOutcome::NAME],
        )?;
        let sip = SipMetrics::register(r)?;
        let ng = NgMetrics::register(r)?;
        let access = AccessMetrics::register(r)?;
        let srtp = SrtpMetrics::register(r)?;
        let rtp_dropped = int_counter_vec(
            r,
            "callmask_rtp_packets_dropped_total",
            "Media packets dropped unrelayed, by side and reason.",
            &[Side::NAME, DropReason::NAME],
        )?;
        let rtp_jitter = histogram_vec(
            r,
            "callmask_rtp_jitter_seconds",
            "RFC 3550 interarrival jitter of received streams, sampled per stream, by side.",
            &[Side::NAME],
            JITTER_BUCKETS,
        )?;
        let media_ports_in_use = int_gauge(
            r,
            "callmask_media_ports_in_use",
            "Media ports allocated to calls.",
        )?;
        let media_ports_free = int_gauge(
            r,
            "callmask_media_ports_free",
            "Media ports left in the configured range.",
        )?;
        let dtmf_detected = int_counter_vec(
            r,
            "callmask_dtmf_detected_total",
            "DTMF digits detected (never which digit), by source.",
            &[DtmfSource::NAME],
        )?;
        let masked_spans = int_counter_vec(
            r,
            "callmask_masked_spans_total",
            "Recorder-path spans muted, by reason.",
            &[<MaskReason as Label>::NAME],
        )?;
        let masked_seconds = counter_vec(
            r,
            "callmask_masked_seconds_total",
            "Recorder-path audio muted, by reason.",
            &[<MaskReason as Label>::NAME],
        )?;
        let mask_decision_latency = histogram_vec(
            r,
            "callmask_mask_decision_latency_seconds",
            "Time from the start of masked audio to the verdict, by reason (must stay below the look-ahead).",
            &[<MaskReason as Label>::NAME],
            MASK_LATENCY_BUCKETS,
        )?;
        for reason in [
            MaskReason::DtmfInband,
            MaskReason::Rfc4733,
            MaskReason::SpokenId,
        ] {
            mask_decision_latency.with_label_values(&[reason.as_str()]);
        }
        let secure_mode_changes = int_counter_vec(
            r,
            "callmask_secure_mode_changes_total",
            "Secure-mode requests applied to calls, by action.",
            &[SecureAction::NAME],
        )?;
        let recorder_sessions = int_counter_vec(
            r,
            "callmask_recorder_sessions_total",
            "Recording sessions opened, by sink kind.",
            &[SinkKind::NAME],
        )?;
        let recorder_sessions_active = int_gauge_vec(
            r,
            "callmask_recorder_sessions_active",
            "Recording sessions open now, by sink kind.",
            &[SinkKind::NAME],
        )?;
        let recorder_bytes = int_counter_vec(
            r,
            "callmask_recorder_bytes_total",
            "Bytes written or sent by recorder sinks, by sink kind.",
            &[SinkKind::NAME],
        )?;
        let recorder_errors = int_counter_vec(
            r,
            "callmask_recorder_errors_total",
            "Recorder sink errors (write, connect, SIPREC failure), by sink kind.",
            &[SinkKind::NAME],
        )?;
        let recorder_queue_dropped = int_counter_vec(
            r,
            "callmask_recorder_queue_dropped_frames_total",
            "Audio frames dropped (and muted) because a sink queue was full, by sink kind.",
            &[SinkKind::NAME],
        )?;
        let recorder_disk_full = int_gauge(
            r,
            "callmask_recorder_disk_full",
            "1 while the WAV sink cannot write for lack of space, else 0.",
        )?;
        let recorder_retention_deleted = int_counter(
            r,
            "callmask_recorder_retention_deleted_files_total",
            "Recordings deleted by the retention sweeper.",
        )?;
        let recorder_dropped_samples = int_counter(
            r,
            "callmask_recorder_dropped_samples_total",
            "Audio samples (8 kHz) that reached the recorder path but not the recording: RTP \
             that came after the recorder path had moved past its time (duplicates, reordering \
             beyond the jitter allowance), or frames whose place in the file was already written.",
        )?;
        let siprec_failovers = int_counter(
            r,
            "callmask_siprec_failovers_total",
            "SIPREC sessions moved to the next SRS (timeout or 5xx), or to the local fallback.",
        )?;
        let siprec_established = int_counter(
            r,
            "callmask_siprec_sessions_established_total",
            "SIPREC recording sessions an SRS accepted.",
        )?;
        let siprec_failed = int_counter(
            r,
            "callmask_siprec_sessions_failed_total",
            "SIPREC recording sessions that every configured SRS failed.",
        )?;
        let siprec_fallbacks = int_counter(
            r,
            "callmask_siprec_fallback_recordings_total",
            "Calls of a SIPREC sink recorded to its local fallback directory instead.",
        )?;
        let siprec_srs_byes = int_counter(
            r,
            "callmask_siprec_srs_byes_total",
            "SIPREC sessions the SRS ended (BYE) before the call ended.",
        )?;
        let recognizer_rtf = gauge(
            r,
            "callmask_recognizer_real_time_factor",
            "Speech recognizer processing time divided by audio time (latest window).",
        )?;
        let recognizer_backlog = gauge(
            r,
            "callmask_recognizer_backlog_seconds",
            "Audio queued for the speech recognizer and not yet decided.",
        )?;
        let recognizer_segments = int_counter_vec(
            r,
            "callmask_recognizer_segments_total",
            "Speech segments sent to the recognizer, by outcome (all but ok are muted whole).",
            &[RecognizerOutcome::NAME],
        )?;
        let recognizer_audio_seconds = counter(
            r,
            "callmask_recognizer_audio_seconds_total",
            "Audio transcribed by the recognizer workers.",
        )?;
        let recognizer_busy_seconds = counter(
            r,
            "callmask_recognizer_busy_seconds_total",
            "Time the recognizer workers spent transcribing.",
        )?;
        let recognizer_queued_jobs = int_gauge(
            r,
            "callmask_recognizer_queued_jobs",
            "Speech segments waiting for a recognizer worker.",
        )?;
        let config_reloads = int_counter_vec(
            r,
            "callmask_config_reloads_total",
            "Config reloads attempted, by result.",
            &[ReloadResult::NAME],
        )?;
        let http_unauthorized = int_counter(
            r,
            "callmask_http_unauthorized_total",
            "HTTP requests refused for a missing or wrong bearer token.",
        )?;
        let build_info = int_gauge_vec(
            r,
            "callmask_build_info",
            "Always 1; labels carry the build.",
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Metrics {
            calls_total: by(&calls_total),
            sip,
            ng,
            access,
            srtp,
            rtp_dropped: by2(&rtp_dropped),
            rtp_jitter: by(&rtp_jitter),
            media_ports_in_use,
            media_ports_free,
            dtmf_detected: by(&dtmf_detected),
            masked_spans: by(&masked_spans),
            masked_seconds: by(&masked_seconds),
            mask_decision_latency,
            secure_mode_changes: by(&secure_mode_changes),
            recorder_sessions: by(&recorder_sessions),
            recorder_sessions_active: by(&recorder_sessions_active),
            recorder_bytes: by(&recorder_bytes),
            recorder_errors: by(&recorder_errors),
            recorder_queue_dropped: by(&recorder_queue_dropped),
            tap_sinks: std::sync::OnceLock::new(),
            recorder_disk_full,
            recorder_retention_deleted,
            recorder_dropped_samples,
            siprec_failovers,
            siprec_established,
            siprec_failed,
            siprec_fallbacks,
            siprec_srs_byes,
            recognizer_rtf,
            recognizer_backlog,
            recognizer_segments: by(&recognizer_segments),
            recognizer_audio_seconds,
            recognizer_busy_seconds,
            recognizer_queued_jobs,
            config_reloads: by(&config_reloads),
            http_unauthorized,
            calls,
            registry,
        })
    }

    /// The registry behind these metrics (for an extra collector, or a custom encoder).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition (format 0.0.4) of everything registered.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for I/O reasons; a failure would mean an invalid
        // family, which `try_new` rules out. Render what was written either way.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Content type of [`Metrics::render`].
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    // --- calls -------------------------------------------------------------------------

    /// Start counting a call: returns the handle its relay task(s) count into. The call is
    /// active (in `callmask_calls_active`) until the last clone of the handle drops.
    pub fn new_call(&self) -> CallStats {
        self.calls.register()
    }

    /// A call ended with `outcome`.
    pub fn call_ended(&self, outcome: CallOutcome) {
        self.calls_total.get(outcome).inc();
    }

    /// The NG control family (owned by `io/ng.rs`).
    pub fn ng(&self) -> &NgMetrics {
        &self.ng
    }

    /// The SIP signalling family (owned by `io/signalling.rs`).
    pub fn sip(&self) -> &SipMetrics {
        &self.sip
    }

    /// The access-control family (counted by `io/signalling.rs`).
    pub fn access(&self) -> &AccessMetrics {
        &self.access
    }

    /// The encrypted-media family (`metrics/srtp.rs`).
    pub fn srtp(&self) -> &SrtpMetrics {
        &self.srtp
    }

    // --- media -------------------------------------------------------------------------

    /// A media packet from `side` was dropped.
    pub fn rtp_dropped(&self, side: Side, reason: DropReason) {
        self.rtp_dropped.get(side, reason).inc();
    }

    /// A jitter sample (seconds) for a stream received from `side`.
    pub fn rtp_jitter(&self, side: Side, seconds: f64) {
        self.rtp_jitter.get(side).observe(seconds);
    }

    /// Media port pool occupancy (set by the allocator after each change).
    pub fn set_media_ports(&self, in_use: u64, free: u64) {
        self.media_ports_in_use
            .set(i64::try_from(in_use).unwrap_or(i64::MAX));
        self.media_ports_free
            .set(i64::try_from(free).unwrap_or(i64::MAX));
    }

    // --- masking -----------------------------------------------------------------------

    /// A DTMF digit was detected (the digit itself is never recorded anywhere).
    pub fn dtmf_detected(&self, source: DtmfSource) {
        self.dtmf_detected.get(source).inc();
    }

    /// A recorder-path span closed: `seconds` of audio muted for `reason`.
    pub fn masked_span(&self, reason: MaskReason, seconds: f64) {
        self.masked_spans.get(reason).inc();
        self.masked_seconds.get(reason).inc_by(seconds.max(0.0));
    }

    /// A mask verdict arrived `seconds` after the start of the audio it covers.
    pub fn mask_decision_latency(&self, reason: MaskReason, seconds: f64) {
        self.mask_decision_latency
            .with_label_values(&[reason.as_str()])
            .observe(seconds);
    }

    /// A secure-mode request was applied.
    pub fn secure_mode_changed(&self, action: SecureAction) {
        self.secure_mode_changes.get(action).inc();
    }

    // --- recorder ----------------------------------------------------------------------

    /// A recording session opened on `sink`. Pair with [`Metrics::recorder_session_closed`].
    pub fn recorder_session_opened(&self, sink: SinkKind) {
        self.recorder_sessions.get(sink).inc();
        self.recorder_sessions_active.get(sink).inc();
    }

    /// A recording session closed on `sink`.
    pub fn recorder_session_closed(&self, sink: SinkKind) {
        self.recorder_sessions_active.get(sink).dec();
    }

    /// Bytes written or sent by `sink` (the counter handle, for batching in the sink task).
    pub fn recorder_bytes(&self, sink: SinkKind) -> &IntCounter {
        self.recorder_bytes.get(sink)
    }

    /// A sink error.
    pub fn recorder_error(&self, sink: SinkKind) {
        self.recorder_errors.get(sink).inc();
    }

    /// `frames` dropped (and muted) because `sink`'s queue was full.
    pub fn recorder_queue_dropped(&self, sink: SinkKind, frames: u64) {
        self.recorder_queue_dropped.get(sink).inc_by(frames);
    }

    /// The sink kinds behind the shared tap queue (one entry per configured sink).
    pub fn set_tap_sinks(&self, sinks: Vec<SinkKind>) {
        let _ = self.tap_sinks.set(sinks);
    }

    /// The shared tap queue was full: the frames are lost to every configured sink.
    pub fn tap_queue_dropped(&self, frames: u64) {
        for &sink in self.tap_sinks.get().map(Vec::as_slice).unwrap_or(&[]) {
            self.recorder_queue_dropped(sink, frames);
        }
    }

    /// Disk-full alarm of the WAV sink.
    pub fn set_recorder_disk_full(&self, full: bool) {
        self.recorder_disk_full.set(i64::from(full));
    }

    /// The retention sweeper deleted a recording.
    pub fn recorder_retention_deleted(&self) {
        self.recorder_retention_deleted.inc();
    }

    /// `samples` of audio that did not make it into the recording (see the metric's help).
    pub fn recorder_dropped_samples(&self, samples: u64) {
        self.recorder_dropped_samples.inc_by(samples);
    }

    /// A SIPREC session failed over.
    pub fn siprec_failover(&self) {
        self.siprec_failovers.inc();
    }

    /// An SRS accepted a recording session.
    pub fn siprec_established(&self) {
        self.siprec_established.inc();
    }

    /// Every SRS failed for a recording session.
    pub fn siprec_failed(&self) {
        self.siprec_failed.inc();
    }

    /// A SIPREC sink recorded a call to its fallback directory.
    pub fn siprec_fallback(&self) {
        self.siprec_fallbacks.inc();
    }

    /// An SRS ended a recording session early.
    pub fn siprec_srs_bye(&self) {
        self.siprec_srs_byes.inc();
    }

    // --- recognizer, registrations, config, http ---------------------------------------

    /// Latest recognizer real-time factor and backlog.
    pub fn set_recognizer(&self, real_time_factor: f64, backlog_seconds: f64) {
        self.recognizer_rtf.set(real_time_factor);
        self.recognizer_backlog.set(backlog_seconds);
    }

    /// A speech segment's fate.
    pub fn recognizer_segment(&self, outcome: RecognizerOutcome) {
        self.recognizer_segments.get(outcome).inc();
    }

    /// A worker transcribed `audio_s` seconds of audio in `busy_s` seconds.
    pub fn recognizer_work(&self, audio_s: f64, busy_s: f64) {
        self.recognizer_audio_seconds.inc_by(audio_s.max(0.0));
        self.recognizer_busy_seconds.inc_by(busy_s.max(0.0));
    }

    /// Segments waiting for a worker now.
    pub fn set_recognizer_queued_jobs(&self, n: usize) {
        self.recognizer_queued_jobs
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A config reload finished.
    pub fn config_reloaded(&self, result: ReloadResult) {
        self.config_reloads.get(result).inc();
    }

    /// An HTTP request was refused for its bearer token.
    pub fn http_unauthorized(&self) {
        self.http_unauthorized.inc();
    }
}

fn int_counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let m = IntCounter::new(name, help)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let m = IntGauge::new(name, help)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<Counter> {
    let m = Counter::new(name, help)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<Gauge> {
    let m = Gauge::new(name, help)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn int_counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let m = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<CounterVec> {
    let m = CounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn int_gauge_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    let m = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> prometheus::Result<HistogramVec> {
    let m = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("series {series} missing in:\n{text}"))
    }

    #[test]
    fn sip_core_drop_reasons_keep_their_bucket() {
        // Each of the core's drop reasons lands in its own bucket (they were all counted as
        // `no_route` once).
        use crate::core::proxy::DropReason as D;
        let expect = |d: D| match d {
            D::StaleInvite => "no_transaction",
            D::NoRoute => "no_route",
            D::BadVia => "malformed",
            D::NotOurVia => "no_transaction",
            D::UnroutableVia => "no_route",
            D::TransportError => "transport_error",
            D::SdpWithoutCall => "no_transaction",
            D::MediaAnchorFailed => "media_anchor_failed",
        };
        for d in D::ALL {
            assert_eq!(DropReason::from(d).as_str(), expect(d), "{d:?}");
        }
        let m = Metrics::new();
        m.sip()
            .rejected(Side::Pbx, DropReason::from(D::MediaAnchorFailed));
        let text = m.render();
        let series = |r: &str| {
            format!("callmask_sip_messages_rejected_total{{reason=\"{r}\",side=\"pbx\"}}")
        };
        assert_eq!(value(&text, &series("media_anchor_failed")), 1.0);
        assert_eq!(value(&text, &series("no_route")), 0.0);
    }

    const PBX_IN: &str = "callmask_rtp_packets_total{direction=\"inbound\",side=\"pbx\"}";
    const AGENTS_OUT_BYTES: &str =
        "callmask_rtp_bytes_total{direction=\"outbound\",side=\"agents\"}";

    #[test]
    fn call_counters_survive_call_end_and_never_go_backwards() {
        let m = Metrics::new();
        let a = m.new_call();
        let b = m.new_call();
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
        let m = Arc::new(Metrics::new());
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let call = m.new_call();
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
        let m = Metrics::new();
        let call = m.new_call();
        call.add_fail_closed_samples(8000, 8000);
        call.add_fail_closed_samples(8000, 16000);
        drop(call);
        assert_eq!(
            value(&m.render(), "callmask_fail_closed_muted_seconds_total"),
            1.5
        );
    }

    #[test]
    fn a_tap_drop_counts_for_every_configured_sink() {
        let m = Metrics::new();
        m.tap_queue_dropped(1); // before configuration: nothing to count against
        m.set_tap_sinks(vec![SinkKind::Wav, SinkKind::Siprec]);
        m.tap_queue_dropped(3);
        let r = m.render();
        let v = |sink: &str| {
            value(
                &r,
                &format!("callmask_recorder_queue_dropped_frames_total{{sink=\"{sink}\"}}"),
            )
        };
        assert_eq!((v("wav"), v("rtp"), v("siprec")), (3.0, 0.0, 3.0));
    }

    #[test]
    fn method_labels_agree_with_sip_method_tokens() {
        use crate::core::sip::Method;
        for &m in SipMethod::ALL {
            let token = bytes::Bytes::from_static(m.as_str().as_bytes());
            let parsed = Method::from_bytes(token);
            assert_eq!(
                matches!(parsed, Method::Extension(_)),
                m == SipMethod::Other,
                "{m:?}"
            );
            assert_eq!(SipMethod::from(&parsed), m);
        }
        for token in [&b"FOO"[..], b"invite", b"", b"INVITEX"] {
            assert_eq!(SipMethod::from_token(token), SipMethod::Other);
        }
    }

    #[test]
    fn labelled_families_are_preresolved_and_bounded() {
        let m = Metrics::new();
        m.sip().request(Side::Agents, SipMethod::from_token(b"FOO"));
        m.sip().response(Side::Pbx, SipMethod::Invite, 486);
        m.sip().response(Side::Pbx, SipMethod::Invite, 42); // not a status: ignored
        m.masked_span(MaskReason::DtmfInband, 0.25);
        m.rtp_dropped(Side::Pbx, DropReason::UnexpectedSource);
        let t = m.render();
        assert_eq!(
            value(
                &t,
                "callmask_sip_requests_total{method=\"other\",side=\"agents\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &t,
                "callmask_sip_responses_total{method=\"INVITE\",side=\"pbx\",status_class=\"4xx\"}"
            ),
            1.0
        );
        assert_eq!(
            value(&t, "callmask_masked_seconds_total{reason=\"dtmf_inband\"}"),
            0.25
        );
        assert_eq!(
            value(
                &t,
                "callmask_rtp_packets_dropped_total{reason=\"unexpected_source\",side=\"pbx\"}"
            ),
            1.0
        );
        // Every reason is exported from the start, so rate() works before the first event.
        for reason in MaskReason::ALL {
            let series = format!(
                "callmask_masked_spans_total{{reason=\"{}\"}}",
                reason.as_str()
            );
            value(&t, &series);
        }
        assert_eq!(
            value(
                &t,
                &format!(
                    "callmask_build_info{{version=\"{}\"}}",
                    env!("CARGO_PKG_VERSION")
                )
            ),
            1.0
        );
    }

    #[test]
    fn label_indices_match_all() {
        fn check<L: Label + PartialEq + std::fmt::Debug>() {
            for (i, l) in L::ALL.iter().enumerate() {
                assert_eq!(l.index(), i, "{l:?}");
            }
        }
        check::<Side>();
        check::<Direction>();
        check::<Transport>();
        check::<SipMethod>();
        check::<StatusClass>();
        check::<SinkKind>();
        check::<DtmfSource>();
        check::<DropReason>();
        check::<CallOutcome>();
        check::<MaskReason>();
        assert_eq!(
            StatusClass::from_code(699),
            Some(StatusClass::GlobalFailure)
        );
        assert_eq!(StatusClass::from_code(700), None);
    }
}
