//! G.711 µ-law and A-law companding (ITU-T G.711), the only codecs callmask masks.
//!
//! This module owns the conversion between the 8-bit wire codes and the linear 16-bit samples
//! that the detectors and the mask work on. It is on the per-packet path for every stream, so:
//!
//! - **Decode** is one load from a 256-entry table per code. The tables are `const`, built at
//!   compile time by `const fn`s that state the G.711 formula once, so the table and the
//!   formula cannot drift apart and there is no start-up initialisation.
//! - **Encode** is branch-free and loop-free: sign and magnitude by shifts (speech changes
//!   sign every few samples, so a branch would mispredict), then the segment (exponent) is
//!   the position of the highest set bit of the magnitude: a 256-byte `const` table on the
//!   top bits for µ-law, one `leading_zeros` for A-law, instead of the reference C code's
//!   loop over the eight segment bounds. A 64 Ki-entry encode table would be faster only
//!   while it stayed in cache, which it will not next to the detectors' state. Measured
//!   (criterion, `benches/benches/g711.rs`, on a loaded 2-core box): about 1 ns/sample
//!   decode and 3-5 ns/sample encode; the table and `leading_zeros` variants were equal
//!   within the noise.
//!
//! The arithmetic matches the Sun/CCITT reference code and the evaluation kit's Python
//! reference (`common.py`), value for value: the tests check all 256 codes and all 65 536
//! linear values against an independent statement of those formulas.
//!
//! Zero in µ-law has two codes: `0xFF` (+0) and `0x7F` (−0). Both decode to 0; the encoder
//! always emits `0xFF`, as the reference encoder does, so `0x7F` is the one code that does not
//! survive decode→encode unchanged.

/// µ-law bias added to the magnitude before the segment search (G.711 §3.2: 33 in 14-bit units,
/// 132 = 0x84 in 16-bit units).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude µ-law can represent before the bias pushes it past 15 bits
/// (32767 − 132 = 32635); louder input saturates at the top code.
const ULAW_CLIP: i32 = 32635;
/// A-law codes are transmitted with the even bits inverted (G.711 §3.3, "alternate mark
/// inversion" of the character signal).
const ALAW_XOR: u8 = 0x55;

/// µ-law code → linear sample, for every code. Built at compile time.
const ULAW_TO_LINEAR: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_formula(i as u8);
        i += 1;
    }
    t
};

/// A-law code → linear sample, for every code. Built at compile time.
const ALAW_TO_LINEAR: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_formula(i as u8);
        i += 1;
    }
    t
};

/// µ-law segment of a biased magnitude, indexed by its top 8 bits (`biased >> 7`, 1..=255):
/// the position of the highest set bit. 256 bytes, so it stays in L1 next to everything else.
const ULAW_SEGMENT: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 1;
    while i < 256 {
        t[i] = highest_bit(i as u32) as u8;
        i += 1;
    }
    t
};

/// The G.711 µ-law expansion: codes are sent inverted; sign, 3-bit segment, 4-bit mantissa.
/// The decoded value is the middle of the quantisation cell.
const fn ulaw_decode_formula(code: u8) -> i16 {
    let u = !code;
    let exp = ((u >> 4) & 0x07) as i32;
    let mant = (u & 0x0f) as i32;
    let mag = (((mant << 3) + ULAW_BIAS) << exp) - ULAW_BIAS;
    // mag <= ((15 << 3) + 132) << 7 - 132 = 32124, so the cast cannot truncate.
    if u & 0x80 != 0 {
        -mag as i16
    } else {
        mag as i16
    }
}

/// The G.711 A-law expansion: even bits inverted; sign bit set means positive; segment 0 is
/// linear with the same step as segment 1. The decoded value is the middle of the cell.
const fn alaw_decode_formula(code: u8) -> i16 {
    let a = code ^ ALAW_XOR;
    let exp = ((a >> 4) & 0x07) as i32;
    let mant = (a & 0x0f) as i32;
    let mag = if exp == 0 {
        (mant << 4) + 8
    } else {
        ((mant << 4) + 0x108) << (exp - 1)
    };
    // mag <= (240 + 264) << 6 = 32256, so the cast cannot truncate.
    if a & 0x80 != 0 {
        mag as i16
    } else {
        -mag as i16
    }
}

/// Index of the highest set bit of a positive value (its floor log2).
#[inline(always)]
const fn highest_bit(v: u32) -> u32 {
    31 - v.leading_zeros()
}

/// µ-law byte to linear 16-bit.
#[inline]
pub fn ulaw_to_linear(b: u8) -> i16 {
    ULAW_TO_LINEAR[usize::from(b)]
}

