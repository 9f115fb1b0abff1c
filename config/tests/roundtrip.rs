//! Property tests: printing a config and loading it back is the identity, and no input,
//! however malformed, makes the loader panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use config::types::{
    AgeRecipient, AgentDtmfMode, BearerToken, DtmfSequence, HashKey, HostPort, HttpUrl,
    InactivityTimeoutSecs, ListenAddr, LogFormat, LogLevel, LookaheadMs, MaxHeaders, MaxLineBytes,
    MaxMessageBytes, MediaCodec, PeerAddr, PortRange, RemoteModel, Replacement, RetentionDays,
    RtpCodec, SipUri, SpeechEngine, SpeechModel, SrsKeepaliveSecs, SrsTimeoutMs, SrtpMode,
    UndecodableMode, Workers,
};
use config::{
    from_str, load_with_overrides, AgentsConfig, Config, HttpAuth, HttpConfig, LogConfig,
    MaskingConfig, MediaConfig, NgConfig, PbxConfig, RecorderConfig, RtpRecorder, SecureConfig,
    SipConfig, SiprecRecorder, SpeechConfig, WavRecorder,
};
use proptest::prelude::*;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u16; 8]>().prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
    ]
}

/// SIP listeners use ports below 1024 and the media range starts at 1024 or above, so
/// generated configs never trip the cross-checks (which have their own tests).
fn listen(ports: std::ops::Range<u16>) -> impl Strategy<Value = ListenAddr> {
    (ip(), ports).prop_map(|(ip, port)| ListenAddr::from(SocketAddr::new(ip, port)))
}

fn peer() -> impl Strategy<Value = PeerAddr> {
    (ip(), 1u16..).prop_filter_map("unspecified", |(ip, port)| {
        PeerAddr::try_from(SocketAddr::new(ip, port)).ok()
    })
}

fn port_range() -> impl Strategy<Value = PortRange> {
    (512u16..32_766)
        .prop_flat_map(|half| {
            let start = half * 2;
            (Just(start), start + 3..=u16::MAX)
        })
        .prop_map(|(s, e)| PortRange::new(s, e).expect("generated valid"))
}

fn bounded<T>(lo: i64, hi: i64) -> impl Strategy<Value = T>
where
    T: TryFrom<i64> + std::fmt::Debug,
    <T as TryFrom<i64>>::Error: std::fmt::Debug,
{
    (lo..=hi).prop_map(|v| T::try_from(v).expect("generated in range"))
}

fn choice<T>(all: &'static [&'static str]) -> impl Strategy<Value = T>
where
    T: for<'a> TryFrom<&'a str> + std::fmt::Debug,
    for<'a> <T as TryFrom<&'a str>>::Error: std::fmt::Debug,
{
    proptest::sample::select(all).prop_map(|s| T::try_from(s).expect("listed choice"))
}

/// Paths with characters that need escaping in TOML strings.
fn path() -> impl Strategy<Value = PathBuf> {
    "/[a-zA-Z0-9 _.é\"'\\\\-]{1,20}(/[a-z0-9]{1,8}){0,2}".prop_map(PathBuf::from)
}

