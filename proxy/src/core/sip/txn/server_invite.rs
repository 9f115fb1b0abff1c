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

use super::{earliest, Outbox, Timers, Transmit, TxnError, TxnEvent};
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
    timer_g: Option<(Instant, Duration)>,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
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
            timer_g: None,
            timer_h: None,
            timer_i: None,
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
        self.out.transmits.push_back(Transmit {
            dest: self.reply_to,
            payload,
        });
    }

    fn resend_last(&mut self) {
        if let Some(p) = self.last.clone() {
            self.out.transmits.push_back(Transmit {
                dest: self.reply_to,
                payload: p,
            });
        }
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
        self.timer_g = None;
        self.timer_h = None;
        self.timer_i = None;
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
            if !self.reliable {
                self.timer_g = Some((now + self.timers.t1, self.timers.t1));
            }
            self.timer_h = Some(now + self.timers.t1x64());
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
                self.timer_g = None;
                self.timer_h = None;
                let i = if self.reliable {
                    Duration::ZERO
                } else {
                    self.timers.t4
                };
                self.timer_i = Some(now + i);
                true
            }
            ServerInviteState::Confirmed => true,
            ServerInviteState::Proceeding | ServerInviteState::Terminated => false,
        }
    }

    /// Next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_g.map(|(t, _)| t), self.timer_h, self.timer_i])
    }

    /// Fire timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer_h.is_some_and(|t| t <= now) {
            self.out.events.push_back(TxnEvent::Timeout);
            self.terminate();
            return;
        }
        if let Some((t, interval)) = self.timer_g {
            if t <= now {
                self.resend_last();
                let next = (interval * 2).min(self.timers.t2);
                self.timer_g = Some((t + next, next));
            }
        }
        if self.timer_i.is_some_and(|t| t <= now) {
            self.terminate();
        }
    }

    /// Sending failed (§17.2.4).
    pub fn handle_transport_error(&mut self) {
        if self.state != ServerInviteState::Terminated {
            self.out.events.push_back(TxnEvent::TransportError);
            self.terminate();
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
        self.state == ServerInviteState::Terminated
    }
}
