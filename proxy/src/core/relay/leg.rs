//! One leg's receive side: the per-datagram decision in one call.
//!
//! [`LegReceiver::on_datagram`] classifies (RFC 5761 demux on the RTP port), validates, checks
//! the source against the right [`Latch`], updates [`ReceiveStats`] and counts drops by
//! [`DropReason`], all in plain integers owned by the call's worker: no locks, no allocation.
//! The worker then forwards the returned packet toward the other leg's
//! [`LegReceiver::rtp_target`] / [`LegReceiver::rtcp_target`].

use std::net::SocketAddr;
use std::time::Instant;

use super::latch::{Latch, LatchConfig, LatchEvent};
use super::rtcp::{classify, PacketKind, RtcpCompound};
use super::rtp::RtpPacket;
use super::stats::{ClockRate, ReceiveStats, SeqClass};
use super::DropReason;

/// Counters per [`DropReason`], indexed by the closed enum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    /// Counts one drop.
    pub fn inc(&mut self, reason: DropReason) {
        self.0[reason.index()] += 1;
    }

    /// Drops counted for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` for every reason, for metrics export.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }
}

/// Which local socket a datagram arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocalPort {
    /// The even RTP port (RTCP may arrive here too with rtcp-mux).
    Rtp,
    /// The odd RTCP port.
    Rtcp,
}

/// An accepted datagram, borrowed from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// A valid RTP packet; `latched` is set when this packet (re)latched the source.
    Rtp {
        /// The packet.
        packet: RtpPacket<'a>,
        /// Sequence classification from the statistics.
        class: SeqClass,
        /// Set when this packet latched the leg to its source.
        latched: Option<SocketAddr>,
    },
    /// A valid compound RTCP packet.
    Rtcp {
        /// The packet.
        packet: RtcpCompound<'a>,
        /// Set when this packet latched the leg's RTCP source.
        latched: Option<SocketAddr>,
    },
}

/// Receive state of one leg (one stream of one side of a call).
#[derive(Clone, Debug)]
pub struct LegReceiver {
    rtp_latch: Latch,
    rtcp_latch: Latch,
    clock: ClockRate,
    /// RTP statistics (RFC 3550 A.1/A.3/A.8).
    pub stats: ReceiveStats,
    /// Dropped datagrams by reason.
    pub drops: DropCounts,
    /// Accepted RTCP packets (compound datagrams).
    pub rtcp_packets: u64,
    /// RTCP is SRTCP relayed without its keys: validated by its plaintext header only
    /// ([`RtcpCompound::parse_opaque`]).
    opaque_rtcp: bool,
}

impl LegReceiver {
    /// A receiver with nothing signalled yet; `clock` is the main codec's clock rate (for
    /// jitter).
    pub fn new(latch: LatchConfig, clock: ClockRate) -> Self {
        Self {
            rtp_latch: Latch::new(latch.clone()),
            rtcp_latch: Latch::new(latch),
            clock,
            stats: ReceiveStats::new(),
            drops: DropCounts::default(),
            rtcp_packets: 0,
            opaque_rtcp: false,
        }
    }

    /// The networks a non-signalled source may latch from on this leg (its side's allow-list).
    pub fn set_latch_scope(&mut self, scope: std::sync::Arc<[config::types::Cidr]>) {
        self.rtp_latch.set_scope(scope.clone());
        self.rtcp_latch.set_scope(scope);
    }

    /// RTCP on this leg is SRTCP that callmask holds no keys for (relayed, never read).
    pub fn set_opaque_rtcp(&mut self, on: bool) {
        self.opaque_rtcp = on;
    }

    /// Applies the addresses from the peer's latest SDP (see [`Latch::set_signalled`]).
    pub fn set_signalled(
        &mut self,
        rtp: Option<SocketAddr>,
        rtcp: Option<SocketAddr>,
        clock: ClockRate,
    ) {
        self.rtp_latch.set_signalled(rtp);
        self.rtcp_latch.set_signalled(rtcp);
        self.clock = clock;
    }

    /// Decides on one datagram from `src` that arrived on `port` at `now`. `Err` has already
    /// been counted in [`Self::drops`]; the caller just discards the datagram.
    pub fn on_datagram<'a>(
        &mut self,
        buf: &'a [u8],
        src: SocketAddr,
        port: LocalPort,
        now: Instant,
    ) -> Result<Received<'a>, DropReason> {
        let r = self.decide(buf, src, port, now);
        if let Err(reason) = r {
            self.drops.inc(reason);
        }
        r
    }

    fn decide<'a>(
        &mut self,
        buf: &'a [u8],
        src: SocketAddr,
        port: LocalPort,
        now: Instant,
    ) -> Result<Received<'a>, DropReason> {
        let kind = match port {
            LocalPort::Rtp => classify(buf),
            LocalPort::Rtcp => PacketKind::Rtcp,
        };
        match kind {
            PacketKind::Rtp => {
                let packet = RtpPacket::parse(buf)?;
                let latched = latched(self.rtp_latch.on_packet(src, now)?);
                let class = self.stats.on_packet(&packet, now, self.clock);
                Ok(Received::Rtp {
                    packet,
                    class,
                    latched,
                })
            }
            PacketKind::Rtcp => {
                let packet = if self.opaque_rtcp {
                    RtcpCompound::parse_opaque(buf)?
                } else {
                    RtcpCompound::parse(buf)?
                };
                // rtcp-mux: RTCP on the RTP port comes from the RTP source.
                // RTCP is sparse (every ~5 s): a NATed phone's first RTCP packet usually comes
                // after the RTCP latch's window, so it may follow the RTP latch's learned IP.
                let rtp_ip = self.rtp_latch.learned().map(|a| a.ip());
                let vouched = port == LocalPort::Rtcp && rtp_ip == Some(src.ip());
                let latch = match port {
                    LocalPort::Rtp => &mut self.rtp_latch,
                    LocalPort::Rtcp => &mut self.rtcp_latch,
                };
                let latched = if vouched && latch.adopt(src) {
                    Some(src)
                } else {
                    latched(latch.on_packet(src, now)?)
                };
                self.rtcp_packets += 1;
                Ok(Received::Rtcp { packet, latched })
            }
        }
    }

    /// Where to send RTP toward this leg's peer (learned source, else signalled).
    pub fn rtp_target(&self) -> Option<SocketAddr> {
        self.rtp_latch.send_target()
    }

    /// Where to send RTCP toward this leg's peer.
    pub fn rtcp_target(&self) -> Option<SocketAddr> {
        self.rtcp_latch.send_target()
    }
}

