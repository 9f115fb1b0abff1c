//! The remote speech engine: an OpenAI-compatible `POST /v1/audio/transcriptions` client
//! behind [`dsp::spoken::Recognizer`], for deployments whose decoding outgrows one machine.
//!
//! Blocking on purpose: the worker pool calls [`Recognizer::transcribe`] from a plain thread,
//! so a small synchronous client (ureq, keep-alive connections shared by clones) is all it
//! needs.
//! One segment = one request: the PCM as a 16-bit mono WAV in a multipart form, asking for
//! `verbose_json` with word timestamps. Servers that give segments only (or text only) still
//! get every token a time inside the segment, spread evenly, so numbers are masked even
//! without word times (fail toward muting).
//!
//! PHI: the transcript exists only in the returned [`Word`]s. Nothing here logs, formats or
//! puts into an error any part of a response body.

use std::io;
use std::time::Duration;

use dsp::spoken::{Recognizer, RecognizerError, Word};
use dsp::{MediaTime, SampleRate};
use serde::Deserialize;

/// Model name sent when none is configured (what OpenAI calls its hosted Whisper).
pub const DEFAULT_MODEL: &str = config::types::RemoteModel::DEFAULT;

/// Largest response body read; a transcript of a few seconds is a few kB.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// Word times are reported in 8 kHz samples whatever rate the server was sent.
const OUT_RATE: f64 = SampleRate::NARROWBAND.hz() as f64;

/// Why a remote recognizer could not be set up (bad settings, found before any call).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The base URL is not an absolute http(s) URL.
    #[error("speech.remote_url: {0:?} is not an http(s) base URL — write e.g. \"http://127.0.0.1:8000\"")]
    BadUrl(String),
    /// The model name cannot be sent as a form field.
    #[error(
        "speech.remote_model: the model name must be 1–128 printable characters without quotes"
    )]
    BadModel,
    /// The API key cannot be sent as a header (never echoed).
    #[error("speech.remote_api_key_file: the key must be printable ASCII without spaces")]
    BadApiKey,
    /// A zero timeout would fail every request.
    #[error("the remote recognizer timeout must be above zero")]
    ZeroTimeout,
    /// `engine = "remote"` without a URL (config validation normally catches it).
    #[error("speech.remote_url: the remote engine needs a server URL — add remote_url = \"http://HOST:PORT\" to [speech]")]
    NoUrl,
    /// The API key file could not be read (its content is never echoed).
    #[error("speech.remote_api_key_file: cannot read {path}: {kind} — create it with the key on one line, readable by callmask")]
    ApiKeyFile {
        /// The configured path.
        path: String,
        /// What went wrong.
        kind: io::ErrorKind,
    },
}

/// An OpenAI-compatible transcription server as a [`Recognizer`]. Clones share one
/// connection pool, so a pool of workers can each hold a clone.
#[derive(Clone)]
pub struct RemoteRecognizer {
    agent: ureq::Agent,
    endpoint: String,
    model: String,
    api_key: Option<String>,
}

impl std::fmt::Debug for RemoteRecognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRecognizer")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl RemoteRecognizer {
    /// A recognizer posting to `{base_url}/v1/audio/transcriptions` (a base URL that already
    /// ends in `/v1` is used as is), each request bounded by `timeout` from connect to the
    /// last byte of the answer.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, RemoteError> {
        if timeout.is_zero() {
            return Err(RemoteError::ZeroTimeout);
        }
        let endpoint = endpoint_for(base_url)?;
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // A redirect would drop the POST body anyway; report it as an error status.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("callmask/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            agent: ureq::Agent::new_with_config(config),
            endpoint,
            model: DEFAULT_MODEL.to_owned(),
            api_key: None,
        })
    }

    /// The recognizer `[speech]` describes: URL, model and API key file (read now, once).
    /// `timeout` bounds each request; the masking look-ahead is a sensible value, since an
    /// answer arriving later is dropped and its segment muted anyway.
    pub fn from_config(cfg: &config::SpeechConfig, timeout: Duration) -> Result<Self, RemoteError> {
        let url = cfg.remote_url.as_ref().ok_or(RemoteError::NoUrl)?;
        let mut rec = Self::new(url.as_str(), timeout)?.with_model(cfg.remote_model.as_str())?;
        if let Some(path) = &cfg.remote_api_key_file {
            let key = std::fs::read_to_string(path).map_err(|e| RemoteError::ApiKeyFile {
                path: path.display().to_string(),
                kind: e.kind(),
            })?;
            rec = rec.with_api_key(&key)?;
        }
        Ok(rec)
    }

    /// Ask for another model than [`DEFAULT_MODEL`] (servers name theirs differently).
    pub fn with_model(mut self, model: &str) -> Result<Self, RemoteError> {
        // The config's rule, so a name that loads from a file is always sendable.
        let model =
            config::types::RemoteModel::try_from(model).map_err(|_| RemoteError::BadModel)?;
        self.model = model.as_str().to_owned();
        Ok(self)
    }

    /// Send `Authorization: Bearer <key>` (hosted services need it). Surrounding whitespace,
    /// such as a key file's final newline, is ignored.
    pub fn with_api_key(mut self, key: &str) -> Result<Self, RemoteError> {
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RemoteError::BadApiKey);
        }
        self.api_key = Some(key.to_owned());
        Ok(self)
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn post(&self, content_type: &str, body: &[u8]) -> Result<Vec<u8>, RecognizerError> {
        let mut req = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", content_type)
            .header("Accept", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        let mut resp = req.send(body).map_err(map_transport_error)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            // The error body may echo the request or part of a transcript: never read it.
            tracing::debug!(status, "remote recognizer answered with an error status");
            return Err(map_status(status));
        }
        resp.body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(map_transport_error)
    }
}

