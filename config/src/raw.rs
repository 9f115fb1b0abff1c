//! The configuration file as written: serde structs that mirror the TOML, every field optional.
//!
//! These carry no meaning beyond shape: a missing key is `None` (the default applies), values
//! keep their TOML types (integers stay `i64` so that an out-of-range number reaches
//! [`crate::validate`] and gets a range message rather than a serde overflow message). Unknown
//! keys are refused (`deny_unknown_fields`); the loader also walks the document against
//! [`fields_of`] so that *every* unknown key is reported, not only the first.

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[pbx]`: the PBX / carrier side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pbx: Option<RawSide>,
    /// `[agents]`: the agents' side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<RawSide>,
    /// `[media]`: RTP relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<RawMedia>,
    /// `[masking]`: what is masked on the recorder path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masking: Option<RawMasking>,
    /// `[speech]`: the spoken-identifier recognizer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech: Option<RawSpeech>,
    /// `[secure]`: secure mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<RawSecure>,
    /// `[http]`: metrics, health and the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<RawHttp>,
    /// `[log]`: logging and PHI handling in logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<RawLog>,
    /// `[sip]`: SIP parser limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip: Option<RawSip>,
    /// `[ng]`: media-node mode (rtpengine NG control protocol).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ng: Option<RawNg>,
    /// `[limits]`: bounds on what one source or the whole process may hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<RawLimits>,
    /// `[shutdown]`: how `callmask run` stops on SIGTERM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<RawShutdown>,
    /// `[[recorder]]`: recorder sinks, several at once. Last so that it serializes after the
    /// plain tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorder: Option<Vec<RawRecorder>>,
}

/// `[pbx]` and `[agents]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSide {
    /// Address SIP listens on (UDP and TCP) for this side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Where requests arriving from the *other* side are sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Source networks allowed to send SIP on this side (CIDRs; absent: the peer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// SDES-SRTP on this side's leg: `mirror`, `require`, `optional`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srtp: Option<String>,
    /// SIP transport of this side: `udp+tcp` (default) or `tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// `[pbx.tls]` / `[agents.tls]`: certificates for `transport = "tls"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
}

/// `[pbx.tls]` and `[agents.tls]` (issue 14).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain callmask presents on this side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// PEM CA certificates that client certificates must chain to (absent: none asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<String>,
    /// PEM CA certificates the peer's server certificate must chain to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Also trust the bundled Mozilla roots (webpki-roots) for the peer's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_roots: Option<bool>,
    /// Name sent as SNI and checked in the peer's certificate (the peer is an address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// `[media]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMedia {
    /// `"START-END"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
    /// Seconds without RTP before a call is torn down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inactivity_timeout_s: Option<i64>,
    /// Media worker threads (absent: one per core).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<i64>,
    /// Audio codecs let through in forwarded offers (those callmask can decode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codecs: Option<Vec<String>>,
    /// What to do with an offer whose media callmask cannot decrypt (`reject`, `relay-muted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecodable: Option<String>,
}

/// `[masking]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMasking {
    /// Mask DTMF on the recorder path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtmf: Option<bool>,
    /// Mask spoken identifiers on the recorder path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech: Option<bool>,
    /// Recorder-path delay in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookahead_ms: Option<i64>,
    /// `pass | drop | flat-tone`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_dtmf: Option<String>,
    /// `silence | comfort-noise | tone`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}

/// `[speech]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpeech {
    /// `embedded | remote`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// `tiny.en | base`: which Whisper model the embedded engine runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Directory of the CTranslate2 Whisper model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<String>,
    /// Base URL of the remote engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_url: Option<String>,
    /// Worker count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<i64>,
    /// Model name sent to the remote engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_model: Option<String>,
    /// File holding the remote engine's API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_api_key_file: Option<String>,
}

/// `[secure]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecure {
    /// Keys the agent presses to enter secure mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtmf_trigger: Option<String>,
    /// Keys the agent presses to leave secure mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtmf_release: Option<String>,
}

/// `[http]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Listen address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Bearer token, inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `human | json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `trace | debug | info | warn | error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Log caller/callee numbers in clear.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reveal_numbers: Option<bool>,
    /// 64 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
}

/// `[sip]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSip {
    /// Largest message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<i64>,
    /// Most header fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<i64>,
    /// Longest header line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_line_bytes: Option<i64>,
    /// Directory for state kept across restarts (registration bindings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
}

