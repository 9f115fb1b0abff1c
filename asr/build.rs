// With the `system` feature (build route b), link against the libctranslate2 of the PyPI wheel
// that scripts/setup_asr.sh installs, and record an rpath so examples/tests run without
// LD_LIBRARY_PATH. Source the env file that script writes before building.
fn main() {
    println!("cargo:rerun-if-env-changed=CALLMASK_ASR_LINK_DIR");
    println!("cargo:rerun-if-env-changed=CALLMASK_ASR_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_SYSTEM").is_none() {
        return;
    }
    let link = std::env::var("CALLMASK_ASR_LINK_DIR").unwrap_or_else(|_| {
        panic!("feature `system` needs CALLMASK_ASR_LINK_DIR: run scripts/setup_asr.sh and source /var/tmp/callmask-asr/env.sh")
    });
    println!("cargo:rustc-link-search=native={link}");
    if let Ok(lib) = std::env::var("CALLMASK_ASR_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