impl Recognizer for RemoteRecognizer {
    fn transcribe(&mut self, pcm: &[i16], rate: SampleRate) -> Result<Vec<Word>, RecognizerError> {
        if pcm.is_empty() {
            return Ok(Vec::new());
        }
        let wav = wav_bytes(pcm, rate)?;
        let form = Multipart::new(&wav);
        let body = form.body(&wav, &self.model);
        let bytes = self.post(&form.content_type(), &body)?;
        let seg_len = segment_len_8k(pcm.len(), rate);
        parse_response(&bytes, seg_len)
    }
}

fn endpoint_for(base_url: &str) -> Result<String, RemoteError> {
    let bad = || RemoteError::BadUrl(base_url.to_owned());
    let base = base_url.trim_end_matches('/');
    let uri: ureq::http::Uri = base.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    if !scheme_ok || !host_ok || uri.query().is_some() {
        return Err(bad());
    }
    Ok(if base.ends_with("/v1") {
        format!("{base}/audio/transcriptions")
    } else {
        format!("{base}/v1/audio/transcriptions")
    })
}

/// Segment length in 8 kHz samples.
fn segment_len_8k(samples: usize, rate: SampleRate) -> u64 {
    (samples as u64).saturating_mul(SampleRate::NARROWBAND.samples_per_second())
        / u64::from(rate.hz())
}

/// A canonical 44-byte-header PCM WAV, mono, 16-bit, at `rate`.
fn wav_bytes(pcm: &[i16], rate: SampleRate) -> Result<Vec<u8>, RecognizerError> {
    let data_len = u32::try_from(pcm.len() * 2)
        .ok()
        .filter(|n| *n <= u32::MAX - 36)
        .ok_or(RecognizerError::BadInput("segment too long for a WAV file"))?;
    let hz = rate.hz();
    let mut out = Vec::with_capacity(44 + pcm.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&hz.to_le_bytes());
    out.extend_from_slice(&(hz * 2).to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        out.extend_from_slice(&s.to_le_bytes());
    }
    Ok(out)
}

/// A multipart/form-data body with a boundary that does not occur in the audio.
struct Multipart {
    boundary: String,
}

impl Multipart {
    fn new(payload: &[u8]) -> Self {
        loop {
            let boundary = format!("callmask-{:032x}", rand::random::<u128>());
            let b = boundary.as_bytes();
            if !payload.windows(b.len()).any(|w| w == b) {
                return Self { boundary };
            }
        }
    }

    fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    fn body(&self, wav: &[u8], model: &str) -> Vec<u8> {
        let b = &self.boundary;
        let mut out = Vec::with_capacity(wav.len() + 1024);
        out.extend_from_slice(
            format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"segment.wav\"\r\n\
                 Content-Type: audio/wav\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(wav);
        out.extend_from_slice(b"\r\n");
        // Both granularities: words for the times, segments as the fallback when a server
        // cannot align words.
        let fields = [
            ("model", model),
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
            ("timestamp_granularities[]", "segment"),
            ("language", "en"),
            ("temperature", "0"),
        ];
        for (name, value) in fields {
            out.extend_from_slice(
                format!(
                    "--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        out
    }
}

/// `verbose_json`, the parts we use. Unknown fields are ignored (servers add their own).
#[derive(Deserialize)]
struct Transcription {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    words: Option<Vec<ApiWord>>,
    #[serde(default)]
    segments: Option<Vec<ApiSegment>>,
}

#[derive(Deserialize)]
struct ApiWord {
    word: String,
    start: f64,
    end: f64,
    /// faster-whisper based servers add it; OpenAI does not.
    #[serde(default)]
    probability: Option<f64>,
}

#[derive(Deserialize)]
struct ApiSegment {
    start: f64,
    end: f64,
    text: String,
}

/// Turn a response body into words with 8 kHz sample offsets inside `0..=seg_len`.
fn parse_response(body: &[u8], seg_len: u64) -> Result<Vec<Word>, RecognizerError> {
    // serde_json's errors quote no input, but only a fixed message leaves this function.
    let t: Transcription = serde_json::from_slice(body)
        .map_err(|_| RecognizerError::Engine("remote server sent an unreadable response"))?;
    if t.text.is_none() && t.words.is_none() && t.segments.is_none() {
        // E.g. `{"error": …}` with status 200: nothing says the segment holds no number.
        return Err(RecognizerError::Engine("remote server sent no transcript"));
    }
    let at = |secs: f64| secs_to_samples(secs, seg_len);

    let mut words: Vec<Word> = t
        .words
        .unwrap_or_default()
        .into_iter()
        .filter_map(|w| {
            let text = w.word.trim();
            if text.is_empty() {
                return None;
            }
            let (start, end) = ordered(at(w.start), at(w.end));
            Some(Word {
                text: text.to_owned(),
                start,
                end,
                confidence: w
                    .probability
                    .filter(|p| (0.0..=1.0).contains(p))
                    .map(|p| p as f32),
            })
        })
        .collect();
    // Segments without a word in their time (servers that give no word times, or drop them
    // for some segments): their tokens spread evenly over the segment.
    let aligned = words.len();
    let mut any_segment_text = false;
    for seg in t.segments.unwrap_or_default() {
        if seg.text.trim().is_empty() {
            continue;
        }
        any_segment_text = true;
        let (start, end) = ordered(at(seg.start), at(seg.end));
        let has_word = words[..aligned]
            .iter()
            .any(|w| w.start <= end && w.end >= start);
        if !has_word {
            spread(&seg.text, start, end, &mut words);
        }
    }
    if words.is_empty() && !any_segment_text {
        // Text only (e.g. a server ignoring verbose_json): the whole segment.
        if let Some(text) = &t.text {
            spread(text, MediaTime(0), MediaTime(seg_len), &mut words);
        }
    }
    words.sort_by_key(|w| w.start);
    Ok(words)
}

/// Evenly share `start..end` among the whitespace-separated tokens of `text`.
fn spread(text: &str, start: MediaTime, end: MediaTime, out: &mut Vec<Word>) {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let n = tokens.len() as u64;
    let span = end.0 - start.0;
    for (i, tok) in (0u64..).zip(tokens) {
        out.push(Word {
            text: tok.to_owned(),
            start: MediaTime(start.0 + span * i / n),
            end: MediaTime(start.0 + span * (i + 1) / n),
            confidence: None,
        });
    }
}

fn ordered(a: MediaTime, b: MediaTime) -> (MediaTime, MediaTime) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Seconds → 8 kHz samples, clamped to the segment (NaN and negatives to its start).
fn secs_to_samples(secs: f64, seg_len: u64) -> MediaTime {
    let s = (secs * OUT_RATE).round();
    if s.is_nan() || s <= 0.0 {
        MediaTime(0)
    } else if s >= seg_len as f64 {
        MediaTime(seg_len)
    } else {
        MediaTime(s as u64)
    }
}

fn map_status(status: u16) -> RecognizerError {
    match status {
        429 | 503 => RecognizerError::Overloaded,
        408 | 504 => RecognizerError::Timeout,
        401 | 403 => RecognizerError::Engine("remote server refused the credentials"),
        300..=399 => RecognizerError::Engine("remote server redirected the request"),
        400..=499 => RecognizerError::Engine("remote server rejected the request"),
        _ => RecognizerError::Engine("remote server failed"),
    }
}

fn map_transport_error(e: ureq::Error) -> RecognizerError {
    match e {
        ureq::Error::Timeout(_) => RecognizerError::Timeout,
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut => RecognizerError::Timeout,
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::WouldBlock => RecognizerError::Timeout,
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::NotConnected
                    | io::ErrorKind::AddrNotAvailable
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ) =>
        {
            RecognizerError::Engine("remote server unreachable")
        }
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
            RecognizerError::Engine("remote server unreachable")
        }
        ureq::Error::BodyExceedsLimit(_) => {
            RecognizerError::Engine("remote server sent an oversized response")
        }
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
            RecognizerError::Engine("TLS with the remote server failed")
        }
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => {
            RecognizerError::Engine("remote server redirected the request")
        }
        ureq::Error::Protocol(_) => RecognizerError::Engine("remote server spoke broken HTTP"),
        _ => RecognizerError::Engine("request to the remote server failed"),
    }
}

#[cfg(test)]
mod tests;
