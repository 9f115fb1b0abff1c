//! Framing and parsing: datagrams ([`parse_datagram`]) and byte streams ([`parse_stream`]).
//!
//! "Incomplete" and "invalid" are different answers: on a stream, a message that has not fully
//! arrived yet is `Ok(None)` (read more), while bytes that can never become a valid message are
//! `Err`. A datagram is always complete, so a short one is an error.

use std::ops::Range;

use bytes::Bytes;

use super::error::SipError;
use super::header::HeaderName;
use super::lex;
use super::message::{RawHeader, SipMessage, StartLine};
use super::uri::Uri;
use super::vocab::{Method, StatusCode};

/// Size limits applied while parsing. Defaults: 64 KiB per message, 256 header fields,
/// 8 KiB per physical line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum message size in bytes, head and body (over → [`SipError::TooLarge`], answer 513).
    pub max_message: usize,
    /// Maximum number of header fields (folded continuation lines do not count).
    pub max_headers: usize,
    /// Maximum length of one physical line in bytes.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message: 64 * 1024,
            max_headers: 256,
            max_line: 8 * 1024,
        }
    }
}

/// What a transport delivered: a message or a keep-alive (RFC 5626 §3.5.1).
// A frame lives for one packet and is moved once; boxing the message would add an
// allocation per packet for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A SIP message.
    Message(SipMessage),
    /// A double-CRLF ping: on a stream, answer with a single CRLF ([`PONG`]).
    Ping,
    /// A single-CRLF pong: the peer answered our ping. Nothing to send.
    Pong,
}

/// The bytes to answer a [`Frame::Ping`] with on a stream transport.
pub const PONG: &[u8] = b"\r\n";

/// Parse one datagram (UDP). The message is the datagram itself (zero-copy); bytes after the
/// Content-Length body are discarded (RFC 3261 §18.3). A datagram of only CR/LF is a
/// [`Frame::Ping`] (nothing to answer on UDP).
pub fn parse_datagram(buf: Bytes, limits: &Limits) -> Result<Frame, SipError> {
    if buf.len() > limits.max_message {
        return Err(SipError::TooLarge {
            limit: limits.max_message,
        });
    }
    if buf.iter().all(|&c| c == b'\r' || c == b'\n') {
        return Ok(Frame::Ping);
    }
    let skip = buf
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    let buf = buf.slice(skip..);
    let head = match scan_head(&buf, limits)? {
        Some(h) => h,
        None => return Err(SipError::Truncated),
    };
    let available = buf.len() - head.body_start;
    let body_len = match head.content_length.clone()? {
        Some(n) if n > available => {
            return Err(SipError::BodyTruncated {
                declared: n,
                available,
            })
        }
        Some(n) => n,
        None => available,
    };
    let end = head.body_start + body_len;
    let msg = head.into_message(buf.slice(..end))?;
    msg.validate()?;
    Ok(Frame::Message(msg))
}

