//! The signalling shell: one task owns the [`ProxyCore`] and both sides' SIP UDP sockets.
//!
//! It loops: receive (either side) or wake for a timer → feed the core with `Instant::now()`
//! → send every transmit → act on every event (media commands to the [`MediaHub`], counts to
//! [`Metrics`]). No protocol logic lives here.
#![allow(clippy::disallowed_methods)] // io shell: reads the clock

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use std::collections::HashMap;
use std::net::SocketAddr;

use super::media::MediaHub;
use super::sip_stream::{spawn_outbound, spawn_outbound_tls, StreamInput};
use super::sip_tls::TlsSide;
use crate::core::media::tap::CallMeta;
use crate::core::proxy::{
    AccessPolicy, CallRef, CoreLimits, MediaCommand, ProxyCore, ProxyEvent, Side, SipTransport,
};
use crate::core::sip::{Limits, Method};
use crate::metrics::{self, Label, Metrics, SipMetrics};

/// The signalling task's parts.
pub struct Signalling {
    /// The routing core.
    pub core: ProxyCore,
    /// SIP socket of the PBX side.
    pub pbx: UdpSocket,
    /// SIP socket of the agents' side.
    pub agents: UdpSocket,
    /// The media shell.
    pub media: MediaHub,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Calls whose media went quiet.
    pub media_timeouts: mpsc::UnboundedReceiver<CallRef>,
    /// Messages from TCP connections.
    pub stream_rx: mpsc::Receiver<StreamInput>,
    /// For outbound TCP connections to report back.
    pub stream_tx: mpsc::Sender<StreamInput>,
    /// SIP limits (TCP framing).
    pub limits: Limits,
    /// Open TCP connections by (side, peer).
    pub conns: HashMap<(Side, SocketAddr), mpsc::Sender<bytes::Bytes>>,
    /// Registration bindings on disk (`sip.state_dir`), if configured.
    pub state: Option<super::state::BindingStore>,
    /// Reloads and the shutdown drain, from `callmask run`'s supervisor (None: neither).
    pub control: Option<mpsc::UnboundedReceiver<ShellControl>>,
    /// TLS settings of the sides with `transport = "tls"` (issue 14): their streams are TLS
    /// and UDP datagrams reaching them are dropped unread.
    pub tls: crate::core::side::BySide<Option<Arc<TlsSide>>>,
    /// Media-node (NG) calls in progress: the drain waits for them too.
    pub ng_calls: Arc<std::sync::atomic::AtomicUsize>,
}

/// What `callmask run`'s supervisor tells the signalling task.
#[derive(Debug)]
pub enum ShellControl {
    /// A configuration reload: new allow-lists and limits.
    Reload {
        /// `pbx.allow` / `agents.allow`.
        access: AccessPolicy,
        /// `[limits]`.
        limits: CoreLimits,
    },
    /// Drain for shutdown: refuse new calls (503), and return from [`Signalling::run`] once no
    /// call is in progress, or at `until`.
    Drain {
        /// The drain deadline (`shutdown.drain_timeout_s` after SIGTERM).
        until: Instant,
    },
}

/// The next message of an optional channel (never, without one or once it is closed).
async fn next_control(rx: &mut Option<mpsc::UnboundedReceiver<ShellControl>>) -> ShellControl {
    if let Some(r) = rx {
        if let Some(c) = r.recv().await {
            return c;
        }
        *rx = None;
    }
    std::future::pending().await
}

fn transaction_kind(method: &Method) -> metrics::TransactionKind {
    if *method == Method::Invite {
        metrics::TransactionKind::Invite
    } else {
        metrics::TransactionKind::NonInvite
    }
}

