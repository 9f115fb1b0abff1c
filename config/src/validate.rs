//! `RawConfig -> Config`: every value through its newtype, every problem collected.
//!
//! Validation never stops at the first problem: each bad value is recorded as an [`Issue`]
//! with its key path and the default is used in its place so the remaining keys can still be
//! checked. The loader then turns issues into located [`crate::ConfigError`]s.

use std::fmt;
use std::path::PathBuf;

use crate::error::{ErrorKind, ValueError};
use crate::model::{
    AgentsConfig, Config, HttpAuth, HttpConfig, LimitsConfig, LogConfig, MaskingConfig,
    MediaConfig, NgConfig, PbxConfig, RecorderConfig, RtpRecorder, SecureConfig, ShutdownConfig,
    SipConfig, SiprecRecorder, SpeechConfig, TlsConfig, WavRecorder,
};
use crate::raw::{RawConfig, RawRecorder, RawTls};
use crate::types::{
    AgeRecipient, AgentDtmfMode, BearerToken, Cidr, DrainTimeoutSecs, DtmfSequence, HashKey,
    HostPort, HttpUrl, InactivityTimeoutSecs, LimitCount, LimitRate, ListenAddr, LogFormat,
    LogLevel, LookaheadMs, MaxHeaders, MaxLineBytes, MaxMessageBytes, MediaCodec, PeerAddr,
    PortRange, RecorderKind, RemoteModel, Replacement, RetentionDays, RtpCodec, SideTransport,
    SipUri, SpeechEngine, SpeechModel, SrsKeepaliveSecs, SrsTimeoutMs, SrtpMode, StreamsPerCall,
    TcpIdleTimeoutSecs, UndecodableMode, Workers,
};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array element.
    Index(usize),
}

/// A key path such as `recorder[1].dir`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// Parses `a.b.c` (no indexes); used for `--set` keys.
    pub fn dotted(s: &str) -> Self {
        Self(s.split('.').map(|k| Seg::Key(k.to_owned())).collect())
    }

    /// This path with a key appended.
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_owned()));
        Self(v)
    }

    /// This path with an index appended.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        Self(v)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    // Bare keys as written; anything else quoted as TOML would, so a key
                    // holding a newline cannot break the one-line display.
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A problem with a key path but no position yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// What sort of problem.
    pub kind: ErrorKind,
    /// The key it concerns.
    pub path: KeyPath,
    /// True when the position to report is the key itself (unknown keys), not its value.
    pub at_key: bool,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

impl Issue {
    fn from_value(path: KeyPath, e: ValueError) -> Self {
        Self {
            kind: ErrorKind::InvalidValue,
            path,
            at_key: false,
            problem: e.problem,
            fix: e.fix,
        }
    }
}

struct Checker {
    issues: Vec<Issue>,
}

impl Checker {
    /// Converts `raw` if present, else returns `default`; records a failure and returns
    /// `default` in its place.
    fn value<R, T>(
        &mut self,
        path: KeyPath,
        raw: Option<R>,
        default: T,
        conv: impl FnOnce(R) -> Result<T, ValueError>,
    ) -> T {
        match raw.map(conv) {
            None => default,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                self.issues.push(Issue::from_value(path, e));
                default
            }
        }
    }

    /// Converts an optional value that has no default.
    fn opt<R, T>(
        &mut self,
        path: KeyPath,
        raw: Option<R>,
        conv: impl FnOnce(R) -> Result<T, ValueError>,
    ) -> Option<T> {
        match raw.map(conv) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                self.issues.push(Issue::from_value(path, e));
                None
            }
        }
    }

    fn push(&mut self, kind: ErrorKind, path: KeyPath, problem: String, fix: String) {
        self.issues.push(Issue {
            kind,
            path,
            at_key: false,
            problem,
            fix,
        });
    }
}

/// A sink's `encrypt_to` list; each bad entry is reported at its index.
fn age_recipients(c: &mut Checker, path: &KeyPath, list: Option<Vec<String>>) -> Vec<AgeRecipient> {
    list.unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(j, a)| {
            c.opt(path.key("encrypt_to").index(j), Some(a), |a| {
                AgeRecipient::try_from(a.as_str())
            })
        })
        .collect()
}

/// `media.codecs`: known names, no repeats, at least one audio codec.
fn media_codecs(c: &mut Checker, list: Option<Vec<String>>) -> Vec<MediaCodec> {
    let Some(list) = list else {
        return MediaCodec::DECODABLE.to_vec();
    };
    let path = k("media.codecs");
    if list.is_empty() {
        c.push(
            ErrorKind::InvalidValue,
            path,
            "the list is empty: no call could carry audio".into(),
            format!(
                "list at least one of: {} (or leave the key out for all)",
                MediaCodec::ALL.join(", ")
            ),
        );
        return MediaCodec::DECODABLE.to_vec();
    }
    let mut out = Vec::with_capacity(list.len());
    for (j, name) in list.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        let Ok(codec) = MediaCodec::try_from(lower.as_str()) else {
            c.push(
                ErrorKind::InvalidValue,
                path.index(j),
                format!("{name:?} is not a codec callmask can decode, so it could not be masked"),
                format!("use some of: {}", MediaCodec::ALL.join(", ")),
            );
            continue;
        };
        if out.contains(&codec) {
            c.push(
                ErrorKind::InvalidValue,
                path.index(j),
                format!("{name:?} is listed twice"),
                "list each codec once".into(),
            );
            continue;
        }
        out.push(codec);
    }
    out
}

