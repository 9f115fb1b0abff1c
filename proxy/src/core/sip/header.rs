//! Header names (with compact forms) and typed views of the header values a proxy needs:
//! Via, name-addr (From/To/Contact/Route/Record-Route) and CSeq.
//!
//! Views hold `Bytes` slices of the original buffer (or of an unfolded copy when the value was
//! folded over several lines), so building them is cheap and never changes the message.

use bytes::Bytes;

use super::error::SipError;
use super::lex::{self, Params};
use super::uri::{self, Uri};
use super::vocab::Method;

/// A header name. Known names are recognised in long and compact form (RFC 3261 §7.3.3,
/// plus the compact forms registered since); anything else is [`HeaderName::Other`] and is
/// compared case-insensitively by its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderName {
    /// `Via` / `v`
    Via,
    /// `From` / `f`
    From,
    /// `To` / `t`
    To,
    /// `Call-ID` / `i`
    CallId,
    /// `CSeq`
    CSeq,
    /// `Max-Forwards`
    MaxForwards,
    /// `Contact` / `m`
    Contact,
    /// `Route`
    Route,
    /// `Record-Route`
    RecordRoute,
    /// `Content-Length` / `l`
    ContentLength,
    /// `Content-Type` / `c`
    ContentType,
    /// `Content-Encoding` / `e`
    ContentEncoding,
    /// `Expires`
    Expires,
    /// `Require`
    Require,
    /// `Proxy-Require`
    ProxyRequire,
    /// `Supported` / `k`
    Supported,
    /// `Unsupported`
    Unsupported,
    /// `Subject` / `s`
    Subject,
    /// `Allow`
    Allow,
    /// `Event` / `o`
    Event,
    /// `Refer-To` / `r`
    ReferTo,
    /// `Referred-By` / `b`
    ReferredBy,
    /// `Allow-Events` / `u`
    AllowEvents,
    /// `Session-Expires` / `x`
    SessionExpires,
    /// `RSeq`
    RSeq,
    /// `RAck`
    RAck,
    /// Any other header; compare with [`HeaderName::matches`].
    Other,
}

impl HeaderName {
    /// Classify a header name as it appears on the wire (case-insensitive).
    pub fn from_bytes(name: &[u8]) -> Self {
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => Self::Via,
                b'f' => Self::From,
                b't' => Self::To,
                b'i' => Self::CallId,
                b'm' => Self::Contact,
                b'l' => Self::ContentLength,
                b'c' => Self::ContentType,
                b'e' => Self::ContentEncoding,
                b'k' => Self::Supported,
                b's' => Self::Subject,
                b'o' => Self::Event,
                b'r' => Self::ReferTo,
                b'b' => Self::ReferredBy,
                b'u' => Self::AllowEvents,
                b'x' => Self::SessionExpires,
                _ => Self::Other,
            };
        }
        Self::KNOWN
            .iter()
            .copied()
            .find(|h| h.canonical().as_bytes().eq_ignore_ascii_case(name))
            .unwrap_or(Self::Other)
    }

    const KNOWN: &'static [HeaderName] = &[
        Self::Via,
        Self::From,
        Self::To,
        Self::CallId,
        Self::CSeq,
        Self::MaxForwards,
        Self::Contact,
        Self::Route,
        Self::RecordRoute,
        Self::ContentLength,
        Self::ContentType,
        Self::ContentEncoding,
        Self::Expires,
        Self::Require,
        Self::ProxyRequire,
        Self::Supported,
        Self::Unsupported,
        Self::Subject,
        Self::Allow,
        Self::Event,
        Self::ReferTo,
        Self::ReferredBy,
        Self::AllowEvents,
        Self::SessionExpires,
        Self::RSeq,
        Self::RAck,
    ];

    /// Canonical long form (`""` for [`HeaderName::Other`]).
    pub fn canonical(self) -> &'static str {
        match self {
            Self::Via => "Via",
            Self::From => "From",
            Self::To => "To",
            Self::CallId => "Call-ID",
            Self::CSeq => "CSeq",
            Self::MaxForwards => "Max-Forwards",
            Self::Contact => "Contact",
            Self::Route => "Route",
            Self::RecordRoute => "Record-Route",
            Self::ContentLength => "Content-Length",
            Self::ContentType => "Content-Type",
            Self::ContentEncoding => "Content-Encoding",
            Self::Expires => "Expires",
            Self::Require => "Require",
            Self::ProxyRequire => "Proxy-Require",
            Self::Supported => "Supported",
            Self::Unsupported => "Unsupported",
            Self::Subject => "Subject",
            Self::Allow => "Allow",
            Self::Event => "Event",
            Self::ReferTo => "Refer-To",
            Self::ReferredBy => "Referred-By",
            Self::AllowEvents => "Allow-Events",
            Self::SessionExpires => "Session-Expires",
            Self::RSeq => "RSeq",
            Self::RAck => "RAck",
            Self::Other => "",
        }
    }

    /// Whether the header's grammar is a comma-separated list (`#element`), so that several
    /// values may share one line (RFC 3261 §7.3.1). Values of other headers are never split.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            Self::Via
                | Self::Contact
                | Self::Route
                | Self::RecordRoute
                | Self::Require
                | Self::ProxyRequire
                | Self::Supported
                | Self::Unsupported
                | Self::Allow
                | Self::AllowEvents
                | Self::ContentEncoding
        )
    }

    /// Whether a wire name `name` is this header. For [`HeaderName::Other`] use
    /// [`header_name_eq`] with the wanted name instead.
    pub fn matches(self, name: &[u8]) -> bool {
        self != Self::Other && Self::from_bytes(name) == self
    }
}

