//! Readiness flags behind `GET /readyz`: each owner sets its flag as its resource comes up
//! (or goes away); the HTTP listener ([`super::http`]) only reads them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Readiness flags, set by the owner of each resource as it comes up (or goes away).
///
/// A feature that is not configured counts as ready: the owner sets its flag at startup
/// (e.g. `recognizer_loaded` when speech masking is off).
#[derive(Debug, Default)]
pub struct Readiness {
    listeners_bound: AtomicBool,
    sinks_reachable: AtomicBool,
    recognizer_loaded: AtomicBool,
    /// Shutting down (SIGTERM drain): not ready, so a load balancer sends new calls elsewhere.
    draining: AtomicBool,
    /// Every loaded recognizer worker is stuck in one job.
    recognizer_stalled: AtomicBool,
    /// `siprec` sinks that can record nothing now: no SRS answers its probes and there is
    /// no usable fallback folder (`sinks_reachable` down while any).
    siprec_unusable: AtomicUsize,
}

impl Readiness {
    /// All flags down.
    pub fn new() -> Self {
        Self::default()
    }

    /// SIP and media listeners are bound.
    pub fn set_listeners_bound(&self, v: bool) {
        self.listeners_bound.store(v, Ordering::Release);
    }

    /// Every configured recorder sink is reachable (or none is configured).
    pub fn set_sinks_reachable(&self, v: bool) {
        self.sinks_reachable.store(v, Ordering::Release);
    }

    /// The speech recognizer is loaded (or speech masking is off).
    pub fn set_recognizer_loaded(&self, v: bool) {
        self.recognizer_loaded.store(v, Ordering::Release);
    }

    /// A `siprec` sink became unusable (`true`) or usable again (`false`); each sink reports
    /// its changes only.
    pub fn siprec_sink_unusable(&self, unusable: bool) {
        if unusable {
            self.siprec_unusable.fetch_add(1, Ordering::AcqRel);
        } else {
            let _ = self
                .siprec_unusable
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Every loaded recognizer worker is stuck in one job (`recognizer_responsive` down).
    pub fn set_recognizer_stalled(&self, v: bool) {
        self.recognizer_stalled.store(v, Ordering::Release);
    }

    /// The process drains for shutdown (new calls refused).
    pub fn set_draining(&self, v: bool) {
        self.draining.store(v, Ordering::Release);
    }

    /// Names of the flags still down (and `not_draining` while draining); empty when ready.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let sinks = self.sinks_reachable.load(Ordering::Acquire)
            && self.siprec_unusable.load(Ordering::Acquire) == 0;
        let mut down: Vec<&'static str> = [
            (
                "listeners_bound",
                self.listeners_bound.load(Ordering::Acquire),
            ),
            ("sinks_reachable", sinks),
            (
                "recognizer_loaded",
                self.recognizer_loaded.load(Ordering::Acquire),
            ),
        ]
        .into_iter()
        .filter(|(_, up)| !up)
        .map(|(name, _)| name)
        .collect();
        if self.recognizer_stalled.load(Ordering::Acquire) {
            down.push("recognizer_responsive");
        }
        if self.draining.load(Ordering::Acquire) {
            down.push("not_draining");
        }
        down
    }

    /// Every flag is set.
    pub fn is_ready(&self) -> bool {
        self.not_ready().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lists_what_is_down() {
        let r = Readiness::new();
        assert_eq!(
            r.not_ready(),
            ["listeners_bound", "sinks_reachable", "recognizer_loaded"]
        );
        r.set_listeners_bound(true);
        r.set_recognizer_loaded(true);
        assert_eq!(r.not_ready(), ["sinks_reachable"]);
        r.set_sinks_reachable(true);
        assert!(r.is_ready());
        r.set_draining(true);
        assert_eq!(r.not_ready(), ["not_draining"]);
    }
}
