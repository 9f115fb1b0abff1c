//! Non-INVITE server transaction (RFC 3261 §17.2.2, figure 8): timer J.
//!
//! ```text
//!   request in
//!  Trying ──1xx from TU──► Proceeding ──200-699 from TU: send, start J──► Completed ──J──► Terminated
//!    │ request again: absorbed   │ request again: resend 1xx     │ request again: resend final
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::{Clock, Fired, Outbox, Timers, Transmit, TxnError, TxnEvent};
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
    /// J (linger); no retransmit or timeout timer.
    clock: Clock,
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
            clock: Clock::default(),
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
        self.out.send(self.reply_to, payload);
        if status.is_final() {
            self.state = ServerNonInviteState::Completed;
            self.clock.linger(now, self.reliable, self.timers.t1x64());
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
                self.out.send(self.reply_to, p);
            }
        }
    }

    fn terminate(&mut self) {
        self.state = ServerNonInviteState::Terminated;
        self.clock.clear();
    }

    /// Fire timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Fired::Due { linger: true, .. } = self.clock.fire(now) {
            self.terminate();
        }
    }

    txn_common!(ServerNonInviteState::Terminated);
}
