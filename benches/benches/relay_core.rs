//! `CallMedia::handle_datagram` per packet: the media core's cost of one 20 ms G.711 packet,
//! without sockets. Variants: relay only (no recorder: validation, latching, statistics,
//! forwarding decision); relay + tap (decode once, DTMF masking pipeline, tap frame out,
//! drained and dropped as the shell would hand it on); relay + tap + agent clamp
//! (`agent_dtmf = drop`, the live receiver on the PBX→agents leg as well); and, issue 14,
//! `relay_srtp` / `relay_tap_srtp`: the same as `relay_only` / `relay_tap` with SDES-SRTP
//! (`AES_CM_128_HMAC_SHA1_80`) terminated on both legs, so each packet is authenticated and
//! decrypted with the PBX's key (replay window checked) and re-encrypted toward the agents
//! with callmask's own key. `relay_only_1000_calls` / `relay_srtp_1000_calls` send the
//! packets round robin over 1,000 calls (distinct keys), so each finds its call's state and
//! SRTP contexts out of cache, as in a loaded relay.
//! The input packets (and, for SRTP, their protection with the PBX's key by `rtc-srtp`, the
//! crate the proxy uses) are made outside the timed routine (`iter_batched`), so only
//! `handle_datagram` and the tap drain are timed. Before timing, each variant's output is
//! checked once (SRTP: the agent decrypts it to the PBX's plaintext).
//! Criterion prints time per packet (`elem/s` = packets/s). Mode: speech masking off,
//! look-ahead 80 ms (the `MaskConfig` default).
// Virtual time: one clock read for the origin, then 20 ms steps per packet.
#![allow(clippy::disallowed_methods)]

mod common;

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callmask::core::media::{CallCommand, CallMedia, CallMeta, SocketId};
use callmask::core::proxy::{CallRef, Side, StreamSpec};
use callmask::core::relay::LocalPort;
use callmask::core::sdp::{SdesKey, SrtpLeg, SrtpSuite};
use callmask::core::side::BySide;
use callmask::metrics::Metrics;
use callmask_benches::{speech, FRAME};
use config::types::AgentDtmfMode;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rtc_srtp::context::Context;
use rtc_srtp::crypto::providers::RingProvider;
use rtc_srtp::crypto::RTCCryptoProvider as _;
use rtc_srtp::protection_profile::ProtectionProfile;

static PROVIDER: RingProvider = RingProvider::new();

/// A fixed test key of the suite, distinct per `seed` (the bench needs no randomness).
fn key(seed: u32) -> SdesKey {
    SdesKey::generate(SrtpSuite::AesCm128HmacSha1_80, |buf| {
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = (i as u8).wrapping_mul(37) ^ 0x5a);
        buf[..4].copy_from_slice(&seed.to_be_bytes());
        true
    })
    .expect("test key")
}

/// An `rtc-srtp` context for `k` (a peer's view of the leg: the PBX encrypts, the agent
/// decrypts).
fn peer(k: &SdesKey) -> Context {
    Context::new(
        k.key(),
        k.salt(),
        ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
        PROVIDER.crypto(),
    )
    .expect("SRTP context")
}

/// The keys of a call with SRTP on both legs: the PBX's and callmask's toward the PBX, the
/// agent's and callmask's toward the agent.
struct Keys {
    pbx: SdesKey,
    cm_pbx: SdesKey,
    agent: SdesKey,
    cm_agent: SdesKey,
}

/// Call `call`'s keys (distinct for every call).
fn keys(call: u32) -> Keys {
    Keys {
        pbx: key(call * 4 + 1),
        cm_pbx: key(call * 4 + 2),
        agent: key(call * 4 + 3),
        cm_agent: key(call * 4 + 4),
    }
}

fn spec(pbx: SocketAddr, agents: SocketAddr, srtp: Option<Keys>) -> StreamSpec {
    let plain = common::pcmu_spec(pbx, agents, 10_000, 20_000);
    match srtp {
        Some(k) => StreamSpec {
            srtp: BySide::new(
                Some(SrtpLeg {
                    rx: k.pbx,
                    tx: k.cm_pbx,
                }),
                Some(SrtpLeg {
                    rx: k.agent,
                    tx: k.cm_agent,
                }),
            ),
            ..plain
        },
        None => plain,
    }
}

