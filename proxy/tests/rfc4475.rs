//! RFC 4475 torture messages (§3.1.1 valid, §3.1.2 invalid, plus a few from §3.3/§3.4) as
//! checked-in byte files under `tests/vectors/rfc4475/`, with the outcome callmask expects.
//!
//! Valid messages must parse, print back byte for byte and expose the named fields. Invalid
//! ones must fail with the named error, and the reject helper must build the named response
//! (or none: responses and unanswerable garbage are dropped and counted).
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use bytes::Bytes;
use callmask::core::sip::{
    parse_datagram, reject_unparsed, Frame, Limits, MaxForwards, Method, RejectReason, SipError,
    SipMessage, StatusCode, Transport,
};

fn load(name: &str) -> Bytes {
    let path = format!(
        "{}/tests/vectors/rfc4475/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

fn valid(name: &str) -> SipMessage {
    let raw = load(name);
    let msg = match parse_datagram(raw.clone(), &Limits::default()) {
        Ok(Frame::Message(m)) => m,
        other => panic!("{name}: expected a message, got {other:?}"),
    };
    // Byte-faithful: the message is a prefix of the datagram (extra octets are dropped).
    assert!(raw.starts_with(msg.as_bytes()), "{name}: not byte-faithful");
    assert_eq!(
        msg.edit().finish().unwrap().as_bytes(),
        msg.as_bytes(),
        "{name}"
    );
    msg
}

/// Expect parse failure with `reason`, and a response with `status` (or none).
fn invalid(name: &str, reason: RejectReason, status: Option<u16>) {
    let raw = load(name);
    let err = match parse_datagram(raw.clone(), &Limits::default()) {
        Err(e) => e,
        Ok(f) => panic!("{name}: expected an error, parsed {f:?}"),
    };
    assert_eq!(err.reason(), reason, "{name}: {err}");
    let resp = reject_unparsed(&raw, &err);
    assert_eq!(
        resp.as_ref()
            .and_then(|r| r.status())
            .map(StatusCode::as_u16),
        status,
        "{name}"
    );
    if let Some(r) = resp {
        // The response copies Call-ID and CSeq so the client can match it (RFC 3261 §8.2.6).
        assert!(r.header("CSeq").is_some(), "{name}");
        assert!(r.header("Via").is_some(), "{name}");
    }
}

fn s(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn rfc4475_3_1_1_1_wsinv_short_tortuous_invite() {
    let m = valid("wsinv");
    assert_eq!(m.method(), Some(&Method::Invite));
    let ruri = m.request_uri().unwrap();
    assert_eq!(s(ruri.host()), "chair-dnrc.example.com");
    assert_eq!(
        m.request_uri().unwrap().params().get("unknownparam"),
        Some(None)
    );
    assert_eq!(s(m.to().unwrap().tag().unwrap()), "1918181833n");
    let from = m.from().unwrap();
    assert_eq!(s(from.tag().unwrap()), "98asjd8");
    assert_eq!(s(from.display().unwrap()), r#""J Rosenberg \\\"""#);
    assert_eq!(m.max_forwards().unwrap(), Some(MaxForwards(68)));
    assert_eq!(s(&m.call_id().unwrap()), "wsinv.ndaksdj@192.0.2.1");
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    assert_eq!(m.content_length(), Some(150));
    assert_eq!(m.body().len(), 150);
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].transport(), &Transport::Udp);
    assert_eq!(s(vias[0].host()), "192.0.2.2");
    assert!(!vias[0].has_rfc3261_branch());
    assert_eq!(vias[1].transport(), &Transport::Tcp);
    assert_eq!(s(vias[1].host()), "spindle.example.com");
    assert_eq!(s(vias[1].branch().unwrap()), "z9hG4bK9ikj8");
    assert_eq!(s(vias[2].host()), "192.168.255.111");
    assert_eq!(s(vias[2].branch().unwrap()), "z9hG4bK30239");
    assert_eq!(m.header("Subject").unwrap().len(), 0);
    assert_eq!(
        s(&m.header("newfangledheader").unwrap()),
        "newfangled value  continued newfangled value"
    );
    assert_eq!(
        s(&m.header("UnknownHeaderWithUnusualValue").unwrap()),
        ";;,,;;,;"
    );
    let routes = m.routes().unwrap();
    assert_eq!(routes.len(), 1);
    assert!(routes[0].uri().is_loose_route());
    let contact = &m.contacts().unwrap()[0];
    assert_eq!(
        s(contact.params().get("newparam").unwrap().unwrap()),
        "newvalue"
    );
    assert_eq!(contact.params().get("secondparam"), Some(None));
    assert_eq!(s(contact.params().get("q").unwrap().unwrap()), "0.33");
    // Compact and long forms are one header for lookup, each kept as written.
    let names: Vec<_> = m.headers().map(|h| h.name).collect();
    assert!(names.iter().any(|n| n.as_ref() == b"v"));
    assert!(names.iter().any(|n| n.as_ref() == b"Via"));
}

#[test]
fn rfc4475_3_1_1_2_intmeth_wide_range_of_valid_characters() {
    let m = valid("intmeth");
    let Some(Method::Extension(name)) = m.method() else {
        panic!("expected an extension method");
    };
    assert_eq!(s(name), "!interesting-Method0123456789_*+`.%indeed'~");
    assert_eq!(m.cseq().unwrap().method, m.method().unwrap().clone());
    let ruri = m.request_uri().unwrap();
    assert_eq!(
        s(ruri.user().unwrap()),
        "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    );
    assert_eq!(s(ruri.host()), "example.com");
    assert_eq!(s(m.from().unwrap().tag().unwrap()), "_token~1'+`*%!-.");
    assert_eq!(m.max_forwards().unwrap(), Some(MaxForwards(255)));
    assert_eq!(
        s(&m.call_id().unwrap()),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert!(m.header("extensionHeader-!.%*+_`'~").is_some());
    assert_eq!(
        s(m.vias().unwrap()[0].branch().unwrap()),
        "z9hG4bK-.!%66*_+`'~"
    );
}

#[test]
fn rfc4475_3_1_1_3_esc01_percent_escapes() {
    let m = valid("esc01");
    assert_eq!(
        s(m.request_uri().unwrap().user().unwrap()),
        "sips%3Auser%40example.com"
    );
    assert_eq!(s(m.request_uri().unwrap().host()), "example.net");
    assert_eq!(
        s(&m.call_id().unwrap()),
        "esc01.239409asdfakjkn23onasd0-3234"
    );
    assert_eq!(s(&m.content_type().unwrap()), "application/sdp");
    let c = &m.contacts().unwrap()[0];
    assert_eq!(s(c.uri().host()), "host5.example.net");
    assert_eq!(c.uri().params().get("%6C%72"), Some(None));
}

#[test]
fn rfc4475_3_1_1_4_escnull_escaped_nulls() {
    let m = valid("escnull");
    assert_eq!(m.contacts().unwrap().len(), 2);
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn rfc4475_3_1_1_5_esc02_escaped_method_is_unknown() {
    let m = valid("esc02");
    assert!(matches!(m.method(), Some(Method::Extension(_))));
    // `C%6Fntact` is not Contact.
    assert_eq!(m.contacts().unwrap().len(), 2);
    assert!(m.header("C%6Fntact").is_some());
}

#[test]
fn rfc4475_3_1_1_6_lwsdisp_no_lws_before_angle() {
    let m = valid("lwsdisp");
    let from = m.from().unwrap();
    assert_eq!(s(from.display().unwrap()), "caller");
    assert_eq!(s(from.tag().unwrap()), "323");
}

#[test]
fn rfc4475_3_1_1_8_dblreq_extra_octets_discarded() {
    let m = valid("dblreq");
    assert_eq!(m.method(), Some(&Method::Register));
    assert!(m.as_bytes().ends_with(b"Content-Length: 0\r\n\r\n"));
    assert_eq!(m.body().len(), 0);
}

#[test]
fn rfc4475_3_1_1_9_semiuri_semicolon_in_user() {
    let m = valid("semiuri");
    let u = m.request_uri().unwrap();
    assert_eq!(s(u.user().unwrap()), "user;par=u%40example.net");
    assert_eq!(s(u.host()), "example.com");
    assert!(u.params().is_empty());
    // Accept is not a list header we split, but its folded value unfolds.
    assert!(s(&m.header("Accept").unwrap()).contains("message/sipfrag"));
}

#[test]
fn rfc4475_3_1_1_10_transports() {
    let m = valid("transports");
    let t: Vec<_> = m
        .vias()
        .unwrap()
        .iter()
        .map(|v| v.transport().clone())
        .collect();
    assert_eq!(t.len(), 5);
    assert_eq!(t[0], Transport::Udp);
    assert_eq!(t[1], Transport::Sctp);
    assert_eq!(t[2], Transport::Tls);
    assert!(matches!(&t[3], Transport::Other(b) if b.as_ref() == b"UNKNOWN"));
    assert_eq!(t[4], Transport::Tcp);
}

#[test]
fn rfc4475_3_1_1_13_noreason_empty_reason_phrase() {
    let m = valid("noreason");
    assert_eq!(m.status(), Some(StatusCode::TRYING));
    assert_eq!(m.reason().unwrap().len(), 0);
}

#[test]
fn rfc4475_3_3_inv2543_rfc2543_request_without_branch() {
    let m = valid("inv2543");
    assert!(m.top_via().unwrap().branch().is_none());
    assert_eq!(m.max_forwards().unwrap(), None);
    // No Content-Length on a datagram: the body is the rest of the datagram.
    assert_eq!(m.body().len(), 105);
    assert_eq!(m.record_routes().unwrap().len(), 1);
}

#[test]
fn rfc4475_3_1_2_12_baddate_forwarded_unchanged() {
    // A proxy does not interpret Date; the request passes (RFC 4475 allows forwarding).
    let m = valid("baddate");
    assert!(m.header("Date").is_some());
}

#[test]
fn rfc4475_3_1_2_1_badinv01_extraneous_separators() {
    invalid("badinv01", RejectReason::BadHeaderValue, Some(400));
}

#[test]
fn rfc4475_3_1_2_2_clerr_content_length_larger_than_message() {
    invalid("clerr", RejectReason::BodyTruncated, Some(400));
}

#[test]
fn rfc4475_3_1_2_3_ncl_negative_content_length() {
    invalid("ncl", RejectReason::BadContentLength, Some(400));
}

#[test]
fn rfc4475_3_1_2_4_scalar02_overlarge_request_scalars() {
    invalid("scalar02", RejectReason::BadHeaderValue, Some(400));
}

#[test]
fn rfc4475_3_1_2_5_scalarlg_overlarge_response_scalars_dropped() {
    invalid("scalarlg", RejectReason::BadHeaderValue, None);
}

#[test]
fn rfc4475_3_1_2_6_quotbal_unterminated_quote() {
    invalid("quotbal", RejectReason::BadHeaderValue, Some(400));
}

#[test]
fn rfc4475_3_1_2_7_ltgtruri_angle_brackets_around_request_uri() {
    invalid("ltgtruri", RejectReason::BadRequestUri, Some(400));
}

#[test]
fn rfc4475_3_1_2_8_lwsruri_lws_in_request_uri() {
    invalid("lwsruri", RejectReason::BadRequestUri, Some(400));
}

#[test]
fn rfc4475_3_1_2_9_lwsstart_multiple_sp_in_request_line() {
    invalid("lwsstart", RejectReason::BadRequestUri, Some(400));
}

#[test]
fn rfc4475_3_1_2_10_trws_trailing_sp_in_request_line() {
    invalid("trws", RejectReason::BadStartLine, Some(400));
}

#[test]
fn rfc4475_3_1_2_11_escruri_headers_in_request_uri() {
    invalid("escruri", RejectReason::BadRequestUri, Some(400));
}

#[test]
fn rfc4475_3_1_2_13_regbadct_contact_uri_not_enclosed() {
    invalid("regbadct", RejectReason::BadHeaderValue, Some(400));
}

#[test]
fn rfc4475_3_1_2_14_badaspec_spaces_in_addr_spec() {
    invalid("badaspec", RejectReason::BadHeaderValue, Some(400));
}

#[test]
fn rfc4475_3_1_2_15_baddn_non_token_display_name() {
    invalid("baddn", RejectReason::BadHeaderValue, Some(400));
}

#[test]
fn rfc4475_3_1_2_16_badvers_unknown_version_gets_505() {
    invalid("badvers", RejectReason::UnsupportedVersion, Some(505));
}

#[test]
fn rfc4475_3_1_2_17_mismatch01_cseq_method_mismatch() {
    invalid("mismatch01", RejectReason::CSeqMethodMismatch, Some(400));
}

#[test]
fn rfc4475_3_1_2_18_mismatch02_unknown_method_cseq_mismatch() {
    invalid("mismatch02", RejectReason::CSeqMethodMismatch, Some(400));
}

#[test]
fn rfc4475_3_1_2_19_bigcode_overlarge_status_dropped() {
    invalid("bigcode", RejectReason::BadStartLine, None);
}

#[test]
fn rfc4475_3_3_insuf_missing_headers_still_answered() {
    invalid("insuf", RejectReason::MissingHeader, Some(400));
}

#[test]
fn every_vector_is_in_the_table() {
    let dir = format!("{}/tests/vectors/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let n = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(n, 31, "add new vectors to the expectation table");
}

#[test]
fn errors_never_echo_message_content() {
    // PHI: error strings name the header and the problem, never the URI.
    for name in ["badaspec", "baddn", "quotbal", "ltgtruri", "regbadct"] {
        let err: SipError = SipMessage::parse(load(name)).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("example"), "{name}: {text}");
    }
}
