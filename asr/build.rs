// With the `system` feature, link against the libctranslate2 of the PyPI wheel that
// scripts/setup_asr.sh installs under /var/tmp/callmask-asr (override: CALLMASK_ASR_ROOT, or
// CALLMASK_ASR_LINK_DIR / CALLMASK_ASR_LIB_DIR), so a plain `cargo build` needs no exported
// variables. The run-time library folder is passed on to dependents (`links` metadata:
// DEP_CALLMASK_ASR_RPATH) so their binaries can record it as an rpath.
//
// The rpath is the root-owned install dir only (/usr/local/lib/callmask, where setup_asr.sh
// copies the library): /var/tmp is world-writable, and a library planted in an rpath folder
// there would run as whoever runs callmask (issue 13). A developer without root can opt in to
// the wheel's folder as a second entry at build time: CALLMASK_ASR_DEV_RPATH=1.
use std::path::PathBuf;

const DEFAULT_ROOT: &str = "/var/tmp/callmask-asr";
/// The rpath: where setup_asr.sh installs the library (root-owned; also reachable by services
/// whose /var/tmp is private, systemd PrivateTmp).
const SYSTEM_LIB_DIR: &str = "/usr/local/lib/callmask";

fn main() {
    for key in [
        "CALLMASK_ASR_ROOT",
        "CALLMASK_ASR_LINK_DIR",
        "CALLMASK_ASR_LIB_DIR",
        "CALLMASK_ASR_DEV_RPATH",
    ] {
        println!("cargo:rerun-if-env-changed={key}");
    }
    if std::env::var_os("CARGO_FEATURE_SYSTEM").is_none() {
        return;
    }
    let root = std::env::var_os("CALLMASK_ASR_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let link = std::env::var_os("CALLMASK_ASR_LINK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("link"));
    let lib = std::env::var_os("CALLMASK_ASR_LIB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("lib"));
    let so = link.join("libctranslate2.so");
    println!("cargo:rerun-if-changed={}", so.display());
    if !so.exists() {
        // A build script cannot print a friendlier error than a failed build; say what to do.
        eprintln!(
            "\n\ncallmask-asr: {} not found.\n\
             The embedded speech engine links the CTranslate2 library from PyPI.\n\
             Run ./scripts/setup.sh (or scripts/setup_asr.sh) first, set CALLMASK_ASR_ROOT if it\n\
             lives elsewhere, or build without the engine: cargo build --no-default-features\n\
             (spoken-identifier masking then fails closed: recordings muted).\n",
            so.display()
        );
        std::process::exit(1);
    }
    println!("cargo:rustc-link-search=native={}", link.display());
    let installed = std::fs::read_dir(SYSTEM_LIB_DIR).is_ok_and(|d| {
        d.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("libctranslate2")
        })
    });
    let dev = std::env::var("CALLMASK_ASR_DEV_RPATH").is_ok_and(|v| v == "1");
    if !installed && !dev {
        println!(
            "cargo:warning=callmask-asr: no libctranslate2 in {SYSTEM_LIB_DIR} (the binary's \
             rpath): run scripts/setup.sh as root, or build with CALLMASK_ASR_DEV_RPATH=1 to \
             also look in {} (a development fallback under a world-writable folder)",
            lib.display()
        );
    }
    let rpath = if dev {
        format!("{SYSTEM_LIB_DIR}:{}", lib.display())
    } else {
        SYSTEM_LIB_DIR.to_owned()
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
    println!("cargo:rpath={rpath}");
}
