//! The core's vocabulary: its configuration, the ids it hands out, and what it tells its
//! owner (transmits and events).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;

use crate::core::ports::PortPair;
use crate::core::sdp::{Codec, SrtpLeg};
use crate::core::side::BySide;
use crate::core::sip::{Limits, Method, RejectReason, StatusCode};

pub use crate::core::side::Side;

/// What callmask is on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideConfig {
    /// The SIP address callmask advertises on this side (Via, Record-Route).
    pub sip_addr: SocketAddr,
    /// The media address callmask advertises on this side (SDP `c=`).
    pub media_ip: IpAddr,
    /// Where requests leaving on this side go (trunk mode); `None` = no peer configured.
    pub peer: Option<SocketAddr>,
}

/// Core settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The PBX side.
    pub pbx: SideConfig,
    /// The agents' side.
    pub agents: SideConfig,
    /// SIP parser limits.
    pub limits: Limits,
    /// Secret mixed into branch ids so they cannot be predicted from outside.
    pub secret: u64,
    /// Audio codecs kept in forwarded SDP (`media.codecs`): what the recorder tap decodes.
    pub codecs: Vec<config::types::MediaCodec>,
    /// An offer whose media callmask cannot decrypt (`media.undecodable`): 488, or relayed
    /// with the recorder path muted.
    pub undecodable: config::types::UndecodableMode,
    /// SDES-SRTP per leg (`pbx.srtp`, `agents.srtp`).
    pub srtp: BySide<config::types::SrtpMode>,
    /// Key of the registration-mode contact tokens (`rg-…`). A key that outlives the process
    /// (derived from `log.hash_key`) keeps a phone's token across restarts, so its refresh
    /// and its un-REGISTER match the binding the PBX holds.
    pub registration_key: [u8; 32],
}

impl ProxyConfig {
    pub(super) fn side(&self, s: Side) -> &SideConfig {
        match s {
            Side::Pbx => &self.pbx,
            Side::Agents => &self.agents,
        }
    }
}

/// callmask's own opaque id of a call (never the SIP Call-ID, which may hold a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

/// The SIP transport a message arrived on or leaves by. Requests are forwarded on the
/// transport they arrived on; responses return on their request's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipTransport {
    /// UDP datagrams.
    Udp,
    /// TCP stream (Content-Length framing).
    Tcp,
    /// TLS over TCP (same framing; RFC 3261 §26), on a side with `transport = "tls"`.
    Tls,
}

impl SipTransport {
    /// The token in a Via sent-protocol.
    pub fn via_token(self) -> &'static str {
        match self {
            SipTransport::Udp => "UDP",
            SipTransport::Tcp => "TCP",
            SipTransport::Tls => "TLS",
        }
    }

    /// Whether it is a stream (TCP or TLS): no retransmissions of our own (§17.1.1.1).
    pub fn is_stream(self) -> bool {
        !matches!(self, SipTransport::Udp)
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Which side's socket sends it.
    pub side: Side,
    /// UDP, TCP or TLS (a stream: over the connection with `dest`, opened if needed).
    pub transport: SipTransport,
    /// Destination.
    pub dest: SocketAddr,
    /// The bytes.
    pub payload: Bytes,
}

/// One anchored stream (one `m=` line) of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// `m=` index.
    pub index: usize,
    /// callmask's ports facing the PBX side.
    pub pbx_local: PortPair,
    /// callmask's ports facing the agents' side.
    pub agents_local: PortPair,
    /// Where the PBX side asked for media (as signalled; latching may refine it).
    pub pbx_remote: Option<SocketAddr>,
    /// Where the agents' side asked for media.
    pub agents_remote: Option<SocketAddr>,
    /// Codecs signalled (payload type → name and rate), from the latest SDP.
    pub codecs: Vec<Codec>,
    /// The stream is encrypted end to end (SRTP callmask holds no keys for, relayed under
    /// `media.undecodable = "relay-muted"`): its payload is never decoded, the recorder path
    /// hears silence (fail closed), the agent-leg clamp leaves it alone.
    pub encrypted: bool,
    /// SDES-SRTP keys of each leg (issue 14): `Some` where callmask terminates SRTP on that
    /// leg (decrypts what it sends, encrypts what goes to it). Secret: `Debug` redacts them.
    pub srtp: BySide<Option<SrtpLeg>>,
}

/// Instructions for the media layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// Create or update the relay for a call (idempotent; called after every SDP).
    Upsert {
        /// The call.
        call: CallRef,
        /// Its anchored streams.
        streams: Vec<StreamSpec>,
    },
    /// Stop relaying; the ports are back in the pool.
    Remove {
        /// The call.
        call: CallRef,
    },
}

/// The caller's and callee's URIs of a call (PHI; see [`ProxyEvent::CallStarted`]).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Parties {
    /// SIP Call-ID.
    pub call_id: Bytes,
    /// From URI.
    pub from: Bytes,
    /// To URI.
    pub to: Bytes,
}

impl std::fmt::Debug for Parties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parties(<redacted>)")
    }
}

