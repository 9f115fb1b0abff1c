//! `speech_replay SET_DIR OUT_DIR CACHE_DIR [LOOKAHEAD_MS]` — a policy developer's tool: masks
//! every `call_*.wav` of an evaluation set like `callmask mask` does (same pipeline, same
//! speech masker), but remembers each segment's recognizer output in `CACHE_DIR`, so a second
//! run with a changed span policy replays the words instead of running Whisper again (a whole
//! set in seconds instead of minutes). Segments the cache does not hold (new cut points) go
//! to Whisper and are added.
//!
//! It also writes `OUT_DIR/call_NNN.words.jsonl` (segment times and the words heard) for
//! reading a synthetic corpus's decodes next to its labels. Words are written only by this
//! example, only for the corpus it is pointed at, never by the product.
#![allow(clippy::disallowed_methods)] // a measuring tool: it reads the clock, like main.rs

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use callmask::offline::speech::SpeechMasking;
use callmask::offline::{run_with_speech, MaskOptions};
use callmask::speech::{tuned_config, whisper};
use dsp::mask::MaskConfig;
use dsp::spoken::{Recognizer, RecognizerError, Word};
use dsp::{MediaTime, SampleRate};
use serde_json::{json, Value};

/// Whisper, behind a cache keyed by the segment's audio (state shared with `main`).
struct Cached(Rc<RefCell<State>>);

struct State {
    engine: Option<whisper::WhisperRecognizer>,
    cache: HashMap<String, Vec<(String, u64, u64, f32)>>,
    seen: Vec<Value>,
    hint: (u64, u64),
    misses: usize,
}

fn key(pcm: &[i16]) -> String {
    // FNV-1a over the samples and the length: segments are cut deterministically.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &s in pcm {
        for b in s.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{}-{h:016x}", pcm.len())
}

impl Recognizer for Cached {
    fn transcribe(&mut self, pcm: &[i16], rate: SampleRate) -> Result<Vec<Word>, RecognizerError> {
        let mut st = self.0.borrow_mut();
        let st = &mut *st;
        let k = key(pcm);
        if !st.cache.contains_key(&k) {
            if st.engine.is_none() {
                let model = config::types::SpeechModel::TinyEn;
                let dir = whisper::model_dir(None, model);
                st.engine = Some(
                    whisper::WhisperRecognizer::load(&dir, model)
                        .map_err(|_| RecognizerError::Engine("load"))?,
                );
            }
            let words = st
                .engine
                .as_mut()
                .ok_or(RecognizerError::Engine("load"))?
                .transcribe(pcm, rate)?;
            st.misses += 1;
            st.cache.insert(
                k.clone(),
                words
                    .iter()
                    .map(|w| {
                        (
                            w.text.clone(),
                            w.start.0,
                            w.end.0,
                            w.confidence.unwrap_or(1.0),
                        )
                    })
                    .collect(),
            );
        }
        let words: Vec<Word> = st.cache[&k]
            .iter()
            .map(|(t, s, e, c)| Word {
                text: t.clone(),
                start: MediaTime(*s),
                end: MediaTime(*e),
                confidence: Some(*c),
            })
            .collect();
        st.seen.push(json!({
            "start_ms": st.hint.0 / 8, "end_ms": st.hint.1 / 8,
            "words": words.iter().map(|w| json!([w.text, (st.hint.0 + w.start.0) / 8,
                (st.hint.0 + w.end.0) / 8, w.confidence])).collect::<Vec<_>>(),
        }));
        Ok(words)
    }

    fn segment_hint(&mut self, start: MediaTime, end: MediaTime) {
        self.0.borrow_mut().hint = (start.0, end.0);
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        anyhow::bail!("usage: speech_replay SET_DIR OUT_DIR CACHE_DIR [LOOKAHEAD_MS]");
    }
    let (set, out, cache_dir) = (
        PathBuf::from(&args[0]),
        PathBuf::from(&args[1]),
        PathBuf::from(&args[2]),
    );
    let lookahead_ms: u32 = match args.get(3) {
        Some(v) => v.parse()?,
        None => callmask::offline::speech::DEFAULT_SPEECH_LOOKAHEAD_MS,
    };
    std::fs::create_dir_all(&out)?;
    std::fs::create_dir_all(&cache_dir)?;
    let mut calls: Vec<PathBuf> = std::fs::read_dir(&set)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "wav")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("call_"))
        })
        .collect();
    calls.sort();
    let t0 = Instant::now();
    let mut misses = 0;
    let mut engine = None;
    for wav in calls {
        let stem = wav
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cache_file = cache_dir.join(format!("{stem}.json"));
        let cache = load_cache(&cache_file);
        let state = Rc::new(RefCell::new(State {
            engine: engine.take(),
            cache,
            seen: Vec::new(),
            hint: (0, 0),
            misses: 0,
        }));
        let mut speech = SpeechMasking {
            config: tuned_config(lookahead_ms),
            recognizer: Box::new(Cached(Rc::clone(&state))),
            engine: "whisper-tiny.en (replay)",
            clock: Instant::now,
        };
        let opts = MaskOptions {
            input: wav.clone(),
            output: out.join(format!("{stem}.wav")),
            report: Some(out.join(format!("{stem}.spans.json"))),
            pipeline: MaskConfig {
                lookahead_ms,
                ..MaskConfig::default()
            },
        };
        run_with_speech(&opts, Some(&mut speech)).map_err(|e| anyhow::anyhow!("{stem}: {e}"))?;
        drop(speech);
        let mut cached = state.borrow_mut();
        misses += cached.misses;
        engine = cached.engine.take();
        let lines: Vec<String> = cached.seen.iter().map(Value::to_string).collect();
        std::fs::write(
            out.join(format!("{stem}.words.jsonl")),
            lines.join("\n") + "\n",
        )?;
        save_cache(&cache_file, &cached.cache)?;
    }
    eprintln!(
        "speech_replay: done in {:.1} s ({misses} segments recognised afresh)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn load_cache(path: &Path) -> HashMap<String, Vec<(String, u64, u64, f32)>> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_cache(
    path: &Path,
    cache: &HashMap<String, Vec<(String, u64, u64, f32)>>,
) -> std::io::Result<()> {
    std::fs::write(
        path,
        serde_json::to_vec(cache).map_err(std::io::Error::other)?,
    )
}
