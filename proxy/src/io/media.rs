//! The media relay shell: one tokio task per call owns that call's sockets and its
//! [`CallMedia`] core, and does only I/O: receive a datagram, hand it to the core with the
//! time, send what the core returns at once (a non-blocking send, never awaited or queued),
//! then pass the core's sanitized tap events to the recorder through a bounded queue (a full
//! queue drops and counts frames; it never slows the relay). Every decision (validation,
//! latching, the agent-leg clamp, the key trigger, the recorder path) is in
//! [`crate::core::media`].
//!
//! Where the tasks run: with [`MediaWorkers`] (the binary), each call is placed on one worker
//! thread for its whole life; without (tests), on the caller's runtime.
//!
//! The key trigger switches secure mode inside the core; the shell only records the new
//! state in the call table (so the API shows it) and audits it with actor `dtmf-trigger`.
#![allow(clippy::disallowed_methods)] // io shell: reads the clock

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use config::types::AgentDtmfMode;
use dsp::mask::MaskConfig;
use dsp::spoken::SpeechConfig;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::core::media::tap::{CallMeta, TapEvent};
pub use crate::core::media::KeySequence;
use crate::core::media::{CallCommand as CallCmd, CallMedia, MediaConfig, MediaEvent, SocketId};
use crate::core::ports::PortPair;
use crate::core::proxy::{CallRef, Side, StreamSpec};
use crate::core::relay::LatchConfig;
use crate::metrics::{CallStats, Metrics, SecureAction};

use super::media_workers::MediaWorkers;
use super::speech::{CallSpeech, Reply, SpeechPool};

/// Live spoken-identifier masking: the shared recognizer pool and the masker settings.
#[derive(Debug, Clone)]
pub struct LiveSpeech {
    /// The worker pool.
    pub pool: Arc<SpeechPool>,
    /// Masker settings (`lookahead_ms` equal to the pipeline's).
    pub config: SpeechConfig,
}

/// Settings of the media shell.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Address to bind the PBX side's media sockets on.
    pub pbx_bind: IpAddr,
    /// Address to bind the agents' side media sockets on.
    pub agents_bind: IpAddr,
    /// End the call when no packet arrived for this long (after the first packet).
    pub inactivity: Duration,
    /// Recorder-path masking settings (applied per direction).
    pub mask: MaskConfig,
    /// Latching policy.
    pub latch: LatchConfig,
    /// What the agents hear of DTMF coming from the PBX side.
    pub agent_dtmf: AgentDtmfMode,
    /// Caller key sequence that switches secure mode on.
    pub dtmf_trigger: Option<KeySequence>,
    /// Caller key sequence that switches secure mode off.
    pub dtmf_release: Option<KeySequence>,
    /// Spoken-identifier masking on the recorder path. `None` with `mask.undecided_until_told`
    /// set means speech masking is on without an engine: the recorder path stays muted.
    pub speech: Option<LiveSpeech>,
}

/// The part of [`MediaSettings`] a configuration reload (SIGHUP) may change: read when a
/// call's relay starts, so calls in progress keep what they started with.
#[derive(Debug, Clone)]
pub struct MediaPolicy {
    /// `media.inactivity_timeout_s`.
    pub inactivity: Duration,
    /// `masking.dtmf`, `masking.replacement` (the rest follows settings that need a restart).
    pub mask: MaskConfig,
    /// `pbx.allow` / `agents.allow` (latching scope).
    pub latch: LatchConfig,
    /// `masking.agent_dtmf`.
    pub agent_dtmf: AgentDtmfMode,
    /// `secure.dtmf_trigger`.
    pub dtmf_trigger: Option<KeySequence>,
    /// `secure.dtmf_release`.
    pub dtmf_release: Option<KeySequence>,
}

impl MediaPolicy {
    /// The policy part of `s`.
    pub fn of(s: &MediaSettings) -> Self {
        MediaPolicy {
            inactivity: s.inactivity,
            mask: s.mask,
            latch: s.latch.clone(),
            agent_dtmf: s.agent_dtmf,
            dtmf_trigger: s.dtmf_trigger.clone(),
            dtmf_release: s.dtmf_release.clone(),
        }
    }
}

struct CallHandle {
    cmd: mpsc::UnboundedSender<CallCmd>,
}

