//! ITU-T Q.24 conformance of the in-band DTMF receiver, generated in-test in the manner of
//! spandsp's `dtmf_rx_tests.c` (which follows the Mitel test tape): every digit, bandwidth,
//! twist, dynamic range, guard time, noise, dial tone, dropouts, onset accuracy and how fast
//! a candidate resolves. Each case states the Q.24 outcome it expects.

use dsp::dtmf::{Digit, DtmfConfig, DtmfDetector, ToneEvent};
use dsp::MediaTime;

const FS: f64 = 8000.0;
/// Peak of a 0 dBm0 sine: a full-scale sine (32767) is +3.14 dBm0.
#[allow(clippy::approx_constant)] // 3.14 dBm0 is a level, not π
fn dbm0_amp(dbm0: f64) -> f64 {
    32767.0 / 10f64.powf(3.14 / 20.0) * 10f64.powf(dbm0 / 20.0)
}

/// Deterministic white noise (xorshift + sum of uniforms ≈ Gaussian); no RNG dependency.
struct Noise(u64);
impl Noise {
    fn next_uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }
    /// Unit-variance sample.
    fn gauss(&mut self) -> f64 {
        (0..12).map(|_| self.next_uniform()).sum()
    }
}

/// One tone burst: `digit` with the stronger component at `level` dBm0, `twist` dB = high
/// minus low, components off nominal by `dev` (relative), lasting `ms`.
#[derive(Clone, Copy)]
struct Burst {
    digit: char,
    level: f64,
    twist: f64,
    dev: (f64, f64),
    ms: f64,
}

impl Burst {
    fn new(digit: char) -> Self {
        Burst {
            digit,
            level: -10.0,
            twist: 0.0,
            dev: (0.0, 0.0),
            ms: 50.0,
        }
    }
    fn samples(&self) -> usize {
        (self.ms * FS / 1000.0).round() as usize
    }
    /// Add the burst to `x` starting at sample `at`.
    fn add_to(&self, x: &mut [f64], at: usize) {
        let d = Digit::from_char(self.digit).expect("test digits are valid keypad characters");
        let (fl, fh) = d.frequencies();
        let (fl, fh) = (
            f64::from(fl) * (1.0 + self.dev.0),
            f64::from(fh) * (1.0 + self.dev.1),
        );
        let (al, ah) = if self.twist <= 0.0 {
            (dbm0_amp(self.level), dbm0_amp(self.level + self.twist))
        } else {
            (dbm0_amp(self.level - self.twist), dbm0_amp(self.level))
        };
        for i in 0..self.samples() {
            let t = i as f64 / FS;
            x[at + i] += al * (2.0 * std::f64::consts::PI * fl * t).sin()
                + ah * (2.0 * std::f64::consts::PI * fh * t + 0.7).sin();
        }
    }
}

