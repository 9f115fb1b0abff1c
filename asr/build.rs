// With the `system` feature, link against the libctranslate2 of the PyPI wheel that
// scripts/setup_asr.sh installs under /var/tmp/callmask-asr (override: CALLMASK_ASR_ROOT, or
// CALLMASK_ASR_LINK_DIR / CALLMASK_ASR_LIB_DIR), so a plain `cargo build` needs no exported
// variables. The run-time library folder is passed on to dependents (`links` metadata:
// DEP_CALLMASK_ASR_RPATH) so their binaries can record it as an rpath.
use std::path::PathBuf;

const DEFAULT_ROOT: &str = "/var/tmp/callmask-asr";
/// Second rpath entry: where setup_asr.sh also copies the library, for services whose
/// /var/tmp is private (systemd PrivateTmp).
const SYSTEM_LIB_DIR: &str = "/usr/local/lib/callmask";

fn main() {
    for key in [
        "CALLMASK_ASR_ROOT",
        "CALLMASK_ASR_LINK_DIR",
        "CALLMASK_ASR_LIB_DIR",
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
    let rpath = format!("{}:{SYSTEM_LIB_DIR}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
    println!("cargo:rpath={rpath}");
}
