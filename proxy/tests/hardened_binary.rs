//! Issue 13, "hardened build": the `callmask` binary loads shared libraries only from
//! root-owned folders. Its RUNPATH/RPATH (read with binutils' `readelf`) must not put a
//! folder under a world-writable directory (/var/tmp, /tmp, /dev/shm) first, and with the
//! speech engine built in, the first entry is the install dir `/usr/local/lib/callmask`.
//! A missing `readelf` fails the test unless `CALLMASK_ALLOW_SKIP=1`.

use std::process::Command;

/// The binary's RUNPATH (or RPATH) entries, in search order.
fn search_path(bin: &str) -> Option<Vec<String>> {
    let out = match Command::new("readelf").args(["-d", bin]).output() {
        Ok(o) if o.status.success() => o,
        other => {
            if std::env::var("CALLMASK_ALLOW_SKIP").as_deref() == Ok("1") {
                eprintln!("skipped: readelf (binutils) not usable: {other:?}");
                return None;
            }
            panic!("readelf (binutils) is needed: {other:?} (CALLMASK_ALLOW_SKIP=1 to skip)");
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let entries = text
        .lines()
        .filter(|l| l.contains("(RUNPATH)") || l.contains("(RPATH)"))
        .filter_map(|l| Some(l.split_once('[')?.1.trim_end_matches(']').to_owned()))
        .flat_map(|p| p.split(':').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    Some(entries)
}

#[test]
fn rpath_starts_with_no_world_writable_folder() {
    let Some(path) = search_path(env!("CARGO_BIN_EXE_callmask")) else {
        return;
    };
    let dev = option_env!("CALLMASK_ASR_DEV_RPATH") == Some("1");
    if cfg!(feature = "whisper") {
        assert_eq!(
            path.first().map(String::as_str),
            Some("/usr/local/lib/callmask"),
            "rpath {path:?}"
        );
    }
    for (i, p) in path.iter().enumerate() {
        let unsafe_dir = ["/var/tmp", "/tmp", "/dev/shm"]
            .iter()
            .any(|w| p.starts_with(w));
        // A developer's opt-in fallback may follow the install dir; never lead, never by
        // default.
        assert!(
            !unsafe_dir || (dev && i > 0),
            "rpath entry {i} {p} is under a world-writable folder: {path:?}"
        );
    }
}