/// Owns the per-call relay tasks; driven by the signalling shell's media commands.
pub struct MediaHub {
    settings: MediaSettings,
    metrics: Arc<Metrics>,
    calls: HashMap<CallRef, CallHandle>,
    caller_sides: HashMap<CallRef, Side>,
    metas: HashMap<CallRef, CallMeta>,
    stats: HashMap<CallRef, CallStats>,
    tap: Option<mpsc::Sender<TapEvent>>,
    timeouts: mpsc::UnboundedSender<CallRef>,
    table: Arc<super::calls::CallTable>,
    /// Where call tasks run: the media workers, or (None) the caller's runtime.
    workers: Option<Arc<MediaWorkers>>,
    /// The reloadable part of the settings, when the configuration can be reloaded.
    policy: Option<watch::Receiver<MediaPolicy>>,
}

impl MediaHub {
    /// A hub. `tap` receives sanitized audio (None: no recorder); `timeouts` receives calls
    /// whose media went quiet.
    pub fn new(
        settings: MediaSettings,
        metrics: Arc<Metrics>,
        tap: Option<mpsc::Sender<TapEvent>>,
        timeouts: mpsc::UnboundedSender<CallRef>,
        table: Arc<super::calls::CallTable>,
    ) -> Self {
        MediaHub {
            settings,
            metrics,
            calls: HashMap::new(),
            caller_sides: HashMap::new(),
            metas: HashMap::new(),
            stats: HashMap::new(),
            tap,
            timeouts,
            table,
            workers: None,
            policy: None,
        }
    }

    /// Take [`MediaPolicy`] from `policy` (as it is when each call starts) instead of the
    /// settings given at construction.
    pub fn with_policy(mut self, policy: watch::Receiver<MediaPolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Run every call's task on one of `workers` (least-loaded at the call's first media)
    /// instead of the caller's runtime.
    pub fn with_workers(mut self, workers: Arc<MediaWorkers>) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Live calls per media worker (empty without workers).
    pub fn worker_loads(&self) -> Vec<usize> {
        self.workers.as_ref().map(|w| w.loads()).unwrap_or_default()
    }

    /// The call table shared with the HTTP API.
    pub fn table(&self) -> &Arc<super::calls::CallTable> {
        &self.table
    }

    /// SIP INFO DTMF seen on `call` from `from`.
    pub fn info_dtmf(&mut self, call: CallRef, from: Side) {
        if let Some(h) = self.calls.get(&call) {
            let _ = h.cmd.send(CallCmd::InfoDtmf { from });
        }
    }

    /// Pass `cmd` to a live call's media core (NG `block DTMF`, `stop recording`, …); the
    /// API's secure mode is recorded in the call table too.
    pub fn command(&mut self, call: CallRef, cmd: CallCmd) {
        if let CallCmd::Secure(on) = cmd {
            let _ = self.table.record_secure(call, on);
        }
        if let Some(h) = self.calls.get(&call) {
            let _ = h.cmd.send(cmd);
        }
    }

    /// RTP/RTCP packets and bytes received from `side` on `call` so far.
    pub fn received(&self, call: CallRef, side: Side) -> Option<(u64, u64)> {
        let stats = self.stats.get(&call)?;
        Some(stats.leg(side, crate::metrics::Direction::Inbound).totals())
    }

    /// A call began (before any media).
    pub fn call_started(&mut self, call: CallRef, caller_side: Side, meta: CallMeta) {
        self.table.started(call);
        self.metas.insert(call, meta);
        self.caller_sides.insert(call, caller_side);
        self.stats.insert(call, self.metrics.calls().new_call());
    }

    /// The call is over (whether or not it had media).
    pub fn call_ended(&mut self, call: CallRef) {
        self.table.ended(call);
        self.caller_sides.remove(&call);
        self.metas.remove(&call);
        self.stats.remove(&call);
        self.remove(call);
    }