/// Linear 16-bit to µ-law byte. Magnitudes above 32635 saturate; zero encodes as `0xFF`.
#[inline]
pub fn linear_to_ulaw(s: i16) -> u8 {
    let x = i32::from(s);
    // Branch-free sign/magnitude: speech flips sign every few samples, a branch would
    // mispredict constantly.
    let neg = x >> 31; // 0 or -1
    let sign = neg & 0x80;
    let mag = (x ^ neg) - neg;
    // 132 <= biased <= 32767: the highest bit is 7..=14, so the segment is 0..=7.
    let biased = mag.min(ULAW_CLIP) + ULAW_BIAS;
    let exp = i32::from(ULAW_SEGMENT[(biased >> 7) as usize]);
    let mant = (biased >> (exp + 3)) & 0x0f;
    !((sign | (exp << 4) | mant) as u8)
}

/// A-law byte to linear 16-bit.
#[inline]
pub fn alaw_to_linear(b: u8) -> i16 {
    ALAW_TO_LINEAR[usize::from(b)]
}

/// Linear 16-bit to A-law byte. A-law works on 13 bits: the three low bits are dropped first.
#[inline]
pub fn linear_to_alaw(s: i16) -> u8 {
    let x = i32::from(s) >> 3;
    // Negative values are coded as one's complement magnitudes (-1 → 0), as in the reference.
    let neg = x >> 31; // 0 or -1; branch-free as in the µ-law encoder
    let sign = !neg & 0x80;
    let mag = x ^ neg;
    // mag <= 4095 for any i16, so no clip is needed. Segments 0 and 1 share the step size:
    // highest bit <= 4 is segment 0, bit 5 is segment 1, ... bit 11 is segment 7.
    let exp = (highest_bit((mag | 1) as u32) as i32 - 4).max(0);
    let mant = (mag >> exp.max(1)) & 0x0f;
    ((sign | (exp << 4) | mant) as u8) ^ ALAW_XOR
}

/// Decodes µ-law bytes into linear samples. Converts `min(src.len(), dst.len())` samples (a
/// length mismatch is not an error, so a short buffer can never panic the packet path) and
/// returns that count; the rest of `dst` is left untouched.
pub fn decode_ulaw(src: &[u8], dst: &mut [i16]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = ulaw_to_linear(s);
    }
    n
}

/// Encodes linear samples as µ-law bytes. Converts `min(src.len(), dst.len())` samples and
/// returns that count; the rest of `dst` is left untouched.
pub fn encode_ulaw(src: &[i16], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = linear_to_ulaw(s);
    }
    n
}

/// Decodes A-law bytes into linear samples. Converts `min(src.len(), dst.len())` samples and
/// returns that count; the rest of `dst` is left untouched.
pub fn decode_alaw(src: &[u8], dst: &mut [i16]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = alaw_to_linear(s);
    }
    n
}

/// Encodes linear samples as A-law bytes. Converts `min(src.len(), dst.len())` samples and
/// returns that count; the rest of `dst` is left untouched.
pub fn encode_alaw(src: &[i16], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &s) in dst[..n].iter_mut().zip(&src[..n]) {
        *d = linear_to_alaw(s);
    }
    n
}

/// G.711 µ-law silence (decodes to 0).
pub const ULAW_SILENCE: u8 = 0xFF;
/// G.711 A-law silence (decodes to +8: A-law has no zero).
pub const ALAW_SILENCE: u8 = 0xD5;

/// The G.711 companding law of a payload (PCMU or PCMA): the one law type of the workspace,
/// used by the tap's decoders, the agent-leg clamp, the offline tool and the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law (PCMU, RTP payload type 0).
    Ulaw,
    /// A-law (PCMA, RTP payload type 8).
    Alaw,
}

impl Law {
    /// One byte to a linear sample.
    #[inline]
    pub fn to_linear(self, b: u8) -> i16 {
        match self {
            Law::Ulaw => ulaw_to_linear(b),
            Law::Alaw => alaw_to_linear(b),
        }
    }

    /// One linear sample to a byte.
    #[inline]
    pub fn from_linear(self, s: i16) -> u8 {
        match self {
            Law::Ulaw => linear_to_ulaw(s),
            Law::Alaw => linear_to_alaw(s),
        }
    }

    /// Decodes `min(src.len(), dst.len())` bytes (see [`decode_ulaw`]); returns the count.
    pub fn decode(self, src: &[u8], dst: &mut [i16]) -> usize {
        match self {
            Law::Ulaw => decode_ulaw(src, dst),
            Law::Alaw => decode_alaw(src, dst),
        }
    }

    /// Encodes `min(src.len(), dst.len())` samples (see [`encode_ulaw`]); returns the count.
    pub fn encode(self, src: &[i16], dst: &mut [u8]) -> usize {
        match self {
            Law::Ulaw => encode_ulaw(src, dst),
            Law::Alaw => encode_alaw(src, dst),
        }
    }

