//! Zero-copy RTP header view and in-place header writer (RFC 3550 §5.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! |                           timestamp                           |
//! |           synchronization source (SSRC) identifier            |
//! |            contributing source (CSRC) identifiers (CC × 32)   |
//! | [extension: profile(16) length-in-words(16) data...]          |
//! | payload ...                     [padding ... | pad count (8)] |
//! ```
//!
//! Written by hand rather than with `rtp-rs`: the view is ~100 lines, returns our own
//! [`DropReason`] per failure, and the in-place writer needs the same offsets anyway.

use super::{DropReason, PayloadType, RtpTimestamp, SeqNo, Ssrc};

/// Fixed header length.
pub const RTP_HEADER_LEN: usize = 12;

/// A validated RTP packet borrowed from a datagram. Construction checks every length, so the
/// accessors never fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    payload_start: usize,
    payload_end: usize,
    ext_start: Option<usize>,
}

impl<'a> RtpPacket<'a> {
    /// Validates `buf` as an RTP packet: length, version 2, CSRC list, header extension and
    /// padding all inside the datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DropReason> {
        if buf.len() < RTP_HEADER_LEN {
            return Err(DropReason::TooShort);
        }
        if buf[0] >> 6 != 2 {
            return Err(DropReason::BadVersion);
        }
        let cc = usize::from(buf[0] & 0x0f);
        let mut off = RTP_HEADER_LEN + 4 * cc;
        if off > buf.len() {
            return Err(DropReason::CsrcOverrun);
        }
        let mut ext_start = None;
        if buf[0] & 0x10 != 0 {
            if off + 4 > buf.len() {
                return Err(DropReason::ExtensionOverrun);
            }
            let words = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
            ext_start = Some(off);
            off += 4 + 4 * words;
            if off > buf.len() {
                return Err(DropReason::ExtensionOverrun);
            }
        }
        let mut end = buf.len();
        if buf[0] & 0x20 != 0 {
            let pad = usize::from(buf[buf.len() - 1]);
            if pad == 0 || off + pad > buf.len() {
                return Err(DropReason::BadPadding);
            }
            end -= pad;
        }
        Ok(RtpPacket {
            buf,
            payload_start: off,
            payload_end: end,
            ext_start,
        })
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Version (always 2 after `parse`).
    pub fn version(&self) -> u8 {
        self.buf[0] >> 6
    }

    /// Padding bit.
    pub fn has_padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }

    /// Extension bit.
    pub fn has_extension(&self) -> bool {
        self.buf[0] & 0x10 != 0
    }

    /// CSRC count.
    pub fn csrc_count(&self) -> u8 {
        self.buf[0] & 0x0f
    }

    /// Marker bit.
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    /// Payload type.
    pub fn payload_type(&self) -> PayloadType {
        PayloadType::from_low_bits(self.buf[1])
    }

    /// Sequence number.
    pub fn seq(&self) -> SeqNo {
        SeqNo::new(u16::from_be_bytes([self.buf[2], self.buf[3]]))
    }

    /// Timestamp.
    pub fn timestamp(&self) -> RtpTimestamp {
        RtpTimestamp::new(be32(&self.buf[4..8]))
    }

    /// SSRC.
    pub fn ssrc(&self) -> Ssrc {
        Ssrc::new(be32(&self.buf[8..12]))
    }

    /// The CSRC list.
    pub fn csrcs(&self) -> impl Iterator<Item = Ssrc> + 'a {
        let n = usize::from(self.csrc_count());
        self.buf[RTP_HEADER_LEN..RTP_HEADER_LEN + 4 * n]
            .chunks_exact(4)
            .map(|c| Ssrc::new(be32(c)))
    }

    /// Header extension: (profile-defined 16 bits, data without the 4-byte extension header).
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        let s = self.ext_start?;
        let profile = u16::from_be_bytes([self.buf[s], self.buf[s + 1]]);
        Some((profile, &self.buf[s + 4..self.payload_start]))
    }

    /// Header length including CSRCs and extension (payload offset).
    pub fn header_len(&self) -> usize {
        self.payload_start
    }

    /// The payload, without padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.payload_start..self.payload_end]
    }

    /// Padding length (0 without the P bit).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// In-place writer for the fixed-header fields callmask rewrites (SSRC, seq, timestamp, PT,
