//! The embedded Whisper engine (crate `callmask-asr`) as a [`Recognizer`]: the live proxy's
//! recognizer pool (`io/speech`, `io/run.rs`) and `callmask mask` (`offline/speech.rs`) load
//! it from here.

use std::path::{Path, PathBuf};

use dsp::spoken::{Recognizer, RecognizerError, Word};
use dsp::{MediaTime, SampleRate};

use config::types::SpeechModel;

/// Where tiny.en is when `--speech-model` does not say: the root-owned folder
/// scripts/setup_asr.sh installs it in (`speech.model_dir`'s default), never a folder
/// under a world-writable directory such as /var/tmp (issue 13).
pub const DEFAULT_MODEL_DIR: &str = config::model::DEFAULT_MODEL_DIR;
/// Where base is when `--speech-model` does not say (as [`DEFAULT_MODEL_DIR`]).
pub const DEFAULT_BASE_MODEL_DIR: &str = config::model::DEFAULT_BASE_MODEL_DIR;

/// The model folder: the flag, else [`DEFAULT_MODEL_DIR`] (tiny.en) or
/// [`DEFAULT_BASE_MODEL_DIR`] (base). No environment variable is read.
pub fn model_dir(flag: Option<&Path>, model: SpeechModel) -> PathBuf {
    flag.map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(model.default_dir()))
}

/// Whisper tiny.en or base through CTranslate2 (one thread, int8, greedy).
pub struct WhisperRecognizer {
    engine: callmask_asr::WhisperEngine,
}

impl WhisperRecognizer {
    /// Load `model` from `dir`; a folder holding the other model family is refused. The
    /// error names the folder, never audio. Engine options are the asr crate's defaults
    /// (encoder window = the segment + 1 s); no environment variable changes them (the
    /// `ASR_*` measurement knobs are for the asr crate's examples only).
    pub fn load(dir: &Path, model: SpeechModel) -> Result<WhisperRecognizer, String> {
        let options = callmask_asr::EngineOptions {
            multilingual: Some(model.is_multilingual()),
            ..callmask_asr::EngineOptions::default()
        };
        callmask_asr::WhisperEngine::load_with(dir, options)
            .map(|engine| WhisperRecognizer { engine })
            .map_err(|e| e.to_string())
    }
}

impl Recognizer for WhisperRecognizer {
    fn transcribe(&mut self, pcm: &[i16], rate: SampleRate) -> Result<Vec<Word>, RecognizerError> {
        let words = if rate == SampleRate::NARROWBAND {
            self.engine.transcribe(pcm)
        } else if rate == SampleRate::WIDEBAND {
            let x: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
            self.engine.transcribe_16k(&x)
        } else {
            return Err(RecognizerError::BadInput("sample rate"));
        };
        // The engine's error text may quote the model's output: keep only its kind.
        let words = words.map_err(|_| RecognizerError::Engine("whisper"))?;
        Ok(words
            .into_iter()
            .map(|w| Word {
                text: w.text,
                // Word times in 8 kHz samples whatever the input rate (the trait's unit).
                start: MediaTime(SampleRate::NARROWBAND.samples_in_ms(w.start_ms)),
                end: MediaTime(SampleRate::NARROWBAND.samples_in_ms(w.end_ms)),
                confidence: Some(w.confidence),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use config::types::SpeechModel;

    /// Issue 13: with no `--speech-model`, `callmask mask` loads only from the root-owned
    /// folders setup installs (as `speech.model_dir`'s defaults), never from /var/tmp.
    #[test]
    fn default_model_folders_are_the_root_owned_install_folders() {
        for m in [SpeechModel::TinyEn, SpeechModel::Base] {
            let d = super::model_dir(None, m);
            assert_eq!(d, std::path::Path::new(m.default_dir()));
            assert!(d.starts_with("/var/lib/callmask/models"), "{}", d.display());
        }
        let flag = std::path::Path::new("/opt/models/x");
        assert_eq!(super::model_dir(Some(flag), SpeechModel::TinyEn), flag);
    }
}
