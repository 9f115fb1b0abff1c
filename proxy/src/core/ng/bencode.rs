//! Bencode, the encoding of rtpengine's NG control protocol: integers `i42e`, byte strings
//! `4:spam`, lists `l…e` and dictionaries `d…e` (keys are byte strings).
//!
//! The decoder reads untrusted datagrams, so it is bounded: nesting depth
//! ([`Limits::max_depth`]), element count ([`Limits::max_items`]) and input length
//! ([`Limits::max_len`]); it never recurses deeper than the depth limit and returns a
//! [`BencodeError`] for every malformed input, never panics. The encoder writes dictionaries
//! with keys in byte order (canonical bencode), which rtpengine and Kamailio both accept.

use std::collections::BTreeMap;

/// A decoded bencode value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `i…e`.
    Int(i64),
    /// `<len>:<bytes>`.
    Bytes(Vec<u8>),
    /// `l…e`.
    List(Vec<Value>),
    /// `d…e` (a repeated key keeps the last value).
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Self {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// The bytes of a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A byte string as UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The items of a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The entries of a dictionary.
    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Appends the encoding of `self` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The encoding of `self`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Decoder bounds. The defaults fit every NG command Kamailio and OpenSIPS send (an offer
/// with SDP and a dozen flags is a few KiB, three levels deep).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Input longer than this is refused outright.
    pub max_len: usize,
    /// Deepest nesting of lists/dictionaries (1 = a flat dictionary).
    pub max_depth: usize,
    /// Total number of values (every int, string, list and dictionary counts one).
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_len: 64 * 1024,
            max_depth: 16,
            max_items: 4096,
        }
    }
}

/// Why a bencode input was refused (the byte offset is where decoding stopped).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BencodeError {
    /// The input ends inside a value.
    #[error("bencode input ends early (at byte {0})")]
    Truncated(usize),
    /// A byte that starts no value, or a malformed integer or length.
    #[error("bencode syntax error at byte {0}")]
    Syntax(usize),
    /// A dictionary key that is not a byte string.
    #[error("bencode dictionary key at byte {0} is not a string")]
    KeyNotString(usize),
    /// Bytes after the top-level value.
    #[error("bencode: trailing bytes after the value (at byte {0})")]
    Trailing(usize),
    /// Input, nesting or element count beyond [`Limits`].
    #[error("bencode input exceeds the decoder's {0} limit")]
    TooLarge(&'static str),
}

