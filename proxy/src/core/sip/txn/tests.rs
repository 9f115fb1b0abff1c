//! Transaction tests on a virtual clock (an `Instant` base plus offsets), citing RFC 3261.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::core::sip::{build_response, SipMessage, StatusCode};

const UAS: &str = "192.0.2.10:5060";
const UAC: &str = "192.0.2.20:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn request(method: &str, branch: &str) -> SipMessage {
    SipMessage::parse(Bytes::from(format!(
        "{method} sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch={branch}\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: call-1@example.com\r\n\
CSeq: 7 {method}\r\n\
Content-Length: 0\r\n\r\n"
    )))
    .unwrap()
}

fn response(req: &SipMessage, code: u16) -> SipMessage {
    let r = build_response(req, StatusCode::new(code).unwrap(), "X").unwrap();
    // Give it a To tag like a UAS would.
    if r.to().unwrap().tag().is_some() {
        return r;
    }
    let to = r.header("To").unwrap();
    let mut to = to.to_vec();
    to.extend_from_slice(b";tag=b1");
    r.edit()
        .remove_header(b"To")
        .add_header(b"To", &to)
        .finish()
        .unwrap()
}

/// Drive `t` until `end`, recording the offset of each transmission from `base`.
fn run(t: &mut Transaction, base: Instant, end: Instant) -> Vec<Duration> {
    let mut sent = Vec::new();
    while t.poll_transmit().is_some() {
        sent.push(Duration::ZERO);
    }
    while let Some(d) = t.poll_timeout() {
        if d > end {
            break;
        }
        t.handle_timeout(d);
        while t.poll_transmit().is_some() {
            sent.push(d - base);
        }
        if t.is_terminated() {
            break;
        }
    }
    sent
}

#[test]
fn rfc3261_17_1_1_2_timer_a_doubles_and_timer_b_fires_at_64_t1() {
    let now = Instant::now_for_tests();
    let mut t = Transaction::ClientInvite(ClientInvite::new(
        request("INVITE", "z9hG4bK1"),
        addr(UAS),
        false,
        Timers::default(),
        now,
    ));
    let sent = run(&mut t, now, now + Duration::from_secs(60));
    // Sent at 0, then A fires at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (interval doubling, no cap
    // for INVITE); B fires at 64·T1 = 32 s.
    let expect: Vec<_> = [0, 500, 1500, 3500, 7500, 15500, 31500].map(ms).to_vec();
    assert_eq!(sent, expect);
    assert!(t.is_terminated());
    assert_eq!(t.poll_event(), Some(TxnEvent::Timeout));
}

#[test]
fn rfc3261_17_1_1_2_reliable_invite_has_no_timer_a() {
    let now = Instant::now_for_tests();
    let mut t = Transaction::ClientInvite(ClientInvite::new(
        request("INVITE", "z9hG4bK1"),
        addr(UAS),
        true,
        Timers::default(),
        now,
    ));
    let sent = run(&mut t, now, now + Duration::from_secs(60));
    assert_eq!(sent, vec![Duration::ZERO]);
    assert_eq!(t.poll_event(), Some(TxnEvent::Timeout));
}

#[test]
fn rfc3261_17_1_1_2_non_2xx_acked_timer_d_32s_udp_0_tcp() {
    for (reliable, d) in [(false, Duration::from_secs(32)), (true, Duration::ZERO)] {
        let now = Instant::now_for_tests();
        let req = request("INVITE", "z9hG4bK1");
        let mut c = ClientInvite::new(req.clone(), addr(UAS), reliable, Timers::default(), now);
        assert!(c.poll_transmit().is_some());
        c.handle_response(response(&req, 180), now + ms(100));
        assert_eq!(c.state(), ClientInviteState::Proceeding);
        assert!(matches!(c.poll_event(), Some(TxnEvent::Response(_))));
        // Proceeding: no retransmissions, no timer B.
        assert_eq!(c.poll_timeout(), None);
        let busy = response(&req, 486);
        c.handle_response(busy.clone(), now + ms(200));
        assert_eq!(c.state(), ClientInviteState::Completed);
        let ack = c.poll_transmit().unwrap();
        let ack = SipMessage::parse(ack.payload).unwrap();
        assert_eq!(ack.method(), Some(&crate::core::sip::Method::Ack));
        assert_eq!(ack.cseq().unwrap().seq, 7);
        assert_eq!(ack.to().unwrap().tag(), busy.to().unwrap().tag());
        assert_eq!(ack.routes().unwrap().len(), 1);
        assert_eq!(ack.top_via().unwrap(), req.top_via().unwrap());
        assert!(matches!(c.poll_event(), Some(TxnEvent::Response(_))));
        // Retransmitted 486: ACK again, nothing to the TU.
        c.handle_response(busy, now + ms(300));
        assert!(c.poll_transmit().is_some());
        assert_eq!(c.poll_event(), None);
        assert_eq!(c.poll_timeout(), Some(now + ms(200) + d));
        c.handle_timeout(now + ms(200) + d);
        assert!(c.is_terminated());
    }
}

