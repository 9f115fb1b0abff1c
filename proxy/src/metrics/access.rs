//! The access-control and limits family (issue 13): SIP messages refused because of who sent
//! them or because a `[limits]` bound was reached.
//! Counted by `io/signalling.rs` from the proxy core's [`crate::core::proxy::ProxyEvent::AccessDenied`].
//! Registered as one unit ([`AccessMetrics::register`]); children resolved once.

use prometheus::{IntCounter, Registry};

use super::{by2, int_counter_vec, By2, Label, Side};

label_enum! {
    /// Why access control refused a SIP message.
    AccessDenial, "reason" {
        /// The source is outside the side's allow-list (or is not its peer).
        NotAllowed => "not_allowed",
        /// Registration mode: neither allowed nor a registered phone's address.
        NotRegistered => "not_registered",
    }
}

impl From<crate::core::proxy::AccessReason> for AccessDenial {
    fn from(r: crate::core::proxy::AccessReason) -> Self {
        use crate::core::proxy::AccessReason as R;
        match r {
            R::NotAllowed => AccessDenial::NotAllowed,
            R::NotRegistered => AccessDenial::NotRegistered,
        }
    }
}

label_enum! {
    /// Which `[limits]` bound refused a message.
    LimitLabel, "limit" {
        /// An SDP with more `m=` lines than `limits.streams_per_call`.
        StreamsPerCall => "streams_per_call",
        /// `limits.calls` calls in progress already.
        Calls => "calls",
        /// `limits.transactions` live transactions already.
        Transactions => "transactions",
        /// `limits.registrations` bindings already.
        Registrations => "registrations",
        /// A source over `limits.source_requests_per_s` (dropped).
        SourceRequests => "source_requests",
        /// A source over `limits.source_calls_per_s` (503).
        SourceCalls => "source_calls",
        /// A TCP connection over `limits.tcp_connections_per_source` (closed at accept).
        TcpPerSource => "tcp_connections_per_source",
        /// A TCP connection over `limits.tcp_connections` (closed at accept).
        TcpTotal => "tcp_connections",
        /// A TCP connection that completed no message within `limits.tcp_idle_timeout_s`.
        TcpIdle => "tcp_idle_timeout",
        /// A new call while callmask drains for shutdown (SIGTERM; 503).
        Draining => "draining",
    }
}

impl From<crate::core::proxy::LimitKind> for LimitLabel {
    fn from(k: crate::core::proxy::LimitKind) -> Self {
        use crate::core::proxy::LimitKind as K;
        match k {
            K::StreamsPerCall => LimitLabel::StreamsPerCall,
            K::Calls => LimitLabel::Calls,
            K::Transactions => LimitLabel::Transactions,
            K::Registrations => LimitLabel::Registrations,
            K::SourceRequests => LimitLabel::SourceRequests,
            K::SourceCalls => LimitLabel::SourceCalls,
            K::Draining => LimitLabel::Draining,
        }
    }
}

/// The `callmask_sip_access_denied_total` and `callmask_limit_refusals_total` families.
pub struct AccessMetrics {
    denied: By2<Side, AccessDenial, IntCounter>,
    limits: By2<Side, LimitLabel, IntCounter>,
}

impl std::fmt::Debug for AccessMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessMetrics").finish_non_exhaustive()
    }
}

impl AccessMetrics {
    /// Register the family in `r` and resolve its label children.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let denied = int_counter_vec(
            r,
            "callmask_sip_access_denied_total",
            "SIP messages refused by access control (requests answered 403, responses and ACK dropped), by side and reason.",
            &[Side::NAME, AccessDenial::NAME],
        )?;
        let limits = int_counter_vec(
            r,
            "callmask_limit_refusals_total",
            "Messages or connections refused because a [limits] bound was reached, by side and limit.",
            &[Side::NAME, LimitLabel::NAME],
        )?;
        Ok(AccessMetrics {
            denied: by2(&denied),
            limits: by2(&limits),
        })
    }

    /// A SIP message on `side` was refused by access control.
    pub fn denied(&self, side: Side, reason: AccessDenial) {
        self.denied.get(side, reason).inc();
    }

    /// Something from `side` was refused by the `limit` bound.
    pub fn limit_refused(&self, side: Side, limit: LimitLabel) {
        self.limits.get(side, limit).inc();
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};

    use super::*;

    #[test]
    fn denials_are_counted_by_side_and_reason() {
        let r = Registry::new();
        let m = AccessMetrics::register(&r).expect("registers");
        m.denied(Side::Agents, AccessDenial::NotRegistered);
        m.denied(Side::Pbx, AccessDenial::NotAllowed);
        m.denied(Side::Pbx, AccessDenial::NotAllowed);
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&r.gather(), &mut buf)
            .expect("encodes");
        let text = String::from_utf8_lossy(&buf);
        assert!(text
            .contains("callmask_sip_access_denied_total{reason=\"not_allowed\",side=\"pbx\"} 2"));
        assert!(text.contains(
            "callmask_sip_access_denied_total{reason=\"not_registered\",side=\"agents\"} 1"
        ));
        assert!(text.contains(
            "callmask_sip_access_denied_total{reason=\"not_allowed\",side=\"agents\"} 0"
        ));
    }
}
