//! SDES keys (RFC 4568): the `a=crypto` suites callmask terminates and the keys themselves.
//!
//! Each endpoint's `a=crypto` carries the key *it* encrypts with. callmask terminates SRTP per
//! leg, so toward each side it writes a key of its own ([`SdesKey::generate`]) and never
//! forwards the other side's. Key material is secret: [`SdesKey`]'s `Debug` redacts it, and
//! it is zeroized when dropped.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroize;

use super::parse::Crypto;

/// Longest key + salt of a supported suite (AES-256: 32 + 14).
const MAX_MATERIAL: usize = 46;

/// An SRTP crypto suite callmask terminates (RFC 4568 §6.2, RFC 6188, RFC 7714).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    /// `AES_CM_128_HMAC_SHA1_80` (the mandatory one).
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`.
    AesCm128HmacSha1_32,
    /// `AES_256_CM_HMAC_SHA1_80` (RFC 6188).
    Aes256CmHmacSha1_80,
    /// `AES_256_CM_HMAC_SHA1_32` (RFC 6188).
    Aes256CmHmacSha1_32,
    /// `AEAD_AES_128_GCM` (RFC 7714).
    AeadAes128Gcm,
    /// `AEAD_AES_256_GCM` (RFC 7714).
    AeadAes256Gcm,
}

impl SrtpSuite {
    const TABLE: [(&'static str, SrtpSuite); 6] = [
        ("AES_CM_128_HMAC_SHA1_80", SrtpSuite::AesCm128HmacSha1_80),
        ("AES_CM_128_HMAC_SHA1_32", SrtpSuite::AesCm128HmacSha1_32),
        ("AES_256_CM_HMAC_SHA1_80", SrtpSuite::Aes256CmHmacSha1_80),
        ("AES_256_CM_HMAC_SHA1_32", SrtpSuite::Aes256CmHmacSha1_32),
        ("AEAD_AES_128_GCM", SrtpSuite::AeadAes128Gcm),
        ("AEAD_AES_256_GCM", SrtpSuite::AeadAes256Gcm),
    ];

    /// The suite named `s` (as written in `a=crypto`), if callmask terminates it.
    pub fn parse(s: &str) -> Option<Self> {
        Self::TABLE.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }

    /// The name written in `a=crypto`.
    pub fn name(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("AES_CM_128_HMAC_SHA1_80", |(n, _)| n)
    }

    /// Master key length, bytes.
    pub fn key_len(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80
            | SrtpSuite::AesCm128HmacSha1_32
            | SrtpSuite::AeadAes128Gcm => 16,
            SrtpSuite::Aes256CmHmacSha1_80
            | SrtpSuite::Aes256CmHmacSha1_32
            | SrtpSuite::AeadAes256Gcm => 32,
        }
    }

    /// Master salt length, bytes (RFC 7714 §12: 12 for GCM).
    pub fn salt_len(self) -> usize {
        match self {
            SrtpSuite::AeadAes128Gcm | SrtpSuite::AeadAes256Gcm => 12,
            _ => 14,
        }
    }
}

/// Why an `a=crypto` line cannot be terminated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdesError {
    /// The suite is not one callmask terminates.
    #[error("crypto suite not supported")]
    Suite,
    /// Key parameters are not `inline:<base64>` of the suite's length.
    #[error("key parameters are not an inline key of the suite's length")]
    Key,
    /// An MKI (`|n:len`) or several keys: not supported.
    #[error("MKI or several master keys are not supported")]
    Mki,
    /// No randomness for a new key.
    #[error("no random source for a new key")]
    Random,
}

/// One SDES master key + salt of a suite. Secret: `Debug` redacts it; zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesKey {
    suite: SrtpSuite,
    material: [u8; MAX_MATERIAL],
}

impl SdesKey {
    /// The key of an `a=crypto` line (`inline:<base64 key||salt>[|lifetime]`).
    pub fn from_crypto(c: &Crypto<'_>) -> Result<Self, SdesError> {
        let suite = SrtpSuite::parse(c.suite).ok_or(SdesError::Suite)?;
        let inline = c.key_params.strip_prefix("inline:").ok_or(SdesError::Key)?;
        let mut parts = inline.split('|');
        let b64 = parts.next().unwrap_or_default();
        for p in parts {
            // A lifetime (`2^31` or a number) is fine; an MKI (`1:4`) is not.
            if p.contains(':') {
                return Err(SdesError::Mki);
            }
        }
        let mut raw = STANDARD.decode(b64).map_err(|_| SdesError::Key)?;
        let need = suite.key_len() + suite.salt_len();
        let out = if raw.len() == need {
            let mut material = [0u8; MAX_MATERIAL];
            material[..need].copy_from_slice(&raw);
            Ok(SdesKey { suite, material })
        } else {
            Err(SdesError::Key)
        };
        raw.zeroize();
        out
    }

    /// A fresh random key of `suite` from `fill` (an OS-backed CSPRNG).
    pub fn generate(
        suite: SrtpSuite,
        fill: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<Self, SdesError> {
        let mut material = [0u8; MAX_MATERIAL];
        let need = suite.key_len() + suite.salt_len();
        if !fill(&mut material[..need]) {
            return Err(SdesError::Random);
        }
        Ok(SdesKey { suite, material })
    }

    /// The suite.
    pub fn suite(&self) -> SrtpSuite {
        self.suite
    }

    /// The master key.
    pub fn key(&self) -> &[u8] {
        &self.material[..self.suite.key_len()]
    }

    /// The master salt.
    pub fn salt(&self) -> &[u8] {
        let k = self.suite.key_len();
        &self.material[k..k + self.suite.salt_len()]
    }

    /// The `a=crypto` value with tag `tag` (secret: goes into SDP only, never a log).
    pub fn crypto_value(&self, tag: u32) -> String {
        let need = self.suite.key_len() + self.suite.salt_len();
        format!(
            "{tag} {} inline:{}",
            self.suite.name(),
            STANDARD.encode(&self.material[..need])
        )
    }
}

impl fmt::Debug for SdesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdesKey")
            .field("suite", &self.suite)
            .field("material", &"<redacted>")
            .finish()
    }
}

impl Drop for SdesKey {
    fn drop(&mut self) {
        self.material.zeroize();
    }
}

/// One SRTP leg's keys for the media path: the peer's (to decrypt what it sends) and
/// callmask's own (to encrypt what goes to it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrtpLeg {
    /// The peer's key: decrypts SRTP/SRTCP from it.
    pub rx: SdesKey,
    /// callmask's key toward it: encrypts SRTP/SRTCP sent to it.
    pub tx: SdesKey,
}

/// The first `a=crypto` of a media section that callmask can terminate, with its tag.
pub fn first_supported<'a>(
    mut cryptos: impl Iterator<Item = Crypto<'a>>,
) -> Option<(u32, SdesKey)> {
    cryptos.find_map(|c| SdesKey::from_crypto(&c).ok().map(|k| (c.tag, k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4568 §9.1's example key (AES_CM_128_HMAC_SHA1_80, 30 bytes, lifetime 2^20, MKI 1:4).
    const RFC_KEY: &str = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";

    #[test]
    fn parses_inline_keys_and_refuses_mki() {
        let line = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20");
        let c = Crypto::parse(&line).expect("crypto");
        let k = SdesKey::from_crypto(&c).expect("key");
        assert_eq!((k.key().len(), k.salt().len()), (16, 14));
        assert_eq!(
            k.crypto_value(1),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}")
        );
        let line = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:4");
        let c = Crypto::parse(&line).expect("crypto");
        assert_eq!(SdesKey::from_crypto(&c), Err(SdesError::Mki));
        let line = format!("1 F8_128_HMAC_SHA1_80 inline:{RFC_KEY}");
        let c = Crypto::parse(&line).expect("c");
        assert_eq!(SdesKey::from_crypto(&c), Err(SdesError::Suite));
        let c = Crypto::parse("1 AES_CM_128_HMAC_SHA1_32 inline:AAAA").expect("c");
        assert_eq!(SdesKey::from_crypto(&c), Err(SdesError::Key));
        assert!(!format!("{k:?}").contains(RFC_KEY));
    }

    #[test]
    fn generated_keys_have_the_suites_lengths() {
        for (name, suite) in SrtpSuite::TABLE {
            let k = SdesKey::generate(suite, |b| {
                b.fill(7);
                true
            })
            .expect("key");
            assert_eq!(SrtpSuite::parse(name), Some(suite));
            let v = k.crypto_value(3);
            let c = Crypto::parse(&v).expect("own line parses");
            assert_eq!(SdesKey::from_crypto(&c).expect("round trip"), k);
        }
        assert_eq!(
            SdesKey::generate(SrtpSuite::AeadAes128Gcm, |_| false),
            Err(SdesError::Random)
        );
    }
}
