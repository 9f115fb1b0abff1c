//! Whether each SRS of the list is there now, before any call needs it: an out-of-dialog
//! OPTIONS (RFC 3261 §11) to every SRS every `every` (`probe_s`), sans-IO like [`super::Src`].
//!
//! Any final answer within `timeout` says the SRS is up (an SRS that does not do OPTIONS
//! still answers 405 or 501); none says it is down. The shell feeds responses whose Call-ID
//! [`SrsProbe::owns`], timers, and drains [`SrsProbe::poll_transmit`]; `/readyz` and the
//! `callmask_siprec_srs_reachable` gauge read [`SrsProbe::up`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::core::sip::txn::{ClientNonInvite, Timers, Transmit, TxnEvent};
use crate::core::sip::{SipMessage, StatusCode};

#[cfg(test)]
use super::SrsTransport;
use super::{message, SrsTarget};

/// One SRS's probe.
#[derive(Debug)]
struct Probe {
    /// The OPTIONS in flight: its Call-ID, transaction and answer deadline.
    out: Option<(String, ClientNonInvite, Instant)>,
    /// When the next OPTIONS goes (while none is in flight).
    next_at: Instant,
    /// The last probe's verdict (`None`: none finished yet).
    up: Option<bool>,
}

/// The prober of one SRS list.
#[derive(Debug)]
pub struct SrsProbe {
    targets: Vec<SrsTarget>,
    timers: Timers,
    every: Duration,
    timeout: Duration,
    /// Makes the Call-IDs (`probe-{token}-…`) and the From tag.
    token: String,
    probes: Vec<Probe>,
    transmits: VecDeque<Transmit>,
    sent: u64,
}

impl SrsProbe {
    /// Probes of `targets`, the first at `now`, then every `every`; an answer is due within
    /// `timeout`. `token` must be unique to this client.
    pub fn new(
        targets: Vec<SrsTarget>,
        timers: Timers,
        every: Duration,
        timeout: Duration,
        token: String,
        now: Instant,
    ) -> Self {
        let probes = targets
            .iter()
            .map(|_| Probe {
                out: None,
                next_at: now,
                up: None,
            })
            .collect();
        SrsProbe {
            targets,
            timers,
            every,
            timeout,
            token,
            probes,
            transmits: VecDeque::new(),
            sent: 0,
        }
    }

    /// `call_id` is one of the probe's (its responses go to [`SrsProbe::handle_response`]).
    pub fn owns(&self, call_id: &[u8]) -> bool {
        call_id.starts_with(format!("probe-{}-", self.token).as_bytes())
    }

    /// A response to one of the probe's OPTIONS.
    pub fn handle_response(&mut self, resp: SipMessage, now: Instant) {
        let Ok(call_id) = resp.call_id() else {
            return;
        };
        for p in &mut self.probes {
            if let Some((id, t, _)) = &mut p.out {
                if id.as_bytes() == &call_id[..] {
                    t.handle_response(resp, now);
                    break;
                }
            }
        }
        self.drain(now);
    }

