//! `callmask run`: build every shell from the validated [`config::Config`] and run them until
//! shutdown. Binding happens here, so a port already in use is reported before anything runs.
#![allow(clippy::disallowed_methods)] // io shell: reads the clock

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use dsp::mask::{MaskConfig, Replacement};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use super::calls::CallTable;
use super::http::{self, HttpState};
use super::media::{KeySequence, LiveSpeech, MediaHub, MediaPolicy, MediaSettings};
use super::media_workers::MediaWorkers;
use super::readiness::Readiness;
use super::recorder;
use super::signalling::{ShellControl, Signalling};
use super::sip_stream::{spawn_listener, TcpLimits};
use super::speech::{RecognizerFactory, SpeechPool};
use crate::core::media::tap::TapEvent;
use crate::core::ports::{PortAllocator, PortRange};
use crate::core::proxy::{CoreLimits, ProxyConfig, ProxyCore, Side, SideConfig};
use crate::core::relay::LatchConfig;
use crate::core::sip::Limits;
use crate::metrics::{Metrics, ReloadResult};

/// Why `callmask run` could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RunError {
    /// A listener could not be bound.
    #[error(
        "cannot listen on {what} {addr}: {source} — is another process using it? change {key}"
    )]
    Bind {
        /// What the socket is for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The config key to change.
        key: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configuration value the runtime cannot use.
    #[error("{key}: {problem}")]
    Config {
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Addresses the running proxy actually bound (ports resolved when 0 was configured).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// PBX-side SIP (UDP).
    pub pbx_sip: SocketAddr,
    /// Agents-side SIP (UDP).
    pub agents_sip: SocketAddr,
    /// HTTP.
    pub http: SocketAddr,
    /// The NG control socket (media-node mode), when `ng.listen` is set.
    pub ng: Option<SocketAddr>,
}

/// The IP callmask advertises for a listen address: itself when specific, otherwise the
/// local address the kernel would use toward `peer` (no packet is sent), else loopback.
fn advertised_ip(listen: SocketAddr, peer: Option<SocketAddr>) -> IpAddr {
    if !listen.ip().is_unspecified() {
        return listen.ip();
    }
    peer.and_then(|p| {
        let s = StdUdpSocket::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)).ok()?;
        s.connect(p).ok()?;
        s.local_addr().ok().map(|a| a.ip())
    })
    .unwrap_or(Ipv4Addr::LOCALHOST.into())
}

fn mask_config(cfg: &config::Config) -> MaskConfig {
    MaskConfig {
        lookahead_ms: u32::from(cfg.masking.lookahead_ms.get()),
        inband_dtmf: cfg.masking.dtmf,
        replacement: match cfg.masking.replacement {
            config::types::Replacement::Silence => Replacement::Silence,
            config::types::Replacement::ComfortNoise => Replacement::ComfortNoise,
            config::types::Replacement::Tone => Replacement::Tone { hz: 2000 },
        },
        // With masking.speech on, nothing leaves until the speech glue says what is decided
        // (it does on every frame once an engine is up); without an engine the recorder path
        // stays muted whole (fail closed).
        undecided_until_told: cfg.masking.speech,
        ..MaskConfig::default()
    }
}

/// The engine `speech.engine` names, as a factory run once per worker thread.
fn recognizer_factory(cfg: &config::Config) -> Result<(&'static str, RecognizerFactory), String> {
    match cfg.speech.engine {
        config::types::SpeechEngine::Embedded => {
            embedded_factory(&cfg.speech.model_dir, cfg.speech.model)
        }
        config::types::SpeechEngine::Remote => {
            // Built once here (URL checked, key file read), cloned per worker: clones share
            // one connection pool. A request may take up to the look-ahead; later answers are
            // dropped and their segment muted anyway.
            let timeout = Duration::from_millis(u64::from(cfg.masking.lookahead_ms.get()).max(1));
            let rec = super::speech::remote::RemoteRecognizer::from_config(&cfg.speech, timeout)
                .map_err(|e| format!("speech.engine = \"remote\": {e}"))?;
            let factory: RecognizerFactory =
                Arc::new(move || Ok(Box::new(rec.clone()) as super::speech::BoxedRecognizer));
            Ok(("remote", factory))
        }
    }
}

#[cfg(feature = "whisper")]
fn embedded_factory(
    dir: &std::path::Path,
    model: config::types::SpeechModel,
) -> Result<(&'static str, RecognizerFactory), String> {
    use crate::speech::whisper::WhisperRecognizer;
    let dir = dir.to_path_buf();
    let factory: RecognizerFactory = Arc::new(move || {
        WhisperRecognizer::load(&dir, model)
            .map(|r| Box::new(r) as super::speech::BoxedRecognizer)
            .map_err(|e| {
                format!(
                    "speech.model = \"{model}\": {}: {e} (run scripts/setup.sh, or set speech.model_dir to a folder holding the {model} model)",
                    dir.display()
                )
            })
    });
    Ok((model.engine_label(), factory))
}