/// `[ng]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNg {
    /// UDP address of the NG control socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Most `m=` lines one call's SDP may carry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams_per_call: Option<i64>,
    /// Most calls in progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<i64>,
    /// Most live SIP transactions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<i64>,
    /// Most registration bindings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registrations: Option<i64>,
    /// SIP requests per second from one source address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_requests_per_s: Option<i64>,
    /// New calls per second from one source address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_calls_per_s: Option<i64>,
    /// TCP connections from one source address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_connections_per_source: Option<i64>,
    /// TCP connections in total (both sides, in and out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_connections: Option<i64>,
    /// Seconds a TCP connection may go without completing a message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_idle_timeout_s: Option<i64>,
}

/// `[shutdown]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    /// Seconds to wait after SIGTERM for calls in progress to end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_timeout_s: Option<i64>,
}

/// One `[[recorder]]`: a flat union of every kind's keys; validation checks that each key
/// belongs to the `kind` given, so a `target` on a `wav` sink is reported rather than ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecorder {
    /// `wav | rtp | siprec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// wav: output directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// wav, siprec (fallback files): age recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypt_to: Option<Vec<String>>,
    /// wav: retention in days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i64>,
    /// wav: hash phone numbers in the JSON sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_numbers: Option<bool>,
    /// rtp: destination HOST:PORT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// rtp: `pcmu` (the only codec the sanitized fork sends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// rtp: SDES key file (`SUITE inline:KEY`); SRTP toward the target when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srtp_key_file: Option<String>,
    /// siprec: SRS URIs in failover order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srs: Option<Vec<String>>,
    /// siprec: per-SRS answer timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    /// siprec: seconds between keep-alive OPTIONS to the SRS (0: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_s: Option<i64>,
    /// siprec: seconds between OPTIONS probes of every SRS (0: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_s: Option<i64>,
    /// siprec: SDES-SRTP toward the SRS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srtp: Option<bool>,
    /// siprec: CAs for a TLS SRS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
    /// siprec: client certificate toward a TLS SRS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    /// siprec: its key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<String>,
    /// siprec: SNI and name verified in the SRS's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// siprec: directory for WAV files when every SRS fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_dir: Option<String>,
    /// siprec: local address of the SIP socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
}

/// The field names a serde struct accepts, read from its derived `Deserialize` impl, so the
/// unknown-key walk and the error hints can never drift from the structs above.
pub fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut grab = FieldGrabber(&[]);
    // The grabber always returns an error after recording; the result itself is irrelevant.
    let _ = T::deserialize(&mut grab);
    grab.0
}

struct FieldGrabber(&'static [&'static str]);

#[derive(Debug)]
struct Grabbed;

impl std::fmt::Display for Grabbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field list captured")
    }
}

impl std::error::Error for Grabbed {}

impl serde::de::Error for Grabbed {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        Grabbed
    }
}

impl<'de> serde::Deserializer<'de> for &mut FieldGrabber {
    type Error = Grabbed;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _v: V) -> Result<V::Value, Grabbed> {
        Err(Grabbed)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value, Grabbed> {
        self.0 = fields;
        Err(Grabbed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The fields accepted inside a top-level section, or `None` for an unknown section.
pub fn section_fields(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "pbx" | "agents" => fields_of::<RawSide>(),
        "pbx.tls" | "agents.tls" => fields_of::<RawTls>(),
        "media" => fields_of::<RawMedia>(),
        "masking" => fields_of::<RawMasking>(),
        "speech" => fields_of::<RawSpeech>(),
        "secure" => fields_of::<RawSecure>(),
        "http" => fields_of::<RawHttp>(),
        "log" => fields_of::<RawLog>(),
        "sip" => fields_of::<RawSip>(),
        "ng" => fields_of::<RawNg>(),
        "limits" => fields_of::<RawLimits>(),
        "shutdown" => fields_of::<RawShutdown>(),
        "recorder" => fields_of::<RawRecorder>(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_come_from_the_structs() {
        assert_eq!(
            fields_of::<RawMasking>(),
            &[
                "dtmf",
                "speech",
                "lookahead_ms",
                "agent_dtmf",
                "replacement"
            ]
        );
        for s in fields_of::<RawConfig>() {
            assert!(section_fields(s).is_some(), "section {s} has no field list");
        }
    }

    #[test]
    fn raw_parses_the_design_example() {
        let raw: RawConfig = toml::from_str(
            "[pbx]\nlisten = \"0.0.0.0:5060\"\n[[recorder]]\nkind = \"wav\"\ndir = \"/tmp\"\n",
        )
        .unwrap();
        assert_eq!(raw.pbx.unwrap().listen.as_deref(), Some("0.0.0.0:5060"));
        assert_eq!(raw.recorder.unwrap().len(), 1);
        assert!(toml::from_str::<RawConfig>("[pbx]\nlisen = \"x\"\n").is_err());
    }
}
