//! Registration mode: the agents' phones REGISTER through callmask (SBC style).
//!
//! callmask forwards each REGISTER to the PBX with its **own** Contact
//! (`sip:rg-<token>@<callmask's PBX-side address>`), so it works with PBXs that ignore `Path`,
//! and keeps the binding: token → the phone's real Contact and the address the REGISTER came
//! from (NAT-safe). A request from the PBX addressed to `rg-<token>` is routed to that phone.
//! Bindings follow the expiry the PBX granted, refreshes extend them, and an un-REGISTER
//! (`Expires: 0`, `expires=0`, or `Contact: *`) removes them once the PBX confirms. Sans-IO.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::core::proxy::SipTransport;

/// User-part prefix of the Contacts callmask registers on the phones' behalf.
pub const TOKEN_PREFIX: &str = "rg-";
/// Expiry assumed when a REGISTER names none (RFC 3261 §10.2.1.1 suggests 3600 s).
const DEFAULT_EXPIRES: Duration = Duration::from_secs(3600);
/// Slack after the granted expiry before a binding is dropped (late refreshes).
const GRACE: Duration = Duration::from_secs(32);

/// One phone's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The address-of-record (To URI of the REGISTER).
    pub aor: Bytes,
    /// The phone's own Contact URI.
    pub contact: Bytes,
    /// Where the phone's REGISTER came from (requests to it go here).
    pub source: SocketAddr,
    /// The transport it registered over: requests to it go the same way (a TCP-registered
    /// phone is reached over its own connection, RFC 5626 style, whatever the PBX used).
    pub transport: SipTransport,
    /// When the binding lapses.
    pub expires: Instant,
    /// Confirmed by a 2xx from the PBX.
    pub active: bool,
}

/// The binding table.
#[derive(Debug, Default)]
pub struct Registrar {
    by_token: HashMap<String, Binding>,
    /// Expiries, earliest first; lazy (checked against the binding when due), so the
    /// signalling loop never scans every phone for its next wake-up.
    expiries: BinaryHeap<Reverse<(Instant, String)>>,
    /// Bindings with `active` set.
    active: usize,
    /// Bumped whenever the active bindings change (the shell saves the state file then).
    generation: u64,
    /// Active bindings by source IP, so access control can ask "is this a registered phone?"
    /// in O(1) ([`Registrar::has_source`]).
    sources: HashMap<IpAddr, u32>,
}

/// Most bindings a state file holds or is read for (a file is never unbounded).
pub const STATE_MAX: usize = 20_000;
/// First line of a state file (format version 1).
const STATE_HEADER: &str = "callmask-bindings 1";

impl Registrar {
    /// An empty table.
    pub fn new() -> Self {
        Registrar::default()
    }

    /// The token for a phone: stable for the same AOR + Contact and `key` (SHA-256, so it
    /// does not change with the process or the Rust version), so refreshes keep it, and with
    /// a key that outlives the process, restarts do too.
    pub fn token_for(aor: &[u8], contact: &[u8], key: &[u8; 32]) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(key);
        h.update((aor.len() as u64).to_be_bytes());
        h.update(aor);
        h.update(contact);
        let d = h.finalize();
        let hex: String = d[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("{TOKEN_PREFIX}{hex}")
    }

    /// A REGISTER is being forwarded: remember (or refresh) the pending binding.
    pub fn pending(
        &mut self,
        token: &str,
        aor: Bytes,
        contact: Bytes,
        source: SocketAddr,
        transport: SipTransport,
        now: Instant,
    ) {
        let entry = self.by_token.entry(token.to_string()).or_insert(Binding {
            aor,
            contact: contact.clone(),
            source,
            transport,
            expires: now + GRACE,
            active: false,
        });
        entry.contact = contact;
        let moved = entry.active && entry.source != source;
        let old = std::mem::replace(&mut entry.source, source);
        entry.transport = transport;
        if moved {
            Self::index_remove(&mut self.sources, old.ip());
            *self.sources.entry(source.ip()).or_default() += 1;
            return;
        }
        if !entry.active {
            entry.expires = now + GRACE;
            self.expiries
                .push(Reverse((entry.expires, token.to_string())));
        }
    }

