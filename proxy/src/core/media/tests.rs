//! Virtual-clock tests of [`CallMedia`]: RTP bytes in, forwarded bytes and tap events out.
//! No sockets, no sleeping; `now` is a base instant plus the packet's nominal send time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use config::types::{AgentDtmfMode, DtmfSequence};
use dsp::mask::{MaskConfig, MaskReason};

use super::*;
use crate::core::ports::PortPair;
use crate::core::relay::PayloadType;
use crate::core::sdp::Codec;
use crate::metrics::Metrics;

const TEL: u8 = 101;
const FRAME: usize = 160;
const PBX_SSRC: u32 = 0x1111_0000;
const AGENT_SSRC: u32 = 0x2222_0000;

fn pbx_addr() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn agent_addr() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

fn codec(pt: u8, name: &str) -> Codec {
    Codec {
        pt: PayloadType::try_from(pt).unwrap(),
        name: name.into(),
        clock_rate: 8000,
        channels: None,
    }
}

fn spec() -> StreamSpec {
    StreamSpec {
        index: 0,
        pbx_local: PortPair::from_rtp(10_000).unwrap(),
        agents_local: PortPair::from_rtp(20_000).unwrap(),
        pbx_remote: Some(pbx_addr()),
        agents_remote: Some(agent_addr()),
        codecs: vec![codec(0, "PCMU"), codec(TEL, "telephone-event")],
        encrypted: false,
        srtp: Default::default(),
    }
}

fn config() -> MediaConfig {
    MediaConfig {
        mask: MaskConfig::default(),
        latch: LatchConfig::default(),
        agent_dtmf: AgentDtmfMode::Pass,
        dtmf_trigger: None,
        dtmf_release: None,
        inactivity: Duration::from_secs(30),
        tap: true,
    }
}

fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    crate::core::relay::rtp::RtpHeader {
        pt,
        marker,
        seq,
        ts,
        ssrc,
    }
    .packet(payload)
}

/// One RFC 4733 report (§2.3).
fn event(code: u8, end: bool, duration: u16) -> [u8; 4] {
    let [d0, d1] = duration.to_be_bytes();
    [code, if end { 0x80 } else { 0 } | 10, d0, d1]
}

/// `n` samples of DTMF `digit` (row, column Hz) at about −7 dBm0 per tone, µ-law.
fn tone_ulaw(row: f32, col: f32, n: usize, phase0: usize) -> Vec<u8> {
    (phase0..phase0 + n)
        .map(|i| {
            let t = i as f32 / 8000.0;
            let s = 7000.0 * (std::f32::consts::TAU * row * t).sin()
                + 7000.0 * (std::f32::consts::TAU * col * t).sin();
            dsp::g711::linear_to_ulaw(s as i16)
        })
        .collect()
}

/// A quiet non-DTMF signal (so "muted" is distinguishable from "passed").
fn voice_ulaw(n: usize, phase0: usize) -> Vec<u8> {
    (phase0..phase0 + n)
        .map(|i| {
            let t = i as f32 / 8000.0;
            dsp::g711::linear_to_ulaw((3000.0 * (std::f32::consts::TAU * 300.0 * t).sin()) as i16)
        })
        .collect()
}

/// The origin of virtual time. Any `Instant` works; only offsets from it matter.
#[allow(clippy::disallowed_methods)] // The one clock read: an arbitrary origin, never a timer.
fn virtual_origin() -> Instant {
    Instant::now()
}

struct Rig {
    media: CallMedia,
    t0: Instant,
}

/// What one datagram produced: the forwarded copy, if any.
#[derive(Debug)]
struct Out {
    socket: SocketId,
    dst: SocketAddr,
    bytes: Vec<u8>,
}

