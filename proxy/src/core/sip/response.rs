//! Building responses a proxy sends on its own: rejects of malformed or refused requests
//! (400, 482, 483, 501, 505, 513) and 100 Trying.
//!
//! Per RFC 3261 §8.2.6.2 the response copies every Via (in order), From, To, Call-ID and CSeq
//! from the request, byte for byte, and adds a To tag when the request had none (except for
//! 100). The tag is derived from the request's Call-ID, CSeq, From tag and top branch, so a
//! retransmitted request gets the same tag; it is an identifier, not a secret.

use bytes::{Bytes, BytesMut};

use super::error::{RejectReason, SipError};
use super::header::{HeaderName, NameAddr, Via};
use super::lex;
use super::message::{RawHeader, SipMessage};
use super::parse::{self, Limits};
use super::vocab::{Method, StatusCode};

/// Build a response to `req` with `status` and `reason` (no body, `Content-Length: 0`).
/// Fails if `req` is a response or lacks a Via or CSeq (From, To and Call-ID are copied when
/// present).
pub fn build_response(
    req: &SipMessage,
    status: StatusCode,
    reason: &str,
) -> Result<SipMessage, SipError> {
    if !req.is_request() {
        return Err(SipError::BadEdit("cannot answer a response"));
    }
    if reason.bytes().any(|c| c < b' ' && c != b'\t') {
        return Err(SipError::BadEdit("control character in reason phrase"));
    }
    respond_from_raw(&req.buf, &req.headers, status, reason)
}

/// Build the response for a request refused by proxy logic (482, 483, 501...): status and
/// phrase come from `reason`. `None` if the reason has no status (a silent drop), the request
/// is an ACK (never answered, RFC 3261 §17.2.3), or the request lacks the headers to copy.
pub fn reject_request(req: &SipMessage, reason: RejectReason) -> Option<SipMessage> {
    if req.method() == Some(&Method::Ack) {
        return None;
    }
    build_response(req, reason.status()?, reason.phrase()).ok()
}

/// Build the response for bytes that failed to parse with `err` (400 with a reason phrase,
/// 505, 513). `None` means no response can be built (drop and count): the bytes are a response,
/// an ACK, keep-alive, or too garbled to find a request line, a Via and a CSeq.
pub fn reject_unparsed(raw: &Bytes, err: &SipError) -> Option<SipMessage> {
    let reason = err.reason();
    let status = reason.status()?;
    // Look again leniently: bounded only by the bytes we have.
    let lenient = Limits {
        max_message: raw.len().max(1),
        max_headers: usize::MAX,
        max_line: raw.len().max(1),
    };
    let skip = raw
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    let raw = raw.slice(skip..);
    let head = parse::scan_head(&raw, &lenient).ok()??;
    let (start_line, headers) = head.parts();
    let line = &raw[start_line];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let method = line.split(|&c| c == b' ').next()?;
    if method == b"ACK" || !lex::is_token(method) {
        return None;
    }
    respond_from_raw(&raw, headers, status, reason.phrase()).ok()
}

fn respond_from_raw(
    buf: &Bytes,
    headers: &[RawHeader],
    status: StatusCode,
    reason: &str,
) -> Result<SipMessage, SipError> {
    let value = |h: &RawHeader| lex::unfold(&buf.slice(h.value.clone()));
    let first = |kind: HeaderName| headers.iter().find(|h| h.kind == kind);
    // A client transaction matches a response by the top Via branch and the CSeq method
    // (RFC 3261 §17.1.3), so those two are the minimum; From, To and Call-ID are copied when
    // present (RFC 4475 §3.3.x `insuf` still deserves a 400).
    let top_via_line = first(HeaderName::Via).ok_or(SipError::MissingHeader("Via"))?;
    let branch = lex::split_list(&value(top_via_line))
        .into_iter()
        .next()
        .and_then(|v| Via::parse(&v).ok())
        .and_then(|v| v.branch().cloned())
        .unwrap_or_default();
    let cseq = first(HeaderName::CSeq).ok_or(SipError::MissingHeader("CSeq"))?;
    let from = first(HeaderName::From);
    let to = first(HeaderName::To);
    let call_id = first(HeaderName::CallId);

    let mut out = BytesMut::with_capacity(512);
    out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", status.as_u16(), reason).as_bytes());
    for h in headers.iter().filter(|h| h.kind == HeaderName::Via) {
        out.extend_from_slice(&buf[h.line.clone()]);
    }
    if let Some(from) = from {
        out.extend_from_slice(&buf[from.line.clone()]);
    }
    if let Some(to) = to {
        let to_has_tag = NameAddr::parse(&value(to), "To")
            .map(|n| n.tag().is_some())
            .unwrap_or(true);
        if to_has_tag || status == StatusCode::TRYING {
            out.extend_from_slice(&buf[to.line.clone()]);
        } else {
            out.extend_from_slice(&buf[to.name.clone()]);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&value(to));
            out.extend_from_slice(b";tag=");
            let seed = [
                call_id.map(value).unwrap_or_default(),
                value(cseq),
                from.map(value).unwrap_or_default(),
                branch,
            ];
            out.extend_from_slice(format!("{:016x}", fnv1a(&seed)).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if let Some(call_id) = call_id {
        out.extend_from_slice(&buf[call_id.line.clone()]);
    }
    out.extend_from_slice(&buf[cseq.line.clone()]);
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    parse::frame_unchecked(out.freeze())
}

fn fnv1a(parts: &[Bytes]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(std::iter::once(&0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n\
v: SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\n\
Max-Forwards: 0\r\n\
t: <sip:bob@example.com>\r\n\
f: <sip:alice@example.com>;tag=9\r\n\
i: abc@host\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\
\r\n";

    #[test]
    fn response_copies_headers_rfc3261_8_2_6() {
        let req = SipMessage::parse(Bytes::from_static(REQ)).unwrap();
        let r = reject_request(&req, RejectReason::TooManyHops).unwrap();
        r.validate().unwrap();
        assert_eq!(r.status(), Some(StatusCode::TOO_MANY_HOPS));
        assert_eq!(r.vias().unwrap().len(), 2);
        assert!(r.to().unwrap().tag().is_some());
        assert_eq!(r.call_id().unwrap(), req.call_id().unwrap());
        // Same request, same tag.
        let r2 = reject_request(&req, RejectReason::TooManyHops).unwrap();
        assert_eq!(r.as_bytes(), r2.as_bytes());
        let trying = build_response(&req, StatusCode::TRYING, "Trying").unwrap();
        assert!(trying.to().unwrap().tag().is_none());
    }

    #[test]
    fn reject_unparsed_bad_cseq() {
        let raw = std::str::from_utf8(REQ)
            .unwrap()
            .replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
        let raw = Bytes::from(raw);
        let err = SipMessage::parse(raw.clone()).unwrap_err();
        assert_eq!(err, SipError::CSeqMethodMismatch);
        let r = reject_unparsed(&raw, &err).unwrap();
        assert_eq!(r.status(), Some(StatusCode::BAD_REQUEST));
        assert!(std::str::from_utf8(r.as_bytes())
            .unwrap()
            .contains("CSeq Method Mismatch"));
    }

    #[test]
    fn no_response_to_responses_or_garbage() {
        let raw = Bytes::from_static(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n");
        assert!(reject_unparsed(&raw, &SipError::MissingHeader("From")).is_none());
        let raw = Bytes::from_static(b"\x00\x01garbage");
        assert!(reject_unparsed(&raw, &SipError::Truncated).is_none());
    }
}
