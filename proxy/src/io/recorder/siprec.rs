//! The `siprec` sink: drives the sans-IO recording client ([`crate::core::siprec`]) over
//! one UDP SIP socket and sends each established session's two sanitized streams with the
//! `rtp` sink's packetizer ([`super::rtp`]: PCMU, own SSRC/sequence/timestamps, muted audio
//! sent as silence, gaps filled).
//!
//! Per call:
//! - With the call's first audio (answer or early media; a call without audio opens no
//!   session) two RTP sockets are bound (their ports go into the SDP offer) and the first SRS
//!   is INVITEd. Until an SRS accepts, the sanitized audio is held in memory
//!   (at most [`MAX_PENDING`] samples, ~10 s per direction; older audio beyond that is
//!   dropped and counted in `callmask_recorder_queue_dropped_frames_total{sink="siprec"}`).
//!   Once accepted, the held audio is sent first (a burst; timestamps keep it in place), then
//!   the call's audio as it comes.
//! - If every SRS fails, or the call ends before one accepts, the call (held audio included)
//!   is written as the `wav` sink writes it, into `fallback_dir` (age-encrypted with
//!   `encrypt_to`, never plaintext then), with its JSON sidecar. Without `fallback_dir` the
//!   call is not recorded: counted and logged.
//! - An established session is checked with an in-dialog OPTIONS every `keepalive_s`. When
//!   its SRS is lost (no answer within `timeout_ms`, or 408/481) or hangs up (BYE), the
//!   streams to it stop and the rest of the call goes to the SRSs after it in the list (a
//!   new session; audio held meanwhile, as at the start), and when none is left, to the
//!   fallback file (the part already sent is silence there, so the file keeps the call's
//!   time line). Both are counted (`callmask_siprec_srs_lost_total`,
//!   `callmask_siprec_srs_byes_total`).
//! - Between calls too, every `probe_s`, an out-of-dialog OPTIONS probes each SRS
//!   ([`SrsProbe`]): `callmask_siprec_srs_reachable` counts those that answer, and the sink
//!   reports itself unusable to `/readyz` (`sinks_reachable`) while none does and it has no
//!   usable fallback folder.
//!
//! Only the tap's sanitized PCM is ever sent, and no RFC 4733 event: the offer has none.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket as StdUdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use age::x25519;
use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::sink::{CallEnd, CallStart, Datagram, RecorderSink};
use super::{align, rtp, wav};
use crate::core::proxy::{CallRef, Side};
use crate::core::side::BySide;
use crate::core::sip::txn::Timers;
use crate::core::sip::{Frame, Limits};
use crate::core::siprec::{
    FailoverReason, RecordingInfo, Src, SrcConfig, SrcEvent, SrsProbe, SrsTarget, SrsTransport,
};
use crate::io::readiness::Readiness;
use crate::metrics::{Metrics, SinkKind};

/// Most samples (both directions together) held per call while no SRS has accepted yet:
/// 10 s per direction at 8 kHz.
pub(super) const MAX_PENDING: usize = 2 * 10 * super::RATE.samples_per_second() as usize;

/// Where fallback files go.
struct Fallback {
    dir: PathBuf,
    recipients: Vec<x25519::Recipient>,
    /// `encrypt_to` is unusable: never write plaintext, record nothing.
    broken: bool,
}

/// What happens to a call's audio.
enum Media {
    /// No SRS has accepted yet: audio held, (side, position, samples).
    Pending {
        held: VecDeque<(Side, u64, Vec<i16>)>,
        samples: usize,
    },
    /// Sent to the SRS (`enabled[side]`: the SRS accepted that side's stream).
    Sending {
        rtp: rtp::RtpCall,
        enabled: BySide<bool>,
    },
    /// Written to the fallback directory.
    Fallback {
        aligner: align::Aligner,
        wav: Option<wav::WavFile>,
    },
    /// Not recorded (the SRS hung up, or every SRS failed with no fallback).
    Off,
}

struct Call {
    name: String,
    info: RecordingInfo,
    /// A session is to be opened with the next audio, trying the SRSs from this index (the
    /// call's first audio; or the SRS in use was lost, and the rest goes to the next).
    open_from: Option<usize>,
    /// The SRS the current session is established with.
    srs: Option<usize>,
    /// Some audio came (a call without any leaves no recording).
    heard: bool,
    /// RTP sockets whose ports the offer names (the PBX side's stream, the agents'), until
    /// the SRS accepts.
    socks: Option<BySide<StdUdpSocket>>,
    media: Media,
    send_error_logged: bool,
}

