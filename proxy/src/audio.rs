//! Reading and writing the audio files `callmask mask` accepts: WAV (PCM 16-bit, µ-law,
//! A-law; mono or stereo; 8 or 16 kHz) and raw `.ulaw` / `.alaw` (8 kHz mono). `callmask mask`
//! (`offline/`) reads and writes them; `callmask demo` reads its recording back.
//!
//! The writer reproduces the input's encoding, rate, channel count and length, so a masked
//! file can replace the original anywhere it was used.

use std::path::Path;

use dsp::g711::Law;

use thiserror::Error;

/// Why an audio file cannot be read (`callmask mask` reports it as it is: exit 66 for
/// `Open`, 65 for the others).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The file could not be opened or read.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid audio.
    #[error("bad input: {0}")]
    Data(String),
    /// The file is audio in a format callmask does not process.
    #[error("unsupported input: {0}")]
    Unsupported(String),
}

/// How samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Signed 16-bit little-endian linear PCM.
    Pcm16,
    /// G.711 (µ-law or A-law), one byte per sample.
    G711(Law),
}

/// The file container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// RIFF/WAVE.
    Wav,
    /// Headerless samples (8 kHz mono; encoding from the file extension).
    Raw,
}

/// Everything needed to write a file back in the same format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Container.
    pub container: Container,
    /// Sample encoding.
    pub encoding: Encoding,
    /// 8000 or 16000.
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u16,
}

/// Decoded audio: one linear 16-bit buffer per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    /// Format of the source file.
    pub format: Format,
    /// Samples per channel (all the same length).
    pub channels: Vec<Vec<i16>>,
}

impl Audio {
    /// Frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
}

