//! Line-preserving SDP parser (RFC 8866 / RFC 4566 syntax, lenient where real peers are sloppy).
//!
//! The body is split into lines; each [`Line`] keeps its exact bytes and its line ending (CRLF,
//! bare LF, or none for a last line without terminator), so printing an unedited [`Sdp`] gives
//! the input back byte for byte. Lines are grouped into the session section and one
//! [`MediaSection`] per `m=` line.
//!
//! Only the lines callmask must understand are validated at parse time: `v=` first, one `o=`,
//! every `c=` and `m=`. Everything else is kept verbatim and read through typed views
//! ([`Rtpmap`], [`Fmtp`], [`RtcpAttr`], [`Crypto`], [`Direction`], ptime, label) that return
//! `None` for lines they do not understand, so an odd attribute never rejects a call.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use bytes::Bytes;

use crate::core::relay::PayloadType;

/// Largest SDP body accepted (bytes). SIP limits the message first; this bounds our own work.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Largest number of lines accepted.
pub const MAX_SDP_LINES: usize = 2048;

/// Why an SDP body was refused. Each variant maps to one metric label via [`SdpError::as_label`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The body is empty.
    #[error("SDP body is empty; an offer or answer needs at least v=, o=, s=, t= lines")]
    Empty,
    /// The body is larger than [`MAX_SDP_LEN`] or has more than [`MAX_SDP_LINES`] lines.
    #[error("SDP body too large ({len} bytes or lines over the limit); split streams or drop attributes")]
    TooLarge {
        /// Size of the refused body in bytes.
        len: usize,
    },
    /// The first line is not `v=0`.
    #[error("SDP must start with \"v=0\" (RFC 8866 §5.1)")]
    MissingVersion,
    /// No `o=` line in the session section.
    #[error("SDP has no o= (origin) line in the session section (RFC 8866 §5.2)")]
    MissingOrigin,
    /// The `o=` line does not have six fields.
    #[error(
        "line {line}: o= needs six fields: username sess-id sess-version nettype addrtype address"
    )]
    BadOrigin {
        /// 1-based line number.
        line: usize,
    },
    /// A `c=` line does not read `IN IP4|IP6 address`.
    #[error("line {line}: c= must read \"IN IP4 <address>\" or \"IN IP6 <address>\"")]
    BadConnection {
        /// 1-based line number.
        line: usize,
    },
    /// An `m=` line does not read `media port[/count] proto fmt...`.
    #[error("line {line}: m= must read \"<media> <port>[/<count>] <proto> <fmt> ...\"")]
    BadMedia {
        /// 1-based line number.
        line: usize,
    },
}

impl SdpError {
    /// Stable metric label for this error.
    pub const fn as_label(&self) -> &'static str {
        match self {
            SdpError::Empty => "sdp_empty",
            SdpError::TooLarge { .. } => "sdp_too_large",
            SdpError::MissingVersion => "sdp_missing_version",
            SdpError::MissingOrigin => "sdp_missing_origin",
            SdpError::BadOrigin { .. } => "sdp_bad_origin",
            SdpError::BadConnection { .. } => "sdp_bad_connection",
            SdpError::BadMedia { .. } => "sdp_bad_media",
        }
    }
}

/// How a line was terminated in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineEnding {
    /// `\r\n`, as RFC 8866 requires.
    CrLf,
    /// Bare `\n` (sloppy peers; RFC 8866 §5 asks parsers to accept it).
    Lf,
    /// Last line of the body without a terminator.
    None,
}

impl LineEnding {
    /// The terminator bytes.
    pub const fn as_bytes(self) -> &'static [u8] {
        match self {
            LineEnding::CrLf => b"\r\n",
            LineEnding::Lf => b"\n",
            LineEnding::None => b"",
        }
    }
}

/// One SDP line: its bytes (without terminator) and its terminator. `Debug` redacts the
/// value of `a=crypto` lines (SRTP master keys).
#[derive(Clone, PartialEq, Eq)]
pub struct Line {
    text: Bytes,
    ending: LineEnding,
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CRYPTO: &[u8] = b"a=crypto:";
        let text = if self.text.len() >= CRYPTO.len()
            && self.text[..CRYPTO.len()].eq_ignore_ascii_case(CRYPTO)
        {
            std::borrow::Cow::Borrowed("a=crypto:<redacted>")
        } else {
            String::from_utf8_lossy(&self.text)
        };
        f.debug_struct("Line")
            .field("text", &text)
            .field("ending", &self.ending)
            .finish()
    }
}