/// Compare two wire header names, honouring compact forms (`"v"` equals `"Via"`).
pub fn header_name_eq(a: &[u8], b: &[u8]) -> bool {
    let ka = HeaderName::from_bytes(a);
    if ka == HeaderName::Other {
        a.eq_ignore_ascii_case(b)
    } else {
        ka == HeaderName::from_bytes(b)
    }
}

/// Transport token of a Via (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS
    Tls,
    /// SCTP
    Sctp,
    /// WS (RFC 7118)
    Ws,
    /// WSS (RFC 7118)
    Wss,
    /// Anything else, as written.
    Other(Bytes),
}

impl Transport {
    fn from_bytes(b: Bytes) -> Self {
        let u = b.to_ascii_uppercase();
        match u.as_slice() {
            b"UDP" => Self::Udp,
            b"TCP" => Self::Tcp,
            b"TLS" => Self::Tls,
            b"SCTP" => Self::Sctp,
            b"WS" => Self::Ws,
            b"WSS" => Self::Wss,
            _ => Self::Other(b),
        }
    }

    /// Whether the transport is reliable (all but UDP), which changes §17 timers.
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Self::Udp)
    }
}

/// The magic cookie that marks an RFC 3261 branch (§8.1.1.7).
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// One Via value (RFC 3261 §20.42): `SIP/2.0/transport sent-by *(;param)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    transport: Transport,
    host: Bytes,
    port: Option<u16>,
    params: Params,
}

impl Via {
    /// Parse one (unfolded, trimmed) Via value.
    pub fn parse(v: &Bytes) -> Result<Self, SipError> {
        let bad = |problem| SipError::BadHeader {
            header: "Via",
            problem,
        };
        // sent-protocol: name / version / transport, LWS allowed around the slashes.
        let mut rest = v.clone();
        let mut parts = Vec::with_capacity(3);
        for i in 0..3 {
            rest = lex::trim(&rest);
            let end = if i < 2 {
                rest.iter()
                    .position(|&c| c == b'/')
                    .ok_or(bad("sent-protocol"))?
            } else {
                rest.iter()
                    .position(|&c| lex::is_lws(c))
                    .ok_or(bad("missing sent-by"))?
            };
            parts.push(lex::trim(&rest.slice(..end)));
            rest = rest.slice(if i < 2 { end + 1 } else { end }..);
        }
        if !parts[0].eq_ignore_ascii_case(b"SIP") || parts[1].as_ref() != b"2.0" {
            return Err(bad("sent-protocol is not SIP/2.0"));
        }
        if !lex::is_token(&parts[2]) {
            return Err(bad("transport"));
        }
        let rest = lex::trim(&rest);
        let semi = rest.iter().position(|&c| c == b';').unwrap_or(rest.len());
        let sent_by = lex::trim(&rest.slice(..semi));
        // `host : port` may carry LWS around the colon.
        let sent_by: Bytes = if sent_by.iter().any(|&c| lex::is_lws(c)) {
            sent_by
                .iter()
                .copied()
                .filter(|&c| !lex::is_lws(c))
                .collect::<Vec<_>>()
                .into()
        } else {
            sent_by
        };
        let (host, port) = uri::parse_hostport(&sent_by).map_err(bad)?;
        let params = Params::parse(&rest.slice(semi..)).ok_or(bad("malformed parameter"))?;
        Ok(Self {
            transport: Transport::from_bytes(parts[2].clone()),
            host,
            port,
            params,
        })
    }

