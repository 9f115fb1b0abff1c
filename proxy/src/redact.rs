//! Wrappers that keep PHI out of logs, errors and events.
//!
//! - [`Redacted<T>`]: anything user-derived that must never be printed (`<redacted>` in both
//!   `Debug` and `Display`); the value is reachable only through [`Redacted::expose`].
//! - [`HashedNumber`]: a caller or callee number, printed as a keyed hash (`h:3f9a1c0b2e7d`) so
//!   that log lines about the same number can be correlated within a key's lifetime without the
//!   number ever being written. The key is random per process unless configured (a configured
//!   key keeps hashes stable across restarts). An admin may opt in to [`NumberPolicy::Reveal`].
//!
//! The hash is HMAC-SHA256 truncated to 48 bits. Phone numbers have little entropy, so an
//! unkeyed hash would be reversible by enumeration; the key is what makes this redaction.
//!
//! ```
//! use callmask::redact::{HashKey, NumberHasher, NumberPolicy};
//!
//! let hasher = NumberHasher::new(HashKey::from_bytes([7; 32]), NumberPolicy::Hash);
//! let n = hasher.hash_uri("\"Alice\" <sip:+1-555-0100@pbx.example;user=phone>").unwrap();
//! assert!(n.to_string().starts_with("h:"));
//! assert!(!n.to_string().contains("5550100"));
//! ```

use std::fmt;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex digits of hash shown (48 bits: collisions are unlikely among a site's numbers).
const HASH_HEX_LEN: usize = 12;

/// A value that is never printed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    /// Wrap `value`.
    pub fn new(value: T) -> Self {
        Redacted(value)
    }

    /// The value, for code that needs it (never for formatting into logs).
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwrap.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(value: T) -> Self {
        Redacted(value)
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The secret key of the number hash.
#[derive(Clone)]
pub struct HashKey([u8; 32]);

impl HashKey {
    /// A fresh random key (hashes are stable only within this process).
    pub fn random() -> Self {
        HashKey(rand::random())
    }

    /// A configured key.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        HashKey(bytes)
    }

    /// A key derived from configured secret text of any length (e.g. `logging.hash_key`).
    pub fn from_secret(secret: &str) -> Self {
        let mut mac = new_mac(b"callmask number hash key v1");
        mac.update(secret.as_bytes());
        HashKey(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length (RFC 2104 §2): this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

/// Whether numbers are hashed (default) or shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NumberPolicy {
    /// Print a keyed hash.
    #[default]
    Hash,
    /// Print the number itself (admin opt-in; PHI enters the logs).
    Reveal,
}

/// Hashes numbers with one key and policy.
#[derive(Debug, Clone)]
pub struct NumberHasher {
    key: HashKey,
    policy: NumberPolicy,
}

impl NumberHasher {
    /// A hasher with `key` and `policy`.
    pub fn new(key: HashKey, policy: NumberPolicy) -> Self {
        NumberHasher { key, policy }
    }

    /// Hash a number (a SIP URI user part or a tel: number). Visual separators
    /// (`-`, `.`, `(`, `)`, space; RFC 3966 §5.1.1) are ignored, so `+1 555-0100` and
    /// `+15550100` hash alike.
    pub fn hash(&self, number: &str) -> HashedNumber {
        let normalized: String = number
            .chars()
            .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
            .collect();
        let mut mac = new_mac(&self.key.0);
        mac.update(normalized.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(HASH_HEX_LEN);
        for b in &digest[..HASH_HEX_LEN / 2] {
            hex.push_str(&format!("{b:02x}"));
        }
        HashedNumber {
            hash: hex,
            revealed: match self.policy {
                NumberPolicy::Hash => None,
                NumberPolicy::Reveal => Some(normalized),
            },
        }
    }

    /// Extract the user part of a SIP/SIPS/tel URI (see [`uri_user`]) and hash it; `None`
    /// when the URI has no user part.
    pub fn hash_uri(&self, uri: &str) -> Option<HashedNumber> {
        uri_user(uri).map(|user| self.hash(user))
    }
}

/// A number as it may appear in logs: `h:<12 hex>`, or the number under
/// [`NumberPolicy::Reveal`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HashedNumber {
    hash: String,
    revealed: Option<String>,
}

impl HashedNumber {
    /// Hash `number` with the process-wide hasher (see [`install`]).
    pub fn new(number: &str) -> Self {
        hasher().hash(number)
    }

    /// The hash form (`h:…`), whatever the policy: for sidecars and correlation.
    pub fn hashed(&self) -> String {
        format!("h:{}", self.hash)
    }
}

impl fmt::Display for HashedNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.revealed {
            Some(n) => f.write_str(n),
            None => write!(f, "h:{}", self.hash),
        }
    }
}

impl fmt::Debug for HashedNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for HashedNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

static PROCESS_HASHER: OnceLock<NumberHasher> = OnceLock::new();

/// Install the process-wide hasher (from config). Returns `false` if one was already in use,
/// i.e. something hashed a number before configuration was applied.
pub fn install(hasher: NumberHasher) -> bool {
    PROCESS_HASHER.set(hasher).is_ok()
}

/// The process-wide hasher: the installed one, else a random key with [`NumberPolicy::Hash`].
pub fn hasher() -> &'static NumberHasher {
    PROCESS_HASHER.get_or_init(|| NumberHasher::new(HashKey::random(), NumberPolicy::Hash))
}

