//! Edits on a parsed [`Sdp`]: each one replaces, inserts or removes whole lines and leaves every
//! other line byte-identical (including its line ending). Inserted lines use the body's
//! dominant ending ([`Sdp::preferred_ending`]); a replaced line keeps the ending it had.
//!
//! [`OriginState`] implements the `o=` rules of RFC 3264 §8 for one outgoing leg.

use std::net::IpAddr;

use bytes::Bytes;

use super::parse::{AddrType, Direction, Line, LineEnding, MediaLine, Scope, Sdp};

/// Why an edit was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The media index does not exist.
    #[error("no m= line with index {index}; the SDP has fewer media sections")]
    NoSuchMedia {
        /// The index asked for.
        index: usize,
    },
    /// An attribute name or value would break the line structure.
    #[error("attribute text must not contain CR, LF or NUL (and names no ':' or spaces)")]
    InvalidText,
}

/// Where to send RTCP, for [`Sdp::set_rtcp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcpTarget {
    /// RTCP port.
    pub port: u16,
    /// Address to write into the attribute (`IN IP4 addr`), or none for the port-only form.
    pub addr: Option<IpAddr>,
}

impl Sdp {
    fn scope_lines(&mut self, scope: Scope) -> Result<&mut Vec<Line>, RewriteError> {
        let index = match scope {
            Scope::Media(i) => i,
            Scope::Session => 0,
        };
        self.lines_mut(scope)
            .ok_or(RewriteError::NoSuchMedia { index })
    }

    /// Sets the `c=` address of `scope`: replaces its `c=` line(s), or inserts one if the scope
    /// has none (session: before the first `b=`/`t=`/`a=` line; media: after `m=` and `i=`).
    /// A `/ttl/count` multicast suffix is dropped: callmask relays unicast.
    pub fn set_connection(&mut self, scope: Scope, addr: IpAddr) -> Result<(), RewriteError> {
        let ending = self.preferred_ending();
        let text = connection_text(addr);
        let lines = self.scope_lines(scope)?;
        let mut found = false;
        for l in lines.iter_mut().filter(|l| l.kind() == Some(b'c')) {
            l.set_text(text.clone());
            found = true;
        }
        if !found {
            let at = match scope {
                Scope::Session => lines
                    .iter()
                    .position(|l| matches!(l.kind(), Some(b'b' | b't' | b'z' | b'k' | b'a')))
                    .unwrap_or(lines.len()),
                Scope::Media(_) => lines
                    .iter()
                    .skip(1)
                    .position(|l| l.kind() != Some(b'i'))
                    .map_or(lines.len(), |p| p + 1),
            };
            insert_line(lines, at, Line::new(text, ending));
        }
        Ok(())
    }

    /// Sets the port of media section `index`, dropping any `/count` (callmask allocates one
    /// RTP/RTCP pair per stream). Proto and formats are kept verbatim.
    pub fn set_media_port(&mut self, index: usize, port: u16) -> Result<(), RewriteError> {
        let lines = self.scope_lines(Scope::Media(index))?;
        let Some(m) = lines.first_mut() else {
            return Err(RewriteError::NoSuchMedia { index });
        };
        let value = m.value().unwrap_or_default();
        let (Some(media), Some(tail)) = (
            MediaLine::parse(value).map(|ml| ml.media),
            MediaLine::tail(value),
        ) else {
            return Err(RewriteError::NoSuchMedia { index });
        };
        let text = format!("m={media} {port} {tail}");
        m.set_text(Bytes::from(text));
        Ok(())
    }

    /// Sets the proto token of media section `index` (`RTP/AVP` ↔ `RTP/SAVP` when callmask
    /// terminates SRTP on one leg only). Port and formats are kept verbatim.
    pub fn set_media_proto(&mut self, index: usize, proto: &str) -> Result<(), RewriteError> {
        if proto.is_empty() || proto.bytes().any(|b| b.is_ascii_whitespace() || b == 0) {
            return Err(RewriteError::InvalidText);
        }
        let lines = self.scope_lines(Scope::Media(index))?;
        let Some(m) = lines.first_mut() else {
            return Err(RewriteError::NoSuchMedia { index });
        };
        let value = m.value().unwrap_or_default();
        let Some(ml) = MediaLine::parse(value) else {
            return Err(RewriteError::NoSuchMedia { index });
        };
        let port = match ml.port_count {
            Some(c) => format!("{}/{c}", ml.port),
            None => ml.port.to_string(),
        };
        let fmts: Vec<&str> = ml.formats().collect();
        let text = format!("m={} {port} {proto} {}", ml.media, fmts.join(" "));
        m.set_text(Bytes::from(text.trim_end().to_owned()));
        Ok(())
    }