#[cfg(not(feature = "whisper"))]
fn embedded_factory(
    _dir: &std::path::Path,
    _model: config::types::SpeechModel,
) -> Result<(&'static str, RecognizerFactory), String> {
    Err("this build has no embedded speech engine (built without the `whisper` feature)".into())
}

/// The live speech pool, or why there is none (then the recorder path stays muted).
fn start_speech(
    cfg: &config::Config,
    mask: &MaskConfig,
    metrics: &Arc<Metrics>,
    readiness: &Arc<Readiness>,
) -> Result<LiveSpeech, String> {
    let config = crate::speech::tuned_config(mask.lookahead_ms);
    if dsp::spoken::SpeechMasker::new(config).is_err() {
        return Err(format!(
            "masking.lookahead_ms = {} is too short for spoken identifiers (use 3000)",
            mask.lookahead_ms
        ));
    }
    let (engine, factory) = recognizer_factory(cfg)?;
    let pool = SpeechPool::start(
        engine,
        factory,
        cfg.speech
            .workers_for(std::thread::available_parallelism().map_or(1, usize::from)),
        metrics.clone(),
        Some(readiness.clone()),
    )
    .map_err(|e| format!("cannot start recognizer threads: {e}"))?;
    Ok(LiveSpeech { pool, config })
}

/// Bind with `f`, mapping the failure to an error that names the socket and its config key.
async fn bind<T, F>(
    addr: SocketAddr,
    what: &'static str,
    key: &'static str,
    f: impl FnOnce(SocketAddr) -> F,
) -> Result<T, RunError>
where
    F: std::future::Future<Output = std::io::Result<T>>,
{
    f(addr).await.map_err(|source| RunError::Bind {
        what,
        addr,
        key,
        source,
    })
}

async fn bind_udp(
    addr: SocketAddr,
    what: &'static str,
    key: &'static str,
) -> Result<tokio::net::UdpSocket, RunError> {
    bind(addr, what, key, tokio::net::UdpSocket::bind).await
}

/// Receive buffer asked for each SIP UDP listener (issue 13, flood): one signalling task
/// reads both listeners, and while it is descheduled for a few milliseconds on a busy host
/// a flood fills Linux's default 208 KiB queue (a few hundred datagrams) and the kernel
/// drops whatever comes next — a legitimate 200 OK as readily as the flood. 4 MiB holds
/// about 0.4 s of a 5,000 message/s flood. The kernel caps it at `net.core.rmem_max`.
const SIP_UDP_RECV_BUFFER: usize = 4 << 20;

/// Widen `sock`'s receive buffer to [`SIP_UDP_RECV_BUFFER`] (best effort). Returns the size
/// the kernel granted (Linux reports twice the usable size, its bookkeeping included), or
/// `None` if it could not be read.
fn widen_recv_buffer(sock: &tokio::net::UdpSocket, what: &'static str) -> Option<usize> {
    let s = socket2::SockRef::from(sock);
    if let Err(e) = s.set_recv_buffer_size(SIP_UDP_RECV_BUFFER) {
        tracing::warn!(socket = what, error = %e, "cannot widen the SIP receive buffer");
    }
    let granted = s.recv_buffer_size().ok()?;
    if granted < SIP_UDP_RECV_BUFFER {
        tracing::info!(
            socket = what,
            granted,
            wanted = SIP_UDP_RECV_BUFFER,
            "SIP receive buffer capped by the kernel: raise net.core.rmem_max to {} so a burst \
             is queued rather than dropped",
            SIP_UDP_RECV_BUFFER
        );
    }
    Some(granted)
}

async fn bind_tcp(
    addr: SocketAddr,
    what: &'static str,
    key: &'static str,
) -> Result<tokio::net::TcpListener, RunError> {
    bind(addr, what, key, tokio::net::TcpListener::bind).await
}

/// Every `wav` recorder folder exists (or can be created) and takes a file.
/// How often the recorder sinks are checked again for `/readyz` (a folder that filled up or
/// lost its permissions, a target that lost its route).
const SINK_RECHECK: Duration = Duration::from_secs(10);

