//! The validated configuration: plain structs of newtypes, with the documented defaults.
//!
//! A `Config` can only be built from valid values, so the proxy never re-checks a range.
//! [`Config::default`] is what `callmask run` uses with no file; `examples/callmask.toml`
//! spells out the same values with the reasons behind them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::raw::{
    RawConfig, RawHttp, RawLimits, RawLog, RawMasking, RawMedia, RawNg, RawRecorder, RawSecure,
    RawShutdown, RawSide, RawSip, RawSpeech, RawTls,
};
use crate::types::{
    AgeRecipient, AgentDtmfMode, BearerToken, Cidr, DrainTimeoutSecs, DtmfSequence, HashKey,
    HostPort, HttpUrl, InactivityTimeoutSecs, LimitCount, LimitRate, ListenAddr, LogFormat,
    LogLevel, LookaheadMs, MaxHeaders, MaxLineBytes, MaxMessageBytes, MediaCodec, PeerAddr,
    PortRange, RecorderKind, RemoteModel, Replacement, RetentionDays, RtpCodec, SideTransport,
    SipUri, SpeechEngine, SpeechModel, SrsKeepaliveSecs, SrsTimeoutMs, SrtpMode, StreamsPerCall,
    TcpIdleTimeoutSecs, UndecodableMode, Workers,
};

/// The effective callmask configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// The PBX / carrier side.
    pub pbx: PbxConfig,
    /// The agents' side.
    pub agents: AgentsConfig,
    /// RTP relay.
    pub media: MediaConfig,
    /// Recorder-path masking.
    pub masking: MaskingConfig,
    /// Spoken-identifier recognizer.
    pub speech: SpeechConfig,
    /// Secure mode (recorder muted on request).
    pub secure: SecureConfig,
    /// Recorder sinks (`[[recorder]]`); empty by default, and the binary warns about it.
    pub recorders: Vec<RecorderConfig>,
    /// HTTP listener for metrics, health and the API.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// SIP parser limits.
    pub sip: SipConfig,
    /// `[limits]`: bounds on calls, streams, transactions, sources.
    pub limits: LimitsConfig,
    /// Media-node mode (rtpengine NG control protocol).
    pub ng: NgConfig,
    /// `[shutdown]`: draining on SIGTERM.
    pub shutdown: ShutdownConfig,
}

/// `[shutdown]`: how `callmask run` stops on SIGTERM (a second SIGTERM or ctrl-c stops at
/// once; recordings are closed either way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// After SIGTERM, new calls get 503 and the calls in progress have this long to end
    /// before their recordings are closed and the process exits. Default 30 s.
    pub drain_timeout_s: DrainTimeoutSecs,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_s: DrainTimeoutSecs::try_from(30).expect("30 s is in range"),
        }
    }
}

/// `[ng]`: media-node mode. Off by default: the NG protocol has no authentication, so the
/// socket is opened only when an admin names an address (keep it on loopback or a private
/// network between Kamailio/OpenSIPS and callmask).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NgConfig {
    /// UDP address of the NG control socket (rtpengine's default port is 2223); `None`
    /// (default): media-node mode off.
    pub listen: Option<ListenAddr>,
}

fn any_v4(port: u16) -> ListenAddr {
    ListenAddr::from(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
}

/// `[pbx]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbxConfig {
    /// SIP (UDP and TCP) for the PBX side. Default `0.0.0.0:5060`.
    pub listen: ListenAddr,
    /// Where requests arriving from the agents side go. Default none: such requests are
    /// answered 503 and the binary says so at startup.
    pub peer: Option<PeerAddr>,
    /// `allow`: source networks allowed to send SIP on this side. `None`: the side's peer
    /// only (closed by default; in registration mode the agents side then accepts no one).
    pub allow: Option<Vec<Cidr>>,
    /// SDES-SRTP on the PBX leg. Default `mirror`.
    pub srtp: SrtpMode,
    /// SIP transport of this side. Default `udp+tcp`.
    pub transport: SideTransport,
    /// `[pbx.tls]`: set (and only set) when `transport = "tls"`.
    pub tls: Option<TlsConfig>,
}

impl Default for PbxConfig {
    fn default() -> Self {
        Self {
            listen: any_v4(5060),
            peer: None,
            allow: None,
            srtp: SrtpMode::Mirror,
            transport: SideTransport::UdpTcp,
            tls: None,
        }
    }
}

