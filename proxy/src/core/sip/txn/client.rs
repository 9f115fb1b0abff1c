//! Non-INVITE client transaction (RFC 3261 §17.1.2, figure 6): timers E, F, K.
//!
//! ```text
//!           send request, start E (unreliable) and F
//!  Trying ──1xx──► Proceeding ──200-699: to TU, start K──► Completed ──K──► Terminated
//!    │ E: resend, E = min(2E, T2)   │ E: resend, E = T2
//!    └──── F: Timeout ──────────────┴──────────────────────────────────────► Terminated
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{earliest, Outbox, Timers, Transmit, TxnEvent};
use crate::core::sip::SipMessage;

/// States of figure 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent, nothing heard.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; absorbing retransmissions until K.
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE client transaction.
#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    request: SipMessage,
    dest: SocketAddr,
    timers: Timers,
    reliable: bool,
    timer_e: Option<(Instant, Duration)>,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
    out: Outbox,
}

impl ClientNonInvite {
    /// Start the transaction: the request is queued for sending at once.
    pub fn new(
        request: SipMessage,
        dest: SocketAddr,
        reliable: bool,
        timers: Timers,
        now: Instant,
    ) -> Self {
        let mut t = Self {
            state: ClientNonInviteState::Trying,
            request,
            dest,
            timers,
            reliable,
            timer_e: (!reliable).then(|| (now + timers.t1, timers.t1)),
            timer_f: Some(now + timers.t1x64()),
            timer_k: None,
            out: Outbox::default(),
        };
        t.resend();
        t
    }

    /// Current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    fn resend(&mut self) {
        self.out.transmits.push_back(Transmit {
            dest: self.dest,
            payload: self.request.as_bytes().clone(),
        });
    }

    fn terminate(&mut self) {
        self.state = ClientNonInviteState::Terminated;
        self.timer_e = None;
        self.timer_f = None;
        self.timer_k = None;
    }

    /// A response matched this transaction (§17.1.2.2).
    pub fn handle_response(&mut self, resp: SipMessage, now: Instant) {
        let Some(status) = resp.status() else {
            return;
        };
        match self.state {
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding => {
                self.out.events.push_back(TxnEvent::Response(resp));
                if status.is_provisional() {
                    self.state = ClientNonInviteState::Proceeding;
                } else {
                    self.state = ClientNonInviteState::Completed;
                    self.timer_e = None;
                    self.timer_f = None;
                    let k = if self.reliable {
                        Duration::ZERO
                    } else {
                        self.timers.t4
                    };
                    self.timer_k = Some(now + k);
                }
            }
            ClientNonInviteState::Completed | ClientNonInviteState::Terminated => {}
        }
    }

    /// Next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(&[self.timer_e.map(|(t, _)| t), self.timer_f, self.timer_k])
    }

    /// Fire timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer_f.is_some_and(|t| t <= now) {
            self.out.events.push_back(TxnEvent::Timeout);
            self.terminate();
            return;
        }
        if let Some((t, interval)) = self.timer_e {
            if t <= now {
                self.resend();
                let next = if self.state == ClientNonInviteState::Proceeding {
                    self.timers.t2
                } else {
                    (interval * 2).min(self.timers.t2)
                };
                self.timer_e = Some((t + next, next));
            }
        }
        if self.timer_k.is_some_and(|t| t <= now) {
            self.terminate();
        }
    }

    /// Sending failed (§17.1.4).
    pub fn handle_transport_error(&mut self) {
        if self.state != ClientNonInviteState::Terminated {
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
        self.state == ClientNonInviteState::Terminated
    }
}
