//! [`SipMessage`]: the original bytes plus the byte ranges of the start line, every header and
//! the body, with typed accessors for what a proxy needs.
//!
//! Nothing is copied at parse time: header views are `Bytes` slices of the original buffer.
//! Folded values (RFC 3261 §7.3.1) are unfolded into a small copy only when a typed accessor
//! reads them. Printing an unmodified message returns the original bytes ([`SipMessage::as_bytes`]);
//! changes go through [`SipMessage::edit`].

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;

use super::error::SipError;
use super::header::{header_name_eq, CSeq, HeaderName, NameAddr, Via};
use super::lex;
use super::uri::Uri;
use super::vocab::{MaxForwards, Method, StatusCode};

/// The parsed start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP/2.0`
    Request {
        /// Method.
        method: Method,
        /// Request-URI.
        uri: Uri,
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`
    Response {
        /// Status code.
        status: StatusCode,
        /// Reason phrase as written (may be empty).
        reason: Bytes,
    },
}

/// Byte ranges of one header field in the message buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawHeader {
    /// Whole field: from the name to the end of its last line, including the line terminator.
    pub(crate) line: Range<usize>,
    /// Name as written (compact or long form).
    pub(crate) name: Range<usize>,
    /// Value without leading/trailing LWS (folds inside are kept).
    pub(crate) value: Range<usize>,
    pub(crate) kind: HeaderName,
}

/// One header field as a cheap view (`Bytes` slices of the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// Classified name.
    pub kind: HeaderName,
    /// Name exactly as written.
    pub name: Bytes,
    /// Value as written, trimmed, folds kept.
    pub value: Bytes,
}

/// A parsed SIP message over its original bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    pub(crate) buf: Bytes,
    pub(crate) start: StartLine,
    /// Start line without its terminator.
    pub(crate) start_line: Range<usize>,
    pub(crate) headers: Vec<RawHeader>,
    /// Where the empty line that ends the header block starts.
    pub(crate) blank_line: usize,
    pub(crate) body: Range<usize>,
}

impl SipMessage {
    /// The exact bytes of the message (printing an unmodified message).
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Request method, `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// Request-URI, `None` for a response.
    pub fn request_uri(&self) -> Option<&Uri> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// Status code, `None` for a request.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    /// Reason phrase, `None` for a request.
    pub fn reason(&self) -> Option<&Bytes> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    /// All header fields in original order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderField> + '_ {
        self.headers.iter().map(|h| HeaderField {
            kind: h.kind,
            name: self.buf.slice(h.name.clone()),
            value: self.buf.slice(h.value.clone()),
        })
    }

    /// Number of header fields (lines, not list elements).
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// Body bytes (possibly empty).
    pub fn body(&self) -> Bytes {
        self.buf.slice(self.body.clone())
    }

    pub(crate) fn raw_of(&self, kind: HeaderName) -> impl Iterator<Item = (usize, &RawHeader)> {
        self.headers
            .iter()
            .enumerate()
            .filter(move |(_, h)| h.kind == kind)
    }

    fn unfolded(&self, h: &RawHeader) -> Bytes {
        lex::unfold(&self.buf.slice(h.value.clone()))
    }

    fn first_value(&self, kind: HeaderName) -> Option<Bytes> {
        self.raw_of(kind).next().map(|(_, h)| self.unfolded(h))
    }

    /// Values of every header called `name` (compact forms honoured), unfolded, in order.
    /// List headers (Via, Contact, Route...) are split at top-level commas; other headers
    /// yield one value per line.
    pub fn header_values(&self, name: &str) -> Vec<Bytes> {
        let kind = HeaderName::from_bytes(name.as_bytes());
        let mut out = Vec::new();
        for h in &self.headers {
            let hit = if kind == HeaderName::Other {
                header_name_eq(&self.buf[h.name.clone()], name.as_bytes())
            } else {
                h.kind == kind
            };
            if hit {
                let v = self.unfolded(h);
                if kind.is_list() {
                    out.extend(lex::split_list(&v));
                } else {
                    out.push(lex::trim(&v));
                }
            }
        }
        out
    }

    /// First value of header `name` (see [`SipMessage::header_values`]).
    pub fn header(&self, name: &str) -> Option<Bytes> {
        self.header_values(name).into_iter().next()
    }

    fn list_values(&self, kind: HeaderName) -> Vec<Bytes> {
        let mut out = Vec::new();
        for (_, h) in self.raw_of(kind) {
            out.extend(lex::split_list(&self.unfolded(h)));
        }
        out
    }

    /// All Via values, top first (RFC 3261 §20.42).
    pub fn vias(&self) -> Result<Vec<Via>, SipError> {
        self.list_values(HeaderName::Via)
            .iter()
            .map(Via::parse)
            .collect()
    }

    /// The top Via.
    pub fn top_via(&self) -> Result<Via, SipError> {
        let (_, h) = self
            .raw_of(HeaderName::Via)
            .next()
            .ok_or(SipError::MissingHeader("Via"))?;
        let v = self.unfolded(h);
        let first = lex::split_list(&v)
            .into_iter()
            .next()
            .ok_or(SipError::BadHeader {
                header: "Via",
                problem: "empty",
            })?;
        Via::parse(&first)
    }

    fn name_addr(&self, kind: HeaderName) -> Result<NameAddr, SipError> {
        let v = self
            .first_value(kind)
            .ok_or(SipError::MissingHeader(kind.canonical()))?;
        NameAddr::parse(&v, kind.canonical())
    }

    /// From (RFC 3261 §20.20).
    pub fn from(&self) -> Result<NameAddr, SipError> {
        self.name_addr(HeaderName::From)
    }

    /// To (RFC 3261 §20.39).
    pub fn to(&self) -> Result<NameAddr, SipError> {
        self.name_addr(HeaderName::To)
    }

    /// Call-ID (RFC 3261 §20.8), trimmed.
    pub fn call_id(&self) -> Result<Bytes, SipError> {
        let v = self
            .first_value(HeaderName::CallId)
            .ok_or(SipError::MissingHeader("Call-ID"))?;
        let v = lex::trim(&v);
        if v.is_empty() || v.iter().any(|&c| lex::is_lws(c)) {
            return Err(SipError::BadHeader {
                header: "Call-ID",
                problem: "empty or contains whitespace",
            });
        }
        Ok(v)
    }

    /// CSeq (RFC 3261 §20.16).
    pub fn cseq(&self) -> Result<CSeq, SipError> {
        let v = self
            .first_value(HeaderName::CSeq)
            .ok_or(SipError::MissingHeader("CSeq"))?;
        CSeq::parse(&v)
    }

    /// Max-Forwards (RFC 3261 §20.22), `None` if absent.
    pub fn max_forwards(&self) -> Result<Option<MaxForwards>, SipError> {
        let Some(v) = self.first_value(HeaderName::MaxForwards) else {
            return Ok(None);
        };
        let n = lex::parse_u64(&lex::trim(&v), 255).ok_or(SipError::BadHeader {
            header: "Max-Forwards",
            problem: "not an integer in 0..=255",
        })?;
        Ok(u8::try_from(n).ok().map(MaxForwards))
    }

    fn name_addr_list(&self, kind: HeaderName) -> Result<Vec<NameAddr>, SipError> {
        self.list_values(kind)
            .iter()
            .filter(|v| v.as_ref() != b"*")
            .map(|v| NameAddr::parse(v, kind.canonical()))
            .collect()
    }

    /// Contact values in order; the wildcard `*` (REGISTER) is skipped, see
    /// [`SipMessage::contact_is_wildcard`].
    pub fn contacts(&self) -> Result<Vec<NameAddr>, SipError> {
        self.name_addr_list(HeaderName::Contact)
    }

    /// Whether a Contact value is `*` (RFC 3261 §10.2.2, removing all bindings).
    pub fn contact_is_wildcard(&self) -> bool {
        self.list_values(HeaderName::Contact)
            .iter()
            .any(|v| v.as_ref() == b"*")
    }

    /// Route values, top first.
    pub fn routes(&self) -> Result<Vec<NameAddr>, SipError> {
        self.name_addr_list(HeaderName::Route)
    }

    /// Record-Route values, top first.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, SipError> {
        self.name_addr_list(HeaderName::RecordRoute)
    }

    /// Content-Length as declared (validated at parse time), `None` if absent.
    pub fn content_length(&self) -> Option<usize> {
        self.first_value(HeaderName::ContentLength)
            .and_then(|v| lex::parse_u64(&lex::trim(&v), u64::from(u32::MAX)))
            .and_then(|n| usize::try_from(n).ok())
    }

    /// Content-Type value (media type and parameters), `None` if absent.
    pub fn content_type(&self) -> Option<Bytes> {
        self.first_value(HeaderName::ContentType)
            .map(|v| lex::trim(&v))
    }

    /// Expires (RFC 3261 §20.19) as a duration; values above 2^32-1 are clamped as the RFC asks.
    pub fn expires(&self) -> Result<Option<Duration>, SipError> {
        let Some(v) = self.first_value(HeaderName::Expires) else {
            return Ok(None);
        };
        let v = lex::trim(&v);
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return Err(SipError::BadHeader {
                header: "Expires",
                problem: "not delta-seconds",
            });
        }
        let secs = lex::parse_u64(&v, u64::MAX)
            .map_or(u64::from(u32::MAX), |s| s.min(u64::from(u32::MAX)));
        Ok(Some(Duration::from_secs(secs)))
    }

    /// Option tags in Require.
    pub fn require(&self) -> Vec<Bytes> {
        self.list_values(HeaderName::Require)
    }

    /// Option tags in Supported.
    pub fn supported(&self) -> Vec<Bytes> {
        self.list_values(HeaderName::Supported)
    }

    /// Option tags in Proxy-Require.
    pub fn proxy_require(&self) -> Vec<Bytes> {
        self.list_values(HeaderName::ProxyRequire)
    }

    /// Check the headers every element relies on (RFC 3261 §8.1.1): Via, From, To, Call-ID,
    /// CSeq (method equal to the request method), and Max-Forwards, Expires and Contact when
    /// present.
    /// [`parse_datagram`](super::parse_datagram) and [`parse_stream`](super::parse_stream)
    /// call this; messages built by [`SipMessage::edit`] are framed but not re-validated.
    pub fn validate(&self) -> Result<(), SipError> {
        if self.vias()?.is_empty() {
            return Err(SipError::MissingHeader("Via"));
        }
        self.from()?;
        self.to()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        if let Some(m) = self.method() {
            if *m != cseq.method {
                return Err(SipError::CSeqMethodMismatch);
            }
        }
        self.max_forwards()?;
        self.expires()?;
        self.contacts()?;
        Ok(())
    }
}
