//! The tap's G.722 decoder (`dsp::g722`, used through `callmask::core::codec`) checked
//! bit-exact against spandsp's G.722 (tests/tools/g722_ref.c), whose own test suite runs the
//! ITU-T G.722 test vectors. The ITU vectors cannot be fetched here, so spandsp stands in as
//! the oracle (test-only: spandsp is LGPL and never linked into callmask).
//!
//! Needs gcc and Debian's `libspandsp-dev` (scripts/setup.sh installs both); fails when they
//! are missing unless CALLMASK_ALLOW_SKIP=1.

use std::path::{Path, PathBuf};
use std::process::Command;

use callmask::core::codec::{TapDecoder, MAX_TAP_SAMPLES};
use config::types::MediaCodec;
use dsp::g722::{G722Decoder, G722Output};

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("callmask-g722-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Builds the spandsp reference coder, or `None` when skipping is allowed.
fn reference(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/g722_ref.c");
    let bin = dir.join("g722_ref");
    let built = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .args(["-lspandsp", "-lm"])
        .status();
    match built {
        Ok(s) if s.success() => Some(bin),
        other => {
            let why = format!(
                "cannot build the spandsp G.722 reference ({other:?}): install gcc and \
                 libspandsp-dev (scripts/setup.sh)"
            );
            if std::env::var("CALLMASK_ALLOW_SKIP").as_deref() == Ok("1") {
                eprintln!("SKIP: {why}");
                None
            } else {
                panic!("{why}");
            }
        }
    }
}

fn run(bin: &Path, mode: &str, input: &Path, output: &Path) {
    let s = Command::new(bin)
        .arg(mode)
        .arg(input)
        .arg(output)
        .status()
        .expect("run g722_ref");
    assert!(s.success(), "g722_ref {mode} failed: {s}");
}

fn s16(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// 3 s at 16 kHz exercising the whole range: a swept tone (100 Hz → 7.5 kHz), a DTMF pair,
/// full-scale square bursts and pseudo-random noise (the adaptive quantizers' extremes).
fn signal() -> Vec<i16> {
    let rate = 16_000.0;
    let mut seed: u32 = 0x1234_5678;
    (0..48_000)
        .map(|i| {
            let t = f64::from(i) / rate;
            let v = match i / 16_000 {
                0 => 12_000.0 * (2.0 * std::f64::consts::PI * (100.0 * t + 1233.0 * t * t)).sin(),
                1 => {
                    6000.0 * (2.0 * std::f64::consts::PI * 697.0 * t).sin()
                        + 6000.0 * (2.0 * std::f64::consts::PI * 1209.0 * t).sin()
                }
                _ if i % 4000 < 200 => {
                    if i % 400 < 200 {
                        32_767.0
                    } else {
                        -32_768.0
                    }
                }
                _ => {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    f64::from((seed >> 16) as i16) / 2.0
                }
            };
            v.clamp(-32_768.0, 32_767.0) as i16
        })
        .collect()
}

/// The first sample where `got` differs from spandsp's `reference`, other than where spandsp
/// wrapped around on overload: it casts the QMF output to 16 bits without saturating (a
/// full-scale square wave overshoots), where `dsp::g722` saturates.
fn first_difference(got: &[i16], reference: &[i16]) -> Option<(usize, i16, i16)> {
    got.iter()
        .zip(reference)
        .enumerate()
        .find(|(_, (&x, &y))| {
            let wrapped = (x == i16::MAX && y < 0) || (x == i16::MIN && y > 0);
            x != y && !wrapped
        })
        .map(|(i, (x, y))| (i, *x, *y))
}

#[test]
fn g722_decoder_matches_spandsp_bit_exact() {
    let dir = tmpdir();
    let Some(bin) = reference(&dir) else {
        return;
    };
    let pcm = signal();
    let pcm_path = dir.join("in.s16");
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&pcm_path, bytes).expect("write input");
    let code_path = dir.join("ref.g722");
    run(&bin, "encode", &pcm_path, &code_path);
    let code = std::fs::read(&code_path).expect("read ref code");
    assert_eq!(code.len(), pcm.len() / 2);

    // 16 kHz (the ITU-specified output), decoded in 20 ms packets.
    let out16 = dir.join("ref16.s16");
    run(&bin, "decode16", &code_path, &out16);
    let reference16 = s16(&std::fs::read(&out16).expect("read ref16"));
    let mut wide = G722Decoder::new(G722Output::Wide);
    let mut got16 = Vec::new();
    let mut buf = [0i16; 320];
    for packet in code.chunks(160) {
        let k = wide.decode(packet, &mut buf);
        got16.extend_from_slice(&buf[..k]);
    }
    assert_eq!(got16.len(), reference16.len());
    assert_eq!(
        first_difference(&got16, &reference16),
        None,
        "16 kHz decodes differ"
    );
    let saturated = got16
        .iter()
        .zip(&reference16)
        .filter(|(a, b)| a != b)
        .count();
    eprintln!(
        "[figure] G.722 16 kHz: {} samples bit-exact with spandsp, {saturated} saturated where \
         spandsp wraps",
        got16.len() - saturated
    );

    // The tap's 8 kHz lower sub-band through `TapDecoder` equals spandsp's 8 kHz decode.
    let out8 = dir.join("ref8.s16");
    run(&bin, "decode8", &code_path, &out8);
    let reference8 = s16(&std::fs::read(&out8).expect("read ref8"));
    let mut tap = TapDecoder::new(MediaCodec::G722).expect("decoder");
    let mut got8 = Vec::new();
    let mut buf = [0i16; MAX_TAP_SAMPLES];
    for packet in code.chunks(160) {
        let k = tap.decode(packet, &mut buf).expect("decode");
        got8.extend_from_slice(&buf[..k]);
    }
    assert_eq!(got8.len(), reference8.len());
    assert_eq!(
        first_difference(&got8, &reference8),
        None,
        "8 kHz decodes differ"
    );

    // And the lower band is the input's 0–4 kHz content: the DTMF second (697 + 1209 Hz, both
    // in the lower band) correlates with the input taken at every other sample.
    let (input, decoded) = (&pcm[16_000..32_000], &got8[8_000..16_000]);
    let mut best = 0.0f64;
    for lag in 0..40 {
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for i in 0..7_900 {
            let (x, y) = (f64::from(input[2 * i]), f64::from(decoded[i + lag]));
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        best = best.max(ab / (aa.sqrt() * bb.sqrt()));
    }
    eprintln!("[figure] G.722 lower band vs input (DTMF second): correlation {best:.4}");
    assert!(best > 0.95, "correlation {best}");
    let _ = std::fs::remove_dir_all(&dir);
}