impl Line {
    /// A line from its text (no terminator) and ending. The text must not contain CR or LF;
    /// the rewrite API checks that before calling this.
    pub(crate) fn new(text: Bytes, ending: LineEnding) -> Self {
        Self { text, ending }
    }

    /// The line's bytes, without terminator.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The line's terminator.
    pub fn ending(&self) -> LineEnding {
        self.ending
    }

    /// The type letter of a `x=value` line, or `None` for a line without that shape.
    pub fn kind(&self) -> Option<u8> {
        match self.text.as_ref() {
            [k, b'=', ..] => Some(*k),
            _ => None,
        }
    }

    /// The value after `x=` as UTF-8 with trailing whitespace trimmed, or `None` if the line
    /// is not of that shape or not UTF-8.
    pub fn value(&self) -> Option<&str> {
        self.kind()?;
        std::str::from_utf8(&self.text[2..]).ok().map(str::trim_end)
    }

    /// The value if this line is of type `kind`.
    pub fn value_of(&self, kind: u8) -> Option<&str> {
        if self.kind() == Some(kind) {
            self.value()
        } else {
            None
        }
    }

    /// The attribute view of an `a=` line.
    pub fn attribute(&self) -> Option<Attribute<'_>> {
        Attribute::parse(self.value_of(b'a')?)
    }

    pub(crate) fn set_text(&mut self, text: Bytes) {
        self.text = text;
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.text);
        out.extend_from_slice(self.ending.as_bytes());
    }
}

/// A parsed SDP body: session lines, then one [`MediaSection`] per `m=` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sdp {
    pub(crate) session: Vec<Line>,
    pub(crate) media: Vec<MediaSection>,
}

/// The lines of one media description; `lines[0]` is its `m=` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSection {
    pub(crate) lines: Vec<Line>,
}

/// Where an SDP operation applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The session section (before the first `m=`).
    Session,
    /// The media section with this 0-based index.
    Media(usize),
}

impl Sdp {
    /// Parses a body without copying it; unedited lines keep pointing into `body`.
    pub fn parse(body: Bytes) -> Result<Self, SdpError> {
        if body.is_empty() {
            return Err(SdpError::Empty);
        }
        if body.len() > MAX_SDP_LEN {
            return Err(SdpError::TooLarge { len: body.len() });
        }
        let mut session = Vec::new();
        let mut media: Vec<MediaSection> = Vec::new();
        let mut start = 0;
        let mut line_no = 0;
        while start < body.len() {
            line_no += 1;
            if line_no > MAX_SDP_LINES {
                return Err(SdpError::TooLarge { len: body.len() });
            }
            let (end, next, ending) = match memchr_lf(&body[start..]) {
                Some(i) => {
                    let lf = start + i;
                    if lf > start && body[lf - 1] == b'\r' {
                        (lf - 1, lf + 1, LineEnding::CrLf)
                    } else {
                        (lf, lf + 1, LineEnding::Lf)
                    }
                }
                None => (body.len(), body.len(), LineEnding::None),
            };
            let line = Line::new(body.slice(start..end), ending);
            start = next;
            if line_no == 1 && line.value_of(b'v') != Some("0") {
                return Err(SdpError::MissingVersion);
            }
            match line.kind() {
                Some(b'm') => {
                    MediaLine::parse(line.value().unwrap_or_default())
                        .ok_or(SdpError::BadMedia { line: line_no })?;
                    media.push(MediaSection { lines: vec![line] });
                    continue;
                }
                Some(b'c') => {
                    Connection::parse(line.value().unwrap_or_default())
                        .ok_or(SdpError::BadConnection { line: line_no })?;
                }
                Some(b'o') if media.is_empty() => {
                    Origin::parse(line.value().unwrap_or_default())
                        .ok_or(SdpError::BadOrigin { line: line_no })?;
                }
                _ => {}
            }
            match media.last_mut() {
                Some(m) => m.lines.push(line),
                None => session.push(line),
            }
        }
        let sdp = Sdp { session, media };
        if sdp.origin().is_none() {
            return Err(SdpError::MissingOrigin);
        }
        Ok(sdp)
    }

    /// Parses a borrowed body (copies it once).
    pub fn parse_slice(body: &[u8]) -> Result<Self, SdpError> {
        Self::parse(Bytes::copy_from_slice(body))
    }