fn media(
    tap: bool,
    agent_dtmf: AgentDtmfMode,
    srtp: Option<Keys>,
    pbx: SocketAddr,
    agents: SocketAddr,
) -> CallMedia {
    let metrics = Arc::new(Metrics::new());
    let stats = metrics.calls().new_call();
    let config = common::media_config(tap, agent_dtmf);
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
    m.handle_command(now, CallCommand::Spec(vec![spec(pbx, agents, srtp)]));
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
    for (name, tap, agent, srtp, ncalls) in [
        ("relay_only", false, AgentDtmfMode::Pass, false, 1),
        ("relay_tap", true, AgentDtmfMode::Pass, false, 1),
        ("relay_tap_agent_clamp", true, AgentDtmfMode::Drop, false, 1),
        ("relay_srtp", false, AgentDtmfMode::Pass, true, 1),
        ("relay_tap_srtp", true, AgentDtmfMode::Pass, true, 1),
        // Round robin over 1,000 calls (each its own keys and state): the working set of a
        // loaded relay, where each packet finds its call's state (and SRTP contexts) cold.
        (
            "relay_only_1000_calls",
            false,
            AgentDtmfMode::Pass,
            false,
            1000,
        ),
        (
            "relay_srtp_1000_calls",
            false,
            AgentDtmfMode::Pass,
            true,
            1000,
        ),
    ] {
        let mut calls: Vec<CallMedia> = (0..ncalls)
            .map(|c| media(tap, agent, srtp.then(|| keys(c)), pbx, agents))
            .collect();
        let payloads = &payloads;
        // Each call's PBX protects its packets with its key; its agent decrypts with
        // callmask's key toward it.
        let mut pbx_tx: Vec<Option<Context>> = (0..ncalls)
            .map(|c| srtp.then(|| peer(&keys(c).pbx)))
            .collect();
        let mut agent_rx: Vec<Context> = (0..ncalls).map(|c| peer(&keys(c).cm_agent)).collect();
        let t0 = Instant::now();
        let mut i: u32 = 0;
        // The next packet: calls in turn, each a continuous stream (sequence, timestamp,
        // payload, 20 ms apart); SRTP: protected as that call's PBX would send it.
        let mut next = move || {
            let (call, n) = ((i % ncalls) as usize, i / ncalls);
            let mut packet = vec![0x80u8, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
            packet[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            packet[4..8].copy_from_slice(&n.wrapping_mul(FRAME as u32).to_be_bytes());
            packet.extend_from_slice(&payloads[n as usize % payloads.len()]);
            let now = t0 + Duration::from_millis(u64::from(n) * 20);
            i = i.wrapping_add(1);
            let wire = match pbx_tx[call].as_mut() {
                Some(c) => c.encrypt_rtp(&packet).expect("PBX encrypts").to_vec(),
                None => packet.clone(),
            };
            (call, now, packet, wire)
        };
        // Check once per call what the variant relays: the agent gets the PBX's packet
        // (SRTP: under callmask's agents-side key, decrypted back to the PBX's plaintext).
        for _ in 0..ncalls {
            let (call, now, plain, wire) = next();
            let m = &mut calls[call];
            let out = m
                .handle_datagram(now, socket, pbx, &wire)
                .expect("relayed")
                .payload
                .to_vec();
            let got = if srtp {
                assert_eq!(out.len(), plain.len() + 10, "SRTP toward the agent");
                assert_ne!(
                    out[12..plain.len()],
                    plain[12..],
                    "encrypted toward the agent"
                );
                agent_rx[call]
                    .decrypt_rtp(&out)
                    .expect("the agent decrypts it")
                    .to_vec()
            } else {
                out
            };
            assert_eq!(got, plain, "{name}: relayed unchanged");
            while m.poll_tap().is_some() {}
        }
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let (call, now, _, wire) = next();
                    (call, now, wire)
                },
                |(call, now, wire)| {
                    let m = &mut calls[call];
                    let out = m.handle_datagram(now, socket, pbx, black_box(&wire));
                    black_box(out.map(|t| t.payload.len()));
                    while let Some(ev) = m.poll_tap() {
                        black_box(ev);
                    }
                    wire // dropped outside the timed routine
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(relay, benches);
criterion_main!(relay);
