//! SIP over TCP: listeners, one task per connection, Content-Length framing.
//!
//! Each connection task frames the byte stream with [`parse_stream`], answers double-CRLF
//! keep-alives itself (RFC 5626 §3.5.1), and hands every message (or framing error) to the
//! signalling task through one channel. Writes go through a per-connection queue, so the
//! signalling task never awaits a slow peer. Outbound connections (a request to a peer with
//! no connection yet) are opened on demand and then used both ways.
#![allow(clippy::disallowed_methods)] // io shell

use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::core::proxy::Side;
use crate::core::sip::{parse_stream, Frame, Limits, SipError, SipMessage, PONG};

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
    /// The connection is gone.
    Closed {
        /// Side.
        side: Side,
        /// The peer.
        peer: SocketAddr,
    },
}

/// Accept connections on `listener` for `side` forever.
pub fn spawn_listener(
    side: Side,
    listener: TcpListener,
    inputs: mpsc::Sender<StreamInput>,
    limits: Limits,
) {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let writer = spawn_connection(side, stream, peer, inputs.clone(), limits);
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
                serve(side, stream, peer, rx, inputs, limits).await;
            }
            Err(e) => {
                tracing::debug!(side = side.as_str(), error = %e, "TCP connect failed");
                let _ = inputs.send(StreamInput::ConnectFailed { side, peer }).await;
            }
        }
    });
    tx
}

fn spawn_connection(
    side: Side,
    stream: TcpStream,
    peer: SocketAddr,
    inputs: mpsc::Sender<StreamInput>,
    limits: Limits,
) -> mpsc::Sender<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    tokio::spawn(serve(side, stream, peer, rx, inputs, limits));
    tx
}

async fn serve(
    side: Side,
    stream: TcpStream,
    peer: SocketAddr,
    mut outgoing: mpsc::Receiver<Bytes>,
    inputs: mpsc::Sender<StreamInput>,
    limits: Limits,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(8192);
    let mut closing = false;
    loop {
        tokio::select! {
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
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // Frame every complete message in the buffer.
                loop {
                    match parse_stream(&buf, &limits) {
                        Ok(Some((Frame::Message(msg), used))) => {
                            buf.advance(used);
                            if inputs.send(StreamInput::Message { side, peer, msg }).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some((Frame::Ping, used))) => {
                            buf.advance(used);
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
    let _ = inputs.send(StreamInput::Closed { side, peer }).await;
}
