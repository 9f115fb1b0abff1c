//! SDP for media anchoring: a line-preserving editor and an offer/answer helper.
//!
//! callmask changes only what it must (`c=`, `m=` ports, `a=rtcp`, ICE attributes, `o=`
//! version); every other line leaves byte-identical, line endings included, so codecs, crypto,
//! labels and vendor attributes pass through untouched.
//!
//! - [`parse`]: [`Sdp`] (session + media sections of verbatim [`Line`]s) and typed views.
//! - [`rewrite`]: edits on an [`Sdp`] and the per-leg `o=` versioning of RFC 3264 §8
//!   ([`OriginState`]).
//! - [`anchor`](mod@anchor): parse → [`MediaPlan`] → allocate → [`anchor()`] for the proxy.
//! - [`codecs`]: `media.codecs` — undecodable audio codecs removed from forwarded SDP.
//! - [`sdes`]: SDES keys and the SRTP suites callmask terminates (RFC 4568).
//! - [`secure`]: encrypted streams the recorder tap could not hear (`media.undecodable`).

pub mod anchor;
pub mod codecs;
pub mod parse;
pub mod rewrite;
pub mod sdes;
pub mod secure;

pub use anchor::{anchor, Anchored, Codec, LocalAnchor, MediaPlan, StreamPlan};
pub use codecs::{filter_codecs, CodecFilter};
pub use parse::{
    AddrType, Attribute, Connection, Crypto, Direction, Fmtp, Line, LineEnding, MediaLine,
    MediaSection, Origin, RtcpAttr, Rtpmap, Scope, Sdp, SdpError, Transport,
};
pub use rewrite::{OriginState, RewriteError, RtcpTarget};
pub use sdes::{first_supported, SdesError, SdesKey, SrtpLeg, SrtpSuite};
pub use secure::{undecodable_streams, Undecodable};

#[cfg(test)]
mod tests;
