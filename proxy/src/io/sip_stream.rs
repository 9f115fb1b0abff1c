//! SIP over TCP: listeners, one task per connection, Content-Length framing.
//!
//! Each connection task frames the byte stream incrementally ([`StreamFramer`]: each byte
//! scanned once), answers double-CRLF
//! keep-alives itself (RFC 5626 §3.5.1), and hands every message (or framing error) to the
//! signalling task through one channel. Writes go through a per-connection queue, so the
//! signalling task never awaits a slow peer. Outbound connections (a request to a peer with
//! no connection yet) are opened on demand and then used both ways.
//!
//! SIP over TLS (issue 14) runs the same code on a TLS stream: [`spawn_tls_listener`] admits
//! a connection under the same bounds, completes the handshake within the idle timeout, then
//! serves it like TCP; [`spawn_outbound_tls`] connects to the peer and verifies it. Failed
//! handshakes are counted by reason (`callmask_sip_tls_handshake_failures_total`).
//!
//! Bounds (issue 13, [`TcpLimits`]): inbound connections per source address and in total
//! (over either, the connection is closed at accept and counted), and an idle timeout that
//! cuts a connection whose message has not completed in time, or that has sent no complete
//! message since it was accepted (slowloris). A connection that has sent messages and sits
//! idle between them stays open: a TCP-registered phone is reached over it.
#![allow(clippy::disallowed_methods)] // io shell

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::sip_tls::{certificate_names_ip, classify, TlsSide};
use crate::core::proxy::Side;
use crate::core::sip::{connection_alias, Frame, Limits, SipError, SipMessage, StreamFramer, PONG};
use crate::metrics::{LimitLabel, Metrics, TlsFailure};

/// How long an outbound TLS handshake (after the TCP connect) may take.
const OUTBOUND_HANDSHAKE: Duration = Duration::from_secs(10);

/// Queue depth per connection (messages); a peer that does not read is disconnected.
const WRITE_QUEUE: usize = 256;

/// What connection tasks tell the signalling task.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per SIP message; boxing would allocate per message
pub enum StreamInput {
    /// A connection is up; `writer` sends to it.
    Opened {
        /// Side.
        side: Side,
        /// The peer.
        peer: SocketAddr,
        /// Queue to the connection's writer.
        writer: mpsc::Sender<Bytes>,
    },
    /// A framed message.
    Message {
        /// Side.
        side: Side,
        /// The peer.
        peer: SocketAddr,
        /// The message.
        msg: SipMessage,
    },
    /// Framing failed; the connection is closed after the answer (if any) is written.
    Invalid {
        /// Side.
        side: Side,
        /// The peer.
        peer: SocketAddr,
        /// The unframed bytes (for building a 400).
        raw: Bytes,
        /// Why.
        error: SipError,
    },
    /// An outbound connection could not be opened: what was queued for it is lost (the
    /// core fails those requests with 503).
    ConnectFailed {
        /// Side.
        side: Side,
        /// The peer.
        peer: SocketAddr,
    },
    /// RFC 5923: a TLS client asked (Via `alias`) for its connection to be used for requests
    /// to `alias` as well, and its certificate names that address.
    Alias {
        /// Side.
        side: Side,
        /// The connection's peer.
        peer: SocketAddr,
        /// The address requests may reach it by.
        alias: SocketAddr,
    },
    /// The connection is gone.
    Closed {
        /// Side.
        side: Side,
        /// The peer.
        peer: SocketAddr,
    },
}

/// Bounds on inbound TCP connections, shared by both sides' listeners.
#[derive(Debug)]
pub struct TcpLimits {
    // Atomics: a configuration reload changes them for connections accepted afterwards.
    per_source: AtomicUsize,
    total: AtomicUsize,
    idle_s: AtomicU64,
    /// Open inbound connections by source address, and their sum.
    open: Mutex<(HashMap<IpAddr, usize>, usize)>,
    metrics: Arc<Metrics>,
}

/// One admitted connection; gives its place back when dropped.
#[derive(Debug)]
struct Permit {
    limits: Arc<TcpLimits>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut open) = self.limits.open.lock() {
            let (by_ip, total) = &mut *open;
            *total = total.saturating_sub(1);
            if let Some(n) = by_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    by_ip.remove(&self.ip);
                }
            }
        }
    }
}

