//! Editing: an edit list over a parsed message, applied when printing.
//!
//! Every header the edits do not touch is copied byte for byte (name form, case, folding,
//! order); the start line and body likewise unless replaced. Replaced and inserted lines are
//! written as `Name: value\r\n`.
//!
//! ```
//! # use bytes::Bytes;
//! # use callmask::core::sip::{SipMessage, MaxForwards};
//! # let req = SipMessage::parse(Bytes::from_static(b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nTo: <sip:b@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")).unwrap();
//! let fwd = req
//!     .edit()
//!     .prepend_via(b"SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKproxy1")
//!     .set_max_forwards(MaxForwards(69))
//!     .finish()
//!     .unwrap();
//! assert_eq!(fwd.vias().unwrap().len(), 2);
//! ```

use bytes::{Bytes, BytesMut};

use super::error::SipError;
use super::header::{header_name_eq, HeaderName};
use super::lex;
use super::message::SipMessage;
use super::parse;
use super::vocab::MaxForwards;

#[derive(Debug, Clone)]
enum Slot {
    /// Original header `i`, copied verbatim.
    Orig(usize),
    /// Original header `i` with a new value (name form kept).
    Replace(usize, Bytes),
    /// A new header line.
    New(Bytes, Bytes),
}

/// A pending set of edits on a [`SipMessage`]; see [`SipMessage::edit`]. Methods chain; the
/// first invalid argument is reported by [`Edit::finish`].
#[derive(Debug, Clone)]
#[must_use = "edits take effect only through finish()"]
pub struct Edit<'a> {
    msg: &'a SipMessage,
    start_line: Option<Bytes>,
    slots: Vec<Slot>,
    body: Option<Bytes>,
    error: Option<SipError>,
}

impl SipMessage {
    /// Start an edit list. The message itself is never changed; [`Edit::finish`] returns a new
    /// one.
    pub fn edit(&self) -> Edit<'_> {
        Edit {
            msg: self,
            start_line: None,
            slots: (0..self.headers.len()).map(Slot::Orig).collect(),
            body: None,
            error: None,
        }
    }
}

impl<'a> Edit<'a> {
    fn fail(&mut self, e: &'static str) {
        if self.error.is_none() {
            self.error = Some(SipError::BadEdit(e));
        }
    }

