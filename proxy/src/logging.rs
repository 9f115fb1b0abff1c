//! Process logging: `tracing` to stderr, human or JSON lines.
//!
//! The level comes from config (`info`, `callmask=debug,warn`, any `EnvFilter` directive);
//! `RUST_LOG`, when set, overrides it. Audit events (target `callmask::audit`: secure-mode
//! changes, retention deletions) stay on at `info` whatever the level, unless the directives
//! name that target themselves.
//!
//! Nothing here redacts: PHI is kept out at the source by the types in [`crate::redact`] —
//! numbers are logged as [`crate::redact::HashedNumber`], anything else user-derived as
//! [`crate::redact::Redacted`], and digits heard on a call are never passed to a log macro.

use std::fmt;
use std::str::FromStr;

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// Target of audit events.
pub const AUDIT_TARGET: &str = "callmask::audit";

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line (fields flattened), for log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = LogError;

    fn from_str(s: &str) -> Result<Self, LogError> {
        match s {
            "human" | "text" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(LogError::Format(other.to_owned())),
        }
    }
}

/// Logging could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum LogError {
    /// Unknown format name.
    Format(String),
    /// The level filter does not parse.
    Filter {
        /// Where it came from (`RUST_LOG` or `config`).
        origin: &'static str,
        /// The parser's complaint.
        problem: String,
    },
    /// A global subscriber was already installed.
    AlreadyInitialized,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Format(s) => write!(f, "unknown log format {s:?}: use \"human\" or \"json\""),
            LogError::Filter { origin, problem } => write!(
                f,
                "bad log level in {origin}: {problem}; use a level (error, warn, info, debug, \
                 trace) or directives like \"callmask=debug,warn\""
            ),
            LogError::AlreadyInitialized => f.write_str("logging was already initialized"),
        }
    }
}

impl std::error::Error for LogError {}

/// The installed filter's reload handle and the `RUST_LOG` it was built with.
struct Reloadable {
    handle: reload::Handle<EnvFilter, Registry>,
    rust_log: Option<String>,
}

static RELOAD: OnceLock<Reloadable> = OnceLock::new();

/// Install the global subscriber: `format` to stderr, filtered by `RUST_LOG` if set, else by
/// `level`. Call once, early in `main`.
pub fn init(format: LogFormat, level: &str) -> Result<(), LogError> {
    let env = std::env::var("RUST_LOG").ok();
    let (filter, handle) = reload::Layer::new(filter(env.as_deref(), level)?);
    use std::io::IsTerminal;
    // Colour codes only on a terminal: journald and log files get plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt: Box<dyn Layer<_> + Send + Sync> = match format {
        LogFormat::Human => Box::new(fmt),
        LogFormat::Json => Box::new(fmt.json().flatten_event(true).with_current_span(false)),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .map_err(|_| LogError::AlreadyInitialized)?;
    let _ = RELOAD.set(Reloadable {
        handle,
        rust_log: env,
    });
    Ok(())
}

/// Swap in a new `log.level` (configuration reload). `RUST_LOG`, when it was set at start,
/// still wins; audit events stay on as at start. `Ok(false)`: logging was not set up by
/// [`init`] (tests, `demo`), nothing changed.
pub fn set_level(level: &str) -> Result<bool, LogError> {
    let Some(r) = RELOAD.get() else {
        return Ok(false);
    };
    let f = filter(r.rust_log.as_deref(), level)?;
    r.handle.reload(f).map_err(|e| LogError::Filter {
        origin: "config",
        problem: e.to_string(),
    })?;
    Ok(true)
}

/// The effective filter: `rust_log` (if set and non-empty) wins over `level`; audit events are
/// kept at `info` unless the directives mention their target.
pub fn filter(rust_log: Option<&str>, level: &str) -> Result<EnvFilter, LogError> {
    let (origin, directives) = match rust_log {
        Some(s) if !s.trim().is_empty() => ("RUST_LOG", s),
        _ => ("config", level),
    };
    let mut directives = directives.trim().to_owned();
    if directives.is_empty() {
        directives.push_str("info");
    }
    if !directives.contains(AUDIT_TARGET) {
        directives.push(',');
        directives.push_str(AUDIT_TARGET);
        directives.push_str("=info");
    }
    EnvFilter::try_new(&directives).map_err(|e| LogError::Filter {
        origin,
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_overrides_config_and_audit_stays_on() {
        let f = filter(Some("warn"), "debug").unwrap().to_string();
        assert!(f.contains("warn"), "{f}");
        assert!(!f.contains("debug"), "{f}");
        assert!(f.contains("callmask::audit=info"), "{f}");

        let f = filter(None, "callmask=debug").unwrap().to_string();
        assert!(f.contains("callmask=debug"), "{f}");

        let f = filter(Some(""), "error,callmask::audit=off")
            .unwrap()
            .to_string();
        assert!(f.contains("callmask::audit=off"), "{f}");
        assert!(!f.contains("callmask::audit=info"), "{f}");
    }

    #[test]
    fn bad_filter_names_its_origin() {
        let e = filter(None, "callmask=loud").unwrap_err().to_string();
        assert!(e.contains("config"), "{e}");
        let e = filter(Some("x=[[["), "info").unwrap_err().to_string();
        assert!(e.contains("RUST_LOG"), "{e}");
    }

    #[test]
    fn format_names() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("human".parse::<LogFormat>().unwrap(), LogFormat::Human);
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