    /// Replaces (or with `None` removes) the `a=rtcp` attribute of media `index` (RFC 3605).
    pub fn set_rtcp(&mut self, index: usize, rtcp: Option<RtcpTarget>) -> Result<(), RewriteError> {
        let value = rtcp.map(|r| match r.addr {
            Some(a) => format!("{} IN {} {a}", r.port, AddrType::of(a).as_str()),
            None => r.port.to_string(),
        });
        self.replace_attribute(Scope::Media(index), "rtcp", value.as_deref())
    }

    /// Sets the direction attribute of `scope`: every direction attribute there is removed and
    /// one written where the first was (or appended).
    pub fn set_direction(&mut self, scope: Scope, dir: Direction) -> Result<(), RewriteError> {
        let ending = self.preferred_ending();
        let lines = self.scope_lines(scope)?;
        let is_dir = |l: &Line| {
            l.attribute()
                .is_some_and(|a| a.value.is_none() && Direction::from_name(a.name).is_some())
        };
        let first = lines.iter().position(is_dir);
        let new = Line::new(Bytes::from(format!("a={}", dir.as_str())), ending);
        match first {
            Some(i) => {
                lines[i].set_text(Bytes::copy_from_slice(new.text()));
                let mut idx = 0;
                lines.retain(|l| {
                    let keep = idx <= i || !is_dir(l);
                    idx += 1;
                    keep
                });
            }
            None => insert_attribute_line(lines, new),
        }
        Ok(())
    }

    /// Appends `a=name[:value]` to `scope` (after its last non-empty line).
    pub fn add_attribute(
        &mut self,
        scope: Scope,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), RewriteError> {
        let text = attribute_text(name, value)?;
        let ending = self.preferred_ending();
        let lines = self.scope_lines(scope)?;
        insert_attribute_line(lines, Line::new(text, ending));
        Ok(())
    }

    /// Removes every `a=name` attribute of `scope`; returns how many were removed.
    pub fn remove_attribute(&mut self, scope: Scope, name: &str) -> Result<usize, RewriteError> {
        let lines = self.scope_lines(scope)?;
        let before = lines.len();
        lines.retain(|l| l.attribute().is_none_or(|a| a.name != name));
        Ok(before - lines.len())
    }

    /// Replaces the first `a=name` of `scope` in place (removing any others), inserts it if
    /// absent, or removes all with `value == None`.
    pub fn replace_attribute(
        &mut self,
        scope: Scope,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), RewriteError> {
        let Some(value) = value else {
            self.remove_attribute(scope, name)?;
            return Ok(());
        };
        let text = attribute_text(name, Some(value))?;
        let ending = self.preferred_ending();
        let lines = self.scope_lines(scope)?;
        let matches = |l: &Line| l.attribute().is_some_and(|a| a.name == name);
        match lines.iter().position(matches) {
            Some(i) => {
                lines[i].set_text(text);
                let mut idx = 0;
                lines.retain(|l| {
                    let keep = idx <= i || !matches(l);
                    idx += 1;
                    keep
                });
            }
            None => insert_attribute_line(lines, Line::new(text, ending)),
        }
        Ok(())
    }

    /// Rewrites the `o=` line (the only one; validated at parse).
    pub(crate) fn set_origin_text(&mut self, text: String) {
        if let Some(l) = self.session.iter_mut().find(|l| l.kind() == Some(b'o')) {
            l.set_text(Bytes::from(text));
        }
    }

    /// Serialises every line except `o=`, for change detection.
    fn body_without_origin(&self, out: &mut Vec<u8>) {
        out.clear();
        for l in self.all_lines().filter(|l| l.kind() != Some(b'o')) {
            out.extend_from_slice(l.text());
            out.extend_from_slice(l.ending().as_bytes());
        }
    }
}

