//! The `callmask` command line: parse arguments, load configuration, run, and map failures to
//! sysexits(3) codes (64 usage, 65 data, 66 cannot open, 70 software, 73 cannot create).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dsp::mask::{MaskConfig, Replacement};

/// callmask: SIP call monitoring proxy that forks sanitized audio to recorders.
#[derive(Debug, Parser)]
#[command(name = "callmask", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (defaults apply without a config file).
    Run {
        /// Configuration file (TOML).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Override any config key: dotted path = TOML value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Validate a configuration file and print the effective configuration (secrets redacted).
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
        /// Override any config key: dotted path = TOML value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Sanitize a recording offline: mute DTMF (and, when built in, spoken identifiers).
    Mask {
        /// Input: WAV (8/16 kHz, mono/stereo, 16-bit PCM, µ-law or A-law) or raw .ulaw/.alaw.
        input: PathBuf,
        /// Output: written in the input's format and length (time-aligned with the input).
        output: PathBuf,
        /// Write a JSON report of masked spans (times and reasons, never digits).
        #[arg(long, value_name = "SPANS.json")]
        report: Option<PathBuf>,
        /// Look-ahead of the simulated live pipeline, ms [default: 3000, or 80 with --no-speech].
        #[arg(long, value_name = "N")]
        lookahead_ms: Option<u32>,
        /// Do not mask spoken identifiers (DTMF only).
        #[arg(long)]
        no_speech: bool,
        /// Whisper model folder (builds with speech) [default: the root-owned folder
        /// scripts/setup_asr.sh installs, as config `speech.model_dir`:
        /// /var/lib/callmask/models/whisper-tiny.en, or …/whisper-base with base].
        #[arg(long, value_name = "DIR")]
        speech_model: Option<PathBuf>,
        /// Which Whisper model (as config `speech.model`): tiny.en (English-only, cheapest)
        /// or base (multilingual, decoded as English; about twice the CPU).
        #[arg(long, value_name = "NAME", default_value = "tiny.en", value_parser = speech_model_name)]
        speech_model_name: config::types::SpeechModel,
        /// Recognize speech with an OpenAI-compatible server instead of the built-in engine
        /// (POST URL/v1/audio/transcriptions; see scripts/setup_remote_asr.sh for a local one).
        #[arg(long, value_name = "URL", conflicts_with_all = ["no_speech", "speech_model", "speech_model_name"])]
        remote_url: Option<String>,
        /// Model name asked of the remote server.
        #[arg(long, value_name = "NAME", requires = "remote_url",
              default_value = callmask::io::speech::remote::DEFAULT_MODEL)]
        remote_model: String,
        /// File holding the remote server's API key (sent as a bearer token).
        #[arg(long, value_name = "FILE", requires = "remote_url")]
        remote_api_key_file: Option<PathBuf>,
        /// What muted audio becomes.
        #[arg(long, value_enum, default_value_t = ReplacementArg::Silence)]
        replacement: ReplacementArg,
        /// Frequency of the replacement tone (with --replacement tone), Hz.
        #[arg(long, default_value_t = 2000)]
        tone_hz: u32,
    },
    /// Play one demo call through the proxy on 127.0.0.1 and leave its sanitized recording.
    Demo(callmask::demo::DemoArgs),
}