    /// Transport token.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// sent-by host.
    pub fn host(&self) -> &Bytes {
        &self.host
    }

    /// sent-by port, if explicit.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// All Via parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// `branch` parameter value.
    pub fn branch(&self) -> Option<&Bytes> {
        self.params.get("branch").flatten()
    }

    /// Whether the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&Bytes> {
        self.params.get("received").flatten()
    }

    /// `rport` (RFC 3581): `None` absent, `Some(None)` requested, `Some(Some(p))` filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params.get("rport").map(|v| {
            v.and_then(|p| lex::parse_u64(p, u64::from(u16::MAX)))
                .and_then(|p| u16::try_from(p).ok())
        })
    }

    /// `maddr` parameter.
    pub fn maddr(&self) -> Option<&Bytes> {
        self.params.get("maddr").flatten()
    }
}

/// A `name-addr` or `addr-spec` with header parameters (From, To, Contact, Route,
/// Record-Route, RFC 3261 §25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    display: Option<Bytes>,
    uri: Uri,
    params: Params,
    bracketed: bool,
}

impl NameAddr {
    /// Parse one (unfolded, trimmed) value. `header` names the header in errors.
    pub fn parse(v: &Bytes, header: &'static str) -> Result<Self, SipError> {
        let bad = |problem| SipError::BadHeader { header, problem };
        let v = lex::trim(v);
        // Find `<` outside a quoted display name.
        let mut quotes = lex::Quotes::default();
        let mut lt = None;
        for (i, &c) in v.iter().enumerate() {
            if !quotes.outside(c) {
                continue;
            }
            if c == b'<' {
                lt = Some(i);
                break;
            } else if c == b';' || c == b',' {
                break;
            }
        }
        if quotes.is_open() {
            return Err(bad("unterminated quoted string"));
        }
        match lt {
            Some(lt) => {
                let display = lex::trim(&v.slice(..lt));
                if !display.is_empty() {
                    validate_display(&display).ok_or(bad("display name"))?;
                }
                let gt = v[lt..]
                    .iter()
                    .position(|&c| c == b'>')
                    .ok_or(bad("unterminated <"))?
                    + lt;
                let uri_bytes = v.slice(lt + 1..gt);
                let uri = Uri::parse(uri_bytes).map_err(bad)?;
                if !params_start_ok(&v[gt + 1..]) {
                    return Err(bad("junk after >"));
                }
                let params = Params::parse(&v.slice(gt + 1..)).ok_or(bad("malformed parameter"))?;
                Ok(Self {
                    display: (!display.is_empty()).then_some(display),
                    uri,
                    params,
                    bracketed: true,
                })
            }
            None => {
                // addr-spec: parameters after the URI belong to the header (RFC 3261 §20.10).
                let semi = v.iter().position(|&c| c == b';').unwrap_or(v.len());
                let uri_bytes = lex::trim(&v.slice(..semi));
                if uri_bytes.iter().any(|&c| c == b'?' || c == b',') {
                    // RFC 3261 §20.10: such a URI must be in <> (RFC 4475 §3.1.2.13).
                    return Err(bad("URI with ? or , outside <>"));
                }
                let uri = Uri::parse(uri_bytes).map_err(bad)?;
                let params = Params::parse(&v.slice(semi..)).ok_or(bad("malformed parameter"))?;
                Ok(Self {
                    display: None,
                    uri,
                    params,
                    bracketed: false,
                })
            }
        }
    }

