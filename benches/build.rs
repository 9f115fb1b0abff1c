//! Links libspandsp, only for the bench-only `spandsp` feature (LGPL; never in the product).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_SPANDSP").is_some() {
        println!("cargo:rustc-link-lib=spandsp");
    }
}