    /// Create or update the relay of `call`.
    pub fn upsert(&mut self, call: CallRef, streams: Vec<StreamSpec>) {
        // The codec in use per stream (the answer's once answered), not the whole offer.
        let codecs = crate::core::media::codecs_in_use(&streams);
        if let Some(h) = self.calls.get(&call) {
            if !codecs.is_empty() {
                self.table.set_codecs(call, codecs);
            }
            let _ = h.cmd.send(CallCmd::Spec(streams));
            return;
        }
        let caller_side = self.caller_sides.get(&call).copied().unwrap_or(Side::Pbx);
        let stats = self
            .stats
            .entry(call)
            .or_insert_with(|| self.metrics.calls().new_call())
            .clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(CallCmd::Spec(streams));
        self.table.attach(call, tx.clone(), codecs.clone());
        let p = match &self.policy {
            Some(rx) => rx.borrow().clone(),
            None => MediaPolicy::of(&self.settings),
        };
        let config = MediaConfig {
            mask: p.mask,
            latch: p.latch,
            agent_dtmf: p.agent_dtmf,
            dtmf_trigger: p.dtmf_trigger,
            dtmf_release: p.dtmf_release,
            inactivity: p.inactivity,
            tap: self.tap.is_some(),
        };
        let meta = CallMeta {
            codecs,
            ..self.metas.get(&call).cloned().unwrap_or_default()
        };
        let mut media = CallMedia::new(
            call,
            config,
            caller_side,
            meta,
            self.metrics.clone(),
            stats,
            Instant::now(),
        );
        let mut replies = None;
        // Speech masking only where there is a recorder path to sanitize.
        if let (Some(ls), Some(_)) = (&self.settings.speech, &self.tap) {
            match CallSpeech::new(ls.pool.clone(), ls.config, self.metrics.clone()) {
                Ok(mut cs) => {
                    replies = cs.take_replies();
                    media = media.with_speech(cs);
                }
                Err(e) => {
                    // The recorder path stays muted (undecided until told).
                    tracing::error!(call = call.0, error = %e, "spoken-identifier masking cannot run on this call: its recording is muted");
                }
            }
        }
        let task = CallRelay {
            media: Box::new(media),
            sockets: Vec::new(),
            binds: [self.settings.pbx_bind, self.settings.agents_bind],
            metrics: self.metrics.clone(),
            tap: self.tap.clone(),
            table: self.table.clone(),
            replies,
            held: VecDeque::new(),
            held_overflow_logged: false,
            frames_passed: crate::core::side::BySide::default(),
        };
        let timeouts = self.timeouts.clone();
        let run = async move {
            if task.run(rx).await == Exit::Inactive {
                let _ = timeouts.send(call);
            }
        };
        match &self.workers {
            Some(w) => {
                w.spawn_call(run);
            }
            None => {
                tokio::spawn(run);
            }
        }
        self.calls.insert(call, CallHandle { cmd: tx });
    }

    /// Stop relaying `call` (its task closes the sockets).
    pub fn remove(&mut self, call: CallRef) {
        // Dropping the sender ends the task.
        self.calls.remove(&call);
    }

    /// Calls with a relay task.
    pub fn active(&self) -> usize {
        self.calls.len()
    }

    /// Shutdown: end every call still here, so each relay task finishes and its recording is
    /// closed (the call table holds a command sender too, so dropping the hub alone would not
    /// end them). Returns how many calls were ended.
    pub fn end_all(&mut self) -> usize {
        let mut calls: Vec<CallRef> = self
            .calls
            .keys()
            .chain(self.caller_sides.keys())
            .copied()
            .collect();
        calls.sort_unstable_by_key(|c| c.0);
        calls.dedup();
        for &call in &calls {
            self.call_ended(call);
        }
        calls.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Removed,
    Inactive,
}

/// One call's relay task: its sockets (indexed by [`SocketId::index`]) and its core.
struct CallRelay {
    /// Boxed: the core is ~21 KiB, and a future holding it by value is copied into the
    /// task's state more than once (the spawned future was 64 KiB, and tokio boxes large
    /// futures again: ~128 KiB of heap per call before).
    media: Box<CallMedia<CallSpeech>>,
    sockets: Vec<Option<UdpSocket>>,
    /// Bind addresses, PBX side then agents' side.
    binds: [IpAddr; 2],
    metrics: Arc<Metrics>,
    tap: Option<mpsc::Sender<TapEvent>>,
    table: Arc<super::calls::CallTable>,
    replies: Option<mpsc::UnboundedReceiver<Reply>>,
    /// Recorder events other than audio (start, spans, end) that met a full recorder queue:
    /// held in order and sent before anything else, so a busy recorder loses audio (counted)
    /// but never a call's start, a masked span of its sidecar or the end that closes it.
    held: VecDeque<TapEvent>,
    held_overflow_logged: bool,
    /// Whether a frame of each side has gone to the recorder (it places a direction's
    /// first audio at its arrival, so first frames are never held back).
    frames_passed: crate::core::side::BySide<bool>,
}

/// Audio frames of a call handed to the recorder thread together: the recorder runs on its
/// own thread, and a frame sent alone wakes it for every packet (a futex wake and a context
/// switch, on the relay's core when they share one); left in the core's tap queue until 5
/// are there (100 ms of 20 ms packets) they wake it at most once per 5. Recorders tolerate
/// the delay (the mask's look-ahead is longer). Other events, and each side's first frame,
/// go at once (with the frames before them); a partial batch goes at the next
/// once-a-second check or at the call's end.
const TAP_BATCH: usize = 5;

/// At most this many recorder events wait in a call's hold (a recorder this far behind
/// loses the rest, logged).
const HELD_MAX: usize = 256;

impl CallRelay {
    async fn run(mut self, mut cmd_rx: mpsc::UnboundedReceiver<CallCmd>) -> Exit {
        let mut buf = vec![0u8; 2048];
        let mut rotate = 0usize;
        // Inactivity is checked once a second rather than with a timer re-armed per packet
        // (the core allows a late check).
        let mut idle_check = tokio::time::interval(Duration::from_secs(1));
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let exit = loop {
            if let Some(exit) = self.drain() {
                break exit;
            }
            tokio::select! {
                cmd = cmd_rx.recv() => {
                    let Some(cmd) = cmd else { break Exit::Removed };
                    if let CallCmd::Secure(on) = cmd {
                        tracing::info!(target: "callmask::audit", call = self.media.call().0, secure = on, "secure mode applied to the recorder path");
                    }
                    self.media.handle_command(Instant::now(), cmd);
                }
                Some(reply) = speech_reply(&mut self.replies) => {
                    if let Some((sp, pipes)) = self.media.speech_mut() {
                        sp.on_reply(reply, pipes);
                    }
                }
                (k, n, src) = recv_any(&self.sockets, &mut buf, &mut rotate) => {
                    let socket = SocketId::from_index(k);
                    let now = Instant::now();
                    if let Some(t) = self.media.handle_datagram(now, socket, src, &buf[..n]) {
                        if let Some(Some(sock)) = self.sockets.get(t.socket.index()) {
                            let _ = sock.try_send_to(t.payload, t.dst);
                        }
                    }
                    super::media_workers::yield_if_due(now);
                }
                _ = idle_check.tick() => {
                    self.media.handle_timeout(Instant::now());
                    self.pass_tap_batched(true);
                }
            }
        };
        let ended = Instant::now();
        self.finish_speech().await;
        self.media.finish(Some(ended));
        self.drain();
        self.pass_tap_batched(true);
        self.flush_held().await;
        exit
    }

