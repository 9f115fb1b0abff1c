//! RTP/RTCP relay core: the per-packet decisions of the media anchor, without sockets or clocks.
//!
//! - [`rtp`]: zero-copy RTP header view ([`RtpPacket`]) and in-place writer ([`RtpHeaderMut`]).
//! - [`rtcp`]: RTP vs RTCP demultiplexing on a shared port (RFC 5761 §4) and just enough
//!   SR/RR parsing to relay and count.
//! - [`stats`]: per-leg receive statistics (RFC 3550 A.1, A.3, A.8), plain integers.
//! - [`latch`]: symmetric RTP latching with hijack protection.
//! - [`leg`]: [`LegReceiver`], the above combined into one per-datagram call with drop counters.
//!
//! Every rejection is a [`DropReason`], a closed enum whose [`DropReason::as_label`] is the
//! metric label: a bad packet is counted and dropped, never a panic.
//!
//! The RTP worker (in `io`) drives one leg like this; time is always a parameter:
//!
//! ```text
//! match rtcp::classify(buf) {
//!     PacketKind::Rtp => {
//!         let pkt = RtpPacket::parse(buf)?;            // Err(reason) -> count + drop
//!         latch.on_packet(src, now)?;                  // Err(UnexpectedSource) -> count + drop
//!         stats.on_packet(&pkt, now, clock_rate);
//!         // forward to the other leg's latch.send_target()
//!     }
//!     PacketKind::Rtcp => { RtcpCompound::parse(buf)?; /* relay */ }
//! }
//! ```

pub mod latch;
pub mod leg;
pub mod rtcp;
pub mod rtp;
pub mod stats;

use std::fmt;

pub use latch::{Latch, LatchConfig, LatchEvent, LatchMode};
pub use leg::{DropCounts, LegReceiver, LocalPort, Received};
pub use rtcp::{classify, PacketKind, ReportBlock, RtcpCompound, RtcpPacket, SenderInfo};
pub use rtp::{RtpHeaderMut, RtpPacket};
pub use stats::{ClockRate, ReceiveStats, SeqClass};

/// RTP synchronization source identifier (RFC 3550 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ssrc(u32);

impl Ssrc {
    /// Wraps a raw SSRC value; every `u32` is a valid SSRC.
    pub const fn new(v: u32) -> Self {
        Self(v)
    }

    /// The raw value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl From<u32> for Ssrc {
    fn from(v: u32) -> Self {
        Self(v)
    }
}

impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// 16-bit RTP sequence number. Ordering is wrap-aware (RFC 1982 serial arithmetic), so there is
/// deliberately no `Ord`: use [`SeqNo::is_newer_than`] or [`SeqNo::diff`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeqNo(u16);

impl SeqNo {
    /// Wraps a raw sequence number.
    pub const fn new(v: u16) -> Self {
        Self(v)
    }

    /// The raw value.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// Signed distance `self - other` in the range `-32768..=32767`, taking wrap-around into
    /// account: `SeqNo(1).diff(SeqNo(65535)) == 2`.
    pub const fn diff(self, other: SeqNo) -> i16 {
        self.0.wrapping_sub(other.0) as i16
    }

    /// True if `self` comes after `other` in wrap-aware order (half the space ahead).
    pub const fn is_newer_than(self, other: SeqNo) -> bool {
        self.diff(other) > 0
    }

    /// The next sequence number (wrapping).
    pub const fn next(self) -> SeqNo {
        SeqNo(self.0.wrapping_add(1))
    }

    /// Adds a (possibly negative) offset, wrapping.
    pub const fn wrapping_add(self, delta: u16) -> SeqNo {
        SeqNo(self.0.wrapping_add(delta))
    }
}

impl From<u16> for SeqNo {
    fn from(v: u16) -> Self {
        Self(v)
    }
}

/// Extended (32-bit) sequence number: cycles in the high 16 bits, `SeqNo` in the low 16 bits
/// (RFC 3550 A.1 `cycles + max_seq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtendedSeqNo(u32);

impl ExtendedSeqNo {
    /// Builds the extended number from the wrap count and the 16-bit sequence number.
    pub const fn new(cycles: u16, seq: SeqNo) -> Self {
        Self(((cycles as u32) << 16) | seq.0 as u32)
    }

    /// The raw value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The low 16 bits.
    pub const fn seq(self) -> SeqNo {
        SeqNo(self.0 as u16)
    }
}

/// RTP payload type: 7 bits (0..=127). Constructed via `TryFrom<u8>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PayloadType(u8);

impl PayloadType {
    /// PCMU (G.711 µ-law), static PT 0 (RFC 3551).
    pub const PCMU: PayloadType = PayloadType(0);
    /// PCMA (G.711 A-law), static PT 8 (RFC 3551).
    pub const PCMA: PayloadType = PayloadType(8);