/// `[agents]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentsConfig {
    /// SIP (UDP and TCP) for the agents side. Default `0.0.0.0:5062`.
    pub listen: ListenAddr,
    /// Trunk mode: the single peer (ACD/SBC) that requests from the PBX side go to.
    /// `None` (default): registration mode, agents' phones REGISTER through callmask.
    pub peer: Option<PeerAddr>,
    /// `allow`: source networks allowed to send SIP on this side. `None`: the side's peer
    /// only (closed by default; in registration mode the agents side then accepts no one).
    pub allow: Option<Vec<Cidr>>,
    /// SDES-SRTP on the agents' leg. Default `mirror`.
    pub srtp: SrtpMode,
    /// SIP transport of this side. Default `udp+tcp`.
    pub transport: SideTransport,
    /// `[agents.tls]`: set (and only set) when `transport = "tls"`.
    pub tls: Option<TlsConfig>,
}

/// `[pbx.tls]` / `[agents.tls]`: SIP over TLS on one side (issue 14). The files were found
/// readable and holding PEM blocks at load; the proxy parses them (and checks that the key
/// matches the certificate) before it binds anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain callmask presents (server side, and as a client certificate
    /// toward the peer).
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates a connecting client's certificate must chain to; `None`: no client
    /// certificate is asked for.
    pub client_ca_file: Option<PathBuf>,
    /// PEM CA certificates the peer's server certificate must chain to (outbound).
    pub ca_file: Option<PathBuf>,
    /// Also trust the bundled Mozilla root set (webpki-roots) for the peer. Default false.
    pub system_roots: bool,
    /// Name sent as SNI and verified in the peer's certificate; `None`: the peer's IP address
    /// is verified (an IP SAN) and no SNI is sent.
    pub server_name: Option<String>,
}

impl TlsConfig {
    fn to_raw(&self) -> RawTls {
        RawTls {
            cert_file: Some(path_str(&self.cert_file)),
            key_file: Some(path_str(&self.key_file)),
            client_ca_file: self.client_ca_file.as_deref().map(path_str),
            ca_file: self.ca_file.as_deref().map(path_str),
            system_roots: Some(self.system_roots),
            server_name: self.server_name.clone(),
        }
    }
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            listen: any_v4(5062),
            peer: None,
            allow: None,
            srtp: SrtpMode::Mirror,
            transport: SideTransport::UdpTcp,
            tls: None,
        }
    }
}

/// `[media]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// RTP/RTCP port range. Default `30000-40000` (2,500 calls at 4 ports each).
    pub ports: PortRange,
    /// Tear a call down after this long without RTP on either leg. Default 60 s.
    pub inactivity_timeout: InactivityTimeoutSecs,
    /// Media worker threads, each owning the calls placed on it. Default (`None`): one per
    /// core the process may run on.
    pub workers: Option<Workers>,
    /// Audio codecs kept in forwarded offers, in no particular order (the offerer's order
    /// stays). Default: every codec callmask can decode ([`MediaCodec::DECODABLE`]).
    pub codecs: Vec<MediaCodec>,
    /// An offer callmask cannot decrypt: `reject` (488, the default) or `relay-muted`.
    pub undecodable: UndecodableMode,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            ports: PortRange::new(30_000, 40_000).expect("30000-40000 is a valid range"),
            // 60 is within 1..=86400.
            inactivity_timeout: InactivityTimeoutSecs::try_from(60).expect("60 s is in range"),
            workers: None,
            codecs: MediaCodec::DECODABLE.to_vec(),
            undecodable: UndecodableMode::Reject,
        }
    }
}

/// `[masking]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskingConfig {
    /// Mask DTMF (in-band, RFC 4733, SIP INFO) on the recorder path. Default true.
    pub dtmf: bool,
    /// Mask spoken identifiers on the recorder path. Default true.
    pub speech: bool,
    /// Recorder-path delay. Default 8000 ms with `speech` on (room for the recognizer), 80 ms
    /// with it off (DTMF only).
    pub lookahead_ms: LookaheadMs,
    /// What the agent hears of the caller's keys. Default `pass`.
    pub agent_dtmf: AgentDtmfMode,
    /// What a masked span becomes in the recording. Default `silence`.
    pub replacement: Replacement,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        Self {
            dtmf: true,
            speech: true,
            lookahead_ms: LookaheadMs::default_for(true),
            agent_dtmf: AgentDtmfMode::Pass,
            replacement: Replacement::Silence,
        }
    }
}