    fn remove(&mut self, token: &str) {
        if let Some(b) = self.by_token.remove(token).filter(|b| b.active) {
            self.active = self.active.saturating_sub(1);
            self.generation += 1;
            Self::index_remove(&mut self.sources, b.source.ip());
        }
        if self.by_token.is_empty() {
            // Nothing left to expire: no stale wake-ups either.
            self.expiries.clear();
        }
    }

    /// The PBX answered the REGISTER for `token` with 2xx granting `expires`
    /// (`None`: none stated). Zero removes the binding.
    pub fn confirmed(&mut self, token: &str, expires: Option<Duration>, now: Instant) {
        let expires = expires.unwrap_or(DEFAULT_EXPIRES);
        if expires.is_zero() {
            self.remove(token);
            return;
        }
        if let Some(b) = self.by_token.get_mut(token) {
            if !b.active {
                b.active = true;
                self.active += 1;
                *self.sources.entry(b.source.ip()).or_default() += 1;
            }
            self.generation += 1;
            b.expires = now + expires + GRACE;
            self.expiries.push(Reverse((b.expires, token.to_string())));
        }
    }

    /// The PBX refused the REGISTER: forget a binding that was never confirmed.
    pub fn refused(&mut self, token: &str) {
        if self.by_token.get(token).is_some_and(|b| !b.active) {
            self.remove(token);
        }
    }

    /// Remove every binding of `aor` (`Contact: *`, confirmed by the PBX).
    pub fn remove_aor(&mut self, aor: &[u8]) {
        self.by_token.retain(|_, b| b.aor.as_ref() != aor);
        self.active = self.by_token.values().filter(|b| b.active).count();
        self.sources.clear();
        for b in self.by_token.values().filter(|b| b.active) {
            *self.sources.entry(b.source.ip()).or_default() += 1;
        }
        self.generation += 1;
        if self.by_token.is_empty() {
            self.expiries.clear();
        }
    }

    /// The active binding for a Request-URI user part, if it is one of ours.
    pub fn lookup(&self, user: &[u8]) -> Option<&Binding> {
        let user = std::str::from_utf8(user).ok()?;
        self.by_token.get(user).filter(|b| b.active)
    }

    /// Whether `ip` is the source of an active binding (a registered phone).
    pub fn has_source(&self, ip: IpAddr) -> bool {
        self.sources.contains_key(&ip)
    }

