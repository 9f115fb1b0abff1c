//! Helpers shared by the tests that drive a `MediaHub` over real UDP sockets on 127.0.0.1
//! (`media_workers.rs`, `recorder_queue_full.rs`).

#![allow(dead_code)] // each test file uses its own subset

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::time::Duration;

use callmask::core::ports::PortPair;
use callmask::core::proxy::{CallRef, Side, StreamSpec};
use callmask::core::relay::{LatchConfig, PayloadType};
use callmask::core::sdp::Codec;
use callmask::io::media::{MediaHub, MediaSettings};
use config::types::AgentDtmfMode;
use dsp::mask::MaskConfig;
use tokio::net::UdpSocket;

/// An even port whose successor is free too, not handed out before (best effort: released
/// before use).
pub(crate) fn free_pair(taken: &mut Vec<u16>) -> PortPair {
    loop {
        let a = StdUdpSocket::bind("127.0.0.1:0").expect("bind");
        let p = a.local_addr().expect("local addr").port();
        if p % 2 != 0 || p == u16::MAX || taken.contains(&p) {
            continue;
        }
        if StdUdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            taken.push(p);
            return PortPair::from_rtp(p).expect("even port");
        }
    }
}

/// A 20 ms PCMU packet (µ-law silence) with sequence number `seq`.
pub(crate) fn pcmu(seq: u16, ssrc: u32) -> Vec<u8> {
    callmask::core::relay::rtp::RtpHeader {
        pt: 0,
        marker: false,
        seq,
        ts: u32::from(seq) * 160,
        ssrc,
    }
    .packet(&[0xff; 160])
}

/// Both sides on 127.0.0.1, DTMF masking at its defaults, no clamp, no trigger, no speech.
pub(crate) fn loopback_settings() -> MediaSettings {
    MediaSettings {
        pbx_bind: "127.0.0.1".parse().expect("ip"),
        agents_bind: "127.0.0.1".parse().expect("ip"),
        inactivity: Duration::from_secs(30),
        mask: MaskConfig::default(),
        latch: LatchConfig::default(),
        agent_dtmf: AgentDtmfMode::Pass,
        dtmf_trigger: None,
        dtmf_release: None,
        speech: None,
    }
}

/// One plain PCMU stream between the given local port pairs and remote addresses.
pub(crate) fn pcmu_stream(
    pbx_local: PortPair,
    agents_local: PortPair,
    pbx_remote: SocketAddr,
    agents_remote: SocketAddr,
) -> StreamSpec {
    StreamSpec {
        index: 0,
        pbx_local,
        agents_local,
        pbx_remote: Some(pbx_remote),
        agents_remote: Some(agents_remote),
        codecs: vec![Codec {
            pt: PayloadType::PCMU,
            name: "PCMU".into(),
            clock_rate: 8000,
            channels: None,
        }],
        encrypted: false,
        srtp: Default::default(),
    }
}

/// The two phones of a call placed by [`start_pcmu_call`], and where the PBX phone sends.
pub(crate) struct Phones {
    pub(crate) pbx: UdpSocket,
    pub(crate) agent: UdpSocket,
    /// callmask's RTP port on the PBX side.
    pub(crate) to_pbx_side: SocketAddr,
}

/// Start `call` on `hub` (caller on the PBX side) with one PCMU stream between two fresh
/// phone sockets on 127.0.0.1 and port pairs not in `taken`.
pub(crate) async fn start_pcmu_call(
    hub: &mut MediaHub,
    call: CallRef,
    taken: &mut Vec<u16>,
) -> Phones {
    let pbx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let agent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let (pbx_local, agents_local) = (free_pair(taken), free_pair(taken));
    hub.call_started(call, Side::Pbx, Default::default());
    hub.upsert(
        call,
        vec![pcmu_stream(
            pbx_local,
            agents_local,
            pbx.local_addr().expect("local addr"),
            agent.local_addr().expect("local addr"),
        )],
    );
    Phones {
        pbx,
        agent,
        to_pbx_side: SocketAddr::from(([127, 0, 0, 1], pbx_local.rtp())),
    }
}
