//! End-to-end recorder check on the dev corpus: `scripts/e2e_recorder.sh` plays a subset of
//! the labelled calls as real-time RTP (sipp `play_pcap_audio`) through `callmask run` with
//! the `wav`, `rtp` and `siprec` sinks at once (sipp as the SRS, a receiver writing what the
//! `rtp` fork and the SRS get to WAV) and scores each sink's caller channel with
//! `../shared/eval/score.py` (0 in-band tones leaked or decodable, 0 negative controls muted,
//! < 0.5 % speech over-masked, reliable alignment, no RFC 4733 digit audible in the recording,
//! no RFC 4733 packet sent).
//!
//! It plays ~1.5 min of real time and needs sipp, python3 (numpy, scipy, soundfile),
//! multimon-ng and libspandsp-dev, so it only runs with `CALLMASK_E2E_RECORDER=1`; otherwise
//! it prints a note and passes. `CALLMASK_E2E_RECORDER_CALLS="011 018"` picks other calls
//! (`ALL=1` for all 20), `CALLMASK_BIN` uses a given binary; else the script builds the
//! release binary into this test's target dir.
#![allow(clippy::disallowed_methods)] // runs a script, reads env

use std::path::{Path, PathBuf};
use std::process::Command;

/// `…/target/<profile>/deps/<test>` → `…/target`.
fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.to_path_buf())
}

#[test]
fn recorder_corpus_subset() {
    if std::env::var("CALLMASK_E2E_RECORDER").as_deref() != Ok("1") {
        eprintln!(
            "[recorder_corpus] skipped: set CALLMASK_E2E_RECORDER=1 to play the dev-corpus \
             subset through callmask (~2 min real time; or run scripts/e2e_recorder.sh)"
        );
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ is inside the workspace")
        .to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg(repo.join("scripts/e2e_recorder.sh"));
    if let Ok(calls) = std::env::var("CALLMASK_E2E_RECORDER_CALLS") {
        cmd.args(calls.split_whitespace());
    }
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        if let Some(t) = target_dir() {
            cmd.env("CARGO_TARGET_DIR", t);
        }
    }
    let status = cmd
        .current_dir(&repo)
        .status()
        .expect("cannot run scripts/e2e_recorder.sh");
    assert!(
        status.success(),
        "scripts/e2e_recorder.sh failed ({status}); see its output above"
    );
}