/// What keeps a configured sink from recording now: a `wav` folder (or a `siprec` fallback
/// folder) that cannot take a 4 KiB file, an `rtp` target with no route. Empty: none.
/// (`siprec` SRSs are probed by the sink itself.) Blocking: file system and resolver.
fn sink_problems(cfg: &config::Config) -> Vec<String> {
    let folder = |dir: &std::path::Path| {
        let probe = dir.join(format!(".callmask-probe-{}", std::process::id()));
        let ok = std::fs::create_dir_all(dir).is_ok()
            && std::fs::File::create(&probe)
                .and_then(|mut f| {
                    std::io::Write::write_all(&mut f, &[0u8; 4096])?;
                    f.sync_all()
                })
                .is_ok();
        let _ = std::fs::remove_file(&probe);
        (!ok).then(|| {
            format!(
                "recorder folder {} is not writable (or full)",
                dir.display()
            )
        })
    };
    cfg.recorders
        .iter()
        .filter_map(|r| match r {
            config::RecorderConfig::Wav(w) => folder(&w.dir),
            config::RecorderConfig::Siprec(s) => s.fallback_dir.as_deref().and_then(folder),
            config::RecorderConfig::Rtp(r) => {
                let target = (r.target.host(), r.target.port());
                let routed = std::net::ToSocketAddrs::to_socket_addrs(&target)
                    .ok()
                    .and_then(|mut a| a.next())
                    .is_some_and(|a| {
                        let any: SocketAddr = if a.is_ipv4() {
                            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                        } else {
                            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                        };
                        std::net::UdpSocket::bind(any)
                            .and_then(|s| s.connect(a))
                            .is_ok()
                    });
                (!routed).then(|| format!("rtp recorder target {} has no route", r.target))
            }
        })
        .collect()
}

/// Check the sinks of `cfg` into `readiness` (`sinks_reachable`), logging what changed since
/// `last`.
fn check_sinks(cfg: &config::Config, readiness: &Readiness, last: &mut Vec<String>) {
    let now = sink_problems(cfg);
    if now != *last {
        for p in now.iter().filter(|p| !last.contains(p)) {
            tracing::error!("{p}: /readyz not ready");
        }
        if now.is_empty() {
            tracing::info!("recorder sinks usable again");
        }
    }
    readiness.set_sinks_reachable(now.is_empty());
    *last = now;
}

/// What a running proxy is told from outside (`main` turns signals into these).
#[derive(Debug)]
pub struct Control {
    /// Becomes true: stop now. The calls in progress are cut; their recordings are still
    /// finished and closed.
    pub shutdown: watch::Receiver<bool>,
    /// Becomes true: drain, then stop. New calls are refused (503 with Retry-After) and
    /// `/readyz` says not ready; the calls in progress may go on for up to
    /// `shutdown.drain_timeout_s`; then as `shutdown`.
    pub drain: Option<watch::Receiver<bool>>,
    /// Configurations to swap in (the file and `--set`s loaded again on SIGHUP), or why the
    /// new one could not be loaded. Applied only if every changed key can change live
    /// ([`config::reload`]); `callmask_config_reloads_total{result}` counts each.
    pub reload: Option<mpsc::UnboundedReceiver<Result<config::Config, String>>>,
}

/// Run the proxy with `cfg` until `shutdown` changes to true. `on_bound` is told the bound
/// addresses once every listener is up (tests and `demo` use it).
pub async fn run(
    cfg: config::Config,
    shutdown: watch::Receiver<bool>,
    on_bound: impl FnOnce(Bound),
) -> Result<(), RunError> {
    let control = Control {
        shutdown,
        drain: None,
        reload: None,
    };
    run_with(cfg, control, on_bound).await
}

