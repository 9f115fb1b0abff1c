//! Agent-leg DTMF modes (`masking.agent_dtmf`) and the secure-mode DTMF trigger, through a real
//! `MediaHub` relay task with UDP sockets on 127.0.0.1 as the PBX and agent media endpoints.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::f32::consts::PI;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use callmask::core::ports::PortPair;
use callmask::core::proxy::{CallRef, Side, StreamSpec};
use callmask::core::relay::{LatchConfig, PayloadType};
use callmask::core::sdp::Codec;
use callmask::io::calls::CallTable;
use callmask::io::media::{KeySequence, MediaHub, MediaSettings};
use callmask::metrics::Metrics;
use config::types::{AgentDtmfMode, DtmfSequence};
use dsp::dtmf::{Digit, DtmfConfig, DtmfDetector, ToneEvent};
use dsp::g711;
use dsp::mask::MaskConfig;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const TEL_PT: u8 = 101;
const FRAME: usize = 160;

/// An even port whose successor is free too (best effort: released before use).
fn free_pair() -> PortPair {
    loop {
        let a = StdUdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p % 2 != 0 || p == u16::MAX {
            continue;
        }
        if StdUdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return PortPair::from_rtp(p).unwrap();
        }
    }
}

struct Harness {
    _hub: MediaHub,
    table: Arc<CallTable>,
    call: CallRef,
    pbx: UdpSocket,
    agent: UdpSocket,
    to_pbx_side: SocketAddr,
}

async fn setup(mode: AgentDtmfMode, trigger: Option<(&str, &str)>) -> Harness {
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let seq = |s: &str| KeySequence::new(&DtmfSequence::try_from(s).unwrap());
    let settings = MediaSettings {
        pbx_bind: "127.0.0.1".parse().unwrap(),
        agents_bind: "127.0.0.1".parse().unwrap(),
        inactivity: Duration::from_secs(30),
        mask: MaskConfig::default(),
        latch: LatchConfig::default(),
        agent_dtmf: mode,
        dtmf_trigger: trigger.map(|t| seq(t.0)),
        dtmf_release: trigger.map(|t| seq(t.1)),
        speech: None,
    };
    let (timeouts, _) = mpsc::unbounded_channel();
    let table = Arc::new(CallTable::new());
    let mut hub = MediaHub::new(
        settings,
        Arc::new(Metrics::new()),
        None,
        timeouts,
        table.clone(),
    );
    let call = CallRef(7);
    let (pbx_local, agents_local) = (free_pair(), free_pair());
    hub.call_started(call, Side::Pbx, Default::default());
    let codec = |pt: u8, name: &str| Codec {
        pt: PayloadType::try_from(pt).unwrap(),
        name: name.into(),
        clock_rate: 8000,
        channels: None,
    };
    hub.upsert(
        call,
        vec![StreamSpec {
            index: 0,
            pbx_local,
            agents_local,
            pbx_remote: Some(pbx.local_addr().unwrap()),
            agents_remote: Some(agent.local_addr().unwrap()),
            codecs: vec![codec(0, "PCMU"), codec(TEL_PT, "telephone-event")],
            encrypted: false,
            srtp: Default::default(),
        }],
    );
    // Let the task bind its sockets.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Harness {
        _hub: hub,
        table,
        call,
        pbx,
        agent,
        to_pbx_side: SocketAddr::from(([127, 0, 0, 1], pbx_local.rtp())),
    }
}

fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    callmask::core::relay::rtp::RtpHeader {
        pt,
        marker,
        seq,
        ts,
        ssrc: 0x1234_5678,
    }
    .packet(payload)
}

/// A full-scale sine is +3.14 dBm0 (G.711).
#[allow(clippy::approx_constant)] // a level in dB that happens to read like π
const FULL_SCALE_SINE_DBM0: f32 = 3.14;

/// −10 dBm0 per component (a loud but ordinary keypad).
fn tone_amp() -> f32 {
    32767.0 / 10f32.powf(FULL_SCALE_SINE_DBM0 / 20.0) * 10f32.powf(-10.0 / 20.0)
}