/// One configured `siprec` sink.
pub(super) struct SiprecSink {
    /// Its settings (a reload with the same ones keeps the sink).
    cfg: config::SiprecRecorder,
    /// Its place in the recorder (the first field of the datagrams it forwards).
    index: usize,
    /// The task reading the SIP socket, once activated.
    reader: Option<JoinHandle<()>>,
    /// Keyed by a session number, not the call: a session may linger (absorbing late
    /// answers) after its call ended, and must never swallow a new start of the same call.
    src: Src<u64>,
    sessions: HashMap<u64, CallRef>,
    session_of: HashMap<CallRef, u64>,
    next_session: u64,
    /// `src.poll_timeout()` as of the last mutation (asking costs a walk over the sessions).
    deadline: Option<Instant>,
    /// The socket until [`RecorderSink::activate`] moves it into the runtime.
    std_sock: Option<StdUdpSocket>,
    /// A clone for sending: a plain non-blocking `send_to` needs no readiness from the
    /// runtime (tokio's `try_send_to` reports "would block" until the reactor has polled a
    /// fresh socket once).
    send_sock: Option<StdUdpSocket>,
    media_ip: IpAddr,
    fallback: Option<Fallback>,
    calls: HashMap<CallRef, Call>,
    metrics: Arc<Metrics>,
    /// Out-of-dialog OPTIONS to every SRS (`keepalive_s` > 0).
    probe: Option<SrsProbe>,
    /// SRSs counted in `callmask_siprec_srs_reachable` by this sink.
    reachable: i64,
    /// Told when the sink becomes unusable or usable again.
    readiness: Option<Arc<Readiness>>,
    /// Reported unusable (and not yet usable again).
    unusable: bool,
    /// Where the TCP connections' messages go (set by [`RecorderSink::activate`]).
    datagrams: Option<mpsc::Sender<Datagram>>,
    /// SRSs reached over a connection (`;transport=tcp`, TLS).
    stream_targets: HashMap<SocketAddr, SrsTransport>,
    /// The client configuration toward TLS SRSs, and the name to verify (`None`: the IP).
    tls: Option<(Arc<rustls::ClientConfig>, Option<String>)>,
    /// Per TCP SRS, its connection task's queue (opened on the first message, again after
    /// it closed).
    streams: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
}