/// `pbx.allow` / `agents.allow`: each entry a network or host; each bad one is reported at
/// its index. An empty list is kept (it admits no one: closed, as written).
fn allow_list(c: &mut Checker, key: &str, list: Option<Vec<String>>) -> Option<Vec<Cidr>> {
    let list = list?;
    let path = k(key);
    let mut out = Vec::with_capacity(list.len());
    for (j, entry) in list.iter().enumerate() {
        if let Some(net) = c.opt(path.index(j), Some(entry.as_str()), Cidr::try_from) {
            out.push(net);
        }
    }
    Some(out)
}

/// A PEM file named by `key`: readable, and holding a `-----BEGIN <what>` block (the proxy
/// parses it fully before it binds).
fn pem_file(c: &mut Checker, key: &str, raw: String, what: &[&str], example: &str) -> PathBuf {
    let path = PathBuf::from(&raw);
    if raw.trim().is_empty() {
        c.push(
            ErrorKind::InvalidValue,
            k(key),
            "the path is empty".into(),
            format!("write the path of a PEM file, e.g. \"{example}\""),
        );
        return path;
    }
    match std::fs::read(&path) {
        Err(e) => c.push(
            ErrorKind::InvalidValue,
            k(key),
            format!("cannot read {raw}: {e}"),
            format!("point {key} at an existing PEM file readable by the callmask user"),
        ),
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let found = what
                .iter()
                .any(|w| text.contains(&format!("-----BEGIN {w}")));
            if !found {
                c.push(
                    ErrorKind::InvalidValue,
                    k(key),
                    format!("{raw} holds no PEM block of type {}", what.join(" or ")),
                    format!("point {key} at a PEM file (-----BEGIN {} -----…)", what[0]),
                );
            }
        }
    }
    path
}

/// A DNS name for SNI and certificate checks (`tls.server_name`).
fn server_name(s: String) -> Result<String, ValueError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.parse::<std::net::IpAddr>().is_err()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(ValueError::new(
            format!("{s:?} is not a DNS host name"),
            "write the name in the peer's certificate, e.g. \"pbx.example.net\" (leave the key out to verify the peer's IP address)",
        ))
    }
}

const CERT: &[&str] = &["CERTIFICATE"];
const KEY: &[&str] = &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// `<side>.transport` and `[<side>.tls]`: TLS needs a certificate and a key; `[tls]` without
/// `transport = "tls"` is a mistake worth stopping for (the admin believes SIP is encrypted).
fn side_tls(
    c: &mut Checker,
    side: &str,
    transport: SideTransport,
    raw: Option<RawTls>,
    has_peer: bool,
) -> Option<TlsConfig> {
    let key = |name: &str| format!("{side}.tls.{name}");
    let Some(raw) = raw else {
        if transport == SideTransport::Tls {
            c.push(
                ErrorKind::Missing,
                k(&key("cert_file")),
                format!("{side}.transport = \"tls\" but no certificate is configured"),
                format!(
                    "set {side}.tls.cert_file and {side}.tls.key_file (PEM), or use {side}.transport = \"udp+tcp\""
                ),
            );
        }
        return None;
    };
    if transport != SideTransport::Tls {
        c.push(
            ErrorKind::Conflict,
            k(&format!("{side}.tls")),
            format!("[{side}.tls] is set but {side}.transport is not \"tls\": SIP on this side would not be encrypted"),
            format!("set {side}.transport = \"tls\", or remove [{side}.tls]"),
        );
        return None;
    }
    let missing = |c: &mut Checker, name: &str| {
        c.push(
            ErrorKind::Missing,
            k(&key(name)),
            format!("{side}.transport = \"tls\" needs {side}.tls.{name}"),
            format!("set {side}.tls.{name} to a PEM file"),
        );
    };
    let cert_file = match raw.cert_file {
        Some(p) => pem_file(c, &key("cert_file"), p, CERT, "/etc/callmask/tls/cert.pem"),
        None => {
            missing(c, "cert_file");
            PathBuf::new()
        }
    };
    let key_file = match raw.key_file {
        Some(p) => pem_file(c, &key("key_file"), p, KEY, "/etc/callmask/tls/key.pem"),
        None => {
            missing(c, "key_file");
            PathBuf::new()
        }
    };
    let client_ca_file = raw.client_ca_file.map(|p| {
        pem_file(
            c,
            &key("client_ca_file"),
            p,
            CERT,
            "/etc/callmask/tls/clients-ca.pem",
        )
    });
    let ca_file = raw
        .ca_file
        .map(|p| pem_file(c, &key("ca_file"), p, CERT, "/etc/callmask/tls/peer-ca.pem"));
    let system_roots = raw.system_roots.unwrap_or(false);
    if has_peer && ca_file.is_none() && !system_roots {
        c.push(
            ErrorKind::Missing,
            k(&key("ca_file")),
            format!("{side}.peer is reached over TLS but nothing can verify its certificate"),
            format!(
                "set {side}.tls.ca_file to the PEM of the CA that signed the peer's certificate (or {side}.tls.system_roots = true for a publicly signed one)"
            ),
        );
    }
    let server_name = c.opt(k(&key("server_name")), raw.server_name, server_name);
    Some(TlsConfig {
        cert_file,
        key_file,
        client_ca_file,
        ca_file,
        system_roots,
        server_name,
    })
}