/// Where the embedded model is looked for unless `speech.model_dir` says otherwise
/// (`speech.model = "tiny.en"`, the default).
pub const DEFAULT_MODEL_DIR: &str = "/var/lib/callmask/models/whisper-tiny.en";
/// The `speech.model_dir` default when `speech.model = "base"`.
pub const DEFAULT_BASE_MODEL_DIR: &str = "/var/lib/callmask/models/whisper-base";

/// `[speech]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeechConfig {
    /// Which recognizer. Default `embedded`.
    pub engine: SpeechEngine,
    /// Which Whisper model the embedded engine runs. Default `tiny.en`.
    pub model: SpeechModel,
    /// CTranslate2 Whisper model directory for the embedded engine. Default: where
    /// scripts/setup_asr.sh installs `model` ([`SpeechModel::default_dir`]).
    pub model_dir: PathBuf,
    /// Base URL of the remote engine; required when `engine = "remote"`.
    pub remote_url: Option<HttpUrl>,
    /// Decoding workers (threads, or concurrent remote requests). Default (`None`): the
    /// cores the process may run on, less one left to media and signalling, at least 1
    /// ([`SpeechConfig::workers_for`]).
    pub workers: Option<Workers>,
    /// Model name the remote engine is asked for. Default `whisper-1`.
    pub remote_model: RemoteModel,
    /// File with the remote engine's API key (sent as a bearer token), read at start so the
    /// secret stays out of the config file. Default none.
    pub remote_api_key_file: Option<PathBuf>,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            engine: SpeechEngine::Embedded,
            model: SpeechModel::TinyEn,
            model_dir: PathBuf::from(DEFAULT_MODEL_DIR),
            remote_url: None,
            workers: None,
            remote_model: RemoteModel::default(),
            remote_api_key_file: None,
        }
    }
}

impl SpeechConfig {
    /// The recognizer workers to start on a machine where the process may run on `cores`
    /// cores: `workers` if set; else `cores - 1`, at least 1. Whisper decoding is the costly
    /// part of a speech-masked call (~20× the relay's CPU per call), so it gets every core
    /// but one; the relay and signalling, cheap per call, share the last (their threads are
    /// not pinned, the kernel balances). Each embedded worker holds its own model (~60-70
    /// MiB RSS for tiny.en).
    pub fn workers_for(&self, cores: usize) -> usize {
        self.workers
            .map_or(cores.saturating_sub(1).max(1), |w| usize::from(w.get()))
    }
}

/// `[secure]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecureConfig {
    /// Keys an agent presses to enter secure mode; `None` (default): API only.
    pub dtmf_trigger: Option<DtmfSequence>,
    /// Keys an agent presses to leave secure mode; `None` (default): API only.
    pub dtmf_release: Option<DtmfSequence>,
}

/// One recorder sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecorderConfig {
    /// Stereo WAV per call.
    Wav(WavRecorder),
    /// Sanitized RTP to a host:port.
    Rtp(RtpRecorder),
    /// RFC 7866 SIPREC client.
    Siprec(SiprecRecorder),
}

impl RecorderConfig {
    /// The sink's kind.
    pub fn kind(&self) -> RecorderKind {
        match self {
            Self::Wav(_) => RecorderKind::Wav,
            Self::Rtp(_) => RecorderKind::Rtp,
            Self::Siprec(_) => RecorderKind::Siprec,
        }
    }
}

/// `kind = "wav"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavRecorder {
    /// Directory the WAV files and JSON sidecars go to.
    pub dir: PathBuf,
    /// age recipients; when non-empty, files are encrypted before they touch the disk.
    pub encrypt_to: Vec<AgeRecipient>,
    /// Delete recordings older than this; `None` (default): keep forever.
    pub retention_days: Option<RetentionDays>,
    /// Hash caller/callee numbers in the sidecar (default true).
    pub hash_numbers: bool,
}