/// Read an audio file. The encoding of raw files comes from the extension.
pub fn read(path: &Path) -> Result<Audio, AudioError> {
    let bytes = std::fs::read(path).map_err(|e| AudioError::Open {
        path: path.display().to_string(),
        source: e,
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("ulaw" | "mulaw" | "pcmu" | "ul") => Ok(raw(&bytes, Encoding::G711(Law::Ulaw))),
        Some("alaw" | "pcma" | "al") => Ok(raw(&bytes, Encoding::G711(Law::Alaw))),
        _ => parse_wav(&bytes),
    }
}

fn raw(bytes: &[u8], encoding: Encoding) -> Audio {
    let law = match encoding {
        Encoding::G711(law) => law,
        Encoding::Pcm16 => Law::Ulaw,
    };
    Audio {
        format: Format {
            container: Container::Raw,
            encoding,
            sample_rate: 8000,
            channels: 1,
        },
        channels: vec![bytes.iter().map(|&b| law.to_linear(b)).collect()],
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// Parse a RIFF/WAVE file held in memory.
pub fn parse_wav(b: &[u8]) -> Result<Audio, AudioError> {
    let bad = |what: &str| AudioError::Data(what.to_string());
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err(bad(
            "not a WAV file (no RIFF/WAVE header); raw G.711 files need a .ulaw or .alaw extension",
        ));
    }
    let mut at = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut data: Option<&[u8]> = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let size = le32(b, at + 4).ok_or_else(|| bad("truncated chunk header"))? as usize;
        let body_start = at + 8;
        let body_end = body_start
            .checked_add(size)
            .ok_or_else(|| bad("chunk size overflows"))?;
        if id == b"data" {
            if body_end > b.len() {
                return Err(bad("truncated: the data chunk is longer than the file"));
            }
            data = Some(&b[body_start..body_end]);
        } else if id == b"fmt " {
            if size < 16 || body_end > b.len() {
                return Err(bad("truncated or short fmt chunk"));
            }
            let mut tag = le16(b, body_start).ok_or_else(|| bad("short fmt chunk"))?;
            let channels = le16(b, body_start + 2).ok_or_else(|| bad("short fmt chunk"))?;
            let rate = le32(b, body_start + 4).ok_or_else(|| bad("short fmt chunk"))?;
            let bits = le16(b, body_start + 14).ok_or_else(|| bad("short fmt chunk"))?;
            if tag == 0xFFFE {
                // WAVE_FORMAT_EXTENSIBLE: the real tag is the first two bytes of the GUID.
                tag = le16(b, body_start + 24).ok_or_else(|| bad("short extensible fmt chunk"))?;
            }
            fmt = Some((tag, channels, rate, bits));
        }
        // Chunks are word-aligned: an odd size has a pad byte.
        at = body_end + (size & 1);
    }
    let (tag, channels, rate, bits) = fmt.ok_or_else(|| bad("no fmt chunk"))?;
    let data = data.ok_or_else(|| bad("no data chunk"))?;
    let encoding = match (tag, bits) {
        (1, 16) => Encoding::Pcm16,
        (7, 8) => Encoding::G711(Law::Ulaw),
        (6, 8) => Encoding::G711(Law::Alaw),
        (1, b) => {
            return Err(AudioError::Unsupported(format!(
                "{b}-bit PCM (use 16-bit PCM, µ-law or A-law)"
            )))
        }
        (t, _) => {
            return Err(AudioError::Unsupported(format!(
                "WAV format tag {t:#06x} (use 16-bit PCM, µ-law or A-law)"
            )))
        }
    };
    if rate != 8000 && rate != 16000 {
        return Err(AudioError::Unsupported(format!(
            "sample rate {rate} Hz (use 8000 or 16000)"
        )));
    }
    if channels != 1 && channels != 2 {
        return Err(AudioError::Unsupported(format!(
            "{channels} channels (use mono or stereo)"
        )));
    }
    let width = if encoding == Encoding::Pcm16 { 2 } else { 1 };
    let frame = width * usize::from(channels);
    let frames = data.len() / frame;
    let mut out = vec![Vec::with_capacity(frames); usize::from(channels)];
    for f in 0..frames {
        for (c, ch) in out.iter_mut().enumerate() {
            let at = f * frame + c * width;
            let s = match encoding {
                Encoding::Pcm16 => i16::from_le_bytes([data[at], data[at + 1]]),
                Encoding::G711(law) => law.to_linear(data[at]),
            };
            ch.push(s);
        }
    }
    Ok(Audio {
        format: Format {
            container: Container::Wav,
            encoding,
            sample_rate: rate,
            channels,
        },
        channels: out,
    })
}

/// Encode `audio` in its format (header included).
pub fn encode(audio: &Audio) -> Vec<u8> {
    let f = audio.format;
    let frames = audio.frames();
    let width: usize = if f.encoding == Encoding::Pcm16 { 2 } else { 1 };
    let mut payload = Vec::with_capacity(frames * width * usize::from(f.channels));
    for i in 0..frames {
        for ch in &audio.channels {
            let s = ch[i];
            match f.encoding {
                Encoding::Pcm16 => payload.extend_from_slice(&s.to_le_bytes()),
                Encoding::G711(law) => payload.push(law.from_linear(s)),
            }
        }
    }
    if f.container == Container::Raw {
        return payload;
    }
    let tag: u16 = match f.encoding {
        Encoding::Pcm16 => 1,
        Encoding::G711(Law::Alaw) => 6,
        Encoding::G711(Law::Ulaw) => 7,
    };
    let block_align = width as u16 * f.channels;
    let pcm = f.encoding == Encoding::Pcm16;
    // Non-PCM formats carry cbSize and a fact chunk (RIFF spec).
    let fmt_len: u32 = if pcm { 16 } else { 18 };
    let fact_len: u32 = if pcm { 0 } else { 12 };
    let pad = payload.len() & 1;
    let riff_len = 4 + (8 + fmt_len) + fact_len + 8 + payload.len() as u32 + pad as u32;
    let mut out = Vec::with_capacity(riff_len as usize + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&riff_len.to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&fmt_len.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&f.channels.to_le_bytes());
    out.extend_from_slice(&f.sample_rate.to_le_bytes());
    out.extend_from_slice(&(f.sample_rate * u32::from(block_align)).to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&(width as u16 * 8).to_le_bytes());
    if !pcm {
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(b"fact");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&(frames as u32).to_le_bytes());
    }
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    if pad == 1 {
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(encoding: Encoding, rate: u32, channels: u16) -> Audio {
        let n = 321;
        Audio {
            format: Format {
                container: Container::Wav,
                encoding,
                sample_rate: rate,
                channels,
            },
            channels: (0..channels)
                .map(|c| {
                    (0..n)
                        .map(|i| ((i * 97 + c as i32 * 13) % 2000 - 1000) as i16)
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn pcm_round_trips_exactly() {
        for (rate, ch) in [(8000, 1), (16000, 2)] {
            let a = audio(Encoding::Pcm16, rate, ch);
            assert_eq!(parse_wav(&encode(&a)).expect("parses"), a);
        }
    }

    #[test]
    fn g711_wav_keeps_format_and_length() {
        for enc in [Encoding::G711(Law::Ulaw), Encoding::G711(Law::Alaw)] {
            let a = audio(enc, 8000, 2);
            let b = parse_wav(&encode(&a)).expect("parses");
            assert_eq!(b.format, a.format);
            assert_eq!(b.frames(), a.frames());
            // Decoded values re-encode to the same bytes (G.711 is idempotent after one pass).
            assert_eq!(encode(&b), encode(&parse_wav(&encode(&b)).expect("parses")));
        }
    }

    #[test]
    fn bad_files_are_data_errors_not_panics() {
        let good = encode(&audio(Encoding::Pcm16, 8000, 1));
        for cut in [0, 4, 11, 20, 40, 44, 100] {
            let r = parse_wav(&good[..cut.min(good.len())]);
            assert!(r.is_err(), "cut at {cut} must fail");
        }
        assert!(matches!(
            parse_wav(b"hello world, not audio"),
            Err(AudioError::Data(_))
        ));
        let mut b24 = good.clone();
        b24[34] = 24; // bits per sample
        assert!(matches!(parse_wav(&b24), Err(AudioError::Unsupported(_))));
    }
}
