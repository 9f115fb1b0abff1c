//! Non-INVITE server transaction (RFC 3261 §17.2.2, figure 8): timer J.
//!
//! ```text
//!   request in
//!  Trying ──1xx from TU──► Proceeding ──200-699 from TU: send, start J──► Completed ──J──► Terminated
//!    │ request again: absorbed   │ request again: resend 1xx     │ request again: resend final
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{earliest, Outbox, Timers, Transmit, TxnError, TxnEvent};
use crate::core::sip::SipMessage;

/// States of figure 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// Nothing sent yet.
    Trying,
    /// A provisional response sent.
    Proceeding,
    /// Final response sent; answering retransmissions until J.
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    reply_to: SocketAddr,
    timers: Timers,
    reliable: bool,
    last: Option<Bytes>,
    timer_j: Option<Instant>,
    out: Outbox,
}

impl ServerNonInvite {
    /// Start for a request whose responses go to `reply_to`.
    pub fn new(reply_to: SocketAddr, reliable: bool, timers: Timers) -> Self {
        Self {
            state: ServerNonInviteState::Trying,
            reply_to,
            timers,
            reliable,
            last: None,
            timer_j: None,
            out: Outbox::default(),
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// The TU sends a response (§17.2.2).
    pub fn send_response(&mut self, resp: SipMessage, now: Instant) -> Result<(), TxnError> {
        let status = resp.status().ok_or(TxnError::WrongState)?;
        if !matches!(
            self.state,
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding
        ) {
            return Err(TxnError::WrongState);
        }
        let payload = resp.as_bytes().clone();
        self.last = Some(payload.clone());
        self.out.transmits.push_back(Transmit {
            dest: self.reply_to,
            payload,
        });
        if status.is_final() {
            self.state = ServerNonInviteState::Completed;
            let j = if self.reliable {
                Duration::ZERO
            } else {
                self.timers.t1x64()
            };
            self.timer_j = Some(now + j);
        } else {
            self.state = ServerNonInviteState::Proceeding;
        }
        Ok(())
    }

    /// The request arrived again: absorbed in Trying, answered with the last response after.
    pub fn handle_retransmission(&mut self) {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) {
            if let Some(p) = self.last.clone() {
                self.out.transmits.push_back(Transmit {
                    dest: self.reply_to,
                    payload: p,
                });
            }
        }
    }

    /// Next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_j])
    }

    /// Fire timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer_j.is_some_and(|t| t <= now) {
            self.state = ServerNonInviteState::Terminated;
            self.timer_j = None;
        }
    }

    /// Sending failed (§17.2.4).
    pub fn handle_transport_error(&mut self) {
        if self.state != ServerNonInviteState::Terminated {
            self.out.events.push_back(TxnEvent::TransportError);
            self.state = ServerNonInviteState::Terminated;
            self.timer_j = None;
        }
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// Next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxnEvent> {
        self.out.events.pop_front()
    }

    /// Whether the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }
}
