//! Faults around a running callmask (issue 13): the recorder's disk fills up mid-call and
//! empties again. (An SRS that dies mid-call is in `siprec.rs`; a recognizer that panics or
//! stalls is unit-tested in `proxy/src/io/speech`.)
//!
//! The disk is a real tmpfs of 256 KiB mounted for the test (root needed, as CI runs; without
//! it the test fails unless `CALLMASK_ALLOW_SKIP=1`).
#![allow(clippy::disallowed_methods)] // an e2e test reads the clock
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use callmask_integration::*;

const T: Duration = Duration::from_secs(10);

/// A tmpfs mounted at a fresh folder, unmounted (lazily: callmask may still hold a file
/// open) when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = TempDir::new("tmpfs");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system of `path` with a file there until it is full; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    std::fs::File::create(&filler).unwrap();
    top_up(&filler);
    filler
}

/// Grows `filler` until the disk is full again (the space a removed file gave back).
fn top_up(filler: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(filler)
        .unwrap();
    let block = vec![0xA5u8; 4096];
    while f.write_all(&block).and_then(|()| f.sync_all()).is_ok() {}
}

/// Every entry in `dir`, hidden ones (a staged `.partial`) included, but `skip`.
fn entries(dir: &Path, skip: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p != skip)
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The recorder's disk fills up during a call: the alarm goes up, the call goes on to its
/// end, and no partial recording is left (the file in the making is removed, never left
/// half-written); `/readyz` says the sink is unusable at its next check (every 10 s). When
/// space returns, `/readyz` is ready again, the next call is recorded whole and the alarm
/// clears.
#[test]
fn recorder_disk_full_alarms_keeps_calls_and_recovers() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root {
        return missing("the disk-full test mounts a tmpfs: run as root");
    }
    let Some(disk) = Tmpfs::mount("256k") else {
        return missing("cannot mount a tmpfs (mount -t tmpfs)");
    };
    let rec = disk.path().to_path_buf();
    let cm = Callmask::start_with(CallmaskOpts {
        sets: vec![
            format!("recorder=[{{kind=\"wav\",dir=\"{}\"}}]", rec.display()),
            "masking.speech=false".into(),
        ],
        ..CallmaskOpts::default()
    });

    // Call 1: 1 s of audio, then the disk fills, then 3 s more.
    let mut call = MediaCall::start(&cm, 4500);
    call.talk(50);
    let filler = fill(&rec);
    call.talk(150);
    call.assert_completed(&cm);
    cm.wait_metrics("the disk-full alarm", T, |m| {
        m.value("callmask_recorder_disk_full") == 1.0
            && m.value("callmask_recorder_errors_total{sink=\"wav\"}") >= 1.0
    });
    let left = wait_for(T, || {
        let e = entries(&rec, &filler);
        e.is_empty().then_some(e)
    });
    assert!(
        left.is_some(),
        "a partial recording was left on the full disk: {:?}\n{}",
        entries(&rec, &filler),
        cm.log_tail()
    );

    // The abandoned recording gave its blocks back: fill them too, so the disk is full
    // when the sink is re-checked (with room for a file the sink is usable again).
    top_up(&filler);
    let readyz = |want: u16| {
        wait_for(Duration::from_secs(15), || {
            http_get(cm.layout.http, "/readyz").filter(|(s, _)| *s == want)
        })
    };
    let (_, body) = readyz(503).unwrap_or_else(|| panic!("/readyz stayed ready on a full disk"));
    assert!(body.contains("sinks_reachable"), "{body}");

    // Space returns: call 2 is recorded whole, the alarm clears.
    std::fs::remove_file(&filler).unwrap();
    assert!(
        readyz(200).is_some(),
        "/readyz not ready again with space back"
    );
    let mut call = MediaCall::start(&cm, 2500);
    call.talk(100);
    call.assert_completed(&cm);
    cm.wait_metrics("the alarm cleared", T, |m| {
        m.value("callmask_recorder_disk_full") == 0.0
    });
    let files = wait_for(T, || {
        let e = entries(&rec, &filler);
        (e.len() == 2).then_some(e)
    })
    .unwrap_or_else(|| panic!("call 2 not recorded: {:?}", entries(&rec, &filler)));
    assert!(
        files[0].ends_with(".json") && files[1].ends_with(".wav"),
        "{files:?}"
    );
    let wav = rec.join(&files[1]);
    let (channels, samples) = read_wav(&wav);
    assert_eq!(channels, 2);
    let secs = samples.len() as f64 / 2.0 / 8000.0;
    eprintln!(
        "[figure] disk full: call 1 completed, its recording abandoned with no file left, \
         alarm raised; after space returned call 2 recorded {secs:.1} s, alarm cleared"
    );
    assert!(secs >= 1.5, "call 2's recording holds {secs:.1} s");
}
