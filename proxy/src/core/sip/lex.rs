//! Byte-level lexical helpers shared by the parser and the typed header views (RFC 3261 §25.1).

use bytes::{Bytes, BytesMut};

/// `token` characters (RFC 3261 §25.1): alphanumerics and `-.!%*_+`'~`.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Whether `s` is a non-empty `token`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token_char(b))
}

/// Linear whitespace bytes (after unfolding a header, CR and LF can remain only as folds).
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trim leading and trailing LWS from a slice of `b`, returning a zero-copy slice.
pub(crate) fn trim(b: &Bytes) -> Bytes {
    let s = b.as_ref();
    let start = s.iter().position(|&c| !is_lws(c)).unwrap_or(s.len());
    let end = s.iter().rposition(|&c| !is_lws(c)).map_or(start, |e| e + 1);
    b.slice(start..end)
}

/// Replace each line fold (CRLF or LF followed by SP/HT) with one space, as RFC 3261 §7.3.1
/// allows. Zero-copy when the value has no fold (the common case).
pub(crate) fn unfold(v: &Bytes) -> Bytes {
    if !v.iter().any(|&c| c == b'\r' || c == b'\n') {
        return v.clone();
    }
    let mut out = BytesMut::with_capacity(v.len());
    for &c in v.iter() {
        if c == b'\r' || c == b'\n' {
            if out.last() != Some(&b' ') {
                out.extend_from_slice(b" ");
            }
        } else {
            out.extend_from_slice(&[c]);
        }
    }
    out.freeze()
}

/// Split a comma-separated header value into its elements, ignoring commas inside
/// quoted strings (with `\` escapes) and inside `<...>` (RFC 3261 §7.3.1). Elements are trimmed;
/// empty elements are skipped.
pub(crate) fn split_list(v: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut push = |part: Bytes| {
        if !part.is_empty() {
            out.push(part);
        }
    };
    // At a separating comma the scan state is back to "outside quotes and angles", so each
    // element can be scanned afresh.
    let mut start = 0;
    while let Some(i) = first_list_comma(&v[start..]) {
        push(trim(&v.slice(start..start + i)));
        start += i + 1;
    }
    push(trim(&v.slice(start..)));
    out
}

/// Byte offset of the first comma that separates list elements (see [`split_list`]).
pub(crate) fn first_list_comma(v: &[u8]) -> Option<usize> {
    let mut quotes = Quotes::default();
    let mut in_angle = false;
    for (i, &c) in v.iter().enumerate() {
        if !quotes.outside(c) {
            continue;
        }
        match c {
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => return Some(i),
            _ => {}
        }
    }
    None
}

/// Scanner state for `quoted-string`s (RFC 3261 §25.1): `"` opens and closes, `\` escapes the
/// next byte inside. Feed bytes in order with [`Quotes::outside`].
#[derive(Debug, Default)]
pub(crate) struct Quotes {
    in_quote: bool,
    escaped: bool,
}

impl Quotes {
    /// Feed the next byte. True if `c` lies outside any quoted string and is not a quote mark.
    pub(crate) fn outside(&mut self, c: u8) -> bool {
        if self.in_quote {
            if self.escaped {
                self.escaped = false;
            } else if c == b'\\' {
                self.escaped = true;
            } else if c == b'"' {
                self.in_quote = false;
            }
            false
        } else if c == b'"' {
            self.in_quote = true;
            false
        } else {
            true
        }
    }

    /// Whether the bytes fed so far end inside an unterminated quoted string.
    pub(crate) fn is_open(&self) -> bool {
        self.in_quote
    }
}

/// A parsed `;name[=value]` list (generic-param, RFC 3261 §25.1). Names keep their original
/// case; lookups are case-insensitive. Quoted values keep their quotes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    items: Vec<(Bytes, Option<Bytes>)>,
}

impl Params {
    /// Parse `;a=b;c` (the leading `;` optional). Returns `None` on an empty or non-token name.
    pub(crate) fn parse(s: &Bytes) -> Option<Self> {
        let mut items = Vec::new();
        let mut rest = trim(s);
        if rest.is_empty() {
            return Some(Self { items });
        }
        if rest.first() == Some(&b';') {
            rest = rest.slice(1..);
        }
        loop {
            // Find the next ';' outside quotes.
            let mut quotes = Quotes::default();
            let mut end = rest.len();
            for (i, &c) in rest.iter().enumerate() {
                if quotes.outside(c) && c == b';' {
                    end = i;
                    break;
                }
            }
            if quotes.is_open() {
                return None;
            }
            let item = rest.slice(..end);
            let (name, value) = match item.iter().position(|&c| c == b'=') {
                Some(eq) => (trim(&item.slice(..eq)), Some(trim(&item.slice(eq + 1..)))),
                None => (trim(&item), None),
            };
            if !is_token(&name) {
                return None;
            }
            if let Some(v) = &value {
                if v.is_empty() {
                    return None;
                }
            }
            items.push((name, value));
            if end == rest.len() {
                break;
            }
            rest = rest.slice(end + 1..);
        }
        Some(Self { items })
    }

    /// Value of parameter `name`: `None` if absent, `Some(None)` if present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&Bytes>> {
        self.items
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_ref())
    }

    /// Whether parameter `name` is present (with or without a value).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Iterate `(name, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, Option<&Bytes>)> {
        self.items.iter().map(|(n, v)| (n, v.as_ref()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Parse a decimal number of at most `max`, allowing leading zeros (RFC 4475 §3.1.1.1).
pub(crate) fn parse_u64(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_list_respects_quotes_and_angles() {
        let v = Bytes::from_static(b"\"a, b\" <sip:x@y;p=1,2>, <sip:z@w> ,, sip:q@r");
        let parts = split_list(&v);
        assert_eq!(parts.len(), 3);
        assert_eq!(&parts[0][..], b"\"a, b\" <sip:x@y;p=1,2>");
        assert_eq!(&parts[2][..], b"sip:q@r");
    }

    #[test]
    fn params_with_lws_and_no_value() {
        let p = Params::parse(&Bytes::from_static(b" ;   tag    = 1918181833n ; lr")).unwrap();
        assert_eq!(p.get("TAG").unwrap().unwrap().as_ref(), b"1918181833n");
        assert_eq!(p.get("lr"), Some(None));
        assert!(Params::parse(&Bytes::from_static(b";=x")).is_none());
    }

    #[test]
    fn unfold_replaces_folds() {
        let v = Bytes::from_static(b"a\r\n b");
        assert_eq!(&unfold(&v)[..], b"a  b");
    }
}