    /// The byte of silence (the code a zero sample encodes to).
    pub fn silence(self) -> u8 {
        match self {
            Law::Ulaw => ULAW_SILENCE,
            Law::Alaw => ALAW_SILENCE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn law_methods_match_the_functions() {
        for b in 0..=255u8 {
            assert_eq!(Law::Ulaw.to_linear(b), ulaw_to_linear(b));
            assert_eq!(Law::Alaw.to_linear(b), alaw_to_linear(b));
        }
        for law in [Law::Ulaw, Law::Alaw] {
            // A-law has no zero: its silence is the smallest positive step (+8).
            assert!(law.to_linear(law.silence()).abs() <= 8);
            assert_eq!(law.from_linear(0), law.silence());
            let pcm = [0i16, 1000, -1000, 32767, -32768];
            let mut bytes = [0u8; 5];
            assert_eq!(law.encode(&pcm, &mut bytes), 5);
            let mut back = [0i16; 5];
            assert_eq!(law.decode(&bytes, &mut back), 5);
            for (b, x) in bytes.iter().zip(back) {
                assert_eq!(law.to_linear(*b), x);
            }
        }
    }

    // ---- An independent statement of the reference formulas (eval kit `common.py`, itself the
    // Sun/CCITT g711.c arithmetic): float log2 for the segment, as numpy does, instead of the
    // bit tricks above.

    fn ref_ulaw_encode(x: i16) -> u8 {
        let x = i32::from(x);
        let sign = i32::from(x < 0);
        let mag = x.abs().min(32635) + 0x84;
        let exp = ((f64::from(mag).log2().floor() as i32) - 7).clamp(0, 7);
        let mant = (mag >> (exp + 3)) & 0x0f;
        (!((sign << 7) | (exp << 4) | mant) & 0xff) as u8
    }

    fn ref_ulaw_decode(b: u8) -> i16 {
        let u = !i32::from(b) & 0xff;
        let exp = (u >> 4) & 0x07;
        let mant = u & 0x0f;
        let mag = (((mant << 3) + 0x84) << exp) - 0x84;
        (if u & 0x80 != 0 { -mag } else { mag }) as i16
    }

    fn ref_alaw_encode(x: i16) -> u8 {
        let x = i32::from(x) >> 3;
        let sign = i32::from(x >= 0);
        let mag = if x >= 0 { x } else { -x - 1 }.min(0xfff);
        let exp = if mag < 32 {
            0
        } else {
            (f64::from(mag.max(1)).log2().floor() as i32) - 4
        }
        .clamp(0, 7);
        let mant = if exp == 0 { mag >> 1 } else { mag >> exp } & 0x0f;
        (((sign << 7) | (exp << 4) | mant) ^ 0x55) as u8
    }

    fn ref_alaw_decode(b: u8) -> i16 {
        let a = i32::from(b) ^ 0x55;
        let exp = (a >> 4) & 0x07;
        let mant = a & 0x0f;
        let mag = if exp == 0 {
            (mant << 4) + 8
        } else {
            ((mant << 4) + 0x108) << (exp - 1)
        };
        (if a & 0x80 != 0 { mag } else { -mag }) as i16
    }

    #[test]
    fn ulaw_known_codes_g711() {
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xfe), 8);
        assert_eq!(ulaw_to_linear(0x7e), -8);
        assert_eq!(linear_to_ulaw(0), 0xff, "zero encodes as +0 (0xFF)");
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_known_codes_g711() {
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
    }

    #[test]
    fn decode_tables_match_reference_formula_all_codes() {
        for b in 0..=255u8 {
            assert_eq!(ulaw_to_linear(b), ref_ulaw_decode(b), "ulaw code {b:#04x}");
            assert_eq!(alaw_to_linear(b), ref_alaw_decode(b), "alaw code {b:#04x}");
        }
    }

    #[test]
    fn encode_matches_reference_formula_every_i16() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(linear_to_ulaw(x), ref_ulaw_encode(x), "ulaw of {x}");
            assert_eq!(linear_to_alaw(x), ref_alaw_encode(x), "alaw of {x}");
        }
    }

    #[test]
    fn all_codes_round_trip_decode_encode() {
        for b in 0..=255u8 {
            let want_u = if b == 0x7f { 0xff } else { b }; // -0 comes back as +0
            assert_eq!(linear_to_ulaw(ulaw_to_linear(b)), want_u, "ulaw {b:#04x}");
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "alaw {b:#04x}");
        }
    }

    #[test]
    fn decode_is_monotonic_over_segment_order() {
        // µ-law: 0xFF, 0xFE, ... 0x80 climb from 0 to the top; 0x7F ... 0x00 descend.
        for i in 0..127u8 {
            assert!(ulaw_to_linear(0xff - i) < ulaw_to_linear(0xfe - i));
            assert!(ulaw_to_linear(0x7f - i) > ulaw_to_linear(0x7e - i));
        }
        // A-law: after removing the inversion, (segment, mantissa) counts up in magnitude.
        for m in 0..127u8 {
            let pos = |k: u8| alaw_to_linear((0x80 | k) ^ ALAW_XOR);
            let neg = |k: u8| alaw_to_linear(k ^ ALAW_XOR);
            assert!(pos(m) < pos(m + 1));
            assert!(neg(m) > neg(m + 1));
        }
    }

    #[test]
    fn encode_lands_in_the_right_quantisation_cell() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let du = ulaw_to_linear(linear_to_ulaw(x));
            let da = alaw_to_linear(linear_to_alaw(x));
            // Encoding is monotonic: the level never goes down as the input goes up.
            assert!(du >= prev_u && da >= prev_a, "monotonic at {x}");
            prev_u = du;
            prev_a = da;
            // The level is the middle of the cell holding x: error at most half a step.
            let xi = i32::from(x);
            if xi.abs() <= ULAW_CLIP {
                let exp = i32::from((!linear_to_ulaw(x) >> 4) & 0x07);
                let half_step = 4 << exp;
                assert!((i32::from(du) - xi).abs() <= half_step, "ulaw cell of {x}");
            }
            let exp = i32::from(((linear_to_alaw(x) ^ ALAW_XOR) >> 4) & 0x07);
            let half_step = 8 << (exp - 1).max(0);
            assert!((i32::from(da) - xi).abs() <= half_step, "alaw cell of {x}");
        }
    }

    #[test]
    fn slice_helpers_process_min_length() {
        let codes = [0xffu8, 0x80, 0x00, 0xfe];
        let mut pcm = [7i16; 3];
        assert_eq!(decode_ulaw(&codes, &mut pcm), 3);
        assert_eq!(pcm, [0, 32124, -32124]);
        let mut back = [0u8; 6];
        assert_eq!(encode_ulaw(&pcm, &mut back), 3);
        assert_eq!(back, [0xff, 0x80, 0x00, 0, 0, 0]);

        let mut pcm = [7i16; 5];
        assert_eq!(decode_alaw(&[0xd5, 0x2a], &mut pcm), 2);
        assert_eq!(pcm, [8, -32256, 7, 7, 7]);
        let mut out = [0u8; 1];
        assert_eq!(encode_alaw(&pcm, &mut out), 1);
        assert_eq!(out, [0xd5]);
        assert_eq!(decode_ulaw(&[], &mut pcm), 0);
    }

    /// The eval corpus WAVs are exactly the µ-law decode of the `.ulaw` files (eval README):
    /// decode the `.ulaw` and compare every sample.
    #[test]
    fn corpus_call_000_wav_is_ulaw_decode() {
        let dir = std::path::Path::new("/work/shared/eval/data/dev");
        let (Ok(ulaw), Ok(wav)) = (
            std::fs::read(dir.join("call_000.ulaw")),
            std::fs::read(dir.join("call_000.wav")),
        ) else {
            println!("skipped: eval corpus not found at {}", dir.display());
            return;
        };
        let data = wav_data_chunk(&wav).expect("call_000.wav has a data chunk");
        let samples: Vec<i16> = data
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(samples.len(), ulaw.len());
        let mut decoded = vec![0i16; ulaw.len()];
        assert_eq!(decode_ulaw(&ulaw, &mut decoded), ulaw.len());
        let mismatches = decoded.iter().zip(&samples).filter(|(a, b)| a != b).count();
        assert_eq!(mismatches, 0);
        // And the encoder gets the exact bytes back (all levels are decoded levels).
        let mut reencoded = vec![0u8; ulaw.len()];
        encode_ulaw(&decoded, &mut reencoded);
        let differ = reencoded
            .iter()
            .zip(&ulaw)
            .filter(|(a, b)| a != b && !(**a == 0xff && **b == 0x7f))
            .count();
        assert_eq!(differ, 0);
    }

    /// The payload of the RIFF `data` chunk (enough of a WAV reader for the test).
    fn wav_data_chunk(wav: &[u8]) -> Option<&[u8]> {
        if wav.get(0..4)? != b"RIFF" || wav.get(8..12)? != b"WAVE" {
            return None;
        }
        let mut pos = 12;
        while pos + 8 <= wav.len() {
            let id = &wav[pos..pos + 4];
            let len = u32::from_le_bytes(wav[pos + 4..pos + 8].try_into().ok()?) as usize;
            let body = wav.get(pos + 8..(pos + 8 + len).min(wav.len()))?;
            if id == b"data" {
                return Some(body);
            }
            pos += 8 + len + (len & 1);
        }
        None
    }
}