impl TcpLimits {
    /// The bounds of `limits.tcp_*`.
    pub fn new(l: &config::LimitsConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(TcpLimits {
            per_source: AtomicUsize::new(l.tcp_connections_per_source.get() as usize),
            total: AtomicUsize::new(l.tcp_connections.get() as usize),
            idle_s: AtomicU64::new(u64::from(l.tcp_idle_timeout_s.get())),
            open: Mutex::new((HashMap::new(), 0)),
            metrics,
        })
    }

    /// New bounds (configuration reload), for connections accepted from now on.
    pub fn update(&self, l: &config::LimitsConfig) {
        self.per_source.store(
            l.tcp_connections_per_source.get() as usize,
            Ordering::Relaxed,
        );
        self.total
            .store(l.tcp_connections.get() as usize, Ordering::Relaxed);
        self.idle_s
            .store(u64::from(l.tcp_idle_timeout_s.get()), Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_s.load(Ordering::Relaxed))
    }

    /// A place for a connection from `ip` on `side`, or `None` (counted) when over a bound.
    fn admit(self: &Arc<Self>, side: Side, ip: IpAddr) -> Option<Permit> {
        let mut open = self.open.lock().ok()?;
        let (by_ip, total) = &mut *open;
        let n = by_ip.get(&ip).copied().unwrap_or(0);
        let over = if *total >= self.total.load(Ordering::Relaxed) {
            Some(LimitLabel::TcpTotal)
        } else if n >= self.per_source.load(Ordering::Relaxed) {
            Some(LimitLabel::TcpPerSource)
        } else {
            None
        };
        if let Some(label) = over {
            self.metrics.access().limit_refused(side, label);
            return None;
        }
        by_ip.insert(ip, n + 1);
        *total += 1;
        Some(Permit {
            limits: self.clone(),
            ip,
        })
    }
}

/// Accept connections on `listener` for `side` forever.
pub fn spawn_listener(
    side: Side,
    listener: TcpListener,
    inputs: mpsc::Sender<StreamInput>,
    limits: Limits,
    tcp: Arc<TcpLimits>,
) {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let Some(permit) = tcp.admit(side, peer.ip()) else {
                        tracing::debug!(
                            side = side.as_str(),
                            "TCP connection over a limit: closed"
                        );
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let guard = Guard {
                        idle: Some(tcp.idle()),
                        _permit: Some(permit),
                        metrics: Some(tcp.metrics.clone()),
                        client_cert: None,
                    };
                    let writer =
                        spawn_connection(side, stream, peer, inputs.clone(), limits, guard);
                    if inputs
                        .send(StreamInput::Opened { side, peer, writer })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(side = side.as_str(), error = %e, "TCP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
}

/// Accept SIP-over-TLS connections on `listener` for `side` forever: admitted under the
/// same bounds as TCP, the handshake must finish within the idle timeout; a failed handshake
/// is counted by reason and the connection closed.
pub fn spawn_tls_listener(
    side: Side,
    listener: TcpListener,
    inputs: mpsc::Sender<StreamInput>,
    limits: Limits,
    tcp: Arc<TcpLimits>,
    tls: Arc<TlsSide>,
) {
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(side = side.as_str(), error = %e, "TLS accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(permit) = tcp.admit(side, peer.ip()) else {
                tracing::debug!(side = side.as_str(), "TLS connection over a limit: closed");
                continue;
            };
            let Some(acceptor) = tls.acceptor() else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (inputs, tcp) = (inputs.clone(), tcp.clone());
            tokio::spawn(async move {
                let shake = tokio::time::timeout(tcp.idle(), acceptor.accept(stream)).await;
                let stream = match shake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tls_failed(&tcp.metrics, side, classify(&e), "inbound");
                        return;
                    }
                    Err(_) => {
                        tls_failed(&tcp.metrics, side, TlsFailure::Timeout, "inbound");
                        return;
                    }
                };
                // Verified against tls.client_ca_file when one was asked for.
                let client_cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.clone().into_owned());
                let guard = Guard {
                    idle: Some(tcp.idle()),
                    _permit: Some(permit),
                    metrics: Some(tcp.metrics.clone()),
                    client_cert,
                };
                let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
                let opened = StreamInput::Opened {
                    side,
                    peer,
                    writer: tx,
                };
                if inputs.send(opened).await.is_ok() {
                    serve(side, stream, peer, rx, inputs, limits, guard).await;
                }
            });
        }
    });
}

