//! An NG command dictionary → a typed [`Request`] (parse, don't validate). Everything
//! callmask does not implement is refused here with an rtpengine-style `error-reason`, so the
//! command logic never sees an option it would silently ignore.
//!
//! Keys and flag spellings follow rtpengine's `ng` documentation and what Kamailio's and
//! OpenSIPS's `rtpengine` modules put on the wire: Kamailio turns `replace-origin` into
//! `"replace": ["origin"]`, `ICE=remove` into `"ICE": "remove"`, `RTP/AVP` into
//! `"transport-protocol": "RTP/AVP"`, `direction=x` into `"direction": ["x"]`, bare words
//! (`trust-address`, `symmetric`) into `"flags": [...]`, and other `key=value` into a
//! `"key": "value"` entry.

use std::collections::BTreeMap;

use dsp::clamp::ClampMode;

use super::bencode::Value;

/// An NG command callmask implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `ping` → `pong`.
    Ping,
    /// `offer`: SDP from the `from-tag` party.
    Offer,
    /// `answer`: SDP from the `to-tag` party.
    Answer,
    /// `delete`: the call is over.
    Delete,
    /// `query`: one call's stats.
    Query,
    /// `list`: the Call-IDs of live calls.
    List,
    /// `block DTMF`: clamp DTMF toward the callee.
    BlockDtmf,
    /// `unblock DTMF`.
    UnblockDtmf,
    /// `start recording`.
    StartRecording,
    /// `stop recording`.
    StopRecording,
    /// `block media`: a party's (or every party's) media is not forwarded.
    BlockMedia,
    /// `unblock media`.
    UnblockMedia,
    /// `silence media`: a party's (or every party's) media is forwarded as silence.
    SilenceMedia,
    /// `unsilence media`.
    UnsilenceMedia,
}

impl Command {
    /// Every command, in declaration order (metric labels).
    pub const ALL: [Command; 14] = [
        Command::Ping,
        Command::Offer,
        Command::Answer,
        Command::Delete,
        Command::Query,
        Command::List,
        Command::BlockDtmf,
        Command::UnblockDtmf,
        Command::StartRecording,
        Command::StopRecording,
        Command::BlockMedia,
        Command::UnblockMedia,
        Command::SilenceMedia,
        Command::UnsilenceMedia,
    ];

    /// The command's wire name (also its metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Offer => "offer",
            Command::Answer => "answer",
            Command::Delete => "delete",
            Command::Query => "query",
            Command::List => "list",
            Command::BlockDtmf => "block DTMF",
            Command::UnblockDtmf => "unblock DTMF",
            Command::StartRecording => "start recording",
            Command::StopRecording => "stop recording",
            Command::BlockMedia => "block media",
            Command::UnblockMedia => "unblock media",
            Command::SilenceMedia => "silence media",
            Command::UnsilenceMedia => "unsilence media",
        }
    }

    fn from_wire(s: &[u8]) -> Option<Self> {
        Command::ALL
            .into_iter()
            .find(|c| c.as_str().as_bytes().eq_ignore_ascii_case(s))
    }
}

/// `record call`: what the controller asked of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordCall {
    /// `yes` / `on`: record (callmask records every call its recorder sinks see).
    On,
    /// `no` / `off`: the recorder path is muted for this call (secure mode).
    Off,
}

/// A parsed command with the options callmask acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Which command.
    pub command: Command,
    /// `call-id` (required by every command but `ping` and `list`).
    pub call_id: Option<Vec<u8>>,
    /// `from-tag`.
    pub from_tag: Option<Vec<u8>>,
    /// `to-tag`.
    pub to_tag: Option<Vec<u8>>,
    /// `sdp` (offer/answer).
    pub sdp: Option<Vec<u8>>,
    /// `transport-protocol` asked for the leg the SDP goes to: plain RTP or SDES-SRTP.
    pub transport_protocol: Option<TransportProtocol>,
    /// `SDES` has `off`: no SDES keys toward the leg the SDP goes to.
    pub sdes_off: bool,
    /// `label` of the `from-tag` party.
    pub label: Option<String>,
    /// `via-branch` (kept per leg, shown by `query`).
    pub via_branch: Option<String>,
    /// `record call`.
    pub record_call: Option<RecordCall>,
    /// `DTMF-security`: how DTMF is clamped once blocked.
    pub dtmf_security: Option<ClampMode>,
    /// `list`'s `limit`.
    pub limit: Option<usize>,
}