fn to_i16(x: &[f64]) -> Vec<i16> {
    x.iter()
        .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// What the receiver did over a signal.
#[derive(Debug, Default)]
struct Outcome {
    /// (digit char, onset, end) per reported tone.
    tones: Vec<(char, u64, Option<u64>)>,
    /// Longest time from `pending_since` to its resolution, samples (measured per chunk).
    max_pending: u64,
    /// Total samples during which a candidate was pending.
    pending_total: u64,
}

fn run_chunked(x: &[i16], chunk: usize) -> Outcome {
    let mut det = DtmfDetector::new(DtmfConfig::default());
    let mut out = Outcome::default();
    let mut open: Option<u64> = None;
    let mut last_now = 0;
    for c in x.chunks(chunk) {
        det.process(c);
        let now = det.now().samples();
        while let Some(e) = det.poll_event() {
            match e {
                ToneEvent::Started { digit, onset } => {
                    out.tones
                        .push((digit.to_char_unredacted(), onset.samples(), None));
                }
                ToneEvent::Ended { digit, end } => {
                    let t = out.tones.last_mut().expect("Ended follows Started");
                    assert_eq!(t.0, digit.to_char_unredacted());
                    assert!(t.2.is_none());
                    t.2 = Some(end.samples());
                }
            }
        }
        let p = det.pending_since().map(MediaTime::samples);
        if p.is_some() || open.is_some() {
            out.pending_total += now - last_now;
        }
        match (open, p) {
            (None, Some(p)) => open = Some(p),
            (Some(p0), None) => {
                out.max_pending = out.max_pending.max(now - p0);
                open = None;
            }
            (Some(p0), Some(p1)) if p1 != p0 => {
                out.max_pending = out.max_pending.max(now - p0);
                open = Some(p1);
            }
            _ => {}
        }
        last_now = now;
    }
    assert_eq!(det.events_dropped(), 0);
    out
}

fn run(x: &[i16]) -> Outcome {
    run_chunked(x, 160)
}

/// 100 ms of silence, the burst, 150 ms of silence.
fn single(b: Burst) -> (Vec<i16>, usize) {
    let lead = 800 + 37; // not block-aligned on purpose
    let mut x = vec![0.0; lead + b.samples() + 1200];
    b.add_to(&mut x, lead);
    (to_i16(&x), lead)
}

fn detected(b: Burst) -> Vec<char> {
    let (x, _) = single(b);
    run(&x).tones.iter().map(|t| t.0).collect()
}

const ALL: &str = "0123456789*#ABCD";

#[test]
fn q24_all_sixteen_digits_detected_once() {
    for c in ALL.chars() {
        let (x, lead) = single(Burst::new(c));
        let o = run(&x);
        assert_eq!(o.tones.len(), 1, "key {c}: {o:?}");
        let (d, onset, end) = o.tones[0];
        assert_eq!(d, c);
        assert!(onset <= lead as u64 && end.is_some_and(|e| e >= (lead + 400) as u64));
    }
}

#[test]
fn q24_bandwidth_accept_within_1_5_percent_reject_from_3_5_percent() {
    for c in "1593*D".chars() {
        for dev in [0.001, 0.005, 0.01, 0.015] {
            for s in [-1.0, 1.0] {
                for (dl, dh) in [(s * dev, 0.0), (0.0, s * dev), (s * dev, -s * dev)] {
                    let b = Burst {
                        dev: (dl, dh),
                        ..Burst::new(c)
                    };
                    assert_eq!(
                        detected(b),
                        vec![c],
                        "key {c} dev ({dl}, {dh}) must be detected"
                    );
                }
            }
        }
        for dev in [0.035, 0.04] {
            for s in [-1.0, 1.0] {
                // One component in tolerance and the other off, or both off.
                for (dl, dh) in [(s * dev, 0.0), (0.0, s * dev), (s * dev, s * dev)] {
                    for ms in [45.0, 200.0] {
                        let b = Burst {
                            dev: (dl, dh),
                            ms,
                            ..Burst::new(c)
                        };
                        let (x, _) = single(b);
                        let o = run(&x);
                        assert!(
                            o.tones.is_empty(),
                            "key {c} dev ({dl}, {dh}) must be rejected"
                        );
                        assert!(o.max_pending <= 70 * 8, "rejection must be quick: {o:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn q24_twist_normal_8_reverse_4_accepted_beyond_rejected() {
    for c in "147*2580".chars() {
        for (twist, ok) in [
            (-8.0, true),
            (-4.0, true),
            (0.0, true),
            (4.0, true),
            (-10.5, false),
            (-12.0, false),
            (6.5, false),
            (8.0, false),
        ] {
            for level in [-5.0, -20.0] {
                let b = Burst {
                    twist,
                    level,
                    ..Burst::new(c)
                };
                let got = detected(b);
                assert_eq!(!got.is_empty(), ok, "key {c} twist {twist} at {level} dBm0");
            }
        }
    }
}

#[test]
fn q24_dynamic_range_down_to_minus_30_dbm0() {
    for c in "3#9D".chars() {
        for level in [0.0, -10.0, -20.0, -26.0, -30.0] {
            for twist in [-8.0, 0.0, 4.0] {
                let b = Burst {
                    level,
                    twist,
                    ..Burst::new(c)
                };
                assert_eq!(
                    detected(b),
                    vec![c],
                    "key {c} at {level} dBm0 twist {twist}"
                );
            }
        }
        for level in [-38.0, -45.0] {
            let b = Burst {
                level,
                ..Burst::new(c)
            };
            assert!(
                detected(b).is_empty(),
                "key {c} at {level} dBm0 is below range"
            );
        }
    }
}

#[test]
fn q24_guard_time_40_ms_accepted_under_23_ms_rejected() {
    for c in "5A0".chars() {
        for ms in [10.0, 15.0, 20.0, 22.0] {
            for lead_shift in [0, 25, 51, 77] {
                let b = Burst {
                    ms,
                    ..Burst::new(c)
                };
                let mut x = vec![0.0; 900 + lead_shift + b.samples() + 1200];
                b.add_to(&mut x, 900 + lead_shift);
                let o = run(&to_i16(&x));
                assert!(
                    o.tones.is_empty(),
                    "key {c}: {ms} ms must be rejected: {o:?}"
                );
            }
        }
        for ms in [40.0, 43.0, 46.0, 49.0] {
            for lead_shift in [0, 25, 51, 77] {
                let b = Burst {
                    ms,
                    ..Burst::new(c)
                };
                let mut x = vec![0.0; 900 + lead_shift + b.samples() + 1200];
                b.add_to(&mut x, 900 + lead_shift);
                let o = run(&to_i16(&x));
                assert_eq!(o.tones.len(), 1, "key {c}: {ms} ms must be detected");
            }
        }
    }
}

/// White noise whose power is `snr_db` below the pair's total power.
fn add_noise(x: &mut [f64], b: &Burst, snr_db: f64, seed: u64) {
    let (al, ah) = if b.twist <= 0.0 {
        (dbm0_amp(b.level), dbm0_amp(b.level + b.twist))
    } else {
        (dbm0_amp(b.level - b.twist), dbm0_amp(b.level))
    };
    let sig_power = (al * al + ah * ah) / 2.0;
    let sigma = (sig_power / 10f64.powf(snr_db / 10.0)).sqrt();
    let mut n = Noise(seed);
    for v in x.iter_mut() {
        *v += sigma * n.gauss();
    }
}

#[test]
fn q24_signal_to_noise_15_db() {
    for (i, c) in ALL.chars().enumerate() {
        for level in [-10.0, -25.0] {
            let b = Burst {
                level,
                twist: -2.0,
                ms: 45.0,
                ..Burst::new(c)
            };
            let mut x = vec![0.0; 1000 + b.samples() + 1200];
            b.add_to(&mut x, 1000);
            add_noise(&mut x, &b, 15.0, 0x9e37_79b9 + i as u64);
            let o = run(&to_i16(&x));
            let got: Vec<char> = o.tones.iter().map(|t| t.0).collect();
            assert_eq!(got, vec![c], "key {c} at {level} dBm0, 15 dB S/N");
            assert!(o.tones[0].1 <= 1000, "onset must not be late in noise");
        }
    }
}

#[test]
fn noise_alone_raises_nothing() {
    let b = Burst::new('1');
    let mut x = vec![0.0; 8000 * 5];
    add_noise(&mut x, &b, 0.0, 7);
    let o = run(&to_i16(&x));
    assert!(o.tones.is_empty());
    assert!(
        o.pending_total < 8000 / 10,
        "pending {} samples in 5 s",
        o.pending_total
    );
}

#[test]
fn q24_digits_over_dial_tone() {
    for c in ALL.chars() {
        let b = Burst {
            level: -8.0,
            twist: -1.0,
            ..Burst::new(c)
        };
        let mut x = vec![0.0; 4000];
        let a = dbm0_amp(-13.0);
        for (i, v) in x.iter_mut().enumerate() {
            let t = i as f64 / FS;
            *v += a * (2.0 * std::f64::consts::PI * 350.0 * t).sin()
                + a * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
        }
        b.add_to(&mut x, 1500);
        let o = run(&to_i16(&x));
        let got: Vec<char> = o.tones.iter().map(|t| t.0).collect();
        assert_eq!(got, vec![c], "key {c} over −13 dBm0 dial tone");
    }
}

#[test]
fn q24_dropout_of_10_ms_is_bridged() {
    for c in "2B#".chars() {
        for shift in [0, 30, 60, 90] {
            let b = Burst {
                ms: 60.0,
                ..Burst::new(c)
            };
            let mut x = vec![0.0; 900 + shift + 2 * b.samples() + 80 + 1200];
            b.add_to(&mut x, 900 + shift);
            // The second part continues after an 80-sample (10 ms) gap.
            b.add_to(&mut x, 900 + shift + b.samples() + 80);
            let o = run(&to_i16(&x));
            assert_eq!(o.tones.len(), 1, "key {c} shift {shift}: {o:?}");
        }
    }
}

#[test]
fn q24_two_digits_separated_by_40_ms_are_two_tones() {
    let a = Burst::new('4');
    let b = Burst::new('7');
    let mut x = vec![0.0; 900 + a.samples() + 320 + b.samples() + 1200];
    a.add_to(&mut x, 900);
    b.add_to(&mut x, 900 + a.samples() + 320);
    let o = run(&to_i16(&x));
    let got: Vec<char> = o.tones.iter().map(|t| t.0).collect();
    assert_eq!(got, vec!['4', '7']);
    let (_, _, end) = o.tones[0];
    assert!(end.is_some_and(|e| e <= o.tones[1].1 + 320), "{o:?}");
}

#[test]
fn onset_errs_early_by_at_most_15_ms_and_end_errs_late() {
    let mut worst_early = 0u64;
    for (i, c) in ALL.chars().enumerate() {
        for shift in (0..102).step_by(17) {
            for (level, twist, snr) in [
                (-5.0, 0.0, None),
                (-28.0, -6.0, None),
                (-15.0, 3.0, Some(15.0)),
            ] {
                let b = Burst {
                    level,
                    twist,
                    ms: 40.0 + (i % 4) as f64 * 20.0,
                    ..Burst::new(c)
                };
                let lead = 1000 + shift;
                let mut x = vec![0.0; lead + b.samples() + 1200];
                b.add_to(&mut x, lead);
                if let Some(snr) = snr {
                    add_noise(&mut x, &b, snr, 99 + shift as u64);
                }
                let o = run(&to_i16(&x));
                assert_eq!(o.tones.len(), 1, "key {c} shift {shift} level {level}");
                let (_, onset, end) = o.tones[0];
                assert!(onset <= lead as u64, "onset late: {onset} > {lead}");
                let early = lead as u64 - onset;
                assert!(early <= 15 * 8, "onset {early} samples early");
                worst_early = worst_early.max(early);
                let true_end = (lead + b.samples()) as u64;
                assert!(
                    end.is_some_and(|e| e >= true_end),
                    "end early: {end:?} < {true_end}"
                );
                assert!(end.is_some_and(|e| e <= true_end + 30 * 8), "end too late");
            }
        }
    }
    assert!(worst_early > 0);
}

#[test]
fn pending_resolves_within_55_ms_of_its_start() {
    // Fine-grained chunks so the measurement is not dominated by the chunk size.
    for c in "1*D".chars() {
        for (dev, ms) in [(0.0, 45.0), (0.0, 20.0), (0.04, 200.0), (0.015, 60.0)] {
            let b = Burst {
                dev: (dev, 0.0),
                ms,
                ..Burst::new(c)
            };
            let (x, _) = single(b);
            let o = run_chunked(&x, 8);
            assert!(o.max_pending <= 55 * 8, "key {c} dev {dev} {ms} ms: {o:?}");
            assert!(
                o.pending_total <= 60 * 8,
                "key {c} dev {dev} {ms} ms: {o:?}"
            );
        }
    }
}

#[test]
fn any_chunk_size_gives_the_same_events() {
    let mut x = vec![0.0; 8000];
    Burst::new('6').add_to(&mut x, 700);
    Burst {
        ms: 120.0,
        level: -24.0,
        ..Burst::new('C')
    }
    .add_to(&mut x, 3000);
    let x = to_i16(&x);
    let reference = run_chunked(&x, 160).tones;
    assert_eq!(reference.len(), 2);
    for chunk in [1, 7, 102, 1000, 8000] {
        assert_eq!(run_chunked(&x, chunk).tones, reference, "chunk {chunk}");
    }
}

#[test]
fn steady_whistle_and_single_tones_are_rejected() {
    for f in [697.0, 941.0, 1209.0, 1633.0] {
        let mut x = vec![0.0; 8000];
        for (i, v) in x.iter_mut().enumerate().skip(800).take(4000) {
            *v = dbm0_amp(-10.0) * (2.0 * std::f64::consts::PI * f * i as f64 / FS).sin();
        }
        assert!(run(&to_i16(&x)).tones.is_empty(), "{f} Hz alone");
    }
}

/// Release-mode throughput of the receiver alone on a busy signal (noise + tones).
/// `cargo test --release -p callmask-dsp --test dtmf_conformance -- --ignored --nocapture`
#[test]
#[ignore]
#[allow(clippy::disallowed_methods)] // a measurement: it reads the clock on purpose
fn throughput_per_20_ms_frame() {
    let secs = 60;
    let mut x = vec![0.0; 8000 * secs];
    let b = Burst::new('8');
    add_noise(&mut x, &b, 10.0, 3);
    for k in 0..secs * 4 {
        Burst::new(ALL.as_bytes()[k % 16] as char).add_to(&mut x, k * 2000 + 300);
    }
    let x = to_i16(&x);
    let mut det = DtmfDetector::new(DtmfConfig::default());
    let t0 = std::time::Instant::now();
    let mut events = 0;
    for _ in 0..5 {
        for c in x.chunks(160) {
            det.process(c);
            while det.poll_event().is_some() {
                events += 1;
            }
        }
    }
    let per_frame = t0.elapsed().as_secs_f64() / (5.0 * x.len() as f64 / 160.0);
    println!(
        "{:.3} us per 160-sample frame ({:.0} frames/s), {events} events",
        per_frame * 1e6,
        1.0 / per_frame
    );
}