/// `--speech-model-name`: the config's spellings and its error text (key and fix).
fn speech_model_name(s: &str) -> Result<config::types::SpeechModel, String> {
    config::types::SpeechModel::try_from(s).map_err(|e| format!("{} — {}", e.problem, e.fix))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReplacementArg {
    Silence,
    ComfortNoise,
    Tone,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Run { config, set } => run(config, set),
        Command::Demo(args) => callmask::demo::main(args),
        Command::CheckConfig { file, set } => {
            match config::load_with_overrides(Some(&file), &set) {
                Ok(cfg) => {
                    for w in cfg.warnings() {
                        eprintln!("warning: {w}");
                    }
                    print!("{}", cfg.to_toml_redacted());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Mask {
            input,
            output,
            report,
            lookahead_ms,
            no_speech,
            speech_model,
            speech_model_name,
            remote_url,
            remote_model,
            remote_api_key_file,
            replacement,
            tone_hz,
        } => {
            let lookahead_ms = lookahead_ms.unwrap_or(if no_speech {
                80
            } else {
                callmask::offline::speech::DEFAULT_SPEECH_LOOKAHEAD_MS
            });
            if lookahead_ms > 10_000 {
                eprintln!(
                    "callmask mask: --lookahead-ms {lookahead_ms} is out of range (0 to 10000)"
                );
                return ExitCode::from(64);
            }
            // Fail closed: without a recognizer (not in this build, or no model) it refuses.
            #[allow(clippy::disallowed_methods)]
            // main: the recognizer is timed with the real clock
            let speech = match &remote_url {
                Some(url) => {
                    remote_speech(url, &remote_model, remote_api_key_file, lookahead_ms).map(Some)
                }
                None => callmask::offline::speech::for_cli(
                    no_speech,
                    speech_model.as_deref(),
                    speech_model_name,
                    lookahead_ms,
                    std::time::Instant::now,
                ),
            };
            let mut speech = match speech {
                Ok(s) => s,
                Err((code, msg)) => {
                    eprintln!("callmask mask: {msg}");
                    return ExitCode::from(code);
                }
            };
            let pipeline = MaskConfig {
                lookahead_ms,
                replacement: match replacement {
                    ReplacementArg::Silence => Replacement::Silence,
                    ReplacementArg::ComfortNoise => Replacement::ComfortNoise,
                    ReplacementArg::Tone => Replacement::Tone { hz: tone_hz },
                },
                ..MaskConfig::default()
            };
            let opts = callmask::offline::MaskOptions {
                input,
                output,
                report,
                pipeline,
            };
            match callmask::offline::run_with_speech(&opts, speech.as_mut()) {
                Ok(r) => {
                    let summary: Vec<String> = r
                        .spans_by_reason
                        .iter()
                        .map(|(k, v)| format!("{v} {k}"))
                        .collect();
                    eprintln!(
                        "callmask mask: {} spans masked ({}), {:.0} ms fail-closed",
                        r.spans.len(),
                        if summary.is_empty() {
                            "none".to_string()
                        } else {
                            summary.join(", ")
                        },
                        r.fail_closed_ms
                    );
                    if let Some(sp) = &r.speech {
                        eprintln!(
                            "callmask mask: speech ({}): {} segments, {:.1} s audio recognised in {:.2} s; {} would be late live",
                            sp.engine, sp.segments, sp.recognised_ms / 1000.0, sp.recognizer_s, sp.live_late
                        );
                        if sp.errors > 0 {
                            eprintln!(
                                "callmask mask: {} segments failed in the recognizer and were muted whole",
                                sp.errors
                            );
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("callmask mask: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            }
        }
    }
}

/// `callmask mask --remote-url`: the remote engine with the masker settings the built-in
/// engine gets. Each request may take 30 s (offline nothing waits on it; a failure mutes the
/// segment whole). `Err((exit code, message))` like `offline::speech::for_cli`.
#[allow(clippy::disallowed_methods)] // main: the recognizer is timed with the real clock
fn remote_speech(
    url: &str,
    model: &str,
    key_file: Option<PathBuf>,
    lookahead_ms: u32,
) -> Result<callmask::offline::speech::SpeechMasking, (u8, String)> {
    use callmask::io::speech::remote::{RemoteError, RemoteRecognizer};
    let config = callmask::speech::tuned_config(lookahead_ms);
    if dsp::spoken::SpeechMasker::new(config).is_err() {
        return Err((
            64,
            format!("--lookahead-ms {lookahead_ms} is too short for spoken-identifier masking"),
        ));
    }
    let usage = |e: RemoteError| {
        let what = match e {
            RemoteError::BadUrl(_) => format!("--remote-url {url:?} is not an http(s) base URL"),
            RemoteError::BadModel => format!("--remote-model {model:?} cannot be sent"),
            RemoteError::BadApiKey => "the API key file must hold one printable key".to_owned(),
            other => other.to_string(),
        };
        (64, what)
    };
    let mut rec = RemoteRecognizer::new(url, std::time::Duration::from_secs(30))
        .map_err(usage)?
        .with_model(model)
        .map_err(usage)?;
    if let Some(path) = key_file {
        let key = std::fs::read_to_string(&path).map_err(|e| {
            (
                66,
                format!("cannot read the API key file {}: {e}", path.display()),
            )
        })?;
        rec = rec.with_api_key(&key).map_err(usage)?;
    }
    Ok(callmask::offline::speech::SpeechMasking {
        config,
        recognizer: Box::new(rec),
        engine: "remote",
        clock: std::time::Instant::now,
    })
}

#[allow(clippy::disallowed_methods)] // main: the edge of the program
fn run(config_path: Option<PathBuf>, set: Vec<String>) -> ExitCode {
    let cfg = match config::load_with_overrides(config_path.as_deref(), &set) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let format = match cfg.log.format {
        config::types::LogFormat::Json => callmask::logging::LogFormat::Json,
        config::types::LogFormat::Human => callmask::logging::LogFormat::Human,
    };
    if let Err(e) = callmask::logging::init(format, cfg.log.level.as_str()) {
        eprintln!("callmask: cannot set up logging: {e}");
        return ExitCode::from(64);
    }
    for w in cfg.warnings() {
        tracing::warn!(key = w.key, "{w}");
    }
    // Phone numbers in logs: keyed hash (key from log.hash_key, else random per process)
    // unless log.reveal_numbers opts in.
    let key = match &cfg.log.hash_key {
        Some(k) => callmask::redact::HashKey::from_bytes(*k.as_bytes()),
        None => callmask::redact::HashKey::random(),
    };
    let policy = if cfg.log.reveal_numbers {
        callmask::redact::NumberPolicy::Reveal
    } else {
        callmask::redact::NumberPolicy::Hash
    };
    callmask::redact::install(callmask::redact::NumberHasher::new(key, policy));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callmask: cannot start the runtime: {e}");
            return ExitCode::from(71);
        }
    };
    rt.block_on(async move {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let (drain_tx, drain) = tokio::sync::watch::channel(false);
        let (reload_tx, reload) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(signals(config_path, set, stop_tx, drain_tx, reload_tx));
        let control = callmask::io::run::Control {
            shutdown: stop,
            drain: Some(drain),
            reload: Some(reload),
        };
        match callmask::io::run::run_with(cfg, control, |_| {}).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("callmask: {e}");
                ExitCode::from(71)
            }
        }
    })
}

/// Signals of `callmask run`: SIGTERM or ctrl-c drains (the second one stops at once);
/// SIGHUP loads `--config FILE` and the same `--set`s again and hands the result over.
async fn signals(
    config_path: Option<PathBuf>,
    set: Vec<String>,
    stop: tokio::sync::watch::Sender<bool>,
    drain: tokio::sync::watch::Sender<bool>,
    reload: tokio::sync::mpsc::UnboundedSender<Result<config::Config, String>>,
) {
    #[cfg(unix)]
    use tokio::signal::unix::{signal, SignalKind};
    #[cfg(unix)]
    let (mut term, mut hup) = (
        signal(SignalKind::terminate()).ok(),
        signal(SignalKind::hangup()).ok(),
    );
    let mut draining = false;
    loop {
        #[cfg(unix)]
        let reload_now = tokio::select! {
            _ = tokio::signal::ctrl_c() => false,
            Some(()) = async { match &mut term { Some(t) => t.recv().await, None => std::future::pending().await } } => false,
            Some(()) = async { match &mut hup { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        #[cfg(not(unix))]
        let reload_now = {
            let _ = tokio::signal::ctrl_c().await;
            false
        };
        if reload_now {
            tracing::info!("SIGHUP: loading the configuration again");
            let r = config::load_with_overrides(config_path.as_deref(), &set)
                .map_err(|e| e.to_string());
            let _ = reload.send(r);
            continue;
        }
        if draining {
            tracing::info!("second stop signal: stopping now");
            let _ = stop.send(true);
            return;
        }
        draining = true;
        tracing::info!("stop signal: draining");
        let _ = drain.send(true);
    }
}
