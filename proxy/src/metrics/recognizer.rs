//! The speech recognizer family (`callmask_recognizer_*`): segments by outcome, audio and
//! busy time, real-time factor, backlog and queue. Counted by the recognizer pool
//! (`io/speech`).

use prometheus::{Counter, Gauge, IntCounter, IntGauge, Registry};

use super::{by, counter, gauge, int_counter_vec, int_gauge, By, Label};

label_enum! {
    /// What became of a speech segment sent to the recognizer. Anything but `ok` means the
    /// segment left the recorder path muted whole (fail closed).
    RecognizerOutcome, "outcome" {
        /// Words came back in time; the span policy decided what to mute.
        Ok => "ok",
        /// The result (or the worker) came after the segment's deadline.
        Late => "late",
        /// The engine failed on the segment.
        Failed => "failed",
        /// Never sent: the worker queue was full or no worker is running.
        Dropped => "dropped",
    }
}

/// The `callmask_recognizer_*` families.
pub struct RecognizerMetrics {
    recognizer_rtf: Gauge,
    recognizer_backlog: Gauge,
    recognizer_segments: By<RecognizerOutcome, IntCounter>,
    recognizer_audio_seconds: Counter,
    recognizer_busy_seconds: Counter,
    recognizer_queued_jobs: IntGauge,
    recognizer_stalled_workers: IntGauge,
}

impl std::fmt::Debug for RecognizerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecognizerMetrics").finish_non_exhaustive()
    }
}

impl RecognizerMetrics {
    /// Register the family in `r` and resolve its label children.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let recognizer_rtf = gauge(
            r,
            "callmask_recognizer_real_time_factor",
            "Speech recognizer processing time divided by audio time (latest window).",
        )?;
        let recognizer_backlog = gauge(
            r,
            "callmask_recognizer_backlog_seconds",
            "Audio queued for the speech recognizer and not yet decided.",
        )?;
        let recognizer_segments = int_counter_vec(
            r,
            "callmask_recognizer_segments_total",
            "Speech segments sent to the recognizer, by outcome (all but ok are muted whole).",
            &[RecognizerOutcome::NAME],
        )?;
        let recognizer_audio_seconds = counter(
            r,
            "callmask_recognizer_audio_seconds_total",
            "Audio transcribed by the recognizer workers.",
        )?;
        let recognizer_busy_seconds = counter(
            r,
            "callmask_recognizer_busy_seconds_total",
            "Time the recognizer workers spent transcribing.",
        )?;
        let recognizer_queued_jobs = int_gauge(
            r,
            "callmask_recognizer_queued_jobs",
            "Speech segments waiting for a recognizer worker.",
        )?;
        let recognizer_stalled_workers = int_gauge(
            r,
            "callmask_recognizer_stalled_workers",
            "Recognizer workers stuck in one job (15 s or more); their segments are muted.",
        )?;
        Ok(RecognizerMetrics {
            recognizer_rtf,
            recognizer_backlog,
            recognizer_segments: by(&recognizer_segments),
            recognizer_audio_seconds,
            recognizer_busy_seconds,
            recognizer_queued_jobs,
            recognizer_stalled_workers,
        })
    }

    /// Latest recognizer real-time factor and backlog.
    pub fn set_recognizer(&self, real_time_factor: f64, backlog_seconds: f64) {
        self.recognizer_rtf.set(real_time_factor);
        self.recognizer_backlog.set(backlog_seconds);
    }

    /// A speech segment's fate.
    pub fn recognizer_segment(&self, outcome: RecognizerOutcome) {
        self.recognizer_segments.get(outcome).inc();
    }

    /// A worker transcribed `audio_s` seconds of audio in `busy_s` seconds.
    pub fn recognizer_work(&self, audio_s: f64, busy_s: f64) {
        self.recognizer_audio_seconds.inc_by(audio_s.max(0.0));
        self.recognizer_busy_seconds.inc_by(busy_s.max(0.0));
    }

    /// Workers stuck in one job now.
    pub fn set_recognizer_stalled(&self, n: usize) {
        self.recognizer_stalled_workers
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Segments waiting for a worker now.
    pub fn set_recognizer_queued_jobs(&self, n: usize) {
        self.recognizer_queued_jobs
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_series;
    use super::*;

    #[test]
    fn exact_output() {
        let r = Registry::new();
        let m = RecognizerMetrics::register(&r).expect("register");
        m.recognizer_segment(RecognizerOutcome::Late);
        m.recognizer_work(2.0, 0.5);
        m.set_recognizer(0.25, 1.5);
        m.set_recognizer_queued_jobs(3);
        assert_eq!(
            test_series(&r, "callmask_recognizer_segments_total"),
            "callmask_recognizer_segments_total{outcome=\"dropped\"} 0\n\
             callmask_recognizer_segments_total{outcome=\"failed\"} 0\n\
             callmask_recognizer_segments_total{outcome=\"late\"} 1\n\
             callmask_recognizer_segments_total{outcome=\"ok\"} 0\n"
        );
        assert_eq!(
            test_series(&r, "callmask_recognizer_audio_seconds_total"),
            "callmask_recognizer_audio_seconds_total 2\n"
        );
        assert_eq!(
            test_series(&r, "callmask_recognizer_busy_seconds_total"),
            "callmask_recognizer_busy_seconds_total 0.5\n"
        );
        assert_eq!(
            test_series(&r, "callmask_recognizer_real_time_factor"),
            "callmask_recognizer_real_time_factor 0.25\n"
        );
        assert_eq!(
            test_series(&r, "callmask_recognizer_backlog_seconds"),
            "callmask_recognizer_backlog_seconds 1.5\n"
        );
        assert_eq!(
            test_series(&r, "callmask_recognizer_queued_jobs"),
            "callmask_recognizer_queued_jobs 3\n"
        );
    }
}