/// Parse the next frame from a stream buffer (TCP/TLS). Returns `Ok(None)` when more bytes are
/// needed, or the frame and how many bytes it consumed from the front of `buf`.
///
/// Content-Length is mandatory on streams (RFC 3261 §18.3). CRLFs before a start line are
/// keep-alives: `\r\n\r\n` is a [`Frame::Ping`] (answer [`PONG`]), a lone `\r\n` followed by
/// other bytes is a [`Frame::Pong`]. A buffer holding exactly `\r\n` waits for more bytes, so a
/// ping split across two reads is still recognised. The message bytes are copied once out of
/// `buf` into their own [`Bytes`].
pub fn parse_stream(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, SipError> {
    if buf.starts_with(b"\r\n\r\n") {
        return Ok(Some((Frame::Ping, 4)));
    }
    if buf.starts_with(b"\r\n") {
        return if buf.len() < 4 && b"\r\n\r\n".starts_with(buf) {
            Ok(None)
        } else {
            Ok(Some((Frame::Pong, 2)))
        };
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let view = Bytes::copy_from_slice(&buf[..buf.len().min(limits.max_message + 1)]);
    let Some(head) = scan_head(&view, limits)? else {
        return Ok(None);
    };
    let len = head
        .content_length
        .clone()?
        .ok_or(SipError::MissingContentLength)?;
    let end = head.body_start + len;
    if end > limits.max_message {
        return Err(SipError::TooLarge {
            limit: limits.max_message,
        });
    }
    if end > buf.len() {
        return Ok(None);
    }
    let msg = head.into_message(view.slice(..end))?;
    msg.validate()?;
    Ok(Some((Frame::Message(msg), end)))
}

/// For a stream buffer whose head is complete: the message's total length (head + body), or
/// `None` if the head is not complete after all.
pub(crate) fn stream_message_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, SipError> {
    let view = Bytes::copy_from_slice(&buf[..buf.len().min(limits.max_message + 1)]);
    let Some(head) = scan_head(&view, limits)? else {
        return Ok(None);
    };
    let len = head
        .content_length
        .clone()?
        .ok_or(SipError::MissingContentLength)?;
    Ok(Some(head.body_start + len))
}

impl SipMessage {
    /// Parse a complete message with datagram rules and default [`Limits`]; keep-alives are
    /// [`SipError::NotAMessage`]. Convenient for tests and for bytes built locally.
    pub fn parse(buf: Bytes) -> Result<Self, SipError> {
        match parse_datagram(buf, &Limits::default())? {
            Frame::Message(m) => Ok(m),
            Frame::Ping | Frame::Pong => Err(SipError::NotAMessage),
        }
    }
}

/// Frame bytes produced by the editor: structure only, no validation, generous limits.
pub(crate) fn frame_unchecked(buf: Bytes) -> Result<SipMessage, SipError> {
    let limits = Limits {
        max_message: usize::MAX,
        max_headers: usize::MAX,
        max_line: usize::MAX,
    };
    let head = scan_head(&buf, &limits)?.ok_or(SipError::Truncated)?;
    head.into_message(buf)
}

/// Result of scanning the head: start line, header ranges, where the body starts.
pub(crate) struct Head {
    start_line: std::ops::Range<usize>,
    headers: Vec<RawHeader>,
    blank_line: usize,
    body_start: usize,
    /// Checked lazily so that the reject path can still read the head of a message whose
    /// Content-Length is bad.
    content_length: Result<Option<usize>, SipError>,
}

impl Head {
    pub(crate) fn parts(&self) -> (std::ops::Range<usize>, &[RawHeader]) {
        (self.start_line.clone(), &self.headers)
    }

    fn into_message(self, buf: Bytes) -> Result<SipMessage, SipError> {
        let start = parse_start_line(&buf.slice(self.start_line.clone()))?;
        let body = self.body_start..buf.len();
        Ok(SipMessage {
            buf,
            start,
            start_line: self.start_line,
            headers: self.headers,
            blank_line: self.blank_line,
            body,
        })
    }
}

/// Scan the start line and header block. `Ok(None)` if the empty line has not arrived yet.
pub(crate) fn scan_head(buf: &Bytes, limits: &Limits) -> Result<Option<Head>, SipError> {
    let mut pos = 0;
    let mut start_line = None;
    let mut headers: Vec<RawHeader> = Vec::new();
    loop {
        // One physical line: [pos, content_end) + terminator up to next_pos.
        let Some((content_end, next_pos)) = next_line(buf, pos, limits)? else {
            return Ok(None);
        };
        let line = &buf[pos..content_end];
        match start_line {
            None => {
                if line.is_empty() {
                    return Err(SipError::BadStartLine("empty start line"));
                }
                start_line = Some(pos..content_end);
            }
            Some(_) if line.is_empty() => {
                let content_length = content_length(buf, &headers, limits);
                return Ok(Some(Head {
                    // Invariant: the match arm above guarantees `start_line` is set.
                    start_line: start_line.unwrap_or(0..0),
                    headers,
                    blank_line: pos,
                    body_start: next_pos,
                    content_length,
                }));
            }
            Some(_) if line[0] == b' ' || line[0] == b'\t' => {
                // Folded continuation of the previous header (RFC 3261 §7.3.1).
                let Some(h) = headers.last_mut() else {
                    return Err(SipError::BadHeaderLine { index: 1 });
                };
                continue_header(buf, h, pos..content_end, next_pos);
            }
            Some(_) => {
                if headers.len() >= limits.max_headers {
                    return Err(SipError::TooManyHeaders {
                        limit: limits.max_headers,
                    });
                }
                let index = headers.len() + 1;
                headers.push(header_line(buf, pos..content_end, next_pos, index)?);
            }
        }
        pos = next_pos;
    }
}

/// The physical line starting at `pos`: the end of its content and the start of the next
/// line, `Ok(None)` if its terminator has not arrived yet; errors past the line and message
/// limits.
fn next_line(buf: &Bytes, pos: usize, limits: &Limits) -> Result<Option<(usize, usize)>, SipError> {
    let Some(nl) = buf[pos..].iter().position(|&c| c == b'\n') else {
        if buf.len() - pos > limits.max_line {
            return Err(SipError::LineTooLong {
                limit: limits.max_line,
            });
        }
        if buf.len() > limits.max_message {
            return Err(SipError::TooLarge {
                limit: limits.max_message,
            });
        }
        return Ok(None);
    };
    let next_pos = pos + nl + 1;
    let content_end = if nl > 0 && buf[pos + nl - 1] == b'\r' {
        pos + nl - 1
    } else {
        pos + nl
    };
    if content_end - pos > limits.max_line {
        return Err(SipError::LineTooLong {
            limit: limits.max_line,
        });
    }
    if next_pos > limits.max_message {
        return Err(SipError::TooLarge {
            limit: limits.max_message,
        });
    }
    Ok(Some((content_end, next_pos)))
}

/// A folded continuation line (`content`, up to `next_pos` with its terminator) extends
/// header `h`.
fn continue_header(buf: &[u8], h: &mut RawHeader, content: Range<usize>, next_pos: usize) {
    h.line.end = next_pos;
    let line = &buf[content.clone()];
    if let Some(first) = line.iter().position(|&c| !lex::is_lws(c)) {
        if h.value.is_empty() {
            // The value starts on this continuation line.
            h.value.start = content.start + first;
        }
        h.value.end = content.end;
        trim_value_end(buf, h);
    }
}

/// The header field on line `content` (the `index`-th header, 1-based, for errors).
fn header_line(
    buf: &[u8],
    content: Range<usize>,
    next_pos: usize,
    index: usize,
) -> Result<RawHeader, SipError> {
    let (pos, content_end) = (content.start, content.end);
    let line = &buf[content];
    let colon = line
        .iter()
        .position(|&c| c == b':')
        .ok_or(SipError::BadHeaderLine { index })?;
    let name_end = line[..colon]
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(0, |e| e + 1);
    let name = &line[..name_end];
    if !lex::is_token(name) {
        return Err(SipError::BadHeaderLine { index });
    }
    let vstart = line[colon + 1..]
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .map_or(content_end, |o| pos + colon + 1 + o);
    let mut h = RawHeader {
        line: pos..next_pos,
        name: pos..pos + name_end,
        value: vstart..content_end,
        kind: HeaderName::from_bytes(name),
    };
    trim_value_end(buf, &mut h);
    Ok(h)
}

fn trim_value_end(buf: &[u8], h: &mut RawHeader) {
    while h.value.end > h.value.start && lex::is_lws(buf[h.value.end - 1]) {
        h.value.end -= 1;
    }
}

/// Content-Length from the headers; several must agree (RFC 3261 §20.14).
fn content_length(
    buf: &Bytes,
    headers: &[RawHeader],
    limits: &Limits,
) -> Result<Option<usize>, SipError> {
    let mut found: Option<usize> = None;
    for h in headers
        .iter()
        .filter(|h| h.kind == HeaderName::ContentLength)
    {
        let v = lex::trim(&lex::unfold(&buf.slice(h.value.clone())));
        let max = u64::try_from(limits.max_message).unwrap_or(u64::MAX);
        let n = match lex::parse_u64(&v, u64::MAX) {
            None => return Err(SipError::BadContentLength("not a non-negative integer")),
            Some(n) if n > max => {
                return Err(SipError::TooLarge {
                    limit: limits.max_message,
                })
            }
            Some(n) => usize::try_from(n).map_err(|_| SipError::BadContentLength("too big"))?,
        };
        if found.is_some_and(|f| f != n) {
            return Err(SipError::BadContentLength("several values disagree"));
        }
        found = Some(n);
    }
    Ok(found)
}

/// Parse `Method SP Request-URI SP SIP-Version` or `SIP-Version SP Status-Code SP Reason`.
/// Exactly one SP separates the elements (RFC 3261 §7.1; RFC 4475 §3.1.2.7-8).
pub(crate) fn parse_start_line(line: &Bytes) -> Result<StartLine, SipError> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let sp = line
            .iter()
            .position(|&c| c == b' ')
            .ok_or(SipError::BadStartLine("no SP after version"))?;
        check_version(&line[..sp])?;
        let rest = line.slice(sp + 1..);
        let code_end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
        let code = &rest[..code_end];
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(SipError::BadStartLine("status code is not 3 digits"));
        }
        let n = lex::parse_u64(code, 999).unwrap_or(0);
        let status = u16::try_from(n)
            .ok()
            .and_then(StatusCode::new)
            .ok_or(SipError::BadStartLine("status code outside 100..=699"))?;
        let reason = if code_end < rest.len() {
            rest.slice(code_end + 1..)
        } else {
            Bytes::new()
        };
        if reason.iter().any(|&c| c < b' ' && c != b'\t') {
            return Err(SipError::BadStartLine("control character in reason phrase"));
        }
        return Ok(StartLine::Response { status, reason });
    }
    let sp1 = line
        .iter()
        .position(|&c| c == b' ')
        .ok_or(SipError::BadStartLine("no SP after method"))?;
    let sp2 = line
        .iter()
        .rposition(|&c| c == b' ')
        .ok_or(SipError::BadStartLine("no SP before version"))?;
    if sp1 == sp2 {
        return Err(SipError::BadStartLine("expected three elements"));
    }
    let method = line.slice(..sp1);
    if !lex::is_token(&method) {
        return Err(SipError::BadStartLine("method is not a token"));
    }
    check_version(&line[sp2 + 1..])?;
    let uri = line.slice(sp1 + 1..sp2);
    if uri.is_empty() || uri.iter().any(|&c| lex::is_lws(c)) {
        return Err(SipError::BadRequestUri(
            "whitespace in or around the Request-URI",
        ));
    }
    let uri = Uri::parse(uri).map_err(SipError::BadRequestUri)?;
    if uri.is_sip() && uri.headers().is_some() {
        // RFC 3261 §19.1.5: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.9).
        return Err(SipError::BadRequestUri(
            "URI headers (?...) in a Request-URI",
        ));
    }
    Ok(StartLine::Request {
        method: Method::from_bytes(method),
        uri,
    })
}