/// The media profile a controller asks for toward the leg an SDP is sent to (rtpengine's
/// `transport-protocol`; Kamailio's `RTP/AVP`, `RTP/SAVP` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportProtocol {
    /// `RTP/AVP(F)`: plain RTP (SRTP from the sender is terminated by callmask).
    Plain,
    /// `RTP/SAVP(F)`: SDES-SRTP with callmask's own key.
    Sdes,
}

/// Flags (`"flags": [...]`) accepted, each a no-op because callmask always behaves so:
/// `trust-address` (the SDP's address is used, then latched), `symmetric` (media is latched
/// to its source, RFC 4961), `strict-source`/`media-handover` are not accepted.
const FLAGS: [&str; 4] = [
    "trust-address",
    "symmetric",
    "port-latching",
    "no-rtcp-attribute",
];

/// `replace` items accepted: callmask always rewrites `o=` and the session `c=`.
const REPLACE: [&str; 4] = [
    "origin",
    "session-connection",
    "session connection",
    "sdp-version",
];

/// Keys accepted besides the ones parsed into [`Request`]: `received-from` (callmask trusts
/// the SDP and latches), `supports` (Kamailio announces `load limit`), `direction` (checked in
/// [`parse`]), `ICE`, `replace`, `flags`, `rtcp-mux` (checked), `delete delay` /
/// `delete-delay` (callmask deletes at once).
const OTHER_KEYS: [&str; 9] = [
    "received-from",
    "supports",
    "direction",
    "ICE",
    "replace",
    "flags",
    "delete delay",
    "delete-delay",
    "rtcp-mux",
];

/// Reads `dict` into a [`Request`]; `Err` is the `error-reason` to answer with.
pub fn parse(dict: &BTreeMap<Vec<u8>, Value>) -> Result<Request, String> {
    let command = match dict.get(&b"command"[..]) {
        Some(Value::Bytes(c)) => Command::from_wire(c).ok_or_else(|| {
            format!(
                "Unrecognized command '{}' (callmask implements: {})",
                String::from_utf8_lossy(c),
                Command::ALL.map(Command::as_str).join(", ")
            )
        })?,
        Some(_) => return Err("'command' is not a string".into()),
        None => return Err("No command given".into()),
    };
    let mut req = Request {
        command,
        call_id: None,
        from_tag: None,
        to_tag: None,
        sdp: None,
        transport_protocol: None,
        sdes_off: false,
        label: None,
        via_branch: None,
        record_call: None,
        dtmf_security: None,
        limit: None,
    };
    for (key, value) in dict {
        let k = std::str::from_utf8(key).map_err(|_| "Unsupported key (not UTF-8)".to_string())?;
        apply(&mut req, k, value)?;
    }
    Ok(req)
}

