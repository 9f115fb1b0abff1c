//! `callmask mask` end to end: the real binary on real files.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callmask"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("callmask-cli-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// 16-bit PCM mono WAV.
fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let mut b = Vec::new();
    let data_len = (samples.len() * 2) as u32;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).expect("write wav");
}

fn read_pcm(path: &Path) -> Vec<i16> {
    let b = std::fs::read(path).expect("read");
    b[44..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// A DTMF '5' (770 + 1336 Hz) at about −10 dBm0 per tone between two stretches of a 440 Hz hum.
fn signal_with_tone(rate: u32, tone_start_ms: u32, tone_ms: u32) -> Vec<i16> {
    let n = (rate as usize) * 2;
    let (a, b) = (
        (tone_start_ms * rate / 1000) as usize,
        ((tone_start_ms + tone_ms) * rate / 1000) as usize,
    );
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let hum = 1500.0 * (std::f32::consts::TAU * 440.0 * t).sin();
            let tone = if (a..b).contains(&i) {
                7000.0 * (std::f32::consts::TAU * 770.0 * t).sin()
                    + 7000.0 * (std::f32::consts::TAU * 1336.0 * t).sin()
            } else {
                0.0
            };
            (hum + tone) as i16
        })
        .collect()
}

#[test]
fn masks_an_inband_tone_and_keeps_length() {
    for rate in [8000u32, 16000] {
        let d = tmpdir(&format!("tone{rate}"));
        let (input, output, report) = (d.join("in.wav"), d.join("out.wav"), d.join("spans.json"));
        let x = signal_with_tone(rate, 600, 120);
        write_wav(&input, rate, &x);
        let st = bin()
            .arg("mask")
            .args([&input, &output])
            .arg("--report")
            .arg(&report)
            .arg("--no-speech")
            .status()
            .expect("runs");
        assert!(st.success());
        let y = read_pcm(&output);
        assert_eq!(y.len(), x.len(), "same length");
        let ms = |m: u32| (m * rate / 1000) as usize;
        // The whole tone is silent, from its first sample.
        assert!(
            y[ms(600)..ms(720)].iter().all(|&s| s == 0),
            "tone muted at {rate} Hz"
        );
        // The hum well away from the tone is untouched.
        assert_eq!(&y[..ms(500)], &x[..ms(500)]);
        assert_eq!(&y[ms(900)..], &x[ms(900)..]);
        let rep: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
        assert_eq!(rep["spans"][0]["reason"], "dtmf_inband");
        assert!(
            !String::from_utf8_lossy(&std::fs::read(&report).expect("report")).contains("digit")
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn bad_input_gets_sysexits_codes_and_no_partial_output() {
    let d = tmpdir("bad");
    let out = d.join("out.wav");
    // 66: cannot open
    let st = bin()
        .arg("mask")
        .arg(d.join("nope.wav"))
        .arg(&out)
        .arg("--no-speech")
        .status()
        .expect("runs");
    assert_eq!(st.code(), Some(66));
    // 64: speech masking asked for (the default) but no recognizer in this build: refuse
    // rather than write a file with spoken identifiers in it (fail closed).
    #[cfg(not(feature = "whisper"))]
    {
        let o = bin()
            .arg("mask")
            .arg(d.join("nope.wav"))
            .arg(&out)
            .output()
            .expect("runs");
        assert_eq!(o.status.code(), Some(64));
        assert!(String::from_utf8_lossy(&o.stderr).contains("--no-speech"));
    }
    // 66: the engine is built in (the default) but its model cannot be loaded: refuse too.
    #[cfg(feature = "whisper")]
    {
        let o = bin()
            .arg("mask")
            .arg(d.join("nope.wav"))
            .arg(&out)
            .arg("--speech-model")
            .arg(d.join("no-model"))
            .output()
            .expect("runs");
        assert_eq!(o.status.code(), Some(66));
        assert!(String::from_utf8_lossy(&o.stderr).contains("--no-speech"));
        assert!(!out.exists());
    }
    // 65: not audio, one line of error
    let junk = d.join("junk.wav");
    std::fs::write(&junk, b"this is not a wav file at all").expect("write");
    let o = bin()
        .arg("mask")
        .arg(&junk)
        .arg(&out)
        .arg("--no-speech")
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(65));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).lines().count(),
        1,
        "one-line error"
    );
    // 65: truncated
    let good = d.join("good.wav");
    write_wav(&good, 8000, &[100; 800]);
    let bytes = std::fs::read(&good).expect("read");
    let cut = d.join("cut.wav");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let st = bin()
        .arg("mask")
        .arg(&cut)
        .arg(&out)
        .arg("--no-speech")
        .status()
        .expect("runs");
    assert_eq!(st.code(), Some(65));
    // 73: cannot create
    let st = bin()
        .arg("mask")
        .arg(&good)
        .arg(d.join("no-such-dir").join("out.wav"))
        .arg("--no-speech")
        .status()
        .expect("runs");
    assert_eq!(st.code(), Some(73));
    // 64: usage
    let st = bin().arg("mask").arg(&good).status().expect("runs");
    assert_eq!(st.code(), Some(64));
    assert!(!out.exists(), "no partial output after failures");
    let leftovers: Vec<_> = std::fs::read_dir(&d)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn raw_ulaw_round_trips_format() {
    let d = tmpdir("ulaw");
    let (input, output) = (d.join("in.ulaw"), d.join("out.ulaw"));
    let bytes: Vec<u8> = (0..8000u32).map(|i| (i % 256) as u8).collect();
    std::fs::write(&input, &bytes).expect("write");
    let st = bin()
        .arg("mask")
        .args([&input, &output])
        .arg("--no-speech")
        .status()
        .expect("runs");
    assert!(st.success());
    assert_eq!(std::fs::read(&output).expect("read").len(), bytes.len());
    let _ = std::fs::remove_dir_all(&d);
}

/// `--speech-model-name` picks tiny.en or base; a misspelt name, or a folder holding the other
/// model family, is refused before any output is written. Needs both models
/// (scripts/setup_asr.sh); missing fails unless CALLMASK_ALLOW_SKIP=1.
#[cfg(feature = "whisper")]
#[test]
fn speech_model_name_selects_the_model_and_is_checked_against_the_folder() {
    let d = tmpdir("model-name");
    let (input, out, report) = (d.join("in.wav"), d.join("out.wav"), d.join("spans.json"));
    write_wav(&input, 8000, &signal_with_tone(8000, 600, 120));
    // 64: not a model this build knows; the message lists the choices.
    let o = bin()
        .arg("mask")
        .args([&input, &out])
        .args(["--speech-model-name", "large"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tiny.en, base"), "{err}");
    assert!(!out.exists());

    let (tiny, base) = (
        Path::new("/var/lib/callmask/models/whisper-tiny.en"),
        Path::new("/var/lib/callmask/models/whisper-base"),
    );
    for m in [tiny, base] {
        if !m.join("model.bin").is_file() {
            assert_eq!(
                std::env::var("CALLMASK_ALLOW_SKIP").as_deref(),
                Ok("1"),
                "{} missing: run scripts/setup_asr.sh (or CALLMASK_ALLOW_SKIP=1)",
                m.display()
            );
            eprintln!("skipped: {} missing", m.display());
            return;
        }
    }
    // 66: base asked for, the folder holds tiny.en.
    let o = bin()
        .arg("mask")
        .args([&input, &out])
        .args(["--speech-model-name", "base", "--speech-model"])
        .arg(tiny)
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(66));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("base speech model") && err.contains("multilingual"),
        "{err}"
    );
    assert!(!out.exists());
    // base with its own folder masks, and the report names it.
    let o = bin()
        .arg("mask")
        .args([&input, &out])
        .arg("--report")
        .arg(&report)
        .args(["--speech-model-name", "base", "--speech-model"])
        .arg(base)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(rep["speech"]["engine"], "whisper-base", "{rep}");
    let _ = std::fs::remove_dir_all(&d);
}
