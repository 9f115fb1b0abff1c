//! INVITE server transaction (RFC 3261 §17.2.1, figure 7): timers G, H, I.
//!
//! ```text
//!   INVITE in (100 Trying sent at once for a proxy, §16.7)
//!  Proceeding ──300-699 from TU: send, start G (unreliable), H──► Completed ──ACK: start I──► Confirmed ──I──► Terminated
//!    │ INVITE again: resend last 1xx          │ INVITE again / G: resend final (G = min(2G, T2))
//!    │ 2xx from TU: send ─────────────────────┼──────────────────────────────────────────────► Terminated
//!                                             └ H: Timeout ──────────────────────────────────► Terminated
//! ```
//!
//! The ACK for a non-2xx is absorbed here (never reaches the TU); the ACK for a 2xx matches no
//! transaction (this one terminated when the 2xx was sent) and a proxy forwards it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Clock, Fired, Outbox, Timers, Transmit, TxnError, TxnEvent};
use crate::core::sip::{build_response, SipMessage, StatusCode};

/// States of figure 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// Waiting for the TU's final response.
    Proceeding,
    /// 3xx–6xx sent; waiting for the ACK.
    Completed,
    /// ACK received; absorbing ACK retransmissions until I.
    Confirmed,
    /// Done.
    Terminated,
}

/// An INVITE server transaction.
#[derive(Debug)]
pub struct ServerInvite {
    state: ServerInviteState,
    reply_to: SocketAddr,
    timers: Timers,
    reliable: bool,
    /// Last response sent (provisional in Proceeding, final in Completed).
    last: Option<Bytes>,
    /// G (retransmit), H (timeout), I (linger).
    clock: Clock,
    out: Outbox,
}

impl ServerInvite {
    /// Start for `req`. With `send_trying`, a 100 Trying is queued at once (§17.2.1: a proxy
    /// cannot know that the TU answers within 200 ms).
    pub fn new(
        req: &SipMessage,
        reply_to: SocketAddr,
        reliable: bool,
        timers: Timers,
        send_trying: bool,
        _now: Instant,
    ) -> Self {
        let mut t = Self {
            state: ServerInviteState::Proceeding,
            reply_to,
            timers,
            reliable,
            last: None,
            clock: Clock::default(),
            out: Outbox::default(),
        };
        if send_trying {
            if let Ok(trying) = build_response(req, StatusCode::TRYING, "Trying") {
                t.send(trying.as_bytes().clone());
            }
        }
        t
    }

    /// Current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    fn send(&mut self, payload: Bytes) {
        self.last = Some(payload.clone());
        self.out.send(self.reply_to, payload);
    }

    fn resend_last(&mut self) {
        if let Some(p) = self.last.clone() {
            self.out.send(self.reply_to, p);
        }
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
        self.clock.clear();
    }

    /// The TU sends a response (§17.2.1).
    pub fn send_response(&mut self, resp: SipMessage, now: Instant) -> Result<(), TxnError> {
        let status = resp.status().ok_or(TxnError::WrongState)?;
        if self.state != ServerInviteState::Proceeding {
            return Err(TxnError::WrongState);
        }
        self.send(resp.as_bytes().clone());
        if status.is_success() {
            self.terminate();
        } else if status.is_final() {
            self.state = ServerInviteState::Completed;
            // G and H are unset in Proceeding.
            self.clock.start(now, self.reliable, &self.timers);
        }
        Ok(())
    }

    /// The INVITE arrived again: resend the last response (provisional or final).
    pub fn handle_retransmission(&mut self) {
        if matches!(
            self.state,
            ServerInviteState::Proceeding | ServerInviteState::Completed
        ) {
            self.resend_last();
        }
    }

    /// An ACK matched. Returns whether it was absorbed (true in Completed and Confirmed; in
    /// Proceeding an ACK cannot belong here and is left to the TU).
    pub fn handle_ack(&mut self, now: Instant) -> bool {
        match self.state {
            ServerInviteState::Completed => {
                self.state = ServerInviteState::Confirmed;
                self.clock.linger(now, self.reliable, self.timers.t4);
                true
            }
            ServerInviteState::Confirmed => true,
            ServerInviteState::Proceeding | ServerInviteState::Terminated => false,
        }
    }

    /// Timer G's next interval: doubling up to T2.
    fn next_interval(&self, interval: Duration) -> Duration {
        (interval * 2).min(self.timers.t2)
    }

    txn_common!(ServerInviteState::Terminated, resend_last, next_interval);
}