impl Signalling {
    /// Run until `shutdown` resolves, or a drain ([`ShellControl::Drain`]) is over.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        self.publish_ports();
        let mut pbx_buf = vec![0u8; 65_536];
        let mut agents_buf = vec![0u8; 65_536];
        if let Some(st) = &mut self.state {
            st.load(self.core.registrar_mut(), Instant::now());
        }
        let mut drain_until: Option<Instant> = None;
        loop {
            if let Some(until) = drain_until {
                let ng = self.ng_calls.load(std::sync::atomic::Ordering::Acquire);
                let calls = self.core.active_calls() + ng;
                if calls == 0 && self.core.pending_transactions() == 0 {
                    tracing::info!("drained: no call in progress");
                    break;
                }
                if Instant::now() >= until {
                    tracing::warn!(
                        calls,
                        key = "shutdown.drain_timeout_s",
                        "drain time is up: the calls still in progress are cut and their recordings closed"
                    );
                    break;
                }
            }
            let save_at = self
                .state
                .as_ref()
                .and_then(|st| st.next_save(self.core.registrar()));
            // While draining, look again now and then: NG calls end in another task.
            let recheck =
                drain_until.map(|_| Instant::now() + std::time::Duration::from_millis(250));
            let wake = [self.core.poll_timeout(), save_at, drain_until, recheck]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                r = self.pbx.recv_from(&mut pbx_buf) => {
                    self.pending_controls(&mut drain_until);
                    if let (Ok((n, src)), false) = (r, self.tls[Side::Pbx].is_some()) {
                        self.metrics.sip().message_received(metrics::Side::Pbx, metrics::Transport::Udp);
                        let data = Bytes::copy_from_slice(&pbx_buf[..n]);
                        self.core.handle_datagram(Side::Pbx, src, data, Instant::now());
                    }
                }
                r = self.agents.recv_from(&mut agents_buf) => {
                    self.pending_controls(&mut drain_until);
                    if let (Ok((n, src)), false) = (r, self.tls[Side::Agents].is_some()) {
                        self.metrics.sip().message_received(metrics::Side::Agents, metrics::Transport::Udp);
                        let data = Bytes::copy_from_slice(&agents_buf[..n]);
                        self.core.handle_datagram(Side::Agents, src, data, Instant::now());
                    }
                }
                Some(input) = self.stream_rx.recv() => {
                    self.pending_controls(&mut drain_until);
                    self.on_stream(input);
                }
                Some(call) = self.media_timeouts.recv() => {
                    self.core.handle_media_timeout(call, Instant::now());
                }
                c = next_control(&mut self.control) => self.apply_control(c, &mut drain_until),
                _ = sleep => {
                    self.core.handle_timeout(Instant::now());
                }
            }
            self.drain().await;
            if let Some(st) = &mut self.state {
                st.save_if_changed(self.core.registrar(), Instant::now(), false);
            }
        }
        if let Some(st) = &mut self.state {
            st.save_if_changed(self.core.registrar(), Instant::now(), true);
        }
        // Stopping: the calls still up are cut here, and their recordings finished and closed.
        let cut = self.media.end_all();
        if cut > 0 {
            tracing::info!(
                calls = cut,
                "stopping: the calls still in progress end now; their recordings are closed"
            );
        }
    }

    /// Apply a control message from the supervisor.
    fn apply_control(&mut self, c: ShellControl, drain_until: &mut Option<Instant>) {
        match c {
            ShellControl::Reload { access, limits } => {
                self.core.set_access(access);
                self.core.set_limits(limits);
            }
            ShellControl::Drain { until } => {
                self.core.set_draining(true);
                *drain_until = Some(until);
            }
        }
    }

    /// Control messages already sent go before a SIP message that `select!` happened to pick
    /// first: once the supervisor has started the drain (or swapped an allow-list), no later
    /// message is judged by the old rules.
    fn pending_controls(&mut self, drain_until: &mut Option<Instant>) {
        while let Some(c) = self.control.as_mut().and_then(|r| r.try_recv().ok()) {
            self.apply_control(c, drain_until);
        }
    }

    fn on_stream(&mut self, input: StreamInput) {
        match input {
            StreamInput::Opened { side, peer, writer } => {
                self.conns.insert((side, peer), writer);
            }
            StreamInput::Message { side, peer, msg } => {
                let transport = if self.tls[side].is_some() {
                    metrics::Transport::Tls
                } else {
                    metrics::Transport::Tcp
                };
                self.metrics.sip().message_received(side, transport);
                self.core
                    .handle_stream_message(side, peer, msg, Instant::now());
            }
            StreamInput::Invalid {
                side,
                peer,
                raw,
                error,
            } => {
                self.core.handle_stream_error(side, peer, raw, &error);
            }
            StreamInput::Alias { side, peer, alias } => {
                // RFC 5923: requests to `alias` reuse this connection (a closed writer is
                // replaced by a new connection when next used).
                if let Some(w) = self.conns.get(&(side, peer)).cloned() {
                    tracing::debug!(
                        side = side.as_str(),
                        "TLS connection reused for its Via alias"
                    );
                    self.conns.insert((side, alias), w);
                }
            }
            StreamInput::Closed { side, peer } => {
                self.conns.remove(&(side, peer));
            }
            StreamInput::ConnectFailed { side, peer } => {
                self.conns.remove(&(side, peer));
                self.core.handle_transport_error(side, peer, Instant::now());
            }
        }
    }

    async fn drain(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            match t.transport {
                // Never plaintext toward a TLS side (the core does not produce it).
                SipTransport::Udp if self.tls[t.side].is_some() => {
                    tracing::warn!(side = t.side.as_str(), "UDP send toward a TLS side refused");
                }
                SipTransport::Udp => {
                    let sock = match t.side {
                        Side::Pbx => &self.pbx,
                        Side::Agents => &self.agents,
                    };
                    if let Err(e) = sock.send_to(&t.payload, t.dest).await {
                        tracing::debug!(side = t.side.as_str(), error = %e, "SIP send failed");
                    }
                }
                SipTransport::Tcp | SipTransport::Tls => {
                    let key = (t.side, t.dest);
                    let writer = match self.conns.get(&key) {
                        Some(w) if !w.is_closed() => w.clone(),
                        _ => {
                            let inputs = self.stream_tx.clone();
                            let w = match (&self.tls[t.side], t.transport) {
                                (Some(tls), SipTransport::Tls) => spawn_outbound_tls(
                                    t.side,
                                    t.dest,
                                    inputs,
                                    self.limits,
                                    tls.clone(),
                                    self.metrics.clone(),
                                ),
                                (None, SipTransport::Tcp) => {
                                    spawn_outbound(t.side, t.dest, inputs, self.limits)
                                }
                                // The core never mixes them (a TLS side speaks TLS only).
                                _ => continue,
                            };
                            self.conns.insert(key, w.clone());
                            w
                        }
                    };
                    if writer.try_send(t.payload).is_err() {
                        tracing::debug!(side = t.side.as_str(), "TCP write queue full; dropped");
                    }
                }
            }
        }
        while let Some(ev) = self.core.poll_event() {
            match ev {
                ProxyEvent::Media(MediaCommand::Upsert { call, streams }) => {
                    self.media.upsert(call, streams);
                }
                ProxyEvent::Media(MediaCommand::Remove { call }) => self.media.remove(call),
                ProxyEvent::CallStarted {
                    call,
                    caller_side,
                    parties,
                } => {
                    // Numbers only as keyed hashes (or revealed if the admin opted in).
                    let hasher = crate::redact::hasher();
                    let hash = |uri: &bytes::Bytes| {
                        hasher
                            .hash_uri(&String::from_utf8_lossy(uri))
                            .map(|h| h.to_string())
                            .unwrap_or_else(|| "-".to_string())
                    };
                    // For sinks configured with `hash_numbers = false` only; never logged.
                    let clear = |uri: &bytes::Bytes| {
                        crate::redact::uri_user(&String::from_utf8_lossy(uri))
                            .unwrap_or("-")
                            .to_string()
                    };
                    let meta = CallMeta {
                        sip_call_id: String::from_utf8_lossy(&parties.call_id).into_owned(),
                        from: hash(&parties.from),
                        to: hash(&parties.to),
                        codecs: Vec::new(),
                        tags: None,
                        numbers_clear: crate::redact::Redacted::new((
                            clear(&parties.from),
                            clear(&parties.to),
                        )),
                    };
                    tracing::info!(
                        call = call.0,
                        caller_side = caller_side.as_str(),
                        from = %meta.from,
                        to = %meta.to,
                        "call started"
                    );
                    self.media.call_started(call, caller_side, meta);
                }
                ProxyEvent::CallAnswered { call } => {
                    tracing::info!(call = call.0, "call answered");
                    self.media.table().answered(call);
                }
                ProxyEvent::CallEnded { call, outcome } => {
                    tracing::info!(call = call.0, outcome = outcome.as_str(), "call ended");
                    self.media.call_ended(call);
                    self.metrics.calls().call_ended(outcome.into());
                }
                ProxyEvent::RequestIn { .. }
                | ProxyEvent::ResponseIn { .. }
                | ProxyEvent::Rejected { .. }
                | ProxyEvent::Dropped { .. }
                | ProxyEvent::Retransmission { .. }
                | ProxyEvent::TransactionTimedOut { .. } => {
                    count_sip_event(self.metrics.sip(), &ev)
                }
                ProxyEvent::AccessDenied { side, reason } => {
                    tracing::debug!(
                        side = side.as_str(),
                        reason = reason.label(),
                        "SIP refused by access control"
                    );
                    self.metrics.access().denied(side, reason.into());
                }
                ProxyEvent::LimitRefused { side, limit } => {
                    tracing::debug!(
                        side = side.as_str(),
                        limit = limit.label(),
                        "SIP over a limit"
                    );
                    self.metrics.access().limit_refused(side, limit.into());
                }
                ProxyEvent::InfoDtmf { call, side } => {
                    self.metrics
                        .media()
                        .dtmf_detected(metrics::DtmfSource::Info);
                    self.media.info_dtmf(call, side);
                }
            }
        }
        self.publish_ports();
    }

    /// Media port gauges count ports (the pool hands out RTP/RTCP pairs).
    fn publish_ports(&self) {
        let ports = self.core.ports();
        self.metrics
            .media()
            .set_media_ports(2 * ports.in_use() as u64, 2 * ports.available() as u64);
        self.metrics
            .sip()
            .set_registrations_active(self.core.registrations() as u64);
    }
}