    /// The session-level lines.
    pub fn session_lines(&self) -> &[Line] {
        &self.session
    }

    /// The media sections in order.
    pub fn media(&self) -> &[MediaSection] {
        &self.media
    }

    /// Number of `m=` lines.
    pub fn media_count(&self) -> usize {
        self.media.len()
    }

    /// Lines of one scope, or `None` for a media index out of range.
    pub fn lines(&self, scope: Scope) -> Option<&[Line]> {
        match scope {
            Scope::Session => Some(&self.session),
            Scope::Media(i) => self.media.get(i).map(|m| m.lines.as_slice()),
        }
    }

    pub(crate) fn lines_mut(&mut self, scope: Scope) -> Option<&mut Vec<Line>> {
        match scope {
            Scope::Session => Some(&mut self.session),
            Scope::Media(i) => self.media.get_mut(i).map(|m| &mut m.lines),
        }
    }

    /// All lines in document order.
    pub fn all_lines(&self) -> impl Iterator<Item = &Line> {
        self.session
            .iter()
            .chain(self.media.iter().flat_map(|m| m.lines.iter()))
    }

    /// The session `o=` line (validated at parse time).
    pub fn origin(&self) -> Option<Origin<'_>> {
        self.session
            .iter()
            .find_map(|l| l.value_of(b'o'))
            .and_then(Origin::parse)
    }

    /// The session-level `c=` line, if any.
    pub fn session_connection(&self) -> Option<Connection<'_>> {
        find_connection(&self.session)
    }

    /// Session-level attributes.
    pub fn session_attributes(&self) -> impl Iterator<Item = Attribute<'_>> {
        self.session.iter().filter_map(Line::attribute)
    }

    /// Session-level direction attribute, if any.
    pub fn session_direction(&self) -> Option<Direction> {
        direction_of(&self.session)
    }

    /// The line ending used for inserted lines: the one of the first line.
    pub fn preferred_ending(&self) -> LineEnding {
        match self.session.first().map(Line::ending) {
            Some(LineEnding::Lf) => LineEnding::Lf,
            _ => LineEnding::CrLf,
        }
    }

    /// Serialised length in bytes.
    pub fn len(&self) -> usize {
        self.all_lines()
            .map(|l| l.text.len() + l.ending.as_bytes().len())
            .sum()
    }

    /// Never true for a parsed body (it has at least `v=`); provided for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the serialised body to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len());
        for l in self.all_lines() {
            l.write_to(out);
        }
    }

    /// The serialised body.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.len());
        self.write_to(&mut out);
        Bytes::from(out)
    }
}

impl MediaSection {
    /// All lines of the section, `m=` first.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The typed `m=` line.
    pub fn media_line(&self) -> MediaLine<'_> {
        self.lines
            .first()
            .and_then(|l| l.value_of(b'm'))
            .and_then(MediaLine::parse)
            // Invariant: `Sdp::parse` only opens a section on an m= line that parses, and
            // `set_media_port` only writes m= lines built from a parsed one.
            .expect("media section starts with a valid m= line")
    }

    /// The media-level `c=` line, if any.
    pub fn connection(&self) -> Option<Connection<'_>> {
        find_connection(&self.lines)
    }

    /// Media-level attributes in order.
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'_>> {
        self.lines.iter().filter_map(Line::attribute)
    }

    /// Value of the first attribute called `name` (`Some("")` for a flag attribute).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.value.unwrap_or(""))
    }

    /// True if the flag attribute `name` (e.g. `rtcp-mux`) is present.
    pub fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// All `a=rtpmap` lines that parse.
    pub fn rtpmaps(&self) -> impl Iterator<Item = Rtpmap<'_>> {
        self.attributes()
            .filter(|a| a.name == "rtpmap")
            .filter_map(|a| Rtpmap::parse(a.value?))
    }

    /// All `a=fmtp` lines that parse.
    pub fn fmtps(&self) -> impl Iterator<Item = Fmtp<'_>> {
        self.attributes()
            .filter(|a| a.name == "fmtp")
            .filter_map(|a| Fmtp::parse(a.value?))
    }

    /// The `a=rtcp` attribute (RFC 3605), if present and valid.
    pub fn rtcp(&self) -> Option<RtcpAttr<'_>> {
        RtcpAttr::parse(self.attribute("rtcp")?)
    }

    /// All `a=crypto` attributes (RFC 4568) that parse.
    pub fn cryptos(&self) -> impl Iterator<Item = Crypto<'_>> {
        self.attributes()
            .filter(|a| a.name == "crypto")
            .filter_map(|a| Crypto::parse(a.value?))
    }

    /// The `a=label` value (RFC 4574).
    pub fn label(&self) -> Option<&str> {
        self.attribute("label")
    }

    /// The `a=ptime` value in milliseconds (fractions truncated).
    pub fn ptime(&self) -> Option<u32> {
        let v = self.attribute("ptime")?;
        let int = v.split('.').next().unwrap_or(v);
        int.parse().ok()
    }

    /// Media-level direction attribute, if any (does not look at the session level).
    pub fn direction(&self) -> Option<Direction> {
        direction_of(&self.lines)
    }
}

