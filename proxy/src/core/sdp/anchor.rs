//! Offer/answer helper for media anchoring: point an SDP at callmask and describe what the
//! signalling side asked for.
//!
//! For each SDP crossing the proxy (offer or answer, either direction):
//!
//! ```text
//! let sdp   = Sdp::parse(body)?;                       // Err -> 400/488 on the SIP side
//! let plan  = MediaPlan::from_sdp(&sdp);               // what the sender signalled
//! let ports = plan.streams.iter().map(|s| s.is_active().then(|| alloc(now))).collect();
//! let out   = anchor(sdp, &LocalAnchor { addr, ports: &ports }, &mut leg.origin)?;
//! // out.body goes to the other side; out.plan.streams[i].remote feeds the latch of leg i
//! ```

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::parse::{Direction, MediaSection, Scope, Sdp, Transport};
use super::rewrite::{OriginState, RewriteError, RtcpTarget};
use crate::core::ports::PortPair;
use crate::core::relay::PayloadType;

/// ICE attributes removed by [`anchor`]: their candidates name the real endpoint, and an ICE
/// agent would use them to bypass the anchor (and the recorder tap). Without them, peers fall
/// back to the `c=`/`m=` default candidate, which is callmask.
pub const ICE_ATTRIBUTES: [&str; 7] = [
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
];

/// A codec signalled on an `m=` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codec {
    /// Payload type.
    pub pt: PayloadType,
    /// Encoding name as signalled (or from RFC 3551 Table 4 for static types).
    pub name: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channels, if signalled.
    pub channels: Option<u8>,
}

impl Codec {
    /// True for RFC 4733 `telephone-event`.
    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }
}

/// What one `m=` line asked for, as signalled by the SDP's sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPlan {
    /// 0-based m= index.
    pub index: usize,
    /// Media type (`audio`, `video`, …).
    pub media: String,
    /// Transport profile.
    pub transport: Transport,
    /// Signalled port (0 = rejected/disabled stream).
    pub port: u16,
    /// Where the sender wants RTP (`None` if port 0, FQDN or unspecified address).
    pub remote: Option<SocketAddr>,
    /// Where the sender wants RTCP: `a=rtcp` (RFC 3605), else RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// The connection address as written when it is not an IP literal (needs resolving).
    pub remote_host: Option<String>,
    /// `a=rtcp-mux` offered or accepted.
    pub rtcp_mux: bool,
    /// Codecs in preference order (telephone-event included).
    pub codecs: Vec<Codec>,
    /// The first telephone-event codec (RFC 4733), if any.
    pub telephone_event: Option<Codec>,
    /// Effective direction (media level, else session level, else sendrecv).
    pub direction: Direction,
    /// Hold: `sendonly`/`inactive`, or legacy `c=0.0.0.0` (RFC 3264 §8.4).
    pub on_hold: bool,
    /// `a=ptime` in ms.
    pub ptime: Option<u32>,
    /// SRTP profile or `a=crypto` present: payload is encrypted end to end.
    pub secure: bool,
    /// `a=label` (RFC 4574), used by SIPREC.
    pub label: Option<String>,
}

impl StreamPlan {
    /// True unless the stream is rejected/disabled (port 0) or not RTP.
    pub fn is_active(&self) -> bool {
        self.port != 0 && self.transport.is_rtp()
    }

    /// Looks up a codec by payload type.
    pub fn codec(&self, pt: PayloadType) -> Option<&Codec> {
        self.codecs.iter().find(|c| c.pt == pt)
    }
}

/// Per-m-line plan of an SDP, see [`StreamPlan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaPlan {
    /// One entry per `m=` line, in order.
    pub streams: Vec<StreamPlan>,
}

impl MediaPlan {
    /// Reads the plan out of an SDP (before or without rewriting).
    pub fn from_sdp(sdp: &Sdp) -> Self {
        let session_dir = sdp.session_direction();
        let session_conn = sdp.session_connection();
        let streams = sdp
            .media()
            .iter()
            .enumerate()
            .map(|(index, m)| stream_plan(index, m, session_dir, session_conn))
            .collect();
        MediaPlan { streams }
    }
}

fn stream_plan(
    index: usize,
    m: &MediaSection,
    session_dir: Option<Direction>,
    session_conn: Option<super::parse::Connection<'_>>,
) -> StreamPlan {
    let ml = m.media_line();
    let conn = m.connection().or(session_conn);
    let legacy_hold = conn.is_some_and(|c| c.is_legacy_hold());
    let ip = conn.and_then(|c| c.ip()).filter(|ip| !ip.is_unspecified());
    let remote = ip
        .filter(|_| ml.port != 0)
        .map(|ip| SocketAddr::new(ip, ml.port));
    let remote_rtcp = match m.rtcp() {
        Some(r) if ml.port != 0 => r
            .connection
            .and_then(|c| c.ip())
            .or(ip)
            .map(|ip| SocketAddr::new(ip, r.port)),
        _ => remote.and_then(|r| Some(SocketAddr::new(r.ip(), r.port().checked_add(1)?))),
    };
    let remote_host = conn
        .filter(|c| c.ip().is_none())
        .map(|c| c.address.to_owned());
    let codecs: Vec<Codec> = ml
        .payload_types()
        .filter_map(|pt| match m.rtpmaps().find(|r| r.pt == pt) {
            Some(r) => Some(Codec {
                pt,
                name: r.encoding.to_owned(),
                clock_rate: r.clock_rate,
                channels: r.channels,
            }),
            None => static_codec(pt),
        })
        .collect();
    let telephone_event = codecs.iter().find(|c| c.is_telephone_event()).cloned();
    let direction = m.direction().or(session_dir).unwrap_or(Direction::SendRecv);
    let transport = ml.transport();
    StreamPlan {
        index,
        media: ml.media.to_owned(),
        transport,
        port: ml.port,
        remote,
        remote_rtcp,
        remote_host,
        rtcp_mux: m.has_attribute("rtcp-mux"),
        codecs,
        telephone_event,
        direction,
        on_hold: legacy_hold || matches!(direction, Direction::SendOnly | Direction::Inactive),
        ptime: m.ptime(),
        secure: transport.is_secure() || m.cryptos().next().is_some(),
        label: m.label().map(str::to_owned),
    }
}