impl Rig {
    fn new(config: MediaConfig, caller: Side) -> Rig {
        let t0 = virtual_origin();
        let metrics = Arc::new(Metrics::new());
        let stats = metrics.calls().new_call();
        let mut media = CallMedia::new(
            CallRef(1),
            config,
            caller,
            // As the shell does: the first SDP's codec in use (`codecs_in_use`).
            CallMeta {
                codecs: vec!["PCMU".into()],
                ..CallMeta::default()
            },
            metrics,
            stats,
            t0,
        );
        media.handle_command(t0, CallCommand::Spec(vec![spec()]));
        Rig { media, t0 }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn send_on(&mut self, ms: u64, side: Side, port: LocalPort, data: &[u8]) -> Option<Out> {
        let src = match side {
            Side::Pbx => pbx_addr(),
            Side::Agents => agent_addr(),
        };
        let src = match port {
            LocalPort::Rtp => src,
            LocalPort::Rtcp => SocketAddr::new(src.ip(), src.port() + 1),
        };
        let now = self.at(ms);
        let socket = SocketId {
            stream: 0,
            side,
            port,
        };
        self.media
            .handle_datagram(now, socket, src, data)
            .map(|t| Out {
                socket: t.socket,
                dst: t.dst,
                bytes: t.payload.to_vec(),
            })
    }

    fn send(&mut self, ms: u64, side: Side, data: &[u8]) -> Option<Out> {
        self.send_on(ms, side, LocalPort::Rtp, data)
    }

    /// PBX-side audio packet number `i` (20 ms each), timestamps from `ts0`.
    fn pbx_audio(&mut self, i: u32, ts0: u32, payload: &[u8]) -> Option<Out> {
        let pkt = rtp(
            0,
            false,
            i as u16,
            ts0.wrapping_add(i * 160),
            PBX_SSRC,
            payload,
        );
        self.send(u64::from(i) * 20, Side::Pbx, &pkt)
    }

    fn events(&mut self) -> Vec<MediaEvent> {
        std::iter::from_fn(|| self.media.poll_event()).collect()
    }

    fn taps(&mut self) -> Vec<TapEvent> {
        std::iter::from_fn(|| self.media.poll_tap()).collect()
    }
}

/// The tap frames of `side` joined, checking they are contiguous from media time 0.
fn audio_of(taps: &[TapEvent], side: Side) -> Vec<i16> {
    let mut out = Vec::new();
    for ev in taps {
        if let TapEvent::Frame(f) = ev {
            if f.from == side {
                assert_eq!(
                    f.media_time.0,
                    out.len() as u64,
                    "tap frames are contiguous"
                );
                out.extend_from_slice(f.samples());
            }
        }
    }
    out
}

fn spans_of(taps: &[TapEvent], side: Side) -> Vec<(u64, u64, MaskReason)> {
    taps.iter()
        .filter_map(|ev| match ev {
            TapEvent::Span {
                from,
                start,
                end,
                reason,
                ..
            } if *from == side => Some((start.0, end.0, *reason)),
            _ => None,
        })
        .collect()
}

fn energy(s: &[i16]) -> f64 {
    s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64
}

/// Issue 12 item 9: the sidecar's `codecs` is the codec the answer chose, not the offer.
#[test]
fn the_answer_names_the_codec_in_use() {
    let offer = StreamSpec {
        codecs: vec![
            codec(9, "G722"),
            codec(0, "PCMU"),
            codec(8, "PCMA"),
            codec(TEL, "telephone-event"),
        ],
        ..spec()
    };
    assert_eq!(codecs_in_use([&offer]), ["G722"]);
    let answer = StreamSpec {
        codecs: vec![codec(TEL, "telephone-event"), codec(8, "PCMA")],
        ..spec()
    };
    assert_eq!(codecs_in_use([&answer]), ["PCMA"]);
    let mut r = Rig::new(config(), Side::Pbx);
    let _ = r.taps();
    r.media.handle_command(r.t0, CallCommand::Spec(vec![offer]));
    r.media
        .handle_command(r.t0, CallCommand::Spec(vec![answer.clone()]));
    let codecs: Vec<_> = r
        .taps()
        .into_iter()
        .filter_map(|ev| match ev {
            TapEvent::Codecs { codecs, .. } => Some(codecs),
            _ => None,
        })
        .collect();
    assert_eq!(
        codecs.last().map(Vec::as_slice),
        Some(&["PCMA".to_string()][..])
    );
    // The same answer again (a retransmitted 200's SDP) says nothing new.
    r.media
        .handle_command(r.t0, CallCommand::Spec(vec![answer]));
    assert!(!r
        .taps()
        .iter()
        .any(|ev| matches!(ev, TapEvent::Codecs { .. })));
}

#[test]
fn a_new_stream_asks_for_its_sockets_and_the_tap_starts() {
    let mut r = Rig::new(config(), Side::Pbx);
    assert_eq!(
        r.events(),
        vec![MediaEvent::StreamAdded {
            stream: 0,
            pbx: PortPair::from_rtp(10_000).unwrap(),
            agents: PortPair::from_rtp(20_000).unwrap(),
        }]
    );
    assert!(matches!(r.taps().as_slice(), [TapEvent::Start { .. }]));
    // A second SDP for the same stream adds nothing.
    r.media
        .handle_command(r.t0, CallCommand::Spec(vec![spec()]));
    assert!(r.events().is_empty());
}

/// The tap backlog tells a shell what it may leave queued: audio frames only, or an event
/// that must go at once (the shell batches frames, never the rest).
#[test]
fn the_tap_backlog_counts_events_and_says_whether_they_are_all_frames() {
    let mut r = Rig::new(config(), Side::Pbx);
    assert_eq!(r.media.tap_backlog(), (1, false), "the Start");
    r.taps();
    assert_eq!(r.media.tap_backlog(), (0, true));
    let voice = voice_ulaw(160, 0);
    // Past the 80 ms look-ahead: frames come out.
    for i in 0..12 {
        r.pbx_audio(i, 1000, &voice);
    }
    let (n, frames_only) = r.media.tap_backlog();
    assert!(n >= 5 && frames_only, "{n} {frames_only}");
    assert_eq!(r.taps().len(), n);
    r.media.finish(Some(r.at(300)));
    let (n, frames_only) = r.media.tap_backlog();
    assert!(n >= 1 && !frames_only, "the End is queued");
}

#[test]
fn relays_rtp_and_rtcp_byte_for_byte_to_the_other_side() {
    let mut r = Rig::new(config(), Side::Pbx);
    let pkt = rtp(0, true, 1, 1000, PBX_SSRC, &voice_ulaw(FRAME, 0));
    let out = r.send(0, Side::Pbx, &pkt).unwrap();
    assert_eq!(out.bytes, pkt);
    assert_eq!(out.dst, agent_addr());
    assert_eq!(
        out.socket,
        SocketId {
            stream: 0,
            side: Side::Agents,
            port: LocalPort::Rtp
        }
    );
    let back = rtp(0, false, 9, 5000, AGENT_SSRC, &voice_ulaw(FRAME, 0));
    assert_eq!(r.send(0, Side::Agents, &back).unwrap().dst, pbx_addr());
    // RTCP receiver report (PT 201, no blocks) on the RTCP port → the other side's RTCP.
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
    let out = r.send_on(5, Side::Pbx, LocalPort::Rtcp, &rr).unwrap();
    assert_eq!(out.bytes, rr);
    assert_eq!(out.socket.port, LocalPort::Rtcp);
    assert_eq!(
        out.dst,
        SocketAddr::new(agent_addr().ip(), agent_addr().port() + 1)
    );
}

#[test]
fn malformed_and_foreign_datagrams_are_dropped_never_forwarded() {
    let mut r = Rig::new(config(), Side::Pbx);
    assert!(r.send(0, Side::Pbx, &[0x80, 0, 1]).is_none());
    assert!(r.send(0, Side::Pbx, &[0x40; 20]).is_none(), "version 1");
    let mut padded = rtp(0, false, 1, 0, PBX_SSRC, &[0xff; 4]);
    padded[0] |= 0x20;
    *padded.last_mut().unwrap() = 200; // padding longer than the packet
    assert!(r.send(0, Side::Pbx, &padded).is_none());
    // A datagram for a stream the call does not have.
    let socket = SocketId {
        stream: 3,
        side: Side::Pbx,
        port: LocalPort::Rtp,
    };
    let ok = rtp(0, false, 1, 0, PBX_SSRC, &[0xff; 160]);
    assert!(r
        .media
        .handle_datagram(r.t0, socket, pbx_addr(), &ok)
        .is_none());
    let drops = r.media.leg(0, Side::Pbx).unwrap().drops.total();
    assert_eq!(drops, 3);
}

#[test]
fn recorder_path_fills_gaps_and_skips_late_packets_keeping_time() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.taps();
    let ts0 = 0xffff_ff00; // wraps during the call
    let voice = voice_ulaw(FRAME, 0);
    // Packets 0, 1, 3 (2 is late: after 4), 4, then 2, then 5..10 with 7, 8 lost.
    for i in [0u32, 1, 3, 4, 2, 5, 6, 9, 10] {
        let out = r.pbx_audio(i, ts0, &voice);
        assert!(out.is_some(), "late packets are still relayed live");
    }
    r.media.finish(None);
    let taps = r.taps();
    let pcm = audio_of(&taps, Side::Pbx);
    // 11 packets' worth of time: the gaps are filled, the late packet is not added.
    assert_eq!(pcm.len(), 11 * FRAME);
    // Packet 2's slot was filled with silence (it arrived after packet 3 had been pushed)...
    assert_eq!(energy(&pcm[2 * FRAME..3 * FRAME]), 0.0);
    // ...and so were the lost 7 and 8; the packets around carry audio.
    assert_eq!(energy(&pcm[7 * FRAME..9 * FRAME]), 0.0);
    assert!(energy(&pcm[9 * FRAME..10 * FRAME]) > 1e5);
    assert!(energy(&pcm[3 * FRAME..4 * FRAME]) > 1e5);
    assert!(matches!(taps.last(), Some(TapEvent::End { .. })));
}