fn latched(e: LatchEvent) -> Option<SocketAddr> {
    match e {
        LatchEvent::Latched(a) => Some(a),
        LatchEvent::Accepted => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::latch::LatchMode;
    use super::super::rtp::tests::packet;
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_leg_end_to_end() {
        let t = t0();
        let cfg = LatchConfig {
            mode: LatchMode::Nat {
                max_packets: 5,
                window: Duration::from_secs(2),
            },
            ..LatchConfig::default()
        };
        let mut leg = LegReceiver::new(cfg.clone(), ClockRate::NARROWBAND);
        // The phone's NAT address is on the side's allow-list.
        leg.set_latch_scope(std::sync::Arc::from(vec![config::types::Cidr::try_from(
            "203.0.113.0/24",
        )
        .expect("literal")]));
        let phone = addr("192.168.1.10:4000");
        leg.set_signalled(
            Some(phone),
            Some(addr("192.168.1.10:4001")),
            ClockRate::NARROWBAND,
        );
        let natted = addr("203.0.113.7:61000");

        let p0 = packet(0, 10, 0, 7, &[0xff; 160]);
        match leg.on_datagram(&p0, natted, LocalPort::Rtp, t).unwrap() {
            Received::Rtp { latched, .. } => assert_eq!(latched, Some(natted)),
            other => panic!("{other:?}"),
        }
        assert_eq!(leg.rtp_target(), Some(natted));

        // Garbage and strangers are counted drops.
        assert_eq!(
            leg.on_datagram(&[0x80, 0], natted, LocalPort::Rtp, t),
            Err(DropReason::TooShort)
        );
        let later = t + Duration::from_secs(5);
        let p1 = packet(0, 11, 160, 7, &[0xff; 160]);
        assert_eq!(
            leg.on_datagram(&p1, addr("6.6.6.6:6"), LocalPort::Rtp, later),
            Err(DropReason::UnexpectedSource)
        );
        assert!(leg.on_datagram(&p1, natted, LocalPort::Rtp, later).is_ok());
        assert_eq!(leg.drops.get(DropReason::TooShort), 1);
        assert_eq!(leg.drops.get(DropReason::UnexpectedSource), 1);
        assert_eq!(leg.drops.total(), 2);
        assert_eq!(leg.stats.packets, 2);

        // rtcp-mux: an RR on the RTP port is RTCP from the latched RTP source.
        let rr = [0x80, 201, 0x00, 0x01, 0, 0, 0, 7];
        assert!(matches!(
            leg.on_datagram(&rr, natted, LocalPort::Rtp, later),
            Ok(Received::Rtcp { latched: None, .. })
        ));
        // On the RTCP port, its own latch (signalled address still accepted after the window).
        let rtcp_src = addr("192.168.1.10:4001");
        assert!(matches!(
            leg.on_datagram(&rr, rtcp_src, LocalPort::Rtcp, later),
            Ok(Received::Rtcp {
                latched: Some(_),
                ..
            })
        ));
        assert_eq!(leg.rtcp_packets, 2);

        // A fresh leg: the NATed phone's RTCP (same IP as its RTP, other port) arrives late.
        let mut leg = LegReceiver::new(cfg, ClockRate::NARROWBAND);
        leg.set_latch_scope(std::sync::Arc::from(vec![config::types::Cidr::try_from(
            "203.0.113.0/24",
        )
        .expect("literal")]));
        leg.set_signalled(Some(phone), None, ClockRate::NARROWBAND);
        assert!(leg.on_datagram(&p0, natted, LocalPort::Rtp, t).is_ok());
        let natted_rtcp = addr("203.0.113.7:61001");
        assert!(matches!(
            leg.on_datagram(&rr, natted_rtcp, LocalPort::Rtcp, later),
            Ok(Received::Rtcp {
                latched: Some(_),
                ..
            })
        ));
        assert_eq!(leg.rtcp_target(), Some(natted_rtcp));
        assert_eq!(
            leg.on_datagram(&rr, addr("198.51.100.1:9999"), LocalPort::Rtcp, later),
            Err(DropReason::UnexpectedSource)
        );
        assert_eq!(leg.drops.iter().count(), DropReason::ALL.len());
    }
}
