//! SIP access control per side (issue 13): who may send SIP to callmask at all. Closed by
//! default: without an allow-list a side admits only its configured peer's address, so an
//! INVITE from any other host is never forwarded from callmask's trusted address (the
//! toll-fraud path of an open relay).
//!
//! The rules, checked for every parsed message before anything else looks at it
//! ([`ProxyCore::admit`]):
//!
//! - A side with `allow` admits sources inside one of its networks; a side without admits its
//!   peer's IP (any port: a PBX may send from another port than it listens on).
//! - Registration mode (the agents side has no peer): REGISTER only from the allow-list;
//!   every other request, and responses, from the allow-list or from the address of a
//!   registered phone (a binding from the state file, or one made before the list changed).
//! - Refused requests get 403 (statelessly: no transaction, no state kept); refused responses
//!   and ACKs are dropped. Both are counted by reason ([`AccessReason`]).

use std::net::{IpAddr, SocketAddr};

use config::types::Cidr;

use super::types::{ProxyEvent, Side, SideConfig};
use super::ProxyCore;
use crate::core::side::BySide;
use crate::core::sip::{Method, SipMessage, StatusCode};

/// Who may send SIP on one side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowList {
    /// The side's configured peer only (nobody when it has none).
    #[default]
    PeerOnly,
    /// Sources inside these networks (an empty list admits no one).
    Nets(Vec<Cidr>),
}

impl AllowList {
    /// `allow` as configured (`None`: the peer only).
    pub fn from_config(allow: Option<&[Cidr]>) -> Self {
        allow.map_or(AllowList::PeerOnly, |l| AllowList::Nets(l.to_vec()))
    }

    /// Whether `ip` may send on a side configured as `side`.
    fn admits(&self, side: &SideConfig, ip: IpAddr) -> bool {
        match self {
            AllowList::PeerOnly => side.peer.is_some_and(|p| same_ip(p.ip(), ip)),
            AllowList::Nets(nets) => nets.iter().any(|n| n.contains(ip)),
        }
    }
}

/// Both sides' allow-lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Per side.
    pub allow: BySide<AllowList>,
}

/// Why a message was refused by access control (closed set: the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessReason {
    /// The source is outside the side's allow-list (or is not its peer).
    NotAllowed,
    /// Registration mode: a non-REGISTER from an address that is neither allowed nor a
    /// registered phone's.
    NotRegistered,
}

impl AccessReason {
    /// Every reason, in declaration order.
    pub const ALL: [AccessReason; 2] = [AccessReason::NotAllowed, AccessReason::NotRegistered];

    /// Stable label.
    pub fn label(self) -> &'static str {
        match self {
            AccessReason::NotAllowed => "not_allowed",
            AccessReason::NotRegistered => "not_registered",
        }
    }
}

/// What a message is, as far as access control cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Register,
    /// Any other request but ACK.
    Request,
    /// ACK or a response: never answered.
    Silent,
}

impl Kind {
    pub(super) fn of(msg: &SipMessage) -> Kind {
        match msg.method() {
            Some(Method::Register) => Kind::Register,
            Some(Method::Ack) | None => Kind::Silent,
            Some(_) => Kind::Request,
        }
    }
}

impl AccessPolicy {
    /// The decision for a message of `kind` from `ip` on `side` (configured as `cfg`);
    /// `registered` says whether `ip` is a registered phone's address. Registration mode is
    /// the agents side without a peer.
    pub(super) fn check(
        &self,
        side: Side,
        cfg: &SideConfig,
        ip: IpAddr,
        kind: Kind,
        registered: impl FnOnce(IpAddr) -> bool,
    ) -> Result<(), AccessReason> {
        if self.allow[side].admits(cfg, ip) {
            return Ok(());
        }
        let registration_mode = side == Side::Agents && cfg.peer.is_none();
        if registration_mode && kind != Kind::Register {
            return if registered(ip) {
                Ok(())
            } else {
                Err(AccessReason::NotRegistered)
            };
        }
        Err(AccessReason::NotAllowed)
    }
}

/// IP equality that sees through IPv4-mapped IPv6 (a dual-stack socket's view of an IPv4 peer).
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    canon(a) == canon(b)
}

impl ProxyCore {
    /// Replace the allow-lists (at start, and on a configuration reload).
    pub fn set_access(&mut self, policy: AccessPolicy) {
        self.access = policy;
    }

