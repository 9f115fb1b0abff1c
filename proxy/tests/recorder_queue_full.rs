//! A recorder that falls behind loses audio (counted), never a call's start, its masked spans
//! or its end: with the recorder queue full for the whole call, the events that open and
//! close the recording still arrive, in order, once the recorder reads again.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use callmask::core::media::TapEvent;
use callmask::core::ports::PortPair;
use callmask::core::proxy::{CallRef, Side, StreamSpec};
use callmask::core::relay::{LatchConfig, PayloadType};
use callmask::core::sdp::Codec;
use callmask::io::calls::CallTable;
use callmask::io::media::{MediaHub, MediaSettings};
use callmask::metrics::Metrics;
use config::types::AgentDtmfMode;
use dsp::mask::MaskConfig;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

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

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

#[tokio::test]
async fn a_full_recorder_queue_drops_audio_but_keeps_start_and_end() {
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
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut taken = Vec::new();
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
            codecs: vec![Codec {
                pt: PayloadType::PCMU,
                name: "PCMU".into(),
                clock_rate: 8000,
                channels: None,
            }],
            encrypted: false,
            srtp: Default::default(),
        }],
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let to = SocketAddr::from(([127, 0, 0, 1], pbx_local.rtp()));
    let mut buf = [0u8; 512];
    for seq in 0..50u16 {
        pbx.send_to(&rtp(seq), to).await.unwrap();
        // Relayed live whatever the recorder does.
        tokio::time::timeout(Duration::from_secs(2), agent.recv_from(&mut buf))
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
