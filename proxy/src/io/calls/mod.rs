//! Call control: the live call table ([`CallTable`]), the vocabulary the control API speaks
//! ([`CallControl`], [`CallSummary`], [`CallState`], [`Actor`], [`SecureChange`],
//! [`NotFound`]) and the audit of secure-mode changes ([`audit`]).
//!
//! The HTTP API ([`super::http`]) and the media relay ([`super::media`]: the caller's key
//! trigger) both use it; it uses neither.

pub mod audit;
mod table;

use std::fmt;

use serde::Serialize;

pub use table::CallTable;

/// Signalling state of a call, as shown by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CallState {
    /// INVITE sent or received, no response yet.
    Setup,
    /// Provisional response seen.
    Ringing,
    /// Answered.
    Established,
    /// BYE/CANCEL in progress.
    Terminating,
}

/// One call as listed by `GET /api/calls`. Holds no PHI: no numbers, no SIP Call-ID, no names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallSummary {
    /// callmask's own opaque id for the call (what `/api/calls/{id}/secure` takes).
    pub id: String,
    /// Call start, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Signalling state.
    pub state: CallState,
    /// Secure mode: the recorder path is muted.
    pub secure: bool,
    /// Negotiated codecs (encoding names, e.g. `PCMU`).
    pub codecs: Vec<String>,
}

/// Who asked for a change, for the audit log. Never holds the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    token_fingerprint: Option<String>,
}

impl Actor {
    /// The HTTP API, authenticated by the token with this fingerprint (or unauthenticated).
    pub fn api(token_fingerprint: Option<String>) -> Self {
        Actor { token_fingerprint }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.token_fingerprint {
            Some(fp) => write!(f, "api:token-{fp}"),
            None => f.write_str("api:no-token"),
        }
    }
}

/// The call id names no live call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotFound;

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no such call")
    }
}

impl std::error::Error for NotFound {}

/// What a secure-mode request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureChange {
    /// The call's secure flag changed.
    Changed,
    /// The call was already in the requested mode.
    Unchanged,
}

/// The call table, as the HTTP API sees it. Implemented by the proxy; faked in tests.
pub trait CallControl: Send + Sync + 'static {
    /// Every live call.
    fn list(&self) -> Vec<CallSummary>;

    /// Put call `id` into secure mode (`secure = true`: mute its recorder path) or release it.
    fn set_secure(&self, id: &str, secure: bool, actor: &Actor) -> Result<SecureChange, NotFound>;
}

/// A call table with no calls (before the proxy plugs its own in).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCalls;

impl CallControl for NoCalls {
    fn list(&self) -> Vec<CallSummary> {
        Vec::new()
    }

    fn set_secure(&self, _: &str, _: bool, _: &Actor) -> Result<SecureChange, NotFound> {
        Err(NotFound)
    }
}