    /// Access control for `msg` from `src` on `side`: `true` if it may go on; otherwise it
    /// was answered 403 (requests, within the source's refusal budget) or dropped (ACK,
    /// responses, refusals over the budget), and counted.
    pub(super) fn admit(
        &mut self,
        side: Side,
        src: SocketAddr,
        msg: &SipMessage,
        now: std::time::Instant,
    ) -> bool {
        let kind = Kind::of(msg);
        let registrar = &self.registrar;
        let cfg = self.config.side(side);
        let Err(reason) = self
            .access
            .check(side, cfg, src.ip(), kind, |ip| registrar.has_source(ip))
        else {
            return true;
        };
        self.events
            .push_back(ProxyEvent::AccessDenied { side, reason });
        if kind != Kind::Silent && self.may_refuse(src, now) {
            // Stateless: a refused source gets no transaction, no retransmissions, no state.
            if let Ok(resp) =
                crate::core::sip::build_response(msg, StatusCode::FORBIDDEN, "Forbidden")
            {
                self.send(side, src, resp.as_bytes().clone());
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(peer: Option<&str>) -> SideConfig {
        SideConfig {
            sip_addr: "127.0.0.1:5060".parse().expect("literal"),
            media_ip: "127.0.0.1".parse().expect("literal"),
            peer: peer.map(|p| p.parse().expect("literal")),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal")
    }

    fn nets(list: &[&str]) -> AllowList {
        AllowList::Nets(
            list.iter()
                .map(|s| Cidr::try_from(*s).expect("literal"))
                .collect(),
        )
    }

    #[test]
    fn default_admits_the_peer_ip_only() {
        let p = AccessPolicy::default();
        let trunk = cfg(Some("10.0.0.5:5060"));
        let no = |_| false;
        for kind in [Kind::Request, Kind::Register, Kind::Silent] {
            assert_eq!(p.check(Side::Pbx, &trunk, ip("10.0.0.5"), kind, no), Ok(()));
            // Mapped IPv6 is the same host.
            let mapped = ip("::ffff:10.0.0.5");
            assert_eq!(p.check(Side::Pbx, &trunk, mapped, kind, no), Ok(()));
            assert_eq!(
                p.check(Side::Pbx, &trunk, ip("10.0.0.6"), kind, no),
                Err(AccessReason::NotAllowed)
            );
        }
        // A side without a peer admits no one by default.
        let none = cfg(None);
        assert_eq!(
            p.check(Side::Pbx, &none, ip("10.0.0.5"), Kind::Request, no),
            Err(AccessReason::NotAllowed)
        );
    }

    #[test]
    fn allow_list_replaces_the_peer() {
        let mut p = AccessPolicy::default();
        p.allow[Side::Pbx] = nets(&["192.168.0.0/16"]);
        let trunk = cfg(Some("10.0.0.5:5060"));
        let no = |_| false;
        assert_eq!(
            p.check(Side::Pbx, &trunk, ip("192.168.3.4"), Kind::Request, no),
            Ok(())
        );
        assert_eq!(
            p.check(Side::Pbx, &trunk, ip("10.0.0.5"), Kind::Request, no),
            Err(AccessReason::NotAllowed),
            "the list says who may send; the peer is not added behind the admin's back"
        );
        p.allow[Side::Pbx] = nets(&[]);
        assert_eq!(
            p.check(Side::Pbx, &trunk, ip("192.168.3.4"), Kind::Silent, no),
            Err(AccessReason::NotAllowed)
        );
    }

    #[test]
    fn registration_mode_register_from_list_calls_from_list_or_registered() {
        let mut p = AccessPolicy::default();
        p.allow[Side::Agents] = nets(&["10.1.0.0/24"]);
        let reg = cfg(None);
        let phone = ip("10.9.9.9");
        let registered = |a: IpAddr| a == ip("10.9.9.9");
        let check = |kind, a| p.check(Side::Agents, &reg, a, kind, registered);
        assert_eq!(check(Kind::Register, ip("10.1.0.7")), Ok(()));
        assert_eq!(check(Kind::Request, ip("10.1.0.7")), Ok(()));
        // A registered phone outside the list (loaded from the state file) may call and
        // answer, but not register anew.
        assert_eq!(check(Kind::Request, phone), Ok(()));
        assert_eq!(check(Kind::Silent, phone), Ok(()));
        assert_eq!(check(Kind::Register, phone), Err(AccessReason::NotAllowed));
        assert_eq!(
            check(Kind::Request, ip("10.2.0.1")),
            Err(AccessReason::NotRegistered)
        );
        assert_eq!(
            check(Kind::Register, ip("10.2.0.1")),
            Err(AccessReason::NotAllowed)
        );
        // The PBX side is never in registration mode.
        let pbx = cfg(None);
        assert_eq!(
            p.check(Side::Pbx, &pbx, phone, Kind::Request, registered),
            Err(AccessReason::NotAllowed)
        );
    }
}