fn nonempty_path(s: String) -> Result<PathBuf, ValueError> {
    if s.trim().is_empty() {
        return Err(ValueError::new(
            "the path is empty",
            "write a directory path, e.g. \"/var/lib/callmask/recordings\"",
        ));
    }
    Ok(PathBuf::from(s))
}

fn k(s: &str) -> KeyPath {
    KeyPath::dotted(s)
}

/// Validates raw structs into a [`Config`]; on failure returns every issue found.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<Issue>> {
    let mut c = Checker { issues: Vec::new() };
    let d = Config::default();

    let pbx = raw.pbx.unwrap_or_default();
    let pbx_transport = c.value(
        k("pbx.transport"),
        pbx.transport.clone(),
        d.pbx.transport,
        |s| SideTransport::try_from(s.as_str()),
    );
    let pbx_has_peer = pbx.peer.is_some();
    let pbx = PbxConfig {
        listen: c.value(k("pbx.listen"), pbx.listen, d.pbx.listen, |s| {
            ListenAddr::try_from(s.as_str())
        }),
        peer: c.opt(k("pbx.peer"), pbx.peer, |s| PeerAddr::try_from(s.as_str())),
        allow: allow_list(&mut c, "pbx.allow", pbx.allow),
        srtp: c.value(k("pbx.srtp"), pbx.srtp, d.pbx.srtp, |s| {
            SrtpMode::try_from(s.as_str())
        }),
        transport: pbx_transport,
        tls: side_tls(&mut c, "pbx", pbx_transport, pbx.tls, pbx_has_peer),
    };
    let agents = raw.agents.unwrap_or_default();
    let agents_transport = c.value(
        k("agents.transport"),
        agents.transport.clone(),
        d.agents.transport,
        |s| SideTransport::try_from(s.as_str()),
    );
    let agents_has_peer = agents.peer.is_some();
    let agents = AgentsConfig {
        listen: c.value(k("agents.listen"), agents.listen, d.agents.listen, |s| {
            ListenAddr::try_from(s.as_str())
        }),
        peer: c.opt(k("agents.peer"), agents.peer, |s| {
            PeerAddr::try_from(s.as_str())
        }),
        allow: allow_list(&mut c, "agents.allow", agents.allow),
        srtp: c.value(k("agents.srtp"), agents.srtp, d.agents.srtp, |s| {
            SrtpMode::try_from(s.as_str())
        }),
        transport: agents_transport,
        tls: side_tls(
            &mut c,
            "agents",
            agents_transport,
            agents.tls,
            agents_has_peer,
        ),
    };
    let media = raw.media.unwrap_or_default();
    let media = MediaConfig {
        ports: c.value(k("media.ports"), media.ports, d.media.ports, |s| {
            PortRange::try_from(s.as_str())
        }),
        inactivity_timeout: c.value(
            k("media.inactivity_timeout_s"),
            media.inactivity_timeout_s,
            d.media.inactivity_timeout,
            InactivityTimeoutSecs::try_from,
        ),
        workers: c.opt(k("media.workers"), media.workers, Workers::try_from),
        codecs: media_codecs(&mut c, media.codecs),
        undecodable: c.value(
            k("media.undecodable"),
            media.undecodable,
            d.media.undecodable,
            |s| UndecodableMode::try_from(s.as_str()),
        ),
    };
    let m = raw.masking.unwrap_or_default();
    let speech_on = m.speech.unwrap_or(d.masking.speech);
    let masking = MaskingConfig {
        dtmf: m.dtmf.unwrap_or(d.masking.dtmf),
        speech: speech_on,
        lookahead_ms: c.value(
            k("masking.lookahead_ms"),
            m.lookahead_ms,
            LookaheadMs::default_for(speech_on),
            LookaheadMs::try_from,
        ),
        agent_dtmf: c.value(
            k("masking.agent_dtmf"),
            m.agent_dtmf,
            d.masking.agent_dtmf,
            |s| AgentDtmfMode::try_from(s.as_str()),
        ),
        replacement: c.value(
            k("masking.replacement"),
            m.replacement,
            d.masking.replacement,
            |s| Replacement::try_from(s.as_str()),
        ),
    };
    let s = raw.speech.unwrap_or_default();
    let model = c.value(k("speech.model"), s.model, d.speech.model, |v| {
        SpeechModel::try_from(v.as_str())
    });
    let speech = SpeechConfig {
        engine: c.value(k("speech.engine"), s.engine, d.speech.engine, |v| {
            SpeechEngine::try_from(v.as_str())
        }),
        model,
        // The default folder follows the model: where scripts/setup_asr.sh installs it.
        model_dir: c.value(
            k("speech.model_dir"),
            s.model_dir,
            PathBuf::from(model.default_dir()),
            nonempty_path,
        ),
        remote_url: c.opt(k("speech.remote_url"), s.remote_url, |v| {
            HttpUrl::try_from(v.as_str())
        }),
        workers: c.opt(k("speech.workers"), s.workers, Workers::try_from),
        remote_model: c.value(
            k("speech.remote_model"),
            s.remote_model,
            d.speech.remote_model.clone(),
            |v| RemoteModel::try_from(v.as_str()),
        ),
        remote_api_key_file: c.opt(
            k("speech.remote_api_key_file"),
            s.remote_api_key_file,
            nonempty_path,
        ),
    };
    let sec = raw.secure.unwrap_or_default();
    let secure = SecureConfig {
        dtmf_trigger: c.opt(k("secure.dtmf_trigger"), sec.dtmf_trigger, |v| {
            DtmfSequence::try_from(v.as_str())
        }),
        dtmf_release: c.opt(k("secure.dtmf_release"), sec.dtmf_release, |v| {
            DtmfSequence::try_from(v.as_str())
        }),
    };
    let h = raw.http.unwrap_or_default();
    let token = c.opt(k("http.token"), h.token, |v| {
        BearerToken::try_from(v.as_str())
    });
    let token_file = c.opt(k("http.token_file"), h.token_file, nonempty_path);
    let auth = match (token, token_file) {
        (Some(_), Some(_)) => {
            c.push(
                ErrorKind::Conflict,
                k("http.token_file"),
                "both http.token and http.token_file are set".into(),
                "keep one of them (token_file keeps the secret out of the config file)".into(),
            );
            HttpAuth::None
        }
        (Some(t), None) => HttpAuth::Token(t),
        (None, Some(p)) => HttpAuth::TokenFile(p),
        (None, None) => HttpAuth::None,
    };
    let http = HttpConfig {
        listen: c.value(k("http.listen"), h.listen, d.http.listen, |v| {
            ListenAddr::try_from(v.as_str())
        }),
        auth,
    };
    let l = raw.log.unwrap_or_default();
    let log = LogConfig {
        format: c.value(k("log.format"), l.format, d.log.format, |v| {
            LogFormat::try_from(v.as_str())
        }),
        level: c.value(k("log.level"), l.level, d.log.level, |v| {
            LogLevel::try_from(v.as_str())
        }),
        reveal_numbers: l.reveal_numbers.unwrap_or(d.log.reveal_numbers),
        hash_key: c.opt(k("log.hash_key"), l.hash_key, |v| {
            HashKey::try_from(v.as_str())
        }),
    };
    let sp = raw.sip.unwrap_or_default();
    let sip = SipConfig {
        max_message_bytes: c.value(
            k("sip.max_message_bytes"),
            sp.max_message_bytes,
            d.sip.max_message_bytes,
            MaxMessageBytes::try_from,
        ),
        max_headers: c.value(
            k("sip.max_headers"),
            sp.max_headers,
            d.sip.max_headers,
            MaxHeaders::try_from,
        ),
        max_line_bytes: c.value(
            k("sip.max_line_bytes"),
            sp.max_line_bytes,
            d.sip.max_line_bytes,
            MaxLineBytes::try_from,
        ),
        state_dir: c.opt(k("sip.state_dir"), sp.state_dir, nonempty_path),
    };
    let ng = NgConfig {
        listen: c.opt(k("ng.listen"), raw.ng.unwrap_or_default().listen, |v| {
            ListenAddr::try_from(v.as_str())
        }),
    };
    let lim = raw.limits.unwrap_or_default();
    let limits = LimitsConfig {
        streams_per_call: c.value(
            k("limits.streams_per_call"),
            lim.streams_per_call,
            d.limits.streams_per_call,
            StreamsPerCall::try_from,
        ),
        calls: c.value(
            k("limits.calls"),
            lim.calls,
            d.limits.calls,
            LimitCount::try_from,
        ),
        transactions: c.value(
            k("limits.transactions"),
            lim.transactions,
            d.limits.transactions,
            LimitCount::try_from,
        ),
        registrations: c.value(
            k("limits.registrations"),
            lim.registrations,
            d.limits.registrations,
            LimitCount::try_from,
        ),
        source_requests_per_s: c.value(
            k("limits.source_requests_per_s"),
            lim.source_requests_per_s,
            d.limits.source_requests_per_s,
            LimitRate::try_from,
        ),
        source_calls_per_s: c.value(
            k("limits.source_calls_per_s"),
            lim.source_calls_per_s,
            d.limits.source_calls_per_s,
            LimitRate::try_from,
        ),
        tcp_connections_per_source: c.value(
            k("limits.tcp_connections_per_source"),
            lim.tcp_connections_per_source,
            d.limits.tcp_connections_per_source,
            LimitCount::try_from,
        ),
        tcp_connections: c.value(
            k("limits.tcp_connections"),
            lim.tcp_connections,
            d.limits.tcp_connections,
            LimitCount::try_from,
        ),
        tcp_idle_timeout_s: c.value(
            k("limits.tcp_idle_timeout_s"),
            lim.tcp_idle_timeout_s,
            d.limits.tcp_idle_timeout_s,
            TcpIdleTimeoutSecs::try_from,
        ),
    };
    let sh = raw.shutdown.unwrap_or_default();
    let shutdown = ShutdownConfig {
        drain_timeout_s: c.value(
            k("shutdown.drain_timeout_s"),
            sh.drain_timeout_s,
            d.shutdown.drain_timeout_s,
            DrainTimeoutSecs::try_from,
        ),
    };
    let recorders = raw
        .recorder
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            recorder(
                &mut c,
                KeyPath(vec![Seg::Key("recorder".into()), Seg::Index(i)]),
                r,
            )
        })
        .collect();

    let config = Config {
        pbx,
        agents,
        media,
        masking,
        speech,
        secure,
        recorders,
        http,
        log,
        sip,
        ng,
        limits,
        shutdown,
    };
    cross_checks(&mut c, &config);
    if c.issues.is_empty() {
        Ok(config)
    } else {
        Err(c.issues)
    }
}