    /// Display name as written (quotes kept), if any.
    pub fn display(&self) -> Option<&Bytes> {
        self.display.as_ref()
    }

    /// The URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Header parameters (after `>` or after an addr-spec).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// `tag` parameter (From/To, RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&Bytes> {
        self.params.get("tag").flatten()
    }

    /// Whether the URI was in `<...>`.
    pub fn is_bracketed(&self) -> bool {
        self.bracketed
    }
}

fn params_start_ok(after: &[u8]) -> bool {
    after
        .iter()
        .find(|&&c| !lex::is_lws(c))
        .is_none_or(|&c| c == b';')
}

/// A display name is a quoted-string or `*(token LWS)`.
fn validate_display(d: &[u8]) -> Option<()> {
    if d.first() == Some(&b'"') {
        // Must end with an unescaped quote.
        let mut escaped = false;
        for (i, &c) in d.iter().enumerate().skip(1) {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                return (i == d.len() - 1).then_some(());
            }
        }
        None
    } else {
        d.iter()
            .all(|&c| lex::is_token_char(c) || lex::is_lws(c))
            .then_some(())
    }
}

/// CSeq (RFC 3261 §20.16): sequence number below 2^31 and the method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (< 2^31).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    /// Parse an (unfolded) CSeq value. Leading zeros are allowed (RFC 4475 §3.1.1.1).
    pub fn parse(v: &Bytes) -> Result<Self, SipError> {
        let bad = |problem| SipError::BadHeader {
            header: "CSeq",
            problem,
        };
        let v = lex::trim(v);
        let sp = v
            .iter()
            .position(|&c| lex::is_lws(c))
            .ok_or(bad("missing method"))?;
        let seq = lex::parse_u64(&v[..sp], (1 << 31) - 1).ok_or(bad("number above 2^31-1"))?;
        let method = lex::trim(&v.slice(sp..));
        if !lex::is_token(&method) {
            return Err(bad("method is not a token"));
        }
        Ok(Self {
            seq: u32::try_from(seq).map_err(|_| bad("number above 2^31-1"))?,
            method: Method::from_bytes(method),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms() {
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"CALL-id"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"X-Foo"), HeaderName::Other);
        assert!(header_name_eq(b"l", b"content-length"));
        assert!(header_name_eq(b"X-Foo", b"x-foo"));
    }

    #[test]
    fn via_with_lws_rfc4475_wsinv() {
        let v = Via::parse(&Bytes::from_static(
            b"SIP  /   2.0  /UDP    192.0.2.2;rport;branch=390skdjuw",
        ))
        .unwrap();
        assert_eq!(v.transport(), &Transport::Udp);
        assert_eq!(&v.host()[..], b"192.0.2.2");
        assert_eq!(v.rport(), Some(None));
        assert_eq!(&v.branch().unwrap()[..], b"390skdjuw");
        assert!(!v.has_rfc3261_branch());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            &Bytes::from_static(b"\"J \\\"R\\\"\" <sip:j@example.com;lr>;tag=98"),
            "From",
        )
        .unwrap();
        assert_eq!(&n.tag().unwrap()[..], b"98");
        assert!(n.uri().is_loose_route());
        let n = NameAddr::parse(&Bytes::from_static(b"sip:j@example.com;tag=1"), "To").unwrap();
        assert_eq!(&n.tag().unwrap()[..], b"1");
        assert!(NameAddr::parse(&Bytes::from_static(b"<sip:j@example.com"), "To").is_err());
    }

    #[test]
    fn cseq_bounds() {
        let c = CSeq::parse(&Bytes::from_static(b"0009  INVITE")).unwrap();
        assert_eq!(c.seq, 9);
        assert_eq!(c.method, Method::Invite);
        assert!(CSeq::parse(&Bytes::from_static(b"2147483648 INVITE")).is_err());
        assert!(CSeq::parse(&Bytes::from_static(b"-1 INVITE")).is_err());
    }
}
