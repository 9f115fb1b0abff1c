// The tests link the `callmask` library, which (default feature `whisper`) links the
// libctranslate2 that scripts/setup.sh installs: record its folders as an rpath, as
// asr/build.rs does for the callmask binary, so the tests run without LD_LIBRARY_PATH.
fn main() {
    for key in ["CALLMASK_ASR_ROOT", "CALLMASK_ASR_LIB_DIR"] {
        println!("cargo:rerun-if-env-changed={key}");
    }
    let root =
        std::env::var("CALLMASK_ASR_ROOT").unwrap_or_else(|_| "/var/tmp/callmask-asr".into());
    let lib = std::env::var("CALLMASK_ASR_LIB_DIR").unwrap_or_else(|_| format!("{root}/lib"));
    println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{lib}:/usr/local/lib/callmask");
}