impl SiprecSink {
    /// Bind the SIP socket and resolve the SRS list. SRSs that do not resolve (or `sips:`,
    /// which needs TLS) are skipped with an error; `None` if none is left or binding fails.
    pub(super) fn new(cfg: &config::SiprecRecorder, metrics: Arc<Metrics>) -> Option<SiprecSink> {
        let bind = cfg.bind.get();
        let sock = match StdUdpSocket::bind(bind).and_then(|s| {
            s.set_nonblocking(true)?;
            Ok(s)
        }) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%bind, error = %e, "siprec recorder: cannot bind its SIP socket; sink skipped");
                return None;
            }
        };
        let port = sock.local_addr().map(|a| a.port()).unwrap_or(bind.port());
        let mut targets = Vec::new();
        for (i, uri) in cfg.srs.iter().enumerate() {
            match (srs_addr(uri.as_str()), srs_transport(uri.as_str())) {
                (Some(addr), Some(transport)) => {
                    let local = SocketAddr::new(local_ip_toward(bind.ip(), addr), port);
                    targets.push(SrsTarget {
                        uri: uri.as_str().to_owned(),
                        addr,
                        transport,
                        local,
                    });
                }
                _ => tracing::error!(
                    srs = i,
                    "siprec recorder: SRS URI is sips:, asks for a transport other than udp or tcp, or does not resolve; skipped"
                ),
            }
        }
        if targets.is_empty() {
            tracing::error!("siprec recorder: no usable SRS; sink skipped");
            return None;
        }
        // TLS toward `sips:` / `;transport=tls` SRSs: verified against tls_ca_file.
        let tls = if targets.iter().any(|t| t.transport == SrsTransport::Tls) {
            let client = cfg.tls_ca_file.as_deref().map(|ca| {
                let pair = cfg
                    .tls_cert_file
                    .as_deref()
                    .zip(cfg.tls_key_file.as_deref());
                crate::io::sip_tls::srs_client_config(ca, pair)
            });
            match client {
                Some(Ok(c)) => Some((c, cfg.tls_server_name.clone())),
                Some(Err(e)) => {
                    tracing::error!("siprec recorder: {e}; the TLS SRSs are skipped");
                    None
                }
                None => {
                    tracing::error!("siprec recorder: a sips: (or transport=tls) SRS needs tls_ca_file; the TLS SRSs are skipped");
                    None
                }
            }
        } else {
            None
        };
        if tls.is_none() {
            targets.retain(|t| t.transport != SrsTransport::Tls);
        }
        if targets.is_empty() {
            tracing::error!("siprec recorder: no usable SRS; sink skipped");
            return None;
        }
        let stream_targets = targets
            .iter()
            .filter(|t| t.transport.reliable())
            .map(|t| (t.addr, t.transport))
            .collect();
        let keepalive = match cfg.keepalive_s.get() {
            0 => None,
            s => Some(Duration::from_secs(u64::from(s))),
        };
        let timeout = Duration::from_millis(u64::from(cfg.timeout_ms.get()));
        let probe_every = match cfg.probe_s.get() {
            0 => None,
            s => Some(Duration::from_secs(u64::from(s))),
        };
        let probe = probe_every.map(|every| {
            SrsProbe::new(
                targets.clone(),
                Timers::default(),
                every,
                timeout,
                format!("{:016x}", rand::random::<u64>()),
                Instant::now(),
            )
        });
        let fallback = cfg.fallback_dir.as_ref().map(|dir| {
            let (recipients, broken) = wav::age_recipients(&cfg.encrypt_to, dir, "siprec");
            Fallback {
                dir: dir.clone(),
                recipients,
                broken,
            }
        });
        tracing::info!(
            srs = targets.len(),
            local = %SocketAddr::new(bind.ip(), port),
            fallback = fallback.is_some(),
            "siprec recorder ready"
        );
        Some(SiprecSink {
            cfg: cfg.clone(),
            index: 0,
            reader: None,
            sessions: HashMap::new(),
            session_of: HashMap::new(),
            next_session: 0,
            // The first probes are due at once.
            deadline: probe.as_ref().and_then(SrsProbe::poll_timeout),
            src: Src::new(SrcConfig {
                targets,
                timeout,
                timers: Timers::default(),
                keepalive,
                srtp: cfg.srtp,
            }),
            send_sock: sock.try_clone().ok(),
            std_sock: Some(sock),
            media_ip: bind.ip(),
            fallback,
            calls: HashMap::new(),
            metrics,
            probe,
            reachable: 0,
            readiness: None,
            unusable: false,
            datagrams: None,
            stream_targets,
            tls,
            streams: HashMap::new(),
        })
    }

    /// One message to an SRS: a datagram, or onto the TCP connection to it.
    fn send(&mut self, t: crate::core::sip::txn::Transmit) {
        let Some(&transport) = self.stream_targets.get(&t.dest) else {
            if let Some(sock) = &self.send_sock {
                if let Err(e) = sock.send_to(&t.payload, t.dest) {
                    // The transaction retransmits (or times out and fails over).
                    tracing::debug!(dest = %t.dest, error = %e, "siprec recorder: SIP send failed");
                }
            }
            return;
        };
        if let Some(tx) = self.streams.get(&t.dest) {
            match tx.try_send(t.payload.clone()) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!(dest = %t.dest, "siprec recorder: TCP queue full, message dropped");
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.streams.remove(&t.dest);
                }
            }
        }
        let Some(datagrams) = self.datagrams.clone() else {
            return;
        };
        let tls = match (transport, &self.tls) {
            (SrsTransport::Tls, Some((client, name))) => {
                let name = match name {
                    Some(n) => rustls::pki_types::ServerName::try_from(n.clone()).ok(),
                    None => Some(rustls::pki_types::ServerName::IpAddress(t.dest.ip().into())),
                };
                let Some(name) = name else {
                    return;
                };
                Some((tokio_rustls::TlsConnector::from(client.clone()), name))
            }
            (SrsTransport::Tls, None) => return,
            _ => None,
        };
        let (tx, rx) = mpsc::channel(64);
        let _ = tx.try_send(t.payload);
        tokio::spawn(stream_connection(self.index, t.dest, tls, rx, datagrams));
        self.streams.insert(t.dest, tx);
    }

    /// Take back what this sink added to the reachable gauge and the readiness.
    fn forget_health(&mut self) {
        self.metrics
            .recorder()
            .siprec_srs_reachable_add(-self.reachable);
        self.reachable = 0;
        if self.unusable {
            self.unusable = false;
            if let Some(r) = &self.readiness {
                r.siprec_sink_unusable(false);
            }
        }
    }

    /// The probe's verdicts into the gauge and, on a change, the readiness: unusable while
    /// every SRS's last probe went unanswered and there is no usable fallback.
    fn publish_health(&mut self) {
        let Some(probe) = &self.probe else {
            return;
        };
        let up = probe.up();
        let reachable = up.iter().filter(|u| **u == Some(true)).count() as i64;
        if reachable != self.reachable {
            self.metrics
                .recorder()
                .siprec_srs_reachable_add(reachable - self.reachable);
            self.reachable = reachable;
        }
        let fallback = self.fallback.as_ref().is_some_and(|f| !f.broken);
        let unusable = !fallback && up.iter().all(|u| *u == Some(false));
        if unusable != self.unusable {
            self.unusable = unusable;
            if unusable {
                tracing::error!("siprec recorder: no SRS answers and there is no fallback: calls starting now cannot be recorded");
            } else {
                tracing::info!("siprec recorder: an SRS answers again");
            }
            if let Some(r) = &self.readiness {
                r.siprec_sink_unusable(unusable);
            }
        }
    }

    /// The call's first audio (or the rest of it after its SRS was lost): open its RTP
    /// sockets and INVITE the SRSs from `open_from` on.
    fn open(&mut self, call: CallRef) {
        let Some(mut c) = self.calls.remove(&call) else {
            return;
        };
        self.open_session(call, &mut c);
        self.calls.insert(call, c);
        self.pump();
    }

    fn open_session(&mut self, call: CallRef, c: &mut Call) {
        let Some(first) = c.open_from.take() else {
            return;
        };
        let socks = match (bind_rtp(self.media_ip), bind_rtp(self.media_ip)) {
            (Ok(a), Ok(b)) => BySide::new(a, b),
            (Err(e), _) | (_, Err(e)) => {
                self.metrics.recorder().recorder_error(SinkKind::Siprec);
                tracing::error!(call = call.0, error = %e, "siprec recorder: cannot open RTP sockets; trying the fallback");
                self.start_fallback(call, c);
                return;
            }
        };
        let ports = [port_of(&socks[Side::Pbx]), port_of(&socks[Side::Agents])];
        let token = format!("{:016x}", rand::random::<u64>());
        c.socks = Some(socks);
        self.next_session += 1;
        let key = self.next_session;
        self.sessions.insert(key, call);
        self.session_of.insert(call, key);
        self.src
            .start_from(key, token, ports, c.info.clone(), first, Instant::now());
    }

    /// Send what the client and the probe want sent and act on the client's events, until
    /// acting on them sends nothing new.
    fn pump(&mut self) {
        while let Some(t) = self.probe.as_mut().and_then(SrsProbe::poll_transmit) {
            self.send(t);
        }
        self.publish_health();
        loop {
            while let Some(t) = self.src.poll_transmit() {
                self.send(t);
            }
            let mut acted = false;
            while let Some((key, ev)) = self.src.poll_event() {
                if let Some(&call) = self.sessions.get(&key) {
                    self.on_event(call, ev);
                    acted = true;
                }
            }
            if !acted {
                break;
            }
        }
        self.deadline = match (
            self.src.poll_timeout(),
            self.probe.as_ref().and_then(SrsProbe::poll_timeout),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// The SRS in use is gone (lost, or it hung up): stop the streams, end its session, and
    /// send the rest of the call to the SRSs after it, or to the fallback file.
    fn move_on(&mut self, call: CallRef, c: &mut Call) {
        if let Media::Sending { rtp, .. } = std::mem::replace(&mut c.media, Media::Off) {
            self.stop_sending(call, rtp, &mut c.send_error_logged);
        }
        if let Some(key) = self.session_of.remove(&call) {
            self.sessions.remove(&key);
            self.src.end(key, Instant::now());
        }
        let next = c.srs.take().map_or(0, |i| i + 1);
        c.media = Media::Pending {
            held: VecDeque::new(),
            samples: 0,
        };
        if next < self.src.targets() {
            tracing::warn!(
                call = call.0,
                srs = next,
                "siprec recorder: the rest of the call goes to the next SRS"
            );
            c.open_from = Some(next);
            self.open_session(call, c);
        } else {
            tracing::warn!(
                call = call.0,
                "siprec recorder: no SRS left; the rest of the call goes to the fallback"
            );
            self.start_fallback(call, c);
        }
    }

    fn on_event(&mut self, call: CallRef, ev: SrcEvent) {
        let Some(mut c) = self.calls.remove(&call) else {
            return;
        };
        match ev {
            SrcEvent::Established { srs, dests, keys } => {
                self.metrics.recorder().siprec_established();
                tracing::info!(
                    call = call.0,
                    srs,
                    "siprec recorder: SRS accepted the session"
                );
                // The core reports a usable answer only (at least one stream) and only while
                // the call's audio is held; anything else leaves the call as it is.
                let any = dests[0].or(dests[1]);
                if let (true, Some(any)) = (matches!(c.media, Media::Pending { .. }), any) {
                    if let Some(socks) = c.socks.take() {
                        let held = match std::mem::replace(&mut c.media, Media::Off) {
                            Media::Pending { held, .. } => held,
                            _ => VecDeque::new(),
                        };
                        // The offer's streams by side: the PBX side's first.
                        let enabled = BySide::new(dests[0].is_some(), dests[1].is_some());
                        let d = BySide::new(dests[0].unwrap_or(any), dests[1].unwrap_or(any));
                        let Some(mut rtp) = rtp::RtpCall::with_sockets(socks, d, keys.as_ref())
                        else {
                            // Only keys the crypto provider refuses get here: never plain.
                            self.metrics.recorder().recorder_error(SinkKind::Siprec);
                            tracing::error!(
                                call = call.0,
                                "siprec recorder: SRTP context refused; recording to the fallback"
                            );
                            c.media = Media::Pending {
                                samples: held.iter().map(|(_, _, s)| s.len()).sum(),
                                held,
                            };
                            self.start_fallback(call, &mut c);
                            self.calls.insert(call, c);
                            return;
                        };
                        for (from, at, s) in held {
                            if enabled[from] {
                                let sent = rtp.frame(from, at, &s);
                                sent.account(
                                    &self.metrics,
                                    SinkKind::Siprec,
                                    call,
                                    &mut c.send_error_logged,
                                );
                            }
                        }
                        c.media = Media::Sending { rtp, enabled };
                        c.srs = Some(srs);
                    }
                }
            }
            SrcEvent::FailedOver { from, reason } => {
                self.metrics.recorder().siprec_failover();
                let why = match reason {
                    FailoverReason::Timeout => "no final answer in time".to_owned(),
                    FailoverReason::Rejected(s) => format!("rejected with {}", s.as_u16()),
                    FailoverReason::BadAnswer(b) => format!("unusable SDP answer ({b:?})"),
                    FailoverReason::TransportError => "send failed".to_owned(),
                };
                tracing::warn!(call = call.0, srs = from, reason = %why, "siprec recorder: SRS failed; trying the next");
            }
            SrcEvent::AllFailed => {
                self.metrics.recorder().siprec_failed();
                self.metrics.recorder().recorder_error(SinkKind::Siprec);
                tracing::error!(
                    call = call.0,
                    "siprec recorder: every SRS failed; recording to the fallback"
                );
                self.start_fallback(call, &mut c);
            }
            SrcEvent::RemoteBye => {
                self.metrics.recorder().siprec_srs_bye();
                tracing::warn!(call = call.0, "siprec recorder: the SRS ended the session");
                self.move_on(call, &mut c);
            }
            SrcEvent::Lost { srs } => {
                self.metrics.recorder().siprec_srs_lost();
                self.metrics.recorder().recorder_error(SinkKind::Siprec);
                tracing::warn!(
                    call = call.0,
                    srs,
                    "siprec recorder: the SRS stopped answering keep-alives"
                );
                self.move_on(call, &mut c);
            }
        }
        self.calls.insert(call, c);
    }

    /// The last packets of a call's streams, counted.
    fn stop_sending(&self, call: CallRef, mut rtp: rtp::RtpCall, logged: &mut bool) {
        rtp.finish()
            .account(&self.metrics, SinkKind::Siprec, call, logged);
    }

    /// Switch the call to its fallback file, with the audio held so far.
    fn start_fallback(&mut self, call: CallRef, c: &mut Call) {
        c.socks = None;
        let held = match std::mem::replace(&mut c.media, Media::Off) {
            Media::Pending { held, .. } => held,
            other => {
                c.media = other;
                if !matches!(c.media, Media::Off) {
                    return;
                }
                VecDeque::new()
            }
        };
        let Some(fb) = &self.fallback else {
            self.metrics.recorder().recorder_error(SinkKind::Siprec);
            tracing::error!(
                call = call.0,
                "siprec recorder: no fallback_dir; this call is not recorded"
            );
            return;
        };
        if fb.broken {
            self.metrics.recorder().recorder_error(SinkKind::Siprec);
            return;
        }
        let mut wav = match wav::WavFile::create(&fb.dir, &c.name, &fb.recipients) {
            Ok(w) => Some(w),
            Err(e) => {
                self.metrics.recorder().recorder_error(SinkKind::Siprec);
                if e.kind() == io::ErrorKind::StorageFull {
                    self.metrics.recorder().set_recorder_disk_full(true);
                }
                tracing::error!(call = call.0, error = %e, "siprec recorder: cannot create the fallback file; this call is not recorded");
                return;
            }
        };
        self.metrics.recorder().siprec_fallback();
        let mut aligner = align::Aligner::default();
        for (from, at, s) in held {
            aligner.put(from, at, &s, &mut |bytes| {
                wav::write_wav(&mut wav, bytes, &self.metrics, SinkKind::Siprec, call)
            });
        }
        c.media = Media::Fallback { aligner, wav };
    }
}

/// A retired sink is dropped once its last call ended: its socket reader goes with it.
impl Drop for SiprecSink {
    fn drop(&mut self) {
        if let Some(h) = self.reader.take() {
            h.abort();
        }
    }
}

impl RecorderSink for SiprecSink {
    fn kind(&self) -> SinkKind {
        SinkKind::Siprec
    }

    /// Same settings: the sink, its socket and sessions stay through a reload.
    fn keeps(&self, r: &config::RecorderConfig) -> bool {
        matches!(r, config::RecorderConfig::Siprec(c) if *c == self.cfg)
    }

    fn address(&self) -> Option<usize> {
        self.reader.as_ref().map(|_| self.index)
    }

    /// Replaced by a reload: no more probes (and no say in the readiness); the socket
    /// reader stays for the calls in progress.
    fn retire(&mut self) {
        self.probe = None;
        self.forget_health();
    }

    /// Register the socket and forward what it receives to `datagrams`.
    fn activate(&mut self, index: usize, datagrams: &mpsc::Sender<Datagram>) -> bool {
        let Some(std_sock) = self.std_sock.take() else {
            return false;
        };
        let sock = match UdpSocket::from_std(std_sock) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "siprec recorder: cannot register its SIP socket");
                return false;
            }
        };
        self.index = index;
        self.datagrams = Some(datagrams.clone());
        let tx = datagrams.clone();
        self.reader = Some(tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                match sock.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        let d = Bytes::copy_from_slice(&buf[..n]);
                        if tx.send((index, d, from)).await.is_err() {
                            return;
                        }
                    }
                    // ICMP errors surface here on some systems: nothing to do but go on.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }));
        true
    }

    fn deactivate(&mut self) {
        if let Some(h) = self.reader.take() {
            h.abort();
        }
        self.forget_health();
    }

    fn watch_readiness(&mut self, readiness: &Arc<Readiness>) {
        self.readiness = Some(readiness.clone());
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Sessions whose BYE is unanswered.
    fn closing(&self) -> usize {
        self.src.closing()
    }

    /// Timers.
    fn handle_timeout(&mut self, now: Instant) {
        self.src.handle_timeout(now);
        if let Some(p) = &mut self.probe {
            if p.poll_timeout().is_some_and(|t| t <= now) {
                p.handle_timeout(now);
            }
        }
        self.pump();
    }

    /// A datagram from the SRS side: a probe's answer, or the client's.
    fn handle_datagram(&mut self, bytes: Bytes, from: SocketAddr, now: Instant) {
        if let Some(p) = &mut self.probe {
            if let Ok(Frame::Message(m)) =
                crate::core::sip::parse_datagram(bytes.clone(), &Limits::default())
            {
                if !m.is_request() && m.call_id().is_ok_and(|c| p.owns(&c)) {
                    p.handle_response(m, now);
                    self.pump();
                    return;
                }
            }
        }
        self.src.handle_datagram(bytes, from, now);
        self.pump();
    }

    /// A call starts. The recording session opens with its first audio (the call was
    /// answered, or has early media): a call that never carries audio (cancelled, rejected)
    /// costs the SRS nothing.
    fn start(&mut self, call: CallRef, start: &CallStart<'_>) {
        self.metrics
            .recorder()
            .recorder_session_opened(SinkKind::Siprec);
        self.calls.insert(
            call,
            Call {
                name: start.name.to_owned(),
                info: start.info.clone(),
                open_from: Some(0),
                srs: None,
                heard: false,
                socks: None,
                media: Media::Pending {
                    held: VecDeque::new(),
                    samples: 0,
                },
                send_error_logged: false,
            },
        );
    }

    /// Held until an SRS accepts, then sent; or written to the fallback file.
    fn frame(&mut self, call: CallRef, from: Side, at: u64, samples: &[i16]) {
        if self.calls.get(&call).is_some_and(|c| c.open_from.is_some()) {
            self.open(call);
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.heard = true;
        match &mut c.media {
            Media::Pending { held, samples: n } => {
                held.push_back((from, at, samples.to_vec()));
                *n += samples.len();
                while *n > MAX_PENDING {
                    match held.pop_front() {
                        Some((_, _, s)) => {
                            *n -= s.len();
                            self.metrics
                                .recorder()
                                .recorder_queue_dropped(SinkKind::Siprec, 1);
                        }
                        None => break,
                    }
                }
            }
            Media::Sending { rtp, enabled } => {
                if enabled[from] {
                    let sent = rtp.frame(from, at, samples);
                    sent.account(
                        &self.metrics,
                        SinkKind::Siprec,
                        call,
                        &mut c.send_error_logged,
                    );
                }
            }
            Media::Fallback { aligner, wav } => {
                let metrics = &self.metrics;
                aligner.put(from, at, samples, &mut |bytes| {
                    wav::write_wav(wav, bytes, metrics, SinkKind::Siprec, call)
                });
            }
            Media::Off => {}
        }
    }

    /// BYE the SRS (or give up the attempt in progress; its audio then goes to the fallback
    /// file) and make a fallback file final with the sidecar (numbers hashed).
    fn finish(&mut self, call: CallRef, end: &CallEnd<'_>) -> Option<JoinHandle<()>> {
        if let Some(key) = self.session_of.remove(&call) {
            self.sessions.remove(&key);
            self.src.end(key, Instant::now());
            self.pump();
        }
        let mut c = self.calls.remove(&call)?;
        self.metrics
            .recorder()
            .recorder_session_closed(SinkKind::Siprec);
        if !c.heard {
            // No audio ever came: no session was opened, there is nothing to record.
            return None;
        }
        if matches!(c.media, Media::Pending { .. }) {
            tracing::warn!(
                call = call.0,
                "siprec recorder: the call ended before an SRS accepted; recording it to the fallback"
            );
            self.start_fallback(call, &mut c);
        }
        match std::mem::replace(&mut c.media, Media::Off) {
            Media::Sending { rtp, .. } => {
                self.stop_sending(call, rtp, &mut c.send_error_logged);
                None
            }
            Media::Fallback {
                mut aligner,
                mut wav,
            } => {
                let metrics = self.metrics.clone();
                aligner.flush(&mut |bytes| {
                    wav::write_wav(&mut wav, bytes, &metrics, SinkKind::Siprec, call)
                });
                let wav = wav?;
                let fb = self.fallback.as_ref()?;
                let (dir, recipients) = (fb.dir.clone(), fb.recipients.clone());
                let json = end.sidecar.json(true).to_vec();
                let name = c.name;
                Some(tokio::task::spawn_blocking(move || {
                    match wav::finish_one(wav, &dir, &name, &recipients, &json) {
                        Ok((path, bytes)) => {
                            metrics
                                .recorder()
                                .recorder_bytes(SinkKind::Siprec)
                                .inc_by(bytes);
                            tracing::info!(call = call.0, path = %path.display(), "siprec fallback recording written");
                        }
                        Err(e) => {
                            metrics.recorder().recorder_error(SinkKind::Siprec);
                            tracing::error!(call = call.0, error = %e, "siprec fallback recording failed");
                        }
                    }
                }))
            }
            Media::Pending { .. } | Media::Off => None,
        }
    }

    fn calls(&self) -> usize {
        self.calls.len()
    }
}

/// One TCP (or, with `tls`, TLS) connection to an SRS: connects, writes what the sink
/// queues, and hands every SIP message framed from the stream to the recorder as a datagram
/// of this sink (`index`, from `dest`). Ends when the sink drops its queue, or the
/// connection fails or closes (the sink opens a new one with its next message; a transaction
/// in progress fails over on its timeout). A TLS SRS's certificate is verified (no
/// plaintext fallback).
async fn stream_connection(
    index: usize,
    dest: SocketAddr,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    rx: mpsc::Receiver<Bytes>,
    datagrams: mpsc::Sender<Datagram>,
) {
    let connect = tokio::net::TcpStream::connect(dest);
    let stream = match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%dest, error = %e, "siprec recorder: TCP connect failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%dest, "siprec recorder: TCP connect timed out");
            return;
        }
    };
    match tls {
        None => serve_stream(index, dest, stream, rx, datagrams).await,
        Some((connector, name)) => {
            let handshake = connector.connect(name, stream);
            match tokio::time::timeout(Duration::from_secs(5), handshake).await {
                Ok(Ok(s)) => serve_stream(index, dest, s, rx, datagrams).await,
                Ok(Err(e)) => {
                    tracing::warn!(%dest, error = %e, "siprec recorder: TLS handshake with the SRS failed");
                }
                Err(_) => {
                    tracing::warn!(%dest, "siprec recorder: TLS handshake with the SRS timed out")
                }
            }
        }
    }
}

