//! A recorder that falls behind loses audio (counted), never a call's start, its masked spans
//! or its end: with the recorder queue full for the whole call, the events that open and
//! close the recording still arrive, in order, once the recorder reads again.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

mod media_common;

use std::sync::Arc;
use std::time::Duration;

use callmask::core::media::TapEvent;
use callmask::core::proxy::CallRef;
use callmask::io::calls::CallTable;
use callmask::io::media::MediaHub;
use callmask::metrics::Metrics;
use media_common::{loopback_settings, pcmu, start_pcmu_call};
use tokio::sync::mpsc;

#[tokio::test]
async fn a_full_recorder_queue_drops_audio_but_keeps_start_and_end() {
    let settings = loopback_settings();
    // Room for one event, and nobody reads until the call is over.
    let (tap, mut tap_rx) = mpsc::channel(1);
    let (timeouts, _timeouts_rx) = mpsc::unbounded_channel();
    let mut hub = MediaHub::new(
        settings,
        Arc::new(Metrics::new()),
        Some(tap),
        timeouts,
        Arc::new(CallTable::new()),
    );
    let call = CallRef(7);
    let phones = start_pcmu_call(&mut hub, call, &mut Vec::new()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut buf = [0u8; 512];
    for seq in 0..50u16 {
        phones
            .pbx
            .send_to(&pcmu(seq, 0x1234_5678), phones.to_pbx_side)
            .await
            .unwrap();
        // Relayed live whatever the recorder does.
        tokio::time::timeout(Duration::from_secs(2), phones.agent.recv_from(&mut buf))
            .await
            .expect("relayed within 2 s")
            .unwrap();
    }
    hub.call_ended(call);
    let mut kinds = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tap_rx.recv()).await {
            Ok(Some(ev)) => {
                let k = match ev {
                    TapEvent::Start { .. } => "start",
                    TapEvent::Frame(_) => "frame",
                    TapEvent::End { .. } => "end",
                    _ => "other",
                };
                kinds.push(k);
                if k == "end" {
                    break;
                }
            }
            Ok(None) => break,
            Err(_) => panic!("no end event within 5 s after the call: {kinds:?}"),
        }
    }
    assert_eq!(kinds.first(), Some(&"start"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{kinds:?}");
    assert!(
        kinds.iter().filter(|&&k| k == "frame").count() < 50,
        "audio was dropped while the queue was full: {kinds:?}"
    );
}
