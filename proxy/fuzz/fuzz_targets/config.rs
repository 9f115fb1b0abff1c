//! Arbitrary text into the configuration loader (TOML, then validation): a bad file is an
//! error that names its key, never a panic; a file that loads, loads again the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::from_str(text, "fuzz.toml") {
        Ok(cfg) => {
            let again =
                config::from_str(text, "fuzz.toml").expect("a file that loaded loads again");
            assert_eq!(format!("{cfg:?}"), format!("{again:?}"));
        }
        Err(e) => assert!(!e.to_string().is_empty(), "errors say something"),
    }
});