/// µ-law audio: a quiet 300 Hz background with DTMF tones at (start sample, length, key).
fn audio(total: usize, tones: &[(usize, usize, char)]) -> Vec<u8> {
    (0..total)
        .map(|n| {
            let t = n as f32 / 8000.0;
            let mut s = 300.0 * (2.0 * PI * 300.0 * t).sin();
            for &(at, len, key) in tones {
                if n >= at && n < at + len {
                    let (lo, hi) = Digit::from_char(key).unwrap().frequencies();
                    s += tone_amp() * ((2.0 * PI * lo * t).sin() + (2.0 * PI * hi * t).sin());
                }
            }
            g711::linear_to_ulaw(s as i16)
        })
        .collect()
}

/// One packet per 20 ms of `pcmu`, then optional extra packets; returns what was sent.
async fn send(h: &Harness, packets: &[Vec<u8>]) {
    for p in packets {
        h.pbx.send_to(p, h.to_pbx_side).await.unwrap();
        tokio::time::sleep(Duration::from_micros(300)).await;
    }
}

async fn receive(h: &Harness) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(300), h.agent.recv(&mut buf)).await
    {
        got.push(buf[..n].to_vec());
    }
    got
}

fn audio_packets(pcmu: &[u8]) -> Vec<Vec<u8>> {
    pcmu.chunks(FRAME)
        .enumerate()
        .map(|(i, c)| rtp(0, i == 0, i as u16, (i * FRAME) as u32, c))
        .collect()
}

/// Power of the pair of `key` in a frame relative to the frame's energy (0..1).
fn pair_share(pcm: &[f32], key: char) -> f64 {
    let (lo, hi) = Digit::from_char(key).unwrap().frequencies();
    let p = |hz: f32| {
        let (re, im) =
            dsp::goertzel::dtft(pcm, 2.0 * std::f64::consts::PI * hz as f64 / 8000.0, None);
        (re * re + im * im) * 2.0 / (pcm.len() as f64).powi(2)
    };
    let energy: f64 = pcm.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / pcm.len() as f64;
    // Mean square of a sine of amplitude A is A²/2 and the DTFT power is (A N/2)²: p() ≈ A²/2.
    if energy < 1.0 {
        return 0.0;
    }
    (p(lo).min(p(hi)) * 2.0) / energy
}

fn decode(p: &[u8]) -> Vec<f32> {
    p[12..]
        .iter()
        .map(|&b| f32::from(g711::ulaw_to_linear(b)))
        .collect()
}

/// Tone samples (count) inside frames that still carry the key's pair, per tone.
fn leaked_samples(got: &[Vec<u8>], tones: &[(usize, usize, char)]) -> Vec<usize> {
    tones
        .iter()
        .map(|&(at, len, key)| {
            got.iter()
                .filter(|p| p[1] & 0x7f == 0)
                .filter(|p| pair_share(&decode(p), key) > 0.05)
                .map(|p| {
                    let s = u32::from_be_bytes([p[4], p[5], p[6], p[7]]) as usize;
                    (s + FRAME).min(at + len).saturating_sub(s.max(at))
                })
                .sum()
        })
        .collect()
}

fn tel_event(key: char, seq: u16, ts: u32, n: usize) -> Vec<Vec<u8>> {
    let code = Digit::from_char(key).unwrap().event_code();
    (0..n + 2)
        .map(|i| {
            let end = i + 1 >= n;
            let dur = (FRAME * (i + 1).min(n)) as u16;
            let mut pl = vec![code, if end { 0x80 | 10 } else { 10 }];
            pl.extend_from_slice(&dur.to_be_bytes());
            rtp(TEL_PT, i == 0, seq + i as u16, ts, &pl)
        })
        .collect()
}

const TONES: [(usize, usize, char); 3] = [
    (4000 + 37, 800, '5'),
    (8000 + 141, 560, '#'),
    (12000 + 80, 400, '1'),
];

