//! The live call table as the control API sees it: lookup only (the relay never locks it per
//! packet). Entries hold no PHI: callmask's own call id, times, state, codecs, secure flag.
#![allow(clippy::disallowed_methods)] // io shell: reads the wall clock for start times

use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use tokio::sync::mpsc;

use super::{Actor, CallControl, CallState, CallSummary, NotFound, SecureChange};
use crate::core::media::CallCommand as CallCmd;
use crate::core::proxy::CallRef;

#[derive(Debug)]
struct Entry {
    /// The id the API shows: random (64 bits, hex), so ids cannot be guessed or enumerated.
    api_id: String,
    started_at_unix_ms: u64,
    state: CallState,
    secure: bool,
    codecs: Vec<String>,
    cmd: Option<mpsc::UnboundedSender<CallCmd>>,
}

/// Live calls by [`CallRef`], and their random API ids.
#[derive(Debug, Default)]
pub struct CallTable {
    calls: DashMap<u64, Entry>,
    /// API id → [`CallRef`] number.
    by_api_id: DashMap<String, u64>,
}

impl CallTable {
    /// An empty table.
    pub fn new() -> Self {
        CallTable::default()
    }

    /// A call began.
    pub fn started(&self, call: CallRef) {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let api_id = format!("{:016x}", rand::random::<u64>());
        self.by_api_id.insert(api_id.clone(), call.0);
        self.calls.insert(
            call.0,
            Entry {
                api_id,
                started_at_unix_ms: ms,
                state: CallState::Setup,
                secure: false,
                codecs: Vec::new(),
                cmd: None,
            },
        );
    }

    /// The call was answered.
    pub fn answered(&self, call: CallRef) {
        if let Some(mut e) = self.calls.get_mut(&call.0) {
            e.state = CallState::Established;
        }
    }

    /// The call's relay task is up; secure mode requests go to it.
    pub fn attach(&self, call: CallRef, cmd: mpsc::UnboundedSender<CallCmd>, codecs: Vec<String>) {
        if let Some(mut e) = self.calls.get_mut(&call.0) {
            if e.secure {
                let _ = cmd.send(CallCmd::Secure(true));
            }
            e.cmd = Some(cmd);
            e.codecs = codecs;
        }
    }

    /// A later SDP (the answer) named the codecs in use.
    pub fn set_codecs(&self, call: CallRef, codecs: Vec<String>) {
        if let Some(mut e) = self.calls.get_mut(&call.0) {
            e.codecs = codecs;
        }
    }

    /// The call is over.
    pub fn ended(&self, call: CallRef) {
        if let Some((_, e)) = self.calls.remove(&call.0) {
            self.by_api_id.remove(&e.api_id);
        }
    }

    /// The API id of a live call (tests, logs).
    pub fn api_id(&self, call: CallRef) -> Option<String> {
        self.calls.get(&call.0).map(|e| e.api_id.clone())
    }

    /// Secure mode was switched inside the call's media core (the caller's key trigger):
    /// record the flag for the API without sending it back to the core.
    pub fn record_secure(&self, call: CallRef, secure: bool) -> Result<SecureChange, NotFound> {
        let mut e = self.calls.get_mut(&call.0).ok_or(NotFound)?;
        if e.secure == secure {
            return Ok(SecureChange::Unchanged);
        }
        e.secure = secure;
        Ok(SecureChange::Changed)
    }

    /// Secure flag of a call (tests).
    pub fn is_secure(&self, call: CallRef) -> Option<bool> {
        self.calls.get(&call.0).map(|e| e.secure)
    }
}

impl CallControl for CallTable {
    fn list(&self) -> Vec<CallSummary> {
        let mut v: Vec<CallSummary> = self
            .calls
            .iter()
            .map(|e| CallSummary {
                id: e.api_id.clone(),
                started_at_unix_ms: e.started_at_unix_ms,
                state: e.state,
                secure: e.secure,
                codecs: e.codecs.clone(),
            })
            .collect();
        v.sort_by(|a, b| (a.started_at_unix_ms, &a.id).cmp(&(b.started_at_unix_ms, &b.id)));
        v
    }

    fn set_secure(&self, id: &str, secure: bool, _actor: &Actor) -> Result<SecureChange, NotFound> {
        let key = *self.by_api_id.get(id).ok_or(NotFound)?;
        let mut e = self.calls.get_mut(&key).ok_or(NotFound)?;
        if e.secure == secure {
            return Ok(SecureChange::Unchanged);
        }
        e.secure = secure;
        if let Some(cmd) = &e.cmd {
            let _ = cmd.send(CallCmd::Secure(secure));
        }
        Ok(SecureChange::Changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: API ids are random, not the sequential [`CallRef`]; the old numeric form
    /// finds nothing.
    #[test]
    fn api_ids_are_random_and_map_back_to_the_call() {
        let t = CallTable::new();
        t.started(CallRef(1));
        t.started(CallRef(2));
        let (a, b) = (t.api_id(CallRef(1)).unwrap(), t.api_id(CallRef(2)).unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(
            a.parse::<u64>().map_or(true, |n| n > 2),
            "{a} looks sequential"
        );
        let actor = Actor::api(None);
        assert_eq!(t.set_secure("1", true, &actor), Err(NotFound));
        assert_eq!(t.set_secure(&a, true, &actor), Ok(SecureChange::Changed));
        assert_eq!(t.is_secure(CallRef(1)), Some(true));
        t.ended(CallRef(1));
        assert_eq!(t.set_secure(&a, false, &actor), Err(NotFound));
        assert_eq!(t.list().len(), 1);
    }
}
