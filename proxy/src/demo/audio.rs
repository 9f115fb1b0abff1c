//! What the demo's two phones say: the caller's script (a labelled corpus excerpt, or a
//! synthetic one with speech-like bursts, in-band DTMF and RFC 4733 events), the agent's quieter
//! synthetic voice, and the RTP packet schedule built from them (20 ms PCMU packets, telephone
//! events as PT 101 with three end packets, audio paused during an event unless the corpus says
//! the tone is also in-band, as the eval kit's `rtpcap.build_schedule` does).

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use dsp::g711::ULAW_SILENCE;

/// Samples per 20 ms packet at 8 kHz.
pub(crate) const SPF: usize = 160;
/// Payload type of telephone-event in the demo's SDP.
pub(crate) const EVENT_PT: u8 = 101;

/// Q.23 frequencies: rows (low group) and columns (high group).
const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// One RTP packet to send, relative to the start of the stream.
#[derive(Debug, Clone)]
pub(crate) struct Packet {
    /// Send time, ms after media start.
    pub at_ms: u64,
    /// Payload type.
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// RTP timestamp offset (samples) from the stream's base timestamp.
    pub ts: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

/// A labelled RFC 4733 event packet (times relative to the start of the script).
#[derive(Debug, Clone, Copy)]
struct EventPacket {
    send_ms: u64,
    ts: u32,
    marker: bool,
    event: u8,
    end: bool,
    volume: u8,
    duration: u16,
}

/// What the caller sends, and what the demo expects callmask to find in it.
#[derive(Debug, Clone)]
pub(crate) struct CallerScript {
    /// Human description of the source (no digits heard on the call).
    pub source: String,
    /// µ-law audio.
    pub ulaw: Vec<u8>,
    events: Vec<EventPacket>,
    /// Event windows (start, end) in samples, whose audio packets are not sent.
    pauses: Vec<(usize, usize)>,
    /// Labelled in-band DTMF tones in the script.
    pub expected_inband: usize,
    /// Labelled RFC 4733 events.
    pub expected_events: usize,
    /// Labelled spoken identifiers.
    pub expected_spoken: usize,
    /// Where the caller's spoken identifiers are, ms from the start of the script.
    pub spoken_at: Vec<(u64, u64)>,
}

impl CallerScript {
    /// Duration in ms.
    pub(crate) fn duration_ms(&self) -> u64 {
        (self.ulaw.len() / 8) as u64
    }

    /// The RTP schedule: PCMU PT 0 packet k at (k+1)·20 ms, events at their send times.
    pub(crate) fn schedule(&self) -> Vec<Packet> {
        let nfr = self.ulaw.len().div_ceil(SPF);
        let mut paused = vec![false; nfr];
        for &(s, e) in &self.pauses {
            let (k0, k1) = (s / SPF, e.div_ceil(SPF).min(nfr));
            for p in paused.iter_mut().take(k1).skip(k0) {
                *p = true;
            }
        }
        let mut items: Vec<(u64, u8, Packet)> = Vec::with_capacity(nfr + self.events.len());
        for k in 0..nfr {
            if paused[k] {
                continue;
            }
            let mut payload = vec![ULAW_SILENCE; SPF];
            let end = ((k + 1) * SPF).min(self.ulaw.len());
            payload[..end - k * SPF].copy_from_slice(&self.ulaw[k * SPF..end]);
            items.push((
                ((k + 1) * 20) as u64,
                0,
                Packet {
                    at_ms: ((k + 1) * 20) as u64,
                    pt: 0,
                    marker: k == 0 || paused[k - 1],
                    ts: (k * SPF) as u32,
                    payload,
                },
            ));
        }
        for e in &self.events {
            let payload = vec![
                e.event,
                (if e.end { 0x80 } else { 0 }) | (e.volume & 0x3F),
                (e.duration >> 8) as u8,
                e.duration as u8,
            ];
            items.push((
                e.send_ms,
                1,
                Packet {
                    at_ms: e.send_ms,
                    pt: EVENT_PT,
                    marker: e.marker,
                    ts: e.ts,
                    payload,
                },
            ));
        }
        items.sort_by_key(|(t, kind, _)| (*t, *kind));
        items.into_iter().map(|(_, _, p)| p).collect()
    }
}

/// The agent's RTP schedule: a quieter synthetic voice for `ms`.
pub(crate) fn agent_schedule(ms: u64) -> Vec<Packet> {
    let n = (ms * 8) as usize;
    let mut pcm = vec![0i16; n];
    let mut rng = Lcg(0x00C0_FFEE);
    // The agent talks in the first and last part, and listens in the middle.
    let talk = [(0.05, 0.25), (0.75, 0.95)];
    for (a, b) in talk {
        let (s, e) = ((n as f64 * a) as usize, (n as f64 * b) as usize);
        speech_like(&mut pcm[s..e], 210.0, 0.1, &mut rng);
    }
    let ulaw: Vec<u8> = pcm.iter().map(|&s| dsp::g711::linear_to_ulaw(s)).collect();
    CallerScript {
        source: String::new(),
        ulaw,
        events: Vec::new(),
        pauses: Vec::new(),
        expected_inband: 0,
        expected_events: 0,
        expected_spoken: 0,
        spoken_at: Vec::new(),
    }
    .schedule()
}

/// Deterministic pseudo-random numbers (the demo is the same every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }

    fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.next()
    }
}

/// Fill `out` with speech-like audio: syllables of a harmonic voice (gliding pitch around
/// `f0`, two formant peaks) with raised-cosine envelopes, separated by short pauses, at peak
/// amplitude `level` of full scale. Rich in harmonics, so no DTMF receiver takes it for a tone.
fn speech_like(out: &mut [i16], f0: f64, level: f64, rng: &mut Lcg) {
    let fs = 8000.0;
    let mut i = 0usize;
    while i < out.len() {
        let syl = (rng.range(0.12, 0.26) * fs) as usize;
        let gap = (rng.range(0.04, 0.12) * fs) as usize
            + if rng.next() < 0.2 {
                (0.3 * fs) as usize
            } else {
                0
            };
        let len = syl.min(out.len() - i);
        let (f_start, f_end) = (f0 * rng.range(0.9, 1.15), f0 * rng.range(0.85, 1.1));
        let (f1, f2) = (rng.range(450.0, 800.0), rng.range(1100.0, 2100.0));
        let mut phase = 0.0f64;
        for j in 0..len {
            let t = j as f64 / len.max(1) as f64;
            let f = f_start + (f_end - f_start) * t;
            phase += 2.0 * PI * f / fs;
            let env = 0.5 - 0.5 * (2.0 * PI * t).cos();
            let mut v = 0.0;
            let mut k = 1.0;
            while k * f < 3400.0 {
                let h = k * f;
                let w = (1.0 / k)
                    * (0.3
                        + 2.0 * (-((h - f1) / 160.0).powi(2)).exp()
                        + 1.2 * (-((h - f2) / 260.0).powi(2)).exp());
                v += w * (k * phase).sin();
                k += 1.0;
            }
            out[i + j] = (v * 0.35 * level * env * 32767.0).clamp(-32767.0, 32767.0) as i16;
        }
        i += len + gap;
    }
}

/// Level of a full-scale sine in µ-law (the spandsp and eval-corpus convention). Not π.
#[allow(clippy::approx_constant)]
const FULL_SCALE_DBM0: f64 = 3.14;

/// Amplitude of one sine component at `dbm0`.
fn amplitude_dbm0(dbm0: f64) -> f64 {
    32767.0 * 10f64.powf((dbm0 - FULL_SCALE_DBM0) / 20.0)
}

/// A caller reading a made-up card number ("four nine one seven, three eight two zero, five
/// five six one, two zero three four"): 6.4 s of µ-law, not from the eval corpus. Made once with
/// `espeak-ng -v en+m3 -s 145 -w d.wav "<the words>"` (espeak-ng 1.51, Debian) and
/// `sox d.wav -r 8000 -c 1 -e u-law -t raw card_number.ulaw sinc 300-3400`: small enough to
/// ship, a telephone-band voice Whisper has to hear for itself.
const CARD_NUMBER_CLIP: &[u8] = include_bytes!("card_number.ulaw");
/// Calls at least this long carry the spoken card number.
pub(crate) const CLIP_MIN_CALL_MS: u64 = 12_000;

