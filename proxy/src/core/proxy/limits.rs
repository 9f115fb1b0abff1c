//! Bounds on what one call, one source or the whole core may hold (issue 13, `[limits]`):
//! every table bounded, every bound set from the configuration with a sane default. A request
//! over a bound is refused (488 for media, 503 with Retry-After for load) and counted by
//! [`LimitKind`], so a flood degrades the flooder rather than the calls in progress.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::types::{ProxyEvent, Side};
use crate::core::sip::{build_response, Method, SipMessage, StatusCode};

/// Most sources whose rate is tracked at once; idle (full) buckets are forgotten first.
const MAX_SOURCES: usize = 65_536;
/// Seconds a refused sender is asked to wait (`Retry-After`).
const RETRY_AFTER_S: &[u8] = b"5";

/// The core's bounds (see `config::LimitsConfig` for the documented defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct CoreLimits {
    /// Most `m=` lines in one SDP (an SDP with more is refused 488, before any port is taken).
    pub streams_per_call: usize,
    /// Most calls in progress.
    pub calls: usize,
    /// Most live transactions.
    pub transactions: usize,
    /// Most registration bindings.
    pub registrations: usize,
    /// Requests per second from one source address (burst twice that).
    pub source_requests_per_s: f64,
    /// New calls per second from one source address (burst twice that).
    pub source_calls_per_s: f64,
}

impl Default for CoreLimits {
    fn default() -> Self {
        CoreLimits::from_config(&config::LimitsConfig::default())
    }
}

impl CoreLimits {
    /// The bounds of a validated configuration.
    pub fn from_config(l: &config::LimitsConfig) -> Self {
        let count = |n: config::types::LimitCount| n.get() as usize;
        CoreLimits {
            streams_per_call: usize::from(l.streams_per_call.get()),
            calls: count(l.calls),
            transactions: count(l.transactions),
            registrations: count(l.registrations),
            source_requests_per_s: f64::from(l.source_requests_per_s.get()),
            source_calls_per_s: f64::from(l.source_calls_per_s.get()),
        }
    }
}

/// Refusals (403, 400) answered per source and second (burst twice that): a misconfigured
/// peer still learns why it is refused; a flood of strangers or garbage gets at most this.
pub(super) const REFUSALS_PER_SOURCE_PER_S: f64 = 5.0;

/// Token buckets per source IP, bounded at [`MAX_SOURCES`].
#[derive(Debug, Default)]
pub(super) struct SourceBuckets {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl SourceBuckets {
    /// Take one token for `ip` at `now` from a bucket of `rate` per second, burst `2·rate`.
    /// `false`: over the rate (or the table is full of active sources).
    pub(super) fn take(&mut self, ip: IpAddr, rate: f64, now: Instant) -> bool {
        let burst = 2.0 * rate;
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&ip) {
            // A bucket idle long enough to be full again is the same as no bucket.
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let (tokens, at) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Which bound refused a message (closed set: the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// An SDP with more `m=` lines than `limits.streams_per_call`.
    StreamsPerCall,
    /// `limits.calls` calls in progress already (503).
    Calls,
    /// `limits.transactions` live transactions already (503).
    Transactions,
    /// `limits.registrations` bindings already (503).
    Registrations,
    /// The source sent more than `limits.source_requests_per_s` (dropped).
    SourceRequests,
    /// The source started more than `limits.source_calls_per_s` calls (503).
    SourceCalls,
    /// A new call while callmask drains for shutdown (503).
    Draining,
}

impl LimitKind {
    /// Every kind, in declaration order.
    pub const ALL: [LimitKind; 7] = [
        LimitKind::StreamsPerCall,
        LimitKind::Calls,
        LimitKind::Transactions,
        LimitKind::Registrations,
        LimitKind::SourceRequests,
        LimitKind::SourceCalls,
        LimitKind::Draining,
    ];

    /// Stable label.
    pub fn label(self) -> &'static str {
        match self {
            LimitKind::StreamsPerCall => "streams_per_call",
            LimitKind::Calls => "calls",
            LimitKind::Transactions => "transactions",
            LimitKind::Registrations => "registrations",
            LimitKind::SourceRequests => "source_requests",
            LimitKind::SourceCalls => "source_calls",
            LimitKind::Draining => "draining",
        }
    }
}

impl super::ProxyCore {
    /// Replace the bounds (at start, and on a configuration reload).
    pub fn set_limits(&mut self, limits: CoreLimits) {
        self.limits = limits;
    }

    /// Drain for shutdown: from now on a new call (an INVITE outside a dialog) is answered
    /// 503 with Retry-After; calls in progress, their in-dialog requests and registrations
    /// go on.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Whether the core refuses new calls for shutdown.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The load bounds for request `msg` from `src` on `side`, checked before any state is
    /// made for it: `true` if it may go on; otherwise it was answered 503 with Retry-After
    /// (table full, source starting calls too fast) or dropped (source flooding), and
    /// counted. ACK is never refused here (it completes what was already admitted).
    pub(super) fn within_limits(
        &mut self,
        side: Side,
        src: SocketAddr,
        msg: &SipMessage,
        now: Instant,
    ) -> bool {
        let Some(method) = msg.method() else {
            return true;
        };
        if *method == Method::Ack {
            return true;
        }
        let ip = src.ip();
        if !self
            .source_requests
            .take(ip, self.limits.source_requests_per_s, now)
        {
            // A flood gets no answer: answering would amplify it.
            self.events.push_back(ProxyEvent::LimitRefused {
                side,
                limit: LimitKind::SourceRequests,
            });
            return false;
        }
        let initial_invite = *method == Method::Invite && msg.to().is_ok_and(|t| t.tag().is_none());
        let over = if initial_invite && self.draining {
            Some(LimitKind::Draining)
        } else if self.txns.len() >= self.limits.transactions && *method != Method::Cancel {
            Some(LimitKind::Transactions)
        } else if initial_invite && self.calls.len() >= self.limits.calls {
            Some(LimitKind::Calls)
        } else if initial_invite
            && !self
                .source_calls
                .take(ip, self.limits.source_calls_per_s, now)
        {
            Some(LimitKind::SourceCalls)
        } else if *method == Method::Register
            && side == Side::Agents
            && self.registrar.active() >= self.limits.registrations
        {
            Some(LimitKind::Registrations)
        } else {
            None
        };
        let Some(limit) = over else {
            return true;
        };
        self.events
            .push_back(ProxyEvent::LimitRefused { side, limit });
        let busy = build_response(msg, StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
            .and_then(|r| r.edit().add_header(b"Retry-After", RETRY_AFTER_S).finish());
        if let Ok(resp) = busy {
            self.send(side, src, resp.as_bytes().clone());
        }
        false
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the virtual clock's base is read once per test
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn buckets_allow_the_burst_then_the_rate() {
        let mut b = SourceBuckets::default();
        let (ip, other): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        let ok = (0..30).filter(|_| b.take(ip, 10.0, t0)).count();
        assert_eq!(ok, 20, "burst = 2 × rate");
        assert!(b.take(other, 10.0, t0), "another source has its own bucket");
        assert!(!b.take(ip, 10.0, t0 + Duration::from_millis(50)));
        assert!(
            b.take(ip, 10.0, t0 + Duration::from_millis(150)),
            "refilled at the rate"
        );
    }
}