#[test]
fn a_long_gap_is_capped_not_written_out() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.taps();
    let voice = voice_ulaw(FRAME, 0);
    r.pbx_audio(0, 0, &voice);
    // One minute later (hold): the recorder path fills at most MAX_GAP_FILL_MS.
    let later = rtp(0, false, 1, 60 * 8000, PBX_SSRC, &voice);
    r.send(60_000, Side::Pbx, &later);
    r.pbx_audio(2, 60 * 8000 - 160, &voice); // next packet after the jump (seq 2, +160)
    r.media.finish(None);
    let pcm = audio_of(&r.taps(), Side::Pbx);
    let max_gap = MAX_GAP_FILL_MS as usize * 8;
    assert_eq!(pcm.len(), FRAME + max_gap + 2 * FRAME);
}

#[test]
fn an_ssrc_change_continues_the_recording_without_a_hole() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.taps();
    let voice = voice_ulaw(FRAME, 0);
    for i in 0..5 {
        r.pbx_audio(i, 50_000, &voice);
    }
    // The PBX re-INVITEs / switches its media source: new SSRC, timestamps far *behind*.
    for i in 0..5u32 {
        let pkt = rtp(0, false, 700 + i as u16, 10 + i * 160, 0x9999, &voice);
        assert!(r.send(100 + u64::from(i) * 20, Side::Pbx, &pkt).is_some());
    }
    r.media.finish(None);
    let pcm = audio_of(&r.taps(), Side::Pbx);
    assert_eq!(pcm.len(), 10 * FRAME, "both sources recorded, back to back");
    assert!(energy(&pcm[7 * FRAME..8 * FRAME]) > 1e5);
}

#[test]
fn a_timestamp_restart_on_the_same_ssrc_is_not_taken_for_late_packets() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.taps();
    let voice = voice_ulaw(FRAME, 0);
    for i in 0..5 {
        r.pbx_audio(i, 1_000_000, &voice);
    }
    // Same SSRC, timestamps 100 s back: a restart, not 5000 late packets.
    for i in 0..5u32 {
        let pkt = rtp(0, false, 5 + i as u16, 200_000 + i * 160, PBX_SSRC, &voice);
        r.send(100 + u64::from(i) * 20, Side::Pbx, &pkt);
    }
    // A packet only 40 ms late (reordering) is skipped, not a restart.
    let late = rtp(0, false, 7, 200_000 + 160, PBX_SSRC, &voice);
    r.send(200, Side::Pbx, &late);
    r.media.finish(None);
    let pcm = audio_of(&r.taps(), Side::Pbx);
    assert_eq!(pcm.len(), 10 * FRAME);
}

#[test]
fn rfc4733_event_is_masked_on_the_recorder_path_and_relayed_live() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.taps();
    let voice = voice_ulaw(FRAME, 0);
    for i in 0..10 {
        r.pbx_audio(i, 0, &voice);
    }
    // Event '5' from ts 1600 (packet 10), 3 updates then 3 end reports (§2.5.1.4).
    for (k, (dur, end)) in [
        (160, false),
        (320, false),
        (480, false),
        (640, true),
        (640, true),
        (640, true),
    ]
    .into_iter()
    .enumerate()
    {
        let pkt = rtp(
            TEL,
            k == 0,
            100 + k as u16,
            1600,
            PBX_SSRC,
            &event(5, end, dur),
        );
        let out = r.send(200 + k as u64 * 20, Side::Pbx, &pkt).unwrap();
        assert_eq!(out.bytes, pkt, "pass mode relays events untouched");
    }
    for i in 14..30 {
        r.pbx_audio(i, 0, &voice);
    }
    r.media.finish(None);
    let taps = r.taps();
    let spans = spans_of(&taps, Side::Pbx);
    assert_eq!(spans.len(), 1, "three end reports make one span: {spans:?}");
    let (start, end, reason) = spans[0];
    assert_eq!(reason, MaskReason::Rfc4733);
    assert!(start <= 1600 && end >= 1600 + 640, "{start}..{end}");
    let pcm = audio_of(&taps, Side::Pbx);
    assert_eq!(energy(&pcm[1600..2240]), 0.0, "the event's time is muted");
    assert!(energy(&pcm[3000..3200]) > 1e5, "audio after it is not");
}

#[test]
fn rfc4733_edge_cases_lost_start_lost_end_wrap_and_garbage() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.taps();
    let voice = voice_ulaw(FRAME, 0);
    let ts0 = u32::MAX - 4000; // the event straddles the 32-bit wrap
    for i in 0..20 {
        r.pbx_audio(i, ts0, &voice);
    }
    let ev_ts = ts0.wrapping_add(20 * 160);
    // First report seen is a mid-event update without the marker (start packets lost),
    // and no end report ever arrives (lost).
    for (k, dur) in [480u16, 640, 800].into_iter().enumerate() {
        let pkt = rtp(
            TEL,
            false,
            40 + k as u16,
            ev_ts,
            PBX_SSRC,
            &event(1, false, dur),
        );
        r.send(400 + k as u64 * 20, Side::Pbx, &pkt);
    }
    // A truncated event payload: relayed, ignored by the recorder path.
    let bad = rtp(TEL, false, 43, ev_ts, PBX_SSRC, &[1, 0]);
    assert!(r.send(460, Side::Pbx, &bad).is_some());
    // Audio resumes; the open event expires once the media is 200 ms past its last end.
    for i in 26..60 {
        r.pbx_audio(i, ts0, &voice);
    }
    r.media.finish(None);
    let taps = r.taps();
    let spans = spans_of(&taps, Side::Pbx);
    assert_eq!(spans.len(), 1, "{spans:?}");
    let (start, end, _) = spans[0];
    let ev_start = 20 * 160;
    assert!(start <= ev_start && end >= ev_start + 800, "{start}..{end}");
    assert!(
        end < ev_start + 800 + 400,
        "ended by expiry, not by the call's end"
    );
    let pcm = audio_of(&taps, Side::Pbx);
    assert_eq!(
        energy(&pcm[ev_start as usize..ev_start as usize + 800]),
        0.0
    );
}

#[test]
fn unsignalled_payload_types_are_relayed_not_interpreted() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.taps();
    // PT 96 was never signalled: not an event, not audio callmask can hear. It is relayed,
    // and its time on the recorder path is muted, marked fail-closed (issue 12: never a
    // silent gap nobody hears of).
    let pkt = rtp(96, true, 1, 0, PBX_SSRC, &event(5, false, 160));
    assert_eq!(r.send(0, Side::Pbx, &pkt).unwrap().bytes, pkt);
    r.media.finish(None);
    let spans = spans_of(&r.taps(), Side::Pbx);
    assert!(!spans.is_empty());
    assert!(
        spans.iter().all(|s| s.2 == MaskReason::FailClosed),
        "{spans:?}"
    );
}

fn clamp_config(mode: AgentDtmfMode) -> MediaConfig {
    MediaConfig {
        agent_dtmf: mode,
        ..config()
    }
}

