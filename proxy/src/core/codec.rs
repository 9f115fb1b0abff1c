//! Audio decoders for the recorder tap: every codec callmask lets through becomes linear PCM at
//! the masking pipeline's rate ([`TAP_RATE`], 8 kHz) before any mask decision.
//!
//! Masking can only act on audio it has heard, so the set of codecs callmask forwards in SDP
//! offers (`media.codecs`, see [`config::types::MediaCodec`]) is exactly the set decoded here;
//! [`offer_filter`] removes the rest from offers (see `core::sdp::anchor`).
//!
//! | codec | RTP clock | decoder | tap PCM |
//! |---|---|---|---|
//! | PCMU / PCMA | 8000 | `dsp::g711` tables | 8 kHz, 1 sample per byte |
//! | G.722 (64 kbit/s) | 8000 (RFC 3551's historical value; audio is 16 kHz) | [`dsp::g722`] (bit-exact with spandsp), lower sub-band | 8 kHz, 1 sample per byte |
//! | Opus | 48000 | libopus (`opus` crate, Debian `libopus-dev`), mono output | 8 kHz (libopus resamples internally) |
//!
//! The G.722 low band is the 0–4 kHz half of the codec's QMF split, i.e. what an 8 kHz
//! recording holds; the 4–8 kHz band is not decoded. Speech identifiers and DTMF (≤ 1633 Hz)
//! live entirely in the low band.
//!
//! Calling rules: one [`TapDecoder`] per RTP stream and payload type, fed payloads in arrival
//! order; [`TapDecoder::decode`] writes into a caller buffer of at least [`MAX_TAP_SAMPLES`]
//! and never allocates. A decode error (a corrupt Opus packet) is returned, never a panic: the
//! caller fills that packet's time with silence (fail closed).

use config::types::MediaCodec;

/// Sample rate of every decoder's output (the masking pipeline's rate).
pub const TAP_RATE: u32 = dsp::SampleRate::NARROWBAND.hz();

/// Most samples one payload can decode to: Opus's longest packet (120 ms) at 8 kHz; a G.711 /
/// G.722 payload of 960 bytes decodes to as many.
pub const MAX_TAP_SAMPLES: usize = 960;

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The payload is longer than one decode may produce ([`MAX_TAP_SAMPLES`]); split packets
    /// that long are not sent by phones.
    #[error("payload of {0} bytes decodes to more than {MAX_TAP_SAMPLES} samples")]
    TooLong(usize),
    /// libopus refused the packet (corrupt or truncated).
    #[error("opus packet rejected by libopus ({0})")]
    Opus(String),
    /// libopus could not create a decoder (out of memory).
    #[error("libopus decoder could not be created ({0})")]
    OpusInit(String),
}

/// The codec an SDP `rtpmap` names, when callmask can decode it (encoding names are
/// case-insensitive, RFC 4855 §3).
pub fn codec_of(name: &str, clock_rate: u32) -> Option<MediaCodec> {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    match clock_rate {
        8000 if is("PCMU") => Some(MediaCodec::Pcmu),
        8000 if is("PCMA") => Some(MediaCodec::Pcma),
        8000 if is("G722") => Some(MediaCodec::G722),
        48000 if is("opus") => Some(MediaCodec::Opus),
        _ => None,
    }
}

/// Which payload types of an audio `m=` line survive `allowed`: decodable codecs listed in
/// `allowed`, and `telephone-event` (RFC 4733 keys are masked on the recorder path).
/// `CN` and everything else go: comfort noise would be recorded as nothing at all.
pub fn offer_filter(allowed: &[MediaCodec], name: &str, clock_rate: u32) -> bool {
    name.eq_ignore_ascii_case("telephone-event")
        || codec_of(name, clock_rate).is_some_and(|c| allowed.contains(&c))
}

/// RTP timestamp units per tap sample for `codec` (Opus: 48000 / 8000 = 6; the others 1).
pub fn rtp_ticks_per_tap_sample(codec: MediaCodec) -> u32 {
    match codec {
        MediaCodec::Opus => 48_000 / TAP_RATE,
        MediaCodec::Pcmu | MediaCodec::Pcma | MediaCodec::G722 => 1,
    }
}

/// One stream's decoder state.
pub struct TapDecoder {
    codec: MediaCodec,
    state: State,
}

enum State {
    G711(dsp::g711::Law),
    G722(Box<dsp::g722::G722Decoder>),
    /// In a `Mutex` only to be `Sync` (libopus state is a raw pointer); every use goes
    /// through `&mut self` and `Mutex::get_mut`, which never locks.
    Opus(Box<std::sync::Mutex<opus::Decoder>>),
}