fn tls_failed(metrics: &Metrics, side: Side, reason: TlsFailure, direction: &'static str) {
    use crate::metrics::Label;
    tracing::info!(
        side = side.as_str(),
        direction,
        reason = reason.as_str(),
        "SIP over TLS: handshake failed"
    );
    metrics.sip().tls_handshake_failed(side, reason);
}

/// Open a TLS connection to `peer` for `side` (its certificate verified, see
/// [`TlsSide::connector`]); returns the writer queue at once, as [`spawn_outbound`] does.
pub fn spawn_outbound_tls(
    side: Side,
    peer: SocketAddr,
    inputs: mpsc::Sender<StreamInput>,
    limits: Limits,
    tls: Arc<TlsSide>,
    metrics: Arc<Metrics>,
) -> mpsc::Sender<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    tokio::spawn(async move {
        let Some((connector, name)) = tls.connector(peer) else {
            tracing::warn!(
                side = side.as_str(),
                "SIP over TLS: nothing to verify the peer's certificate with (set tls.ca_file): not connecting"
            );
            let _ = inputs.send(StreamInput::ConnectFailed { side, peer }).await;
            return;
        };
        let stream = match TcpStream::connect(peer).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(side = side.as_str(), error = %e, "TLS: TCP connect failed");
                let _ = inputs.send(StreamInput::ConnectFailed { side, peer }).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let shake = tokio::time::timeout(OUTBOUND_HANDSHAKE, connector.connect(name, stream)).await;
        let reason = match shake {
            Ok(Ok(s)) => {
                serve(side, s, peer, rx, inputs, limits, Guard::default()).await;
                return;
            }
            Ok(Err(e)) => classify(&e),
            Err(_) => TlsFailure::Timeout,
        };
        tls_failed(&metrics, side, reason, "outbound");
        let _ = inputs.send(StreamInput::ConnectFailed { side, peer }).await;
    });
    tx
}

/// Open a connection to `peer` for `side`; returns the writer queue at once (messages queue
/// until the connection is up, and are dropped if it fails).
pub fn spawn_outbound(
    side: Side,
    peer: SocketAddr,
    inputs: mpsc::Sender<StreamInput>,
    limits: Limits,
) -> mpsc::Sender<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    tokio::spawn(async move {
        match TcpStream::connect(peer).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                serve(side, stream, peer, rx, inputs, limits, Guard::default()).await;
            }
            Err(e) => {
                tracing::debug!(side = side.as_str(), error = %e, "TCP connect failed");
                let _ = inputs.send(StreamInput::ConnectFailed { side, peer }).await;
            }
        }
    });
    tx
}

/// What an inbound connection carries: its idle timeout and its place in [`TcpLimits`].
/// Outbound connections (to a configured peer) have neither.
#[derive(Debug, Default)]
struct Guard {
    idle: Option<Duration>,
    /// Held for its `Drop`: the connection's place in the bounds.
    _permit: Option<Permit>,
    metrics: Option<Arc<Metrics>>,
    /// An inbound TLS client's verified certificate: RFC 5923 aliases are honoured only for
    /// addresses it names (§9).
    client_cert: Option<rustls::pki_types::CertificateDer<'static>>,
}

fn spawn_connection(
    side: Side,
    stream: TcpStream,
    peer: SocketAddr,
    inputs: mpsc::Sender<StreamInput>,
    limits: Limits,
    guard: Guard,
) -> mpsc::Sender<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    tokio::spawn(serve(side, stream, peer, rx, inputs, limits, guard));
    tx
}