#[test]
fn rfc3261_17_1_1_2_2xx_goes_to_tu_and_terminates() {
    let now = Instant::now_for_tests();
    let req = request("INVITE", "z9hG4bK1");
    let mut c = ClientInvite::new(req.clone(), addr(UAS), false, Timers::default(), now);
    c.handle_response(response(&req, 200), now + ms(10));
    assert!(
        matches!(c.poll_event(), Some(TxnEvent::Response(r)) if r.status() == Some(StatusCode::OK))
    );
    assert!(c.is_terminated());
}

#[test]
fn rfc3261_17_1_2_2_timer_e_capped_at_t2_f_at_64_t1_k_t4() {
    let now = Instant::now_for_tests();
    let req = request("OPTIONS", "z9hG4bK2");
    let mut t = Transaction::ClientNonInvite(ClientNonInvite::new(
        req.clone(),
        addr(UAS),
        false,
        Timers::default(),
        now,
    ));
    let sent = run(&mut t, now, now + Duration::from_secs(60));
    // 0, 0.5, 1.5, 3.5, then every T2 = 4 s: 7.5, 11.5, ... 31.5; F at 32 s.
    let mut expect: Vec<_> = [0, 500, 1500, 3500].map(ms).to_vec();
    expect.extend((0..7).map(|i| ms(7500 + 4000 * i)));
    assert_eq!(sent, expect);
    assert_eq!(t.poll_event(), Some(TxnEvent::Timeout));

    // Proceeding retransmits every T2; a final response starts K = T4 (UDP) / 0 (TCP).
    for (reliable, k) in [(false, Duration::from_secs(5)), (true, Duration::ZERO)] {
        let mut c = ClientNonInvite::new(req.clone(), addr(UAS), reliable, Timers::default(), now);
        c.handle_response(response(&req, 100), now + ms(100));
        assert_eq!(c.state(), ClientNonInviteState::Proceeding);
        if !reliable {
            c.handle_timeout(now + ms(500));
            assert_eq!(c.poll_timeout(), Some(now + ms(4500)));
        }
        c.handle_response(response(&req, 200), now + ms(1000));
        assert_eq!(c.state(), ClientNonInviteState::Completed);
        assert_eq!(c.poll_timeout(), Some(now + ms(1000) + k));
        c.handle_response(response(&req, 200), now + ms(1100));
        let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert_eq!(events.len(), 2, "100 and the first 200 only");
        c.handle_timeout(now + ms(1000) + k);
        assert!(c.is_terminated());
    }
}

#[test]
fn rfc3261_17_2_1_proxy_sends_100_trying_and_resends_it() {
    let now = Instant::now_for_tests();
    let req = request("INVITE", "z9hG4bK3");
    let mut tbl = TransactionTable::new(Timers::default());
    let RequestMatch::New(key) = tbl.handle_request(&req, now).unwrap() else {
        panic!("first INVITE is new");
    };
    tbl.start_server(&req, addr(UAC), false, true, now).unwrap();
    let trying = SipMessage::parse(tbl.poll_transmit().unwrap().payload).unwrap();
    assert_eq!(trying.status(), Some(StatusCode::TRYING));
    assert_eq!(
        tbl.handle_request(&req, now + ms(500)).unwrap(),
        RequestMatch::Absorbed(key.clone())
    );
    assert_eq!(
        tbl.poll_transmit().unwrap().payload,
        trying.as_bytes().clone()
    );
}

