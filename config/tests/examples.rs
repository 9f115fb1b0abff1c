//! The reference config loads to the defaults; bad inputs fail with the exact message.

use std::path::{Path, PathBuf};

use config::{from_str, load, load_with_overrides, Config, ErrorKind, RecorderConfig};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/callmask.toml")
}

#[test]
fn reference_config_equals_defaults() {
    let cfg = load(&example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg, Config::default());
}

#[test]
fn reference_config_commented_examples_are_valid() {
    // Uncomment every `# key = value` line that the example shows and check it still loads.
    let text = std::fs::read_to_string(example()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        let uncommented = t.strip_prefix("# ").filter(|rest| {
            let rest = rest.trim_start();
            rest.starts_with("[[recorder]]")
                || (rest.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) && rest.parse::<toml::Table>().is_ok()
                    && !rest.contains("..."))
        });
        match uncommented {
            Some(rest) => out.push_str(rest),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    // The example shows `encrypt_to = ["age1..."]`, a placeholder; drop it.
    let out: String = out
        .lines()
        .filter(|l| !l.contains("age1...") && !l.contains("token = \"change-me"))
        .map(|l| format!("{l}\n"))
        .collect();
    let cfg = from_str(&out, "uncommented").unwrap_or_else(|e| panic!("{e}\n---\n{out}"));
    assert!(cfg.pbx.peer.is_some());
    assert!(cfg.agents.peer.is_some());
    assert!(cfg.secure.dtmf_trigger.is_some());
    assert_eq!(cfg.recorders.len(), 3);
    assert!(matches!(cfg.recorders[2], RecorderConfig::Siprec(_)));
}

#[test]
fn reference_config_mentions_every_key() {
    let text = std::fs::read_to_string(example()).unwrap();
    for section in config::raw::fields_of::<config::raw::RawConfig>() {
        let header = if *section == "recorder" {
            "[[recorder]]".to_owned()
        } else {
            format!("[{section}]")
        };
        assert!(text.contains(&header), "{header} is not documented");
        for key in config::raw::section_fields(section).unwrap() {
            assert!(
                text.contains(&format!("\n{key} = ")) || text.contains(&format!("# {key} = ")),
                "{section}.{key} is not documented in examples/callmask.toml"
            );
        }
    }
}

#[test]
fn defaults_warn_about_what_matters() {
    let keys: Vec<&str> = Config::default().warnings().iter().map(|w| w.key).collect();
    assert_eq!(keys, ["recorder", "pbx.peer", "agents.allow"]);
    let open = load_with_overrides(
        None,
        &[
            "http.listen=0.0.0.0:9090".into(),
            "masking.dtmf=false".into(),
        ],
    )
    .unwrap();
    let keys: Vec<&str> = open.warnings().iter().map(|w| w.key).collect();
    assert_eq!(
        keys,
        [
            "recorder",
            "pbx.peer",
            "masking.dtmf",
            "agents.allow",
            "http.token"
        ]
    );
}

/// Issue 12 item 9: a warning prints as `key: message` with the message first, never the
/// value before it (`masking.dtmf: false: …`).
#[test]
fn warnings_print_the_message_first() {
    let all = load_with_overrides(
        None,
        &[
            "http.listen=0.0.0.0:9090".into(),
            "masking.dtmf=false".into(),
            "masking.speech=false".into(),
            "log.reveal_numbers=true".into(),
        ],
    )
    .unwrap();
    let short = load_with_overrides(None, &["masking.lookahead_ms=500".into()]).unwrap();
    let warnings: Vec<_> = all.warnings().into_iter().chain(short.warnings()).collect();
    assert!(warnings.len() >= 7, "{warnings:?}");
    for w in &warnings {
        let line = w.to_string();
        assert!(line.starts_with(&format!("{}: ", w.key)), "{line}");
        let first = w.message.split([' ', ':']).next().unwrap_or_default();
        assert!(
            first.chars().next().is_some_and(char::is_alphabetic)
                && !["true", "false", "not"].contains(&first),
            "the value comes before the message: {line}"
        );
    }
    let dtmf = warnings.iter().find(|w| w.key == "masking.dtmf").unwrap();
    assert_eq!(
        dtmf.to_string(),
        "masking.dtmf: DTMF digits reach the recorders unmasked (set to false)"
    );
}

/// Issue 13: `[limits]` keys load from a file and from `--set`, and are range-checked.
#[test]
fn limits_load_and_are_checked() {
    let cfg = load_with_overrides(
        None,
        &[
            "limits.tcp_idle_timeout_s=2".into(),
            "limits.streams_per_call=2".into(),
        ],
    )
    .unwrap();
    assert_eq!(cfg.limits.tcp_idle_timeout_s.get(), 2);
    assert_eq!(cfg.limits.streams_per_call.get(), 2);
    let cfg = from_str("[limits]\ncalls = 50\n", "l.toml").unwrap();
    assert_eq!(cfg.limits.calls.get(), 50);
    let e = from_str("[limits]\nstreams_per_call = 0\n", "l.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "l.toml:2:20: limits.streams_per_call: 0 is out of range — use a value from 1 to 64 (m= lines)"
    );
}

#[test]
fn no_file_gives_defaults() {
    assert_eq!(load_with_overrides(None, &[]).unwrap(), Config::default());
    assert_eq!(from_str("", "empty").unwrap(), Config::default());
}

#[test]
fn overrides_from_the_design() {
    let sets: Vec<String> = [
        "masking.lookahead_ms=80",
        "recorder=[{kind=\"wav\",dir=\"/tmp/rec\"}]",
        "pbx.peer=\"127.0.0.1:5070\"",
        "agents.peer=127.0.0.1:5080",
        "log.level=debug",
        "masking.speech=false",
    ]
    .map(String::from)
    .to_vec();
    let cfg = load_with_overrides(Some(&example()), &sets).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.masking.lookahead_ms.get(), 80);
    assert!(!cfg.masking.speech);
    assert!(cfg.masking.dtmf, "other keys of [masking] are kept");
    assert_eq!(cfg.pbx.peer.unwrap().to_string(), "127.0.0.1:5070");
    assert_eq!(cfg.agents.peer.unwrap().to_string(), "127.0.0.1:5080");
    assert_eq!(cfg.log.level.as_str(), "debug");
    match &cfg.recorders[..] {
        [RecorderConfig::Wav(w)] => assert_eq!(w.dir, PathBuf::from("/tmp/rec")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn later_overrides_win_and_replace_arrays() {
    let sets: Vec<String> = [
        "recorder=[{kind=\"wav\",dir=\"/a\"},{kind=\"rtp\",target=\"h:4000\"}]",
        "recorder=[{kind=\"wav\",dir=\"/b\"}]",
        "masking.lookahead_ms=80",
        "masking.lookahead_ms=90",
    ]
    .map(String::from)
    .to_vec();
    let cfg = load_with_overrides(None, &sets).unwrap();
    assert_eq!(cfg.recorders.len(), 1);
    assert_eq!(cfg.masking.lookahead_ms.get(), 90);
}

#[test]
fn missing_file_is_io() {
    let e = load(Path::new("/nonexistent/callmask.toml")).unwrap_err();
    assert!(e.is_io());
    assert_eq!(e.exit_code(), 66);
    assert_eq!(e.len(), 1);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/callmask.toml: cannot read the file: "),
        "{e}"
    );
}

#[test]
fn to_toml_round_trips_a_full_config() {
    let text = "
[pbx]
listen = \"10.0.0.1:5060\"
peer = \"10.0.0.5:5060\"
[agents]
listen = \"[::]:5062\"
peer = \"10.0.1.9:5060\"
[http]
token = \"0123456789abcdef0123\"
[log]
format = \"json\"
hash_key = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"
[secure]
dtmf_trigger = \"*7#\"
[[recorder]]
kind = \"wav\"
dir = \"/r\"
encrypt_to = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]
retention_days = 30
[[recorder]]
kind = \"siprec\"
srs = [\"sip:srs@10.0.0.8\"]
";
    let cfg = from_str(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let printed = cfg.to_toml();
    assert_eq!(
        from_str(&printed, "printed").unwrap_or_else(|e| panic!("{e}\n{printed}")),
        cfg
    );
    let redacted = cfg.to_toml_redacted();
    assert!(!redacted.contains("0123456789abcdef0123"));
    assert!(!redacted.contains("00112233445566778899"));
    assert_eq!(
        from_str(&Config::default().to_toml(), "d").unwrap(),
        Config::default()
    );
}

/// (input, errors as displayed, one per line)
const BAD: &[(&str, &str)] = &[
    (
        "[masking]\nlookahead_ms = 20000\n",
        "callmask.toml:2:16: masking.lookahead_ms: 20000 is out of range — use a value from 0 to 10000 (milliseconds)",
    ),
    (
        "[masking]\nlookahed_ms = 80\n",
        "callmask.toml:2:1: masking.lookahed_ms: unknown key `lookahed_ms` — did you mean `lookahead_ms`? allowed in [masking]: dtmf, speech, lookahead_ms, agent_dtmf, replacement",
    ),
    (
        "[pbxx]\nlisten = \"0.0.0.0:5060\"\n",
        "callmask.toml:1:2: pbxx: unknown key `pbxx` — did you mean `pbx`? allowed at the top level: pbx, agents, media, masking, speech, secure, http, log, sip, ng, limits, shutdown, recorder",
    ),
    (
        "[masking]\ndtmf = \"yes\"\n",
        "callmask.toml:2:8: masking.dtmf: expected true or false, found the string \"yes\" — write true or false, without quotes",
    ),
    (
        "[masking]\nlookahead_ms = \"80\"\n",
        "callmask.toml:2:16: masking.lookahead_ms: expected a whole number, found the string \"80\" — write a whole number without quotes, e.g. 3000",
    ),
    (
        "[media]\nports = \"30001-40000\"\n",
        "callmask.toml:2:9: media.ports: the range starts at odd port 30001 (RTP uses even ports) — write \"START-END\" with an even START and at least 4 ports, e.g. \"30000-40000\"",
    ),
    (
        "[media]\nports = \"30000-30002\"\n",
        "callmask.toml:2:9: media.ports: 30000-30002 holds fewer than 4 ports — write \"START-END\" with an even START and at least 4 ports, e.g. \"30000-40000\"",
    ),
    (
        "[pbx]\npeer = \"pbx.example:5060\"\n",
        "callmask.toml:2:8: pbx.peer: \"pbx.example:5060\" is not an IP address with a port — write IP:PORT, e.g. \"10.0.0.5:5060\" (IPv6: \"[::1]:5060\"; host names are not resolved)",
    ),
    (
        "[masking]\nagent_dtmf = \"mute\"\n",
        "callmask.toml:2:14: masking.agent_dtmf: \"mute\" is not one of the choices — use one of: pass, drop, flat-tone",
    ),
    (
        "[[recorder]]\nkind = \"wav\"\n",
        "callmask.toml:1:1: recorder[0].dir: a recorder of kind \"wav\" needs `dir` — add dir = \"/var/lib/callmask/recordings\"",
    ),
    (
        "[[recorder]]\nkind = \"tape\"\n",
        "callmask.toml:2:8: recorder[0].kind: \"tape\" is not one of the choices — use one of: wav, rtp, siprec",
    ),
    (
        "[[recorder]]\nkind = \"wav\"\ndir = \"/r\"\n\n[[recorder]]\nkind = \"rtp\"\ntarget = \"h:1\"\ndir = \"/r\"\n",
        "callmask.toml:8:1: recorder[1].dir: `dir` is not a setting of a recorder of kind \"rtp\" — remove it; kind \"rtp\" takes: kind, target, codec, srtp_key_file",
    ),
    (
        "[[recorder]]\nkind = \"wav\"\ndir = \"/r\"\nencrypt_to = [\"age1nope\"]\n",
        "callmask.toml:4:15: recorder[0].encrypt_to[0]: \"age1nope…\" has the wrong length or characters for an age recipient — use the public key that `age-keygen` prints: \"age1\" followed by 58 lower-case characters",
    ),
    (
        "[[recorder]]\nkind = \"siprec\"\nsrs = []\n",
        "callmask.toml:3:7: recorder[0].srs: the SRS list is empty — list at least one SRS URI, e.g. [\"sip:srs@10.0.0.8:5060\"]",
    ),
    (
        "[[recorder]]\nkind = \"rtp\"\ntarget = \"h:1\"\ncodec = \"original\"\n",
        "callmask.toml:4:9: recorder[0].codec: \"original\" is not supported: the sanitized fork is decoded PCM and is always sent as PCMU — write codec = \"pcmu\" or leave the key out",
    ),
    (
        "[shutdown]\ndrain_timeout_s = -1\n",
        "callmask.toml:2:19: shutdown.drain_timeout_s: -1 is out of range — use a value from 0 to 86400 (seconds)",
    ),
    (
        "[speech]\nengine = \"remote\"\n",
        "callmask.toml:1:1: speech.remote_url: engine = \"remote\" needs a server URL — add remote_url = \"http://HOST:PORT\" to [speech], or use engine = \"embedded\"",
    ),
    (
        "[speech]\nmodel = \"large\"\n",
        "callmask.toml:2:9: speech.model: \"large\" is not one of the choices — use one of: tiny.en, base",
    ),
    (
        "[speech]\nremote_model = \"\"\n",
        "callmask.toml:2:16: speech.remote_model: \"\" cannot be sent as a model name — write the name the server lists, 1–128 characters without quotes, e.g. \"whisper-1\"",
    ),
    (
        "[http]\ntoken = \"0123456789abcdef\"\ntoken_file = \"/etc/t\"\n",
        "callmask.toml:3:14: http.token_file: both http.token and http.token_file are set — keep one of them (token_file keeps the secret out of the config file)",
    ),
    (
        "[agents]\nlisten = \"0.0.0.0:5060\"\n",
        "callmask.toml:2:10: agents.listen: 0.0.0.0:5060 collides with pbx.listen = 0.0.0.0:5060 — give agents.listen a port of its own",
    ),
    (
        "[pbx]\nallow = [\"10.0.0.0/8\", \"10.0.0.5/8\"]\n",
        "callmask.toml:2:24: pbx.allow[1]: \"10.0.0.5/8\" has host bits set after the prefix — write the network address: \"10.0.0.0/8\"",
    ),
    (
        "[agents]\nallow = [\"phones.example\"]\n",
        "callmask.toml:2:10: agents.allow[0]: \"phones.example\" is not an IP address or network — write a network as \"10.0.0.0/24\" or one host as \"10.0.0.5\"",
    ),
    (
        "[masking\ndtmf = true\n",
        "callmask.toml:1:9: invalid table header: expected `.`, `]` — correct the TOML syntax here (see https://toml.io/en/v1.0.0)",
    ),
    // Several problems at once, all reported, in file order.
    (
        "[masking]\nlookahead_ms = -1\nspeeech = true\n[log]\nlevel = \"loud\"\n",
        "callmask.toml:2:16: masking.lookahead_ms: -1 is out of range — use a value from 0 to 10000 (milliseconds)\n\
         callmask.toml:3:1: masking.speeech: unknown key `speeech` — did you mean `speech`? allowed in [masking]: dtmf, speech, lookahead_ms, agent_dtmf, replacement\n\
         callmask.toml:5:9: log.level: \"loud\" is not one of the choices — use one of: trace, debug, info, warn, error",
    ),
];

#[test]
fn bad_inputs_fail_with_exact_messages() {
    let mut failures = Vec::new();
    for (input, expected) in BAD {
        match from_str(input, "callmask.toml") {
            Ok(_) => failures.push(format!("{input:?} loaded")),
            Err(e) if e.to_string() != *expected => failures.push(format!(
                "{input:?}\n  got:      {e}\n  expected: {expected}"
            )),
            Err(e) => assert_eq!(e.exit_code(), 64),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn override_errors_name_the_override() {
    let e =
        load_with_overrides(Some(&example()), &["masking.lookahead_ms=20000".into()]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--set masking.lookahead_ms: 20000 is out of range — use a value from 0 to 10000 (milliseconds)"
    );
    let e = load_with_overrides(None, &["masking.nope=1".into(), "justakey".into()]).unwrap_err();
    assert_eq!(e.len(), 2, "{e}");
    assert_eq!(e.errors()[0].kind, ErrorKind::UnknownKey);
    assert_eq!(e.errors()[1].kind, ErrorKind::BadOverride);
    assert_eq!(
        e.errors()[1].to_string(),
        "--set justakey: there is no `=` in this override — write --set KEY=VALUE, e.g. --set masking.lookahead_ms=80"
    );
}

/// Issue 13: the API token never comes from the command line (`ps` shows it to every user).
#[test]
fn the_api_token_is_refused_on_the_command_line() {
    for set in [
        "http.token=s3cret-token-value-0123456789",
        "http={token=\"s3cret-token-value-0123456789\"}",
    ] {
        let e = load_with_overrides(None, &[set.into()]).unwrap_err();
        assert_eq!(e.errors()[0].kind, ErrorKind::BadOverride, "{e}");
        let text = e.to_string();
        assert!(text.contains("http.token_file"), "{text}");
        assert!(
            !text.contains("s3cret"),
            "the error repeats the secret: {text}"
        );
    }
    // The file is still fine.
    assert!(load_with_overrides(None, &["http.token_file=/etc/callmask/token".into()]).is_ok());
}

#[test]
fn file_errors_stay_in_the_file_when_overrides_touch_other_keys() {
    let dir = std::env::temp_dir().join(format!("callmask-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(&path, "[masking]\nlookahead_ms = 20000\n").unwrap();
    let e = load_with_overrides(Some(&path), &["masking.dtmf=false".into()]).unwrap_err();
    assert_eq!(e.errors()[0].origin, path.display().to_string());
    assert_eq!(e.errors()[0].line, Some(2));
    // An override of the bad key fixes the file's mistake.
    let cfg = load_with_overrides(Some(&path), &["masking.lookahead_ms=100".into()]).unwrap();
    assert_eq!(cfg.masking.lookahead_ms.get(), 100);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn speech_model_picks_its_default_folder_unless_model_dir_says() {
    use config::types::SpeechModel;
    let cfg = from_str("", "empty").unwrap();
    assert_eq!(cfg.speech.model, SpeechModel::TinyEn);
    assert_eq!(
        cfg.speech.model_dir,
        PathBuf::from("/var/lib/callmask/models/whisper-tiny.en")
    );
    let cfg = from_str("[speech]\nmodel = \"base\"\n", "base").unwrap();
    assert_eq!(cfg.speech.model, SpeechModel::Base);
    assert_eq!(
        cfg.speech.model_dir,
        PathBuf::from("/var/lib/callmask/models/whisper-base")
    );
    let cfg = from_str(
        "[speech]\nmodel = \"base\"\nmodel_dir = \"/opt/models/b\"\n",
        "base elsewhere",
    )
    .unwrap();
    assert_eq!(cfg.speech.model_dir, PathBuf::from("/opt/models/b"));
    // The effective config names both, so check-config shows which folder is used.
    let toml = cfg.to_toml_redacted();
    assert!(toml.contains("model = \"base\""), "{toml}");
    assert!(toml.contains("model_dir = \"/opt/models/b\""), "{toml}");
    let cfg = load_with_overrides(Some(&example()), &["speech.model=\"base\"".to_owned()])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.speech.model, SpeechModel::Base);
}

/// Issue 12 item 9: `media.ports = "40000-30000"` reads as reversed, with the fix.
#[test]
fn reversed_media_ports_are_reported_as_reversed() {
    let e = load_with_overrides(None, &["media.ports=40000-30000".into()]).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("media.ports") && text.contains("start 40000 is above end 30000"),
        "{text}"
    );
    assert!(text.contains("swap them: \"30000-40000\""), "{text}");
    assert!(!text.contains("fewer than"), "{text}");
}
