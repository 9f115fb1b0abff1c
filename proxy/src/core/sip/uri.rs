//! Zero-copy view of a SIP/SIPS URI (RFC 3261 §19.1) or any other absolute URI.
//!
//! Only the parts a proxy routes on are split out (scheme, user, host, port, parameters);
//! the original bytes are kept so printing is exact. `%`-escapes are not decoded: comparisons a
//! proxy needs (host, port, `lr`, `transport`) never involve escaped characters in practice.

use bytes::Bytes;

use super::lex::Params;

/// A URI. For `sip:`/`sips:` the user, host, port and parameters are available; other schemes
/// (`tel:`, `urn:`...) are opaque (`host()` is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    raw: Bytes,
    scheme: Bytes,
    user: Option<Bytes>,
    host: Bytes,
    port: Option<u16>,
    params: Params,
    headers: Option<Bytes>,
}

impl Uri {
    /// Parse an absolute URI. Errors are static descriptions (never URI content: it may hold a
    /// phone number).
    pub fn parse(raw: Bytes) -> Result<Self, &'static str> {
        let colon = raw
            .iter()
            .position(|&c| c == b':')
            .ok_or("no scheme separator")?;
        let scheme = raw.slice(..colon);
        let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || b"+-.".contains(&c));
        if !scheme_ok {
            return Err("invalid scheme");
        }
        if raw
            .iter()
            .any(|&c| c <= b' ' || c == 0x7f || c == b'<' || c == b'>' || c == b'"')
        {
            return Err("whitespace, control or delimiter character in URI");
        }
        let is_sip = scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips");
        if !is_sip {
            if colon + 1 == raw.len() {
                return Err("empty URI after scheme");
            }
            return Ok(Self {
                raw: raw.clone(),
                scheme,
                user: None,
                host: Bytes::new(),
                port: None,
                params: Params::default(),
                headers: None,
            });
        }
        let rest = raw.slice(colon + 1..);
        // An unescaped `@` appears only as the userinfo delimiter (RFC 3261 §25.1: it is in
        // neither `user`, `password` nor `hvalue`), while `?` may appear inside the user part
        // (RFC 4475 §3.1.1.2). So split at `@` first, then look for `?` in the host part.
        let (user, after_user) = match rest.iter().position(|&c| c == b'@') {
            Some(at) => {
                let userinfo = rest.slice(..at);
                let user_end = userinfo
                    .iter()
                    .position(|&c| c == b':')
                    .unwrap_or(userinfo.len());
                if user_end == 0 {
                    return Err("empty user part");
                }
                (Some(userinfo.slice(..user_end)), rest.slice(at + 1..))
            }
            None => (None, rest),
        };
        let q = after_user
            .iter()
            .position(|&c| c == b'?')
            .unwrap_or(after_user.len());
        let headers = (q < after_user.len()).then(|| after_user.slice(q + 1..));
        let hostpart = after_user.slice(..q);
        let semi = hostpart
            .iter()
            .position(|&c| c == b';')
            .unwrap_or(hostpart.len());
        let hostport = hostpart.slice(..semi);
        let params = Params::parse(&hostpart.slice(semi..)).ok_or("malformed URI parameter")?;
        let (host, port) = split_hostport(&hostport)?;
        Ok(Self {
            raw: raw.clone(),
            scheme,
            user,
            host,
            port,
            params,
            headers,
        })
    }

    /// The exact bytes of the URI.
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }

    /// Scheme as written (`sip`, `SIPS`, `tel`...).
    pub fn scheme(&self) -> &Bytes {
        &self.scheme
    }

    /// Whether the scheme is `sip` or `sips` (case-insensitive).
    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"sip") || self.scheme.eq_ignore_ascii_case(b"sips")
    }

    /// User part (still `%`-escaped), if any. PHI: often a phone number; never log it raw.
    pub fn user(&self) -> Option<&Bytes> {
        self.user.as_ref()
    }

    /// Host (brackets kept for IPv6 references). Empty for non-SIP schemes.
    pub fn host(&self) -> &Bytes {
        &self.host
    }

    /// Explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// URI parameters (`;lr`, `;transport=tcp`...).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Whether the URI carries `;lr` (loose routing, RFC 3261 §16.4).
    pub fn is_loose_route(&self) -> bool {
        self.params.contains("lr")
    }

    /// Header part after `?`, if any.
    pub fn headers(&self) -> Option<&Bytes> {
        self.headers.as_ref()
    }
}

/// Split `host[:port]`, accepting `[v6]` references. Validates host characters loosely.
fn split_hostport(hp: &Bytes) -> Result<(Bytes, Option<u16>), &'static str> {
    if hp.is_empty() {
        return Err("empty host");
    }
    let (host, port_str) = if hp.first() == Some(&b'[') {
        let close = hp
            .iter()
            .position(|&c| c == b']')
            .ok_or("unterminated IPv6 reference")?;
        let host = hp.slice(..=close);
        let after = hp.slice(close + 1..);
        if after.is_empty() {
            (host, None)
        } else if after.first() == Some(&b':') {
            (host, Some(after.slice(1..)))
        } else {
            return Err("junk after IPv6 reference");
        }
    } else {
        match hp.iter().position(|&c| c == b':') {
            Some(c) => (hp.slice(..c), Some(hp.slice(c + 1..))),
            None => (hp.clone(), None),
        }
    };
    if host.is_empty() {
        return Err("empty host");
    }
    if host.first() != Some(&b'[')
        && !host
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
    {
        return Err("invalid host character");
    }
    let port = match port_str {
        None => None,
        Some(p) => {
            let v = super::lex::parse_u64(&p, u64::from(u16::MAX)).ok_or("invalid port")?;
            Some(u16::try_from(v).map_err(|_| "invalid port")?)
        }
    };
    Ok((host, port))
}

/// Parse `host[:port]` (a Via sent-by). Shared with the Via parser.
pub(crate) fn parse_hostport(hp: &Bytes) -> Result<(Bytes, Option<u16>), &'static str> {
    split_hostport(hp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &'static str) -> Uri {
        Uri::parse(Bytes::from_static(s.as_bytes())).unwrap()
    }

    #[test]
    fn sip_uri_parts() {
        let u = uri("sip:alice:pw@example.com:5070;transport=tcp;lr?subject=x");
        assert_eq!(&u.user().unwrap()[..], b"alice");
        assert_eq!(&u.host()[..], b"example.com");
        assert_eq!(u.port(), Some(5070));
        assert!(u.is_loose_route());
        assert_eq!(&u.params().get("transport").unwrap().unwrap()[..], b"tcp");
        assert_eq!(&u.headers().unwrap()[..], b"subject=x");
    }

    #[test]
    fn user_with_semicolon_rfc4475_semiuri() {
        let u = uri("sip:user;par=u%40example.net@example.com");
        assert_eq!(&u.user().unwrap()[..], b"user;par=u%40example.net");
        assert_eq!(&u.host()[..], b"example.com");
    }

    #[test]
    fn ipv6_and_other_schemes() {
        let u = uri("sip:[2001:db8::10]:5070");
        assert_eq!(&u.host()[..], b"[2001:db8::10]");
        assert_eq!(u.port(), Some(5070));
        assert!(!uri("tel:+1-555").is_sip());
        assert!(Uri::parse(Bytes::from_static(b"<sip:a@b>")).is_err());
        assert!(Uri::parse(Bytes::from_static(b"sip:a@b c")).is_err());
        assert!(Uri::parse(Bytes::from_static(b"sip:a@b:99999")).is_err());
    }
}
