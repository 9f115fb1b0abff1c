//! callmask's typed configuration.
//!
//! A TOML file (optional) and `--set KEY=VALUE` overrides (optional) become one validated
//! [`Config`] of newtypes, or a [`ConfigErrors`] listing *every* problem, each naming the
//! origin, line, column, key, what is wrong and how to fix it:
//!
//! ```text
//! callmask.toml:12:16: masking.lookahead_ms: 20000 is out of range — use a value from 0 to 10000 (milliseconds)
//! ```
//!
//! The stages, one module each: [`raw`] (serde structs mirroring the file, unknown keys
//! refused) → [`validate`] (values into the newtypes of [`types`], defaults from [`model`])
//! → [`Config`]. `source` merges the file with overrides and locates each error.
//!
//! ```
//! let cfg = config::load_with_overrides(None, &["masking.lookahead_ms=80".to_owned()]).unwrap();
//! assert_eq!(cfg.masking.lookahead_ms.get(), 80);
//! assert_eq!(config::from_str(&cfg.to_toml(), "check").unwrap(), cfg);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::Path;

pub mod error;
pub mod model;
pub mod raw;
pub mod reload;
mod source;
pub mod types;
pub mod validate;

pub use error::{ConfigError, ConfigErrors, ErrorKind, ValueError};
pub use model::{
    AgentsConfig, Config, ConfigWarning, HttpAuth, HttpConfig, LimitsConfig, LogConfig,
    MaskingConfig, MediaConfig, NgConfig, PbxConfig, RecorderConfig, RtpRecorder, SecureConfig,
    ShutdownConfig, SipConfig, SiprecRecorder, SpeechConfig, TlsConfig, WavRecorder,
};

use source::Loader;

/// Origin named in errors that concern no file (defaults only).
const DEFAULTS: &str = "<defaults>";

/// Loads and validates a configuration file.
///
/// A file that cannot be read gives an error of kind [`ErrorKind::Io`]
/// ([`ConfigErrors::is_io`]); everything else is a configuration error.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_overrides(Some(path), &[])
}

/// Parses and validates TOML text; `origin` names it in errors (a file name, usually).
pub fn from_str(toml: &str, origin: &str) -> Result<Config, ConfigErrors> {
    let mut loader = Loader::new(origin);
    loader.add_text(origin, toml.to_owned());
    loader.finish()
}

/// Loads an optional file, then applies `--set KEY=VALUE` overrides in order.
///
/// KEY is a dotted path (`masking.lookahead_ms`); VALUE is a TOML value (`80`, `"x"`,
/// `[{kind="wav",dir="/tmp/rec"}]`), or, when it does not parse as TOML, a bare string
/// (`127.0.0.1:5070`). Tables merge key by key; arrays such as `recorder` are replaced whole.
/// Errors in an override name `--set KEY` as their origin.
pub fn load_with_overrides(
    path: Option<&Path>,
    overrides: &[String],
) -> Result<Config, ConfigErrors> {
    let origin = path.map_or_else(|| DEFAULTS.to_owned(), |p| p.display().to_string());
    let mut loader = Loader::new(&origin);
    if let Some(path) = path {
        let bytes = std::fs::read(path).map_err(|e| ConfigError {
            kind: ErrorKind::Io,
            origin: origin.clone(),
            key: String::new(),
            line: None,
            column: None,
            problem: format!("cannot read the file: {e}"),
            fix: "check the path and that this user may read it".into(),
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => loader.add_text(&origin, text),
            Err(_) => {
                return Err(ConfigError {
                    kind: ErrorKind::Syntax,
                    origin,
                    key: String::new(),
                    line: None,
                    column: None,
                    problem: "the file is not UTF-8 text".into(),
                    fix: "save the file as UTF-8".into(),
                }
                .into())
            }
        }
    }
    for o in overrides {
        loader.add_override(o);
    }
    loader.finish()
}