/// RFC 3551 Table 4/5 static payload types (those still seen in telephony and its tests).
fn static_codec(pt: PayloadType) -> Option<Codec> {
    let (name, clock_rate, channels) = match pt.get() {
        0 => ("PCMU", 8000, Some(1)),
        3 => ("GSM", 8000, Some(1)),
        4 => ("G723", 8000, Some(1)),
        5 => ("DVI4", 8000, Some(1)),
        6 => ("DVI4", 16000, Some(1)),
        7 => ("LPC", 8000, Some(1)),
        8 => ("PCMA", 8000, Some(1)),
        9 => ("G722", 8000, Some(1)),
        10 => ("L16", 44100, Some(2)),
        11 => ("L16", 44100, Some(1)),
        12 => ("QCELP", 8000, Some(1)),
        13 => ("CN", 8000, Some(1)),
        14 => ("MPA", 90000, None),
        15 => ("G728", 8000, Some(1)),
        16 => ("DVI4", 11025, Some(1)),
        17 => ("DVI4", 22050, Some(1)),
        18 => ("G729", 8000, Some(1)),
        25 => ("CelB", 90000, None),
        26 => ("JPEG", 90000, None),
        28 => ("nv", 90000, None),
        31 => ("H261", 90000, None),
        32 => ("MPV", 90000, None),
        33 => ("MP2T", 90000, None),
        34 => ("H263", 90000, None),
        _ => return None,
    };
    Some(Codec {
        pt,
        name: name.to_owned(),
        clock_rate,
        channels,
    })
}

/// What callmask allocated toward the SDP's receiver.
#[derive(Clone, Copy, Debug)]
pub struct LocalAnchor<'a> {
    /// callmask's media address on the receiving side.
    pub addr: IpAddr,
    /// One entry per m= line: the pair to advertise, or `None` to disable the stream (port 0).
    /// Missing trailing entries count as `None`.
    pub ports: &'a [Option<PortPair>],
}

/// Result of [`anchor`].
#[derive(Clone, Debug)]
pub struct Anchored {
    /// The rewritten body, to send on.
    pub body: Bytes,
    /// The plan as signalled by the sender of the input SDP.
    pub plan: MediaPlan,
    /// The `o=` version written.
    pub version: u64,
}

/// Points `sdp` at callmask: every `c=` (session and media; legacy hold `0.0.0.0` kept so hold
/// still reads as hold), every active `m=` port, and any `a=rtcp`. ICE attributes
/// ([`ICE_ATTRIBUTES`]) are removed; codecs, `a=crypto`, `a=label`, direction and all other
/// lines pass through byte-identical. Finally `o=` is stamped by the leg's `origin`.
pub fn anchor(
    mut sdp: Sdp,
    local: &LocalAnchor<'_>,
    origin: &mut OriginState,
) -> Result<Anchored, RewriteError> {
    let plan = MediaPlan::from_sdp(&sdp);
    let session_conn = sdp.session_connection().map(|c| c.is_legacy_hold());
    if session_conn == Some(false) {
        sdp.set_connection(Scope::Session, local.addr)?;
    }
    for name in ICE_ATTRIBUTES {
        sdp.remove_attribute(Scope::Session, name)?;
    }
    for (i, stream) in plan.streams.iter().enumerate() {
        let scope = Scope::Media(i);
        for name in ICE_ATTRIBUTES {
            sdp.remove_attribute(scope, name)?;
        }
        if stream.port == 0 {
            continue;
        }
        let Some(pair) = local.ports.get(i).copied().flatten() else {
            sdp.set_media_port(i, 0)?;
            continue;
        };
        sdp.set_media_port(i, pair.rtp())?;
        let media_conn = sdp.media()[i].connection().map(|c| c.is_legacy_hold());
        match (media_conn, session_conn) {
            (Some(false), _) | (None, None) => sdp.set_connection(scope, local.addr)?,
            _ => {}
        }
        if let Some(r) = sdp.media()[i].rtcp() {
            let addr = r.connection.map(|_| local.addr);
            sdp.set_rtcp(
                i,
                Some(RtcpTarget {
                    port: pair.rtcp(),
                    addr,
                }),
            )?;
        }
    }
    let version = origin.stamp(&mut sdp, Some(local.addr));
    Ok(Anchored {
        body: sdp.to_bytes(),
        plan,
        version,
    })
}
