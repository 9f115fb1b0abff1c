//! RTCP: demultiplexing from RTP on a shared port, and just enough compound-packet parsing
//! (RFC 3550 §6.4 SR/RR) to validate, relay and count.
//!
//! callmask relays RTCP unchanged (SSRCs are not rewritten), so no report is re-encoded here.

use super::{DropReason, Ssrc};

/// RTCP SR packet type (RFC 3550 §12.1).
pub const PT_SR: u8 = 200;
/// RTCP RR packet type.
pub const PT_RR: u8 = 201;
/// RTCP SDES packet type.
pub const PT_SDES: u8 = 202;
/// RTCP BYE packet type.
pub const PT_BYE: u8 = 203;

/// What a datagram on an RTP port is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    /// RTP (or garbage; `RtpPacket::parse` decides).
    Rtp,
    /// RTCP.
    Rtcp,
}

/// RFC 5761 §4: RTCP packet types 192..=223 occupy the second octet where RTP has M+PT; with
/// RTP payload types kept out of 64..=95, those values identify RTCP.
pub fn classify(buf: &[u8]) -> PacketKind {
    match buf.get(1) {
        Some(0xc0..=0xdf) => PacketKind::Rtcp,
        _ => PacketKind::Rtp,
    }
}

/// One packet inside a compound RTCP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcpPacket<'a> {
    /// Packet type (200 SR, 201 RR, …).
    pub packet_type: u8,
    /// The 5-bit count field (report blocks for SR/RR, sources for SDES/BYE).
    pub count: u8,
    /// The packet's bytes after the 4-byte common header (padding included).
    pub body: &'a [u8],
}

impl<'a> RtcpPacket<'a> {
    /// Sender SSRC for SR/RR (first word of the body).
    pub fn sender_ssrc(&self) -> Option<Ssrc> {
        match self.packet_type {
            PT_SR | PT_RR => self.body.get(..4).map(|b| Ssrc::new(be32(b))),
            _ => None,
        }
    }

    /// The sender-info block of an SR.
    pub fn sender_info(&self) -> Option<SenderInfo> {
        if self.packet_type != PT_SR {
            return None;
        }
        let b = self.body.get(4..24)?;
        Some(SenderInfo {
            ntp: (u64::from(be32(&b[0..4])) << 32) | u64::from(be32(&b[4..8])),
            rtp_timestamp: be32(&b[8..12]),
            packet_count: be32(&b[12..16]),
            octet_count: be32(&b[16..20]),
        })
    }

    /// The report blocks of an SR or RR (as many as fit, at most `count`).
    pub fn report_blocks(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        let start = match self.packet_type {
            PT_SR => 24,
            PT_RR => 4,
            _ => self.body.len(),
        };
        let blocks = self.body.get(start..).unwrap_or(&[]);
        blocks
            .chunks_exact(24)
            .take(usize::from(self.count))
            .map(ReportBlock::parse)
    }
}

/// SR sender info (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp (32.32 fixed point).
    pub ntp: u64,
    /// RTP timestamp matching `ntp`.
    pub rtp_timestamp: u32,
    /// Sender's packet count.
    pub packet_count: u32,
    /// Sender's octet count.
    pub octet_count: u32,
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportBlock {
    /// Source reported on.
    pub ssrc: Ssrc,
    /// Fraction lost since last report, /256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, timestamp units.
    pub jitter: u32,
    /// Last SR timestamp (middle 32 bits of NTP).
    pub lsr: u32,
    /// Delay since last SR, 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> Self {
        let lost = u32::from_be_bytes([0, b[5], b[6], b[7]]);
        // Sign-extend the 24-bit field.
        let cumulative_lost = ((lost << 8) as i32) >> 8;
        ReportBlock {
            ssrc: Ssrc::new(be32(&b[0..4])),
            fraction_lost: b[4],
            cumulative_lost,
            highest_seq: be32(&b[8..12]),
            jitter: be32(&b[12..16]),
            lsr: be32(&b[16..20]),
            dlsr: be32(&b[20..24]),
        }
    }
}