/// Count a core event that only feeds the SIP metrics (requests, responses, rejects and
/// drops, retransmissions, transaction times); other events are left to the caller.
fn count_sip_event(metrics: &SipMetrics, ev: &ProxyEvent) {
    match *ev {
        ProxyEvent::RequestIn { side, ref method } => {
            metrics.request(side, method.into());
        }
        ProxyEvent::ResponseIn {
            side,
            status,
            ref method,
            elapsed,
        } => {
            metrics.response(side, method.into(), status.as_u16());
            if let Some(d) = elapsed {
                let kind = transaction_kind(method);
                metrics.transaction_finished(side, kind, d.as_secs_f64());
            }
        }
        ProxyEvent::Rejected { side, reason } => {
            tracing::debug!(
                side = side.as_str(),
                reason = reason.label(),
                "SIP rejected"
            );
            metrics.rejected(side, metrics::DropReason::from(reason));
        }
        ProxyEvent::Dropped { side, reason } => {
            if reason == crate::core::proxy::DropReason::NoRoute && side == Side::Pbx {
                // Issue 12: a call for a phone callmask holds no binding for (it registered
                // before a restart and has not refreshed yet, or it never registered).
                tracing::info!(
                    side = side.as_str(),
                    "request from the PBX side for no registered phone or known call: answered 480 (a phone registered before a callmask restart is reachable again after its next REGISTER)"
                );
            }
            tracing::debug!(side = side.as_str(), reason = reason.label(), "SIP dropped");
            metrics.rejected(side, metrics::DropReason::from(reason));
        }
        ProxyEvent::Retransmission { side, resent } => {
            let action = if resent {
                metrics::RetransmitAction::Resent
            } else {
                metrics::RetransmitAction::Absorbed
            };
            metrics.retransmission(side, action);
        }
        ProxyEvent::TransactionTimedOut {
            side,
            ref method,
            elapsed,
        } => {
            let label = metrics::SipMethod::from(method).as_str();
            tracing::debug!(
                side = side.as_str(),
                method = label,
                "SIP transaction timed out"
            );
            let kind = transaction_kind(method);
            metrics.transaction_finished(side, kind, elapsed.as_secs_f64());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::*;
    use crate::core::ports::{PortAllocator, PortRange};
    use crate::core::proxy::{ProxyConfig, SideConfig};

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    /// Registration mode: no agents peer, so a request toward the agents has no route.
    fn core() -> ProxyCore {
        let side = |sip: &str, peer| SideConfig {
            sip_addr: addr(sip),
            media_ip: "127.0.0.1".parse().expect("ip"),
            peer,
        };
        let config = ProxyConfig {
            pbx: side("127.0.0.1:5060", Some(addr("127.0.0.1:5070"))),
            agents: side("127.0.0.1:5062", None),
            limits: Limits::default(),
            secret: 7,
            codecs: config::types::MediaCodec::DECODABLE.to_vec(),
            undecodable: config::types::UndecodableMode::Reject,
            srtp: crate::core::side::BySide::new(
                config::types::SrtpMode::Mirror,
                config::types::SrtpMode::Mirror,
            ),
            registration_key: [7; 32],
        };
        let range = PortRange::new(30000, 30009).expect("range");
        let mut core = ProxyCore::new(config, PortAllocator::new(range, Duration::from_secs(5)));
        // Registration mode is closed without an allow-list: admit the test's phones.
        let mut policy = crate::core::proxy::AccessPolicy::default();
        policy.allow[Side::Agents] = crate::core::proxy::AllowList::Nets(vec![
            config::types::Cidr::try_from("127.0.0.0/8").expect("literal"),
        ]);
        core.set_access(policy);
        core
    }

    fn count_all(core: &mut ProxyCore, metrics: &Metrics) {
        while let Some(ev) = core.poll_event() {
            count_sip_event(metrics.sip(), &ev);
        }
    }

    fn series(reason: &str, side: &str) -> String {
        format!("callmask_sip_messages_rejected_total{{reason=\"{reason}\",side=\"{side}\"}} ")
    }

    fn value(text: &str, series: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing"))
    }

    #[test]
    fn drop_reasons_are_counted_by_reason_not_all_as_no_route() {
        let (mut core, metrics, now) = (core(), Metrics::new(), Instant::now());
        // An INVITE toward an agent nobody registered: no route (answered 480).
        let invite = "INVITE sip:nobody@127.0.0.1:5062 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa1\r\nMax-Forwards: 70\r\n\
            From: <sip:pbx@127.0.0.1>;tag=a\r\nTo: <sip:nobody@127.0.0.1>\r\n\
            Call-ID: c1@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        core.handle_datagram(Side::Pbx, addr("127.0.0.1:5070"), Bytes::from(invite), now);
        // A response whose top Via is not callmask's: not ours (no transaction).
        let stray = "SIP/2.0 200 OK\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKforeign\r\n\
            From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:b@127.0.0.1>;tag=b\r\n\
            Call-ID: c2@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        core.handle_datagram(
            Side::Agents,
            addr("127.0.0.1:5080"),
            Bytes::from(stray),
            now,
        );
        count_all(&mut core, &metrics);

        let text = metrics.render();
        assert_eq!(value(&text, &series("no_route", "pbx")), 1, "{text}");
        assert_eq!(value(&text, &series("no_transaction", "agents")), 1);
        assert_eq!(value(&text, &series("no_route", "agents")), 0);
        let invites = "callmask_sip_requests_total{method=\"INVITE\",side=\"pbx\"} ";
        assert_eq!(value(&text, invites), 1);
    }
}
