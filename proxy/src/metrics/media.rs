//! The media family: RTP dropped and jitter, the media port pool, and what masking did on the
//! recorder path (`callmask_dtmf_*`, `callmask_masked_*`, `callmask_mask_decision_latency_*`,
//! `callmask_secure_mode_changes_total`). Counted by the media core (`core/media`), its shell
//! (`io/media.rs`) and the HTTP API's secure-mode calls.

use dsp::mask::MaskReason;
use prometheus::{Counter, HistogramVec, IntCounter, IntGauge, Registry};

use super::{
    by, by2, counter_vec, histogram_vec, int_counter_vec, int_gauge, By, By2, DropReason, Label,
    Side,
};

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
    /// Secure-mode change requested for a call.
    SecureAction, "action" {
        /// Recorder path muted until released.
        Secure => "secure",
        /// Released.
        Unsecure => "unsecure",
    }
}

/// Interarrival jitter (RFC 3550 §6.4.1), seconds.
const JITTER_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32];
/// Mask decision latency, seconds: DTMF ~25–40 ms, spoken identifiers ~1–2 s.
const MASK_LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0,
];

/// The `callmask_rtp_packets_dropped_total`, jitter, media-port and masking families.
pub struct MediaMetrics {
    rtp_dropped: By2<Side, DropReason, IntCounter>,
    rtp_jitter: By<Side, prometheus::Histogram>,
    media_ports_in_use: IntGauge,
    media_ports_free: IntGauge,
    worker_calls: prometheus::IntGaugeVec,
    dtmf_detected: By<DtmfSource, IntCounter>,
    masked_spans: By<MaskReason, IntCounter>,
    masked_seconds: By<MaskReason, Counter>,
    mask_decision_latency: HistogramVec,
    secure_mode_changes: By<SecureAction, IntCounter>,
}

impl std::fmt::Debug for MediaMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaMetrics").finish_non_exhaustive()
    }
}

impl MediaMetrics {
    /// Register the family in `r` and resolve its label children.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
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
        let worker_calls = super::int_gauge_vec(
            r,
            "callmask_media_worker_calls",
            "Calls whose media a media worker (thread) carries, by worker index.",
            &["worker"],
        )?;
        // There is always a worker 0: exported (at 0) from the start, like every other family.
        let _ = worker_calls.with_label_values(&["0"]);
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
        Ok(MediaMetrics {
            rtp_dropped: by2(&rtp_dropped),
            rtp_jitter: by(&rtp_jitter),
            media_ports_in_use,
            media_ports_free,
            worker_calls,
            dtmf_detected: by(&dtmf_detected),
            masked_spans: by(&masked_spans),
            masked_seconds: by(&masked_seconds),
            mask_decision_latency,
            secure_mode_changes: by(&secure_mode_changes),
        })
    }

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

    /// The gauge of media worker `index`'s calls (resolved once per worker at start, so
    /// placing and ending calls never formats a label).
    pub fn worker_calls(&self, index: usize) -> IntGauge {
        self.worker_calls.with_label_values(&[&index.to_string()])
    }

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
}

#[cfg(test)]
mod tests {
    use super::super::test_series;
    use super::*;

    #[test]
    fn exact_output() {
        let r = Registry::new();
        let m = MediaMetrics::register(&r).expect("register");
        m.rtp_dropped(Side::Pbx, DropReason::UnexpectedSource);
        m.set_media_ports(4, 60);
        m.dtmf_detected(DtmfSource::Rfc4733);
        m.masked_span(MaskReason::DtmfInband, 0.25);
        m.secure_mode_changed(SecureAction::Secure);
        assert_eq!(
            test_series(&r, "callmask_dtmf_detected_total"),
            "callmask_dtmf_detected_total{source=\"inband\"} 0\n\
             callmask_dtmf_detected_total{source=\"info\"} 0\n\
             callmask_dtmf_detected_total{source=\"rfc4733\"} 1\n"
        );
        assert_eq!(
            test_series(&r, "callmask_media_ports_in_use"),
            "callmask_media_ports_in_use 4\n"
        );
        assert_eq!(
            test_series(&r, "callmask_media_ports_free"),
            "callmask_media_ports_free 60\n"
        );
        assert_eq!(
            test_series(&r, "callmask_secure_mode_changes_total"),
            "callmask_secure_mode_changes_total{action=\"secure\"} 1\n\
             callmask_secure_mode_changes_total{action=\"unsecure\"} 0\n"
        );
        // Every side × reason and every mask reason from start-up.
        let dropped = test_series(&r, "callmask_rtp_packets_dropped_total");
        assert_eq!(dropped.lines().count(), 2 * DropReason::ALL.len());
        assert!(dropped.contains(
            "callmask_rtp_packets_dropped_total{reason=\"unexpected_source\",side=\"pbx\"} 1\n"
        ));
        assert_eq!(dropped.matches("} 1\n").count(), 1, "{dropped}");
        let seconds = test_series(&r, "callmask_masked_seconds_total");
        assert_eq!(seconds.lines().count(), MaskReason::ALL.len());
        assert!(seconds.contains("callmask_masked_seconds_total{reason=\"dtmf_inband\"} 0.25\n"));
        // Jitter: one histogram per side, 9 buckets + +Inf.
        let jitter = test_series(&r, "callmask_rtp_jitter_seconds_bucket");
        assert_eq!(jitter.lines().count(), 2 * (JITTER_BUCKETS.len() + 1));
    }
}