/// Writes the queue to `stream` and frames what it reads (see [`stream_connection`]).
async fn serve_stream<S>(
    index: usize,
    dest: SocketAddr,
    stream: S,
    mut rx: mpsc::Receiver<Bytes>,
    datagrams: mpsc::Sender<Datagram>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut rd, mut wr) = tokio::io::split(stream);
    let limits = crate::core::sip::Limits::default();
    let mut buf = bytes::BytesMut::with_capacity(8192);
    let mut framer = crate::core::sip::StreamFramer::default();
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(b) => {
                    if wr.write_all(&b).await.is_err() || wr.flush().await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            r = rd.read_buf(&mut buf) => {
                if matches!(r, Ok(0) | Err(_)) {
                    return;
                }
                loop {
                    match framer.next(&buf, &limits) {
                        Ok(Some((frame, n))) => {
                            let bytes = buf.split_to(n).freeze();
                            if matches!(frame, Frame::Message(_))
                                && datagrams.send((index, bytes, dest)).await.is_err()
                            {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
            }
        }
    }
}

/// The transport an SRS URI asks for (`;transport=` parameter; UDP without one); `None`
/// for one not supported (`sips:`, `tls`, `sctp`, …).
fn srs_transport(uri: &str) -> Option<SrsTransport> {
    let (rest, mut transport) = match uri.strip_prefix("sips:") {
        Some(r) => (r, SrsTransport::Tls),
        None => (uri.strip_prefix("sip:")?, SrsTransport::Udp),
    };
    let params = rest.split('?').next()?;
    for p in params.split(';').skip(1) {
        if let Some((k, v)) = p.split_once('=') {
            if k.eq_ignore_ascii_case("transport") {
                transport = match v.to_ascii_lowercase().as_str() {
                    "udp" if transport != SrsTransport::Tls => SrsTransport::Udp,
                    "tcp" if transport != SrsTransport::Tls => SrsTransport::Tcp,
                    "tls" | "tcp" => SrsTransport::Tls,
                    _ => return None,
                };
            }
        }
    }
    Some(transport)
}

fn bind_rtp(ip: IpAddr) -> io::Result<StdUdpSocket> {
    let s = StdUdpSocket::bind(SocketAddr::new(ip, 0))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn port_of(s: &StdUdpSocket) -> u16 {
    s.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// The address an SRS URI's SIP goes to: `sip:[user@]host[:port][;params]`, port 5060 by
/// default. `None` for `sips:` (TLS is not supported by this sink) or a host that does not
/// resolve.
fn srs_addr(uri: &str) -> Option<SocketAddr> {
    let (rest, default_port) = match uri.strip_prefix("sips:") {
        Some(r) => (r, 5061),
        None => (uri.strip_prefix("sip:")?, 5060),
    };
    let hostport = rest.rsplit('@').next()?;
    let hostport = hostport.split([';', '?']).next()?;
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        (h, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, default_port),
        }
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    (host, port).to_socket_addrs().ok()?.next()
}

/// Our IP as `dest` sees it: `bind` itself, or (unspecified) the one the routing table picks
/// toward `dest` (a connected UDP socket sends nothing).
fn local_ip_toward(bind: IpAddr, dest: SocketAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    let any: SocketAddr = if dest.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    StdUdpSocket::bind(any)
        .and_then(|s| {
            s.connect(dest)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(bind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srs_uri_addresses() {
        let a = |s: &str| srs_addr(s);
        assert_eq!(a("sip:srs@127.0.0.1:5070"), "127.0.0.1:5070".parse().ok());
        assert_eq!(a("sip:127.0.0.1"), "127.0.0.1:5060".parse().ok());
        assert_eq!(
            a("sip:srs@127.0.0.1:5080;transport=udp"),
            "127.0.0.1:5080".parse().ok()
        );
        assert_eq!(a("sip:[::1]:5090"), "[::1]:5090".parse().ok());
        assert_eq!(a("sips:srs@127.0.0.1"), "127.0.0.1:5061".parse().ok());
        assert_eq!(a("sip:srs@127.0.0.1:notaport"), None);
        let t = |s: &str| srs_transport(s);
        assert_eq!(t("sip:srs@127.0.0.1:5070"), Some(SrsTransport::Udp));
        assert_eq!(
            t("sip:srs@127.0.0.1;transport=TCP"),
            Some(SrsTransport::Tcp)
        );
        assert_eq!(
            t("sip:srs@127.0.0.1;lr;transport=udp"),
            Some(SrsTransport::Udp)
        );
        assert_eq!(
            t("sip:srs@127.0.0.1;transport=tls"),
            Some(SrsTransport::Tls)
        );
        assert_eq!(t("sips:srs@127.0.0.1"), Some(SrsTransport::Tls));
        assert_eq!(
            t("sips:srs@127.0.0.1;transport=tcp"),
            Some(SrsTransport::Tls)
        );
        assert_eq!(t("sip:srs@127.0.0.1;transport=sctp"), None);
    }

    #[test]
    fn local_ip_toward_loopback_is_loopback() {
        let dest: SocketAddr = "127.0.0.1:5060".parse().expect("addr");
        assert_eq!(
            local_ip_toward(IpAddr::V4(Ipv4Addr::UNSPECIFIED), dest),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        let fixed = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(local_ip_toward(fixed, dest), fixed);
    }
}