    fn index_remove(sources: &mut HashMap<IpAddr, u32>, ip: IpAddr) {
        if let Some(n) = sources.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                sources.remove(&ip);
            }
        }
    }

    /// Active bindings (metric).
    pub fn active(&self) -> usize {
        self.active
    }

    /// Next expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiries.peek().map(|e| e.0 .0)
    }

    /// Changes to the active bindings so far (save the state when it moved).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The active bindings as a state file (issue 12 item 5: a restart keeps them): a
    /// header with the wall-clock time of writing (`now_unix`, seconds), then one binding a
    /// line, `token aor contact source transport seconds-left`, tab-separated (SIP URIs hold
    /// no tab). At most [`STATE_MAX`] bindings, soonest-lapsing left out first.
    pub fn save(&self, now: Instant, now_unix: u64) -> String {
        let mut live: Vec<(&String, &Binding)> = self
            .by_token
            .iter()
            .filter(|(_, b)| b.active && b.expires > now)
            .collect();
        live.sort_by_key(|(_, b)| Reverse(b.expires));
        live.truncate(STATE_MAX);
        let mut out = format!("{STATE_HEADER}\t{now_unix}\n");
        for (token, b) in live {
            let left = b.expires.saturating_duration_since(now).as_secs();
            let transport = match b.transport {
                SipTransport::Udp => "udp",
                SipTransport::Tcp => "tcp",
                SipTransport::Tls => "tls",
            };
            out.push_str(&format!(
                "{token}\t{}\t{}\t{}\t{transport}\t{left}\n",
                String::from_utf8_lossy(&b.aor),
                String::from_utf8_lossy(&b.contact),
                b.source,
            ));
        }
        out
    }

    /// Loads the bindings of a state file written by [`Self::save`], as active bindings;
    /// the time since it was written (`now_unix` against its header) is taken off each, so
    /// lapsed ones are dropped. Malformed lines are skipped, a file of another format is
    /// ignored whole, and at most [`STATE_MAX`] lines are read. Returns how many were loaded.
    pub fn load(&mut self, text: &str, now: Instant, now_unix: u64) -> usize {
        let mut lines = text.lines();
        let Some(saved_unix) = lines
            .next()
            .and_then(|h| h.strip_prefix(STATE_HEADER)?.strip_prefix('\t'))
            .and_then(|t| t.trim().parse::<u64>().ok())
        else {
            return 0;
        };
        let age = now_unix.saturating_sub(saved_unix);
        let mut loaded = 0;
        for line in lines.take(STATE_MAX) {
            let f: Vec<&str> = line.split('\t').collect();
            let [token, aor, contact, source, transport, left] = f.as_slice() else {
                continue;
            };
            let (Ok(source), Ok(left)) = (source.parse::<SocketAddr>(), left.parse::<u64>()) else {
                continue;
            };
            let transport = match *transport {
                "udp" => SipTransport::Udp,
                "tcp" => SipTransport::Tcp,
                "tls" => SipTransport::Tls,
                _ => continue,
            };
            let ok_token = token.strip_prefix(TOKEN_PREFIX).is_some_and(|h| {
                !h.is_empty() && h.len() <= 64 && h.bytes().all(|c| c.is_ascii_hexdigit())
            });
            if !ok_token || aor.is_empty() || contact.is_empty() || left <= age {
                continue;
            }
            let expires = now + Duration::from_secs(left - age);
            if self.by_token.get(*token).is_some_and(|b| b.active) {
                continue;
            }
            self.by_token.insert(
                (*token).to_string(),
                Binding {
                    aor: Bytes::copy_from_slice(aor.as_bytes()),
                    contact: Bytes::copy_from_slice(contact.as_bytes()),
                    source,
                    transport,
                    expires,
                    active: true,
                },
            );
            self.active += 1;
            *self.sources.entry(source.ip()).or_default() += 1;
            self.expiries.push(Reverse((expires, (*token).to_string())));
            loaded += 1;
        }
        loaded
    }

    /// Drop lapsed bindings.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.expiries.peek().is_some_and(|e| e.0 .0 <= now) {
            let Some(Reverse((_, token))) = self.expiries.pop() else {
                break;
            };
            // Lazy deletion: a refresh moved the expiry on, or the binding is gone.
            if self.by_token.get(&token).is_some_and(|b| b.expires <= now) {
                self.remove(&token);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the virtual clock's base is read once per test
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:5090".parse().expect("addr")
    }

    /// Issue 12 item 5: bindings survive a restart through the state file; time spent
    /// down is taken off, lapsed and malformed entries are dropped.
    #[test]
    fn state_file_round_trip() {
        let mut r = Registrar::new();
        let t0 = Instant::now();
        let a = Registrar::token_for(b"sip:1001@pbx", b"sip:1001@10.0.0.7:5060", &[1; 32]);
        let b = Registrar::token_for(b"sip:1002@pbx", b"sip:1002@10.0.0.8:5060", &[1; 32]);
        r.pending(
            &a,
            Bytes::from_static(b"sip:1001@pbx"),
            Bytes::from_static(b"sip:1001@10.0.0.7:5060"),
            addr(),
            SipTransport::Tcp,
            t0,
        );
        r.pending(
            &b,
            Bytes::from_static(b"sip:1002@pbx"),
            Bytes::from_static(b"sip:1002@10.0.0.8:5060"),
            "127.0.0.1:5092".parse().expect("addr"),
            SipTransport::Udp,
            t0,
        );
        let g = r.generation();
        r.confirmed(&a, Some(Duration::from_secs(600)), t0);
        r.confirmed(&b, Some(Duration::from_secs(60)), t0);
        assert!(r.generation() > g, "a change to save");
        let text = r.save(t0, 1_000_000);
        // Restarted 100 s later: `b` (60 s + grace) lapsed while down, `a` is back.
        let t1 = t0 + Duration::from_secs(5);
        let mut back = Registrar::new();
        let junk = format!("{text}rg-zz\tnot a line\nrg-00\ta\tb\tnot-an-addr\tudp\t9\n");
        assert_eq!(back.load(&junk, t1, 1_000_100), 1);
        assert_eq!(back.active(), 1);
        let got = back.lookup(a.as_bytes()).expect("binding a restored");
        assert_eq!(got.contact.as_ref(), b"sip:1001@10.0.0.7:5060");
        assert_eq!(got.source, addr());
        assert_eq!(got.transport, SipTransport::Tcp);
        assert_eq!(got.expires, t1 + Duration::from_secs(600 + 32 - 100));
        assert!(back.lookup(b.as_bytes()).is_none());
        // It lapses at its time like any other binding.
        back.handle_timeout(got.expires);
        assert_eq!(back.active(), 0);
        // Another format (or garbage) loads nothing.
        assert_eq!(Registrar::new().load("hello\n", t1, 1_000_100), 0);
        assert_eq!(Registrar::new().load("", t1, 1_000_100), 0);
    }

    #[test]
    fn binding_lifecycle() {
        let mut r = Registrar::new();
        let t0 = Instant::now();
        let tok = Registrar::token_for(b"sip:1001@pbx", b"sip:1001@10.0.0.7:5060", &[1; 32]);
        assert!(tok.starts_with(TOKEN_PREFIX));
        assert_eq!(tok.len(), TOKEN_PREFIX.len() + 12);
        // Stable for the same key (a restart with log.hash_key set), other with another key.
        assert_eq!(
            tok,
            Registrar::token_for(b"sip:1001@pbx", b"sip:1001@10.0.0.7:5060", &[1; 32])
        );
        assert_ne!(
            tok,
            Registrar::token_for(b"sip:1001@pbx", b"sip:1001@10.0.0.7:5060", &[2; 32])
        );
        r.pending(
            &tok,
            "sip:1001@pbx".into(),
            "sip:1001@10.0.0.7:5060".into(),
            addr(),
            SipTransport::Udp,
            t0,
        );
        assert!(
            r.lookup(tok.as_bytes()).is_none(),
            "not active before the PBX says 2xx"
        );
        assert!(!r.has_source(addr().ip()), "pending is not registered");
        r.confirmed(&tok, Some(Duration::from_secs(60)), t0);
        assert_eq!(r.lookup(tok.as_bytes()).map(|b| b.source), Some(addr()));
        assert_eq!(r.active(), 1);
        assert!(r.has_source(addr().ip()));
        // Refresh keeps it alive past the first expiry.
        r.confirmed(
            &tok,
            Some(Duration::from_secs(60)),
            t0 + Duration::from_secs(50),
        );
        r.handle_timeout(t0 + Duration::from_secs(100));
        assert_eq!(r.active(), 1);
        // Expiry without refresh.
        r.handle_timeout(t0 + Duration::from_secs(200));
        assert_eq!(r.active(), 0);
        assert!(
            !r.has_source(addr().ip()),
            "a lapsed phone is no longer registered"
        );
    }

    /// Access control asks the source index; it follows a phone that moves.
    #[test]
    fn source_index_follows_moves_and_removals() {
        let mut r = Registrar::new();
        let t0 = Instant::now();
        let (a, b): (SocketAddr, SocketAddr) = (addr(), "10.0.0.9:5060".parse().expect("literal"));
        r.pending(
            "rg-a",
            "sip:a@pbx".into(),
            "sip:a@h".into(),
            a,
            SipTransport::Udp,
            t0,
        );
        r.confirmed("rg-a", Some(Duration::from_secs(60)), t0);
        r.pending(
            "rg-a",
            "sip:a@pbx".into(),
            "sip:a@h".into(),
            b,
            SipTransport::Udp,
            t0,
        );
        assert!(!r.has_source(a.ip()) && r.has_source(b.ip()));
        r.remove_aor(b"sip:a@pbx");
        assert!(!r.has_source(b.ip()));
    }

    #[test]
    fn unregister_and_refusal() {
        let mut r = Registrar::new();
        let t0 = Instant::now();
        let udp = SipTransport::Udp;
        r.pending(
            "rg-a",
            "sip:a@pbx".into(),
            "sip:a@h".into(),
            addr(),
            udp,
            t0,
        );
        r.confirmed("rg-a", None, t0);
        r.confirmed("rg-a", Some(Duration::ZERO), t0);
        assert_eq!(r.active(), 0);
        r.pending(
            "rg-b",
            "sip:b@pbx".into(),
            "sip:b@h".into(),
            addr(),
            udp,
            t0,
        );
        r.refused("rg-b");
        assert!(r.poll_timeout().is_none());
        r.pending(
            "rg-c",
            "sip:c@pbx".into(),
            "sip:c@h".into(),
            addr(),
            udp,
            t0,
        );
        r.confirmed("rg-c", None, t0);
        r.remove_aor(b"sip:c@pbx");
        assert_eq!(r.active(), 0);
    }
}
