//! Payload maps: what each RTP payload type of a stream carries, and the audio decoder that
//! turns it into linear PCM at a stated [`SampleRate`].
//!
//! Why a table and not a `HashMap`: payload types are 7 bits, so a 128-slot array answers
//! the per-packet lookup without hashing and without allocation. The decoder is an enum so
//! that a codec with state (G.722, Opus: issue 12) becomes one more variant holding its
//! decoder, decoding once per packet into the call's scratch buffer like G.711 does.

use dsp::clamp::Law;
use dsp::SampleRate;

use crate::core::relay::PayloadType;
use crate::core::sdp::Codec;

/// An audio codec callmask can decode to PCM for the recorder path and the DTMF receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// G.711 (PCMU / PCMA), 8 kHz, one byte per sample.
    G711(Law),
}

impl AudioCodec {
    /// The codec signalled as `c`, if callmask decodes it.
    pub fn from_sdp(c: &Codec) -> Option<AudioCodec> {
        let law = if c.name.eq_ignore_ascii_case("PCMU") {
            Law::Ulaw
        } else if c.name.eq_ignore_ascii_case("PCMA") {
            Law::Alaw
        } else {
            return None;
        };
        (c.clock_rate == SampleRate::NARROWBAND.hz()).then_some(AudioCodec::G711(law))
    }

    /// Rate of the PCM [`Self::decode`] writes (also the RTP clock rate for G.711).
    pub fn sample_rate(self) -> SampleRate {
        match self {
            AudioCodec::G711(_) => SampleRate::NARROWBAND,
        }
    }

    /// The G.711 law, for the live clamp (which rewrites payload bytes in place).
    pub fn law(self) -> Option<Law> {
        match self {
            AudioCodec::G711(law) => Some(law),
        }
    }

    /// PCM samples `payload` decodes to.
    pub fn samples_in(self, payload: &[u8]) -> usize {
        match self {
            AudioCodec::G711(_) => payload.len(),
        }
    }

    /// Decodes `payload` into `out`; returns the samples written (at most `out.len()`).
    pub fn decode(self, payload: &[u8], out: &mut [i16]) -> usize {
        match self {
            AudioCodec::G711(Law::Ulaw) => dsp::g711::decode_ulaw(payload, out),
            AudioCodec::G711(Law::Alaw) => dsp::g711::decode_alaw(payload, out),
        }
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
    fn maps_g711_and_telephone_event() {
        let m = PayloadMap::from_codecs(&[
            codec(8, "PCMA", 8000),
            codec(0, "pcmu", 8000),
            codec(9, "G722", 8000),
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
        assert_eq!(m.kind(pt(9)), PayloadKind::Other);
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
