//! Bounds on what one call, one source or the whole core may hold (issue 13, `[limits]`):
//! every table bounded, every bound set from the configuration with a sane default. A request
//! over a bound is refused (488 for media, 503 with Retry-After for load) and counted by
//! [`LimitKind`], so a flood degrades the flooder rather than the calls in progress.

/// The core's bounds (see `config::LimitsConfig` for the documented defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreLimits {
    /// Most `m=` lines in one SDP (an SDP with more is refused 488, before any port is taken).
    pub streams_per_call: usize,
}

impl Default for CoreLimits {
    fn default() -> Self {
        CoreLimits {
            streams_per_call: 4,
        }
    }
}

impl CoreLimits {
    /// The bounds of a validated configuration.
    pub fn from_config(l: &config::LimitsConfig) -> Self {
        CoreLimits {
            streams_per_call: usize::from(l.streams_per_call.get()),
        }
    }
}

/// Which bound refused a message (closed set: the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// An SDP with more `m=` lines than `limits.streams_per_call`.
    StreamsPerCall,
}

impl LimitKind {
    /// Stable label.
    pub fn label(self) -> &'static str {
        match self {
            LimitKind::StreamsPerCall => "streams_per_call",
        }
    }
}

impl super::ProxyCore {
    /// Replace the bounds (at start, and on a configuration reload).
    pub fn set_limits(&mut self, limits: CoreLimits) {
        self.limits = limits;
    }
}