    fn check_value(&mut self, v: &[u8]) -> bool {
        if v.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0) {
            self.fail("CR, LF or NUL in a header value");
            return false;
        }
        true
    }

    fn slot_kind(&self, s: &Slot) -> HeaderName {
        match s {
            Slot::Orig(i) | Slot::Replace(i, _) => self.msg.headers[*i].kind,
            Slot::New(n, _) => HeaderName::from_bytes(n),
        }
    }

    fn slot_name(&self, s: &Slot) -> Bytes {
        match s {
            Slot::Orig(i) | Slot::Replace(i, _) => {
                self.msg.buf.slice(self.msg.headers[*i].name.clone())
            }
            Slot::New(n, _) => n.clone(),
        }
    }

    fn slot_value(&self, s: &Slot) -> Bytes {
        match s {
            Slot::Orig(i) => lex::unfold(&self.msg.buf.slice(self.msg.headers[*i].value.clone())),
            Slot::Replace(_, v) | Slot::New(_, v) => v.clone(),
        }
    }

    fn first(&self, kind: HeaderName) -> Option<usize> {
        self.slots.iter().position(|s| self.slot_kind(s) == kind)
    }

    fn last(&self, kind: HeaderName) -> Option<usize> {
        self.slots.iter().rposition(|s| self.slot_kind(s) == kind)
    }

    fn set_slot_value(&mut self, at: usize, value: Bytes) {
        self.slots[at] = match &self.slots[at] {
            Slot::Orig(i) | Slot::Replace(i, _) => Slot::Replace(*i, value),
            Slot::New(n, _) => Slot::New(n.clone(), value),
        };
    }

    /// Remove the first element of the first header of `kind` (the whole line if it holds one
    /// element). Returns whether something was removed.
    fn pop_first_element(&mut self, kind: HeaderName) -> bool {
        let Some(at) = self.first(kind) else {
            return false;
        };
        let v = self.slot_value(&self.slots[at]);
        match lex::first_list_comma(&v) {
            Some(c) => {
                let rest = lex::trim(&v.slice(c + 1..));
                if rest.is_empty() {
                    self.slots.remove(at);
                } else {
                    self.set_slot_value(at, rest);
                }
            }
            None => {
                self.slots.remove(at);
            }
        }
        true
    }

    /// Replace the Request-URI (requests only).
    pub fn set_request_uri(mut self, uri: &[u8]) -> Self {
        let Some(method) = self.msg.method() else {
            self.fail("set_request_uri on a response");
            return self;
        };
        if uri.is_empty() || uri.iter().any(|&c| lex::is_lws(c) || c == 0) {
            self.fail("whitespace in Request-URI");
            return self;
        }
        let mut line = BytesMut::new();
        line.extend_from_slice(method.as_bytes());
        line.extend_from_slice(b" ");
        line.extend_from_slice(uri);
        line.extend_from_slice(b" SIP/2.0");
        self.start_line = Some(line.freeze());
        self
    }

    /// Insert `Via: value` above the current top Via (RFC 3261 §16.6 step 8).
    pub fn prepend_via(mut self, value: &[u8]) -> Self {
        if self.check_value(value) {
            let at = self.first(HeaderName::Via).unwrap_or(0);
            self.slots.insert(
                at,
                Slot::New(Bytes::from_static(b"Via"), Bytes::copy_from_slice(value)),
            );
        }
        self
    }

    /// Remove the top Via value (RFC 3261 §16.7 step 3); other values on the same line stay.
    pub fn remove_top_via(mut self) -> Self {
        if !self.pop_first_element(HeaderName::Via) {
            self.fail("no Via to remove");
        }
        self
    }

    /// Insert `Record-Route: value` above the existing Record-Routes (RFC 3261 §16.6 step 4),
    /// or after the Via headers if there are none.
    pub fn prepend_record_route(mut self, value: &[u8]) -> Self {
        if self.check_value(value) {
            let at = self
                .first(HeaderName::RecordRoute)
                .or_else(|| self.last(HeaderName::Via).map(|i| i + 1))
                .unwrap_or(0);
            self.slots.insert(
                at,
                Slot::New(
                    Bytes::from_static(b"Record-Route"),
                    Bytes::copy_from_slice(value),
                ),
            );
        }
        self
    }

    /// Remove the top Route value (RFC 3261 §16.4, a route set entry naming this proxy).
    pub fn pop_route(mut self) -> Self {
        if !self.pop_first_element(HeaderName::Route) {
            self.fail("no Route to pop");
        }
        self
    }

    /// Set Max-Forwards (RFC 3261 §16.6 step 3), adding the header at the end if absent.
    pub fn set_max_forwards(mut self, n: MaxForwards) -> Self {
        let v = Bytes::from(n.0.to_string());
        match self.first(HeaderName::MaxForwards) {
            Some(at) => self.set_slot_value(at, v),
            None => self
                .slots
                .push(Slot::New(Bytes::from_static(b"Max-Forwards"), v)),
        }
        self
    }

    /// Replace the body; Content-Length is updated (or added) when printing.
    pub fn set_body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }

    /// Replace the URI of the first Contact value, keeping display name and parameters.
    /// A bare addr-spec becomes `<uri>` so that header parameters keep their meaning.
    pub fn replace_contact_uri(mut self, uri: &[u8]) -> Self {
        if !self.check_value(uri) {
            return self;
        }
        if uri
            .iter()
            .any(|&c| lex::is_lws(c) || c == b'<' || c == b'>')
        {
            self.fail("whitespace or angle bracket in Contact URI");
            return self;
        }
        let Some(at) = self.first(HeaderName::Contact) else {
            self.fail("no Contact to rewrite");
            return self;
        };
        let v = self.slot_value(&self.slots[at]);
        let elem_end = lex::first_list_comma(&v).unwrap_or(v.len());
        let elem = &v[..elem_end];
        let (a, b, wrap) = match find_angle(elem) {
            Some((lt, gt)) => (lt + 1, gt, false),
            None => {
                let start = elem.iter().position(|&c| !lex::is_lws(c)).unwrap_or(0);
                if elem[start..].starts_with(b"*") {
                    self.fail("Contact is the wildcard *");
                    return self;
                }
                let end = elem.iter().position(|&c| c == b';').unwrap_or(elem.len());
                let end = elem[..end]
                    .iter()
                    .rposition(|&c| !lex::is_lws(c))
                    .map_or(start, |e| e + 1);
                (start, end, true)
            }
        };
        let mut out = BytesMut::with_capacity(v.len() + uri.len());
        out.extend_from_slice(&v[..a]);
        if wrap {
            out.extend_from_slice(b"<");
        }
        out.extend_from_slice(uri);
        if wrap {
            out.extend_from_slice(b">");
        }
        out.extend_from_slice(&v[b..]);
        self.set_slot_value(at, out.freeze());
        self
    }

    /// Append `name: value` after the last header.
    pub fn add_header(mut self, name: &[u8], value: &[u8]) -> Self {
        if !lex::is_token(name) {
            self.fail("header name is not a token");
            return self;
        }
        if self.check_value(value) {
            self.slots.push(Slot::New(
                Bytes::copy_from_slice(name),
                Bytes::copy_from_slice(value),
            ));
        }
        self
    }

    /// Remove every header called `name` (compact forms honoured: `"Contact"` removes `m:`).
    pub fn remove_header(mut self, name: &[u8]) -> Self {
        let slots = std::mem::take(&mut self.slots);
        self.slots = slots
            .into_iter()
            .filter(|s| !header_name_eq(&self.slot_name(s), name))
            .collect();
        self
    }

    /// Print the edited message. Untouched parts are copied verbatim. The result is framed
    /// (start line, headers, body located) but not re-validated.
    pub fn finish(mut self) -> Result<SipMessage, SipError> {
        if let Some(body) = &self.body {
            let len = Bytes::from(body.len().to_string());
            match self.first(HeaderName::ContentLength) {
                Some(at) => self.set_slot_value(at, len),
                None => self
                    .slots
                    .push(Slot::New(Bytes::from_static(b"Content-Length"), len)),
            }
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        let m = self.msg;
        let body = self.body.clone().unwrap_or_else(|| m.body());
        let mut out = BytesMut::with_capacity(m.buf.len() + 256);
        match &self.start_line {
            Some(l) => {
                out.extend_from_slice(l);
                out.extend_from_slice(b"\r\n");
            }
            None => {
                let first = m.headers.first().map_or(m.blank_line, |h| h.line.start);
                out.extend_from_slice(&m.buf[m.start_line.start..first]);
            }
        }
        for s in &self.slots {
            match s {
                Slot::Orig(i) => out.extend_from_slice(&m.buf[m.headers[*i].line.clone()]),
                Slot::Replace(i, v) => {
                    let h = &m.headers[*i];
                    // Keep `Name<ws>:<ws>` exactly; when the original value was empty the
                    // prefix ends at the line end, so rebuild it from the name.
                    if h.value.start > h.name.end
                        && h.value.start <= h.line.end
                        && !h.value.is_empty()
                    {
                        out.extend_from_slice(&m.buf[h.line.start..h.value.start]);
                    } else {
                        out.extend_from_slice(&m.buf[h.name.clone()]);
                        out.extend_from_slice(b": ");
                    }
                    out.extend_from_slice(v);
                    out.extend_from_slice(b"\r\n");
                }
                Slot::New(n, v) => {
                    out.extend_from_slice(n);
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(v);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        out.extend_from_slice(&m.buf[m.blank_line..m.body.start]);
        out.extend_from_slice(&body);
        parse::frame_unchecked(out.freeze())
    }
}

/// `<` and `>` positions of a name-addr element, skipping a quoted display name.
fn find_angle(elem: &[u8]) -> Option<(usize, usize)> {
    let mut quotes = lex::Quotes::default();
    for (i, &c) in elem.iter().enumerate() {
        if quotes.outside(c) && c == b'<' {
            let gt = elem[i..].iter().position(|&c| c == b'>')? + i;
            return Some((i, gt));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Max-Forwards: 70\r\n\
X-Custom:  keep   me \r\n\
t: <sip:bob@example.com>\r\n\
f: \"A, B\" <sip:alice@example.com>;tag=9\r\n\
i: abc@host\r\n\
CSeq: 1 INVITE\r\n\
m: \"Al\" <sip:alice@192.0.2.1:5060;transport=udp>;expires=60\r\n\
l: 3\r\n\
\r\n\
xyz";

    fn req() -> SipMessage {
        SipMessage::parse(Bytes::from_static(REQ.as_bytes())).unwrap()
    }

    #[test]
    fn no_edits_is_identity() {
        let m = req();
        assert_eq!(m.edit().finish().unwrap().as_bytes(), m.as_bytes());
    }

    #[test]
    fn proxy_forwarding_edits() {
        let out = req()
            .edit()
            .prepend_via(b"SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp")
            .prepend_record_route(b"<sip:proxy.example.com;lr>")
            .pop_route()
            .set_max_forwards(MaxForwards(69))
            .replace_contact_uri(b"sip:alice@198.51.100.7:5062")
            .set_body(Bytes::from_static(b"hello"))
            .finish()
            .unwrap();
        out.validate().unwrap();
        let s = std::str::from_utf8(out.as_bytes()).unwrap();
        assert!(s.starts_with(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp\r\nv: SIP/2.0/UDP a.example.com"
        ));
        assert!(s.contains(
            "Record-Route: <sip:proxy.example.com;lr>\r\nRoute: <sip:p2.example.com;lr>\r\n"
        ));
        assert!(s.contains("X-Custom:  keep   me \r\n"));
        assert!(s.contains("m: \"Al\" <sip:alice@198.51.100.7:5062>;expires=60\r\n"));
        assert!(s.contains("l: 5\r\n\r\nhello"));
        assert_eq!(out.vias().unwrap().len(), 3);
        assert_eq!(out.max_forwards().unwrap(), Some(MaxForwards(69)));
    }

    #[test]
    fn remove_top_via_keeps_rest_of_line() {
        let out = req().edit().remove_top_via().finish().unwrap();
        let vias = out.vias().unwrap();
        assert_eq!(vias.len(), 1);
        assert_eq!(&vias[0].host()[..], b"b.example.com");
        let out = out.edit().remove_top_via().finish().unwrap();
        assert!(out.vias().unwrap().is_empty());
        assert!(out.edit().remove_top_via().finish().is_err());
    }

    #[test]
    fn add_remove_header_and_bad_values() {
        let out = req()
            .edit()
            .remove_header(b"Contact")
            .add_header(b"X-New", b"1")
            .finish()
            .unwrap();
        assert!(out.contacts().unwrap().is_empty());
        assert_eq!(out.header("x-new").unwrap().as_ref(), b"1");
        assert!(req().edit().add_header(b"X", b"a\r\nb").finish().is_err());
        assert!(req().edit().add_header(b"X Y", b"a").finish().is_err());
    }

    #[test]
    fn bare_contact_gets_brackets() {
        let raw = REQ.replace(
            "m: \"Al\" <sip:alice@192.0.2.1:5060;transport=udp>;expires=60",
            "m: sip:alice@192.0.2.1;expires=60",
        );
        let m = SipMessage::parse(Bytes::from(raw)).unwrap();
        let out = m
            .edit()
            .replace_contact_uri(b"sip:x@198.51.100.7")
            .finish()
            .unwrap();
        let c = &out.contacts().unwrap()[0];
        assert_eq!(&c.uri().host()[..], b"198.51.100.7");
        assert_eq!(&c.params().get("expires").unwrap().unwrap()[..], b"60");
    }
}
