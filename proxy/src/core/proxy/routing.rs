//! Where messages go: the next hop of a request (the side's trunk peer, else a registered
//! phone by its token, else the agent of a known call), the Route entries that name callmask,
//! the Record-Route and Via callmask adds, its branch ids, and a response's way back by Via.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::txn::Hop;
use super::types::{Side, SipTransport};
use super::{ProxyCore, BRANCH_PREFIX};
use crate::core::sip::{SipMessage, Uri, Via, MAGIC_COOKIE};

/// Where a request goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NextHop {
    pub(super) dest: SocketAddr,
    /// The transport to it: a registered phone's own (issue 12 item 4), else the arrival's.
    pub(super) transport: SipTransport,
    /// A new Request-URI (a registered phone's own Contact), if it changes.
    pub(super) request_uri: Option<Bytes>,
}

impl ProxyCore {
    /// The next hop of `msg` leaving on `out`: the side's peer (trunk mode), else (registration
    /// mode, no agents peer) a registered phone by its token, or the agent of a known call.
    pub(super) fn next_hop(&self, out: Side, msg: &SipMessage, call_id: &Bytes) -> Option<NextHop> {
        if let Some(peer) = self.config.side(out).peer {
            return Some(NextHop {
                dest: peer,
                transport: self.leaving(out, self.arrival),
                request_uri: None,
            });
        }
        let user = msg.request_uri().and_then(|u| u.user().cloned());
        let by_token = user.as_ref().and_then(|u| self.registrar.lookup(u));
        if let Some(b) = by_token {
            return Some(NextHop {
                dest: b.source,
                transport: self.leaving(out, b.transport),
                request_uri: Some(b.contact.clone()),
            });
        }
        let by_call = self.calls.get(call_id).and_then(|c| c.agents_addr)?;
        // In a dialog the Request-URI is the phone's Contact: its `transport=tcp` says how
        // the phone is reached (RFC 3261 §19.1.4), whatever the PBX used.
        let tcp = msg
            .request_uri()
            .is_some_and(|u| contains_ignore_case(u.as_bytes(), b";transport=tcp"));
        let wanted = if tcp { SipTransport::Tcp } else { self.arrival };
        Some(NextHop {
            dest: by_call,
            transport: self.leaving(out, wanted),
            request_uri: None,
        })
    }

    /// The transport a request leaves on toward `out` when `wanted` would be chosen
    /// otherwise: TLS always toward a TLS side (nothing else is spoken there), never toward
    /// another side (no TLS there: what arrived over TLS leaves over UDP, the default).
    pub(super) fn leaving(&self, out: Side, wanted: SipTransport) -> SipTransport {
        if self.tls[out] {
            SipTransport::Tls
        } else if wanted == SipTransport::Tls {
            SipTransport::Udp
        } else {
            wanted
        }
    }

    /// How many of `msg`'s leading Route entries name callmask (we record-route twice,
    /// RFC 5658): they are popped before forwarding.
    pub(super) fn own_routes(&self, msg: &SipMessage) -> usize {
        msg.routes().map_or(0, |routes| {
            routes
                .iter()
                .take_while(|r| self.is_own_uri(r.uri()))
                .count()
        })
    }

    fn is_own_uri(&self, uri: &Uri) -> bool {
        let default_port = if uri.scheme().eq_ignore_ascii_case(b"sips") {
            5061
        } else {
            5060
        };
        [self.config.pbx.sip_addr, self.config.agents.sip_addr]
            .iter()
            .any(|a| {
                uri.host().as_ref() == a.ip().to_string().as_bytes()
                    && uri.port().unwrap_or(default_port) == a.port()
            })
    }

    /// The two Record-Route entries for a request from `side` leaving on `out`, in the order
    /// they are prepended: the arrival side's, then the departure side's (on top).
    /// Each names the transport of its own side (the arrival's, and `out_tp` leaving). For a
    /// `sips:` request (TLS on both hops, checked before) both are `sips:` URIs, as RFC 3261
    /// §16.6 step 4 requires, without the deprecated `transport=tls` (RFC 5630 §5.4).
    pub(super) fn record_routes(
        &self,
        side: Side,
        out: Side,
        out_tp: SipTransport,
        sips: bool,
    ) -> [String; 2] {
        let inbound = self.config.side(side).sip_addr;
        let outbound = self.config.side(out).sip_addr;
        if sips {
            return [
                format!("<sips:{inbound};lr>"),
                format!("<sips:{outbound};lr>"),
            ];
        }
        let tp = |t: SipTransport| match t {
            SipTransport::Udp => "",
            SipTransport::Tcp => ";transport=tcp",
            SipTransport::Tls => ";transport=tls",
        };
        [
            format!("<sip:{inbound}{};lr>", tp(self.arrival)),
            format!("<sip:{outbound}{};lr>", tp(out_tp)),
        ]
    }

    /// callmask's Via for a request leaving on `out` over `tp` with `branch`.
    pub(super) fn own_via(&self, out: Side, tp: SipTransport, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={branch};rport",
            tp.via_token(),
            self.config.side(out).sip_addr
        )
    }

    /// The branch callmask uses downstream for a request that arrived on `side` with `via`:
    /// a function of the incoming branch only, so CANCEL and non-2xx ACK land in the INVITE's
    /// downstream transaction (RFC 3261 §16.11). Pre-RFC 3261 peers (no magic cookie) get a
    /// hash of the transaction-identifying fields instead.
    pub(super) fn branch_for(&self, side: Side, via: &Via, msg: &SipMessage) -> String {
        let mut h = DefaultHasher::new();
        self.config.secret.hash(&mut h);
        side.hash(&mut h);
        match via.branch().filter(|b| b.starts_with(MAGIC_COOKIE)) {
            Some(b) => b.hash(&mut h),
            None => {
                via.host().hash(&mut h);
                via.port().hash(&mut h);
                msg.call_id().ok().hash(&mut h);
                msg.cseq().ok().map(|c| c.seq).hash(&mut h);
                msg.from().ok().and_then(|f| f.tag().cloned()).hash(&mut h);
                msg.request_uri().map(|u| u.as_bytes().clone()).hash(&mut h);
            }
        }
        format!("{BRANCH_PREFIX}{:016x}", h.finish())
    }
}

/// Whether `via`'s branch is one callmask wrote.
pub(super) fn is_own_branch(via: &Via) -> bool {
    via.branch()
        .is_some_and(|b| b.starts_with(BRANCH_PREFIX.as_bytes()))
}

/// The way back for a response that arrived on `side` with no transaction (§16.7): by the
/// next Via, on the transport it names. `None` if that Via names no address.
pub(super) fn upstream_by_via(side: Side, next: &Via) -> Option<Hop> {
    let dest = via_destination(next)?;
    let transport = match next.transport() {
        crate::core::sip::Transport::Udp => SipTransport::Udp,
        crate::core::sip::Transport::Tls => SipTransport::Tls,
        _ => SipTransport::Tcp,
    };
    Some(Hop {
        side: side.other(),
        transport,
        dest,
    })
}

/// Where a response goes by its Via (RFC 3261 §18.2.2 with RFC 3581 rport): `received` and
/// `rport` when present, else sent-by. Names are not resolved (no DNS in the core).
fn via_destination(via: &Via) -> Option<SocketAddr> {
    let host = via
        .received()
        .cloned()
        .unwrap_or_else(|| via.host().clone());
    let host = std::str::from_utf8(&host).ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    let port = match via.rport() {
        Some(Some(p)) => p,
        _ => via.port().unwrap_or(5060),
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether `hay` contains `needle`, ASCII case-insensitively.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
