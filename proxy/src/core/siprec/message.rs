//! The requests a recording client sends: INVITE (RFC 7866 §6.1), OPTIONS probes, and in
//! the dialog it makes the ACK of the 2xx, OPTIONS, BYE and CANCEL (RFC 3261 §13.2.2.4, §15, §9.1).

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;

use super::SrsTransport;
use crate::core::sip::{HeaderName, SipMessage};

/// What the INVITE of one attempt is built from.
pub(crate) struct InviteParts<'a> {
    pub(crate) srs_uri: &'a str,
    /// Our SIP address as the SRS reaches it (Via, Contact, From host).
    pub(crate) local: SocketAddr,
    pub(crate) transport: SrsTransport,
    pub(crate) call_id: &'a str,
    pub(crate) from_tag: &'a str,
    pub(crate) branch: &'a str,
    pub(crate) boundary: &'a str,
    pub(crate) body: &'a str,
}

/// The dialog state needed for in-dialog requests, taken from the INVITE and its 2xx.
#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    pub(crate) call_id: String,
    /// Our From header value (with tag), as sent.
    pub(crate) from: Bytes,
    /// The To header value of the 2xx (with the SRS's tag).
    pub(crate) to: Bytes,
    /// Request-URI for in-dialog requests: the 2xx's Contact, else the SRS URI.
    pub(crate) target: Bytes,
    /// Route headers: the 2xx's Record-Route, reversed.
    pub(crate) routes: Vec<Bytes>,
    pub(crate) local: SocketAddr,
    pub(crate) transport: SrsTransport,
    pub(crate) invite_cseq: u32,
}

impl Dialog {
    /// The dialog a 2xx to `invite` establishes.
    pub(crate) fn from_2xx(
        invite: &SipMessage,
        resp: &SipMessage,
        local: SocketAddr,
        transport: SrsTransport,
    ) -> Self {
        let target = resp
            .contacts()
            .ok()
            .and_then(|c| c.first().map(|c| c.uri().as_bytes().clone()))
            .or_else(|| invite.request_uri().map(|u| u.as_bytes().clone()))
            .unwrap_or_default();
        let mut routes = resp.header_values("Record-Route");
        routes.reverse();
        Dialog {
            call_id: invite
                .call_id()
                .map(|c| String::from_utf8_lossy(&c).into_owned())
                .unwrap_or_default(),
            from: invite.header("From").unwrap_or_default(),
            to: resp.header("To").unwrap_or_default(),
            target,
            routes,
            local,
            transport,
            invite_cseq: invite.cseq().map(|c| c.seq).unwrap_or(1),
        }
    }

    /// An in-dialog request (ACK with the INVITE's CSeq number; OPTIONS and BYE with the
    /// next ones).
    pub(crate) fn request(&self, method: &str, cseq: u32, branch: &str) -> Bytes {
        let mut m = String::with_capacity(512);
        let target = String::from_utf8_lossy(&self.target);
        let _ = write!(
            m,
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{} {};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n",
            self.transport.via(),
            self.local
        );
        for r in &self.routes {
            let _ = write!(m, "Route: {}\r\n", String::from_utf8_lossy(r));
        }
        let _ = write!(
            m,
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             User-Agent: callmask\r\nContent-Length: 0\r\n\r\n",
            String::from_utf8_lossy(&self.from),
            String::from_utf8_lossy(&self.to),
            self.call_id,
        );
        Bytes::from(m)
    }
}

/// The INVITE of a recording session (RFC 7866 §6.1.1: `Require: siprec`, `+sip.src` in the
/// Contact, metadata in a multipart body).
pub(crate) fn invite(p: &InviteParts<'_>) -> Bytes {
    let mut m = String::with_capacity(p.body.len() + 700);
    let _ = write!(
        m,
        "INVITE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{via} {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:callmask@{local}>;tag={tag}\r\n\
         To: <{uri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:callmask@{local}{contact_tp}>;+sip.src\r\n\
         Require: siprec\r\n\
         Accept: application/sdp, application/rs-metadata+xml\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
         User-Agent: callmask\r\n\
         Content-Type: multipart/mixed;boundary={boundary}\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        uri = p.srs_uri,
        local = p.local,
        via = p.transport.via(),
        contact_tp = match p.transport {
            SrsTransport::Udp => "",
            SrsTransport::Tcp => ";transport=tcp",
            SrsTransport::Tls => ";transport=tls",
        },
        branch = p.branch,
        tag = p.from_tag,
        call_id = p.call_id,
        boundary = p.boundary,
        len = p.body.len(),
        body = p.body,
    );
    Bytes::from(m)
}

/// An out-of-dialog OPTIONS to `srs` (RFC 3261 §11): is it there?
pub(crate) fn options(
    srs: &super::SrsTarget,
    call_id: &str,
    from_tag: &str,
    branch: &str,
) -> Bytes {
    let mut m = String::with_capacity(400);
    let _ = write!(
        m,
        "OPTIONS {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{via} {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:callmask@{local}>;tag={from_tag}\r\n\
         To: <{uri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Accept: application/sdp\r\n\
         User-Agent: callmask\r\n\
         Content-Length: 0\r\n\r\n",
        uri = srs.uri,
        local = srs.local,
        via = srs.transport.via(),
    );
    Bytes::from(m)
}

/// The CANCEL of an INVITE (RFC 3261 §9.1): same Request-URI, top Via, From, To, Call-ID and
/// CSeq number; Route headers copied.
pub(crate) fn cancel(invite: &SipMessage) -> Bytes {
    let mut m = String::with_capacity(400);
    let uri = invite
        .request_uri()
        .map(|u| String::from_utf8_lossy(u.as_bytes()).into_owned())
        .unwrap_or_default();
    let _ = write!(m, "CANCEL {uri} SIP/2.0\r\n");
    let mut copy = |kind: HeaderName, name: &str| {
        if let Some(h) = invite.headers().find(|h| h.kind == kind) {
            let _ = write!(m, "{name}: {}\r\n", String::from_utf8_lossy(&h.value));
        }
    };
    copy(HeaderName::Via, "Via");
    copy(HeaderName::From, "From");
    copy(HeaderName::To, "To");
    copy(HeaderName::CallId, "Call-ID");
    let seq = invite.cseq().map(|c| c.seq).unwrap_or(1);
    let _ = write!(
        m,
        "CSeq: {seq} CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    Bytes::from(m)
}
