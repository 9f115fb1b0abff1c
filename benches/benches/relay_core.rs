//! `CallMedia::handle_datagram` per packet: the media core's cost of one 20 ms G.711 packet,
//! without sockets. Variants: relay only (no recorder: validation, latching, statistics,
//! forwarding decision); relay + tap (decode once, DTMF masking pipeline, tap frame out,
//! drained and dropped as the shell would hand it on); relay + tap + agent clamp
//! (`agent_dtmf = drop`, the live receiver on the PBX→agents leg as well).
//! Criterion prints time per packet (`elem/s` = packets/s). Mode: speech masking off,
//! look-ahead 80 ms (the `MaskConfig` default).
// Virtual time: one clock read for the origin, then 20 ms steps per packet.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callmask::core::media::{CallCommand, CallMedia, CallMeta, MediaConfig, SocketId};
use callmask::core::ports::PortPair;
use callmask::core::proxy::{CallRef, Side, StreamSpec};
use callmask::core::relay::{LatchConfig, LocalPort, PayloadType};
use callmask::core::sdp::Codec;
use callmask::metrics::Metrics;
use callmask_benches::{speech, FRAME};
use config::types::AgentDtmfMode;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsp::mask::MaskConfig;

fn spec(pbx: SocketAddr, agents: SocketAddr) -> StreamSpec {
    let codec = |pt: u8, name: &str| Codec {
        pt: PayloadType::try_from(pt).expect("static payload type"),
        name: name.into(),
        clock_rate: 8000,
        channels: None,
    };
    StreamSpec {
        index: 0,
        pbx_local: PortPair::from_rtp(10_000).expect("even port"),
        agents_local: PortPair::from_rtp(20_000).expect("even port"),
        pbx_remote: Some(pbx),
        agents_remote: Some(agents),
        codecs: vec![codec(0, "PCMU"), codec(101, "telephone-event")],
        encrypted: false,
        srtp: Default::default(),
    }
}

fn media(tap: bool, agent_dtmf: AgentDtmfMode, pbx: SocketAddr, agents: SocketAddr) -> CallMedia {
    let metrics = Arc::new(Metrics::new());
    let stats = metrics.calls().new_call();
    let config = MediaConfig {
        mask: MaskConfig::default(),
        latch: LatchConfig::default(),
        agent_dtmf,
        dtmf_trigger: None,
        dtmf_release: None,
        inactivity: Duration::from_secs(30),
        tap,
    };
    let now = Instant::now();
    let mut m = CallMedia::new(
        CallRef(1),
        config,
        Side::Pbx,
        CallMeta::default(),
        metrics,
        stats,
        now,
    );
    m.handle_command(now, CallCommand::Spec(vec![spec(pbx, agents)]));
    while m.poll_event().is_some() {}
    m
}

fn benches(c: &mut Criterion) {
    let input = speech();
    eprintln!("relay_core input: {}", input.source);
    let payloads: Vec<[u8; FRAME]> = input
        .frames
        .iter()
        .map(|f| {
            let mut b = [0u8; FRAME];
            dsp::g711::encode_ulaw(f, &mut b);
            b
        })
        .collect();
    let pbx: SocketAddr = "127.0.0.1:40000".parse().expect("literal");
    let agents: SocketAddr = "127.0.0.1:50000".parse().expect("literal");
    let socket = SocketId {
        stream: 0,
        side: Side::Pbx,
        port: LocalPort::Rtp,
    };

    let mut group = c.benchmark_group("relay_core");
    group.throughput(Throughput::Elements(1));
    for (name, tap, agent) in [
        ("relay_only", false, AgentDtmfMode::Pass),
        ("relay_tap", true, AgentDtmfMode::Pass),
        ("relay_tap_agent_clamp", true, AgentDtmfMode::Drop),
    ] {
        let mut m = media(tap, agent, pbx, agents);
        let t0 = Instant::now();
        let mut packet = vec![0x80u8, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
        packet.extend_from_slice(&[0xff; FRAME]);
        let mut i: u32 = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                // The next packet of a continuous stream: sequence, timestamp and payload.
                packet[2..4].copy_from_slice(&(i as u16).to_be_bytes());
                packet[4..8].copy_from_slice(&i.wrapping_mul(FRAME as u32).to_be_bytes());
                packet[12..].copy_from_slice(&payloads[i as usize % payloads.len()]);
                let now = t0 + Duration::from_millis(u64::from(i) * 20);
                let out = m.handle_datagram(now, socket, pbx, black_box(&packet));
                black_box(out.map(|t| t.payload.len()));
                while let Some(ev) = m.poll_tap() {
                    black_box(ev);
                }
                i = i.wrapping_add(1);
            });
        });
    }
    group.finish();
}

criterion_group!(relay, benches);
criterion_main!(relay);
