//! Registration bindings kept on disk across restarts (issue 12 item 5): the file
//! `<sip.state_dir>/bindings`, read once at start, rewritten atomically (temp file, then
//! rename) at most once a second while the bindings change, and at shutdown. The format
//! and its bounds are the registrar's ([`Registrar::save`], [`Registrar::load`]).
#![allow(clippy::disallowed_methods)] // io shell: reads the clocks

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::core::registrar::Registrar;

/// Largest state file read (20 000 bindings of generous length fit).
const MAX_FILE_BYTES: u64 = 16 << 20;
/// Least time between two writes while bindings keep changing.
const MIN_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// The state file of one process.
#[derive(Debug)]
pub struct BindingStore {
    path: PathBuf,
    saved_generation: u64,
    last_save: Option<Instant>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl BindingStore {
    /// The store in `dir` (created when first written).
    pub fn new(dir: &Path) -> Self {
        BindingStore {
            path: dir.join("bindings"),
            saved_generation: 0,
            last_save: None,
        }
    }

    /// Loads the saved bindings into `registrar`; a missing file is a first start, an
    /// unreadable or oversized one is logged and ignored (phones re-register).
    pub fn load(&mut self, registrar: &mut Registrar, now: Instant) {
        let text = match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Ok(m) if m.len() > MAX_FILE_BYTES => {
                tracing::warn!(path = %self.path.display(), bytes = m.len(), "registration state file too large: ignored");
                return;
            }
            _ => match std::fs::read_to_string(&self.path) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot read the registration state file: phones are reachable again when they re-register");
                    return;
                }
            },
        };
        let loaded = registrar.load(&text, now, unix_now());
        self.saved_generation = registrar.generation();
        tracing::info!(bindings = loaded, path = %self.path.display(), "registrations restored");
    }

    /// Writes the bindings if they changed (and `force` or a second passed since the last
    /// write). Errors are logged; the in-memory bindings are unaffected.
    pub fn save_if_changed(&mut self, registrar: &Registrar, now: Instant, force: bool) {
        if registrar.generation() == self.saved_generation {
            return;
        }
        if !force
            && self
                .last_save
                .is_some_and(|t| now.duration_since(t) < MIN_SAVE_INTERVAL)
        {
            return;
        }
        self.last_save = Some(now);
        self.saved_generation = registrar.generation();
        let text = registrar.save(now, unix_now());
        if let Err(e) = write_atomic(&self.path, text.as_bytes()) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the registration state file");
        }
    }

    /// When a pending change is due to be written (for the shell's wake-up).
    pub fn next_save(&self, registrar: &Registrar) -> Option<Instant> {
        if registrar.generation() == self.saved_generation {
            return None;
        }
        Some(
            self.last_save
                .map_or_else(Instant::now, |t| t + MIN_SAVE_INTERVAL),
        )
    }
}

/// Write `bytes` to `path` so a reader sees the old or the new file, never half of one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file written by one process is read by the next (issue 12 item 5).
    #[test]
    fn save_then_load_in_a_new_registrar() {
        let dir = std::env::temp_dir().join(format!("callmask-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = Instant::now();
        let mut r = Registrar::new();
        let tok = Registrar::token_for(b"sip:1001@pbx", b"sip:1001@10.0.0.7:5060", &[1; 32]);
        r.pending(
            &tok,
            bytes::Bytes::from_static(b"sip:1001@pbx"),
            bytes::Bytes::from_static(b"sip:1001@10.0.0.7:5060"),
            "127.0.0.1:5090".parse().expect("addr"),
            crate::core::proxy::SipTransport::Udp,
            now,
        );
        r.confirmed(&tok, Some(Duration::from_secs(600)), now);
        let mut store = BindingStore::new(&dir);
        assert!(store.next_save(&r).is_some());
        store.save_if_changed(&r, now, false);
        assert!(store.next_save(&r).is_none(), "saved");
        assert!(!dir.join("bindings.tmp").exists());
        let mut back = Registrar::new();
        BindingStore::new(&dir).load(&mut back, now);
        assert_eq!(back.active(), 1);
        assert!(back.lookup(tok.as_bytes()).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