async fn serve<S>(
    side: Side,
    stream: S,
    peer: SocketAddr,
    mut outgoing: mpsc::Receiver<Bytes>,
    inputs: mpsc::Sender<StreamInput>,
    limits: Limits,
    guard: Guard,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(8192);
    let mut framer = StreamFramer::default();
    let mut closing = false;
    // Slowloris guard: a message must complete within the idle time of its first byte (or
    // of the accept, before the first message); between messages the connection may rest.
    let mut deadline = guard.idle.map(|d| tokio::time::Instant::now() + d);
    let mut framed_any = false;
    let mut aliased: Option<SocketAddr> = None;
    loop {
        let armed = !closing && (!framed_any || !buf.is_empty());
        let due = deadline.filter(|_| armed);
        let idle_due = async move {
            match due {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = idle_due => {
                tracing::debug!(side = side.as_str(), "TCP connection idle past limits.tcp_idle_timeout_s: closed");
                if let Some(m) = &guard.metrics {
                    m.access().limit_refused(side, LimitLabel::TcpIdle);
                }
                break;
            }
            out = outgoing.recv() => {
                match out {
                    Some(b) => {
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                }
                if closing && outgoing.is_empty() {
                    break;
                }
            }
            r = rd.read_buf(&mut buf), if !closing => {
                let n = match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                // Frame every complete message in the buffer.
                let was_empty = buf.len() == n;
                if was_empty && framed_any {
                    // A new message starts now: its clock starts too.
                    deadline = guard.idle.map(|d| tokio::time::Instant::now() + d);
                }
                loop {
                    match framer.next(&buf, &limits) {
                        Ok(Some((Frame::Message(msg), used))) => {
                            buf.advance(used);
                            framed_any = true;
                            deadline = guard.idle.map(|d| tokio::time::Instant::now() + d);
                            let alias = guard.client_cert.as_ref().and_then(|cert| {
                                let a = connection_alias(&msg)?;
                                let new = a != peer && aliased != Some(a);
                                (new && certificate_names_ip(cert, a.ip())).then_some(a)
                            });
                            if let Some(alias) = alias {
                                aliased = Some(alias);
                                if inputs.send(StreamInput::Alias { side, peer, alias }).await.is_err() {
                                    return;
                                }
                            }
                            if inputs.send(StreamInput::Message { side, peer, msg }).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some((Frame::Ping, used))) => {
                            buf.advance(used);
                            deadline = guard.idle.map(|d| tokio::time::Instant::now() + d);
                            if wr.write_all(PONG).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some((Frame::Pong, used))) => buf.advance(used),
                        Ok(None) => break,
                        Err(error) => {
                            let raw = buf.split().freeze();
                            let _ = inputs.send(StreamInput::Invalid { side, peer, raw, error }).await;
                            // Let the signalling task queue its answer, then close.
                            closing = true;
                            break;
                        }
                    }
                }
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)), if closing => break,
        }
    }
    let _ = wr.shutdown().await;
    drop(guard);
    let _ = inputs.send(StreamInput::Closed { side, peer }).await;
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// Issue 13: a connection that completes no message within the idle time is cut.
    #[tokio::test]
    async fn silent_or_trickling_connections_are_cut_at_the_idle_timeout() {
        let metrics = Arc::new(Metrics::new());
        let cfg = config::LimitsConfig {
            tcp_idle_timeout_s: config::types::TcpIdleTimeoutSecs::try_from(1).expect("1 s"),
            ..config::LimitsConfig::default()
        };
        let tcp = TcpLimits::new(&cfg, metrics.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, mut rx) = mpsc::channel(16);
        spawn_listener(Side::Pbx, listener, tx, Limits::default(), tcp);
        // Hold the writers, as the signalling task does.
        tokio::spawn(async move {
            let mut writers = Vec::new();
            while let Some(input) = rx.recv().await {
                if let StreamInput::Opened { writer, .. } = input {
                    writers.push(writer);
                }
            }
        });
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let started = tokio::time::Instant::now();
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
            .await
            .expect("cut within 5 s");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        assert!(started.elapsed() >= Duration::from_millis(900));
        assert!(metrics
            .render()
            .contains("callmask_limit_refusals_total{limit=\"tcp_idle_timeout\",side=\"pbx\"} 1"));
    }
}
