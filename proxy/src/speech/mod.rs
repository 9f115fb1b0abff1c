//! Speech recognition shared by the live proxy (`io/speech`, `io/run.rs`) and `callmask mask`
//! (`offline/`): the recognizer adapters ([`whisper`], the embedded engine) and the masker
//! settings both run with ([`tuned_config`]). Both depend on this module; it depends on
//! neither. (The HTTP recognizer, `io::speech::remote`, is a network client and lives in `io`.)

use dsp::spoken::SpeechConfig;

#[cfg(feature = "whisper")]
pub mod whisper;

/// The masker settings for a pipeline look-ahead of `lookahead_ms`, live (`io/speech`) and in
/// `callmask mask` alike (tuned on the dev corpus; see scripts/eval_speech.sh).
///
/// The encoder window follows the segment (its length + 1 s), so CPU is about proportional to
/// the speech recognised (~0.035 CPU-s per audio-s on the dev corpus at 8 s); a long
/// look-ahead (≥ 6 s) buys long segments — whole answers — and a recognizer budget that
/// covers one call.
pub fn tuned_config(lookahead_ms: u32) -> SpeechConfig {
    let mut c = SpeechConfig::for_lookahead_ms(lookahead_ms);
    if lookahead_ms >= 6000 {
        c.recognizer_budget_ms = 1500;
        c.max_segment_ms = 8000;
    }
    c
}
