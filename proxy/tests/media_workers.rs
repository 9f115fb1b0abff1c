//! Two media workers: calls are split between them, each call relays on its own worker with
//! real UDP sockets on 127.0.0.1, and a worker's count drops when its calls end.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod media_common;

use std::sync::Arc;
use std::time::Duration;

use callmask::core::proxy::CallRef;
use callmask::io::calls::CallTable;
use callmask::io::media::MediaHub;
use callmask::io::media_workers::MediaWorkers;
use callmask::metrics::Metrics;
use media_common::{loopback_settings, pcmu as rtp, start_pcmu_call};
use tokio::sync::mpsc;

#[tokio::test]
async fn two_workers_split_calls_and_each_relays_on_its_own() {
    let workers = Arc::new(MediaWorkers::start(2).unwrap());
    let settings = loopback_settings();
    let (timeouts, _timeouts_rx) = mpsc::unbounded_channel();
    let mut hub = MediaHub::new(
        settings,
        Arc::new(Metrics::new()),
        None,
        timeouts,
        Arc::new(CallTable::new()),
    )
    .with_workers(workers.clone());
    let mut taken = Vec::new();
    let mut legs = Vec::new();
    for c in 0..4u64 {
        legs.push(start_pcmu_call(&mut hub, CallRef(c), &mut taken).await);
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
