//! Symmetric RTP latching (the "comedia" trick) with hijack protection.
//!
//! A leg knows where its peer *said* it would send from (the SDP address: "signalled"); a phone
//! behind NAT actually sends from a translated address. The latch learns the real source and
//! sends back to it, under these rules:
//!
//! - Not latched yet: a packet from the signalled address latches it (any mode). In
//!   [`LatchMode::Nat`] a packet from any other source also latches, but only while the
//!   learning window is open: the first `max_packets` packets and the first `window` after
//!   the first packet (not after signalling: a call may ring for a minute before media flows).
//!   A non-signalled latch stays *tentative* while the window is open: a packet from the
//!   signalled address then takes over (the signalled peer is authoritative).
//! - A non-signalled source must also be *in scope* (issue 13): in the signalled address's
//!   network (same /24 for IPv4, /64 for IPv6) or in the side's allow-list (`pbx.allow` /
//!   `agents.allow`, or the side's peer). A packet from elsewhere never latches:
//!   [`DropReason::OutOfScope`], counted.
//! - After the window closes the latch is frozen; packets from anyone else are
//!   [`DropReason::UnexpectedSource`]. An attacker spraying the port later cannot steal media.
//! - [`Latch::set_signalled`] with a *different* address (re-INVITE moved the media) unlatches
//!   and re-arms the window (it opens at the next packet); the same address changes nothing.
//! - [`Latch::adopt`] lets a companion latch vouch for a source (the RTCP latch follows the
//!   IP the RTP latch learned, since RTCP is too sparse to fall inside its own window).
//!
//! ```text
//!              set_signalled(A)           first packet         window over (N pkts / T)
//!   Unarmed ───────────────────► Armed ───────────────► Learning ─────────────────► Frozen
//!                                          pkt from A: latch A (final)
//!                                          pkt from X (Nat): latch X (tentative)
//!   set_signalled(B≠A) from any state ─► Armed (unlatched)
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::types::Cidr;

use crate::core::side::{BySide, Side};

use super::DropReason;

/// Latching policy (from config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatchMode {
    /// Accept only the signalled address (no NAT traversal).
    Strict,
    /// Learn any source during the learning window.
    Nat {
        /// Packets (from any source) after which learning stops.
        max_packets: u32,
        /// Time after the window opens after which learning stops.
        window: Duration,
    },
}

/// Latch configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatchConfig {
    /// Policy.
    pub mode: LatchMode,
    /// Per side, the networks a non-signalled source may latch from besides the signalled
    /// address's own network (the side's allow-list, or its peer).
    pub allow: BySide<Arc<[Cidr]>>,
}

impl LatchConfig {
    /// The allow-list of `side`.
    pub fn allow_of(&self, side: Side) -> Arc<[Cidr]> {
        self.allow[side].clone()
    }
}

impl Default for LatchConfig {
    /// NAT mode, learning during the first 10 packets or 3 s.
    fn default() -> Self {
        Self {
            mode: LatchMode::Nat {
                max_packets: 10,
                window: Duration::from_secs(3),
            },
            allow: BySide::new(Arc::from(Vec::new()), Arc::from(Vec::new())),
        }
    }
}

/// Whether `a` and `b` share a network: /24 for IPv4, /64 for IPv6 (mapped IPv4 as IPv4).
fn same_network(a: IpAddr, b: IpAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (canon(a), canon(b)) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets()[..8] == b.octets()[..8],
        _ => false,
    }
}

/// What an accepted packet did to the latch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatchEvent {
    /// From the latched source; nothing changed.
    Accepted,
    /// Latched (or moved a tentative latch) to this source: log it, it is where we now send.
    Latched(SocketAddr),
}

/// One leg's latch (RTP and RTCP each have their own).
#[derive(Clone, Debug)]
pub struct Latch {
    cfg: LatchConfig,
    /// Networks a non-signalled source may latch from, besides the signalled one's.
    scope: Arc<[Cidr]>,
    signalled: Option<SocketAddr>,
    learned: Option<SocketAddr>,
    armed: bool,
    window_start: Option<Instant>,
    window_packets: u32,
}

