//! Payload maps: what each RTP payload type of a stream carries, and the audio decoder that
//! turns it into linear PCM at a stated [`SampleRate`].
//!
//! Why a table and not a `HashMap`: payload types are 7 bits, so a 128-slot array answers
//! the per-packet lookup without hashing and without allocation. G.711 decodes statelessly;
//! G.722 and Opus (issue 12) keep decoder state per direction in [`Decoders`] (built on first
//! use, then no allocation), decoding once per packet into the call's scratch buffer like
//! G.711 does. Every decoder writes 8 kHz PCM ([`crate::core::codec`]).

use config::types::MediaCodec;
use dsp::g711::Law;
use dsp::SampleRate;

use crate::core::codec::MAX_TAP_SAMPLES;
use crate::core::codec::{codec_of, rtp_ticks_per_tap_sample, CodecError, TapDecoder};
use crate::core::relay::PayloadType;
use crate::core::sdp::Codec;

/// An audio codec callmask can decode to PCM for the recorder path and the DTMF receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// G.711 (PCMU / PCMA), 8 kHz, one byte per sample.
    G711(Law),
    /// G.722 64 kbit/s (RTP clock 8000): its 8 kHz lower sub-band, one sample per byte.
    G722,
    /// Opus (RTP clock 48000), decoded by libopus at 8 kHz.
    Opus,
}

impl AudioCodec {
    /// The codec signalled as `c`, if callmask decodes it.
    pub fn from_sdp(c: &Codec) -> Option<AudioCodec> {
        Some(match codec_of(&c.name, c.clock_rate)? {
            MediaCodec::Pcmu => AudioCodec::G711(Law::Ulaw),
            MediaCodec::Pcma => AudioCodec::G711(Law::Alaw),
            MediaCodec::G722 => AudioCodec::G722,
            MediaCodec::Opus => AudioCodec::Opus,
        })
    }

    /// Rate of the PCM the decoders write (every codec is recorded at 8 kHz).
    pub fn sample_rate(self) -> SampleRate {
        SampleRate::NARROWBAND
    }

    /// RTP timestamp units per decoded sample (Opus: 48000 / 8000).
    pub fn rtp_ticks(self) -> u32 {
        match self {
            AudioCodec::G711(Law::Ulaw) => rtp_ticks_per_tap_sample(MediaCodec::Pcmu),
            AudioCodec::G711(Law::Alaw) => rtp_ticks_per_tap_sample(MediaCodec::Pcma),
            AudioCodec::G722 => rtp_ticks_per_tap_sample(MediaCodec::G722),
            AudioCodec::Opus => rtp_ticks_per_tap_sample(MediaCodec::Opus),
        }
    }

    /// The G.711 law, for the live clamp (which rewrites payload bytes in place; other
    /// codecs are relayed unclamped).
    pub fn law(self) -> Option<Law> {
        match self {
            AudioCodec::G711(law) => Some(law),
            AudioCodec::G722 | AudioCodec::Opus => None,
        }
    }

    /// Most PCM samples `payload` decodes to (Opus: its longest frame).
    pub fn samples_in(self, payload: &[u8]) -> usize {
        match self {
            AudioCodec::G711(_) | AudioCodec::G722 => payload.len(),
            AudioCodec::Opus => MAX_TAP_SAMPLES,
        }
    }

    /// Decodes a G.711 `payload` into `out`; returns the samples written (at most
    /// `out.len()`). Codecs with state decode through [`Decoders`] (0 here).
    pub fn decode(self, payload: &[u8], out: &mut [i16]) -> usize {
        match self {
            AudioCodec::G711(law) => law.decode(payload, out),
            AudioCodec::G722 | AudioCodec::Opus => 0,
        }
    }
}

/// One direction's decoders for the codecs with state (G.722, Opus), built on first use.
#[derive(Debug, Default)]
pub struct Decoders {
    g722: Option<TapDecoder>,
    opus: Option<TapDecoder>,
}

impl Decoders {
    /// Decodes `payload` of `codec` into `out` (8 kHz); returns the samples written.
    pub fn decode(
        &mut self,
        codec: AudioCodec,
        payload: &[u8],
        out: &mut [i16],
    ) -> Result<usize, CodecError> {
        let (slot, kind) = match codec {
            AudioCodec::G711(_) => return Ok(codec.decode(payload, out)),
            AudioCodec::G722 => (&mut self.g722, MediaCodec::G722),
            AudioCodec::Opus => (&mut self.opus, MediaCodec::Opus),
        };
        let dec = match slot {
            Some(d) => d,
            None => slot.insert(TapDecoder::new(kind)?),
        };
        dec.decode(payload, out)
    }
}

/// What a payload type of a stream is, as far as the media core cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// Audio callmask decodes.
    Audio(AudioCodec),
    /// RFC 4733 telephone-event.
    TelephoneEvent,
    /// Anything else: relayed untouched, not tapped.
    Other,
}

