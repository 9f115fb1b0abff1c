//! Arbitrary bytes into the SDP parser, the plan reader, the rewrite primitives and the
//! offer/answer anchor.
//!
//! Besides "no panic", it checks the editor's promises: an unedited parse prints back the
//! input byte for byte, and anchoring yields a body that parses again with the ports written.
#![no_main]

use callmask::core::ports::PortPair;
use callmask::core::sdp::{anchor, Direction, LocalAnchor, MediaPlan, OriginState, Scope, Sdp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = Sdp::parse_slice(data) else {
        return;
    };
    assert_eq!(sdp.to_bytes().as_ref(), data, "parse/print identity");
    let plan = MediaPlan::from_sdp(&sdp);
    assert_eq!(plan.streams.len(), sdp.media_count());

    // Rewrite primitives on every scope.
    let mut edited = sdp.clone();
    let addr = "203.0.113.1".parse().expect("literal IP");
    let _ = edited.set_connection(Scope::Session, addr);
    for i in 0..edited.media_count() {
        let _ = edited.set_media_port(i, 30000);
        let _ = edited.set_direction(Scope::Media(i), Direction::SendOnly);
        let _ = edited.remove_attribute(Scope::Media(i), "rtcp");
    }
    assert!(
        Sdp::parse(edited.to_bytes()).is_ok(),
        "edits keep the body parseable"
    );

    // Anchor twice through one origin state: the same input must give the same version.
    let pairs: Vec<_> = (0..sdp.media_count())
        .map(|i| PortPair::from_rtp(30000u16.wrapping_add(2 * (i as u16 % 1000))))
        .collect();
    let local = LocalAnchor {
        addr,
        ports: &pairs,
    };
    let mut origin = OriginState::new();
    let (Ok(a), Ok(b)) = (
        anchor(sdp.clone(), &local, &mut origin),
        anchor(sdp, &local, &mut origin),
    ) else {
        panic!("anchor refused a parsed SDP");
    };
    assert_eq!(a.version, b.version);
    assert_eq!(a.body, b.body);
    let again = Sdp::parse(a.body).expect("anchored body parses");
    for (m, s) in again.media().iter().zip(&a.plan.streams) {
        if s.port != 0 {
            assert_eq!(m.media_line().port % 2, 0);
        }
    }
});