impl Latch {
    /// A latch with nothing signalled yet (every packet is dropped until
    /// [`Self::set_signalled`]).
    pub fn new(cfg: LatchConfig) -> Self {
        Self {
            cfg,
            scope: Arc::from(Vec::new()),
            signalled: None,
            learned: None,
            armed: false,
            window_start: None,
            window_packets: 0,
        }
    }

    /// Sets the networks a non-signalled source may latch from (the leg's side's allow-list).
    pub fn set_scope(&mut self, scope: Arc<[Cidr]>) {
        self.scope = scope;
    }

    /// Whether a non-signalled `src` may latch: in the signalled address's network or in
    /// the scope.
    fn in_scope(&self, src: SocketAddr) -> bool {
        let near = self
            .signalled
            .is_some_and(|s| same_network(s.ip(), src.ip()));
        near || self.scope.iter().any(|n| n.contains(src.ip()))
    }

    /// Records the address from the peer's SDP (`None`: unknown, e.g. an unresolved FQDN or
    /// hold at `0.0.0.0`). A change of address unlatches and re-arms learning, which opens
    /// at the next packet; re-signalling the same address changes nothing.
    pub fn set_signalled(&mut self, addr: Option<SocketAddr>) {
        if self.armed && addr == self.signalled {
            return;
        }
        self.signalled = addr;
        self.learned = None;
        self.armed = true;
        self.window_start = None;
        self.window_packets = 0;
    }

    /// Latches to `src` on another latch's word (see the module docs), if not latched yet and
    /// armed. Returns whether it latched.
    pub fn adopt(&mut self, src: SocketAddr) -> bool {
        if self.armed && self.learned.is_none() {
            self.learned = Some(src);
            true
        } else {
            false
        }
    }

    /// Decides on a packet from `src` received at `now`.
    ///
    /// Call for every packet that parsed as RTP (or RTCP, on the RTCP latch), before relaying.
    /// `Err` is a counted drop.
    pub fn on_packet(&mut self, src: SocketAddr, now: Instant) -> Result<LatchEvent, DropReason> {
        if self.armed && self.window_start.is_none() {
            self.window_start = Some(now);
        }
        let learning = self.learning(now);
        if learning {
            self.window_packets = self.window_packets.saturating_add(1);
        }
        if self.learned == Some(src) {
            return Ok(LatchEvent::Accepted);
        }
        let from_signalled = self.signalled == Some(src);
        let latched_to_signalled = self.learned.is_some() && self.learned == self.signalled;
        if !from_signalled
            && self.learned.is_none()
            && learning
            && self.is_nat()
            && !self.in_scope(src)
        {
            return Err(DropReason::OutOfScope);
        }
        let may_latch = match self.learned {
            // First packet: the signalled source always; others only while learning (NAT).
            None => from_signalled || (learning && self.is_nat()),
            // Tentative latch to a stranger: the signalled source takes over while learning.
            Some(_) => learning && from_signalled && !latched_to_signalled,
        };
        if may_latch {
            self.learned = Some(src);
            Ok(LatchEvent::Latched(src))
        } else {
            Err(DropReason::UnexpectedSource)
        }
    }

    /// Where to send toward this leg's peer: the learned source, else the signalled address.
    pub fn send_target(&self) -> Option<SocketAddr> {
        self.learned.or(self.signalled)
    }

    /// The learned source, if latched.
    pub fn learned(&self) -> Option<SocketAddr> {
        self.learned
    }

    /// The signalled address.
    pub fn signalled(&self) -> Option<SocketAddr> {
        self.signalled
    }

    /// True while a non-signalled source may still latch (NAT mode only) at `now`: armed and
    /// either no packet yet or still inside the window.
    pub fn learning(&self, now: Instant) -> bool {
        match (self.cfg.mode, self.window_start) {
            (
                LatchMode::Nat {
                    max_packets,
                    window,
                },
                Some(start),
            ) => self.window_packets < max_packets && now.saturating_duration_since(start) < window,
            (LatchMode::Nat { .. }, None) => self.armed,
            (LatchMode::Strict, _) => false,
        }
    }