/// Payload type → [`PayloadKind`] of one stream, from its latest SDP.
#[derive(Clone, PartialEq, Eq)]
pub struct PayloadMap {
    audio: [Option<AudioCodec>; 128],
    telephone_event: Option<PayloadType>,
}

impl std::fmt::Debug for PayloadMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let audio: Vec<_> = self
            .audio
            .iter()
            .enumerate()
            .filter_map(|(pt, c)| c.map(|c| (pt, c)))
            .collect();
        f.debug_struct("PayloadMap")
            .field("audio", &audio)
            .field("telephone_event", &self.telephone_event)
            .finish()
    }
}

impl Default for PayloadMap {
    fn default() -> Self {
        PayloadMap {
            audio: [None; 128],
            telephone_event: None,
        }
    }
}

impl PayloadMap {
    /// The map of a stream that signalled `codecs`.
    pub fn from_codecs(codecs: &[Codec]) -> PayloadMap {
        let mut m = PayloadMap::default();
        for c in codecs {
            if c.is_telephone_event() {
                m.telephone_event.get_or_insert(c.pt);
            } else if let Some(a) = AudioCodec::from_sdp(c) {
                m.audio[usize::from(c.pt.get())] = Some(a);
            }
        }
        m
    }

    /// Applies a later SDP: an answer that names no decodable audio (or no telephone-event)
    /// keeps what the offer said, as the relay did before (a re-INVITE without codecs must
    /// not switch the tap off).
    pub fn update(&mut self, next: PayloadMap) {
        if next.audio.iter().any(Option::is_some) {
            self.audio = next.audio;
        }
        if next.telephone_event.is_some() {
            self.telephone_event = next.telephone_event;
        }
    }

    /// What `pt` carries.
    pub fn kind(&self, pt: PayloadType) -> PayloadKind {
        if Some(pt) == self.telephone_event {
            return PayloadKind::TelephoneEvent;
        }
        match self.audio[usize::from(pt.get())] {
            Some(a) => PayloadKind::Audio(a),
            None => PayloadKind::Other,
        }
    }

    /// The telephone-event payload type, if signalled.
    pub fn telephone_event(&self) -> Option<PayloadType> {
        self.telephone_event
    }

    /// The lowest decodable audio payload type (a stand-in before any audio was seen).
    pub fn first_audio(&self) -> Option<(PayloadType, AudioCodec)> {
        self.audio.iter().enumerate().find_map(|(pt, c)| {
            let pt = PayloadType::try_from(u8::try_from(pt).ok()?).ok()?;
            c.map(|c| (pt, c))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(pt: u8, name: &str, rate: u32) -> Codec {
        Codec {
            pt: PayloadType::try_from(pt).unwrap(),
            name: name.into(),
            clock_rate: rate,
            channels: None,
        }
    }

    #[test]
    fn maps_decodable_codecs_and_telephone_event() {
        let m = PayloadMap::from_codecs(&[
            codec(8, "PCMA", 8000),
            codec(0, "pcmu", 8000),
            codec(9, "G722", 8000),
            codec(111, "opus", 48000),
            codec(18, "G729", 8000),
            codec(101, "telephone-event", 8000),
        ]);
        let pt = |v| PayloadType::try_from(v).unwrap();
        assert_eq!(
            m.kind(pt(0)),
            PayloadKind::Audio(AudioCodec::G711(Law::Ulaw))
        );
        assert_eq!(
            m.kind(pt(8)),
            PayloadKind::Audio(AudioCodec::G711(Law::Alaw))
        );
        assert_eq!(m.kind(pt(9)), PayloadKind::Audio(AudioCodec::G722));
        assert_eq!(m.kind(pt(111)), PayloadKind::Audio(AudioCodec::Opus));
        assert_eq!(m.kind(pt(18)), PayloadKind::Other);
        assert_eq!(m.kind(pt(101)), PayloadKind::TelephoneEvent);
        assert_eq!(m.first_audio().map(|(p, _)| p.get()), Some(0));
    }

    #[test]
    fn g711_at_another_rate_is_not_decoded() {
        let m = PayloadMap::from_codecs(&[codec(96, "PCMU", 16000)]);
        assert_eq!(
            m.kind(PayloadType::try_from(96).unwrap()),
            PayloadKind::Other
        );
    }

    #[test]
    fn an_update_without_audio_keeps_the_old_map() {
        let mut m = PayloadMap::from_codecs(&[codec(0, "PCMU", 8000)]);
        m.update(PayloadMap::from_codecs(&[codec(
            101,
            "telephone-event",
            8000,
        )]));
        assert_eq!(
            m.kind(PayloadType::PCMU),
            PayloadKind::Audio(AudioCodec::G711(Law::Ulaw))
        );
        assert!(m.telephone_event().is_some());
    }
}