/// The user part of a SIP, SIPS or tel URI, optionally inside a name-addr
/// (`"Name" <sip:user@host>`): `sip:+15550100;npdi@host` → `+15550100`,
/// `tel:+1-555-0100;phone-context=x` → `+1-555-0100`. Password and user parameters are cut.
pub fn uri_user(uri: &str) -> Option<&str> {
    let uri = uri.trim();
    // name-addr: take what is inside the angle brackets.
    let uri = match (uri.find('<'), uri.rfind('>')) {
        (Some(open), Some(close)) if open < close => &uri[open + 1..close],
        _ => uri,
    };
    let (scheme, rest) = uri.split_once(':')?;
    let user = if scheme.eq_ignore_ascii_case("tel") {
        rest
    } else if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        // userinfo ends at the last '@' before any URI parameter or header.
        let end = rest.find(['?', '>']).unwrap_or(rest.len());
        let (userinfo, _) = rest[..end].rsplit_once('@')?;
        userinfo.split_once(':').map_or(userinfo, |(u, _)| u)
    } else {
        return None;
    };
    let user = user.split([';', '?']).next().unwrap_or("");
    (!user.is_empty()).then_some(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(key: u8) -> NumberHasher {
        NumberHasher::new(HashKey::from_bytes([key; 32]), NumberPolicy::Hash)
    }

    #[test]
    fn same_number_same_key_same_hash() {
        let h = hasher(1);
        assert_eq!(
            h.hash("+15550100").to_string(),
            h.hash("+15550100").to_string()
        );
        assert_eq!(
            h.hash("+1 555-0100").to_string(),
            h.hash("+15550100").to_string()
        );
        assert_ne!(
            h.hash("+15550100").to_string(),
            h.hash("+15550101").to_string()
        );
    }

    #[test]
    fn different_keys_differ() {
        assert_ne!(
            hasher(1).hash("+15550100").to_string(),
            hasher(2).hash("+15550100").to_string()
        );
        assert_ne!(
            HashKey::from_secret("a").0,
            HashKey::from_secret("b").0,
            "secret-derived keys differ"
        );
    }

    #[test]
    fn hash_never_contains_the_number() {
        let h = hasher(3);
        for n in ["+15550100", "4155552671", "1001", "0049301234567", "911"] {
            let shown = h.hash(n);
            for text in [shown.to_string(), format!("{shown:?}"), shown.hashed()] {
                assert!(text.starts_with("h:"), "{text}");
                assert_eq!(text.len(), 2 + HASH_HEX_LEN);
                assert!(!text.contains(n), "{text} contains {n}");
            }
            let json = serde_json::to_string(&shown).unwrap();
            assert!(!json.contains(n));
        }
    }

    #[test]
    fn reveal_shows_the_number_only_when_opted_in() {
        let h = NumberHasher::new(HashKey::from_bytes([4; 32]), NumberPolicy::Reveal);
        let n = h.hash("+1 555 0100");
        assert_eq!(n.to_string(), "+15550100");
        assert!(n.hashed().starts_with("h:"));
        assert_eq!(n.hashed(), hasher(4).hash("+15550100").to_string());
    }

    #[test]
    fn redacted_never_prints() {
        let r = Redacted::new("4111111111111111");
        assert_eq!(format!("{r}"), "<redacted>");
        assert_eq!(format!("{r:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(r)), "Some(<redacted>)");
        assert_eq!(*r.expose(), "4111111111111111");
        assert!(!format!("{:?}", HashKey::from_bytes([9; 32])).contains('9'));
    }

    #[test]
    fn user_part_of_uris() {
        let cases = [
            ("sip:+15550100@pbx.example", Some("+15550100")),
            ("sips:alice@example.com;transport=tls", Some("alice")),
            (
                "sip:+15550100;npdi;rn=+1555@gw;user=phone",
                Some("+15550100"),
            ),
            ("sip:1001:secret@10.0.0.1:5060", Some("1001")),
            ("\"Bob\" <sip:2002@pbx;transport=udp>;tag=abc", Some("2002")),
            ("<SIP:3003@pbx>", Some("3003")),
            (
                "tel:+1-555-0100;phone-context=example.com",
                Some("+1-555-0100"),
            ),
            ("sip:pbx.example", None),
            ("sip:@pbx", None),
            ("mailto:a@b", None),
            ("garbage", None),
            ("", None),
        ];
        for (uri, want) in cases {
            assert_eq!(uri_user(uri), want, "{uri}");
        }
        let h = hasher(5);
        assert_eq!(
            h.hash_uri("<sip:+15550100@a>").unwrap().to_string(),
            h.hash("+15550100").to_string()
        );
        assert!(h.hash_uri("sip:host").is_none());
    }
}