/// `kind = "rtp"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpRecorder {
    /// Destination of the sanitized RTP.
    pub target: HostPort,
    /// Codec sent. Default `pcmu`.
    pub codec: RtpCodec,
    /// SDES-SRTP toward the target: a file holding one master key in the form of an SDP
    /// `a=crypto` line's suite and key parameters (`AES_CM_128_HMAC_SHA1_80 inline:<base64>`),
    /// shared out of band with the recorder (the fork has no signalling to carry a key).
    /// Read at start and at every reload; `None` (default): plain RTP.
    pub srtp_key_file: Option<PathBuf>,
}

/// `kind = "siprec"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiprecRecorder {
    /// SRS URIs in failover order (at least one).
    pub srs: Vec<SipUri>,
    /// Time an SRS has to answer before the next is tried. Default 2000 ms.
    pub timeout_ms: SrsTimeoutMs,
    /// Seconds between in-dialog OPTIONS to the SRS of an established session; no answer
    /// within `timeout_ms` (or 408/481) counts the SRS as lost, and the rest of the call
    /// fails over to the next SRS, then to the fallback. Default 10; 0 never checks.
    pub keepalive_s: SrsKeepaliveSecs,
    /// Seconds between out-of-dialog OPTIONS probes of every SRS, calls or not: `/readyz`
    /// and `callmask_siprec_srs_reachable` know whether a recording could start. Default 10;
    /// 0 never probes.
    pub probe_s: SrsKeepaliveSecs,
    /// Send the two streams as SDES-SRTP (`RTP/SAVP`, a fresh AES_CM_128_HMAC_SHA1_80 key
    /// per stream and session in the offer's `a=crypto`); an SRS that answers plain RTP is
    /// failed over, never sent plaintext. Default false.
    pub srtp: bool,
    /// SIP over TLS toward an SRS whose URI is `sips:` or has `;transport=tls`: CA
    /// certificates its certificate must chain to (PEM). Required for such an SRS.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM chain) and its key presented to the SRS; both or neither.
    pub tls_cert_file: Option<PathBuf>,
    /// The key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Name sent as SNI and verified in the SRS's certificate; `None`: its IP address.
    pub tls_server_name: Option<String>,
    /// Where WAV files go when every SRS fails; `None`: the call is not recorded (and counted).
    pub fallback_dir: Option<PathBuf>,
    /// age recipients for the fallback files (as the `wav` sink's `encrypt_to`).
    pub encrypt_to: Vec<AgeRecipient>,
    /// Local address of the client's SIP (UDP) socket; its IP also binds the RTP sockets.
    /// Default `0.0.0.0:0` (any interface, a port from the OS).
    pub bind: ListenAddr,
}

/// Default of `[[recorder]] kind = "siprec"` `bind`.
pub fn default_siprec_bind() -> ListenAddr {
    any_v4(0)
}

/// How the HTTP API authenticates callers (`/healthz` and `/readyz` are always open).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HttpAuth {
    /// No token configured (default). The binary decides what that means for protected
    /// endpoints; the default listener is loopback-only.
    #[default]
    None,
    /// `http.token`.
    Token(BearerToken),
    /// `http.token_file`: the binary reads the token from this file at startup.
    TokenFile(PathBuf),
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Listen address. Default `127.0.0.1:9090` (loopback: the API can mute recordings).
    pub listen: ListenAddr,
    /// Bearer-token authentication.
    pub auth: HttpAuth,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: ListenAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 9090))),
            auth: HttpAuth::None,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Default `human`.
    pub format: LogFormat,
    /// Default `info`.
    pub level: LogLevel,
    /// Log caller/callee numbers in clear (default false: keyed hashes).
    pub reveal_numbers: bool,
    /// Key for hashing numbers; `None` (default): random per process, so hashes only
    /// correlate within one run.
    pub hash_key: Option<HashKey>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: LogLevel::Info,
            reveal_numbers: false,
            hash_key: None,
        }
    }
}

/// `[sip]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipConfig {
    /// Default 65535 bytes (the largest UDP datagram).
    pub max_message_bytes: MaxMessageBytes,
    /// Default 128.
    pub max_headers: MaxHeaders,
    /// Default 8192 bytes.
    pub max_line_bytes: MaxLineBytes,
    /// Where registration bindings are kept across restarts (`bindings` in it); `None`
    /// (default): bindings live in memory only and a restart forgets them.
    pub state_dir: Option<PathBuf>,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: MaxMessageBytes::try_from(65_535).expect("in range"),
            max_headers: MaxHeaders::try_from(128).expect("in range"),
            max_line_bytes: MaxLineBytes::try_from(8_192).expect("in range"),
            state_dir: None,
        }
    }
}