fn memchr_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

fn find_connection(lines: &[Line]) -> Option<Connection<'_>> {
    lines
        .iter()
        .find_map(|l| l.value_of(b'c'))
        .and_then(Connection::parse)
}

fn direction_of(lines: &[Line]) -> Option<Direction> {
    lines
        .iter()
        .filter_map(Line::attribute)
        .find_map(|a| match a.value {
            None => Direction::from_name(a.name),
            Some(_) => None,
        })
}

/// Typed `o=` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin<'a> {
    /// `username` (`-` if none).
    pub username: &'a str,
    /// `sess-id` (numeric string, may exceed 64 bits).
    pub session_id: &'a str,
    /// `sess-version` as written.
    pub session_version: &'a str,
    /// `nettype` (`IN`).
    pub net_type: &'a str,
    /// `addrtype` (`IP4`/`IP6`).
    pub addr_type: &'a str,
    /// `unicast-address` (an IP or an FQDN).
    pub address: &'a str,
}

impl<'a> Origin<'a> {
    /// Parses the value of an `o=` line.
    pub fn parse(v: &'a str) -> Option<Self> {
        let mut it = v.split_ascii_whitespace();
        let o = Origin {
            username: it.next()?,
            session_id: it.next()?,
            session_version: it.next()?,
            net_type: it.next()?,
            addr_type: it.next()?,
            address: it.next()?,
        };
        it.next().is_none().then_some(o)
    }

    /// The session version as a number, if it fits in 64 bits.
    pub fn version_number(&self) -> Option<u64> {
        self.session_version.parse().ok()
    }
}

/// Address family of a `c=` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrType {
    /// `IP4`.
    Ip4,
    /// `IP6`.
    Ip6,
}

impl AddrType {
    /// The SDP token.
    pub const fn as_str(self) -> &'static str {
        match self {
            AddrType::Ip4 => "IP4",
            AddrType::Ip6 => "IP6",
        }
    }

    /// The family of an IP address.
    pub const fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddrType::Ip4,
            IpAddr::V6(_) => AddrType::Ip6,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("IP4") {
            Some(AddrType::Ip4)
        } else if s.eq_ignore_ascii_case("IP6") {
            Some(AddrType::Ip6)
        } else {
            None
        }
    }
}

/// Typed `c=` line: `IN IP4|IP6 address[/ttl[/count]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection<'a> {
    /// Address family.
    pub addr_type: AddrType,
    /// The address without any `/ttl/count` suffix (an IP literal or an FQDN).
    pub address: &'a str,
}

impl<'a> Connection<'a> {
    /// Parses the value of a `c=` line.
    pub fn parse(v: &'a str) -> Option<Self> {
        let mut it = v.split_ascii_whitespace();
        if !it.next()?.eq_ignore_ascii_case("IN") {
            return None;
        }
        let addr_type = AddrType::parse(it.next()?)?;
        let full = it.next()?;
        if it.next().is_some() {
            return None;
        }
        let address = full.split('/').next().filter(|a| !a.is_empty())?;
        Some(Connection { addr_type, address })
    }

    /// The address as an IP, or `None` for an FQDN.
    pub fn ip(&self) -> Option<IpAddr> {
        IpAddr::from_str(self.address).ok()
    }