const WAV_KEYS: &[&str] = &[
    "kind",
    "dir",
    "encrypt_to",
    "retention_days",
    "hash_numbers",
];
const RTP_KEYS: &[&str] = &["kind", "target", "codec", "srtp_key_file"];
const SIPREC_KEYS: &[&str] = &[
    "kind",
    "srs",
    "timeout_ms",
    "keepalive_s",
    "probe_s",
    "srtp",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_server_name",
    "fallback_dir",
    "encrypt_to",
    "bind",
];

fn recorder(c: &mut Checker, path: KeyPath, r: RawRecorder) -> Option<RecorderConfig> {
    let Some(kind) = r.kind.as_deref() else {
        c.push(
            ErrorKind::Missing,
            path.key("kind"),
            "this recorder has no kind".into(),
            "add kind = \"wav\", \"rtp\" or \"siprec\"".into(),
        );
        return None;
    };
    let kind = match RecorderKind::try_from(kind) {
        Ok(kind) => kind,
        Err(e) => {
            c.issues.push(Issue::from_value(path.key("kind"), e));
            return None;
        }
    };
    // Keys that belong to another kind: report them rather than silently ignore them.
    let allowed = match kind {
        RecorderKind::Wav => WAV_KEYS,
        RecorderKind::Rtp => RTP_KEYS,
        RecorderKind::Siprec => SIPREC_KEYS,
    };
    let present: [(&str, bool); 18] = [
        ("dir", r.dir.is_some()),
        ("encrypt_to", r.encrypt_to.is_some()),
        ("retention_days", r.retention_days.is_some()),
        ("hash_numbers", r.hash_numbers.is_some()),
        ("target", r.target.is_some()),
        ("codec", r.codec.is_some()),
        ("srtp_key_file", r.srtp_key_file.is_some()),
        ("srs", r.srs.is_some()),
        ("timeout_ms", r.timeout_ms.is_some()),
        ("keepalive_s", r.keepalive_s.is_some()),
        ("probe_s", r.probe_s.is_some()),
        ("srtp", r.srtp.is_some()),
        ("tls_ca_file", r.tls_ca_file.is_some()),
        ("tls_cert_file", r.tls_cert_file.is_some()),
        ("tls_key_file", r.tls_key_file.is_some()),
        ("tls_server_name", r.tls_server_name.is_some()),
        ("fallback_dir", r.fallback_dir.is_some()),
        ("bind", r.bind.is_some()),
    ];
    for (key, _) in present
        .iter()
        .filter(|(key, set)| *set && !allowed.contains(key))
    {
        c.issues.push(Issue {
            kind: ErrorKind::UnknownKey,
            path: path.key(key),
            at_key: true,
            problem: format!("`{key}` is not a setting of a recorder of kind \"{kind}\""),
            fix: format!("remove it; kind \"{kind}\" takes: {}", allowed.join(", ")),
        });
    }
    let missing = |c: &mut Checker, key: &str, example: &str| {
        c.push(
            ErrorKind::Missing,
            path.key(key),
            format!("a recorder of kind \"{kind}\" needs `{key}`"),
            format!("add {key} = {example}"),
        );
    };
    match kind {
        RecorderKind::Wav => {
            let dir = match r.dir {
                Some(d) => c.opt(path.key("dir"), Some(d), nonempty_path),
                None => {
                    missing(c, "dir", "\"/var/lib/callmask/recordings\"");
                    None
                }
            };
            let encrypt_to = age_recipients(c, &path, r.encrypt_to);
            let retention_days = c.opt(
                path.key("retention_days"),
                r.retention_days,
                RetentionDays::try_from,
            );
            Some(RecorderConfig::Wav(WavRecorder {
                dir: dir?,
                encrypt_to,
                retention_days,
                hash_numbers: r.hash_numbers.unwrap_or(true),
            }))
        }
        RecorderKind::Rtp => {
            let target = match r.target {
                Some(t) => c.opt(path.key("target"), Some(t), |t| {
                    HostPort::try_from(t.as_str())
                }),
                None => {
                    missing(c, "target", "\"10.0.0.7:40000\"");
                    None
                }
            };
            // The fork carries decoded, sanitized PCM: it is sent as PCMU whatever the call
            // negotiated, so "original" (once accepted and ignored) is refused by name.
            let codec = c.value(path.key("codec"), r.codec, RtpCodec::Pcmu, |v| {
                if v == "original" {
                    return Err(ValueError::new(
                        "\"original\" is not supported: the sanitized fork is decoded PCM and is always sent as PCMU",
                        "write codec = \"pcmu\" or leave the key out",
                    ));
                }
                RtpCodec::try_from(v.as_str())
            });
            let srtp_key_file = c.opt(path.key("srtp_key_file"), r.srtp_key_file, nonempty_path);
            Some(RecorderConfig::Rtp(RtpRecorder {
                target: target?,
                codec,
                srtp_key_file,
            }))
        }
        RecorderKind::Siprec => {
            let srs: Vec<SipUri> = r
                .srs
                .clone()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .filter_map(|(j, u)| {
                    c.opt(path.key("srs").index(j), Some(u), |u| {
                        SipUri::try_from(u.as_str())
                    })
                })
                .collect();
            match &r.srs {
                None => missing(c, "srs", "[\"sip:srs@10.0.0.8:5060\"]"),
                Some(list) if list.is_empty() => c.push(
                    ErrorKind::InvalidValue,
                    path.key("srs"),
                    "the SRS list is empty".into(),
                    "list at least one SRS URI, e.g. [\"sip:srs@10.0.0.8:5060\"]".into(),
                ),
                Some(_) => {}
            }
            let timeout_ms = c.value(
                path.key("timeout_ms"),
                r.timeout_ms,
                SrsTimeoutMs::try_from(2_000).expect("2000 ms is in range"),
                SrsTimeoutMs::try_from,
            );
            let keepalive_s = c.value(
                path.key("keepalive_s"),
                r.keepalive_s,
                SrsKeepaliveSecs::try_from(10).expect("10 s is in range"),
                SrsKeepaliveSecs::try_from,
            );
            let probe_s = c.value(
                path.key("probe_s"),
                r.probe_s,
                SrsKeepaliveSecs::try_from(10).expect("10 s is in range"),
                SrsKeepaliveSecs::try_from,
            );
            let fallback_dir = c.opt(path.key("fallback_dir"), r.fallback_dir, nonempty_path);
            let tls_cert_file = c.opt(path.key("tls_cert_file"), r.tls_cert_file, nonempty_path);
            let tls_key_file = c.opt(path.key("tls_key_file"), r.tls_key_file, nonempty_path);
            let wants_tls = srs.iter().any(|u| {
                let u = u.to_string().to_ascii_lowercase();
                u.starts_with("sips:") || u.contains(";transport=tls")
            });
            if wants_tls && r.tls_ca_file.is_none() {
                c.push(
                    ErrorKind::Missing,
                    path.key("tls_ca_file"),
                    "a sips: (or ;transport=tls) SRS needs the CAs to verify it against".into(),
                    "add tls_ca_file = \"/etc/callmask/srs-ca.pem\" (PEM CA certificates)".into(),
                );
            }
            if tls_cert_file.is_some() != tls_key_file.is_some() {
                c.push(
                    ErrorKind::InvalidValue,
                    path.key("tls_key_file"),
                    "tls_cert_file and tls_key_file go together".into(),
                    "set both (a client certificate and its key) or neither".into(),
                );
            }
            let encrypt_to = age_recipients(c, &path, r.encrypt_to);
            let bind = c.value(
                path.key("bind"),
                r.bind,
                crate::model::default_siprec_bind(),
                |v| ListenAddr::try_from(v.as_str()),
            );
            if srs.is_empty() {
                return None;
            }
            Some(RecorderConfig::Siprec(SiprecRecorder {
                srs,
                timeout_ms,
                keepalive_s,
                probe_s,
                srtp: r.srtp.unwrap_or(false),
                tls_ca_file: c.opt(path.key("tls_ca_file"), r.tls_ca_file, nonempty_path),
                tls_cert_file,
                tls_key_file,
                tls_server_name: r.tls_server_name,
                fallback_dir,
                encrypt_to,
                bind,
            }))
        }
    }
}