    /// Act on the core's events and pass its tap events on; `Some` when the call is over.
    fn drain(&mut self) -> Option<Exit> {
        let mut exit = None;
        while let Some(ev) = self.media.poll_event() {
            match ev {
                MediaEvent::StreamAdded {
                    stream,
                    pbx,
                    agents,
                } => self.bind_stream(stream, pbx, agents),
                MediaEvent::SecureByKeys { on } => self.audit_keys(on),
                MediaEvent::Inactive => exit = Some(Exit::Inactive),
            }
        }
        self.pass_tap();
        exit
    }

    /// Hand the core's tap events to the recorder queue without waiting: held events first,
    /// in order; audio that meets a full queue (or queues behind held events) is dropped and
    /// counted, other events are held.
    fn pass_tap(&mut self) {
        self.pass_tap_batched(false);
    }

    /// [`Self::pass_tap`]; with `all`, frames of a partial batch go too.
    fn pass_tap_batched(&mut self, all: bool) {
        use mpsc::error::TrySendError;
        let Some(tap) = self.tap.clone() else {
            while self.media.poll_tap().is_some() {}
            return;
        };
        let (queued, frames_only) = self.media.tap_backlog();
        let started = self.frames_passed[Side::Pbx] && self.frames_passed[Side::Agents];
        if !all && started && frames_only && queued < TAP_BATCH && self.held.is_empty() {
            return;
        }
        while let Some(ev) = self.held.pop_front() {
            match tap.try_send(ev) {
                Ok(()) => {}
                Err(TrySendError::Full(ev)) => {
                    self.held.push_front(ev);
                    break;
                }
                Err(TrySendError::Closed(_)) => self.held.clear(),
            }
        }
        while let Some(ev) = self.media.poll_tap() {
            if let TapEvent::Frame(f) = &ev {
                self.frames_passed[f.from] = true;
            }
            let ev = if self.held.is_empty() {
                match tap.try_send(ev) {
                    Ok(()) | Err(TrySendError::Closed(_)) => continue,
                    Err(TrySendError::Full(ev)) => ev,
                }
            } else {
                ev
            };
            self.hold(ev);
        }
    }

    fn hold(&mut self, ev: TapEvent) {
        if matches!(ev, TapEvent::Frame(_)) {
            self.metrics.recorder().tap_queue_dropped(1);
        } else if self.held.len() < HELD_MAX {
            self.held.push_back(ev);
        } else if !std::mem::replace(&mut self.held_overflow_logged, true) {
            tracing::error!(
                call = self.media.call().0,
                "recorder queue full for too long: recorder events of this call lost"
            );
        }
    }

