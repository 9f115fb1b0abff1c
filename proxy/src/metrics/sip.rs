//! The SIP signalling family: what the signalling shell (`io/signalling.rs`) counts from the
//! proxy core's events and its sockets. Registered as one unit ([`SipMetrics::register`]);
//! label children are resolved once there, so each count is an index and an atomic add.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

use super::{
    by2, histogram_vec, int_counter_vec, int_gauge, By2, DropReason, Label, RetransmitAction, Side,
    SipMethod, StatusClass, TransactionKind, Transport,
};

/// Histogram buckets (seconds) for SIP client transactions: Timer B/F is 32 s.
const TXN_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 32.0,
];

label_enum! {
    /// Why a SIP-over-TLS handshake failed (issue 14). Never carries certificate contents.
    TlsFailure, "reason" {
        /// A client presented no certificate where `tls.client_ca_file` asks for one.
        NoCertificate => "no_certificate",
        /// The certificate does not chain to the configured CAs (unknown issuer).
        UnknownCa => "unknown_ca",
        /// The certificate is expired or not valid yet.
        Expired => "expired",
        /// The server certificate does not name the peer (`tls.server_name` or its address).
        NameMismatch => "name_mismatch",
        /// Any other certificate problem (bad signature, bad encoding, wrong usage, revoked).
        BadCertificate => "bad_certificate",
        /// The peer refused callmask's certificate or the handshake (a TLS alert).
        PeerAlert => "peer_alert",
        /// Not TLS, or no common version/cipher suite (plaintext SIP sent to a TLS port).
        Protocol => "protocol",
        /// The handshake did not finish within `limits.tcp_idle_timeout_s`.
        Timeout => "timeout",
        /// The connection closed or failed during the handshake.
        Io => "io",
    }
}

/// The `callmask_sip_*` families and `callmask_registrations_active`.
pub struct SipMetrics {
    messages: By2<Side, Transport, IntCounter>,
    requests: By2<Side, SipMethod, IntCounter>,
    responses: IntCounterVec,
    transaction_duration: By2<Side, TransactionKind, prometheus::Histogram>,
    retransmissions: By2<Side, RetransmitAction, IntCounter>,
    rejected: By2<Side, DropReason, IntCounter>,
    tls_failures: By2<Side, TlsFailure, IntCounter>,
    registrations_active: IntGauge,
}

impl std::fmt::Debug for SipMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipMetrics").finish_non_exhaustive()
    }
}

