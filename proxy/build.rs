// With the embedded speech engine (feature `whisper`, on by default), record the folder of the
// CTranslate2 library as an rpath in every binary and test of this package, so `callmask` runs
// without LD_LIBRARY_PATH. The folder comes from callmask-asr's build script (`links`).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_CALLMASK_ASR_RPATH");
    if std::env::var_os("CARGO_FEATURE_WHISPER").is_none() {
        return;
    }
    if let Ok(dir) = std::env::var("DEP_CALLMASK_ASR_RPATH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