    /// At the call's end: wait for the recorder to take the held events (its end above all).
    async fn flush_held(&mut self) {
        let Some(tap) = self.tap.clone() else { return };
        while let Some(ev) = self.held.pop_front() {
            if tap.send(ev).await.is_err() {
                self.held.clear();
            }
        }
    }

    fn bind_stream(&mut self, stream: usize, pbx: PortPair, agents: PortPair) {
        let need = (stream + 1) * SocketId::PER_STREAM;
        if self.sockets.len() < need {
            self.sockets.resize_with(need, || None);
        }
        let mut all = true;
        for (side, ports) in [(Side::Pbx, pbx), (Side::Agents, agents)] {
            let ip = self.binds[side.index()];
            for (port, number) in [
                (crate::core::relay::LocalPort::Rtp, ports.rtp()),
                (crate::core::relay::LocalPort::Rtcp, ports.rtcp()),
            ] {
                let id = SocketId { stream, side, port };
                let sock = bind(ip, number);
                all &= sock.is_some();
                self.sockets[id.index()] = sock;
            }
        }
        if !all {
            tracing::warn!(
                call = self.media.call().0,
                "could not bind all media ports of a stream"
            );
        }
    }

    /// The caller's keys switched secure mode (already applied in the core): record it in
    /// the call table for the API and audit it. Never logs keys.
    fn audit_keys(&self, on: bool) {
        let call = self.media.call();
        let action = if on {
            SecureAction::Secure
        } else {
            SecureAction::Unsecure
        };
        let at_unix_ms = super::calls::audit::unix_ms_now();
        let action_str = crate::metrics::Label::as_str(action);
        match self.table.record_secure(call, on) {
            Ok(change) => super::calls::audit::audit_secure_change(
                &self.metrics,
                action,
                &"dtmf-trigger",
                call.0,
                change,
                at_unix_ms,
            ),
            Err(_) => {
                tracing::warn!(
                    target: "callmask::audit",
                    event = "secure_mode_unknown_call",
                    action = action_str,
                    actor = "dtmf-trigger",
                    call = call.0,
                    at_unix_ms,
                    "secure mode {action_str} by DTMF trigger applied, but the call is not in the table"
                );
            }
        }
    }

    /// Let the recognizer decide the last words (bounded by the look-ahead), so the end of
    /// the call is not muted merely because it ended.
    async fn finish_speech(&mut self) {
        let Some((sp, _)) = self.media.speech_mut() else {
            return;
        };
        sp.finish();
        let until = tokio::time::Instant::now() + sp.lookahead();
        let Some(replies) = self.replies.as_mut() else {
            return;
        };
        loop {
            let undecided = self
                .media
                .speech_mut()
                .is_some_and(|(sp, _)| sp.undecided());
            if !undecided {
                break;
            }
            match tokio::time::timeout_at(until, replies.recv()).await {
                Ok(Some(reply)) => {
                    if let Some((sp, pipes)) = self.media.speech_mut() {
                        sp.on_reply(reply, pipes);
                    }
                }
                _ => break,
            }
        }
    }
}

/// The next speech verdict of the call; never resolves without speech masking.
async fn speech_reply(replies: &mut Option<mpsc::UnboundedReceiver<Reply>>) -> Option<Reply> {
    match replies {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn bind(ip: IpAddr, port: u16) -> Option<UdpSocket> {
    let s = std::net::UdpSocket::bind(SocketAddr::new(ip, port)).ok()?;
    s.set_nonblocking(true).ok()?;
    UdpSocket::from_std(s).ok()
}

/// Wait for a datagram on any of the call's sockets; returns (socket index, length, source).
/// Starts at a rotating index so a busy socket cannot starve the others.
async fn recv_any(
    sockets: &[Option<UdpSocket>],
    buf: &mut [u8],
    rotate: &mut usize,
) -> (usize, usize, SocketAddr) {
    poll_fn(|cx| {
        let total = sockets.len();
        if total == 0 {
            return Poll::Pending;
        }
        let start = *rotate % total;
        for j in 0..total {
            let k = (start + j) % total;
            let Some(sock) = sockets[k].as_ref() else {
                continue;
            };
            // An error (e.g. a queued ICMP report) consumes the readiness: poll again so the
            // socket is registered for the next wake-up instead of going deaf.
            for _ in 0..8 {
                let mut rb = ReadBuf::new(buf);
                match sock.poll_recv_from(cx, &mut rb) {
                    Poll::Ready(Ok(src)) => {
                        *rotate = k + 1;
                        return Poll::Ready((k, rb.filled().len(), src));
                    }
                    Poll::Ready(Err(_)) => continue,
                    Poll::Pending => break,
                }
            }
        }
        Poll::Pending
    })
    .await
}