    /// True for the legacy hold address `0.0.0.0` (RFC 2543; RFC 3264 §8.4 says accept it).
    pub fn is_legacy_hold(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// Transport protocol of an `m=` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `RTP/AVP` (RFC 3551).
    RtpAvp,
    /// `RTP/AVPF` (RFC 4585).
    RtpAvpf,
    /// `RTP/SAVP` (RFC 3711, keys via `a=crypto`).
    RtpSavp,
    /// `RTP/SAVPF`.
    RtpSavpf,
    /// `UDP/TLS/RTP/SAVP` (DTLS-SRTP).
    UdpTlsRtpSavp,
    /// `UDP/TLS/RTP/SAVPF` (DTLS-SRTP, WebRTC).
    UdpTlsRtpSavpf,
    /// Anything else (`udp`, `TCP/MSRP`, `UDP/BFCP`, …): not relayed as RTP.
    Other,
}

impl Transport {
    /// Classifies a proto token (case-insensitive).
    pub fn parse(s: &str) -> Self {
        const TABLE: [(&str, Transport); 6] = [
            ("RTP/AVP", Transport::RtpAvp),
            ("RTP/AVPF", Transport::RtpAvpf),
            ("RTP/SAVP", Transport::RtpSavp),
            ("RTP/SAVPF", Transport::RtpSavpf),
            ("UDP/TLS/RTP/SAVP", Transport::UdpTlsRtpSavp),
            ("UDP/TLS/RTP/SAVPF", Transport::UdpTlsRtpSavpf),
        ];
        TABLE
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(s))
            .map_or(Transport::Other, |(_, p)| *p)
    }

    /// True for the RTP profiles.
    pub const fn is_rtp(self) -> bool {
        !matches!(self, Transport::Other)
    }

    /// True for SRTP profiles (payload is encrypted; the tap cannot decode it without keys).
    pub const fn is_secure(self) -> bool {
        matches!(
            self,
            Transport::RtpSavp
                | Transport::RtpSavpf
                | Transport::UdpTlsRtpSavp
                | Transport::UdpTlsRtpSavpf
        )
    }
}

/// Typed `m=` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaLine<'a> {
    /// `audio`, `video`, `application`, …
    pub media: &'a str,
    /// Transport port (0 = stream rejected / disabled).
    pub port: u16,
    /// The `/count` after the port, if present.
    pub port_count: Option<u16>,
    /// The proto token as written.
    pub proto: &'a str,
    fmts: &'a str,
}

impl<'a> MediaLine<'a> {
    /// Parses the value of an `m=` line.
    pub fn parse(v: &'a str) -> Option<Self> {
        let (media, rest) = split_token(v)?;
        let (port_tok, rest) = split_token(rest)?;
        let (proto, fmts) = match split_token(rest) {
            Some(x) => x,
            None => (rest.trim(), ""),
        };
        if proto.is_empty() {
            return None;
        }
        let (port, port_count) = match port_tok.split_once('/') {
            Some((p, c)) => (p.parse().ok()?, Some(c.parse().ok()?)),
            None => (port_tok.parse().ok()?, None),
        };
        Some(MediaLine {
            media,
            port,
            port_count,
            proto,
            fmts: fmts.trim(),
        })
    }

    /// The transport profile.
    pub fn transport(&self) -> Transport {
        Transport::parse(self.proto)
    }

    /// The format tokens (payload types for RTP profiles) in preference order.
    pub fn formats(&self) -> impl Iterator<Item = &'a str> {
        self.fmts.split_ascii_whitespace()
    }

    /// The format tokens that are valid RTP payload types.
    pub fn payload_types(&self) -> impl Iterator<Item = PayloadType> + 'a {
        self.fmts
            .split_ascii_whitespace()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter_map(|n| PayloadType::try_from(n).ok())
    }

    /// Everything after the port token, verbatim (proto and formats).
    pub(crate) fn tail(v: &str) -> Option<&str> {
        let (_, rest) = split_token(v)?;
        let (_, rest) = split_token(rest)?;
        Some(rest)
    }
}

/// Splits off the first space-separated token; returns the token and the rest (leading spaces
/// removed).
fn split_token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches([' ', '\t']);
    let end = s.find([' ', '\t'])?;
    let tok = &s[..end];
    let rest = s[end..].trim_start_matches([' ', '\t']);
    (!tok.is_empty()).then_some((tok, rest))
}

/// An `a=name[:value]` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The attribute name.
    pub name: &'a str,
    /// The value after `:`, or `None` for a flag attribute.
    pub value: Option<&'a str>,
}

impl<'a> Attribute<'a> {
    /// Parses the value of an `a=` line.
    pub fn parse(v: &'a str) -> Option<Self> {
        let (name, value) = match v.split_once(':') {
            Some((n, val)) => (n, Some(val)),
            None => (v, None),
        };
        let name = name.trim();
        (!name.is_empty()).then_some(Attribute { name, value })
    }
}