/// Decodes exactly one value spanning all of `input`.
pub fn decode(input: &[u8], limits: Limits) -> Result<Value, BencodeError> {
    if input.len() > limits.max_len {
        return Err(BencodeError::TooLarge("length"));
    }
    let mut d = Decoder {
        input,
        pos: 0,
        items: 0,
        limits,
    };
    let v = d.value(0)?;
    if d.pos != input.len() {
        return Err(BencodeError::Trailing(d.pos));
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    items: usize,
    limits: Limits,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::Truncated(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(BencodeError::TooLarge("item count"));
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let n = self.integer(b'e')?;
                Ok(Value::Int(n))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                self.enter(depth)?;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.enter(depth)?;
                let mut dict = BTreeMap::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::KeyNotString(self.pos));
                    }
                    let key = self.bytes()?;
                    let v = self.value(depth + 1)?;
                    dict.insert(key, v);
                }
                self.pos += 1;
                Ok(Value::Dict(dict))
            }
            _ => Err(BencodeError::Syntax(self.pos)),
        }
    }

    fn enter(&mut self, depth: usize) -> Result<(), BencodeError> {
        if depth >= self.limits.max_depth {
            return Err(BencodeError::TooLarge("nesting depth"));
        }
        self.pos += 1;
        Ok(())
    }

    /// Digits up to `end` (an optional leading `-` only for integers), as in BEP 3: no
    /// leading zeros, no `-0`.
    fn integer(&mut self, end: u8) -> Result<i64, BencodeError> {
        let start = self.pos;
        let rest = &self.input[start..];
        let Some(len) = rest.iter().position(|&b| b == end) else {
            return Err(BencodeError::Truncated(self.input.len()));
        };
        let digits = &rest[..len];
        let (neg, body) = match digits.split_first() {
            Some((b'-', body)) if end == b'e' => (true, body),
            _ => (false, digits),
        };
        let digits_only = !body.is_empty() && body.iter().all(u8::is_ascii_digit);
        let leading_zero = body.len() > 1 && body[0] == b'0';
        let minus_zero = neg && body == b"0";
        if !digits_only || leading_zero || minus_zero {
            return Err(BencodeError::Syntax(start));
        }
        let text = std::str::from_utf8(digits).map_err(|_| BencodeError::Syntax(start))?;
        let n = text.parse().map_err(|_| BencodeError::Syntax(start))?;
        self.pos = start + len + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, BencodeError> {
        let len = self.integer(b':')?;
        let len = usize::try_from(len).map_err(|_| BencodeError::Syntax(self.pos))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or(BencodeError::Truncated(self.input.len()))?;
        let b = self.input[self.pos..end].to_vec();
        self.pos = end;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn dec(s: &[u8]) -> Result<Value, BencodeError> {
        decode(s, Limits::default())
    }

    #[test]
    fn bep3_examples() {
        assert_eq!(dec(b"i3e"), Ok(Value::Int(3)));
        assert_eq!(dec(b"i-3e"), Ok(Value::Int(-3)));
        assert_eq!(dec(b"4:spam"), Ok(Value::str("spam")));
        assert_eq!(dec(b"0:"), Ok(Value::Bytes(Vec::new())));
        assert_eq!(
            dec(b"l4:spam4:eggse"),
            Ok(Value::List(vec![Value::str("spam"), Value::str("eggs")]))
        );
        let d = dec(b"d3:cow3:moo4:spam4:eggse").expect("dict");
        assert_eq!(d.as_dict().map(|d| d.len()), Some(2));
        assert_eq!(d.encode(), b"d3:cow3:moo4:spam4:eggse");
    }

    #[test]
    fn rtpengine_ping_shape() {
        let v = dec(b"d7:command4:pinge").expect("ping");
        let cmd = v.as_dict().and_then(|d| d.get(&b"command"[..]));
        assert_eq!(cmd.and_then(Value::as_str), Some("ping"));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        for bad in [
            &b""[..],
            b"i",
            b"ie",
            b"i-0e",
            b"i03e",
            b"i1x2e",
            b"5:abc",
            b"-1:a",
            b"01:a",
            b"l",
            b"d3:cow",
            b"di1e3:mooe",
            b"x",
            b"i1ei2e",
            b"99999999999999999999999:a",
            b"i99999999999999999999999e",
        ] {
            assert!(dec(bad).is_err(), "{bad:?} should not decode");
        }
    }

    #[test]
    fn limits_bound_depth_items_and_length() {
        let deep = [vec![b'l'; 40], vec![b'e'; 40]].concat();
        assert_eq!(dec(&deep), Err(BencodeError::TooLarge("nesting depth")));
        let wide = [b"l".to_vec(), b"i1e".repeat(5000), b"e".to_vec()].concat();
        assert_eq!(dec(&wide), Err(BencodeError::TooLarge("item count")));
        let long = vec![b'0'; 70_000];
        assert_eq!(dec(&long), Err(BencodeError::TooLarge("length")));
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..12),
                    inner,
                    0..8
                )
                .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(v in value()) {
            let bytes = v.encode();
            prop_assert_eq!(dec(&bytes), Ok(v));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            // Canonical inputs re-encode to themselves; anything else is an error value.
            if let Ok(v) = dec(&bytes) {
                let again = v.encode();
                prop_assert_eq!(dec(&again), Ok(v));
            }
        }

        #[test]
        fn truncation_is_an_error(v in value(), cut in any::<prop::sample::Index>()) {
            let bytes = v.encode();
            let n = cut.index(bytes.len());
            prop_assert!(dec(&bytes[..n]).is_err());
        }

        #[test]
        fn mutated_encodings_never_panic(v in value(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
            let mut bytes = v.encode();
            let i = at.index(bytes.len());
            bytes[i] = b;
            let _ = dec(&bytes);
        }
    }
}
