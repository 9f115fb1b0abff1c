//! The NG shell (media-node mode): one task owns the `ng.listen` UDP socket, the
//! [`NgCore`] and a [`MediaHub`] over the same media workers, recorder queue and call table as
//! the SIP mode.
//!
//! It loops: receive a command or wake for a timer → feed the core with `Instant::now()` →
//! send the reply back to its source → act on every event (media commands to the hub, counts
//! to [`NgMetrics`](crate::metrics::NgMetrics)). No protocol logic lives here.
#![allow(clippy::disallowed_methods)] // io shell: reads the clock

use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::media::MediaHub;
use crate::core::media::tap::CallMeta;
use crate::core::media::DialogTags;
use crate::core::ng::{NgCore, NgEvent, StatsSource};
use crate::core::proxy::{CallOutcome, CallRef, MediaCommand, Side};
use crate::metrics::Metrics;

/// The NG task's parts.
pub struct NgShell {
    /// The NG control core.
    pub core: NgCore,
    /// The `ng.listen` socket.
    pub socket: UdpSocket,
    /// The media shell of NG calls.
    pub media: MediaHub,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// NG calls whose media went quiet.
    pub media_timeouts: mpsc::UnboundedReceiver<CallRef>,
    /// Becomes true: drain (offers for new calls refused; the task runs on until told to
    /// stop, which the signalling task's drain does once these calls are gone too).
    pub drain: tokio::sync::watch::Receiver<bool>,
    /// NG calls in progress, for the drain.
    pub active: Arc<std::sync::atomic::AtomicUsize>,
}

/// The media hub's per-call counters, for `query`/`delete` replies.
struct HubStats<'a>(&'a MediaHub);

impl StatsSource for HubStats<'_> {
    fn received(&self, call: CallRef, side: Side) -> Option<(u64, u64)> {
        self.0.received(call, side)
    }
}

impl NgShell {
    /// Run until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        // The largest datagram: an offer carries a whole SDP.
        let mut buf = vec![0u8; 65_536];
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
                r = self.socket.recv_from(&mut buf) => {
                    let Ok((n, src)) = r else { continue };
                    let stats = HubStats(&self.media);
                    let reply = self.core.handle_datagram_with(Instant::now(), src, &buf[..n], &stats);
                    if let Some(reply) = reply {
                        if let Err(e) = self.socket.send_to(&reply, src).await {
                            tracing::debug!(error = %e, "NG reply not sent");
                        }
                    }
                }
                Some(call) = self.media_timeouts.recv() => {
                    self.core.handle_media_timeout(call, Instant::now());
                }
                Ok(()) = self.drain.changed() => {
                    if *self.drain.borrow() {
                        self.core.set_draining(true);
                        tracing::info!(
                            calls = self.core.calls(),
                            "NG: draining: offers for new calls are refused, the calls in progress go on"
                        );
                    }
                }
                _ = sleep => self.core.handle_timeout(Instant::now()),
            }
            self.drain();
        }
        // Shutdown: the calls still up end here, so their recordings are closed.
        self.media.end_all();
    }

    fn drain(&mut self) {
        while let Some(ev) = self.core.poll_event() {
            match ev {
                NgEvent::Handled { command, outcome } => {
                    self.metrics.ng().command(command.into(), outcome.into());
                    if let Some(c) = command {
                        tracing::debug!(command = c.as_str(), outcome = ?outcome, "NG command");
                    }
                }
                NgEvent::CallStarted { call, parties } => {
                    let text = |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned();
                    let meta = CallMeta {
                        sip_call_id: text(&parties.call_id),
                        // The NG dictionary carries no From/To URIs: nothing to hash.
                        from: "-".into(),
                        to: "-".into(),
                        tags: Some(DialogTags {
                            from_tag: text(&parties.from_tag),
                            to_tag: text(&parties.to_tag),
                        }),
                        ..CallMeta::default()
                    };
                    tracing::info!(call = call.0, "NG call started");
                    self.media.call_started(call, Side::Pbx, meta);
                    self.media.table().answered(call);
                }
                NgEvent::Media(MediaCommand::Upsert { call, streams }) => {
                    self.media.upsert(call, streams);
                }
                NgEvent::Media(MediaCommand::Remove { call }) => self.media.remove(call),
                NgEvent::Call { call, command } => self.media.command(call, command),
                NgEvent::CallEnded { call } => {
                    tracing::info!(call = call.0, "NG call ended");
                    self.media.call_ended(call);
                    self.metrics
                        .calls()
                        .call_ended(CallOutcome::Completed.into());
                }
            }
        }
        self.metrics.ng().set_calls_active(self.core.calls() as u64);
        self.active
            .store(self.core.calls(), std::sync::atomic::Ordering::Release);
    }
}
