//! Errors that tell an admin where, what and how to fix.
//!
//! Every problem found while loading a configuration becomes one [`ConfigError`]: the origin
//! (a file name or `--set KEY`), the line and column when the problem sits in a file, the dotted
//! key, what is wrong and what to write instead. Loading collects *all* of them into
//! [`ConfigErrors`], so an admin fixes a file in one pass rather than one error per run.

use std::fmt;

/// What sort of problem a [`ConfigError`] reports.
///
/// The binary uses this to choose an exit code: [`ErrorKind::Io`] means the file could not be
/// read (sysexits 66, `EX_NOINPUT`); every other kind is a configuration error (64, `EX_USAGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read at all.
    Io,
    /// The text is not valid TOML (or not UTF-8).
    Syntax,
    /// A key that callmask does not know (often a typo).
    UnknownKey,
    /// A value of the wrong TOML type (a string where a number belongs, …).
    WrongType,
    /// A value of the right type that is out of range or malformed.
    InvalidValue,
    /// A key that must be present is missing.
    Missing,
    /// Two settings that cannot both hold.
    Conflict,
    /// A `--set KEY=VALUE` argument that is not of that shape.
    BadOverride,
}

/// One problem in a configuration, located as precisely as the source allows.
///
/// Displays as `ORIGIN:LINE:COLUMN: KEY: PROBLEM — FIX`, for example
/// `callmask.toml:12:16: masking.lookahead_ms: 20000 is out of range — use a value from 0 to
/// 10000 (milliseconds)`. For an override the origin is `--set KEY`, and the key is not
/// repeated when it is the override's own. Line and column are left out when there is no position (a `--set`
/// override, a file that cannot be read, a default that conflicts with another setting).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// What sort of problem this is.
    pub kind: ErrorKind,
    /// Where the offending text came from: the file name as given, or `--set KEY`.
    pub origin: String,
    /// The dotted key path, e.g. `masking.lookahead_ms` or `recorder[1].dir`; empty for
    /// problems that concern the whole file (syntax, I/O).
    pub key: String,
    /// 1-based line in `origin`, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) in `origin`, when known.
    pub column: Option<usize>,
    /// What is wrong, in words an admin understands.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        // `--set KEY` already names the key.
        let key_in_origin = self.origin.strip_prefix("--set ") == Some(self.key.as_str());
        if !self.key.is_empty() && !key_in_origin {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.problem)?;
        if !self.fix.is_empty() {
            write!(f, " — {}", self.fix)?;
        }
        Ok(())
    }
}

/// All the problems found in one load, in source order; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// Wraps a list of errors. An empty list is a bug in the caller; it is kept as is so
    /// that nothing panics, and [`ConfigErrors::is_empty`] tells.
    pub fn new(errors: Vec<ConfigError>) -> Self {
        Self(errors)
    }

    /// True when the configuration file could not be read (the binary exits 66, not 64).
    pub fn is_io(&self) -> bool {
        self.0.iter().any(|e| e.kind == ErrorKind::Io)
    }

    /// The sysexits code the binary exits with: 66 (`EX_NOINPUT`) when the file could not be
    /// read, else 64 (`EX_USAGE`).
    pub fn exit_code(&self) -> u8 {
        if self.is_io() {
            66
        } else {
            64
        }
    }

    /// The individual errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Iterates over the individual errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none (never the case for an error returned by this crate).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Why a single value was refused by a newtype's `TryFrom`; the loader adds key and position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem} — {fix}")]
pub struct ValueError {
    /// What is wrong with the value.
    pub problem: String,
    /// What to write instead.
    pub fix: String,
}

impl ValueError {
    pub(crate) fn new(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: Option<usize>, key: &str) -> ConfigError {
        ConfigError {
            kind: ErrorKind::InvalidValue,
            origin: "callmask.toml".into(),
            key: key.into(),
            line,
            column: line.map(|_| 16),
            problem: "20000 is out of range".into(),
            fix: "use a value from 0 to 10000 (milliseconds)".into(),
        }
    }

    #[test]
    fn display_with_and_without_position() {
        assert_eq!(
            err(Some(12), "masking.lookahead_ms").to_string(),
            "callmask.toml:12:16: masking.lookahead_ms: 20000 is out of range — use a value from 0 to 10000 (milliseconds)"
        );
        assert_eq!(
            err(None, "").to_string(),
            "callmask.toml: 20000 is out of range — use a value from 0 to 10000 (milliseconds)"
        );
    }

    #[test]
    fn errors_display_one_per_line() {
        let all = ConfigErrors::new(vec![err(Some(1), "a"), err(Some(2), "b")]);
        assert_eq!(all.to_string().lines().count(), 2);
        assert!(!all.is_io());
    }
}