/// A validated compound RTCP datagram: every packet has version 2 and a length that stays
/// inside the datagram, and the packets tile it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcpCompound<'a> {
    buf: &'a [u8],
    /// Number of packets.
    pub packets: usize,
    /// Number of SR packets.
    pub sender_reports: usize,
    /// Number of RR packets.
    pub receiver_reports: usize,
}

impl<'a> RtcpCompound<'a> {
    /// Validates a compound packet. Reduced-size RTCP (RFC 5506) is accepted: the first
    /// packet need not be an SR/RR.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DropReason> {
        if buf.len() < 4 {
            return Err(DropReason::TooShort);
        }
        let mut c = RtcpCompound {
            buf,
            packets: 0,
            sender_reports: 0,
            receiver_reports: 0,
        };
        let mut off = 0;
        while off < buf.len() {
            let h = buf.get(off..off + 4).ok_or(DropReason::RtcpBadLength)?;
            if h[0] >> 6 != 2 {
                return Err(DropReason::BadVersion);
            }
            let len = 4 * (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1);
            if off + len > buf.len() {
                return Err(DropReason::RtcpBadLength);
            }
            c.packets += 1;
            match h[1] {
                PT_SR => c.sender_reports += 1,
                PT_RR => c.receiver_reports += 1,
                _ => {}
            }
            off += len;
        }
        Ok(c)
    }

    /// Validates an SRTCP datagram (RFC 3711 §3.4) relayed without its keys: only the first
    /// packet's header and sender SSRC are plaintext, so only they are checked; the rest
    /// (later packets, the E-flag/index word, the tag) is opaque and [`Self::iter`] yields
    /// nothing (reports inside are ciphertext, never statistics).
    pub fn parse_opaque(buf: &'a [u8]) -> Result<Self, DropReason> {
        // Header + SSRC, then the 4-byte E-flag/index word (the tag is optional in §3.4).
        if buf.len() < 12 {
            return Err(DropReason::TooShort);
        }
        if buf[0] >> 6 != 2 {
            return Err(DropReason::BadVersion);
        }
        let len = 4 * (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1);
        if len + 4 > buf.len() {
            return Err(DropReason::RtcpBadLength);
        }
        Ok(RtcpCompound {
            buf: &buf[..0],
            packets: 1,
            sender_reports: 0,
            receiver_reports: 0,
        })
    }

    /// The packets in order.
    pub fn iter(&self) -> impl Iterator<Item = RtcpPacket<'a>> + 'a {
        let buf = self.buf;
        let mut off = 0;
        std::iter::from_fn(move || {
            let h = buf.get(off..off + 4)?;
            let len = 4 * (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1);
            let body = buf.get(off + 4..off + len)?;
            off += len;
            Some(RtcpPacket {
                packet_type: h[1],
                count: h[0] & 0x1f,
                body,
            })
        })
    }

    /// SSRC of the first SR/RR's sender.
    pub fn sender_ssrc(&self) -> Option<Ssrc> {
        self.iter().find_map(|p| p.sender_ssrc())
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sr_with_one_block() -> Vec<u8> {
        let mut b = vec![0x81, PT_SR, 0x00, 0x0c]; // RC=1, length 12 words => 52 bytes
        b.extend_from_slice(&0x1111_1111u32.to_be_bytes()); // sender SSRC
        b.extend_from_slice(&[0, 0, 0, 1, 0x80, 0, 0, 0]); // NTP
        b.extend_from_slice(&160u32.to_be_bytes());
        b.extend_from_slice(&50u32.to_be_bytes());
        b.extend_from_slice(&8000u32.to_be_bytes());
        b.extend_from_slice(&0x2222_2222u32.to_be_bytes()); // block ssrc
        b.extend_from_slice(&[0x40, 0xff, 0xff, 0xfe]); // 25% lost, cumulative -2
        b.extend_from_slice(&0x0001_0005u32.to_be_bytes());
        b.extend_from_slice(&12u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b
    }

    #[test]
    fn rfc5761_demux() {
        assert_eq!(classify(&[0x80, 0]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, 0x80 | 101]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, PT_SR]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x80, PT_RR]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x80, 223]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x80, 224]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80]), PacketKind::Rtp);
    }

    #[test]
    fn parses_sr_and_report_block() {
        let mut b = sr_with_one_block();
        b.extend_from_slice(&[0x81, PT_SDES, 0x00, 0x01, 0, 0, 0, 1]); // minimal SDES
        let c = RtcpCompound::parse(&b).unwrap();
        assert_eq!((c.packets, c.sender_reports, c.receiver_reports), (2, 1, 0));
        assert_eq!(c.sender_ssrc(), Some(Ssrc::new(0x1111_1111)));
        let sr = c.iter().next().unwrap();
        let info = sr.sender_info().unwrap();
        assert_eq!(
            (info.rtp_timestamp, info.packet_count, info.octet_count),
            (160, 50, 8000)
        );
        assert_eq!(info.ntp, 0x0000_0001_8000_0000);
        let rb: Vec<_> = sr.report_blocks().collect();
        assert_eq!(rb.len(), 1);
        assert_eq!(rb[0].ssrc, Ssrc::new(0x2222_2222));
        assert_eq!(rb[0].fraction_lost, 0x40);
        assert_eq!(rb[0].cumulative_lost, -2);
        assert_eq!(rb[0].highest_seq, 0x0001_0005);
        assert_eq!(rb[0].jitter, 12);
    }

    /// RFC 3711 §3.4: an SRTCP datagram's encrypted tail does not tile as RTCP; relayed
    /// without keys it is checked by its plaintext header only and yields no reports.
    #[test]
    fn srtcp_is_opaque() {
        let mut b = sr_with_one_block();
        b.extend_from_slice(&[0x3a, 0x91, 0x7f, 0x02]); // "encrypted" trailing bytes
        b.extend_from_slice(&[0x80, 0, 0, 1]); // E flag + index
        b.extend_from_slice(&[0xaa; 10]); // auth tag
        assert!(RtcpCompound::parse(&b).is_err());
        let c = RtcpCompound::parse_opaque(&b).unwrap();
        assert_eq!((c.packets, c.sender_reports, c.iter().count()), (1, 0, 0));
        assert_eq!(
            RtcpCompound::parse_opaque(&b[..8]),
            Err(DropReason::TooShort)
        );
        // The first packet's length must leave room for the index word.
        assert_eq!(
            RtcpCompound::parse_opaque(&b[..52]),
            Err(DropReason::RtcpBadLength)
        );
        b[0] = 0x41;
        assert_eq!(RtcpCompound::parse_opaque(&b), Err(DropReason::BadVersion));
    }

    #[test]
    fn bad_lengths_are_drops() {
        let mut b = sr_with_one_block();
        b[3] = 0x20;
        assert_eq!(RtcpCompound::parse(&b), Err(DropReason::RtcpBadLength));
        let mut b = sr_with_one_block();
        b.push(0);
        assert_eq!(RtcpCompound::parse(&b), Err(DropReason::RtcpBadLength));
        assert_eq!(RtcpCompound::parse(&[0x80, 201]), Err(DropReason::TooShort));
        assert_eq!(
            RtcpCompound::parse(&[0x40, 201, 0, 0]),
            Err(DropReason::BadVersion)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(c) = RtcpCompound::parse(&b) {
                prop_assert_eq!(c.iter().count(), c.packets);
                for p in c.iter() {
                    let _ = p.sender_info();
                    let _ = p.report_blocks().count();
                }
            }
        }
    }
}