/// Run the proxy with `cfg` under `control` (stop, drain, reloads) until it stops.
pub async fn run_with(
    cfg: config::Config,
    control: Control,
    on_bound: impl FnOnce(Bound),
) -> Result<(), RunError> {
    let Control {
        mut shutdown,
        drain,
        reload,
    } = control;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new());

    let pbx_listen = cfg.pbx.listen.get();
    let agents_listen = cfg.agents.listen.get();
    let pbx_peer = cfg.pbx.peer.map(|p| p.get());
    let agents_peer = cfg.agents.peer.map(|p| p.get());
    // Checked before anything is bound: an open API never listens, even for a moment.
    let token = match &cfg.http.auth {
        // Never a command-line value: a file or the environment of the service.
        config::HttpAuth::None => std::env::var(HTTP_TOKEN_ENV)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()),
        config::HttpAuth::Token(t) => Some(t.as_str().to_string()),
        config::HttpAuth::TokenFile(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| RunError::Config {
                key: "http.token_file",
                problem: format!("cannot read {}: {e}", p.display()),
            })?;
            let t = t.trim();
            if t.is_empty() {
                return Err(RunError::Config {
                    key: "http.token_file",
                    problem: format!("{} is empty: write the API token in it", p.display()),
                });
            }
            Some(t.to_string())
        }
    };
    if token.is_none() && !cfg.http.listen.get().ip().is_loopback() {
        return Err(RunError::Config {
            key: "http.token_file",
            problem: format!(
                "http.listen = {} is reachable from other hosts and no API token is set: set \
                 http.token_file (or {HTTP_TOKEN_ENV}), or listen on 127.0.0.1",
                cfg.http.listen
            ),
        });
    }
    // SIP over TLS (issue 14): every certificate, key and CA file read and checked before
    // anything is bound.
    let tls = crate::core::side::BySide::new(
        tls_side(Side::Pbx, cfg.pbx.tls.as_ref())?,
        tls_side(Side::Agents, cfg.agents.tls.as_ref())?,
    );
    // The `rtp` sinks' SRTP keys (issue 14): a key that does not load stops the start, so a
    // sink never runs without the encryption it was configured with.
    let srtp_keys = rtp_sink_keys(&cfg).map_err(|problem| RunError::Config {
        key: "recorder.srtp_key_file",
        problem,
    })?;
    let pbx_sock = bind_udp(pbx_listen, "PBX-side SIP", "pbx.listen").await?;
    let agents_sock = bind_udp(agents_listen, "agents-side SIP", "agents.listen").await?;
    widen_recv_buffer(&pbx_sock, "PBX-side SIP");
    widen_recv_buffer(&agents_sock, "agents-side SIP");
    // TCP on the same addresses (the UDP port, which may have been chosen by the OS).
    let pbx_tcp = bind_tcp(
        pbx_sock.local_addr().unwrap_or(pbx_listen),
        "PBX-side SIP (TCP)",
        "pbx.listen",
    )
    .await?;
    let agents_tcp = bind_tcp(
        agents_sock.local_addr().unwrap_or(agents_listen),
        "agents-side SIP (TCP)",
        "agents.listen",
    )
    .await?;
    let http_listen = cfg.http.listen.get();
    let http_listener = bind_tcp(http_listen, "HTTP", "http.listen").await?;
    let ng_sock = match cfg.ng.listen {
        Some(l) => Some(bind_udp(l.get(), "NG control", "ng.listen").await?),
        None => None,
    };
    let bound = Bound {
        pbx_sip: pbx_sock.local_addr().unwrap_or(pbx_listen),
        agents_sip: agents_sock.local_addr().unwrap_or(agents_listen),
        http: http_listener.local_addr().unwrap_or(http_listen),
        ng: ng_sock.as_ref().and_then(|s| s.local_addr().ok()),
    };

    let limits = Limits {
        max_message: cfg.sip.max_message_bytes.get() as usize,
        max_headers: cfg.sip.max_headers.get() as usize,
        max_line: cfg.sip.max_line_bytes.get() as usize,
    };
    let pbx_ip = advertised_ip(pbx_listen, pbx_peer);
    let agents_ip = advertised_ip(agents_listen, agents_peer);
    let core_cfg = ProxyConfig {
        pbx: SideConfig {
            sip_addr: SocketAddr::new(pbx_ip, bound.pbx_sip.port()),
            media_ip: pbx_ip,
            peer: pbx_peer,
        },
        agents: SideConfig {
            sip_addr: SocketAddr::new(agents_ip, bound.agents_sip.port()),
            media_ip: agents_ip,
            peer: agents_peer,
        },
        limits,
        secret: rand::random(),
        codecs: cfg.media.codecs.clone(),
        undecodable: cfg.media.undecodable,
        srtp: crate::core::side::BySide::new(cfg.pbx.srtp, cfg.agents.srtp),
        registration_key: registration_key(&cfg),
    };
    let range = PortRange::new(cfg.media.ports.start(), cfg.media.ports.end()).map_err(|e| {
        RunError::Config {
            key: "media.ports",
            problem: e.to_string(),
        }
    })?;
    // Media-node mode draws from the same range: the upper half is the NG calls' pool.
    let (ports, ng_ports) = if ng_sock.is_some() {
        let mut halves = PortAllocator::split(range, 2, Duration::from_secs(5)).into_iter();
        match (halves.next(), halves.next()) {
            (Some(a), Some(b)) => (a, Some(b)),
            _ => {
                return Err(RunError::Config {
                    key: "media.ports",
                    problem: format!("{range} is too small to share with ng.listen: give it at least two RTP/RTCP pairs"),
                })
            }
        }
    } else {
        (PortAllocator::new(range, Duration::from_secs(5)), None)
    };
    let mut core = ProxyCore::new(core_cfg, ports);
    core.set_access(access_policy(&cfg));
    core.set_limits(crate::core::proxy::CoreLimits::from_config(&cfg.limits));
    core.set_tls(crate::core::side::BySide::new(
        tls[Side::Pbx].is_some(),
        tls[Side::Agents].is_some(),
    ));

    // Recorder path: one task consumes sanitized frames for every configured sink.
    let (tap_tx, tap_rx) = mpsc::channel::<TapEvent>(16_384);
    metrics.recorder().set_tap_sinks(tap_sink_kinds(&cfg));
    let (recorder_reload, recorder_reloads) = mpsc::unbounded_channel();
    let recorders = recorder::Recorders::from_config(&cfg, metrics.clone())
        .with_readiness(&readiness)
        .with_path_delay_ms(u32::from(cfg.masking.lookahead_ms.get()))
        .with_reloads(recorder_reloads);
    let tap = if recorders.is_empty() {
        // No sink: the recorder thread ends as soon as it starts (else it would wait for
        // this sender at shutdown).
        drop(tap_tx);
        None
    } else {
        Some(tap_tx)
    };
    // The sinks write files: give them their own thread and runtime so a slow disk can
    // never stall the relay's workers.
    let (recorder_done_tx, recorder_done) = tokio::sync::oneshot::channel::<()>();
    let recorder_thread = std::thread::Builder::new()
        .name("callmask-recorder".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(recorders.run(tap_rx)),
                Err(e) => tracing::error!(error = %e, "recorder runtime failed to start"),
            }
            let _ = recorder_done_tx.send(());
        });
    if let Err(e) = &recorder_thread {
        tracing::error!(error = %e, "recorder thread failed to start");
    }

    let mask = mask_config(&cfg);
    let speech = if cfg.masking.speech {
        match start_speech(&cfg, &mask, &metrics, &readiness) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(
                    key = "masking.speech",
                    error = %e,
                    "spoken-identifier masking is on but has no recognizer: recordings are muted (fail closed); set masking.speech=false to record with DTMF masking only"
                );
                None
            }
        }
    } else {
        readiness.set_recognizer_loaded(true);
        None
    };

    let (timeouts_tx, timeouts_rx) = mpsc::unbounded_channel();
    let table = Arc::new(CallTable::new());
    // Media on its own threads (one per core unless `media.workers` says otherwise): SIP and
    // the API keep this runtime.
    let media_workers = cfg.media.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        |w| usize::from(w.get()),
    );
    let workers = MediaWorkers::start_with(media_workers, Some(metrics.media())).map_err(|e| {
        RunError::Config {
            key: "media.workers",
            problem: format!("cannot start {media_workers} media worker threads: {e}"),
        }
    })?;
    tracing::info!(workers = media_workers, "media workers started");
    let settings = MediaSettings {
        pbx_bind: if pbx_listen.ip().is_unspecified() {
            pbx_listen.ip()
        } else {
            pbx_ip
        },
        agents_bind: if agents_listen.ip().is_unspecified() {
            agents_listen.ip()
        } else {
            agents_ip
        },
        inactivity: Duration::from_secs(u64::from(cfg.media.inactivity_timeout.get())),
        mask,
        latch: latch_config(&cfg),
        agent_dtmf: cfg.masking.agent_dtmf,
        dtmf_trigger: cfg.secure.dtmf_trigger.as_ref().map(KeySequence::new),
        dtmf_release: cfg.secure.dtmf_release.as_ref().map(KeySequence::new),
        speech,
    };
    // What a reload may change for the calls that start afterwards (both hubs read it).
    let (policy_tx, policy_rx) = watch::channel(MediaPolicy::of(&settings));
    let workers = Arc::new(workers);
    // Media-node mode: its own hub (and media timeouts) over the same workers, recorder
    // queue and call table, so NG calls run the SIP mode's media core and sinks.
    // The drain reaches the NG task too, and waits for its calls.
    let (ng_drain_tx, ng_drain_rx) = watch::channel(false);
    let ng_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ng = match (ng_sock, ng_ports) {
        (Some(socket), Some(ng_ports)) => {
            let (ng_timeouts_tx, ng_timeouts) = mpsc::unbounded_channel();
            let hub = MediaHub::new(
                settings.clone(),
                metrics.clone(),
                tap.clone(),
                ng_timeouts_tx,
                table.clone(),
            )
            .with_workers(workers.clone())
            .with_policy(policy_rx.clone());
            let core = crate::core::ng::NgCore::new(
                crate::core::ng::NgConfig {
                    media_ip: crate::core::side::BySide::new(pbx_ip, agents_ip),
                    codecs: cfg.media.codecs.clone(),
                    max_calls: ng_ports.capacity() / 2,
                },
                ng_ports,
            );
            Some(super::ng::NgShell {
                core,
                socket,
                media: hub,
                metrics: metrics.clone(),
                media_timeouts: ng_timeouts,
                drain: ng_drain_rx,
                active: ng_calls.clone(),
            })
        }
        _ => None,
    };
    let media = MediaHub::new(settings, metrics.clone(), tap, timeouts_tx, table.clone())
        .with_workers(workers)
        .with_policy(policy_rx);
    // Listeners and the API stop once signalling has (after a drain, or at once).
    let (stop_tx, stop) = watch::channel(false);

    let state = HttpState::new(metrics.clone(), readiness.clone(), table.clone())
        .with_token(token.as_deref());
    let mut http_shutdown = stop.clone();
    let http_task = tokio::spawn(http::serve(http_listener, state, async move {
        let _ = http_shutdown.wait_for(|v| *v).await;
    }));

    readiness.set_listeners_bound(true);
    let mut sink_state = Vec::new();
    check_sinks(&cfg, &readiness, &mut sink_state);
    tracing::info!(
        pbx = %bound.pbx_sip,
        agents = %bound.agents_sip,
        http = %bound.http,
        "callmask listening"
    );
    on_bound(bound);
    if let Some(ng) = ng {
        tracing::info!(ng = ?bound.ng, "media-node mode: NG control protocol listening");
        let mut ng_shutdown = stop.clone();
        tokio::spawn(ng.run(async move {
            let _ = ng_shutdown.wait_for(|v| *v).await;
        }));
    }

    let (stream_tx, stream_rx) = mpsc::channel(4096);
    let tcp_limits = super::sip_stream::TcpLimits::new(&cfg.limits, metrics.clone());
    for (side, listener) in [(Side::Pbx, pbx_tcp), (Side::Agents, agents_tcp)] {
        let (inputs, bounds) = (stream_tx.clone(), tcp_limits.clone());
        match &tls[side] {
            Some(t) => {
                tracing::info!(side = side.as_str(), "SIP over TLS only on this side");
                super::sip_stream::spawn_tls_listener(
                    side,
                    listener,
                    inputs,
                    limits,
                    bounds,
                    t.clone(),
                );
            }
            None => spawn_listener(side, listener, inputs, limits, bounds),
        }
    }
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let supervisor = tokio::spawn(
        Supervisor {
            current: cfg.clone(),
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            tcp_limits,
            policy: policy_tx,
            signalling: control_tx,
            recorders: recorder_reload,
            tls: tls.clone(),
            srtp_keys,
            sink_problems: sink_state,
            ng_drain: ng_drain_tx,
        }
        .run(reload, drain),
    );
    let signalling = Signalling {
        core,
        pbx: pbx_sock,
        agents: agents_sock,
        media,
        metrics,
        media_timeouts: timeouts_rx,
        stream_rx,
        stream_tx,
        limits,
        conns: Default::default(),
        state: cfg
            .sip
            .state_dir
            .as_deref()
            .map(super::state::BindingStore::new),
        control: Some(control_rx),
        tls,
        ng_calls,
    };
    signalling
        .run(async move {
            let _ = shutdown.wait_for(|v| *v).await;
        })
        .await;
    supervisor.abort();
    let _ = stop_tx.send(true);
    // Dropping the signalling task dropped the media hub and the tap sender: the recorder
    // finishes its files once the relay tasks have flushed.
    if tokio::time::timeout(Duration::from_secs(10), recorder_done)
        .await
        .is_err()
    {
        tracing::error!("the recorder did not finish its recordings within 10 s of shutdown");
    }
    let _ = http_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// The part of the running proxy that takes reloads and starts the drain.