/// marker). Only checks what it needs: 12 bytes and version 2.
#[derive(Debug)]
pub struct RtpHeaderMut<'a> {
    buf: &'a mut [u8],
}

impl<'a> RtpHeaderMut<'a> {
    /// Wraps a datagram for rewriting.
    pub fn new(buf: &'a mut [u8]) -> Result<Self, DropReason> {
        if buf.len() < RTP_HEADER_LEN {
            return Err(DropReason::TooShort);
        }
        if buf[0] >> 6 != 2 {
            return Err(DropReason::BadVersion);
        }
        Ok(Self { buf })
    }

    /// Sets the padding bit (a rewritten payload that drops the padding clears it).
    pub fn set_padding(&mut self, p: bool) -> &mut Self {
        self.buf[0] = (self.buf[0] & !0x20) | if p { 0x20 } else { 0 };
        self
    }

    /// Sets the marker bit.
    pub fn set_marker(&mut self, m: bool) -> &mut Self {
        self.buf[1] = (self.buf[1] & 0x7f) | if m { 0x80 } else { 0 };
        self
    }

    /// Sets the payload type (marker bit kept).
    pub fn set_payload_type(&mut self, pt: PayloadType) -> &mut Self {
        self.buf[1] = (self.buf[1] & 0x80) | pt.get();
        self
    }

    /// Sets the sequence number.
    pub fn set_seq(&mut self, seq: SeqNo) -> &mut Self {
        self.buf[2..4].copy_from_slice(&seq.get().to_be_bytes());
        self
    }

    /// Sets the timestamp.
    pub fn set_timestamp(&mut self, ts: RtpTimestamp) -> &mut Self {
        self.buf[4..8].copy_from_slice(&ts.get().to_be_bytes());
        self
    }

    /// Sets the SSRC.
    pub fn set_ssrc(&mut self, ssrc: Ssrc) -> &mut Self {
        self.buf[8..12].copy_from_slice(&ssrc.get().to_be_bytes());
        self
    }
}

/// The fixed header of an RTP packet callmask originates (RFC 3550 §5.1: version 2, no
/// padding, extension or CSRCs): the recorder's RTP fork, the demo's phones, and every test
/// that needs a packet build theirs with it instead of writing header bytes by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type (7 bits; a larger value is masked).
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
}

impl RtpHeader {
    /// The header's 12 bytes.
    pub fn to_bytes(&self) -> [u8; RTP_HEADER_LEN] {
        let mut h = [0u8; RTP_HEADER_LEN];
        h[0] = 0x80;
        h[1] = (self.pt & 0x7f) | if self.marker { 0x80 } else { 0 };
        h[2..4].copy_from_slice(&self.seq.to_be_bytes());
        h[4..8].copy_from_slice(&self.ts.to_be_bytes());
        h[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        h
    }

    /// A whole packet: this header, then `payload`.
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
        v.extend_from_slice(&self.to_bytes());
        v.extend_from_slice(payload);
        v
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Builds a minimal RTP packet for tests.
    pub(crate) fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        RtpHeader {
            pt,
            marker: false,
            seq,
            ts,
            ssrc,
        }
        .packet(payload)
    }

    #[test]
    fn a_written_header_parses_back() {
        let h = RtpHeader {
            pt: 101,
            marker: true,
            seq: 0xfffe,
            ts: 0xdead_beef,
            ssrc: 0x0102_0304,
        };
        let bytes = h.packet(&[1, 2, 3]);
        let p = RtpPacket::parse(&bytes).expect("parses");
        assert_eq!(p.version(), 2);
        assert!(p.marker());
        assert_eq!(p.payload_type().get(), 101);
        assert_eq!(p.seq().get(), 0xfffe);
        assert_eq!(p.timestamp().get(), 0xdead_beef);
        assert_eq!(p.ssrc().get(), 0x0102_0304);
        assert_eq!(p.payload(), &[1, 2, 3]);
    }