/// `[limits]`: every table bounded, every bound here with a default that a busy floor never
/// reaches and a flood does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `streams_per_call`: an SDP with more `m=` lines is refused 488 before any port is taken.
    pub streams_per_call: StreamsPerCall,
    /// `calls`: Most calls in progress; an INVITE over it gets 503 with Retry-After.
    pub calls: LimitCount,
    /// `transactions`: Most live SIP transactions; a request over it gets 503 with Retry-After.
    pub transactions: LimitCount,
    /// `registrations`: Most registration bindings; a REGISTER over it gets 503 with Retry-After.
    pub registrations: LimitCount,
    /// `source_requests_per_s`: SIP requests per second from one source address (burst twice that); over it, dropped.
    pub source_requests_per_s: LimitRate,
    /// `source_calls_per_s`: New calls per second from one source address (burst twice that); over it, 503 with Retry-After.
    pub source_calls_per_s: LimitRate,
    /// `tcp_connections_per_source`: TCP connections from one source address; more are closed at accept.
    pub tcp_connections_per_source: LimitCount,
    /// `tcp_connections`: TCP connections in total; more are closed at accept.
    pub tcp_connections: LimitCount,
    /// `tcp_idle_timeout_s`: Seconds a TCP connection may go without completing a SIP message (slowloris guard).
    pub tcp_idle_timeout_s: TcpIdleTimeoutSecs,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            streams_per_call: StreamsPerCall::try_from(4).expect("4 is in range"),
            calls: LimitCount::try_from(10000).expect("in range"),
            transactions: LimitCount::try_from(50000).expect("in range"),
            registrations: LimitCount::try_from(20000).expect("in range"),
            source_requests_per_s: LimitRate::try_from(1000).expect("in range"),
            source_calls_per_s: LimitRate::try_from(100).expect("in range"),
            tcp_connections_per_source: LimitCount::try_from(64).expect("in range"),
            tcp_connections: LimitCount::try_from(4096).expect("in range"),
            tcp_idle_timeout_s: TcpIdleTimeoutSecs::try_from(120).expect("in range"),
        }
    }
}

/// Something valid but probably not what the admin wants; the binary logs these at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The key concerned.
    pub key: &'static str,
    /// What will happen, in words: the consequence first, the value after it (so
    /// `key: message` reads as a sentence, never `key: false: …`).
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn cidrs(list: Option<&[Cidr]>) -> Option<Vec<String>> {
    list.map(|l| l.iter().map(|c| c.to_string()).collect())
}