#[tokio::test]
async fn pass_is_byte_identical() {
    let h = setup(AgentDtmfMode::Pass, None).await;
    let mut packets = audio_packets(&audio(16000, &TONES));
    let n = packets.len() as u16;
    packets.extend(tel_event('3', n, 16000, 5));
    send(&h, &packets).await;
    let got = receive(&h).await;
    assert_eq!(got, packets);
}

#[tokio::test]
async fn drop_clamps_inband_and_removes_events() {
    let h = setup(AgentDtmfMode::Drop, None).await;
    let mut packets = audio_packets(&audio(16000, &TONES));
    let n = packets.len() as u16;
    packets.extend(tel_event('3', n, 16000, 5));
    send(&h, &packets).await;
    let got = receive(&h).await;
    // Continuous: every audio packet arrives, header unchanged; no event packet arrives.
    assert_eq!(got.len(), n as usize, "audio packets only");
    for (g, s) in got.iter().zip(&packets) {
        assert_eq!(g[..12], s[..12]);
        assert_eq!(g.len(), s.len());
    }
    assert!(got.iter().all(|p| p[1] & 0x7f != TEL_PT));
    let leaks = leaked_samples(&got, &TONES);
    // Tone samples in packets relayed unmodified (the strict measure: what the agent heard).
    let unclamped: Vec<usize> = TONES
        .iter()
        .map(|&(at, len, _)| {
            got.iter()
                .zip(&packets)
                .enumerate()
                .filter(|(_, (g, s))| g == s)
                .map(|(i, _)| {
                    (i * FRAME + FRAME)
                        .min(at + len)
                        .saturating_sub((i * FRAME).max(at))
                })
                .sum()
        })
        .collect();
    eprintln!(
        "drop: tone samples in frames with the pair {leaks:?}, in unmodified frames {unclamped:?}"
    );
    assert!(unclamped.iter().all(|&l| l <= FRAME), "{unclamped:?}");
    assert!(leaks.iter().all(|&l| l <= FRAME), "{leaks:?}");
    // The background is relayed untouched outside the tones (± the clamp's hangover).
    let untouched = got.iter().zip(&packets).filter(|(g, s)| g == s).count();
    assert!(
        untouched >= n as usize - 3 * 12,
        "{untouched} of {n} untouched"
    );
}

/// Removed event packets leave no sequence gap: the agent's jitter buffer would read one as
/// loss and conceal it. Audio after the event continues the numbering.
#[tokio::test]
async fn drop_renumbers_so_the_agent_sees_no_gap() {
    let h = setup(AgentDtmfMode::Drop, None).await;
    let quiet = audio(8000, &[]);
    let before = audio_packets(&quiet[..4000]);
    let n = before.len() as u16;
    let events = tel_event('7', n, 4000, 5);
    let m = events.len() as u16;
    let after: Vec<Vec<u8>> = quiet[4000..]
        .chunks(FRAME)
        .enumerate()
        .map(|(i, c)| rtp(0, false, n + m + i as u16, (4000 + i * FRAME) as u32, c))
        .collect();
    let mut packets = before;
    packets.extend(events);
    packets.extend(after.iter().cloned());
    send(&h, &packets).await;
    let got = receive(&h).await;
    let total = 8000 / FRAME;
    assert_eq!(got.len(), total, "audio packets only");
    let seqs: Vec<u16> = got
        .iter()
        .map(|p| u16::from_be_bytes([p[2], p[3]]))
        .collect();
    assert_eq!(seqs, (0..total as u16).collect::<Vec<_>>());
    // Only the sequence number changed: timestamps and payloads are the sender's.
    for (g, s) in got[n as usize..].iter().zip(&after) {
        assert_eq!((&g[4..], g.len()), (&s[4..], s.len()));
    }
}