#[test]
fn rfc3261_17_2_1_final_retransmitted_g_h_and_ack_absorbed() {
    let now = Instant::now_for_tests();
    let req = request("INVITE", "z9hG4bK4");
    let mut tbl = TransactionTable::new(Timers::default());
    let key = tbl
        .start_server(&req, addr(UAC), false, false, now)
        .unwrap();
    let busy = response(&req, 486);
    tbl.send_response(&key, busy.clone(), now).unwrap();
    assert_eq!(
        tbl.poll_transmit().unwrap().payload,
        busy.as_bytes().clone()
    );
    // INVITE retransmission → final response retransmitted.
    tbl.handle_request(&req, now + ms(100)).unwrap();
    assert_eq!(
        tbl.poll_transmit().unwrap().payload,
        busy.as_bytes().clone()
    );
    // Timer G: 0.5, then 1, 2, 4, 4 ... (capped at T2).
    let mut fired = Vec::new();
    let mut t = now;
    while let Some(d) = tbl.poll_timeout() {
        if d > now + Duration::from_secs(10) {
            break;
        }
        t = d;
        tbl.handle_timeout(t);
        while tbl.poll_transmit().is_some() {
            fired.push(t - now);
        }
    }
    assert_eq!(fired, [500, 1500, 3500, 7500].map(ms).to_vec());
    // ACK for the non-2xx: absorbed, Confirmed, then I = T4 later gone.
    let ack_bytes = client_invite::build_ack(&req, &busy);
    let ack = SipMessage::parse(ack_bytes).unwrap();
    assert_eq!(
        tbl.handle_request(&ack, t).unwrap(),
        RequestMatch::Absorbed(key.clone())
    );
    assert!(
        tbl.poll_event().is_none(),
        "ACK for non-2xx never reaches the TU"
    );
    let Some(Transaction::ServerInvite(s)) = tbl.get(&key) else {
        panic!("still there");
    };
    assert_eq!(s.state(), ServerInviteState::Confirmed);
    assert_eq!(tbl.poll_timeout(), Some(t + Duration::from_secs(5)));
    // A retransmitted ACK is absorbed too.
    assert_eq!(
        tbl.handle_request(&ack, t + ms(1)).unwrap(),
        RequestMatch::Absorbed(key.clone())
    );
    tbl.handle_timeout(t + Duration::from_secs(5));
    assert!(tbl.is_empty());
}

#[test]
fn rfc3261_17_2_1_timer_h_without_ack_times_out() {
    let now = Instant::now_for_tests();
    let req = request("INVITE", "z9hG4bK5");
    let mut s = ServerInvite::new(&req, addr(UAC), true, Timers::default(), false, now);
    s.send_response(response(&req, 404), now).unwrap();
    // Reliable: no G, only H at 64·T1.
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(32)));
    s.handle_timeout(now + Duration::from_secs(32));
    assert_eq!(s.poll_event(), Some(TxnEvent::Timeout));
    assert!(s.is_terminated());
}

#[test]
fn rfc3261_17_2_1_i_is_zero_on_reliable() {
    let now = Instant::now_for_tests();
    let req = request("INVITE", "z9hG4bK5");
    let mut s = ServerInvite::new(&req, addr(UAC), true, Timers::default(), false, now);
    s.send_response(response(&req, 404), now).unwrap();
    assert!(s.handle_ack(now + ms(10)));
    assert_eq!(s.poll_timeout(), Some(now + ms(10)));
    s.handle_timeout(now + ms(10));
    assert!(s.is_terminated());
}

#[test]
fn rfc3261_16_7_2xx_terminates_and_its_ack_goes_to_the_tu() {
    let now = Instant::now_for_tests();
    let req = request("INVITE", "z9hG4bK6");
    let mut tbl = TransactionTable::new(Timers::default());
    let key = tbl
        .start_server(&req, addr(UAC), false, false, now)
        .unwrap();
    tbl.send_response(&key, response(&req, 200), now).unwrap();
    assert!(tbl.poll_transmit().is_some());
    assert!(
        tbl.is_empty(),
        "2xx terminates the INVITE server transaction"
    );
    // The ACK for the 2xx has a new branch (RFC 3261 §17.1.1.3); either way it is new.
    let ack = request("ACK", "z9hG4bK6ack");
    assert!(matches!(
        tbl.handle_request(&ack, now).unwrap(),
        RequestMatch::New(_)
    ));
    // Even with the INVITE's branch, a terminated transaction cannot absorb it.
    let ack = request("ACK", "z9hG4bK6");
    assert!(matches!(
        tbl.handle_request(&ack, now).unwrap(),
        RequestMatch::New(_)
    ));
}

