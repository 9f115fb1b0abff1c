//! What the media-core benches share: one PCMU + telephone-event stream between fixed
//! addresses, and a media configuration (speech off, 80 ms look-ahead).

use std::net::SocketAddr;
use std::time::Duration;

use callmask::core::media::MediaConfig;
use callmask::core::ports::PortPair;
use callmask::core::proxy::StreamSpec;
use callmask::core::relay::{LatchConfig, PayloadType};
use callmask::core::sdp::Codec;
use config::types::AgentDtmfMode;
use dsp::mask::MaskConfig;

/// Stream 0: PCMU and telephone-event, callmask's ports `pbx_port` / `agents_port` (RTP,
/// even), the peers at `pbx` and `agents`, no SRTP.
pub(crate) fn pcmu_spec(
    pbx: SocketAddr,
    agents: SocketAddr,
    pbx_port: u16,
    agents_port: u16,
) -> StreamSpec {
    let codec = |pt: u8, name: &str| Codec {
        pt: PayloadType::try_from(pt).expect("static payload type"),
        name: name.into(),
        clock_rate: 8000,
        channels: None,
    };
    StreamSpec {
        index: 0,
        pbx_local: PortPair::from_rtp(pbx_port).expect("even port"),
        agents_local: PortPair::from_rtp(agents_port).expect("even port"),
        pbx_remote: Some(pbx),
        agents_remote: Some(agents),
        codecs: vec![codec(0, "PCMU"), codec(101, "telephone-event")],
        encrypted: false,
        srtp: Default::default(),
    }
}

/// The media configuration of a call: a recorder (`tap`) or not, the agent-leg clamp.
pub(crate) fn media_config(tap: bool, agent_dtmf: AgentDtmfMode) -> MediaConfig {
    MediaConfig {
        mask: MaskConfig::default(),
        latch: LatchConfig::default(),
        agent_dtmf,
        dtmf_trigger: None,
        dtmf_release: None,
        inactivity: Duration::from_secs(30),
        tap,
    }
}