/// The synthetic caller: speech-like bursts, four in-band DTMF keys (Q.23, −10 dBm0 per tone,
/// 80 ms on / 80 ms off), three RFC 4733 events and, in calls of at least
/// [`CLIP_MIN_CALL_MS`], a spoken card number, in `ms` (at least 4000) of audio.
pub(crate) fn synthetic(ms: u64) -> CallerScript {
    let ms = ms.max(4000);
    let n = (ms * 8) as usize;
    let mut pcm = vec![0i16; n];
    let mut rng = Lcg(0x5EC0_DE01);
    let with_clip = ms >= CLIP_MIN_CALL_MS;
    // Layout (fractions of the call): speech, keys at 30 %, speech, events at 55 %, speech;
    // with the card number: keys at 15 %, events at 30 %, the card number from 45 %.
    let (f_tones, f_events) = if with_clip {
        (0.15, 0.30)
    } else {
        (0.30, 0.55)
    };
    let tones_at = (ms as f64 * f_tones) as u64 / 20 * 20;
    let events_at = (ms as f64 * f_events) as u64 / 20 * 20;
    let clip_ms = (CARD_NUMBER_CLIP.len() / 8) as u64;
    let clip_at = (ms as f64 * 0.45) as u64 / 20 * 20;
    let clip = with_clip.then_some((clip_at, (clip_at + clip_ms).min(ms)));
    let keys: [(usize, usize); 4] = [(1, 0), (0, 1), (2, 0), (0, 0)];
    let a = amplitude_dbm0(-10.0);
    for (d, &(r, c)) in keys.iter().enumerate() {
        let start = tones_at + d as u64 * 160;
        let s0 = (start * 8) as usize;
        for j in 0..640 {
            let t = j as f64 / 8000.0;
            let v = a * ((2.0 * PI * LOW[r] * t).sin() + (2.0 * PI * HIGH[c] * t).sin());
            if let Some(x) = pcm.get_mut(s0 + j) {
                *x = v.clamp(-32767.0, 32767.0) as i16;
            }
        }
    }
    let tones_end = tones_at + 4 * 160;
    // Three events of 120 ms, 100 ms apart; six packets each plus two repeated end packets.
    let mut events = Vec::new();
    let mut pauses = Vec::new();
    let codes = [9u8, 3, 11];
    for (i, &code) in codes.iter().enumerate() {
        let start_ms = events_at + i as u64 * 220;
        let ts = (start_ms * 8) as u32;
        pauses.push(((start_ms * 8) as usize, ((start_ms + 120) * 8) as usize));
        for p in 0..8u64 {
            let dur = ((p.min(5) + 1) * 160) as u16;
            events.push(EventPacket {
                send_ms: start_ms + 20 + p * 20,
                ts,
                marker: p == 0,
                event: code,
                end: p >= 5,
                volume: 10,
                duration: dur,
            });
        }
    }
    let events_end = events_at + 3 * 220;
    // Speech everywhere else, 250 ms clear of the keys and events.
    let mut busy = vec![
        (tones_at.saturating_sub(250), tones_end + 250),
        (events_at.saturating_sub(250), events_end + 250),
    ];
    if let Some((c0, c1)) = clip {
        busy.push((c0.saturating_sub(250), c1 + 250));
        let at = (c0 * 8) as usize;
        for (o, &b) in pcm[at..].iter_mut().zip(CARD_NUMBER_CLIP) {
            *o = dsp::g711::ulaw_to_linear(b);
        }
    }
    let mut segs = Vec::new();
    let mut from = 200u64;
    for (b0, b1) in busy {
        if b0 > from {
            segs.push((from, b0));
        }
        from = from.max(b1);
    }
    if ms.saturating_sub(200) > from {
        segs.push((from, ms - 200));
    }
    for (s, e) in segs {
        speech_like(
            &mut pcm[(s * 8) as usize..(e * 8) as usize],
            140.0,
            0.4,
            &mut rng,
        );
    }
    CallerScript {
        source: format!(
            "synthetic caller ({:.1} s): speech-like bursts, 4 in-band DTMF keys, 3 RFC 4733 events{}",
            ms as f64 / 1000.0,
            clip.map_or(String::new(), |(a, b)| format!(
                ", a spoken card number at {:.1}-{:.1} s",
                a as f64 / 1000.0,
                b as f64 / 1000.0
            ))
        ),
        ulaw: pcm.iter().map(|&s| dsp::g711::linear_to_ulaw(s)).collect(),
        events,
        pauses,
        expected_inband: 4,
        expected_events: 3,
        expected_spoken: usize::from(clip.is_some()),
        spoken_at: clip.into_iter().collect(),
    }
}

/// Corpus calls with in-band DTMF, RFC 4733 events and a spoken identifier, and the excerpt
/// (ms) the demo plays.
/// call_014 first: the caller reads a card number (35.0-40.3 s).
const CORPUS: [(&str, u64, u64); 2] = [("call_014", 17_000, 40_800), ("call_003", 34_000, 54_000)];