#[test]
fn agent_clamp_drop_silences_inband_tones_and_removes_events_renumbering() {
    let mut r = Rig::new(clamp_config(AgentDtmfMode::Drop), Side::Pbx);
    let mut forwarded = Vec::new();
    for i in 0..30u32 {
        let payload = if (10..20).contains(&i) {
            tone_ulaw(770.0, 1336.0, FRAME, i as usize * FRAME) // '5'
        } else {
            voice_ulaw(FRAME, i as usize * FRAME)
        };
        let pkt = rtp(0, false, i as u16, i * 160, PBX_SSRC, &payload);
        let out = r.send(u64::from(i) * 20, Side::Pbx, &pkt).unwrap();
        assert_eq!(
            out.bytes[..12],
            pkt[..12],
            "header untouched before any removal"
        );
        forwarded.push(out.bytes);
    }
    let silenced = |b: &Vec<u8>| b[12..].iter().all(|&x| x == dsp::clamp::ULAW_SILENCE);
    assert!(!silenced(&forwarded[5]));
    assert!(
        forwarded[12..20].iter().all(silenced),
        "the tone never reaches the agent"
    );
    assert!(!silenced(&forwarded[29]));
    // An RFC 4733 packet is removed; the next audio packet closes the sequence gap.
    let ev = rtp(TEL, true, 30, 30 * 160, PBX_SSRC, &event(5, false, 160));
    assert!(r.send(600, Side::Pbx, &ev).is_none());
    let next = rtp(0, false, 31, 31 * 160, PBX_SSRC, &voice_ulaw(FRAME, 0));
    let out = r.send(620, Side::Pbx, &next).unwrap();
    assert_eq!(u16::from_be_bytes([out.bytes[2], out.bytes[3]]), 30);
    assert_eq!(out.bytes[4..], next[4..]);
    // The agents' own audio toward the PBX is never clamped.
    let back = rtp(
        0,
        false,
        1,
        0,
        AGENT_SSRC,
        &tone_ulaw(770.0, 1336.0, FRAME, 0),
    );
    assert_eq!(r.send(640, Side::Agents, &back).unwrap().bytes, back);
}

/// NG `block DTMF` / `unblock DTMF` (`CallCommand::AgentDtmf`) on a live call: events pass,
/// are removed while blocked, pass again after.
#[test]
fn agent_clamp_switched_at_run_time() {
    let mut r = Rig::new(clamp_config(AgentDtmfMode::Pass), Side::Pbx);
    let ev = |seq: u16| {
        rtp(
            TEL,
            seq == 0,
            seq,
            0,
            PBX_SSRC,
            &event(5, false, 160 * (seq + 1)),
        )
    };
    assert!(
        r.send(0, Side::Pbx, &ev(0)).is_some(),
        "passes before the block"
    );
    let t = r.at(20);
    r.media.handle_command(
        t,
        CallCommand::AgentDtmf(Some(dsp::clamp::ClampMode::Silence)),
    );
    assert!(
        r.send(20, Side::Pbx, &ev(1)).is_none(),
        "removed while blocked"
    );
    // Blocking again in the same mode keeps the clamp (and its renumbering state).
    r.media.handle_command(
        t,
        CallCommand::AgentDtmf(Some(dsp::clamp::ClampMode::Silence)),
    );
    assert!(r.send(40, Side::Pbx, &ev(2)).is_none());
    r.media
        .handle_command(r.at(60), CallCommand::AgentDtmf(None));
    assert!(
        r.send(60, Side::Pbx, &ev(3)).is_some(),
        "passes after the unblock"
    );
}

#[test]
fn agent_clamp_flat_tone_turns_events_into_audio_and_drops_repeats() {
    let mut r = Rig::new(clamp_config(AgentDtmfMode::FlatTone), Side::Pbx);
    let voice = voice_ulaw(FRAME, 0);
    r.pbx_audio(0, 8000, &voice);
    let mut outs = Vec::new();
    for (k, (dur, end)) in [(160u16, false), (320, false), (320, true), (320, true)]
        .into_iter()
        .enumerate()
    {
        let pkt = rtp(
            TEL,
            k == 0,
            1 + k as u16,
            8160,
            PBX_SSRC,
            &event(5, end, dur),
        );
        outs.push(r.send(20 + k as u64 * 20, Side::Pbx, &pkt));
    }
    let first = outs[0].as_ref().unwrap();
    assert_eq!(first.bytes.len(), 12 + FRAME);
    assert_eq!(first.bytes[1], 0, "audio PT, marker cleared");
    assert_eq!(
        u32::from_be_bytes(first.bytes[4..8].try_into().unwrap()),
        8160
    );
    let second = outs[1].as_ref().unwrap();
    assert_eq!(
        u32::from_be_bytes(second.bytes[4..8].try_into().unwrap()),
        8160 + 160
    );
    // The first end report has the same end as the last update: a repeat, dropped; so are
    // the retransmitted ends.
    assert!(outs[2].is_none() && outs[3].is_none());
    let next = rtp(0, false, 5, 8160 + 320, PBX_SSRC, &voice);
    let out = r.send(120, Side::Pbx, &next).unwrap();
    assert_eq!(
        u16::from_be_bytes([out.bytes[2], out.bytes[3]]),
        3,
        "two removed"
    );
}

/// Sets the PBX side's forward gate at `ms`.
fn gate(r: &mut Rig, ms: u64, gate: ForwardGate) {
    let t = r.at(ms);
    r.media.handle_command(
        t,
        CallCommand::Forward {
            from: Side::Pbx,
            gate,
        },
    );
}

/// NG `silence media` / `block media`: what the other party gets of one party's RTP; the
/// recorder path still hears the audio as sent, and RTCP passes.
#[test]
fn forward_gates_silence_or_block_one_party_only() {
    let mut r = Rig::new(config(), Side::Pbx);
    let voice = voice_ulaw(FRAME, 0);
    gate(&mut r, 0, ForwardGate::Silence);
    let pkt = rtp(0, false, 0, 0, PBX_SSRC, &voice);
    let out = r.send(0, Side::Pbx, &pkt).expect("forwarded as silence");
    assert_eq!(out.bytes.len(), pkt.len(), "same length");
    assert_eq!(out.bytes[..12], pkt[..12], "same header");
    assert!(out.bytes[12..]
        .iter()
        .all(|&b| b == dsp::g711::ULAW_SILENCE));
    // The agent's audio is untouched.
    let back = rtp(0, false, 0, 0, AGENT_SSRC, &voice);
    assert_eq!(
        r.send(20, Side::Agents, &back).expect("relayed").bytes,
        back
    );
    gate(&mut r, 40, ForwardGate::Block);
    let pkt = rtp(0, false, 2, 320, PBX_SSRC, &voice);
    assert!(r.send(40, Side::Pbx, &pkt).is_none(), "blocked");
    let rtcp = [0x80, 201, 0, 1, 0, 0, 0, 1];
    assert!(
        r.send_on(40, Side::Pbx, LocalPort::Rtcp, &rtcp).is_some(),
        "RTCP passes a blocked party"
    );
    gate(&mut r, 60, ForwardGate::Open);
    let pkt = rtp(0, false, 3, 480, PBX_SSRC, &voice);
    assert_eq!(r.send(60, Side::Pbx, &pkt).expect("open again").bytes, pkt);
    // Events cannot be silenced: removed while silenced.
    gate(&mut r, 80, ForwardGate::Silence);
    let ev = rtp(TEL, true, 10, 1600, PBX_SSRC, &event(5, false, 160));
    assert!(
        r.send(200, Side::Pbx, &ev).is_none(),
        "events are removed, not silenced"
    );
    // The recorder path heard the caller's voice all along (packet 0 silenced toward the
    // agent, packet 2 blocked), not the silence.
    r.media.finish(None);
    let pcm = audio_of(&r.taps(), Side::Pbx);
    assert!(
        energy(&pcm[..FRAME]) > 1e5,
        "silenced packet recorded as sent"
    );
    assert!(
        energy(&pcm[2 * FRAME..3 * FRAME]) > 1e5,
        "blocked packet recorded as sent"
    );
}

