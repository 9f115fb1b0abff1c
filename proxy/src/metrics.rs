//! Prometheus metrics: one [`Metrics`] registry, one family per component, typed labels.
//!
//! Each component's family lives in its own file and registers itself as a unit into the one
//! registry (`register(&Registry)`, linkerd2-proxy's `MetricsFamilies::register` is the
//! model), with an exact-output test beside it:
//!
//! | file | family | counted by |
//! |---|---|---|
//! | `metrics/calls.rs` | [`CallMetrics`]: calls, per-call RTP counters | `io/media.rs`, `io/signalling.rs` |
//! | `metrics/sip.rs` | [`SipMetrics`]: SIP messages, transactions, registrations | `io/signalling.rs` |
//! | `metrics/media.rs` | [`MediaMetrics`]: RTP drops, jitter, ports, masking | `core/media`, `io/media.rs`, `io/calls/audit.rs` |
//! | `metrics/recorder.rs` | [`RecorderMetrics`]: sinks, retention, SIPREC | `io/recorder` |
//! | `metrics/recognizer.rs` | [`RecognizerMetrics`]: speech recognizer | `io/speech` |
//! | `metrics/http.rs` | [`HttpMetrics`]: the HTTP API | `io/http.rs` |
//! | `metrics/access.rs` | [`AccessMetrics`]: access control and limits | `io/signalling.rs` |
//! | `metrics/srtp.rs` | [`SrtpMetrics`]: encrypted media | `core/media`, `io/signalling.rs` |
//! | `metrics/ng.rs` | [`NgMetrics`]: the NG control protocol (media-node mode) | `io/ng.rs` |
//!
//! This file keeps the glue: the label vocabulary shared by several families, the
//! pre-resolved children ([`By`], [`By2`]), the registration helpers, and [`Metrics`] itself
//! (plus the process-wide `callmask_build_info` and `callmask_config_reloads_total`).
//!
//! Rules (see `docs/metrics.md` for the catalogue, which a test keeps in step with these files):
//!
//! - Every name starts with `callmask_`, uses base units (seconds, bytes) and counters end in
//!   `_total`. Process metrics keep their standard `process_*` names.
//! - Label values come only from closed enums ([`Side`], [`Direction`], [`SipMethod`], …), so
//!   a Call-ID, a phone number or an agent name can never become a label, and the number of
//!   series is fixed at compile time.
//! - Nothing on the packet path touches a label map. Children of every labelled family are
//!   resolved once, when the family registers, into arrays indexed by the enums; the
//!   accessors are an index plus an atomic add.
//! - Per-packet counts (RTP packets, bytes, loss, reordering, fail-closed time) do not even share
//!   a cache line between calls: see [`CallMetrics`] (per-call atomics summed at scrape, a
//!   retired-calls accumulator so counters never go backwards).
//!
//! ```
//! use callmask::metrics::{Direction, Metrics, Side};
//!
//! let metrics = Metrics::new();
//! let call = metrics.calls().new_call();          // one per call, cloned into its relay task
//! call.leg(Side::Pbx, Direction::Inbound).record_packet(172);
//! drop(call);                             // counts move to the retired accumulator
//! assert!(metrics.render().contains("callmask_rtp_packets_total{direction=\"inbound\",side=\"pbx\"} 1"));
//! ```

