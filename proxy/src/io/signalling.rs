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

use super::media::{CallMeta, MediaHub};
use super::sip_stream::{spawn_outbound, StreamInput};
use crate::core::proxy::{
    CallOutcome, CallRef, MediaCommand, ProxyCore, ProxyEvent, Side, SipTransport,
};
use crate::core::sip::Limits;
use crate::metrics::{self, Metrics};

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
}

fn metric_side(s: Side) -> metrics::Side {
    match s {
        Side::Pbx => metrics::Side::Pbx,
        Side::Agents => metrics::Side::Agents,
    }
}

fn transaction_kind(method: &str) -> metrics::TransactionKind {
    if method == "INVITE" {
        metrics::TransactionKind::Invite
    } else {
        metrics::TransactionKind::NonInvite
    }
}

impl Signalling {
    /// Run until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        self.publish_ports();
        let mut pbx_buf = vec![0u8; 65_536];
        let mut agents_buf = vec![0u8; 65_536];
        loop {
            let wake = self.core.poll_timeout();
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                r = self.pbx.recv_from(&mut pbx_buf) => {
                    if let Ok((n, src)) = r {
                        self.metrics.sip_message_received(metrics::Side::Pbx, metrics::Transport::Udp);
                        let data = Bytes::copy_from_slice(&pbx_buf[..n]);
                        self.core.handle_datagram(Side::Pbx, src, data, Instant::now());
                    }
                }
                r = self.agents.recv_from(&mut agents_buf) => {
                    if let Ok((n, src)) = r {
                        self.metrics.sip_message_received(metrics::Side::Agents, metrics::Transport::Udp);
                        let data = Bytes::copy_from_slice(&agents_buf[..n]);
                        self.core.handle_datagram(Side::Agents, src, data, Instant::now());
                    }
                }
                Some(input) = self.stream_rx.recv() => {
                    self.on_stream(input);
                }
                Some(call) = self.media_timeouts.recv() => {
                    self.core.handle_media_timeout(call, Instant::now());
                }
                _ = sleep => {
                    self.core.handle_timeout(Instant::now());
                }
            }
            self.drain().await;
        }
    }

    fn on_stream(&mut self, input: StreamInput) {
        match input {
            StreamInput::Opened { side, peer, writer } => {
                self.conns.insert((side, peer), writer);
            }
            StreamInput::Message { side, peer, msg } => {
                self.metrics
                    .sip_message_received(metric_side(side), metrics::Transport::Tcp);
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
                SipTransport::Udp => {
                    let sock = match t.side {
                        Side::Pbx => &self.pbx,
                        Side::Agents => &self.agents,
                    };
                    if let Err(e) = sock.send_to(&t.payload, t.dest).await {
                        tracing::debug!(side = t.side.as_str(), error = %e, "SIP send failed");
                    }
                }
                SipTransport::Tcp => {
                    let key = (t.side, t.dest);
                    let writer = match self.conns.get(&key) {
                        Some(w) if !w.is_closed() => w.clone(),
                        _ => {
                            let w =
                                spawn_outbound(t.side, t.dest, self.stream_tx.clone(), self.limits);
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
                    self.metrics.call_ended(match outcome {
                        CallOutcome::Completed => metrics::CallOutcome::Completed,
                        CallOutcome::Cancelled => metrics::CallOutcome::Cancelled,
                        CallOutcome::Failed => metrics::CallOutcome::Failed,
                        CallOutcome::TimedOut => metrics::CallOutcome::TimedOut,
                    });
                }
                ProxyEvent::RequestIn { side, method } => {
                    self.metrics.sip_request(
                        metric_side(side),
                        metrics::SipMethod::from_token(method.as_bytes()),
                    );
                }
                ProxyEvent::ResponseIn {
                    side,
                    status,
                    method,
                    elapsed,
                } => {
                    let m = metrics::SipMethod::from_token(method.as_bytes());
                    self.metrics.sip_response(metric_side(side), m, status);
                    if let Some(d) = elapsed {
                        self.metrics.sip_transaction_finished(
                            metric_side(side),
                            transaction_kind(method),
                            d.as_secs_f64(),
                        );
                    }
                }
                ProxyEvent::Rejected { side, reason } => {
                    tracing::debug!(
                        side = side.as_str(),
                        reason = reason.label(),
                        "SIP rejected"
                    );
                    self.metrics
                        .sip_rejected(metric_side(side), metrics::DropReason::from(reason));
                }
                ProxyEvent::Dropped { side, reason } => {
                    tracing::debug!(side = side.as_str(), reason, "SIP dropped");
                    self.metrics
                        .sip_rejected(metric_side(side), metrics::DropReason::NoRoute);
                }
                ProxyEvent::Retransmission { side, resent } => {
                    let action = if resent {
                        metrics::RetransmitAction::Resent
                    } else {
                        metrics::RetransmitAction::Absorbed
                    };
                    self.metrics.sip_retransmission(metric_side(side), action);
                }
                ProxyEvent::TransactionTimedOut {
                    side,
                    method,
                    elapsed,
                } => {
                    tracing::debug!(side = side.as_str(), method, "SIP transaction timed out");
                    self.metrics.sip_transaction_finished(
                        metric_side(side),
                        transaction_kind(method),
                        elapsed.as_secs_f64(),
                    );
                }
                ProxyEvent::InfoDtmf { call, side } => {
                    self.metrics.dtmf_detected(metrics::DtmfSource::Info);
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
            .set_media_ports(2 * ports.in_use() as u64, 2 * ports.available() as u64);
        self.metrics
            .set_registrations_active(self.core.registrations() as u64);
    }
}