fn trigger_config() -> MediaConfig {
    let seq = |s: &str| Some(KeySequence::new(&DtmfSequence::try_from(s).unwrap()));
    MediaConfig {
        dtmf_trigger: seq("*1"),
        dtmf_release: seq("*2"),
        ..config()
    }
}

/// Sends key `code` as an RFC 4733 event from the PBX side at packet slot `slot`.
fn press(r: &mut Rig, slot: u32, code: u8, seq: &mut u16) {
    for (k, (dur, end)) in [(160u16, false), (320, true), (320, true)]
        .into_iter()
        .enumerate()
    {
        *seq += 1;
        let pkt = rtp(
            TEL,
            k == 0,
            *seq,
            slot * 160,
            PBX_SSRC,
            &event(code, end, dur),
        );
        r.send(u64::from(slot) * 20 + k as u64 * 5, Side::Pbx, &pkt);
    }
}

#[test]
fn caller_keys_switch_secure_mode_inside_the_core() {
    let mut r = Rig::new(trigger_config(), Side::Pbx);
    r.events();
    let voice = voice_ulaw(FRAME, 0);
    let mut seq = 0u16;
    let audio = |r: &mut Rig, range: std::ops::Range<u32>, seq: &mut u16| {
        for i in range {
            *seq += 1;
            let pkt = rtp(0, false, *seq, i * 160, PBX_SSRC, &voice);
            r.send(u64::from(i) * 20, Side::Pbx, &pkt);
            let back = rtp(0, false, *seq, i * 160, AGENT_SSRC, &voice);
            r.send(u64::from(i) * 20, Side::Agents, &back);
        }
    };
    audio(&mut r, 0..10, &mut seq);
    press(&mut r, 10, 10, &mut seq); // '*'
    press(&mut r, 14, 1, &mut seq); // '1'
    assert_eq!(r.events(), vec![MediaEvent::SecureByKeys { on: true }]);
    audio(&mut r, 18..60, &mut seq);
    press(&mut r, 60, 10, &mut seq);
    press(&mut r, 64, 2, &mut seq);
    assert_eq!(r.events(), vec![MediaEvent::SecureByKeys { on: false }]);
    audio(&mut r, 68..90, &mut seq);
    r.media.finish(None);
    let taps = r.taps();
    // Both directions are muted while secure, audible after.
    for side in Side::BOTH {
        let pcm = audio_of(&taps, side);
        assert_eq!(
            energy(&pcm[30 * 160..55 * 160]),
            0.0,
            "{side:?} muted while secure"
        );
        assert!(
            energy(&pcm[80 * 160..85 * 160]) > 1e5,
            "{side:?} audible after release"
        );
        assert!(spans_of(&taps, side)
            .iter()
            .any(|s| s.2 == MaskReason::SecureMode));
    }
}

/// The trigger listens to the customer (the PBX side) whoever dialled (issue 12 item 6): on
/// an agent-originated call the agent's in-band keys are ignored, the PBX side's switch.
#[test]
fn the_agents_keys_do_not_trigger_even_when_the_agent_dialled() {
    let mut r = Rig::new(trigger_config(), Side::Agents);
    r.events();
    // In-band '*' then '1' from the agent (the caller here), 100 ms tones 100 ms apart.
    let mut i = 0u32;
    for (row, col) in [(941.0, 1209.0), (697.0, 1209.0)] {
        for k in 0..5 {
            let pkt = rtp(
                0,
                false,
                i as u16,
                i * 160,
                AGENT_SSRC,
                &tone_ulaw(row, col, FRAME, k * FRAME),
            );
            r.send(u64::from(i) * 20, Side::Agents, &pkt);
            i += 1;
        }
        for _ in 0..5 {
            let pkt = rtp(0, false, i as u16, i * 160, AGENT_SSRC, &[0xff; FRAME]);
            r.send(u64::from(i) * 20, Side::Agents, &pkt);
            i += 1;
        }
    }
    assert!(
        r.events().is_empty(),
        "the agent's keys never switch secure mode"
    );
    // The PBX side is the customer although it did not dial: its keys switch.
    let mut seq = 100;
    press(&mut r, 40, 10, &mut seq);
    press(&mut r, 44, 1, &mut seq);
    assert_eq!(r.events(), vec![MediaEvent::SecureByKeys { on: true }]);
}

#[test]
fn secure_and_info_commands_mute_from_what_is_not_yet_sent() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.taps();
    let voice = voice_ulaw(FRAME, 0);
    for i in 0..10 {
        r.pbx_audio(i, 0, &voice);
    }
    r.media
        .handle_command(r.at(200), CallCommand::InfoDtmf { from: Side::Pbx });
    for i in 10..40 {
        r.pbx_audio(i, 0, &voice);
    }
    r.media.finish(None);
    let taps = r.taps();
    let pcm = audio_of(&taps, Side::Pbx);
    // INFO_DTMF_MS from the newest input, back to the oldest sample still in the look-ahead.
    let lookahead = 80 * 8;
    assert_eq!(energy(&pcm[1600 - lookahead + 100..1600 + 2000]), 0.0);
    assert!(energy(&pcm[5000..6000]) > 1e5);
}

#[test]
fn without_a_recorder_nothing_is_tapped() {
    let mut r = Rig::new(
        MediaConfig {
            tap: false,
            ..config()
        },
        Side::Pbx,
    );
    for i in 0..10 {
        assert!(r.pbx_audio(i, 0, &voice_ulaw(FRAME, 0)).is_some());
    }
    r.media.finish(None);
    assert!(r.taps().is_empty());
}

#[test]
fn inactivity_is_reported_once_with_more_patience_before_media() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.events();
    assert_eq!(r.media.poll_timeout(), Some(r.at(300_000)));
    r.pbx_audio(0, 0, &voice_ulaw(FRAME, 0));
    assert_eq!(r.media.poll_timeout(), Some(r.at(30_000)));
    r.media.handle_timeout(r.at(29_999));
    assert!(r.events().is_empty());
    r.media.handle_timeout(r.at(31_000));
    assert_eq!(r.events(), vec![MediaEvent::Inactive]);
    r.media.handle_timeout(r.at(40_000));
    assert!(r.events().is_empty());
    assert_eq!(r.media.poll_timeout(), None);
}