fn cross_checks(c: &mut Checker, cfg: &Config) {
    let listeners = [
        ("pbx.listen", cfg.pbx.listen),
        ("agents.listen", cfg.agents.listen),
        ("http.listen", cfg.http.listen),
    ];
    for (i, (ka, a)) in listeners.iter().enumerate() {
        for (kb, b) in &listeners[i + 1..] {
            let (a, b) = (a.get(), b.get());
            let overlap = a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified());
            if overlap {
                c.push(
                    ErrorKind::Conflict,
                    k(kb),
                    format!("{b} collides with {ka} = {a}"),
                    format!("give {kb} a port of its own"),
                );
            }
        }
    }
    for (key, addr) in &listeners[..2] {
        let port = addr.get().port();
        if port != 0 && cfg.media.ports.contains(port) {
            c.push(
                ErrorKind::Conflict,
                k("media.ports"),
                format!(
                    "{} includes port {port}, which {key} uses for SIP",
                    cfg.media.ports
                ),
                "choose an RTP range that leaves out the SIP ports".into(),
            );
        }
    }
    if let Some(ng) = cfg.ng.listen {
        let a = ng.get();
        // UDP only: it may share a port with HTTP (TCP), never with SIP (UDP and TCP).
        for (key, other) in &listeners[..2] {
            let b = other.get();
            let overlap = a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified());
            if overlap {
                c.push(
                    ErrorKind::Conflict,
                    k("ng.listen"),
                    format!("{a} collides with {key} = {b}"),
                    "give ng.listen a port of its own (rtpengine's default is 2223)".into(),
                );
            }
        }
        if a.port() != 0 && cfg.media.ports.contains(a.port()) {
            c.push(
                ErrorKind::Conflict,
                k("media.ports"),
                format!(
                    "{} includes port {}, which ng.listen uses",
                    cfg.media.ports,
                    a.port()
                ),
                "choose an RTP range that leaves out the NG port".into(),
            );
        }
    }
    if cfg.speech.engine == SpeechEngine::Remote && cfg.speech.remote_url.is_none() {
        c.push(
            ErrorKind::Missing,
            k("speech.remote_url"),
            "engine = \"remote\" needs a server URL".into(),
            "add remote_url = \"http://HOST:PORT\" to [speech], or use engine = \"embedded\""
                .into(),
        );
    }
    if let (Some(t), Some(r)) = (&cfg.secure.dtmf_trigger, &cfg.secure.dtmf_release) {
        if t == r {
            c.push(
                ErrorKind::Conflict,
                k("secure.dtmf_release"),
                "the release sequence equals the trigger sequence".into(),
                "use two different key sequences".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `speech.workers` unset: every core but one, at least 1; set: as written.
    #[test]
    fn speech_workers_default_to_every_core_but_one() {
        let d = Config::default().speech;
        assert_eq!(d.workers, None);
        assert_eq!(
            (d.workers_for(1), d.workers_for(2), d.workers_for(16)),
            (1, 1, 15)
        );
        let raw: RawConfig = toml::from_str("[speech]\nworkers = 3\n").unwrap();
        let cfg = validate(raw).unwrap();
        assert_eq!(cfg.speech.workers_for(16), 3);
    }

    #[test]
    fn empty_raw_is_default() {
        assert_eq!(validate(RawConfig::default()).unwrap(), Config::default());
    }

    #[test]
    fn collects_every_issue() {
        let raw: RawConfig = toml::from_str(
            "[masking]\nlookahead_ms = 20000\nagent_dtmf = \"mute\"\n[media]\nports = \"3-4\"\n",
        )
        .unwrap();
        let issues = validate(raw).unwrap_err();
        let keys: Vec<String> = issues.iter().map(|i| i.path.to_string()).collect();
        assert_eq!(
            keys,
            ["media.ports", "masking.lookahead_ms", "masking.agent_dtmf"]
        );
    }

    #[test]
    fn recorder_keys_must_match_kind() {
        let raw: RawConfig =
            toml::from_str("[[recorder]]\nkind = \"wav\"\ndir = \"/r\"\ntarget = \"h:1\"\n")
                .unwrap();
        let issues = validate(raw).unwrap_err();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path.to_string(), "recorder[0].target");
        assert!(issues[0].at_key);
    }

    #[test]
    fn media_codecs_are_checked() {
        let raw: RawConfig =
            toml::from_str("[media]\ncodecs = [\"PCMU\", \"g729\", \"pcmu\"]\n").unwrap();
        let issues = validate(raw).unwrap_err();
        let keys: Vec<String> = issues.iter().map(|i| i.path.to_string()).collect();
        assert_eq!(keys, ["media.codecs[1]", "media.codecs[2]"]);
        assert!(issues[0].problem.contains("cannot") || issues[0].problem.contains("not a codec"));
        let raw: RawConfig = toml::from_str("[media]\ncodecs = []\n").unwrap();
        assert_eq!(
            validate(raw).unwrap_err()[0].path.to_string(),
            "media.codecs"
        );
        let raw: RawConfig = toml::from_str("[media]\ncodecs = [\"g722\", \"pcma\"]\n").unwrap();
        assert_eq!(
            validate(raw).unwrap().media.codecs,
            [MediaCodec::G722, MediaCodec::Pcma]
        );
    }

    /// A fresh folder with a certificate-looking and a key-looking PEM file (their contents
    /// are not parsed here: the proxy does that).
    fn pem_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "callmask-config-tls-{label}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("ca.pem"), cert).unwrap();
        let key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
        std::fs::write(dir.join("key.pem"), key).unwrap();
        dir
    }

    fn tls_issues(toml_text: &str) -> Vec<Issue> {
        let raw: RawConfig = toml::from_str(toml_text).unwrap();
        validate(raw).unwrap_err()
    }

    #[test]
    fn tls_side_is_validated() {
        let d = pem_dir("ok");
        let ok = format!(
            "[pbx]\ntransport = \"tls\"\npeer = \"10.0.0.5:5061\"\n[pbx.tls]\n\
             cert_file = \"{0}/cert.pem\"\nkey_file = \"{0}/key.pem\"\n\
             ca_file = \"{0}/ca.pem\"\nclient_ca_file = \"{0}/ca.pem\"\n\
             server_name = \"PBX.example.net\"\n",
            d.display()
        );
        let cfg = validate(toml::from_str(&ok).unwrap()).unwrap();
        assert_eq!(cfg.pbx.transport, SideTransport::Tls);
        assert_eq!(cfg.agents.transport, SideTransport::UdpTcp);
        let tls = cfg.pbx.tls.as_ref().unwrap();
        assert_eq!(tls.server_name.as_deref(), Some("pbx.example.net"));
        assert_eq!(tls.client_ca_file, Some(d.join("ca.pem")));
        assert!(!tls.system_roots);
        // The TOML written back loads into the same config.
        let again = crate::from_str(&cfg.to_toml(), "roundtrip").unwrap();
        assert_eq!(again, cfg);

        // TLS without a certificate.
        let issues = tls_issues("[agents]\ntransport = \"tls\"\n");
        assert_eq!(issues[0].path.to_string(), "agents.tls.cert_file");
        assert!(
            issues[0].fix.contains("agents.tls.key_file"),
            "{:?}",
            issues[0]
        );

        // A key but no certificate.
        let issues = tls_issues(&format!(
            "[agents]\ntransport = \"tls\"\n[agents.tls]\nkey_file = \"{}/key.pem\"\n",
            d.display()
        ));
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].path.to_string(), "agents.tls.cert_file");

        // Missing file, and a key file given as the certificate.
        let issues = tls_issues(&format!(
            "[agents]\ntransport = \"tls\"\n[agents.tls]\ncert_file = \"{0}/key.pem\"\n\
             key_file = \"{0}/nope.pem\"\n",
            d.display()
        ));
        let by_key = |key: &str| issues.iter().find(|i| i.path.to_string() == key).unwrap();
        assert!(by_key("agents.tls.cert_file")
            .problem
            .contains("no PEM block of type CERTIFICATE"));
        let missing = by_key("agents.tls.key_file");
        assert!(missing.problem.contains("cannot read"), "{missing:?}");
        assert!(missing.fix.contains("agents.tls.key_file"), "{missing:?}");

        // A peer reached over TLS with nothing to verify it against.
        let issues = tls_issues(&format!(
            "[pbx]\ntransport = \"tls\"\npeer = \"10.0.0.5:5061\"\n[pbx.tls]\n\
             cert_file = \"{0}/cert.pem\"\nkey_file = \"{0}/key.pem\"\n",
            d.display()
        ));
        assert_eq!(issues[0].path.to_string(), "pbx.tls.ca_file");
        assert!(issues[0].fix.contains("system_roots"), "{:?}", issues[0]);

        // [tls] without transport = "tls": refused, not silently plaintext.
        let issues = tls_issues(&format!(
            "[pbx.tls]\ncert_file = \"{0}/cert.pem\"\nkey_file = \"{0}/key.pem\"\n",
            d.display()
        ));
        assert_eq!(issues[0].path.to_string(), "pbx.tls");
        assert!(issues[0].fix.contains("pbx.transport = \"tls\""));

        // A bad transport name and an IP as server_name.
        let issues = tls_issues(&format!(
            "[pbx]\ntransport = \"sctp\"\n[agents]\ntransport = \"tls\"\n[agents.tls]\n\
             cert_file = \"{0}/cert.pem\"\nkey_file = \"{0}/key.pem\"\n\
             server_name = \"10.0.0.1\"\n",
            d.display()
        ));
        assert!(by_path(&issues, "pbx.transport")
            .fix
            .contains("udp+tcp, tls"));
        assert!(by_path(&issues, "agents.tls.server_name")
            .fix
            .contains("leave the key out"));
        let _ = std::fs::remove_dir_all(d);
    }

    fn by_path<'a>(issues: &'a [Issue], key: &str) -> &'a Issue {
        issues
            .iter()
            .find(|i| i.path.to_string() == key)
            .unwrap_or_else(|| panic!("no issue at {key}: {issues:?}"))
    }

    #[test]
    fn unknown_keys_in_a_tls_table_are_named() {
        let e = crate::from_str("[pbx.tls]\ncert_fle = \"/x\"\n", "t.toml").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("pbx.tls.cert_fle"), "{text}");
        assert!(text.contains("did you mean `cert_file`"), "{text}");
        assert!(text.contains("in [pbx.tls]"), "{text}");
    }

    #[test]
    fn side_srtp_is_checked() {
        assert_eq!(Config::default().pbx.srtp, SrtpMode::Mirror);
        let raw: RawConfig =
            toml::from_str("[pbx]\nsrtp = \"require\"\n[agents]\nsrtp = \"optional\"\n").unwrap();
        let cfg = validate(raw).unwrap();
        assert_eq!(
            (cfg.pbx.srtp, cfg.agents.srtp),
            (SrtpMode::Require, SrtpMode::Optional)
        );
        let raw: RawConfig = toml::from_str("[agents]\nsrtp = \"on\"\n").unwrap();
        let issues = validate(raw).unwrap_err();
        assert_eq!(issues[0].path.to_string(), "agents.srtp");
        assert!(
            issues[0].fix.contains("mirror, require, optional"),
            "{}",
            issues[0].fix
        );
    }

    #[test]
    fn media_undecodable_is_checked() {
        assert_eq!(Config::default().media.undecodable, UndecodableMode::Reject);
        let raw: RawConfig = toml::from_str("[media]\nundecodable = \"relay-muted\"\n").unwrap();
        assert_eq!(
            validate(raw).unwrap().media.undecodable,
            UndecodableMode::RelayMuted
        );
        let raw: RawConfig = toml::from_str("[media]\nundecodable = \"pass\"\n").unwrap();
        let issues = validate(raw).unwrap_err();
        assert_eq!(issues[0].path.to_string(), "media.undecodable");
        assert!(
            issues[0].fix.contains("reject, relay-muted"),
            "{}",
            issues[0].fix
        );
    }

    #[test]
    fn sip_port_inside_media_range_conflicts() {
        let raw: RawConfig = toml::from_str("[pbx]\nlisten = \"0.0.0.0:30000\"\n").unwrap();
        let issues = validate(raw).unwrap_err();
        assert_eq!(issues[0].path.to_string(), "media.ports");
    }

    #[test]
    fn ng_listen_is_off_by_default_and_checked() {
        let cfg = validate(RawConfig::default()).unwrap();
        assert_eq!(cfg.ng.listen, None);
        let raw: RawConfig = toml::from_str("[ng]\nlisten = \"127.0.0.1:2223\"\n").unwrap();
        let cfg = validate(raw).unwrap();
        assert_eq!(cfg.ng.listen.map(|l| l.get().port()), Some(2223));
        // UDP with the PBX side's SIP port: refused, naming the key.
        let raw: RawConfig = toml::from_str("[ng]\nlisten = \"0.0.0.0:5060\"\n").unwrap();
        let issues = validate(raw).unwrap_err();
        assert_eq!(issues[0].path.to_string(), "ng.listen");
        assert!(issues[0].fix.contains("2223"), "{:?}", issues[0]);
        let raw: RawConfig = toml::from_str("[ng]\nlisten = \"127.0.0.1:30002\"\n").unwrap();
        assert_eq!(
            validate(raw).unwrap_err()[0].path.to_string(),
            "media.ports"
        );
        let raw: RawConfig = toml::from_str("[ng]\nlisten = \"not an address\"\n").unwrap();
        assert_eq!(validate(raw).unwrap_err()[0].path.to_string(), "ng.listen");
    }
}