fn path_str(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Config {
    /// The configuration as TOML, every key written out (what `callmask check-config`
    /// prints). Loading the result gives back an equal `Config`. Secrets (`http.token`,
    /// `log.hash_key`) are included; use [`Config::to_toml_redacted`] for display.
    pub fn to_toml(&self) -> String {
        self.render(false)
    }

    /// Like [`Config::to_toml`], with `http.token` and `log.hash_key` replaced by
    /// `"<redacted>"` (which does not load back).
    pub fn to_toml_redacted(&self) -> String {
        self.render(true)
    }

    fn render(&self, redact: bool) -> String {
        let raw = self.to_raw(redact);
        // Serializing plain structs of strings, ints and bools into TOML cannot fail; fall
        // back to an empty document rather than panic if it ever did.
        toml::to_string(&raw).unwrap_or_default()
    }

    /// Valid settings that deserve a line in the startup log (no recorder, no PBX peer,
    /// DTMF masking off, an open API, …), so every front end words them the same way.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut w = Vec::new();
        let mut warn = |key: &'static str, message: String| w.push(ConfigWarning { key, message });
        if self.recorders.is_empty() {
            warn(
                "recorder",
                "no [[recorder]] is configured: calls are relayed but not recorded".into(),
            );
        }
        if self.pbx.peer.is_none() {
            warn(
                "pbx.peer",
                "requests from the agents side are answered 503 (not set)".into(),
            );
        }
        if !self.masking.dtmf {
            warn(
                "masking.dtmf",
                "DTMF digits reach the recorders unmasked (set to false)".into(),
            );
        }
        if !self.masking.speech {
            warn(
                "masking.speech",
                "spoken card numbers and other identifiers reach the recorders (set to false)"
                    .into(),
            );
        } else if self.masking.lookahead_ms.get() < 1_000 {
            warn(
                "masking.lookahead_ms",
                format!(
                    "short for spoken identifiers: speech not decided in time is muted whole \
                     (set to {} ms; 1000 or more recommended)",
                    self.masking.lookahead_ms
                ),
            );
        }
        for (key, allow) in [
            ("pbx.allow", &self.pbx.allow),
            ("agents.allow", &self.agents.allow),
        ] {
            if allow
                .as_ref()
                .is_some_and(|l| l.iter().any(|n| n.is_everything()))
            {
                warn(
                    key,
                    "admits SIP from every address: anyone who reaches the listener can place calls through callmask".into(),
                );
            }
        }
        if self.agents.peer.is_none() && self.agents.allow.as_ref().is_none_or(|l| l.is_empty()) {
            warn(
                "agents.allow",
                "registration mode (no agents.peer) with no agents.allow: no phone can register; list the phones' networks".into(),
            );
        }
        let api_open = !self.http.listen.get().ip().is_loopback();
        if api_open && self.http.auth == HttpAuth::None {
            warn(
                "http.token",
                format!(
                    "listening beyond loopback with no API token: `callmask run` refuses to start unless CALLMASK_HTTP_TOKEN is set (http.listen = {})",
                    self.http.listen
                ),
            );
        }
        if self.log.reveal_numbers {
            warn(
                "log.reveal_numbers",
                "caller and callee numbers are logged in clear (set to true)".into(),
            );
        }
        for r in &self.recorders {
            if let RecorderConfig::Wav(wav) = r {
                if wav.encrypt_to.is_empty() {
                    warn(
                        "recorder.encrypt_to",
                        format!("recordings in {} are stored unencrypted", wav.dir.display()),
                    );
                }
            }
        }
        w
    }

    /// The configuration as raw structs with every key present.
    pub fn to_raw(&self, redact: bool) -> RawConfig {
        let secret = |s: String| if redact { "<redacted>".to_owned() } else { s };
        RawConfig {
            pbx: Some(RawSide {
                listen: Some(self.pbx.listen.to_string()),
                peer: self.pbx.peer.map(|p| p.to_string()),
                allow: cidrs(self.pbx.allow.as_deref()),
                srtp: Some(self.pbx.srtp.as_str().to_owned()),
                transport: Some(self.pbx.transport.as_str().to_owned()),
                tls: self.pbx.tls.as_ref().map(TlsConfig::to_raw),
            }),
            agents: Some(RawSide {
                listen: Some(self.agents.listen.to_string()),
                peer: self.agents.peer.map(|p| p.to_string()),
                allow: cidrs(self.agents.allow.as_deref()),
                srtp: Some(self.agents.srtp.as_str().to_owned()),
                transport: Some(self.agents.transport.as_str().to_owned()),
                tls: self.agents.tls.as_ref().map(TlsConfig::to_raw),
            }),
            media: Some(RawMedia {
                ports: Some(self.media.ports.to_string()),
                inactivity_timeout_s: Some(i64::from(self.media.inactivity_timeout.get())),
                workers: self.media.workers.map(|w| i64::from(w.get())),
                codecs: Some(
                    self.media
                        .codecs
                        .iter()
                        .map(|c| c.as_str().to_owned())
                        .collect(),
                ),
                undecodable: Some(self.media.undecodable.as_str().to_owned()),
            }),
            masking: Some(RawMasking {
                dtmf: Some(self.masking.dtmf),
                speech: Some(self.masking.speech),
                lookahead_ms: Some(i64::from(self.masking.lookahead_ms.get())),
                agent_dtmf: Some(self.masking.agent_dtmf.as_str().to_owned()),
                replacement: Some(self.masking.replacement.as_str().to_owned()),
            }),
            speech: Some(RawSpeech {
                engine: Some(self.speech.engine.as_str().to_owned()),
                model: Some(self.speech.model.as_str().to_owned()),
                model_dir: Some(path_str(&self.speech.model_dir)),
                remote_url: self.speech.remote_url.as_ref().map(|u| u.to_string()),
                workers: self.speech.workers.map(|w| i64::from(w.get())),
                remote_model: Some(self.speech.remote_model.to_string()),
                remote_api_key_file: self.speech.remote_api_key_file.as_deref().map(path_str),
            }),
            secure: Some(RawSecure {
                dtmf_trigger: self.secure.dtmf_trigger.as_ref().map(|s| s.to_string()),
                dtmf_release: self.secure.dtmf_release.as_ref().map(|s| s.to_string()),
            }),
            http: Some(RawHttp {
                listen: Some(self.http.listen.to_string()),
                token: match &self.http.auth {
                    HttpAuth::Token(t) => Some(secret(t.as_str().to_owned())),
                    _ => None,
                },
                token_file: match &self.http.auth {
                    HttpAuth::TokenFile(p) => Some(path_str(p)),
                    _ => None,
                },
            }),
            log: Some(RawLog {
                format: Some(self.log.format.as_str().to_owned()),
                level: Some(self.log.level.as_str().to_owned()),
                reveal_numbers: Some(self.log.reveal_numbers),
                hash_key: self.log.hash_key.as_ref().map(|k| secret(k.to_hex())),
            }),
            sip: Some(RawSip {
                max_message_bytes: Some(i64::from(self.sip.max_message_bytes.get())),
                max_headers: Some(i64::from(self.sip.max_headers.get())),
                max_line_bytes: Some(i64::from(self.sip.max_line_bytes.get())),
                state_dir: self.sip.state_dir.as_deref().map(path_str),
            }),
            ng: Some(RawNg {
                listen: self.ng.listen.map(|l| l.to_string()),
            }),
            limits: Some(RawLimits {
                streams_per_call: Some(i64::from(self.limits.streams_per_call.get())),
                calls: Some(i64::from(self.limits.calls.get())),
                transactions: Some(i64::from(self.limits.transactions.get())),
                registrations: Some(i64::from(self.limits.registrations.get())),
                source_requests_per_s: Some(i64::from(self.limits.source_requests_per_s.get())),
                source_calls_per_s: Some(i64::from(self.limits.source_calls_per_s.get())),
                tcp_connections_per_source: Some(i64::from(
                    self.limits.tcp_connections_per_source.get(),
                )),
                tcp_connections: Some(i64::from(self.limits.tcp_connections.get())),
                tcp_idle_timeout_s: Some(i64::from(self.limits.tcp_idle_timeout_s.get())),
            }),
            shutdown: Some(RawShutdown {
                drain_timeout_s: Some(i64::from(self.shutdown.drain_timeout_s.get())),
            }),
            recorder: Some(self.recorders.iter().map(recorder_to_raw).collect()),
        }
    }
}

