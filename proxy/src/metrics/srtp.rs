//! The encrypted-media family: what the media core counts about SRTP it cannot hear.
//! Registered as one unit ([`SrtpMetrics::register`]); label children are resolved once
//! there, so each count is an index and an atomic add. Never a key, never a Call-ID.

use prometheus::{Counter, IntCounter, Registry};

use super::{by, by2, counter_vec, int_counter_vec, By, By2, Label, Side};

label_enum! {
    /// Why an SRTP or SRTCP packet from a peer was dropped (never played or recorded).
    SrtpDrop, "reason" {
        /// The authentication tag did not verify (tampered, or the wrong key).
        Auth => "auth",
        /// Seen before, or older than the replay window (RFC 3711 §3.3.2).
        Replay => "replay",
        /// Too short, or otherwise not SRTP the context can read.
        Malformed => "malformed",
    }
}

/// The `callmask_masking_undecodable_*` and `callmask_srtp_*` families.
pub struct SrtpMetrics {
    undecodable_seconds: By<Side, Counter>,
    dropped: By2<Side, SrtpDrop, IntCounter>,
    packets: By<Side, IntCounter>,
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
        let dropped = int_counter_vec(
            r,
            "callmask_srtp_packets_dropped_total",
            "SRTP/SRTCP packets from a peer dropped unrelayed and unrecorded (callmask terminates SDES-SRTP on that leg), by side and reason.",
            &[Side::NAME, SrtpDrop::NAME],
        )?;
        let packets = int_counter_vec(
            r,
            "callmask_srtp_packets_decrypted_total",
            "SRTP/SRTCP packets from a peer authenticated and decrypted by callmask, by side.",
            &[Side::NAME],
        )?;
        Ok(SrtpMetrics {
            undecodable_seconds: by(&undecodable_seconds),
            dropped: by2(&dropped),
            packets: by(&packets),
        })
    }

    /// An SRTP/SRTCP packet from `side` was dropped for `reason`.
    pub fn dropped(&self, side: Side, reason: SrtpDrop) {
        self.dropped.get(side, reason).inc();
    }

    /// An SRTP/SRTCP packet from `side` was decrypted.
    pub fn decrypted(&self, side: Side) {
        self.packets.get(side).inc();
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