/// `SIP/2.0`, case-insensitive; another well-formed version is [`SipError::UnsupportedVersion`].
fn check_version(v: &[u8]) -> Result<(), SipError> {
    if v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    let well_formed = v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..]
            .split(|&c| c == b'.')
            .map(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
            .filter(|&ok| ok)
            .count()
            == 2
        && v[4..].iter().filter(|&&c| c == b'.').count() == 1;
    if well_formed {
        Err(SipError::UnsupportedVersion)
    } else {
        Err(SipError::BadStartLine("malformed SIP version"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:b@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: <sip:b@example.com>\r\n\
From: <sip:a@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 63104 OPTIONS\r\n\
Content-Length: 4\r\n\
\r\n\
abcd";

    #[test]
    fn datagram_roundtrip_and_trailing_bytes_dropped() {
        let mut v = OPTIONS.to_vec();
        v.extend_from_slice(b"junk");
        let Frame::Message(m) = parse_datagram(Bytes::from(v), &Limits::default()).unwrap() else {
            panic!("not a message");
        };
        assert_eq!(m.as_bytes().as_ref(), OPTIONS);
        assert_eq!(&m.body()[..], b"abcd");
    }

    #[test]
    fn stream_incomplete_then_complete() {
        let l = Limits::default();
        for cut in [1, 10, OPTIONS.len() - 1] {
            assert_eq!(parse_stream(&OPTIONS[..cut], &l).unwrap(), None);
        }
        let mut two = OPTIONS.to_vec();
        two.extend_from_slice(b"\r\n\r\n");
        let (f, n) = parse_stream(&two, &l).unwrap().unwrap();
        assert!(matches!(f, Frame::Message(_)));
        assert_eq!(n, OPTIONS.len());
        assert_eq!(parse_stream(&two[n..], &l).unwrap(), Some((Frame::Ping, 4)));
        assert_eq!(parse_stream(b"\r\n", &l).unwrap(), None);
        assert_eq!(
            parse_stream(b"\r\nOPT", &l).unwrap(),
            Some((Frame::Pong, 2))
        );
    }

    #[test]
    fn stream_requires_content_length() {
        let s = std::str::from_utf8(OPTIONS)
            .unwrap()
            .replace("Content-Length: 4\r\n", "");
        assert_eq!(
            parse_stream(s.as_bytes(), &Limits::default()),
            Err(SipError::MissingContentLength)
        );
    }

    #[test]
    fn limits_enforced() {
        let small = Limits {
            max_message: 100,
            ..Limits::default()
        };
        assert_eq!(
            parse_datagram(Bytes::from_static(OPTIONS), &small),
            Err(SipError::TooLarge { limit: 100 })
        );
        assert!(matches!(
            parse_stream(OPTIONS, &small),
            Err(SipError::TooLarge { .. })
        ));
        let few = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        assert_eq!(
            parse_datagram(Bytes::from_static(OPTIONS), &few),
            Err(SipError::TooManyHeaders { limit: 3 })
        );
        let short = Limits {
            max_line: 20,
            ..Limits::default()
        };
        assert!(matches!(
            parse_datagram(Bytes::from_static(OPTIONS), &short),
            Err(SipError::LineTooLong { .. })
        ));
    }

    #[test]
    fn start_line_errors() {
        let bad = |s: &'static str| parse_start_line(&Bytes::from_static(s.as_bytes()));
        assert!(matches!(
            bad("INVITE  sip:a@b SIP/2.0"),
            Err(SipError::BadRequestUri(_))
        ));
        assert!(matches!(
            bad("INVITE sip:a@b SIP/7.0"),
            Err(SipError::UnsupportedVersion)
        ));
        assert!(matches!(
            bad("INVITE sip:a@b SIP/2.0 "),
            Err(SipError::BadStartLine(_))
        ));
        assert!(matches!(
            bad("SIP/2.0 4294967301 x"),
            Err(SipError::BadStartLine(_))
        ));
        assert!(matches!(
            bad("SIP/2.0 100 "),
            Ok(StartLine::Response { .. })
        ));
        assert!(matches!(bad("SIP/2.0 100"), Ok(StartLine::Response { .. })));
        assert!(matches!(
            bad("INVITE <sip:a@b> SIP/2.0"),
            Err(SipError::BadRequestUri(_))
        ));
    }
}
