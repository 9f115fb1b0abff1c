//! Fuzz the SIP parser, accessors, reject builder and editor: nothing may panic, and a parsed
//! message must print back to the same bytes.
#![no_main]

use bytes::Bytes;
use callmask::core::sip::{
    parse_datagram, parse_stream, reject_unparsed, Frame, Limits, MaxForwards,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = parse_stream(data, &limits);
    let raw = Bytes::copy_from_slice(data);
    match parse_datagram(raw.clone(), &limits) {
        Ok(Frame::Message(m)) => {
            // CR/LF before a message are skipped (RFC 3261 §7.5); the message is the rest.
            let lead = data
                .iter()
                .take_while(|&&c| c == b'\r' || c == b'\n')
                .count();
            assert!(raw[lead..].starts_with(m.as_bytes()));
            let _ = (
                m.vias(),
                m.contacts(),
                m.routes(),
                m.record_routes(),
                m.expires(),
            );
            let _ = (m.require(), m.supported(), m.content_type());
            let same = m.edit().finish().expect("unedited message always prints");
            assert_eq!(same.as_bytes(), m.as_bytes());
            let _ = m
                .edit()
                .prepend_via(b"SIP/2.0/UDP fuzz.invalid;branch=z9hG4bKf")
                .remove_top_via()
                .pop_route()
                .set_max_forwards(MaxForwards(1))
                .replace_contact_uri(b"sip:x@fuzz.invalid")
                .set_body(Bytes::from_static(b"x"))
                .finish();
        }
        Ok(_) => {}
        Err(e) => {
            let _ = reject_unparsed(&raw, &e);
        }
    }
});
