//! RFC 5923 connection reuse: which address a request's sender asks its TLS connection to be
//! used for. Only the parsing lives here; whether to honour it (the client's certificate must
//! name that host, §9) is the transport shell's call.

use std::net::{IpAddr, SocketAddr};

use super::SipMessage;

/// The address named by the top Via's sent-by when that Via carries the `alias` parameter
/// (RFC 5923 §5): the port defaults to 5061 (a TLS Via). `None` for responses, a Via
/// without `alias`, or a sent-by that is a host name (names are never resolved).
pub fn connection_alias(msg: &SipMessage) -> Option<SocketAddr> {
    if !msg.is_request() {
        return None;
    }
    let via = msg.top_via().ok()?;
    via.params().get("alias")?;
    let host = std::str::from_utf8(via.host()).ok()?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, via.port().unwrap_or(5061)))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::core::sip::{parse_datagram, Frame, Limits};

    fn msg(first: &str, via: &str) -> SipMessage {
        let raw = format!(
            "{first}\r\nVia: {via}\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\n\
             Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        match parse_datagram(Bytes::from(raw), &Limits::default()) {
            Ok(Frame::Message(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alias_is_the_top_via_sent_by() {
        let req = "OPTIONS sip:x@h SIP/2.0";
        let a = |via: &str| connection_alias(&msg(req, via));
        assert_eq!(
            a("SIP/2.0/TLS 10.0.0.5:5071;branch=z9hG4bK1;alias"),
            Some("10.0.0.5:5071".parse().expect("addr"))
        );
        assert_eq!(
            a("SIP/2.0/TLS [::1];alias;branch=z9hG4bK1"),
            Some("[::1]:5061".parse().expect("addr"))
        );
        assert_eq!(a("SIP/2.0/TLS 10.0.0.5:5071;branch=z9hG4bK1"), None);
        assert_eq!(
            a("SIP/2.0/TLS pbx.example:5061;branch=z9hG4bK1;alias"),
            None
        );
        let resp = msg(
            "SIP/2.0 200 OK",
            "SIP/2.0/TLS 10.0.0.5:5071;branch=z9hG4bK1;alias",
        );
        assert_eq!(connection_alias(&resp), None);
    }
}
