//! The encrypted-media family: what the media core counts about SRTP it cannot hear.
//! Registered as one unit ([`SrtpMetrics::register`]); label children are resolved once
//! there, so each count is an index and an atomic add. Never a key, never a Call-ID.

use prometheus::{Counter, Registry};

use super::{by, counter_vec, By, Label, Side};

/// The `callmask_masking_undecodable_*` family.
pub struct SrtpMetrics {
    undecodable_seconds: By<Side, Counter>,
}

impl std::fmt::Debug for SrtpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpMetrics").finish_non_exhaustive()
    }
}

impl SrtpMetrics {
    /// Register the family in `r` and resolve its label children.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let undecodable_seconds = counter_vec(
            r,
            "callmask_masking_undecodable_seconds_total",
            "Recorder-path audio muted because its media was encrypted end to end (SRTP callmask holds no keys for, media.undecodable = relay-muted), by the side it came from.",
            &[Side::NAME],
        )?;
        Ok(SrtpMetrics {
            undecodable_seconds: by(&undecodable_seconds),
        })
    }

    /// `seconds` of encrypted audio from `side` went to the recorder as silence.
    pub fn undecodable(&self, side: Side, seconds: f64) {
        self.undecodable_seconds.get(side).inc_by(seconds.max(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_per_side_seconds() {
        let r = Registry::new();
        let m = SrtpMetrics::register(&r).expect("register");
        m.undecodable(Side::Pbx, 0.02);
        m.undecodable(Side::Pbx, 0.02);
        m.undecodable(Side::Agents, -1.0);
        let mut out = Vec::new();
        let enc = prometheus::TextEncoder::new();
        prometheus::Encoder::encode(&enc, &r.gather(), &mut out).expect("encode");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("callmask_masking_undecodable_seconds_total{side=\"pbx\"} 0.04"),
            "{text}"
        );
        assert!(
            text.contains("callmask_masking_undecodable_seconds_total{side=\"agents\"} 0"),
            "{text}"
        );
    }
}