impl std::fmt::Debug for TapDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapDecoder")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl TapDecoder {
    /// A decoder for `codec`, output at [`TAP_RATE`].
    pub fn new(codec: MediaCodec) -> Result<Self, CodecError> {
        let state = match codec {
            MediaCodec::Pcmu => State::G711(dsp::g711::Law::Ulaw),
            MediaCodec::Pcma => State::G711(dsp::g711::Law::Alaw),
            // 64 kbit/s (the only mode RTP signals, RFC 3551 §4.5.2), 8 kHz lower sub-band.
            MediaCodec::G722 => State::G722(Box::new(dsp::g722::G722Decoder::new(
                dsp::g722::G722Output::LowBand,
            ))),
            MediaCodec::Opus => State::Opus(Box::new(std::sync::Mutex::new(
                opus::Decoder::new(TAP_RATE, opus::Channels::Mono)
                    .map_err(|e| CodecError::OpusInit(e.to_string()))?,
            ))),
        };
        Ok(Self { codec, state })
    }

    /// The codec decoded.
    pub fn codec(&self) -> MediaCodec {
        self.codec
    }

    /// Decodes one RTP payload into `out` (at least [`MAX_TAP_SAMPLES`] long) and returns the
    /// number of 8 kHz samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let n = MAX_TAP_SAMPLES.min(out.len());
        let out = &mut out[..n];
        match &mut self.state {
            State::G711(_) | State::G722(_) if payload.len() > out.len() => {
                Err(CodecError::TooLong(payload.len()))
            }
            State::G711(law) => Ok(law.decode(payload, &mut out[..payload.len()])),
            State::G722(d) => Ok(d.decode(payload, out)),
            State::Opus(d) => opus_of(d)
                .decode(payload, out, false)
                .map_err(|e| CodecError::Opus(e.description().to_owned())),
        }
    }

    /// Samples the decoder would produce for a lost packet of `samples` 8 kHz samples: Opus
    /// packet-loss concealment; the others have none (the caller writes silence).
    pub fn conceal(&mut self, samples: usize, out: &mut [i16]) -> usize {
        let n = samples.min(out.len()).min(MAX_TAP_SAMPLES);
        match &mut self.state {
            State::Opus(d) => opus_of(d).decode(&[], &mut out[..n], false).unwrap_or(0),
            _ => 0,
        }
    }
}

/// The decoder inside its never-contended mutex (a panic inside libopus's caller cannot leave
/// it half-updated in a way that matters more than a corrupt packet does).
fn opus_of(m: &mut std::sync::Mutex<opus::Decoder>) -> &mut opus::Decoder {
    match m.get_mut() {
        Ok(d) => d,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
            })
            .collect()
    }

    /// Best normalized cross-correlation of `b` against `a` over lags `0..max_lag`.
    fn best_corr(a: &[i16], b: &[i16], max_lag: usize) -> (f64, usize) {
        let mut best = (f64::MIN, 0);
        for lag in 0..max_lag {
            let n = a.len().min(b.len().saturating_sub(lag));
            let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
            for i in 0..n {
                let (x, y) = (f64::from(a[i]), f64::from(b[i + lag]));
                ab += x * y;
                aa += x * x;
                bb += y * y;
            }
            let c = ab / (aa.sqrt() * bb.sqrt()).max(1.0);
            if c > best.0 {
                best = (c, lag);
            }
        }
        best
    }

    #[test]
    fn sdp_names_map_to_decodable_codecs() {
        assert_eq!(codec_of("PCMU", 8000), Some(MediaCodec::Pcmu));
        assert_eq!(codec_of("g722", 8000), Some(MediaCodec::G722));
        assert_eq!(codec_of("OPUS", 48000), Some(MediaCodec::Opus));
        assert_eq!(codec_of("opus", 16000), None);
        assert_eq!(codec_of("G729", 8000), None);
        assert!(offer_filter(&[MediaCodec::Pcma], "telephone-event", 8000));
        assert!(!offer_filter(&[MediaCodec::Pcma], "PCMU", 8000));
        assert!(!offer_filter(&MediaCodec::DECODABLE, "CN", 8000));
    }

    #[test]
    fn g711_decodes_one_sample_per_byte() {
        let mut d = TapDecoder::new(MediaCodec::Pcmu).unwrap();
        let mut out = [0i16; MAX_TAP_SAMPLES];
        assert_eq!(d.decode(&[0xff; 160], &mut out).unwrap(), 160);
        assert!(out[..160].iter().all(|&s| s == 0));
        assert_eq!(
            d.decode(&[0; MAX_TAP_SAMPLES + 1], &mut out),
            Err(CodecError::TooLong(MAX_TAP_SAMPLES + 1))
        );
    }

    /// Opus round trip through libopus: 20 ms frames of a 440 Hz tone encoded at 48 kHz,
    /// decoded by the tap at 8 kHz (160 samples per frame), correlation ≥ 0.95.
    #[test]
    fn opus_decodes_to_8khz() {
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .expect("libopus encoder");
        let wide = tone(440.0, 48_000, 48_000);
        let mut d = TapDecoder::new(MediaCodec::Opus).unwrap();
        let mut pcm = Vec::new();
        let mut out = [0i16; MAX_TAP_SAMPLES];
        let mut packet = [0u8; 1500];
        for frame in wide.chunks(960) {
            let n = enc.encode(frame, &mut packet).expect("encode");
            let got = d.decode(&packet[..n], &mut out).unwrap();
            assert_eq!(got, 160);
            pcm.extend_from_slice(&out[..got]);
        }
        assert_eq!(d.conceal(160, &mut out), 160);
        let narrow = tone(440.0, 8000, 8000);
        let (c, lag) = best_corr(&narrow[..6000], &pcm[..], 80);
        assert!(c > 0.95, "correlation {c} at lag {lag}");
        assert!(d.decode(&[0xff, 0xff, 0xff], &mut out).is_err());
    }
}