/// How a call ended (metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// Answered and hung up.
    Completed,
    /// Refused with a final non-2xx response.
    Failed,
    /// Cancelled before answer.
    Cancelled,
    /// Given up by callmask (no final response, no BYE response, media timeout).
    TimedOut,
}

impl CallOutcome {
    /// Stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Completed => "completed",
            CallOutcome::Failed => "failed",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::TimedOut => "timed_out",
        }
    }
}

/// What happened, for the owner (metrics, media layer, recorder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEvent {
    /// The media layer must act.
    Media(MediaCommand),
    /// A new call (initial INVITE) from `side`.
    CallStarted {
        /// The call.
        call: CallRef,
        /// Where the caller is.
        caller_side: Side,
        /// From and To URIs as received. PHI: the shell hashes them before anything is
        /// logged ([`crate::redact`]); they never go into metrics.
        parties: Parties,
    },
    /// The call was answered (2xx to the initial INVITE).
    CallAnswered {
        /// The call.
        call: CallRef,
    },
    /// The call is over.
    CallEnded {
        /// The call.
        call: CallRef,
        /// How.
        outcome: CallOutcome,
    },
    /// A request was received (for counting).
    RequestIn {
        /// Arrival side.
        side: Side,
        /// Method.
        method: Method,
    },
    /// A response was received (for counting).
    ResponseIn {
        /// Arrival side.
        side: Side,
        /// Status code.
        status: StatusCode,
        /// Method of the request it answers (its CSeq method).
        method: Method,
        /// For a final response to a request callmask forwarded: the time since it was
        /// forwarded (the downstream transaction's duration).
        elapsed: Option<Duration>,
    },
    /// A message was rejected or dropped.
    Rejected {
        /// Arrival side.
        side: Side,
        /// Why.
        reason: RejectReason,
    },
    /// Access control refused a message (answered 403, or dropped for ACK and responses).
    AccessDenied {
        /// Arrival side.
        side: Side,
        /// Why.
        reason: super::access::AccessReason,
    },
    /// A request went over a bound of `[limits]` (answered 488 or 503, or dropped).
    LimitRefused {
        /// Arrival side.
        side: Side,
        /// Which bound.
        limit: super::limits::LimitKind,
    },
    /// A request or response was dropped for a routing reason (no peer, not ours, …).
    Dropped {
        /// Arrival side (for [`DropReason::TransportError`]: the side it was sent to).
        side: Side,
        /// Why.
        reason: DropReason,
    },
    /// A retransmission handled by callmask's transactions (for counting).
    Retransmission {
        /// Where callmask resent it to, or where the absorbed copy came from.
        side: Side,
        /// `true`: callmask resent on its own timer (A, E, G); `false`: a peer's copy was
        /// absorbed by a transaction.
        resent: bool,
    },
    /// A forwarded request got no final response in time (timer B, F or C): callmask
    /// answered 408 upstream (RFC 3261 §16.8).
    TransactionTimedOut {
        /// The side the request was sent to.
        side: Side,
        /// Its method.
        method: Method,
        /// Time since it was first sent.
        elapsed: Duration,
    },
    /// SIP INFO carried a DTMF key (`application/dtmf-relay` or `application/dtmf`). The key
    /// itself is never exposed.
    InfoDtmf {
        /// The call.
        call: CallRef,
        /// Side the INFO came from.
        side: Side,
    },
}

/// Why the core dropped a message instead of forwarding it, or gave up on a forwarded request
/// (closed set: the shell counts it in `callmask_sip_messages_rejected_total` through
/// `metrics::DropReason::from`, and logs [`DropReason::label`] at debug level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A late copy of a finished call's INVITE (its transaction is over).
    StaleInvite,
    /// No peer, registered phone or known agent to send a request to (answered 480/503).
    NoRoute,
    /// A response whose Via headers do not parse.
    BadVia,
    /// A response whose top Via is not callmask's, or that has nowhere to go back to.
    NotOurVia,
    /// A response whose next Via names no address callmask can send to.
    UnroutableVia,
    /// The transport to the next hop failed (a TCP connect): answered 503 upstream.
    TransportError,
    /// An SDP answer for a call callmask no longer anchors.
    SdpWithoutCall,
    /// An SDP answer callmask could not anchor (no free ports, unusable SDP).
    MediaAnchorFailed,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 8] = [
        DropReason::StaleInvite,
        DropReason::NoRoute,
        DropReason::BadVia,
        DropReason::NotOurVia,
        DropReason::UnroutableVia,
        DropReason::TransportError,
        DropReason::SdpWithoutCall,
        DropReason::MediaAnchorFailed,
    ];

    /// Stable fine-grained label (debug logs).
    pub fn label(self) -> &'static str {
        match self {
            DropReason::StaleInvite => "stale_invite",
            DropReason::NoRoute => "no_route",
            DropReason::BadVia => "bad_via",
            DropReason::NotOurVia => "not_our_via",
            DropReason::UnroutableVia => "unroutable_via",
            DropReason::TransportError => "transport_error",
            DropReason::SdpWithoutCall => "sdp_without_call",
            DropReason::MediaAnchorFailed => "media_anchor_failed",
        }
    }
}
