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

use super::{Clock, Fired, Outbox, Timers, Transmit, TxnEvent};
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
    /// E (retransmit), F (timeout), K (linger).
    clock: Clock,
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
            clock: Clock::default(),
            out: Outbox::default(),
        };
        t.clock.start(now, reliable, &timers);
        t.resend();
        t
    }

    /// Current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    fn resend(&mut self) {
        self.out.send(self.dest, self.request.as_bytes().clone());
    }

    fn terminate(&mut self) {
        self.state = ClientNonInviteState::Terminated;
        self.clock.clear();
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
                    self.clock.linger(now, self.reliable, self.timers.t4);
                }
            }
            ClientNonInviteState::Completed | ClientNonInviteState::Terminated => {}
        }
    }

    /// Timer E's next interval: doubling up to T2, T2 once a provisional arrived.
    fn next_interval(&self, interval: Duration) -> Duration {
        if self.state == ClientNonInviteState::Proceeding {
            self.timers.t2
        } else {
            (interval * 2).min(self.timers.t2)
        }
    }

    txn_common!(ClientNonInviteState::Terminated, resend, next_interval);
}