#[test]
fn socket_ids_round_trip_through_the_dense_index() {
    for k in 0..12 {
        assert_eq!(SocketId::from_index(k).index(), k);
    }
}

mod props {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Bad input gets an answer, never a crash: any bytes on any socket id.
        #[test]
        fn arbitrary_datagrams_never_panic(
            dgrams in vec((0usize..3, any::<bool>(), any::<bool>(), vec(any::<u8>(), 0..300)), 0..40),
        ) {
            let mut r = Rig::new(MediaConfig { agent_dtmf: AgentDtmfMode::FlatTone, ..trigger_config() }, Side::Pbx);
            for (i, (stream, agents, rtcp, bytes)) in dgrams.iter().enumerate() {
                let socket = SocketId {
                    stream: *stream,
                    side: if *agents { Side::Agents } else { Side::Pbx },
                    port: if *rtcp { LocalPort::Rtcp } else { LocalPort::Rtp },
                };
                let src = if *agents { agent_addr() } else { pbx_addr() };
                let _ = r.media.handle_datagram(r.at(i as u64 * 20), socket, src, bytes);
            }
            r.media.finish(None);
            let taps = r.taps();
            let _ = audio_of(&taps, Side::Pbx);
            let _ = audio_of(&taps, Side::Agents);
        }

        /// Whatever the timestamps and payload types do (reordering, repeats, jumps both
        /// ways, events mixed in, SSRC changes), the recorder path stays one contiguous,
        /// gap-free time line (checked by `audio_of`) and every span is well-formed.
        #[test]
        fn any_rtp_stream_keeps_the_tap_contiguous(
            pkts in vec((
                prop_oneof![4 => Just(0u8), 1 => Just(TEL), 1 => Just(96)],
                prop_oneof![
                    6 => Just(160i64), 1 => Just(-160), 1 => Just(0), 1 => Just(320),
                    1 => Just(-30_000), 1 => Just(24_000),
                ],
                prop_oneof![9 => Just(false), 1 => Just(true)],
                0usize..400,
                any::<u8>(),
            ), 1..40),
        ) {
            let mut r = Rig::new(clamp_config(AgentDtmfMode::Drop), Side::Pbx);
            let mut ts: u32 = 0xffff_0000;
            let mut ssrc = PBX_SSRC;
            for (i, (pt, dts, new_ssrc, len, fill)) in pkts.iter().enumerate() {
                ts = ts.wrapping_add(*dts as u32);
                if *new_ssrc {
                    ssrc = ssrc.wrapping_add(1);
                }
                let payload = if *pt == TEL {
                    event(5, *fill > 200, u16::from(*fill) * 8).to_vec()
                } else {
                    vec![*fill; *len]
                };
                let pkt = rtp(*pt, false, i as u16, ts, ssrc, &payload);
                let out = r.send(i as u64 * 20, Side::Pbx, &pkt);
                if let Some(o) = out {
                    prop_assert!(o.bytes.len() >= 12);
                }
            }
            r.media.finish(None);
            let taps = r.taps();
            let _ = audio_of(&taps, Side::Pbx);
            for (start, end, _) in spans_of(&taps, Side::Pbx) {
                prop_assert!(start <= end);
            }
        }
    }
}

fn skips_of(taps: &[TapEvent], side: Side) -> Vec<(u64, u64)> {
    taps.iter()
        .filter_map(|t| match t {
            TapEvent::Skip {
                from, at, samples, ..
            } if *from == side => Some((*at, *samples)),
            _ => None,
        })
        .collect()
}

/// Issue 12 item 3: a gap longer than MAX_GAP_FILL_MS (one side on hold for a minute) is
/// announced to the recorder as a skip of exactly the rest of the gap, so the recording puts
/// the resumed audio a minute later instead of right after the old audio.
#[test]
fn a_long_gap_becomes_a_skip_of_its_exact_length() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.taps();
    let voice = voice_ulaw(FRAME, 0);
    r.pbx_audio(0, 0, &voice);
    let later = rtp(0, false, 1, 60 * 8000, PBX_SSRC, &voice);
    r.send(60_000, Side::Pbx, &later);
    let fill = MAX_GAP_FILL_MS * 8;
    let f = FRAME as u64;
    assert_eq!(
        skips_of(&r.taps(), Side::Pbx),
        [(f + fill, 60 * 8000 - f - fill)]
    );
}

/// A timestamp jump the arrival clock does not confirm (the sender jumped its timestamps an
/// hour ahead 20 ms after the previous packet) is no gap: the audio stays contiguous.
#[test]
fn a_timestamp_jump_follows_the_arrival_clock() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.taps();
    let voice = voice_ulaw(FRAME, 0);
    r.pbx_audio(0, 0, &voice);
    for k in 0..3u32 {
        let pkt = rtp(
            0,
            false,
            1 + k as u16,
            3600 * 8000 + k * 160,
            PBX_SSRC,
            &voice,
        );
        r.send(20 + u64::from(k) * 20, Side::Pbx, &pkt);
    }
    r.media.finish(None);
    let taps = r.taps();
    assert!(skips_of(&taps, Side::Pbx).is_empty());
    assert_eq!(audio_of(&taps, Side::Pbx).len(), 4 * FRAME);
}

fn wide_spec(pt: u8, name: &str, rate: u32) -> StreamSpec {
    StreamSpec {
        codecs: vec![
            Codec {
                pt: PayloadType::try_from(pt).unwrap(),
                name: name.into(),
                clock_rate: rate,
                channels: None,
            },
            codec(TEL, "telephone-event"),
        ],
        ..spec()
    }
}

/// Issue 12 item 2: G.722 (8000 RTP clock, one 8 kHz sample per byte) and Opus (48000 RTP
/// clock, 160 samples per 20 ms packet from libopus) reach the recorder path as audio, on the
/// right time line, with no fail-closed span.
#[test]
fn g722_and_opus_are_decoded_on_the_recorder_path() {
    let mut r = Rig::new(config(), Side::Pbx);
    r.media
        .handle_command(r.t0, CallCommand::Spec(vec![wide_spec(9, "G722", 8000)]));
    r.taps();
    for i in 0..10u32 {
        let pkt = rtp(9, false, i as u16, i * 160, PBX_SSRC, &[0x5a; 160]);
        r.send(u64::from(i) * 20, Side::Pbx, &pkt);
    }
    r.media.finish(None);
    let taps = r.taps();
    assert_eq!(audio_of(&taps, Side::Pbx).len(), 10 * FRAME);
    assert!(spans_of(&taps, Side::Pbx).is_empty());

    let mut r = Rig::new(config(), Side::Pbx);
    r.media.handle_command(
        r.t0,
        CallCommand::Spec(vec![wide_spec(111, "opus", 48_000)]),
    );
    r.taps();
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
        .expect("libopus encoder");
    let tone: Vec<i16> = (0..960 * 10)
        .map(|i| (6000.0 * (i as f64 * 440.0 * std::f64::consts::TAU / 48_000.0).sin()) as i16)
        .collect();
    let mut buf = [0u8; 400];
    for (i, frame) in tone.chunks(960).enumerate() {
        let n = enc.encode(frame, &mut buf).expect("encode");
        let i = i as u32;
        let pkt = rtp(111, false, i as u16, 1000 + i * 960, PBX_SSRC, &buf[..n]);
        r.send(u64::from(i) * 20, Side::Pbx, &pkt);
    }
    // A corrupt Opus packet: its 20 ms are muted and marked fail-closed.
    let bad = rtp(
        111,
        false,
        10,
        1000 + 10 * 960,
        PBX_SSRC,
        &[0xff, 0xff, 0xff],
    );
    r.send(200, Side::Pbx, &bad);
    r.media.finish(None);
    let taps = r.taps();
    let pcm = audio_of(&taps, Side::Pbx);
    assert_eq!(pcm.len(), 11 * FRAME);
    assert!(energy(&pcm[2 * FRAME..10 * FRAME]) > 1e5, "decoded audio");
    let spans = spans_of(&taps, Side::Pbx);
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].2, MaskReason::FailClosed);
    assert!(skips_of(&taps, Side::Pbx).is_empty());
}