struct Supervisor {
    /// The configuration in force.
    current: config::Config,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    tcp_limits: Arc<TcpLimits>,
    policy: watch::Sender<MediaPolicy>,
    signalling: mpsc::UnboundedSender<ShellControl>,
    /// New `[[recorder]]` lists for the recorder thread (`wav` and `rtp` sinks).
    recorders: mpsc::UnboundedSender<Vec<config::RecorderConfig>>,
    /// The TLS sides: a reload re-reads their certificate, key and CA files (rotation).
    tls: crate::core::side::BySide<Option<Arc<super::sip_tls::TlsSide>>>,
    /// The `rtp` sinks' SRTP keys as last loaded: a reload that finds another key in the
    /// same file rebuilds the sinks (key rotation).
    srtp_keys: Vec<Option<crate::core::sdp::SdesKey>>,
    /// What kept sinks from recording at the last check.
    sink_problems: Vec<String>,
    /// Tells the NG task to drain.
    ng_drain: watch::Sender<bool>,
}

impl Supervisor {
    async fn run(
        mut self,
        mut reload: Option<mpsc::UnboundedReceiver<Result<config::Config, String>>>,
        mut drain: Option<watch::Receiver<bool>>,
    ) {
        let mut recheck = tokio::time::interval(SINK_RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck.tick().await; // the first tick is now: the sinks were just checked
        loop {
            tokio::select! {
                _ = recheck.tick() => {
                    let (cfg, readiness) = (self.current.clone(), self.readiness.clone());
                    let mut last = std::mem::take(&mut self.sink_problems);
                    let checked = tokio::task::spawn_blocking(move || {
                        check_sinks(&cfg, &readiness, &mut last);
                        last
                    });
                    self.sink_problems = checked.await.unwrap_or_default();
                }
                r = async {
                    match &mut reload {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match r {
                    Some(r) => self.reload(r),
                    None => reload = None,
                },
                d = async {
                    match &mut drain {
                        Some(rx) => rx.wait_for(|v| *v).await.is_ok(),
                        None => std::future::pending().await,
                    }
                } => {
                    if !d {
                        drain = None;
                        continue;
                    }
                    let t = self.current.shutdown.drain_timeout_s.get();
                    tracing::info!(
                        drain_timeout_s = t,
                        "draining: new calls are refused (503), the calls in progress may go on; stop again to cut them now"
                    );
                    self.readiness.set_draining(true);
                    let _ = self.ng_drain.send(true);
                    let until = std::time::Instant::now() + Duration::from_secs(u64::from(t));
                    let _ = self.signalling.send(ShellControl::Drain { until });
                    drain = None;
                }
            }
        }
    }

    /// Swap in `new` if every key that changed can change live; else keep the configuration
    /// in force and say why. Never logs values (some keys are secrets).
    fn reload(&mut self, new: Result<config::Config, String>) {
        let refuse = |metrics: &Metrics| metrics.config_reloaded(ReloadResult::Failure);
        let new = match new {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    "configuration reload refused, the running configuration stays in force: {e}"
                );
                return refuse(&self.metrics);
            }
        };
        let restart = self.current.restart_keys(&new);
        if !restart.is_empty() {
            for key in &restart {
                tracing::error!(
                    key = %key,
                    "configuration reload refused: {key} changed and cannot change while callmask runs (restart needed); the running configuration stays in force"
                );
            }
            return refuse(&self.metrics);
        }
        if let Err(e) = crate::logging::set_level(new.log.level.as_str()) {
            tracing::error!(key = "log.level", "configuration reload refused: {e}");
            return refuse(&self.metrics);
        }
        // Certificate rotation: the same [<side>.tls] files, read again. A side that cannot
        // load them keeps serving its old certificate (and the reload counts as a failure).
        for side in [Side::Pbx, Side::Agents] {
            if let Some(t) = &self.tls[side] {
                if let Err(e) = t.reload() {
                    tracing::error!(
                        side = side.as_str(),
                        "TLS certificate reload refused, the old certificate stays in use: {e}"
                    );
                    return refuse(&self.metrics);
                }
            }
        }
        let srtp_keys = match rtp_sink_keys(&new) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(
                    key = "recorder.srtp_key_file",
                    "configuration reload refused, the running configuration stays in force: {e}"
                );
                return refuse(&self.metrics);
            }
        };
        for w in new.warnings() {
            tracing::warn!(key = w.key, "{w}");
        }
        self.tcp_limits.update(&new.limits);
        self.policy.send_replace(media_policy(&new));
        let rotated = srtp_keys != self.srtp_keys;
        self.srtp_keys = srtp_keys;
        if new.recorders != self.current.recorders || rotated {
            self.metrics.recorder().set_tap_sinks(tap_sink_kinds(&new));
            check_sinks(&new, &self.readiness, &mut self.sink_problems);
            let _ = self.recorders.send(new.recorders.clone());
        }
        let _ = self.signalling.send(ShellControl::Reload {
            access: access_policy(&new),
            limits: CoreLimits::from_config(&new.limits),
        });
        let changed = self.current.live_changes(&new);
        tracing::info!(
            changed = %if changed.is_empty() { "nothing".to_owned() } else { changed.join(", ") },
            "configuration reloaded (calls in progress keep their media settings)"
        );
        self.metrics.config_reloaded(ReloadResult::Success);
        self.current = new;
    }
}