fn recorder_to_raw(r: &RecorderConfig) -> RawRecorder {
    let mut raw = RawRecorder {
        kind: Some(r.kind().as_str().to_owned()),
        ..RawRecorder::default()
    };
    match r {
        RecorderConfig::Wav(w) => {
            raw.dir = Some(path_str(&w.dir));
            raw.encrypt_to = Some(w.encrypt_to.iter().map(|a| a.to_string()).collect());
            raw.retention_days = w.retention_days.map(|d| i64::from(d.get()));
            raw.hash_numbers = Some(w.hash_numbers);
        }
        RecorderConfig::Rtp(p) => {
            raw.target = Some(p.target.to_string());
            raw.codec = Some(p.codec.as_str().to_owned());
            raw.srtp_key_file = p.srtp_key_file.as_deref().map(path_str);
        }
        RecorderConfig::Siprec(s) => {
            raw.srs = Some(s.srs.iter().map(|u| u.to_string()).collect());
            raw.timeout_ms = Some(i64::from(s.timeout_ms.get()));
            raw.keepalive_s = Some(i64::from(s.keepalive_s.get()));
            raw.probe_s = Some(i64::from(s.probe_s.get()));
            raw.srtp = Some(s.srtp);
            raw.tls_ca_file = s.tls_ca_file.as_deref().map(path_str);
            raw.tls_cert_file = s.tls_cert_file.as_deref().map(path_str);
            raw.tls_key_file = s.tls_key_file.as_deref().map(path_str);
            raw.tls_server_name = s.tls_server_name.clone();
            raw.fallback_dir = s.fallback_dir.as_deref().map(path_str);
            raw.encrypt_to = Some(s.encrypt_to.iter().map(|a| a.to_string()).collect());
            raw.bind = Some(s.bind.to_string());
        }
    }
    raw
}
