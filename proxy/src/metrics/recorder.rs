//! The recorder family: sessions, bytes, errors and drops per sink kind, the WAV sink's disk
//! and retention, audio that never reached a recording, and SIPREC session outcomes. Counted
//! by the recorder sinks (`io/recorder`) and the media shell (the shared tap queue).

use prometheus::{IntCounter, IntGauge, Registry};

use super::{by, int_counter, int_counter_vec, int_gauge, int_gauge_vec, By, Label};

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

/// The `callmask_recorder_*` and `callmask_siprec_*` families.
pub struct RecorderMetrics {
    recorder_sessions: By<SinkKind, IntCounter>,
    recorder_sessions_active: By<SinkKind, IntGauge>,
    recorder_bytes: By<SinkKind, IntCounter>,
    recorder_errors: By<SinkKind, IntCounter>,
    recorder_queue_dropped: By<SinkKind, IntCounter>,
    /// Sink kinds fed by the shared tap queue (set once at startup): a frame the queue drops
    /// is lost to each of them.
    tap_sinks: std::sync::RwLock<Vec<SinkKind>>,
    recorder_disk_full: IntGauge,
    recorder_retention_deleted: IntCounter,
    recorder_dropped_samples: IntCounter,
    siprec_failovers: IntCounter,
    siprec_established: IntCounter,
    siprec_failed: IntCounter,
    siprec_fallbacks: IntCounter,
    siprec_srs_byes: IntCounter,
    siprec_srs_lost: IntCounter,
    siprec_srs_reachable: IntGauge,
}

impl std::fmt::Debug for RecorderMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderMetrics").finish_non_exhaustive()
    }
}

impl RecorderMetrics {
    /// Register the family in `r` and resolve its label children.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
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
        let siprec_srs_reachable = int_gauge(
            r,
            "callmask_siprec_srs_reachable",
            "SRSs that answered their last OPTIONS probe (every keepalive_s).",
        )?;
        let siprec_srs_lost = int_counter(
            r,
            "callmask_siprec_srs_lost_total",
            "Established SIPREC sessions whose SRS stopped answering keep-alives.",
        )?;
        Ok(RecorderMetrics {
            recorder_sessions: by(&recorder_sessions),
            recorder_sessions_active: by(&recorder_sessions_active),
            recorder_bytes: by(&recorder_bytes),
            recorder_errors: by(&recorder_errors),
            recorder_queue_dropped: by(&recorder_queue_dropped),
            tap_sinks: std::sync::RwLock::new(Vec::new()),
            recorder_disk_full,
            recorder_retention_deleted,
            recorder_dropped_samples,
            siprec_failovers,
            siprec_established,
            siprec_failed,
            siprec_fallbacks,
            siprec_srs_byes,
            siprec_srs_lost,
            siprec_srs_reachable,
        })
    }

    /// A recording session opened on `sink`. Pair with [`RecorderMetrics::recorder_session_closed`].
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

    /// The sink kinds behind the shared tap queue (one entry per configured sink; set at
    /// start and again when a reload changes the sinks).
    pub fn set_tap_sinks(&self, sinks: Vec<SinkKind>) {
        if let Ok(mut s) = self.tap_sinks.write() {
            *s = sinks;
        }
    }

    /// The shared tap queue was full: the frames are lost to every configured sink.
    pub fn tap_queue_dropped(&self, frames: u64) {
        let Ok(sinks) = self.tap_sinks.read() else {
            return;
        };
        for &sink in sinks.iter() {
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

    /// SRSs answering their probes changed by `delta`.
    pub fn siprec_srs_reachable_add(&self, delta: i64) {
        self.siprec_srs_reachable.add(delta);
    }

    /// An established session's SRS stopped answering keep-alives.
    pub fn siprec_srs_lost(&self) {
        self.siprec_srs_lost.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_series;
    use super::*;

    #[test]
    fn exact_output() {
        let r = Registry::new();
        let m = RecorderMetrics::register(&r).expect("register");
        m.recorder_session_opened(SinkKind::Wav);
        m.recorder_session_opened(SinkKind::Rtp);
        m.recorder_session_closed(SinkKind::Rtp);
        m.recorder_bytes(SinkKind::Wav).inc_by(44);
        m.recorder_dropped_samples(160);
        m.siprec_failover();
        m.set_recorder_disk_full(true);
        assert_eq!(
            test_series(&r, "callmask_recorder_sessions_total"),
            "callmask_recorder_sessions_total{sink=\"rtp\"} 1\n\
             callmask_recorder_sessions_total{sink=\"siprec\"} 0\n\
             callmask_recorder_sessions_total{sink=\"wav\"} 1\n"
        );
        assert_eq!(
            test_series(&r, "callmask_recorder_sessions_active"),
            "callmask_recorder_sessions_active{sink=\"rtp\"} 0\n\
             callmask_recorder_sessions_active{sink=\"siprec\"} 0\n\
             callmask_recorder_sessions_active{sink=\"wav\"} 1\n"
        );
        assert_eq!(
            test_series(&r, "callmask_recorder_bytes_total"),
            "callmask_recorder_bytes_total{sink=\"rtp\"} 0\n\
             callmask_recorder_bytes_total{sink=\"siprec\"} 0\n\
             callmask_recorder_bytes_total{sink=\"wav\"} 44\n"
        );
        assert_eq!(
            test_series(&r, "callmask_recorder_dropped_samples_total"),
            "callmask_recorder_dropped_samples_total 160\n"
        );
        assert_eq!(
            test_series(&r, "callmask_siprec_failovers_total"),
            "callmask_siprec_failovers_total 1\n"
        );
        assert_eq!(
            test_series(&r, "callmask_recorder_disk_full"),
            "callmask_recorder_disk_full 1\n"
        );
    }

    #[test]
    fn a_tap_drop_counts_for_every_configured_sink() {
        let r = Registry::new();
        let m = RecorderMetrics::register(&r).expect("register");
        m.tap_queue_dropped(1); // before configuration: nothing to count against
        m.set_tap_sinks(vec![SinkKind::Wav, SinkKind::Siprec]);
        m.tap_queue_dropped(3);
        assert_eq!(
            test_series(&r, "callmask_recorder_queue_dropped_frames_total"),
            "callmask_recorder_queue_dropped_frames_total{sink=\"rtp\"} 0\n\
             callmask_recorder_queue_dropped_frames_total{sink=\"siprec\"} 3\n\
             callmask_recorder_queue_dropped_frames_total{sink=\"wav\"} 3\n"
        );
    }
}