#[tokio::test]
async fn flat_tone_hides_the_key_not_the_press() {
    let h = setup(AgentDtmfMode::FlatTone, None).await;
    let mut packets = audio_packets(&audio(16000, &TONES));
    let n = packets.len() as u16;
    packets.extend(tel_event('3', n, 16000, 5));
    send(&h, &packets).await;
    let got = receive(&h).await;
    assert!(got.iter().all(|p| p[1] & 0x7f != TEL_PT));
    // The in-band packets arrive in order; the events became flat-tone audio packets.
    assert_eq!(
        got.len(),
        n as usize + 5,
        "audio plus one packet per event report"
    );
    let leaks = leaked_samples(&got, &TONES);
    eprintln!("flat-tone: tone samples leaked per tone: {leaks:?}");
    assert!(leaks.iter().all(|&l| l <= FRAME), "{leaks:?}");
    // No key is detectable on what the agent hears.
    let mut det = DtmfDetector::new(DtmfConfig::default());
    for p in &got {
        let pcm: Vec<i16> = p[12..].iter().map(|&b| g711::ulaw_to_linear(b)).collect();
        det.process(&pcm);
    }
    let mut keys = 0;
    while let Some(e) = det.poll_event() {
        if matches!(e, ToneEvent::Started { .. }) {
            keys += 1;
        }
    }
    assert_eq!(keys, 0, "a key was detectable on the agent leg");
    // But the flat tone is there, in the clamped frames and in the converted events.
    let flat = |p: &Vec<u8>| {
        let pcm = decode(p);
        let (re, im) = dsp::goertzel::dtft(&pcm, 2.0 * std::f64::consts::PI * 440.0 / 8000.0, None);
        (re * re + im * im) * 2.0 / (pcm.len() as f64).powi(2) > 1.0e5
    };
    let flat_frames = got.iter().filter(|p| flat(p)).count();
    assert!(flat_frames >= 5 + 3 * 3, "{flat_frames} flat-tone frames");
    let converted = &got[n as usize..];
    assert!(converted
        .iter()
        .all(|p| p[1] == 0 && p.len() == 12 + FRAME && flat(p)));
    let seqs: Vec<u16> = converted
        .iter()
        .map(|p| u16::from_be_bytes([p[2], p[3]]))
        .collect();
    assert_eq!(seqs, (n..n + 5).collect::<Vec<_>>());
}

#[tokio::test]
async fn rfc4733_trigger_sequence_toggles_secure_mode() {
    let h = setup(AgentDtmfMode::Pass, Some(("*7#", "*8#"))).await;
    assert_eq!(h.table.is_secure(h.call), Some(false));
    let mut packets = audio_packets(&audio(1600, &[]));
    let mut seq = packets.len() as u16;
    let mut ts = 1600u32;
    for key in ['1', '*', '7', '#'] {
        packets.extend(tel_event(key, seq, ts, 4));
        seq += 6;
        ts += 1600;
    }
    send(&h, &packets).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.table.is_secure(h.call), Some(true));
    let mut packets = Vec::new();
    for key in ['*', '8', '#'] {
        packets.extend(tel_event(key, seq, ts, 4));
        seq += 6;
        ts += 1600;
    }
    send(&h, &packets).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.table.is_secure(h.call), Some(false));
}

#[tokio::test]
async fn inband_trigger_sequence_toggles_secure_mode() {
    let h = setup(AgentDtmfMode::Drop, Some(("*7#", "*8#"))).await;
    let keys = [(2000, 640, '*'), (4000, 640, '7'), (6000, 640, '#')];
    send(&h, &audio_packets(&audio(8000, &keys))).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.table.is_secure(h.call), Some(true));
    // A wrong sequence does not release it.
    let keys = [(2000, 640, '*'), (4000, 640, '9'), (6000, 640, '#')];
    let more: Vec<Vec<u8>> = audio(8000, &keys)
        .chunks(FRAME)
        .enumerate()
        .map(|(i, c)| rtp(0, false, 50 + i as u16, (8000 + i * FRAME) as u32, c))
        .collect();
    send(&h, &more).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.table.is_secure(h.call), Some(true));
}