/// Every `rtp` sink's SRTP key (`srtp_key_file`), read and checked, in the order of the
/// sinks (`None`: plain RTP); the first file that does not load, as an error.
fn rtp_sink_keys(cfg: &config::Config) -> Result<Vec<Option<crate::core::sdp::SdesKey>>, String> {
    cfg.recorders
        .iter()
        .filter_map(|r| match r {
            config::RecorderConfig::Rtp(r) => Some(r.srtp_key_file.as_deref()),
            _ => None,
        })
        .map(|f| {
            f.map(super::recorder::load_srtp_key)
                .transpose()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// The sink kinds of `cfg`'s recorders, in order (the recorder metrics count per sink).
fn tap_sink_kinds(cfg: &config::Config) -> Vec<crate::metrics::SinkKind> {
    cfg.recorders
        .iter()
        .map(|r| match r.kind() {
            config::types::RecorderKind::Wav => crate::metrics::SinkKind::Wav,
            config::types::RecorderKind::Rtp => crate::metrics::SinkKind::Rtp,
            config::types::RecorderKind::Siprec => crate::metrics::SinkKind::Siprec,
        })
        .collect()
}

/// The reloadable media settings of `cfg` (as [`run_with`] builds them at start).
fn media_policy(cfg: &config::Config) -> MediaPolicy {
    MediaPolicy {
        inactivity: Duration::from_secs(u64::from(cfg.media.inactivity_timeout.get())),
        mask: mask_config(cfg),
        latch: latch_config(cfg),
        agent_dtmf: cfg.masking.agent_dtmf,
        dtmf_trigger: cfg.secure.dtmf_trigger.as_ref().map(KeySequence::new),
        dtmf_release: cfg.secure.dtmf_release.as_ref().map(KeySequence::new),
    }
}

/// The TLS settings of `side` when it has `transport = "tls"`, every file checked.
fn tls_side(
    side: Side,
    cfg: Option<&config::TlsConfig>,
) -> Result<Option<Arc<super::sip_tls::TlsSide>>, RunError> {
    cfg.map(|c| super::sip_tls::TlsSide::new(side, c).map(Arc::new))
        .transpose()
}

/// The environment variable that may hold the HTTP API's bearer token (when neither
/// `http.token_file` nor `http.token` is set).
pub const HTTP_TOKEN_ENV: &str = "CALLMASK_HTTP_TOKEN";

/// Latching (issue 13 item 5): a non-signalled RTP source latches only from the signalled
/// network or the side's allow-list (`allow`, else the side's peer IP).
fn latch_config(cfg: &config::Config) -> LatchConfig {
    use config::types::Cidr;
    let list = |allow: Option<&[Cidr]>, peer: Option<config::types::PeerAddr>| -> Arc<[Cidr]> {
        match allow {
            Some(l) => Arc::from(l.to_vec()),
            None => Arc::from(
                peer.map(|p| Cidr::host(p.get().ip()))
                    .into_iter()
                    .collect::<Vec<_>>(),
            ),
        }
    };
    LatchConfig {
        allow: crate::core::side::BySide::new(
            list(cfg.pbx.allow.as_deref(), cfg.pbx.peer),
            list(cfg.agents.allow.as_deref(), cfg.agents.peer),
        ),
        ..LatchConfig::default()
    }
}

/// The SIP allow-lists (`pbx.allow`, `agents.allow`; absent: the side's peer only).
pub(crate) fn access_policy(cfg: &config::Config) -> crate::core::proxy::AccessPolicy {
    use crate::core::proxy::{AccessPolicy, AllowList};
    let mut policy = AccessPolicy::default();
    policy.allow[Side::Pbx] = AllowList::from_config(cfg.pbx.allow.as_deref());
    policy.allow[Side::Agents] = AllowList::from_config(cfg.agents.allow.as_deref());
    policy
}

/// The key of registration-mode contact tokens: derived from `log.hash_key` when set, so a
/// phone keeps its token across restarts (its refresh and un-REGISTER then match the binding
/// the PBX holds); else random per process, with a warning in registration mode.
fn registration_key(cfg: &config::Config) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    match &cfg.log.hash_key {
        Some(k) => {
            let mut h = Sha256::new();
            h.update(b"callmask registration tokens\0");
            h.update(k.as_bytes());
            h.finalize().into()
        }
        None => {
            if cfg.agents.peer.is_none() {
                tracing::warn!(
                    key = "log.hash_key",
                    "not set: registration contact tokens change when callmask restarts (phones are unreachable until their next REGISTER, and an un-REGISTER from before the restart leaves a stale binding at the PBX)"
                );
            }
            rand::random()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIP listener asks for the wide receive buffer and gets it up to the kernel's cap
    /// (`net.core.rmem_max`; Linux reports twice the size set).
    #[tokio::test]
    async fn sip_listener_receive_buffer_is_widened_up_to_the_kernel_cap() {
        let sock = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind on loopback");
        let before = socket2::SockRef::from(&sock)
            .recv_buffer_size()
            .expect("SO_RCVBUF readable");
        let granted = widen_recv_buffer(&sock, "test").expect("SO_RCVBUF readable");
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok());
        // (Where rmem_max is still the default, the default buffer is already the cap.)
        match cap {
            Some(cap) => assert_eq!(
                granted,
                2 * SIP_UDP_RECV_BUFFER.min(cap),
                "rmem_max {cap}, before {before}"
            ),
            None => assert!(granted >= before),
        }
    }
}