/// One option: a dictionary entry, or a `key=value` item of the `flags` list (how
/// controllers pass options they have no dedicated syntax for).
fn apply(req: &mut Request, k: &str, value: &Value) -> Result<(), String> {
    match k {
        "command" => {}
        "call-id" => req.call_id = Some(bytes_of(k, value)?.to_vec()),
        "from-tag" => req.from_tag = Some(bytes_of(k, value)?.to_vec()),
        "to-tag" => req.to_tag = Some(bytes_of(k, value)?.to_vec()),
        "sdp" => req.sdp = Some(bytes_of(k, value)?.to_vec()),
        "transport-protocol" => req.transport_protocol = Some(transport_of(text_of(k, value)?)?),
        "SDES" => {
            check_list(k, value, &["off"])?;
            req.sdes_off = true;
        }
        "label" => req.label = Some(text_of(k, value)?.to_owned()),
        "via-branch" => req.via_branch = Some(text_of(k, value)?.to_owned()),
        "record call" | "record-call" => {
            req.record_call = Some(record_call_of(text_of(k, value)?)?)
        }
        "DTMF-security" | "DTMF security" => {
            req.dtmf_security = Some(dtmf_security_of(text_of(k, value)?)?)
        }
        "limit" => match value {
            Value::Int(n) => req.limit = usize::try_from(*n).ok(),
            _ => req.limit = text_of(k, value)?.parse().ok(),
        },
        "ICE" => {
            let v = text_of(k, value)?;
            if !v.eq_ignore_ascii_case("remove") {
                return Err(format!(
                    "Unsupported ICE option '{v}' (callmask always removes ICE: use ICE=remove)"
                ));
            }
        }
        "flags" => apply_flags(req, value)?,
        "replace" => check_list(k, value, &REPLACE)?,
        "rtcp-mux" => check_list(k, value, &["demux", "reject"])?,
        "direction" => {
            // One media address per side: interface names are accepted, at most two.
            let n = value.as_list().map_or(1, <[Value]>::len);
            if n > 2 {
                return Err("'direction' names more than two interfaces".into());
            }
        }
        _ if OTHER_KEYS.contains(&k) => {}
        _ => return Err(format!("Unsupported option '{k}'")),
    }
    Ok(())
}

/// The `flags` list: each item a no-op flag callmask always honours ([`FLAGS`]), or a
/// `key=value` option applied as if it were a dictionary entry.
fn apply_flags(req: &mut Request, value: &Value) -> Result<(), String> {
    let items: Vec<&Value> = match value {
        Value::List(l) => l.iter().collect(),
        other => vec![other],
    };
    for item in items {
        let text = text_of("flags", item)?;
        match text.split_once('=') {
            Some((key, v)) if key != "flags" => apply(req, key, &Value::str(v))?,
            _ => check_list("flags", item, &FLAGS)?,
        }
    }
    Ok(())
}

fn transport_of(t: &str) -> Result<TransportProtocol, String> {
    match t.to_ascii_uppercase().as_str() {
        "RTP/AVP" | "RTP/AVPF" => Ok(TransportProtocol::Plain),
        "RTP/SAVP" | "RTP/SAVPF" => Ok(TransportProtocol::Sdes),
        _ => Err(format!(
            "Unsupported transport-protocol '{t}' (callmask: RTP/AVP, RTP/SAVP; no DTLS-SRTP)"
        )),
    }
}

fn record_call_of(v: &str) -> Result<RecordCall, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "on" => Ok(RecordCall::On),
        "no" | "off" => Ok(RecordCall::Off),
        other => Err(format!("Unsupported 'record call' value '{other}'")),
    }
}

fn dtmf_security_of(v: &str) -> Result<ClampMode, String> {
    match v.to_ascii_lowercase().as_str() {
        "silence" | "drop" => Ok(ClampMode::Silence),
        "tone" => Ok(ClampMode::FlatTone),
        other => Err(format!(
            "Unsupported DTMF-security mode '{other}' (callmask: silence, drop, tone)"
        )),
    }
}

fn bytes_of<'v>(key: &str, v: &'v Value) -> Result<&'v [u8], String> {
    v.as_bytes()
        .ok_or_else(|| format!("'{key}' is not a string"))
}

fn text_of<'v>(key: &str, v: &'v Value) -> Result<&'v str, String> {
    v.as_str()
        .ok_or_else(|| format!("'{key}' is not a UTF-8 string"))
}

/// Every item of list `key` (or a lone string) must be one of `allowed` (case-insensitive).
fn check_list(key: &str, v: &Value, allowed: &[&str]) -> Result<(), String> {
    let items: Vec<&Value> = match v {
        Value::List(l) => l.iter().collect(),
        other => vec![other],
    };
    for item in items {
        let s = text_of(key, item)?;
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(s)) {
            return Err(format!("Unsupported {key} item '{s}'"));
        }
    }
    Ok(())
}