/// Find the eval corpus (`shared/eval/data/dev`) above the current directory or the binary.
pub(crate) fn find_corpus() -> Option<(PathBuf, &'static str, u64, u64)> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(d) = std::env::current_dir() {
        roots.push(d);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            roots.push(d.to_path_buf());
        }
    }
    for root in roots {
        for anc in root.ancestors() {
            let dir = anc.join("shared/eval/data/dev");
            for (name, s, e) in CORPUS {
                if dir.join(format!("{name}.ulaw")).is_file()
                    && dir.join(format!("{name}.json")).is_file()
                {
                    return Some((dir, name, s, e));
                }
            }
        }
    }
    None
}

fn num(v: &serde_json::Value, key: &str) -> Option<u64> {
    v.get(key)
        .and_then(|x| x.as_u64().or_else(|| x.as_f64().map(|f| f.max(0.0) as u64)))
}

/// A corpus excerpt `[start_ms, end_ms)` of `dir/name.ulaw` with its labelled RFC 4733 packets.
pub(crate) fn corpus_excerpt(
    dir: &Path,
    name: &str,
    start_ms: u64,
    end_ms: u64,
) -> Result<CallerScript, String> {
    let ulaw_path = dir.join(format!("{name}.ulaw"));
    let json_path = dir.join(format!("{name}.json"));
    let ulaw = std::fs::read(&ulaw_path)
        .map_err(|e| format!("cannot read {}: {e}", ulaw_path.display()))?;
    let labels: serde_json::Value = std::fs::read(&json_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot read {}: {e}", json_path.display()))?;
    let end_ms = end_ms.min((ulaw.len() / 8) as u64);
    if end_ms <= start_ms + 1000 {
        return Err(format!(
            "{} is too short for the excerpt",
            ulaw_path.display()
        ));
    }
    let (s, e) = ((start_ms * 8) as usize, (end_ms * 8) as usize);
    let inside = |t: u64| t >= start_ms && t + 300 < end_ms;
    let list = |k: &str| {
        labels
            .get(k)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let expected_inband = list("dtmf_inband")
        .iter()
        .filter(|t| num(t, "start_ms").is_some_and(inside))
        .count();
    let spoken_at: Vec<(u64, u64)> = list("spoken_id")
        .iter()
        .filter(|t| num(t, "start_ms").is_some_and(inside))
        .filter(|t| t.get("speaker").and_then(|x| x.as_str()) == Some("caller"))
        .filter_map(|t| Some((num(t, "start_ms")? - start_ms, num(t, "end_ms")? - start_ms)))
        .collect();
    let expected_spoken = spoken_at.len();
    let mut pauses = Vec::new();
    let mut expected_events = 0;
    for ev in list("rfc4733_events") {
        let (Some(st), Some(d)) = (num(&ev, "start_ms"), num(&ev, "duration_ms")) else {
            continue;
        };
        if !inside(st) {
            continue;
        }
        expected_events += 1;
        if ev.get("dual_inband").and_then(|x| x.as_bool()) != Some(true) {
            pauses.push((
                ((st - start_ms) * 8) as usize,
                ((st + d - start_ms) * 8) as usize,
            ));
        }
    }
    let mut events = Vec::new();
    for p in list("rfc4733_packets") {
        let (Some(send), Some(ts)) = (num(&p, "send_ms"), num(&p, "rtp_ts")) else {
            continue;
        };
        if !(start_ms..end_ms).contains(&send) || ts < start_ms * 8 {
            continue;
        }
        let flag = |k: &str| p.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
        events.push(EventPacket {
            send_ms: send - start_ms,
            ts: (ts - start_ms * 8) as u32,
            marker: flag("marker"),
            event: num(&p, "event").unwrap_or(0).min(255) as u8,
            end: flag("end"),
            volume: num(&p, "volume").unwrap_or(10).min(63) as u8,
            duration: num(&p, "duration").unwrap_or(0).min(65_535) as u16,
        });
    }
    Ok(CallerScript {
        source: format!(
            "eval corpus {name}.ulaw, {:.1}-{:.1} s (labelled: {expected_inband} in-band DTMF tones, \
             {expected_events} RFC 4733 events, {expected_spoken} spoken identifier(s) by the caller)",
            start_ms as f64 / 1000.0,
            end_ms as f64 / 1000.0
        ),
        ulaw: ulaw[s..e].to_vec(),
        events,
        pauses,
        expected_inband,
        expected_events,
        expected_spoken,
        spoken_at,
    })
}