    /// Masks a raw byte's low 7 bits (for header fields, where the top bit is the marker).
    pub const fn from_low_bits(v: u8) -> Self {
        Self(v & 0x7f)
    }

    /// The raw value, always `<= 127`.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// Error for a payload type above 127.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("payload type {0} is out of range: RTP payload types are 7 bits (0..=127)")]
pub struct PayloadTypeOutOfRange(pub u8);

impl TryFrom<u8> for PayloadType {
    type Error = PayloadTypeOutOfRange;

    fn try_from(v: u8) -> Result<Self, Self::Error> {
        if v <= 0x7f {
            Ok(Self(v))
        } else {
            Err(PayloadTypeOutOfRange(v))
        }
    }
}

impl fmt::Display for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// RTP media timestamp (RFC 3550 §5.1), in units of the payload's clock rate; wraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RtpTimestamp(u32);

impl RtpTimestamp {
    /// Wraps a raw timestamp.
    pub const fn new(v: u32) -> Self {
        Self(v)
    }

    /// The raw value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Signed, wrap-aware distance `self - other` in clock ticks.
    pub const fn diff(self, other: RtpTimestamp) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// Adds ticks, wrapping.
    pub const fn wrapping_add(self, ticks: u32) -> RtpTimestamp {
        RtpTimestamp(self.0.wrapping_add(ticks))
    }
}

impl From<u32> for RtpTimestamp {
    fn from(v: u32) -> Self {
        Self(v)
    }
}

/// Why a packet was dropped. Closed set: each variant is one metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than the fixed 12-byte RTP header (or 8-byte RTCP header).
    TooShort,
    /// Version field is not 2.
    BadVersion,
    /// The CSRC list runs past the end of the packet.
    CsrcOverrun,
    /// The header extension runs past the end of the packet.
    ExtensionOverrun,
    /// The padding count is zero or larger than the payload.
    BadPadding,
    /// An RTCP packet's length field runs past the datagram (or the compound is misaligned).
    RtcpBadLength,
    /// Source address is neither the latched nor (while learning) an acceptable one.
    UnexpectedSource,
    /// A would-be latch from outside the signalled network and the side's allow-list.
    OutOfScope,
}

impl DropReason {
    /// Every variant, for pre-registering metric label values.
    pub const ALL: [DropReason; 8] = [
        DropReason::TooShort,
        DropReason::BadVersion,
        DropReason::CsrcOverrun,
        DropReason::ExtensionOverrun,
        DropReason::BadPadding,
        DropReason::RtcpBadLength,
        DropReason::UnexpectedSource,
        DropReason::OutOfScope,
    ];

    /// Position in [`DropReason::ALL`] (declaration order), for counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// True for packets that are not valid RTP/RTCP (the metrics catalogue's `malformed`);
    /// false for valid packets refused by policy (`unexpected_source`).
    pub const fn is_malformed(self) -> bool {
        !matches!(self, DropReason::UnexpectedSource | DropReason::OutOfScope)
    }

    /// The metric label (`snake_case`, stable).
    pub const fn as_label(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::BadVersion => "bad_version",
            DropReason::CsrcOverrun => "csrc_overrun",
            DropReason::ExtensionOverrun => "extension_overrun",
            DropReason::BadPadding => "bad_padding",
            DropReason::RtcpBadLength => "rtcp_bad_length",
            DropReason::UnexpectedSource => "unexpected_source",
            DropReason::OutOfScope => "latch_out_of_scope",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_diff_wraps() {
        assert_eq!(SeqNo::new(1).diff(SeqNo::new(65535)), 2);
        assert_eq!(SeqNo::new(65535).diff(SeqNo::new(1)), -2);
        assert!(SeqNo::new(0).is_newer_than(SeqNo::new(65000)));
        assert!(!SeqNo::new(65000).is_newer_than(SeqNo::new(0)));
        assert_eq!(SeqNo::new(65535).next(), SeqNo::new(0));
    }

    #[test]
    fn extended_seq_layout() {
        let e = ExtendedSeqNo::new(3, SeqNo::new(7));
        assert_eq!(e.get(), 0x0003_0007);
        assert_eq!(e.seq(), SeqNo::new(7));
    }

    #[test]
    fn payload_type_is_seven_bits() {
        assert!(PayloadType::try_from(127).is_ok());
        assert_eq!(PayloadType::try_from(128), Err(PayloadTypeOutOfRange(128)));
        assert_eq!(PayloadType::from_low_bits(0xe0).get(), 0x60);
    }

    #[test]
    fn labels_are_unique() {
        let mut labels: Vec<_> = DropReason::ALL.iter().map(|r| r.as_label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn timestamp_diff_wraps() {
        assert_eq!(RtpTimestamp::new(10).diff(RtpTimestamp::new(u32::MAX)), 11);
    }
}
