//! Arbitrary bytes into the RTP header view, the in-place writer, the RTCP demultiplexer and
//! compound parser, and the receive statistics.
//!
//! Checks: a parsed packet's header, payload and padding tile the datagram; a write/read of
//! the rewritten fields round-trips and leaves the payload untouched.
#![no_main]

use std::time::{Duration, Instant};

use callmask::core::relay::{
    classify, ClockRate, PacketKind, PayloadType, ReceiveStats, RtcpCompound, RtpHeaderMut,
    RtpPacket, RtpTimestamp, SeqNo, Ssrc,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match classify(data) {
        PacketKind::Rtcp => {
            if let Ok(c) = RtcpCompound::parse(data) {
                assert_eq!(c.iter().count(), c.packets);
                for p in c.iter() {
                    let _ = p.sender_info();
                    let _ = p.report_blocks().count();
                }
            }
        }
        PacketKind::Rtp => {}
    }
    let Ok(p) = RtpPacket::parse(data) else {
        return;
    };
    assert_eq!(
        p.header_len() + p.payload().len() + p.padding_len(),
        data.len()
    );
    let _ = p.csrcs().count();
    let _ = p.extension();

    // Stats over the datagram re-read as a stream of 12-byte headers.
    #[allow(clippy::disallowed_methods)] // fuzz harness, not core code
    let t0 = Instant::now();
    let mut stats = ReceiveStats::new();
    for (i, chunk) in data.chunks(12).enumerate() {
        let mut b = chunk.to_vec();
        b.resize(12, 0);
        b[0] = 0x80;
        if let Ok(q) = RtpPacket::parse(&b) {
            stats.on_packet(
                &q,
                t0 + Duration::from_millis(i as u64 * 20),
                ClockRate::NARROWBAND,
            );
        }
    }
    let _ = (stats.lost(), stats.take_fraction_lost(), stats.jitter());

    let payload = p.payload().to_vec();
    let mut buf = data.to_vec();
    let pt = PayloadType::from_low_bits(data[1].wrapping_add(1));
    RtpHeaderMut::new(&mut buf)
        .expect("parsed packets are writable")
        .set_ssrc(Ssrc::new(0xdead_beef))
        .set_seq(SeqNo::new(7))
        .set_timestamp(RtpTimestamp::new(160))
        .set_payload_type(pt)
        .set_marker(true);
    let q = RtpPacket::parse(&buf).expect("header writes keep the packet valid");
    assert_eq!(q.ssrc(), Ssrc::new(0xdead_beef));
    assert_eq!(q.seq(), SeqNo::new(7));
    assert_eq!(q.timestamp(), RtpTimestamp::new(160));
    assert_eq!(q.payload_type(), pt);
    assert!(q.marker());
    assert_eq!(q.payload(), payload.as_slice());
});