/// Media direction (RFC 3264 §5.1); absent means `sendrecv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Send and receive.
    SendRecv,
    /// Send only (the sender holds the other side, RFC 3264 §8.4).
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// Parses an attribute name (case-sensitive per RFC 8866).
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The attribute name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction as seen from the other end (sendonly ↔ recvonly).
    pub const fn reversed(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// True if the describing side will send media.
    pub const fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// True if the describing side wants to receive media.
    pub const fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtpmap<'a> {
    /// Payload type.
    pub pt: PayloadType,
    /// Encoding name as written (`PCMU`, `telephone-event`, …).
    pub encoding: &'a str,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channel count, if given.
    pub channels: Option<u8>,
}

impl<'a> Rtpmap<'a> {
    /// Parses the value of an `a=rtpmap` attribute.
    pub fn parse(v: &'a str) -> Option<Self> {
        let (pt, rest) = split_token(v)?;
        let pt = PayloadType::try_from(pt.parse::<u8>().ok()?).ok()?;
        let mut parts = rest.trim().split('/');
        let encoding = parts.next().filter(|e| !e.is_empty())?;
        let clock_rate = parts.next()?.parse().ok().filter(|&r| r > 0)?;
        let channels = match parts.next() {
            Some(c) => Some(c.parse().ok()?),
            None => None,
        };
        Some(Rtpmap {
            pt,
            encoding,
            clock_rate,
            channels,
        })
    }

    /// True for RFC 4733 `telephone-event`.
    pub fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }
}

/// `a=fmtp:<pt> <params>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fmtp<'a> {
    /// Payload type.
    pub pt: PayloadType,
    /// Format parameters, verbatim.
    pub params: &'a str,
}

impl<'a> Fmtp<'a> {
    /// Parses the value of an `a=fmtp` attribute.
    pub fn parse(v: &'a str) -> Option<Self> {
        let v = v.trim();
        let (pt, params) = match split_token(v) {
            Some(x) => x,
            None => (v, ""),
        };
        let pt = PayloadType::try_from(pt.parse::<u8>().ok()?).ok()?;
        Some(Fmtp { pt, params })
    }

    /// For telephone-event: true if event `code` is listed (`0-15,16`, RFC 4733 §7.1.1).
    pub fn has_event(&self, code: u8) -> bool {
        self.params.split(',').any(|r| {
            let r = r.trim();
            match r.split_once('-') {
                Some((a, b)) => match (a.parse::<u8>(), b.parse::<u8>()) {
                    (Ok(a), Ok(b)) => (a..=b).contains(&code),
                    _ => false,
                },
                None => r.parse::<u8>() == Ok(code),
            }
        })
    }
}

/// `a=rtcp:<port> [IN IP4|IP6 <address>]` (RFC 3605).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcpAttr<'a> {
    /// RTCP port.
    pub port: u16,
    /// Optional connection address.
    pub connection: Option<Connection<'a>>,
}

impl<'a> RtcpAttr<'a> {
    /// Parses the value of an `a=rtcp` attribute.
    pub fn parse(v: &'a str) -> Option<Self> {
        let v = v.trim();
        match split_token(v) {
            Some((port, rest)) => Some(RtcpAttr {
                port: port.parse().ok()?,
                connection: Some(Connection::parse(rest)?),
            }),
            None => Some(RtcpAttr {
                port: v.parse().ok()?,
                connection: None,
            }),
        }
    }
}

/// `a=crypto:<tag> <suite> <key-params> [<session-params>]` (RFC 4568). `Debug` redacts the
/// key parameters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Crypto<'a> {
    /// Tag.
    pub tag: u32,
    /// Crypto suite (`AES_CM_128_HMAC_SHA1_80`, …).
    pub suite: &'a str,
    /// Key parameters (`inline:...`). Secret: never log.
    pub key_params: &'a str,
}

impl fmt::Debug for Crypto<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crypto")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .field("key_params", &"<redacted>")
            .finish()
    }
}

impl<'a> Crypto<'a> {
    /// Parses the value of an `a=crypto` attribute.
    pub fn parse(v: &'a str) -> Option<Self> {
        let (tag, rest) = split_token(v)?;
        let tag = tag.parse().ok()?;
        let (suite, rest) = split_token(rest)?;
        let key_params = rest.split_ascii_whitespace().next()?;
        Some(Crypto {
            tag,
            suite,
            key_params,
        })
    }
}