/// An RFC 4733 event on an Opus stream (telephone-event/48000, RFC 7587 §4.3) is placed on
/// the same 8 kHz time line as the Opus audio: the key's 100 ms are muted where they were.
#[test]
fn rfc4733_on_an_opus_stream_is_masked_at_its_time() {
    let mut r = Rig::new(config(), Side::Pbx);
    let mut s = wide_spec(111, "opus", 48_000);
    s.codecs[1].clock_rate = 48_000;
    r.media.handle_command(r.t0, CallCommand::Spec(vec![s]));
    r.taps();
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
        .expect("libopus encoder");
    let tone: Vec<i16> = (0..960 * 30)
        .map(|i| (6000.0 * (i as f64 * 440.0 * std::f64::consts::TAU / 48_000.0).sin()) as i16)
        .collect();
    let mut buf = [0u8; 400];
    for (i, frame) in tone.chunks(960).enumerate() {
        let i = i as u32;
        if (10..15).contains(&i) {
            // A key press from packet 10 for 100 ms (duration in 48 kHz ticks).
            let dur = ((i - 9) * 960) as u16;
            let pkt = rtp(
                TEL,
                i == 10,
                i as u16,
                10 * 960,
                PBX_SSRC,
                &event(5, i == 14, dur),
            );
            r.send(u64::from(i) * 20, Side::Pbx, &pkt);
            continue;
        }
        let n = enc.encode(frame, &mut buf).expect("encode");
        let pkt = rtp(111, false, i as u16, i * 960, PBX_SSRC, &buf[..n]);
        r.send(u64::from(i) * 20, Side::Pbx, &pkt);
    }
    r.media.finish(None);
    let spans = spans_of(&r.taps(), Side::Pbx);
    let key: Vec<_> = spans
        .iter()
        .filter(|s| s.2 == MaskReason::Rfc4733)
        .collect();
    assert_eq!(key.len(), 1, "{spans:?}");
    let (start, end) = (key[0].0, key[0].1);
    assert!(
        start <= 10 * 160 && (15 * 160..=20 * 160).contains(&end),
        "{start}..{end}"
    );
}

/// Issue 14, `media.undecodable = "relay-muted"`: an encrypted stream's packets (here "SRTP"
/// whose payload is an in-band DTMF tone, as ciphertext can be anything) are relayed byte for
/// byte even with the agent clamp on (rewriting SRTP would break its authentication tag); the
/// recorder path hears silence marked fail-closed, never the payload decoded as G.711; SRTCP
/// passes on its plaintext header; and the muted time is counted.
#[test]
fn encrypted_streams_are_relayed_untouched_and_recorded_as_silence() {
    let mut r = Rig::new(clamp_config(AgentDtmfMode::Drop), Side::Pbx);
    let enc = StreamSpec {
        encrypted: true,
        ..spec()
    };
    r.media.handle_command(r.t0, CallCommand::Spec(vec![enc]));
    r.taps();
    for i in 0..25u32 {
        let mut payload = tone_ulaw(770.0, 1336.0, FRAME, i as usize * FRAME);
        payload.extend_from_slice(&[0x5a; 10]); // an SRTP auth tag
        let pkt = rtp(0, false, i as u16, i * 160, PBX_SSRC, &payload);
        let out = r.send(u64::from(i) * 20, Side::Pbx, &pkt).expect("relayed");
        assert_eq!(out.bytes, pkt, "SRTP is relayed byte for byte");
    }
    // An RFC 4733 packet of an encrypted stream is ciphertext too: relayed, never read.
    let ev = rtp(TEL, true, 25, 25 * 160, PBX_SSRC, &event(5, false, 160));
    assert_eq!(r.send(500, Side::Pbx, &ev).expect("relayed").bytes, ev);
    // SRTCP: SR header + sender SSRC, encrypted rest, E|index, tag.
    let mut srtcp = vec![0x80, 200, 0x00, 0x06];
    srtcp.extend_from_slice(&PBX_SSRC.to_be_bytes());
    srtcp.extend_from_slice(&[0x13; 20]);
    srtcp.extend_from_slice(&[0x80, 0, 0, 1]);
    srtcp.extend_from_slice(&[0x77; 10]);
    let out = r.send_on(510, Side::Pbx, LocalPort::Rtcp, &srtcp);
    assert_eq!(out.expect("SRTCP relayed").bytes, srtcp);

    r.media.finish(None);
    let taps = r.taps();
    let pcm = audio_of(&taps, Side::Pbx);
    assert!(pcm.len() >= 24 * FRAME, "time kept: {}", pcm.len());
    assert_eq!(
        energy(&pcm),
        0.0,
        "the recorder hears silence, never ciphertext"
    );
    assert!(spans_of(&taps, Side::Pbx)
        .iter()
        .any(|s| s.2 == MaskReason::FailClosed));
    let text = r.media.metrics.render();
    let line = text
        .lines()
        .find(|l| l.starts_with("callmask_masking_undecodable_seconds_total{side=\"pbx\"}"))
        .expect("metric line");
    let secs: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((secs - 0.5).abs() < 1e-6, "{line}");
}

fn sdes(suite: crate::core::sdp::SrtpSuite, b: u8) -> crate::core::sdp::SdesKey {
    crate::core::sdp::SdesKey::generate(suite, |buf| {
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = b.wrapping_mul(31).wrapping_add(i as u8));
        true
    })
    .unwrap()
}