    #[test]
    fn parses_fixed_header() {
        let b = packet(0, 0x1234, 0xdead_beef, 0x0102_0304, &[0xff; 160]);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.version(), 2);
        assert_eq!(p.payload_type(), PayloadType::PCMU);
        assert_eq!(p.seq(), SeqNo::new(0x1234));
        assert_eq!(p.timestamp(), RtpTimestamp::new(0xdead_beef));
        assert_eq!(p.ssrc(), Ssrc::new(0x0102_0304));
        assert!(!p.marker() && !p.has_padding() && !p.has_extension());
        assert_eq!(p.payload().len(), 160);
    }

    #[test]
    fn csrc_extension_and_padding() {
        // V=2 P=1 X=1 CC=1, M=1 PT=101
        let mut b = vec![0xb1, 0x80 | 101, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]); // CSRC
        b.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 1, 2, 3, 4]); // ext, 1 word
        b.extend_from_slice(&[9, 9, 9, 9]); // payload
        b.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let p = RtpPacket::parse(&b).unwrap();
        assert!(p.marker());
        assert_eq!(p.payload_type().get(), 101);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![Ssrc::new(0xaabb_ccdd)]);
        assert_eq!(p.extension(), Some((0xbede, &[1u8, 2, 3, 4][..])));
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload(), &[9, 9, 9, 9]);
        assert_eq!(p.padding_len(), 3);
    }

    #[test]
    fn malformed_packets_are_counted_drops() {
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(DropReason::TooShort));
        let mut b = packet(0, 1, 1, 1, &[]);
        b[0] = 0x40;
        assert_eq!(RtpPacket::parse(&b), Err(DropReason::BadVersion));
        b[0] = 0x82; // CC=2, no CSRCs present
        assert_eq!(RtpPacket::parse(&b), Err(DropReason::CsrcOverrun));
        b[0] = 0x90; // X=1, no extension header
        assert_eq!(RtpPacket::parse(&b), Err(DropReason::ExtensionOverrun));
        b.extend_from_slice(&[0, 0, 0, 5]); // extension claims 5 words
        assert_eq!(RtpPacket::parse(&b), Err(DropReason::ExtensionOverrun));
        let mut b = packet(0, 1, 1, 1, &[1, 2, 0]);
        b[0] = 0xa0; // P=1, pad count 0
        assert_eq!(RtpPacket::parse(&b), Err(DropReason::BadPadding));
        let last = b.len() - 1;
        b[last] = 4; // more padding than payload
        assert_eq!(RtpPacket::parse(&b), Err(DropReason::BadPadding));
    }

    #[test]
    fn writer_rewrites_in_place() {
        let mut b = packet(0, 1, 2, 3, &[7; 4]);
        b[1] |= 0x80;
        RtpHeaderMut::new(&mut b)
            .unwrap()
            .set_ssrc(Ssrc::new(0xcafe_babe))
            .set_seq(SeqNo::new(65535))
            .set_timestamp(RtpTimestamp::new(160))
            .set_payload_type(PayloadType::PCMA);
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.ssrc(), Ssrc::new(0xcafe_babe));
        assert_eq!(p.seq(), SeqNo::new(65535));
        assert_eq!(p.timestamp(), RtpTimestamp::new(160));
        assert_eq!(p.payload_type(), PayloadType::PCMA);
        assert!(p.marker(), "PT write keeps the marker");
        RtpHeaderMut::new(&mut b).unwrap().set_marker(false);
        assert!(!RtpPacket::parse(&b).unwrap().marker());
        assert_eq!(&b[12..], &[7; 4]);
        assert_eq!(
            RtpHeaderMut::new(&mut [0x80; 4]).err(),
            Some(DropReason::TooShort)
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(p) = RtpPacket::parse(&b) {
                prop_assert!(p.header_len() + p.payload().len() + p.padding_len() == b.len());
                let _ = p.csrcs().count();
                let _ = p.extension();
            }
        }
    }
}
