//! Newtypes for configuration values: each is built by `TryFrom` and can only hold a valid value.
//!
//! "Parse, don't validate": once a [`crate::Config`] exists, no code downstream checks ranges
//! again. Each `TryFrom` error is a [`ValueError`] saying what is wrong and what to write; the
//! loader adds the key, file and line.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::error::ValueError;

/// Declares a bounded integer newtype with `TryFrom<i64>`, `get()` and `Display`.
macro_rules! bounded {
    ($(#[$doc:meta])* $name:ident, $inner:ty, $lo:expr, $hi:expr, $unit:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name($inner);

        impl $name {
            /// Smallest accepted value.
            pub const MIN: $inner = $lo;
            /// Largest accepted value.
            pub const MAX: $inner = $hi;

            /// The value, in the unit its key names.
            pub fn get(self) -> $inner {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = ValueError;

            fn try_from(v: i64) -> Result<Self, ValueError> {
                if v < i64::from(Self::MIN) || v > i64::from(Self::MAX) {
                    return Err(ValueError::new(
                        format!("{v} is out of range"),
                        format!("use a value from {} to {} ({})", Self::MIN, Self::MAX, $unit),
                    ));
                }
                // In range of $inner by the check above.
                <$inner>::try_from(v).map(Self).map_err(|_| {
                    ValueError::new(format!("{v} is out of range"), "use a smaller value")
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

bounded!(
    /// Recorder-path look-ahead: how long audio waits before it leaves for a recorder, so that a
    /// detector that decides late can still mute it. ~80 ms suffices for DTMF; spoken-identifier
    /// masking needs seconds.
    LookaheadMs, u16, 0, 10_000, "milliseconds"
);

impl LookaheadMs {
    /// Default with spoken-identifier masking on: measured on the dev corpus, 8 s leaves the
    /// recognizer enough context and time (1/61 identifiers leaked at 8 s, 15 at 5 s, 33 at
    /// 3 s); recorders tolerate the delay.
    pub const SPEECH_DEFAULT: LookaheadMs = LookaheadMs(8_000);
    /// Default for DTMF-only masking: the receiver decides within ~60 ms of a tone's onset.
    pub const DTMF_DEFAULT: LookaheadMs = LookaheadMs(80);

    /// The default for a deployment with `masking.speech` on or off.
    pub fn default_for(speech: bool) -> LookaheadMs {
        if speech {
            Self::SPEECH_DEFAULT
        } else {
            Self::DTMF_DEFAULT
        }
    }

    /// The look-ahead as a duration.
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0))
    }
}

bounded!(
    /// Seconds without RTP on either leg after which a call is torn down and its ports returned.
    InactivityTimeoutSecs, u32, 1, 86_400, "seconds"
);
bounded!(
    /// Largest SIP message accepted; larger ones get 513 (UDP) or close the TCP connection.
    MaxMessageBytes, u32, 1_024, 1_048_576, "bytes"
);
bounded!(
    /// Most header fields accepted in one SIP message (a guard against header floods).
    MaxHeaders, u16, 8, 1_024, "header fields"
);
bounded!(
    /// Longest single SIP header line accepted.
    MaxLineBytes, u32, 256, 65_536, "bytes"
);
bounded!(
    /// Most media streams (`m=` lines) in one call's SDP: each active one holds two RTP/RTCP
    /// port pairs, so this bounds what one INVITE can take from the pool.
    StreamsPerCall, u16, 1, 64, "m= lines"
);
bounded!(
    /// A bound on a table in `[limits]` (calls, transactions, registrations, connections).
    LimitCount, u32, 1, 10_000_000, "entries"
);
bounded!(
    /// A per-source rate in `[limits]`, per second (the burst allowed is twice this).
    LimitRate, u32, 1, 1_000_000, "per second"
);
bounded!(
    /// Seconds a TCP connection may go without completing a SIP message before it is closed.
    TcpIdleTimeoutSecs, u32, 1, 86_400, "seconds"
);
bounded!(
    /// Seconds `callmask run` waits, after SIGTERM, for the calls in progress to end before it
    /// closes their recordings and exits (0: close at once).
    DrainTimeoutSecs, u32, 0, 86_400, "seconds"
);
bounded!(
    /// Days a WAV recording is kept before the retention sweeper deletes it.
    RetentionDays, u16, 1, 36_500, "days"
);
bounded!(
    /// How long a SIPREC SRS may take to answer before the next one in the list is tried.
    SrsTimeoutMs, u32, 100, 60_000, "milliseconds"
);
bounded!(
    /// Seconds between the OPTIONS that check an SRS is there: in an established session
    /// (`keepalive_s`), or between calls (`probe_s`); 0: never.
    SrsKeepaliveSecs, u32, 0, 3_600, "seconds"
);
bounded!(
    /// Recognizer worker threads (embedded engine) or concurrent requests (remote engine).
    Workers, u16, 1, 256, "workers"
);

/// An RTP/RTCP port range, `START-END` inclusive: even start (RTP on even ports, RTCP on the
/// odd one above, RFC 3550 §11) and room for at least two pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// Builds a range from its first and last port (inclusive).
    pub fn new(start: u16, end: u16) -> Result<Self, ValueError> {
        const FIX: &str =
            "write \"START-END\" with an even START and at least 4 ports, e.g. \"30000-40000\"";
        if start == 0 {
            return Err(ValueError::new("port 0 cannot start a range", FIX));
        }
        if end < start {
            // Reversed, not small: say so, or the admin hunts for a size problem.
            return Err(ValueError::new(
                format!("start {start} is above end {end}"),
                format!("swap them: \"{end}-{start}\""),
            ));
        }
        if start % 2 != 0 {
            return Err(ValueError::new(
                format!("the range starts at odd port {start} (RTP uses even ports)"),
                FIX,
            ));
        }
        if u32::from(end) - u32::from(start) + 1 < 4 {
            return Err(ValueError::new(
                format!("{start}-{end} holds fewer than 4 ports"),
                FIX,
            ));
        }
        Ok(Self { start, end })
    }

    /// First port (even).
    pub fn start(self) -> u16 {
        self.start
    }

    /// Last port (inclusive).
    pub fn end(self) -> u16 {
        self.end
    }

    /// Number of ports in the range.
    pub fn len(self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Always false: a range holds at least 4 ports.
    pub fn is_empty(self) -> bool {
        false
    }

    /// True when `port` lies in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl TryFrom<&str> for PortRange {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        const FIX: &str =
            "write \"START-END\" with an even START and at least 4 ports, e.g. \"30000-40000\"";
        let Some((a, b)) = s.split_once('-') else {
            return Err(ValueError::new(format!("{s:?} is not a port range"), FIX));
        };
        let port = |p: &str| -> Result<u16, ValueError> {
            let n: u32 = p
                .trim()
                .parse()
                .map_err(|_| ValueError::new(format!("{s:?} is not a port range"), FIX))?;
            u16::try_from(n).map_err(|_| {
                ValueError::new(
                    format!("port {n} is above 65535"),
                    "use ports from 1 to 65535",
                )
            })
        };
        Self::new(port(a)?, port(b)?)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

fn socket_addr(s: &str, example: &str) -> Result<SocketAddr, ValueError> {
    SocketAddr::from_str(s.trim()).map_err(|_| {
        ValueError::new(
            format!("{s:?} is not an IP address with a port"),
            format!("write IP:PORT, e.g. \"{example}\" (IPv6: \"[::1]:5060\"; host names are not resolved)"),
        )
    })
}

/// An address to bind a listener to. Port 0 asks the OS for a free port (tests use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenAddr(SocketAddr);

impl ListenAddr {
    /// The socket address.
    pub fn get(self) -> SocketAddr {
        self.0
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(a: SocketAddr) -> Self {
        Self(a)
    }
}

impl TryFrom<&str> for ListenAddr {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        socket_addr(s, "0.0.0.0:5060").map(Self)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A SIP peer to send requests to: a concrete address (not 0.0.0.0, not port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(SocketAddr);

impl PeerAddr {
    /// The socket address.
    pub fn get(self) -> SocketAddr {
        self.0
    }
}

impl TryFrom<SocketAddr> for PeerAddr {
    type Error = ValueError;

    fn try_from(a: SocketAddr) -> Result<Self, ValueError> {
        if a.ip().is_unspecified() || a.port() == 0 {
            return Err(ValueError::new(
                format!("{a} cannot be sent to"),
                "write the peer's own IP address and port, e.g. \"10.0.0.5:5060\"",
            ));
        }
        Ok(Self(a))
    }
}

impl TryFrom<&str> for PeerAddr {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        Self::try_from(socket_addr(s, "10.0.0.5:5060")?)
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A source network for SIP access control (`pbx.allow`, `agents.allow`): `ADDR/PREFIX`, or a
/// bare address meaning that one host. Host bits must be clear (`10.0.0.0/8`, not
/// `10.0.0.5/8`), so a typo that widens or narrows the network is caught, not guessed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network holding exactly `ip`.
    pub fn host(ip: IpAddr) -> Self {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Self { addr: ip, prefix }
    }

    /// The network address.
    pub fn addr(self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 source (`::ffff:a.b.c.d`, what a
    /// dual-stack socket reports) matches the IPv4 network it maps.
    pub fn contains(self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// Whether this network is every address (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(self) -> bool {
        self.prefix == 0
    }
}

impl TryFrom<&str> for Cidr {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        const EXAMPLE: &str = "write a network as \"10.0.0.0/24\" or one host as \"10.0.0.5\"";
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().map_err(|_| {
            ValueError::new(format!("{s:?} is not an IP address or network"), EXAMPLE)
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(ValueError::new(
                        format!("{s:?} has a prefix length that is not 0 to {max}"),
                        EXAMPLE,
                    ))
                }
            },
        };
        let net = Self { addr, prefix };
        let clear = match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        if clear != addr {
            return Err(ValueError::new(
                format!("{s:?} has host bits set after the prefix"),
                format!("write the network address: \"{clear}/{prefix}\""),
            ));
        }
        Ok(net)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Declares a closed set of string choices with `TryFrom<&str>`, `as_str()` and `Display`.
macro_rules! choice {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every accepted spelling, in documentation order.
            pub const ALL: &'static [&'static str] = &[$($text),+];

            /// The spelling used in the configuration file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ValueError;

            fn try_from(s: &str) -> Result<Self, ValueError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(ValueError::new(
                        format!("{s:?} is not one of the choices"),
                        format!("use one of: {}", Self::ALL.join(", ")),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice!(
    /// What the agent hears when the caller presses a key (the live path has no look-ahead,
    /// so `drop` and `flat-tone` may leak at most one 20 ms frame of a tone).
    AgentDtmfMode {
        /// Transparent: the agent hears the tones (the default; changes nothing for the agent).
        Pass = "pass",
        /// RFC 4733 events removed, in-band tones clamped to silence.
        Drop = "drop",
        /// The agent hears that a key was pressed, not which.
        FlatTone = "flat-tone",
    }
);

choice!(
    /// SDES-SRTP on one side's leg (`pbx.srtp`, `agents.srtp`). callmask terminates SRTP per
    /// leg with keys of its own; the recorder path always hears plaintext.
    SrtpMode {
        /// The leg speaks what it was offered: SRTP toward it when the other side offered
        /// SRTP, plain when plain (the default).
        Mirror = "mirror",
        /// SRTP on this leg always: a plain offer from this side is refused 488, and offers
        /// toward it carry callmask's `a=crypto` even when the other side is plain.
        Require = "require",
        /// Plain RTP toward this leg (SRTP from the other side is decrypted and sent plain);
        /// SRTP offered from this side is still accepted and terminated.
        Optional = "optional",
    }
);

choice!(
    /// SIP transport of one side (`pbx.transport`, `agents.transport`; issue 14).
    SideTransport {
        /// SIP over UDP and TCP on the side's `listen` address; a request leaves on the
        /// transport it arrived on (the default).
        UdpTcp = "udp+tcp",
        /// SIP over TLS only (`listen` is a TLS listener, RFC 3261 §26): requests toward the
        /// side go over TLS, plaintext SIP on that side is not accepted.
        Tls = "tls",
    }
);

choice!(
    /// What callmask does with an offer whose media it cannot decrypt (`media.undecodable`):
    /// SRTP it cannot terminate (RTP/SAVP(F) without a supported `a=crypto`, DTLS-SRTP). Its
    /// recorder tap would otherwise hear ciphertext.
    UndecodableMode {
        /// Answer the offer 488 Not Acceptable Here (the default: nothing unrecordable
        /// gets through).
        Reject = "reject",
        /// Relay it end to end, keys untouched, with the recorder path muted (silence, marked
        /// fail-closed) and the muted time counted.
        RelayMuted = "relay-muted",
    }
);

choice!(
    /// What a masked span of the recorder path is replaced with.
    Replacement {
        /// Digital silence.
        Silence = "silence",
        /// Low-level noise, so listeners do not think the line dropped.
        ComfortNoise = "comfort-noise",
        /// A flat tone outside the DTMF band, so the gap is obvious on playback.
        Tone = "tone",
    }
);

choice!(
    /// Log line format.
    LogFormat {
        /// Readable text for a terminal or journald.
        Human = "human",
        /// One JSON object per line, for log shippers.
        Json = "json",
    }
);

choice!(
    /// Least severe level that is logged (`RUST_LOG`, when set, takes precedence in the binary).
    LogLevel {
        /// Everything, including per-packet traces.
        Trace = "trace",
        /// Diagnostic detail.
        Debug = "debug",
        /// Normal operation.
        Info = "info",
        /// Things an admin should look at.
        Warn = "warn",
        /// Failures only.
        Error = "error",
    }
);

choice!(
    /// Which recognizer masks spoken identifiers.
    SpeechEngine {
        /// Whisper in-process, on the CPU (`speech.model` says which).
        Embedded = "embedded",
        /// An OpenAI-compatible `/v1/audio/transcriptions` server.
        Remote = "remote",
    }
);

choice!(
    /// Which Whisper model the embedded engine runs (both CTranslate2 conversions from PyPI,
    /// installed by scripts/setup_asr.sh; int8, greedy, one thread per worker).
    SpeechModel {
        /// Whisper tiny.en: English-only, 39 M parameters; the cheapest.
        TinyEn = "tiny.en",
        /// Whisper base: multilingual (decoded with English forced), 74 M parameters; hears
        /// more numbers on unfamiliar voices at roughly twice the CPU.
        Base = "base",
    }
);

impl SpeechModel {
    /// Where scripts/setup_asr.sh installs this model (the `speech.model_dir` default).
    pub fn default_dir(self) -> &'static str {
        match self {
            SpeechModel::TinyEn => crate::model::DEFAULT_MODEL_DIR,
            SpeechModel::Base => crate::model::DEFAULT_BASE_MODEL_DIR,
        }
    }

    /// The model's vocabulary has language tokens (the engine forces English).
    pub fn is_multilingual(self) -> bool {
        self == SpeechModel::Base
    }

    /// The engine's name in reports and metrics (`whisper-tiny.en`, `whisper-base`).
    pub fn engine_label(self) -> &'static str {
        match self {
            SpeechModel::TinyEn => "whisper-tiny.en",
            SpeechModel::Base => "whisper-base",
        }
    }
}

choice!(
    /// Codec of the sanitized RTP that the `rtp` recorder sends.
    RtpCodec {
        /// G.711 µ-law (PCMU, payload type 0): the fork carries decoded, sanitized PCM, so it
        /// is re-encoded as PCMU whatever the call negotiated (`"original"` is refused).
        Pcmu = "pcmu",
    }
);

choice!(
    /// An audio codec callmask can decode for the recorder tap, and so mask (`media.codecs`).
    /// Offers are forwarded with only these (plus `telephone-event`), so no call carries audio
    /// that the recorder path cannot hear.
    MediaCodec {
        /// G.711 µ-law (RFC 3551 PT 0).
        Pcmu = "pcmu",
        /// G.711 A-law (RFC 3551 PT 8).
        Pcma = "pcma",
        /// G.722 wideband (RFC 3551 PT 9, 64 kbit/s), recorded from its 8 kHz low band.
        G722 = "g722",
        /// Opus (RFC 7587), decoded by libopus at 8 kHz.
        Opus = "opus",
    }
);

impl MediaCodec {
    /// Every codec callmask can decode: the default of `media.codecs`.
    pub const DECODABLE: [MediaCodec; 4] = [
        MediaCodec::Opus,
        MediaCodec::G722,
        MediaCodec::Pcmu,
        MediaCodec::Pcma,
    ];
}

choice!(
    /// Kind of a `[[recorder]]` sink.
    RecorderKind {
        /// Stereo WAV files per call, optionally age-encrypted.
        Wav = "wav",
        /// Sanitized RTP to a host:port.
        Rtp = "rtp",
        /// RFC 7866 session recording client toward an SRS.
        Siprec = "siprec",
    }
);

/// A 32-byte key for keyed hashing of phone numbers in logs and sidecars, written as 64 hex
/// digits. A fixed key makes hashes comparable across restarts and machines.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HashKey([u8; 32]);

impl HashKey {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for HashKey {
    fn from(b: [u8; 32]) -> Self {
        Self(b)
    }
}

impl TryFrom<&str> for HashKey {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        // Never echo the value: it is a secret.
        let fix = "write 64 hex digits (32 random bytes), e.g. from `openssl rand -hex 32`";
        let b = s.as_bytes();
        if b.len() != 64 || !b.iter().all(u8::is_ascii_hexdigit) {
            return Err(ValueError::new(
                format!(
                    "the key is not 64 hex digits (it has {} characters)",
                    s.chars().count()
                ),
                fix,
            ));
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let hex = |c: u8| -> u8 {
                match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    _ => c - b'A' + 10,
                }
            };
            out[i] = (hex(pair[0]) << 4) | hex(pair[1]);
        }
        Ok(Self(out))
    }
}

impl HashKey {
    /// The key as 64 lower-case hex digits (the form the file takes).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// A bearer token for the HTTP API (RFC 6750 `b64token` characters, at least 16 of them).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BearerToken(String);

impl BearerToken {
    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for BearerToken {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "-._~+/".contains(c);
        let body = s.trim_end_matches('=');
        if s.len() < 16 || body.is_empty() || !body.chars().all(ok_char) {
            return Err(ValueError::new(
                "the token is shorter than 16 characters or holds characters a bearer token cannot",
                "use at least 16 characters from A-Z a-z 0-9 - . _ ~ + /, e.g. from `openssl rand -hex 32`",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// An age X25519 recipient (`age1…`, Bech32 with a valid checksum), as `age-keygen` prints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgeRecipient(String);

impl AgeRecipient {
    /// The recipient string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const BECH32_CHARSET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// BIP 173 checksum over the human-readable part and the data values.
fn bech32_checksum_ok(hrp: &str, data: &[u8]) -> bool {
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let mut chk: u32 = 1;
    let mut step = |v: u8| {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    };
    for b in hrp.bytes() {
        step(b >> 5);
    }
    step(0);
    for b in hrp.bytes() {
        step(b & 0x1f);
    }
    for &d in data {
        step(d);
    }
    chk == 1
}

impl TryFrom<&str> for AgeRecipient {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        let fix = "use the public key that `age-keygen` prints: \"age1\" followed by 58 lower-case characters";
        let shown = format!("{}…", s.chars().take(12).collect::<String>());
        let Some(data) = s.strip_prefix("age1") else {
            return Err(ValueError::new(
                format!("{shown:?} is not an age X25519 recipient (it must start with \"age1\")"),
                fix,
            ));
        };
        let values: Option<Vec<u8>> = data
            .chars()
            .map(|c| BECH32_CHARSET.find(c).and_then(|i| u8::try_from(i).ok()))
            .collect();
        let Some(values) = values.filter(|v| v.len() == 58) else {
            return Err(ValueError::new(
                format!("{shown:?} has the wrong length or characters for an age recipient"),
                fix,
            ));
        };
        if !bech32_checksum_ok("age", &values) {
            return Err(ValueError::new(
                format!("{shown:?} fails its checksum (a typo or a truncated copy)"),
                fix,
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for AgeRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SIP or SIPS URI of a session recording server, e.g. `sip:srs@10.0.0.8:5060`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipUri(String);

impl SipUri {
    /// The URI text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for SipUri {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        let rest = s.strip_prefix("sip:").or_else(|| s.strip_prefix("sips:"));
        let host = rest.map(|r| r.rsplit('@').next().unwrap_or(r));
        let ok = match host {
            Some(h) => {
                !h.is_empty()
                    && !h.starts_with(':')
                    && !h.starts_with(';')
                    && !s
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
            }
            None => false,
        };
        if !ok {
            return Err(ValueError::new(
                format!("{s:?} is not a SIP URI"),
                "write sip:HOST[:PORT] or sip:USER@HOST[:PORT], e.g. \"sip:srs@10.0.0.8:5060\"",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host name or IP address with a port, e.g. `recorder.example:40000` or `[::1]:40000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    /// Host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port, never 0.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl TryFrom<&str> for HostPort {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        let bad = || {
            ValueError::new(
                format!("{s:?} is not HOST:PORT"),
                "write HOST:PORT with a port from 1 to 65535, e.g. \"10.0.0.7:40000\" or \"[::1]:40000\"",
            )
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
            h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (h, p)
        } else {
            let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
            let name_ok = !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !name_ok {
                return Err(bad());
            }
            (h, p)
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// An `http://` or `https://` base URL (the remote recognizer).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl(String);

impl HttpUrl {
    /// The URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for HttpUrl {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"));
        let ok = rest.is_some_and(|r| {
            !r.is_empty()
                && !r.starts_with('/')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        });
        if !ok {
            return Err(ValueError::new(
                format!("{s:?} is not an http(s) URL"),
                "write the server's base URL, e.g. \"http://127.0.0.1:8000\"",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The model name sent to the remote recognizer (`model` form field): servers name theirs
/// differently ("whisper-1", "Systran/faster-whisper-tiny.en").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteModel(String);

impl RemoteModel {
    /// What OpenAI-compatible servers usually accept.
    pub const DEFAULT: &'static str = "whisper-1";

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RemoteModel {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl TryFrom<&str> for RemoteModel {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        let ok = !s.is_empty() && s.len() <= 128 && s.chars().all(|c| !c.is_control() && c != '"');
        if !ok {
            return Err(ValueError::new(
                format!("{s:?} cannot be sent as a model name"),
                "write the name the server lists, 1–128 characters without quotes, e.g. \"whisper-1\"",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for RemoteModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DTMF key sequence (1–16 of `0-9 * # A-D`) that agents press to enter or leave secure mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DtmfSequence(String);

impl DtmfSequence {
    /// The keys, upper-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for DtmfSequence {
    type Error = ValueError;

    fn try_from(s: &str) -> Result<Self, ValueError> {
        let up = s.to_ascii_uppercase();
        let ok = (1..=16).contains(&up.len())
            && up
                .chars()
                .all(|c| c.is_ascii_digit() || "*#ABCD".contains(c));
        if !ok {
            return Err(ValueError::new(
                "this is not a DTMF sequence of 1 to 16 keys",
                "use the keys 0-9 * # A-D, e.g. \"*7#\"",
            ));
        }
        Ok(Self(up))
    }
}

impl fmt::Display for DtmfSequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_networks_and_hosts() {
        let net = Cidr::try_from("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        // A dual-stack socket reports IPv4 peers as mapped IPv6.
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        let host = Cidr::try_from("127.0.0.1").unwrap();
        assert_eq!(host.to_string(), "127.0.0.1/32");
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::try_from("0.0.0.0/0").unwrap().is_everything());
        let v6 = Cidr::try_from("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn cidr_errors_say_what_to_write() {
        let e = Cidr::try_from("10.0.0.5/8").unwrap_err();
        assert!(e.problem.contains("host bits"), "{}", e.problem);
        assert!(e.fix.contains("10.0.0.0/8"), "{}", e.fix);
        assert!(Cidr::try_from("10.0.0.0/33")
            .unwrap_err()
            .problem
            .contains("0 to 32"));
        assert!(Cidr::try_from("pbx.example")
            .unwrap_err()
            .fix
            .contains("10.0.0.0/24"));
    }

    #[test]
    fn port_range_rules() {
        let r = PortRange::try_from("30000-40000").unwrap();
        assert_eq!((r.start(), r.end(), r.len()), (30000, 40000, 10001));
        assert!(PortRange::try_from("30001-40000").is_err());
        assert!(PortRange::try_from("30000-30002").is_err());
        assert!(PortRange::try_from("30000-30003").is_ok());
        assert!(PortRange::try_from("30000-70000").is_err());
        assert!(PortRange::try_from("0-10").is_err());
        assert!(PortRange::try_from("abc").is_err());
        assert_eq!(r.to_string(), "30000-40000");
    }

    /// Issue 12 item 9: a reversed range is reported as reversed, not as too small.
    #[test]
    fn reversed_port_range_says_swap() {
        let e = PortRange::try_from("40000-30000").unwrap_err();
        let text = format!("{e:?}");
        assert!(text.contains("start 40000 is above end 30000"), "{text}");
        assert!(text.contains("swap them"), "{text}");
        assert!(!text.contains("fewer than"), "{text}");
        let e = PortRange::try_from("30001-30000").unwrap_err();
        assert!(format!("{e:?}").contains("is above end"), "{e:?}");
    }

    #[test]
    fn lookahead_range() {
        assert_eq!(LookaheadMs::try_from(0).unwrap().get(), 0);
        assert_eq!(LookaheadMs::try_from(10_000).unwrap().get(), 10_000);
        let e = LookaheadMs::try_from(20_000).unwrap_err();
        assert_eq!(e.problem, "20000 is out of range");
        assert_eq!(e.fix, "use a value from 0 to 10000 (milliseconds)");
        assert!(LookaheadMs::try_from(-1).is_err());
    }

    #[test]
    fn age_recipient_checksum() {
        // From the age README (a published example public key).
        let good = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
        assert!(AgeRecipient::try_from(good).is_ok());
        let typo = good.replace("ql3z", "ql3y");
        assert!(AgeRecipient::try_from(typo.as_str()).is_err());
        assert!(AgeRecipient::try_from("age1short").is_err());
        assert!(AgeRecipient::try_from("ssh-ed25519 AAAA").is_err());
    }

    #[test]
    fn addresses() {
        assert!(ListenAddr::try_from("0.0.0.0:5060").is_ok());
        assert!(ListenAddr::try_from("[::]:5060").is_ok());
        assert!(ListenAddr::try_from("localhost:5060").is_err());
        assert!(PeerAddr::try_from("0.0.0.0:5060").is_err());
        assert!(PeerAddr::try_from("10.0.0.5:0").is_err());
        assert!(PeerAddr::try_from("10.0.0.5:5060").is_ok());
        let hp = HostPort::try_from("rec.example:40000").unwrap();
        assert_eq!(hp.to_string(), "rec.example:40000");
        let v6 = HostPort::try_from("[::1]:40000").unwrap();
        assert_eq!(v6.to_string(), "[::1]:40000");
        assert!(HostPort::try_from("rec.example").is_err());
        assert!(HostPort::try_from("rec.example:0").is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let k =
            HashKey::try_from("00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF")
                .unwrap();
        assert_eq!(format!("{k:?}"), "HashKey(<redacted>)");
        assert_eq!(HashKey::try_from(k.to_hex().as_str()).unwrap(), k);
        assert!(HashKey::try_from("00").is_err());
        let t = BearerToken::try_from("0123456789abcdef-secret").unwrap();
        assert!(!format!("{t:?}").contains("secret"));
        assert!(BearerToken::try_from("short").is_err());
        assert!(BearerToken::try_from("has space in it here").is_err());
    }

    #[test]
    fn choices_list_alternatives() {
        assert_eq!(
            AgentDtmfMode::try_from("flat-tone").unwrap(),
            AgentDtmfMode::FlatTone
        );
        let e = AgentDtmfMode::try_from("mute").unwrap_err();
        assert_eq!(e.fix, "use one of: pass, drop, flat-tone");
    }

    #[test]
    fn misc_strings() {
        assert!(SipUri::try_from("sip:srs@10.0.0.8:5060").is_ok());
        assert!(SipUri::try_from("sips:srs.example").is_ok());
        assert!(SipUri::try_from("http://x").is_err());
        assert!(SipUri::try_from("sip:").is_err());
        assert!(HttpUrl::try_from("http://127.0.0.1:8000").is_ok());
        assert!(HttpUrl::try_from("ftp://x").is_err());
        assert_eq!(DtmfSequence::try_from("*7#").unwrap().as_str(), "*7#");
        assert_eq!(DtmfSequence::try_from("a1").unwrap().as_str(), "A1");
        assert!(DtmfSequence::try_from("").is_err());
        assert!(DtmfSequence::try_from("12x").is_err());
    }
}