    /// Fire what is due at `now`: retransmissions, verdicts on unanswered probes, new probes.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.probes.len() {
            let p = &mut self.probes[i];
            if let Some((_, t, due)) = &mut p.out {
                if *due <= now {
                    p.out = None;
                    p.up = Some(false);
                    p.next_at = now + self.every;
                } else if t.poll_timeout().is_some_and(|d| d <= now) {
                    t.handle_timeout(now);
                }
            }
            if p.out.is_none() && p.next_at <= now {
                self.send(i, now);
            }
        }
        self.drain(now);
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`SrsProbe::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.probes
            .iter()
            .map(|p| match &p.out {
                Some((_, t, due)) => t.poll_timeout().map_or(*due, |d| d.min(*due)),
                None => p.next_at,
            })
            .min()
    }

    /// Per SRS, the last verdict (`None`: not known yet).
    pub fn up(&self) -> Vec<Option<bool>> {
        self.probes.iter().map(|p| p.up).collect()
    }

    fn send(&mut self, i: usize, now: Instant) {
        let Some(target) = self.targets.get(i) else {
            return;
        };
        self.sent += 1;
        let call_id = format!("probe-{}-{i}-{}@callmask", self.token, self.sent);
        let branch = format!("z9hG4bK-cmp{}-{}", self.token, self.sent);
        let bytes = message::options(target, &call_id, &self.token, &branch);
        let Some(p) = self.probes.get_mut(i) else {
            return;
        };
        match SipMessage::parse(bytes) {
            Ok(req) => {
                let t = ClientNonInvite::new(
                    req,
                    target.addr,
                    target.transport.reliable(),
                    self.timers,
                    now,
                );
                p.out = Some((call_id, t, now + self.timeout));
            }
            // Only an SRS URI that does not print as a request line gets here.
            Err(_) => {
                p.up = Some(false);
                p.next_at = now + self.every;
            }
        }
    }

    fn drain(&mut self, now: Instant) {
        for p in &mut self.probes {
            let Some((_, t, _)) = &mut p.out else {
                continue;
            };
            while let Some(x) = t.poll_transmit() {
                self.transmits.push_back(x);
            }
            let mut verdict = None;
            while let Some(e) = t.poll_event() {
                verdict = match e {
                    TxnEvent::Response(r) if r.status().is_some_and(StatusCode::is_final) => {
                        Some(true)
                    }
                    TxnEvent::Response(_) => verdict,
                    _ => Some(false),
                };
            }
            if let Some(v) = verdict {
                p.up = Some(v);
                p.out = None;
                p.next_at = now + self.every;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sip::build_response;
    use bytes::Bytes;
    use std::net::SocketAddr;

    fn target(a: &str) -> SrsTarget {
        SrsTarget {
            uri: format!("sip:srs@{a}"),
            addr: a.parse().expect("addr"),
            local: "10.0.0.1:5080".parse().expect("addr"),
            transport: SrsTransport::Udp,
        }
    }

    fn sent(p: &mut SrsProbe) -> Vec<(SocketAddr, SipMessage)> {
        std::iter::from_fn(|| p.poll_transmit())
            .map(|t| (t.dest, SipMessage::parse(t.payload).expect("valid SIP")))
            .collect()
    }

    fn answer(req: &SipMessage, code: u16) -> SipMessage {
        let r = build_response(req, StatusCode::new(code).expect("code"), "x").expect("resp");
        SipMessage::parse(Bytes::copy_from_slice(r.as_bytes())).expect("parse")
    }

    /// The virtual clock's origin (the only real clock read: an arbitrary epoch).
    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }

    #[test]
    fn answered_probes_say_up_and_silent_ones_down() {
        let t0 = epoch();
        let every = Duration::from_secs(10);
        let mut p = SrsProbe::new(
            vec![target("10.0.0.8:5060"), target("10.0.0.9:5060")],
            Timers::default(),
            every,
            Duration::from_millis(500),
            "tok".into(),
            t0,
        );
        assert_eq!(p.up(), [None, None]);
        assert_eq!(p.poll_timeout(), Some(t0));
        p.handle_timeout(t0);
        let out = sent(&mut p);
        assert_eq!(out.len(), 2);
        for (_, m) in &out {
            assert_eq!(
                m.method().map(|m| m.to_string()).as_deref(),
                Some("OPTIONS")
            );
            assert!(p.owns(&m.call_id().expect("call id")));
            assert!(m.to().expect("to").tag().is_none(), "out of dialog");
        }
        // The first answers (a 405 is an answer), the second never does.
        p.handle_response(answer(&out[0].1, 405), t0 + Duration::from_millis(20));
        assert_eq!(p.up(), [Some(true), None]);
        let due = t0 + Duration::from_millis(500);
        while let Some(t) = p.poll_timeout().filter(|&t| t < due) {
            p.handle_timeout(t);
            assert!(
                sent(&mut p).iter().all(|(d, _)| *d == out[1].0),
                "retransmits"
            );
        }
        p.handle_timeout(due);
        assert_eq!(p.up(), [Some(true), Some(false)]);
        // Probed again after `every`; the down one comes back up when it answers.
        let next = t0 + Duration::from_millis(500) + every;
        while let Some(t) = p.poll_timeout().filter(|&t| t < next) {
            p.handle_timeout(t);
            sent(&mut p);
        }
        p.handle_timeout(next);
        let again = sent(&mut p);
        let to_second = again
            .iter()
            .find(|(d, _)| *d == out[1].0)
            .expect("the down SRS probed again");
        p.handle_response(answer(&to_second.1, 200), next);
        assert_eq!(p.up()[1], Some(true));
        // A stray Call-ID is not the probe's.
        assert!(!p.owns(b"tok-0@callmask"));
    }
}