/// Issue 14, SDES-SRTP terminated on both legs: the PBX's SRTP is decrypted (the tap hears
/// plaintext, so its in-band DTMF is masked and the voice recorded), re-encrypted toward the
/// agent with callmask's agents-side key (the agent decrypts it to the original RTP); a
/// packet with a flipped tag bit and a replay are dropped and counted, never relayed or
/// recorded; the agent's SRTP comes back to the PBX under callmask's PBX-side key.
#[test]
fn srtp_legs_are_decrypted_for_the_tap_and_reencrypted_per_leg() {
    use super::srtp::LegCrypto;
    use crate::core::sdp::{SrtpLeg, SrtpSuite};
    let (pbx_key, cm_pbx) = (
        sdes(SrtpSuite::AesCm128HmacSha1_80, 1),
        sdes(SrtpSuite::AesCm128HmacSha1_80, 2),
    );
    let (agent_key, cm_agent) = (
        sdes(SrtpSuite::AesCm128HmacSha1_32, 3),
        sdes(SrtpSuite::AesCm128HmacSha1_32, 4),
    );
    let legs = BySide::new(
        Some(SrtpLeg {
            rx: pbx_key.clone(),
            tx: cm_pbx.clone(),
        }),
        Some(SrtpLeg {
            rx: agent_key.clone(),
            tx: cm_agent.clone(),
        }),
    );
    let mut pbx = LegCrypto::new(&SrtpLeg {
        rx: cm_pbx,
        tx: pbx_key,
    })
    .unwrap();
    let mut agent = LegCrypto::new(&SrtpLeg {
        rx: cm_agent,
        tx: agent_key,
    })
    .unwrap();
    let mut r = Rig::new(config(), Side::Pbx);
    r.media.handle_command(
        r.t0,
        CallCommand::Spec(vec![StreamSpec {
            srtp: legs,
            ..spec()
        }]),
    );
    r.taps();
    let mut received = Vec::new();
    for i in 0..40u32 {
        let payload = if (10..20).contains(&i) {
            tone_ulaw(770.0, 1336.0, FRAME, i as usize * FRAME) // '5'
        } else {
            voice_ulaw(FRAME, i as usize * FRAME)
        };
        let plain = rtp(0, false, i as u16, i * 160, PBX_SSRC, &payload);
        let wire = pbx.protect(&plain, false).unwrap();
        let out = r
            .send(u64::from(i) * 20, Side::Pbx, &wire)
            .expect("relayed");
        assert_eq!(out.bytes.len(), plain.len() + 4, "the agents' leg uses _32");
        let dec = agent
            .unprotect(&out.bytes, false)
            .expect("the agent decrypts it");
        assert_eq!(&dec[..], &plain[..]);
        received.push(dec);
        if i == 30 {
            let mut bad = pbx
                .protect(&rtp(0, false, 99, 99 * 160, PBX_SSRC, &payload), false)
                .unwrap()
                .to_vec();
            let n = bad.len() - 1;
            bad[n] ^= 0x01;
            assert!(
                r.send(u64::from(i) * 20 + 5, Side::Pbx, &bad).is_none(),
                "tampered"
            );
            assert!(
                r.send(u64::from(i) * 20 + 6, Side::Pbx, &wire).is_none(),
                "replayed"
            );
        }
    }
    let back = agent
        .protect(
            &rtp(0, false, 1, 160, AGENT_SSRC, &voice_ulaw(FRAME, 0)),
            false,
        )
        .unwrap();
    let out = r.send(10, Side::Agents, &back).expect("relayed back");
    assert!(
        pbx.unprotect(&out.bytes, false).is_ok(),
        "under callmask's PBX-side key"
    );

    r.media.finish(None);
    let taps = r.taps();
    let pcm = audio_of(&taps, Side::Pbx);
    assert_eq!(
        pcm.len(),
        40 * FRAME,
        "the tampered and replayed packets add nothing"
    );
    assert!(
        energy(&pcm[3 * FRAME..8 * FRAME]) > 1e5,
        "plaintext voice recorded"
    );
    assert!(spans_of(&taps, Side::Pbx)
        .iter()
        .any(|s| s.2 == MaskReason::DtmfInband));
    let text = r.media.metrics.render();
    for series in [
        "callmask_srtp_packets_dropped_total{reason=\"auth\",side=\"pbx\"} 1",
        "callmask_srtp_packets_dropped_total{reason=\"replay\",side=\"pbx\"} 1",
        "callmask_srtp_packets_decrypted_total{side=\"pbx\"} 40",
    ] {
        assert!(text.contains(series), "{series}\n{text}");
    }
}

/// Issue 14, rekeying: a re-INVITE brings the PBX's new SDES key (a new spec for the same
/// stream): from then on packets under the new key are decrypted and relayed, packets still
/// under the old key fail authentication and are dropped (never relayed or recorded), and
/// callmask's own key toward the agent stays the same.
#[test]
fn srtp_rekey_on_a_new_spec_takes_the_new_key_and_drops_the_old() {
    use super::srtp::LegCrypto;
    use crate::core::sdp::{SrtpLeg, SrtpSuite};
    let suite = SrtpSuite::AesCm128HmacSha1_80;
    let (old_key, new_key, cm_pbx) = (sdes(suite, 1), sdes(suite, 5), sdes(suite, 2));
    let (agent_key, cm_agent) = (sdes(suite, 3), sdes(suite, 4));
    let spec_with = |pbx_rx: &crate::core::sdp::SdesKey| StreamSpec {
        srtp: BySide::new(
            Some(SrtpLeg {
                rx: pbx_rx.clone(),
                tx: cm_pbx.clone(),
            }),
            Some(SrtpLeg {
                rx: agent_key.clone(),
                tx: cm_agent.clone(),
            }),
        ),
        ..spec()
    };
    let sender = |k: &crate::core::sdp::SdesKey| {
        LegCrypto::new(&SrtpLeg {
            rx: cm_pbx.clone(),
            tx: k.clone(),
        })
        .unwrap()
    };
    let (mut pbx_old, mut pbx_new) = (sender(&old_key), sender(&new_key));
    let mut agent = LegCrypto::new(&SrtpLeg {
        rx: cm_agent.clone(),
        tx: agent_key.clone(),
    })
    .unwrap();
    let mut r = Rig::new(config(), Side::Pbx);
    r.media
        .handle_command(r.t0, CallCommand::Spec(vec![spec_with(&old_key)]));
    r.taps();
    let packet = |i: u32| rtp(0, false, i as u16, i * 160, PBX_SSRC, &voice_ulaw(FRAME, 0));
    for i in 0..10u32 {
        let wire = pbx_old.protect(&packet(i), false).unwrap();
        let out = r
            .send(u64::from(i) * 20, Side::Pbx, &wire)
            .expect("relayed");
        assert!(agent.unprotect(&out.bytes, false).is_ok());
    }
    // The re-INVITE: the PBX's new key.
    r.media
        .handle_command(r.t0, CallCommand::Spec(vec![spec_with(&new_key)]));
    for i in 10..20u32 {
        let at = u64::from(i) * 20;
        let stale = pbx_old.protect(&packet(i), false).unwrap();
        assert!(
            r.send(at, Side::Pbx, &stale).is_none(),
            "old key after the rekey"
        );
        let wire = pbx_new.protect(&packet(i), false).unwrap();
        let out = r.send(at + 1, Side::Pbx, &wire).expect("new key relayed");
        let dec = agent
            .unprotect(&out.bytes, false)
            .expect("still under callmask's agents-side key");
        assert_eq!(&dec[..], &packet(i)[..]);
    }
}