impl SipMetrics {
    /// Register the family in `r` and resolve its label children.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let messages = int_counter_vec(
            r,
            "callmask_sip_messages_received_total",
            "SIP messages received (requests, responses, keep-alives excluded), by side and transport.",
            &[Side::NAME, Transport::NAME],
        )?;
        let requests = int_counter_vec(
            r,
            "callmask_sip_requests_total",
            "SIP requests received, by side and method.",
            &[Side::NAME, SipMethod::NAME],
        )?;
        let responses = int_counter_vec(
            r,
            "callmask_sip_responses_total",
            "SIP responses received, by side, CSeq method and status class.",
            &[Side::NAME, SipMethod::NAME, StatusClass::NAME],
        )?;
        // Pre-create the INVITE series so dashboards see zeros, not gaps; other methods appear
        // on first use (2 × 15 × 6 series up front would be noise).
        for side in <Side as Label>::ALL {
            for class in StatusClass::ALL {
                let invite = SipMethod::Invite.as_str();
                responses.with_label_values(&[side.as_str(), invite, class.as_str()]);
            }
        }
        let txn = histogram_vec(
            r,
            "callmask_sip_transaction_duration_seconds",
            "Client transaction time from first send to final response, by the side the request went to and kind.",
            &[Side::NAME, TransactionKind::NAME],
            TXN_BUCKETS,
        )?;
        let retransmissions = int_counter_vec(
            r,
            "callmask_sip_retransmissions_total",
            "SIP retransmissions resent by callmask's transactions or absorbed by them, by side.",
            &[Side::NAME, RetransmitAction::NAME],
        )?;
        let rejected = int_counter_vec(
            r,
            "callmask_sip_messages_rejected_total",
            "SIP messages answered with an error by callmask or dropped, by side and reason.",
            &[Side::NAME, DropReason::NAME],
        )?;
        let tls_failures = int_counter_vec(
            r,
            "callmask_sip_tls_handshake_failures_total",
            "SIP-over-TLS handshakes that failed, inbound or outbound, by side and reason.",
            &[Side::NAME, TlsFailure::NAME],
        )?;
        let registrations_active = int_gauge(
            r,
            "callmask_registrations_active",
            "Agent registrations held (registration mode).",
        )?;
        Ok(SipMetrics {
            messages: by2(&messages),
            requests: by2(&requests),
            responses,
            transaction_duration: by2(&txn),
            retransmissions: by2(&retransmissions),
            rejected: by2(&rejected),
            tls_failures: by2(&tls_failures),
            registrations_active,
        })
    }

    /// A SIP message arrived on `side` over `transport`.
    pub fn message_received(&self, side: Side, transport: Transport) {
        self.messages.get(side, transport).inc();
    }

    /// A SIP request arrived on `side`.
    pub fn request(&self, side: Side, method: SipMethod) {
        self.requests.get(side, method).inc();
    }

    /// A SIP response arrived on `side`; `method` is its CSeq method. Codes outside
    /// `100..=699` are not counted (the parser rejects them first).
    pub fn response(&self, side: Side, method: SipMethod, code: u16) {
        if let Some(class) = StatusClass::from_code(code) {
            self.responses
                .with_label_values(&[side.as_str(), method.as_str(), class.as_str()])
                .inc();
        }
    }

    /// A client transaction toward `side` ended `seconds` after its first send.
    pub fn transaction_finished(&self, side: Side, kind: TransactionKind, seconds: f64) {
        self.transaction_duration.get(side, kind).observe(seconds);
    }

    /// A SIP retransmission on `side`: resent by callmask toward it, or absorbed from it.
    pub fn retransmission(&self, side: Side, action: RetransmitAction) {
        self.retransmissions.get(side, action).inc();
    }

    /// A SIP message from `side` was rejected (error response) or dropped.
    pub fn rejected(&self, side: Side, reason: DropReason) {
        self.rejected.get(side, reason).inc();
    }

    /// A TLS handshake on `side` failed for `reason`.
    pub fn tls_handshake_failed(&self, side: Side, reason: TlsFailure) {
        self.tls_failures.get(side, reason).inc();
    }

    /// Agent registrations held.
    pub fn set_registrations_active(&self, n: u64) {
        self.registrations_active
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, TextEncoder};

    use super::*;

    /// The family alone, rendered, keeping only the series of `name` (no HELP/TYPE lines).
    fn series(m: &Registry, name: &str) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&m.gather(), &mut buf);
        String::from_utf8_lossy(&buf)
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn exact_output() {
        let r = Registry::new();
        let m = SipMetrics::register(&r).expect("register");
        m.message_received(Side::Agents, Transport::Tcp);
        m.retransmission(Side::Pbx, RetransmitAction::Resent);
        m.rejected(Side::Pbx, DropReason::NoRoute);
        m.response(Side::Pbx, SipMethod::Bye, 200);
        m.set_registrations_active(3);
        m.tls_handshake_failed(Side::Pbx, TlsFailure::NoCertificate);

        assert_eq!(
            series(&r, "callmask_sip_messages_received_total"),
            "callmask_sip_messages_received_total{side=\"agents\",transport=\"tcp\"} 1\n\
             callmask_sip_messages_received_total{side=\"agents\",transport=\"tls\"} 0\n\
             callmask_sip_messages_received_total{side=\"agents\",transport=\"udp\"} 0\n\
             callmask_sip_messages_received_total{side=\"pbx\",transport=\"tcp\"} 0\n\
             callmask_sip_messages_received_total{side=\"pbx\",transport=\"tls\"} 0\n\
             callmask_sip_messages_received_total{side=\"pbx\",transport=\"udp\"} 0\n"
        );
        assert_eq!(
            series(&r, "callmask_sip_retransmissions_total"),
            "callmask_sip_retransmissions_total{handling=\"absorbed\",side=\"agents\"} 0\n\
             callmask_sip_retransmissions_total{handling=\"absorbed\",side=\"pbx\"} 0\n\
             callmask_sip_retransmissions_total{handling=\"resent\",side=\"agents\"} 0\n\
             callmask_sip_retransmissions_total{handling=\"resent\",side=\"pbx\"} 1\n"
        );
        let tls = series(&r, "callmask_sip_tls_handshake_failures_total");
        assert_eq!(tls.lines().count(), 2 * TlsFailure::ALL.len(), "{tls}");
        assert!(tls.contains(
            "callmask_sip_tls_handshake_failures_total{reason=\"no_certificate\",side=\"pbx\"} 1\n"
        ));
        assert_eq!(tls.matches("} 1\n").count(), 1, "{tls}");
        assert_eq!(
            series(&r, "callmask_registrations_active"),
            "callmask_registrations_active 3\n"
        );
        // Responses: INVITE pre-created for every class, other methods on first use.
        let responses = series(&r, "callmask_sip_responses_total");
        assert_eq!(responses.lines().count(), 13, "{responses}");
        assert!(responses.contains(
            "callmask_sip_responses_total{method=\"BYE\",side=\"pbx\",status_class=\"2xx\"} 1\n"
        ));
        // Drops: every side × reason from start-up.
        let rejected = series(&r, "callmask_sip_messages_rejected_total");
        assert_eq!(rejected.lines().count(), 2 * DropReason::ALL.len());
        assert!(rejected.contains(
            "callmask_sip_messages_rejected_total{reason=\"no_route\",side=\"pbx\"} 1\n"
        ));
        assert_eq!(rejected.matches("} 1\n").count(), 1, "{rejected}");
        // Transaction durations: side × kind, 12 buckets + +Inf, sum and count each.
        let txn = series(&r, "callmask_sip_transaction_duration_seconds_bucket");
        assert_eq!(txn.lines().count(), 2 * 2 * (TXN_BUCKETS.len() + 1));
    }
}
