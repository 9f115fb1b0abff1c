//! Retention of the `wav` sink: recordings and sidecars older than `retention_days` (by file
//! modification time) are deleted by a sweeper that runs once at start and then hourly. Each
//! deletion is an audit event (target `callmask::audit`: file name and age, never call
//! content) and is counted (`callmask_recorder_retention_deleted_files_total`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::metrics::Metrics;

/// How often the sweeper runs after its first pass at start.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// Whether `name` is a file the `wav` sink writes: a recording, a sidecar (plain or
/// age-encrypted), or a temporary left behind by a crash.
fn is_recording_file(name: &str) -> bool {
    [
        ".wav",
        ".json",
        ".wav.age",
        ".json.age",
        ".wav.partial",
        ".json.partial",
        ".age.partial",
        ".age.stage",
    ]
    .iter()
    .any(|suffix| name.ends_with(suffix))
}

/// Delete the recordings in `dir` last modified more than `days` days before `now`.
/// Returns how many were deleted. Files of other names, directories and symlinks are left
/// alone; a missing directory is not an error (nothing recorded yet).
pub fn sweep(dir: &Path, days: u16, now: SystemTime, metrics: &Metrics) -> usize {
    let max_age = Duration::from_secs(u64::from(days) * 86_400);
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "retention sweep: cannot list the recording directory");
            return 0;
        }
    };
    let mut deleted = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_recording_file(&name) {
            continue;
        }
        // `DirEntry::metadata` does not follow symlinks.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let Ok(mtime) = meta.modified() else { continue };
        let Ok(age) = now.duration_since(mtime) else {
            continue; // modified in the future
        };
        if age <= max_age {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => {
                deleted += 1;
                metrics.recorder().recorder_retention_deleted();
                tracing::info!(
                    target: crate::logging::AUDIT_TARGET,
                    action = "retention_delete",
                    file = %name,
                    dir = %dir.display(),
                    age_hours = age.as_secs() / 3600,
                    retention_days = days,
                    "recording deleted by retention"
                );
            }
            Err(e) => {
                tracing::warn!(file = %name, error = %e, "retention sweep: cannot delete");
            }
        }
    }
    deleted
}

/// The sweeper task for `dir`: once now, then every [`SWEEP_INTERVAL`]. Runs until aborted.
pub(super) async fn sweeper(dir: std::path::PathBuf, days: u16, metrics: Arc<Metrics>) {
    let mut every = tokio::time::interval(SWEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (d, m) = (dir.clone(), metrics.clone());
        let _ = tokio::task::spawn_blocking(move || sweep(&d, days, SystemTime::now(), &m)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for n in [
            "1-call2.wav",
            "1-call2.json",
            "1-call2.wav.age",
            "1-call2.json.age",
            ".1-call2.wav.partial",
            ".1-call2.wav.age.stage",
            ".1-call2.wav.age.partial",
        ] {
            assert!(is_recording_file(n), "{n}");
        }
        for n in ["notes.txt", "key.txt", "x.wav.bak"] {
            assert!(!is_recording_file(n), "{n}");
        }
    }
}
