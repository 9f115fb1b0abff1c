//! Two media workers: calls are split between them, each call relays on its own worker with
//! real UDP sockets on 127.0.0.1, and a worker's count drops when its calls end.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use callmask::core::ports::PortPair;
use callmask::core::proxy::{CallRef, Side, StreamSpec};
use callmask::core::relay::{LatchConfig, PayloadType};
use callmask::core::sdp::Codec;
use callmask::io::calls::CallTable;
use callmask::io::media::{MediaHub, MediaSettings};
use callmask::io::media_workers::MediaWorkers;
use callmask::metrics::Metrics;
use config::types::AgentDtmfMode;
use dsp::mask::MaskConfig;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// An even port whose successor is free too, not handed out before (best effort: released
/// before use).
fn free_pair(taken: &mut Vec<u16>) -> PortPair {
    loop {
        let a = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p % 2 != 0 || p == u16::MAX || taken.contains(&p) {
            continue;
        }
        if StdUdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            taken.push(p);
            return PortPair::from_rtp(p).unwrap();
        }
    }
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    callmask::core::relay::rtp::RtpHeader {
        pt: 0,
        marker: false,
        seq,
        ts: u32::from(seq) * 160,
        ssrc,
    }
    .packet(&[0xff; 160])
}

struct Leg {
    pbx: UdpSocket,
    agent: UdpSocket,
    to_pbx_side: SocketAddr,
}

#[tokio::test]
async fn two_workers_split_calls_and_each_relays_on_its_own() {
    let workers = Arc::new(MediaWorkers::start(2).unwrap());
    let settings = MediaSettings {
        pbx_bind: "127.0.0.1".parse().unwrap(),
        agents_bind: "127.0.0.1".parse().unwrap(),
        inactivity: Duration::from_secs(30),
        mask: MaskConfig::default(),
        latch: LatchConfig::default(),
        agent_dtmf: AgentDtmfMode::Pass,
        dtmf_trigger: None,
        dtmf_release: None,
        speech: None,
    };
    let (timeouts, _timeouts_rx) = mpsc::unbounded_channel();
    let mut hub = MediaHub::new(
        settings,
        Arc::new(Metrics::new()),
        None,
        timeouts,
        Arc::new(CallTable::new()),
    )
    .with_workers(workers.clone());
    let codec = Codec {
        pt: PayloadType::PCMU,
        name: "PCMU".into(),
        clock_rate: 8000,
        channels: None,
    };
    let mut taken = Vec::new();
    let mut legs = Vec::new();
    for c in 0..4u64 {
        let call = CallRef(c);
        let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (pbx_local, agents_local) = (free_pair(&mut taken), free_pair(&mut taken));
        hub.call_started(call, Side::Pbx, Default::default());
        hub.upsert(
            call,
            vec![StreamSpec {
                index: 0,
                pbx_local,
                agents_local,
                pbx_remote: Some(pbx.local_addr().unwrap()),
                agents_remote: Some(agent.local_addr().unwrap()),
                codecs: vec![codec.clone()],
                encrypted: false,
                srtp: Default::default(),
            }],
        );
        legs.push(Leg {
            pbx,
            agent,
            to_pbx_side: SocketAddr::from(([127, 0, 0, 1], pbx_local.rtp())),
        });
    }
    assert_eq!(hub.worker_loads(), vec![2, 2], "least-loaded placement");
    // Let the workers bind the calls' sockets.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (c, leg) in legs.iter().enumerate() {
        let ssrc = 0x1000 + c as u32;
        for seq in 0..5u16 {
            leg.pbx
                .send_to(&rtp(seq, ssrc), leg.to_pbx_side)
                .await
                .unwrap();
        }
    }
    for (c, leg) in legs.iter().enumerate() {
        let mut buf = [0u8; 512];
        for seq in 0..5u16 {
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(2), leg.agent.recv_from(&mut buf))
                    .await
                    .expect("relayed within 2 s")
                    .unwrap();
            assert_eq!(
                &buf[..n],
                rtp(seq, 0x1000 + c as u32).as_slice(),
                "call {c}"
            );
        }
    }
    // Calls end: their tasks return and the workers' counts drop.
    for c in 0..4u64 {
        hub.call_ended(CallRef(c));
    }
    let mut loads = hub.worker_loads();
    for _ in 0..100 {
        if loads == vec![0, 0] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        loads = hub.worker_loads();
    }
    assert_eq!(loads, vec![0, 0]);
    // A new call goes to a now-empty worker.
    assert_eq!(workers.spawn_call(async {}), 0);
}