    fn is_nat(&self) -> bool {
        matches!(self.cfg.mode, LatchMode::Nat { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Every network in scope: the learning rules alone (scope has its own test).
    fn everywhere() -> Arc<[Cidr]> {
        Arc::from(vec![Cidr::try_from("0.0.0.0/0").expect("literal")])
    }

    fn nat(n: u32, ms: u64) -> Latch {
        let mut l = Latch::new(LatchConfig {
            mode: LatchMode::Nat {
                max_packets: n,
                window: Duration::from_millis(ms),
            },
            ..LatchConfig::default()
        });
        l.set_scope(everywhere());
        l
    }

    /// Issue 13: a stranger outside the signalled /24 and the side's allow-list never
    /// latches, even while learning; one inside either does.
    #[test]
    fn nat_latch_only_from_the_signalled_network_or_the_allow_list() {
        let t = t0();
        let mut l = Latch::new(LatchConfig::default());
        l.set_signalled(Some(addr("10.0.0.5:4000")));
        assert_eq!(
            l.on_packet(addr("203.0.113.7:4000"), t),
            Err(DropReason::OutOfScope)
        );
        let near = addr("10.0.0.77:4000");
        assert_eq!(l.on_packet(near, t), Ok(LatchEvent::Latched(near)));
        let mut l = Latch::new(LatchConfig::default());
        l.set_scope(Arc::from(vec![
            Cidr::try_from("203.0.113.0/24").expect("literal")
        ]));
        l.set_signalled(Some(addr("10.0.0.5:4000")));
        let natted = addr("203.0.113.7:61000");
        assert_eq!(l.on_packet(natted, t), Ok(LatchEvent::Latched(natted)));
    }

    #[test]
    fn nothing_signalled_drops_everything() {
        let mut l = nat(10, 1000);
        assert_eq!(
            l.on_packet(addr("1.1.1.1:1"), t0()),
            Err(DropReason::UnexpectedSource)
        );
        assert_eq!(l.send_target(), None);
    }

    #[test]
    fn strict_latches_only_signalled() {
        let t = t0();
        let mut l = Latch::new(LatchConfig {
            mode: LatchMode::Strict,
            ..LatchConfig::default()
        });
        let sig = addr("10.0.0.5:4000");
        l.set_signalled(Some(sig));
        assert_eq!(
            l.on_packet(addr("6.6.6.6:4000"), t),
            Err(DropReason::UnexpectedSource)
        );
        assert_eq!(l.on_packet(sig, t), Ok(LatchEvent::Latched(sig)));
        assert_eq!(l.on_packet(sig, t), Ok(LatchEvent::Accepted));
        assert_eq!(
            l.on_packet(addr("6.6.6.6:4000"), t),
            Err(DropReason::UnexpectedSource)
        );
    }

    #[test]
    fn nat_learns_translated_source_then_freezes() {
        let t = t0();
        let mut l = nat(5, 2000);
        l.set_signalled(Some(addr("192.168.1.10:4000")));
        let natted = addr("203.0.113.7:61000");
        assert_eq!(l.on_packet(natted, t), Ok(LatchEvent::Latched(natted)));
        assert_eq!(l.send_target(), Some(natted));
        let later = t + Duration::from_secs(3);
        assert_eq!(l.on_packet(natted, later), Ok(LatchEvent::Accepted));
        // Hijack attempt after the window: refused.
        assert_eq!(
            l.on_packet(addr("198.51.100.9:5000"), later),
            Err(DropReason::UnexpectedSource)
        );
        assert_eq!(l.send_target(), Some(natted));
    }

    #[test]
    fn nat_window_closes_after_n_packets() {
        let t = t0();
        let mut l = nat(3, 60_000);
        l.set_signalled(Some(addr("192.168.1.10:4000")));
        let x = addr("9.9.9.9:9");
        // Three packets from a source that is neither: the first latches tentatively…
        assert!(l.on_packet(x, t).is_ok());
        assert!(l.on_packet(x, t).is_ok());
        assert!(l.on_packet(x, t).is_ok());
        assert!(!l.learning(t));
        // …and now the window is closed, so even a different stranger cannot move it.
        assert_eq!(
            l.on_packet(addr("8.8.8.8:8"), t),
            Err(DropReason::UnexpectedSource)
        );
    }

    #[test]
    fn signalled_source_overrides_tentative_latch_while_learning() {
        let t = t0();
        let mut l = nat(10, 1000);
        let sig = addr("10.0.0.5:4000");
        l.set_signalled(Some(sig));
        let attacker = addr("6.6.6.6:6");
        assert_eq!(l.on_packet(attacker, t), Ok(LatchEvent::Latched(attacker)));
        assert_eq!(l.on_packet(sig, t), Ok(LatchEvent::Latched(sig)));
        // Latched to the signalled address: final even while the window is open.
        assert_eq!(l.on_packet(attacker, t), Err(DropReason::UnexpectedSource));
    }

    #[test]
    fn nat_window_closes_after_time_from_first_packet() {
        let t = t0();
        let mut l = nat(100, 500);
        let sig = addr("10.0.0.5:4000");
        l.set_signalled(Some(sig));
        // The call rings for 30 s: the window has not started yet.
        let answer = t + Duration::from_secs(30);
        let natted = addr("203.0.113.7:61000");
        assert_eq!(l.on_packet(natted, answer), Ok(LatchEvent::Latched(natted)));
        let late = answer + Duration::from_millis(500);
        assert_eq!(l.on_packet(natted, late), Ok(LatchEvent::Accepted));
        assert_eq!(
            l.on_packet(addr("9.9.9.9:9"), late),
            Err(DropReason::UnexpectedSource)
        );
        // Frozen: not even the signalled address moves it now.
        assert_eq!(l.on_packet(sig, late), Err(DropReason::UnexpectedSource));
    }

    #[test]
    fn signalled_address_latches_any_time_in_strict_mode() {
        let t = t0();
        let sig = addr("10.0.0.5:4000");
        let mut strict = Latch::new(LatchConfig {
            mode: LatchMode::Strict,
            ..LatchConfig::default()
        });
        strict.set_signalled(Some(sig));
        assert_eq!(
            strict.on_packet(addr("9.9.9.9:9"), t),
            Err(DropReason::UnexpectedSource)
        );
        let late = t + Duration::from_secs(60);
        assert_eq!(strict.on_packet(sig, late), Ok(LatchEvent::Latched(sig)));
    }

    #[test]
    fn adopt_only_when_unlatched_and_armed() {
        let mut l = nat(5, 1000);
        assert!(!l.adopt(addr("1.1.1.1:1")), "not armed");
        l.set_signalled(Some(addr("10.0.0.5:4001")));
        assert!(l.adopt(addr("203.0.113.7:61001")));
        assert!(!l.adopt(addr("6.6.6.6:6")));
        assert_eq!(l.send_target(), Some(addr("203.0.113.7:61001")));
    }

    #[test]
    fn reinvite_with_new_address_relearns() {
        let t = t0();
        let mut l = nat(5, 1000);
        let a = addr("10.0.0.5:4000");
        l.set_signalled(Some(a));
        assert!(l.on_packet(a, t).is_ok());
        let t2 = t + Duration::from_secs(60);
        // Same address re-signalled (session refresh): latch kept, window stays closed.
        l.set_signalled(Some(a));
        assert_eq!(l.learned(), Some(a));
        assert_eq!(
            l.on_packet(addr("9.9.9.9:9"), t2),
            Err(DropReason::UnexpectedSource)
        );
        // New address: unlatched, a NATed source may latch again.
        let b = addr("10.0.0.6:4002");
        l.set_signalled(Some(b));
        assert_eq!(l.learned(), None);
        assert_eq!(l.send_target(), Some(b));
        let natted = addr("203.0.113.7:40000");
        assert_eq!(l.on_packet(natted, t2), Ok(LatchEvent::Latched(natted)));
        assert_eq!(l.on_packet(a, t2), Err(DropReason::UnexpectedSource));
    }
}