#[test]
fn rfc3261_17_2_2_non_invite_server_j() {
    for (reliable, j) in [(false, Duration::from_secs(32)), (true, Duration::ZERO)] {
        let now = Instant::now_for_tests();
        let req = request("BYE", "z9hG4bK7");
        let mut tbl = TransactionTable::new(Timers::default());
        let key = tbl
            .start_server(&req, addr(UAC), reliable, true, now)
            .unwrap();
        assert!(
            tbl.poll_transmit().is_none(),
            "no automatic 100 for non-INVITE"
        );
        // Trying: retransmission absorbed silently.
        assert_eq!(
            tbl.handle_request(&req, now).unwrap(),
            RequestMatch::Absorbed(key.clone())
        );
        assert!(tbl.poll_transmit().is_none());
        let ok = response(&req, 200);
        tbl.send_response(&key, ok.clone(), now).unwrap();
        assert!(tbl.poll_transmit().is_some());
        tbl.handle_request(&req, now + ms(10)).unwrap();
        assert_eq!(tbl.poll_transmit().unwrap().payload, ok.as_bytes().clone());
        assert_eq!(tbl.poll_timeout(), Some(now + j));
        tbl.handle_timeout(now + j);
        assert!(tbl.is_empty());
    }
}

#[test]
fn rfc3261_9_2_cancel_matches_its_invite() {
    let now = Instant::now_for_tests();
    let invite = request("INVITE", "z9hG4bK8");
    let mut tbl = TransactionTable::new(Timers::default());
    let ikey = tbl
        .start_server(&invite, addr(UAC), false, true, now)
        .unwrap();
    let cancel = request("CANCEL", "z9hG4bK8");
    // CANCEL is its own transaction (different key) ...
    let RequestMatch::New(ckey) = tbl.handle_request(&cancel, now).unwrap() else {
        panic!("CANCEL is new");
    };
    assert_ne!(ckey, ikey);
    // ... that points at the INVITE.
    assert_eq!(tbl.cancel_target(&cancel), Some(ikey));
    assert_eq!(tbl.cancel_target(&request("CANCEL", "z9hG4bKother")), None);
}

#[test]
fn rfc3261_17_1_3_response_matching_by_branch_and_cseq_method() {
    let now = Instant::now_for_tests();
    let mut tbl = TransactionTable::new(Timers::default());
    let invite = request("INVITE", "z9hG4bK9");
    let key = tbl
        .start_client(invite.clone(), addr(UAS), false, now)
        .unwrap();
    assert_eq!(tbl.poll_transmit().unwrap().dest, addr(UAS));
    assert_eq!(
        tbl.handle_response(response(&invite, 180), now).unwrap(),
        ResponseMatch::Matched(key.clone())
    );
    assert!(matches!(tbl.poll_event(), Some((k, TxnEvent::Response(_))) if k == key));
    // Same branch, other CSeq method: a different transaction (none here).
    let cancel = request("CANCEL", "z9hG4bK9");
    assert!(matches!(
        tbl.handle_response(response(&cancel, 200), now).unwrap(),
        ResponseMatch::Stray(_)
    ));
    // 2xx terminates; its retransmission is stray and forwarded by the proxy.
    tbl.handle_response(response(&invite, 200), now).unwrap();
    assert!(tbl.is_empty());
    assert!(matches!(
        tbl.handle_response(response(&invite, 200), now).unwrap(),
        ResponseMatch::Stray(_)
    ));
}

#[test]
fn rfc3261_17_2_3_rfc2543_fallback_key() {
    let now = Instant::now_for_tests();
    let mut tbl = TransactionTable::new(Timers::default());
    let req = request("INVITE", "old-style-branch");
    let key = tbl
        .start_server(&req, addr(UAC), false, false, now)
        .unwrap();
    assert!(matches!(key, TransactionKey::Rfc2543 { cseq: 7, .. }));
    assert_eq!(
        tbl.handle_request(&req, now).unwrap(),
        RequestMatch::Absorbed(key)
    );
}

#[test]
fn rfc3261_17_1_4_transport_error_reported() {
    let now = Instant::now_for_tests();
    let mut tbl = TransactionTable::new(Timers::default());
    let key = tbl
        .start_client(request("OPTIONS", "z9hG4bKa"), addr(UAS), true, now)
        .unwrap();
    tbl.handle_transport_error(&key);
    assert_eq!(tbl.poll_event(), Some((key, TxnEvent::TransportError)));
    assert!(tbl.is_empty());
}

/// A fixed virtual epoch: tests never read the real clock for protocol timing.
trait TestClock {
    fn now_for_tests() -> Instant;
}

impl TestClock for Instant {
    #[allow(clippy::disallowed_methods)] // Only as the virtual clock's arbitrary origin.
    fn now_for_tests() -> Instant {
        Instant::now()
    }
}
