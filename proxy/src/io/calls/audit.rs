//! The audit trail of secure-mode changes (`tracing` target `callmask::audit`), whoever asked:
//! the HTTP API (an actor with a token fingerprint) or the caller's keys (`dtmf-trigger`).
#![allow(clippy::disallowed_methods)] // io: reads the wall clock for audit timestamps

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::SecureChange;
use crate::metrics::{Metrics, SecureAction};

/// Milliseconds since the Unix epoch, for audit entries.
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Count and audit a secure-mode change that was applied, whoever asked for it (an API
/// token or the caller's key trigger). Never logs keys.
pub(crate) fn audit_secure_change<C: tracing::Value>(
    metrics: &Metrics,
    action: SecureAction,
    actor: &dyn fmt::Display,
    call: C,
    change: SecureChange,
    at_unix_ms: u64,
) {
    metrics.media().secure_mode_changed(action);
    let action_str = crate::metrics::Label::as_str(action);
    tracing::info!(
        target: "callmask::audit",
        event = "secure_mode",
        action = action_str,
        actor = %actor,
        call,
        changed = change == SecureChange::Changed,
        at_unix_ms,
        "secure mode {action_str}"
    );
}