fn parse<T>(re: &'static str) -> impl Strategy<Value = T>
where
    T: for<'a> TryFrom<&'a str> + std::fmt::Debug,
    for<'a> <T as TryFrom<&'a str>>::Error: std::fmt::Debug,
{
    re.prop_map(|s| T::try_from(s.as_str()).expect("generated valid"))
}

const AGE: &[&str] = &["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"];

fn recorder() -> impl Strategy<Value = RecorderConfig> {
    prop_oneof![
        (
            path(),
            proptest::collection::vec(choice::<AgeRecipient>(AGE), 0..2),
            proptest::option::of(bounded::<RetentionDays>(1, 36_500)),
            any::<bool>()
        )
            .prop_map(|(dir, encrypt_to, retention_days, hash_numbers)| {
                RecorderConfig::Wav(WavRecorder {
                    dir,
                    encrypt_to,
                    retention_days,
                    hash_numbers,
                })
            }),
        (
            parse::<HostPort>("[a-z]{1,10}\\.example:[1-9][0-9]{0,3}"),
            choice::<RtpCodec>(RtpCodec::ALL),
            proptest::option::of(path())
        )
            .prop_map(|(target, codec, srtp_key_file)| {
                RecorderConfig::Rtp(RtpRecorder {
                    target,
                    codec,
                    srtp_key_file,
                })
            }),
        (
            proptest::collection::vec(
                parse::<SipUri>("sips?:[a-z]{1,8}@[a-z]{1,8}\\.example(:[1-9][0-9]{0,3})?"),
                1..3
            ),
            bounded::<SrsTimeoutMs>(100, 60_000),
            (
                bounded::<SrsKeepaliveSecs>(0, 3_600),
                bounded::<SrsKeepaliveSecs>(0, 3_600),
                any::<bool>()
            ),
            proptest::option::of(path()),
            listen(0..512)
        )
            .prop_map(
                |(srs, timeout_ms, (keepalive_s, probe_s, srtp), fallback_dir, bind)| {
                    RecorderConfig::Siprec(SiprecRecorder {
                        srs,
                        timeout_ms,
                        keepalive_s,
                        probe_s,
                        srtp,
                        // The strategy's URIs may be sips: (which needs it).
                        tls_ca_file: Some("/etc/callmask/srs-ca.pem".into()),
                        tls_cert_file: None,
                        tls_key_file: None,
                        tls_server_name: None,
                        fallback_dir,
                        encrypt_to: Vec::new(),
                        bind,
                    })
                }
            ),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    let sides = (
        listen(0..512),
        proptest::option::of(peer()),
        listen(512..1024),
        proptest::option::of(peer()),
        port_range(),
        bounded::<InactivityTimeoutSecs>(1, 86_400),
        proptest::option::of(bounded::<Workers>(1, 256)),
        proptest::sample::subsequence(MediaCodec::DECODABLE.to_vec(), 1..=4),
        choice::<UndecodableMode>(UndecodableMode::ALL),
        (
            choice::<SrtpMode>(SrtpMode::ALL),
            choice::<SrtpMode>(SrtpMode::ALL),
        ),
    );
    let masking = (
        any::<bool>(),
        any::<bool>(),
        bounded::<LookaheadMs>(0, 10_000),
        choice::<AgentDtmfMode>(AgentDtmfMode::ALL),
        choice::<Replacement>(Replacement::ALL),
    );
    let speech = (
        (
            choice::<SpeechEngine>(SpeechEngine::ALL),
            choice::<SpeechModel>(SpeechModel::ALL),
        ),
        path(),
        proptest::option::of(parse::<HttpUrl>(
            "https?://[a-z]{1,10}(:[1-9][0-9]{0,3})?(/[a-z]{0,5})?",
        )),
        proptest::option::of(bounded::<Workers>(1, 256)),
        parse::<RemoteModel>("[a-zA-Z0-9 ./_é'-]{1,30}"),
        proptest::option::of(path()),
        proptest::option::of(parse::<DtmfSequence>("[0-9*#A-D]{1,16}")),
        proptest::option::of(parse::<DtmfSequence>("[0-9*#A-D]{1,16}")),
    );
    let http_log = (
        listen(1024..u16::MAX),
        prop_oneof![
            Just(HttpAuth::None),
            parse::<BearerToken>("[A-Za-z0-9._~+/-]{16,40}").prop_map(HttpAuth::Token),
            path().prop_map(HttpAuth::TokenFile),
        ],
        choice::<LogFormat>(LogFormat::ALL),
        choice::<LogLevel>(LogLevel::ALL),
        any::<bool>(),
        proptest::option::of(any::<[u8; 32]>().prop_map(HashKey::from)),
    );
    let sip = (
        bounded::<MaxMessageBytes>(1_024, 1_048_576),
        bounded::<MaxHeaders>(8, 1_024),
        bounded::<MaxLineBytes>(256, 65_536),
        proptest::collection::vec(recorder(), 0..4),
    );
    (sides, masking, speech, http_log, sip).prop_filter_map(
        "cross-check",
        |(
            (
                pl,
                pp,
                al,
                ap,
                ports,
                inactivity,
                media_workers,
                codecs,
                undecodable,
                (pbx_srtp, agents_srtp),
            ),
            (dtmf, speech_on, lookahead, agent_dtmf, replacement),
            (
                (engine, model),
                model_dir,
                remote_url,
                workers,
                remote_model,
                key_file,
                trigger,
                release,
            ),
            (hl, auth, format, level, reveal, hash_key),
            (max_msg, max_hdr, max_line, recorders),
        )| {
            if engine == SpeechEngine::Remote && remote_url.is_none() {
                return None;
            }
            if trigger.is_some() && trigger == release {
                return None;
            }
            Some(Config {
                pbx: PbxConfig {
                    listen: pl,
                    peer: pp,
                    allow: None,
                    srtp: pbx_srtp,
                    ..Default::default()
                },
                agents: AgentsConfig {
                    listen: al,
                    peer: ap,
                    allow: None,
                    srtp: agents_srtp,
                    ..Default::default()
                },
                media: MediaConfig {
                    ports,
                    inactivity_timeout: inactivity,
                    workers: media_workers,
                    codecs,
                    undecodable,
                },
                masking: MaskingConfig {
                    dtmf,
                    speech: speech_on,
                    lookahead_ms: lookahead,
                    agent_dtmf,
                    replacement,
                },
                speech: SpeechConfig {
                    engine,
                    model,
                    model_dir,
                    remote_url,
                    workers,
                    remote_model,
                    remote_api_key_file: key_file,
                },
                secure: SecureConfig {
                    dtmf_trigger: trigger,
                    dtmf_release: release,
                },
                recorders,
                http: HttpConfig { listen: hl, auth },
                log: LogConfig {
                    format,
                    level,
                    reveal_numbers: reveal,
                    hash_key,
                },
                sip: SipConfig {
                    max_message_bytes: max_msg,
                    max_headers: max_hdr,
                    max_line_bytes: max_line,
                    state_dir: None,
                },
                ng: NgConfig::default(),
                limits: config::LimitsConfig::default(),
                shutdown: config::ShutdownConfig::default(),
            })
        },
    )
}

/// Lines that look like callmask config: known and unknown sections and keys, values of
/// every TOML type, some broken.
fn tomlish() -> impl Strategy<Value = String> {
    let section = proptest::sample::select(
        &[
            "[pbx]",
            "[agents]",
            "[media]",
            "[masking]",
            "[speech]",
            "[secure]",
            "[http]",
            "[log]",
            "[sip]",
            "[[recorder]]",
            "[bogus]",
            "[masking.x]",
            "[[pbx]]",
            "",
        ][..],
    );
    let key = proptest::sample::select(
        &[
            "listen",
            "peer",
            "ports",
            "dtmf",
            "speech",
            "lookahead_ms",
            "agent_dtmf",
            "kind",
            "dir",
            "encrypt_to",
            "srs",
            "target",
            "token",
            "token_file",
            "\"new\\nline\"",
            "level",
            "hash_key",
            "x",
            "recorder",
            "masking.lookahead_ms",
            "pbx",
        ][..],
    );
    let value = prop_oneof![
        Just("true".to_owned()),
        any::<i64>().prop_map(|i| i.to_string()),
        "\"[ -~]{0,12}\"",
        Just("[\"a\", 1]".to_owned()),
        Just("{kind = \"wav\"}".to_owned()),
        Just("[{kind=\"rtp\"}, 3]".to_owned()),
        Just("1979-05-27".to_owned()),
        Just("1.5".to_owned()),
        "[ -~]{0,6}",
        Just("\"a\\nb\"".to_owned()),
    ];
    proptest::collection::vec((section, key, value), 0..8).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(s, k, v)| format!("{s}\n{k} = {v}\n"))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn printed_config_loads_back_equal(c in config()) {
        let text = c.to_toml();
        let back = from_str(&text, "printed");
        prop_assert_eq!(back.as_ref().ok(), Some(&c), "{:?}\n{}", back.as_ref().err().map(|e| e.to_string()), text);
    }

    #[test]
    fn from_str_never_panics(s in "\\PC{0,200}") {
        if let Err(errors) = from_str(&s, "fuzz") {
            prop_assert_eq!(errors.to_string().lines().count(), errors.len(), "one line per error");
        }
    }

    #[test]
    fn tomlish_never_panics_and_errors_are_located(s in tomlish()) {
        if let Err(errors) = from_str(&s, "fuzz") {
            prop_assert!(!errors.is_empty());
            prop_assert_eq!(errors.to_string().lines().count(), errors.len(), "one line per error");
            for e in &errors {
                prop_assert!(!e.problem.is_empty() && !e.fix.is_empty(), "{}", e);
                if let Some(line) = e.line {
                    prop_assert!(line <= s.lines().count().max(1) + 1, "{} in\n{}", e, s);
                }
            }
        }
    }

    #[test]
    fn overrides_never_panic(sets in proptest::collection::vec("[ -~]{0,30}", 0..4)) {
        let _ = load_with_overrides(None, &sets);
    }
}