use dsp::mask::MaskReason;
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
mod calls;
mod http;
mod media;
mod ng;
mod recognizer;
mod recorder;
mod sip;
mod srtp;
pub use access::{AccessDenial, AccessMetrics, LimitLabel};
pub use calls::{CallCounters, CallMetrics, CallOutcome, CallStats, LegCounters};
pub use http::HttpMetrics;
pub use media::{DtmfSource, MediaMetrics, SecureAction};
pub use ng::{NgCommand, NgMetrics, NgResult};
pub use recognizer::{RecognizerMetrics, RecognizerOutcome};
pub use recorder::{RecorderMetrics, SinkKind};
pub use sip::{SipMetrics, TlsFailure};
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
    /// Result of a config reload.
    ReloadResult, "result" {
        /// New config applied.
        Success => "success",
        /// Rejected; the old config stays in force.
        Failure => "failure",
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

/// Every metric callmask exports. Build once, share as `Arc<Metrics>`: one registry, one
/// family per component, each registered by its own `register` and reached through its
/// accessor ([`Metrics::calls`], [`Metrics::sip`], [`Metrics::media`], [`Metrics::recorder`],
/// [`Metrics::recognizer`], [`Metrics::http`]).
pub struct Metrics {
    registry: Registry,
    calls: CallMetrics,
    sip: SipMetrics,
    /// The NG control family (media-node mode).
    ng: NgMetrics,
    /// The access-control family.
    access: AccessMetrics,
    /// The encrypted-media family.
    srtp: SrtpMetrics,
    media: MediaMetrics,
    recorder: RecorderMetrics,
    recognizer: RecognizerMetrics,
    http: HttpMetrics,
    config_reloads: By<ReloadResult, IntCounter>,
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

impl Metrics {
    /// Build and register every family. Label children are resolved here, once.
    pub fn new() -> Self {
        // Names, label names and buckets are literals in these files: failing here is a
        // programming error caught by every test, never a runtime condition.
        Self::try_new().expect("metric definitions are static and valid")
    }

    fn try_new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let r = &registry;
        let calls = CallMetrics::register(r)?;
        let sip = SipMetrics::register(r)?;
        let ng = NgMetrics::register(r)?;
        let access = AccessMetrics::register(r)?;
        let srtp = SrtpMetrics::register(r)?;
        let media = MediaMetrics::register(r)?;
        let recorder = RecorderMetrics::register(r)?;
        let recognizer = RecognizerMetrics::register(r)?;
        let http = HttpMetrics::register(r)?;
        let config_reloads = int_counter_vec(
            r,
            "callmask_config_reloads_total",
            "Config reloads attempted, by result.",
            &[ReloadResult::NAME],
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
            calls,
            sip,
            ng,
            access,
            srtp,
            media,
            recorder,
            recognizer,
            http,
            config_reloads: by(&config_reloads),
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

    /// The calls family (calls in progress and ended, per-call RTP counters).
    pub fn calls(&self) -> &CallMetrics {
        &self.calls
    }

    /// The SIP signalling family (owned by `io/signalling.rs`).
    pub fn sip(&self) -> &SipMetrics {
        &self.sip
    }

    /// The NG control family (owned by `io/ng.rs`).
    pub fn ng(&self) -> &NgMetrics {
        &self.ng
    }

    /// The access-control family (counted by `io/signalling.rs`).
    pub fn access(&self) -> &AccessMetrics {
        &self.access
    }

    /// The encrypted-media family (`metrics/srtp.rs`).
    pub fn srtp(&self) -> &SrtpMetrics {
        &self.srtp
    }

    /// The media and masking family (media core and shell, secure mode).
    pub fn media(&self) -> &MediaMetrics {
        &self.media
    }

    /// The recorder family (sinks, retention, SIPREC).
    pub fn recorder(&self) -> &RecorderMetrics {
        &self.recorder
    }

    /// The speech recognizer family.
    pub fn recognizer(&self) -> &RecognizerMetrics {
        &self.recognizer
    }

    /// The HTTP API family.
    pub fn http(&self) -> &HttpMetrics {
        &self.http
    }

    /// A config reload finished.
    pub fn config_reloaded(&self, result: ReloadResult) {
        self.config_reloads.get(result).inc();
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

/// The value of the one series `series` (name and labels) in a rendered scrape.
#[cfg(test)]
fn test_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("series {series} missing in:\n{text}"))
}

/// The series of family `name` in `r`, rendered (no HELP/TYPE lines): the exact-output
/// tests of the families compare against it.
#[cfg(test)]
fn test_series(r: &Registry, name: &str) -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&r.gather(), &mut buf);
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_value as value;

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
        m.media().masked_span(MaskReason::DtmfInband, 0.25);
        m.media()
            .rtp_dropped(Side::Pbx, DropReason::UnexpectedSource);
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
