//! Registration mode (RFC 3261 §10, SBC style, no reliance on Path): a phone's REGISTER is
//! rewritten so the PBX sees callmask's Contact (a token naming the binding), and the binding
//! is activated, refreshed or removed when the PBX answers. The bindings live in
//! [`crate::core::registrar::Registrar`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::types::Side;
use super::ProxyCore;
use crate::core::registrar::Registrar;
use crate::core::sip::{Edit, SipMessage, StatusCode};

/// What a forwarded REGISTER asked for, to apply when the PBX answers.
#[derive(Debug, Clone)]
pub(super) struct PendingRegister {
    pub(super) token: Option<String>,
    aor: Bytes,
    requested: Option<Duration>,
    wildcard: bool,
}

impl ProxyCore {
    /// Rewrite a phone's REGISTER so the PBX sees callmask's Contact, and note the pending
    /// binding (RFC 3261 §10; SBC style, no reliance on Path).
    pub(super) fn register_edit<'a>(
        &mut self,
        edit: Edit<'a>,
        msg: &SipMessage,
        src: SocketAddr,
        now: Instant,
    ) -> (Edit<'a>, PendingRegister) {
        let aor = msg
            .to()
            .map(|t| t.uri().as_bytes().clone())
            .unwrap_or_default();
        let requested = msg.expires().ok().flatten();
        if msg.contact_is_wildcard() {
            let pending = PendingRegister {
                token: None,
                aor,
                requested,
                wildcard: true,
            };
            return (edit, pending);
        }
        let contact = msg.contacts().ok().and_then(|c| c.into_iter().next());
        let Some(contact) = contact else {
            // A query (no Contact): pass through untouched.
            let pending = PendingRegister {
                token: None,
                aor,
                requested,
                wildcard: false,
            };
            return (edit, pending);
        };
        let requested = contact
            .params()
            .get("expires")
            .flatten()
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
            .map(Duration::from_secs)
            .or(requested);
        let uri = contact.uri().as_bytes().clone();
        let token = Registrar::token_for(&aor, &uri, &self.config.registration_key);
        self.registrar
            .pending(&token, aor.clone(), uri, src, self.arrival, now);
        // A TLS PBX side is reached over TLS only: the Contact says so (RFC 3261 §19.1.4).
        let tp = if self.tls[Side::Pbx] {
            ";transport=tls"
        } else {
            ""
        };
        let ours = format!("sip:{token}@{}{tp}", self.config.pbx.sip_addr);
        let pending = PendingRegister {
            token: Some(token),
            aor,
            requested,
            wildcard: false,
        };
        (edit.replace_contact_uri(ours.as_bytes()), pending)
    }

    /// The PBX answered a REGISTER: activate, refresh or remove the binding. For a 2xx,
    /// returns the Contact values the phone must see instead of the PBX's (RFC 3261
    /// §10.2.4: the 200 lists the phone's current bindings, not callmask's tokens).
    pub(super) fn register_answered(
        &mut self,
        reg: PendingRegister,
        msg: &SipMessage,
        status: StatusCode,
        now: Instant,
    ) -> Option<Vec<String>> {
        if !status.is_success() {
            if let Some(t) = &reg.token {
                self.registrar.refused(t);
            }
            return None;
        }
        if reg.wildcard {
            self.registrar.remove_aor(&reg.aor);
        } else if let Some(token) = &reg.token {
            self.register_confirmed(token, reg.requested, msg, now);
        }
        Some(self.phone_contacts(msg))
    }

    /// The PBX's 2xx Contacts as the phone must see them: each of callmask's tokens
    /// becomes the phone's own Contact URI with the expiry the PBX granted it; a token
    /// with no live binding is left out; a Contact that is not one of ours is kept.
    fn phone_contacts(&self, msg: &SipMessage) -> Vec<String> {
        let header_expires = msg.expires().ok().flatten();
        let Ok(contacts) = msg.contacts() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for c in contacts {
            let user = c.uri().user().cloned().unwrap_or_default();
            let expires = c
                .params()
                .get("expires")
                .flatten()
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                .map(Duration::from_secs)
                .or(header_expires);
            let uri = if user.starts_with(crate::core::registrar::TOKEN_PREFIX.as_bytes()) {
                match self.registrar.lookup(&user) {
                    Some(b) => String::from_utf8_lossy(&b.contact).into_owned(),
                    None => continue,
                }
            } else {
                String::from_utf8_lossy(c.uri().as_bytes()).into_owned()
            };
            out.push(match expires {
                Some(e) => format!("<{uri}>;expires={}", e.as_secs()),
                None => format!("<{uri}>"),
            });
        }
        out
    }

    /// A 2xx for the REGISTER of `token`: refresh or remove its binding.
    fn register_confirmed(
        &mut self,
        token: &str,
        requested: Option<Duration>,
        msg: &SipMessage,
        now: Instant,
    ) {
        // The expiry the PBX granted for our Contact, else its Expires header, else ours.
        let from_contact = msg.contacts().ok().and_then(|cs| {
            cs.into_iter()
                .find(|c| {
                    c.uri()
                        .user()
                        .is_some_and(|u| u.as_ref() == token.as_bytes())
                })
                .and_then(|c| {
                    c.params()
                        .get("expires")
                        .flatten()
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                })
                .map(Duration::from_secs)
        });
        let granted = from_contact
            .or_else(|| msg.expires().ok().flatten())
            .or(requested);
        let listed = msg.contacts().is_ok_and(|cs| {
            cs.iter().any(|c| {
                c.uri()
                    .user()
                    .is_some_and(|u| u.as_ref() == token.as_bytes())
            })
        });
        // A 2xx that no longer lists our Contact means the binding is gone.
        let granted = if listed || from_contact.is_some() {
            granted
        } else if requested == Some(Duration::ZERO) {
            Some(Duration::ZERO)
        } else {
            granted
        };
        self.registrar.confirmed(token, granted, now);
    }
}
