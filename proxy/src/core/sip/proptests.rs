//! Property tests: byte-faithful round trip, no panics on arbitrary input, edits keep order.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9.!%*_+`'~-]{0,12}"
}

fn host() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,8}){0,2}"
}

/// Extra headers: unknown names, compact forms, odd spacing and folding.
fn extra_header() -> impl Strategy<Value = String> {
    prop_oneof![
        (token(), "[ -~]{0,30}").prop_map(|(n, v)| format!("X-{n}:{v}")),
        ("[a-z]{1,8}", "[a-z ]{0,10}").prop_map(|(a, b)| format!("Subject :  {a}\r\n {b}")),
        host().prop_map(|h| format!("Record-Route: <sip:{h};lr>, <sip:p.{h}>")),
        host().prop_map(|h| format!("m: \"A, b\" <sip:u@{h}>;expires=3")),
        Just("k: timer, 100rel".to_string()),
    ]
}

prop_compose! {
    fn message()(
        host in host(),
        branch in "[A-Za-z0-9]{1,16}",
        cseq in 0u32..(1 << 31),
        mf in 0u8..=255,
        extras in proptest::collection::vec(extra_header(), 0..8),
        body in "[ -~\r\n]{0,64}",
        compact in any::<bool>(),
        response in any::<bool>(),
    ) -> String {
        let start = if response {
            "SIP/2.0 180 Ringing".to_string()
        } else {
            format!("INVITE sip:user@{host} SIP/2.0")
        };
        let (v, f, t, i, l) = if compact { ("v", "f", "t", "i", "l") } else {
            ("Via", "From", "To", "Call-ID", "Content-Length")
        };
        let mut s = format!(
            "{start}\r\n{v}: SIP/2.0/UDP {host}:5060;branch=z9hG4bK{branch}\r\n\
Max-Forwards: {mf}\r\n{f}: <sip:a@{host}>;tag=1\r\n{t}:  sip:b@{host}\r\n\
{i}: {branch}@{host}\r\nCSeq: {cseq} INVITE\r\n"
        );
        for e in extras {
            s.push_str(&e);
            s.push_str("\r\n");
        }
        s.push_str(&format!("{l}: {}\r\n\r\n{body}", body.len()));
        s
    }
}

proptest! {
    #[test]
    fn print_parse_is_identity(m in message()) {
        let bytes = Bytes::from(m.clone());
        let msg = SipMessage::parse(bytes.clone()).unwrap();
        prop_assert_eq!(msg.as_bytes(), &bytes);
        let printed = msg.edit().finish().unwrap();
        prop_assert_eq!(printed.as_bytes(), &bytes);
        // Streams frame the same message identically.
        let (frame, used) = parse_stream(m.as_bytes(), &Limits::default()).unwrap().unwrap();
        prop_assert_eq!(used, m.len());
        prop_assert_eq!(frame, Frame::Message(msg));
    }

    #[test]
    fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let b = Bytes::from(data.clone());
        if let Err(e) = parse_datagram(b.clone(), &Limits::default()) {
            let _ = reject_unparsed(&b, &e);
            let _ = e.reason().label();
        }
        let _ = parse_stream(&data, &Limits::default());
    }

    #[test]
    fn mutated_messages_never_panic(m in message(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut v = m.into_bytes();
        let i = at.index(v.len());
        v[i] = byte;
        let b = Bytes::from(v);
        match SipMessage::parse(b.clone()) {
            Ok(msg) => {
                let _ = (msg.vias(), msg.contacts(), msg.routes(), msg.record_routes(), msg.expires());
            }
            Err(e) => {
                let _ = reject_unparsed(&b, &e);
            }
        }
    }

    #[test]
    fn edits_keep_other_headers_in_order(m in message()) {
        let msg = SipMessage::parse(Bytes::from(m)).unwrap();
        let out = msg
            .edit()
            .prepend_via(b"SIP/2.0/UDP proxy.invalid;branch=z9hG4bKx")
            .set_max_forwards(MaxForwards(9))
            .add_header(b"X-Added", b"1")
            .finish()
            .unwrap();
        let untouched = |m: &SipMessage| -> Vec<(Bytes, Bytes)> {
            m.headers()
                .filter(|h| !matches!(h.kind, HeaderName::Via | HeaderName::MaxForwards))
                .filter(|h| h.name.as_ref() != b"X-Added")
                .map(|h| (h.name, h.value))
                .collect()
        };
        prop_assert_eq!(untouched(&msg), untouched(&out));
        prop_assert_eq!(out.vias().unwrap().len(), msg.vias().unwrap().len() + 1);
        prop_assert_eq!(out.body(), msg.body());
        let back = out.edit().remove_top_via().remove_header(b"X-Added").finish().unwrap();
        prop_assert_eq!(untouched(&back), untouched(&msg));
    }
}