fn connection_text(addr: IpAddr) -> Bytes {
    Bytes::from(format!("c=IN {} {addr}", AddrType::of(addr).as_str()))
}

fn attribute_text(name: &str, value: Option<&str>) -> Result<Bytes, RewriteError> {
    let bad = |s: &str| s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
    if name.is_empty() || bad(name) || name.contains([':', ' ', '\t']) || value.is_some_and(bad) {
        return Err(RewriteError::InvalidText);
    }
    Ok(Bytes::from(match value {
        Some(v) => format!("a={name}:{v}"),
        None => format!("a={name}"),
    }))
}

/// Inserts after the last non-empty line of a scope.
fn insert_attribute_line(lines: &mut Vec<Line>, new: Line) {
    let at = lines
        .iter()
        .rposition(|l| !l.text().is_empty())
        .map_or(lines.len(), |p| p + 1);
    insert_line(lines, at, new);
}

/// Inserts `new` at `at`. If the line before it had no terminator (it was the end of the
/// body), it takes the new line's ending and the new line becomes the unterminated last one,
/// so the two never run together.
fn insert_line(lines: &mut Vec<Line>, at: usize, mut new: Line) {
    if let Some(prev) = at.checked_sub(1).and_then(|p| lines.get_mut(p)) {
        if prev.ending() == LineEnding::None {
            *prev = Line::new(Bytes::copy_from_slice(prev.text()), new.ending());
            new = Line::new(Bytes::copy_from_slice(new.text()), LineEnding::None);
        }
    }
    lines.insert(at, new);
}

/// `o=` bookkeeping for the SDP callmask sends on one leg (RFC 3264 §8).
///
/// The first SDP stamped pins the origin's username, session id and address; later ones reuse
/// them, so the peer sees one consistent origin even if the other side's SDP comes from a new
/// originator. The version starts at the first SDP's version, increases by one whenever the
/// body callmask emits differs from the previous one (ignoring the `o=` line itself), and stays
/// put when an unchanged SDP is re-sent (e.g. a session-refresh re-INVITE).
#[derive(Clone, Debug, Default)]
pub struct OriginState {
    pinned: Option<Pinned>,
    last_body: Vec<u8>,
    scratch: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Pinned {
    username: String,
    session_id: String,
    version: u64,
    addr_type: &'static str,
    address: String,
}

impl OriginState {
    /// Fresh state for a new leg.
    pub fn new() -> Self {
        Self::default()
    }

    /// The version last written, if any SDP was stamped.
    pub fn version(&self) -> Option<u64> {
        self.pinned.as_ref().map(|p| p.version)
    }

    /// Rewrites `sdp`'s `o=` line for this leg and returns the version written. Call it after
    /// all other edits. `addr` (the address callmask shows on this leg) replaces the origin
    /// address on first use, hiding the other side's address.
    pub fn stamp(&mut self, sdp: &mut Sdp, addr: Option<IpAddr>) -> u64 {
        let mut body = std::mem::take(&mut self.scratch);
        sdp.body_without_origin(&mut body);
        let pinned = match self.pinned.take() {
            Some(mut p) => {
                if body != self.last_body {
                    p.version = p.version.saturating_add(1);
                }
                p
            }
            None => {
                let o = sdp.origin();
                let (addr_type, address) = match (addr, o) {
                    (Some(a), _) => (AddrType::of(a).as_str(), a.to_string()),
                    (None, Some(o)) if o.addr_type.eq_ignore_ascii_case("IP6") => {
                        ("IP6", o.address.to_owned())
                    }
                    (None, o) => ("IP4", o.map_or("0.0.0.0", |o| o.address).to_owned()),
                };
                Pinned {
                    username: o.map_or("-", |o| o.username).to_owned(),
                    session_id: o.map_or("0", |o| o.session_id).to_owned(),
                    version: o.and_then(|o| o.version_number()).unwrap_or(1),
                    addr_type,
                    address,
                }
            }
        };
        sdp.set_origin_text(format!(
            "o={} {} {} IN {} {}",
            pinned.username, pinned.session_id, pinned.version, pinned.addr_type, pinned.address
        ));
        let v = pinned.version;
        self.pinned = Some(pinned);
        self.scratch = std::mem::replace(&mut self.last_body, body);
        v
    }
}
