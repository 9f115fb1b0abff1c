//! ITU-T G.722 (7 kHz sub-band ADPCM, 64 kbit/s) decoder, for the recorder tap.
//!
//! The decoder follows the ITU-T G.722 block diagram (blocks 2–6 of the lower and higher
//! sub-bands, then the receive QMF) as spandsp's `g722_decode.c` (Steve Underwood, public
//! domain; after the CMU 1993 implementation) writes it, and is checked **bit-exact against
//! Debian's spandsp** by `proxy/tests/g722_spandsp.rs` — spandsp's own test suite runs the ITU
//! test vectors, which cannot be downloaded here. Only 64 kbit/s, unpacked (one code per
//! byte, RFC 3551 §4.5.2) is needed for RTP.
//!
//! Two outputs: [`G722Output::Wide`] (16 kHz, the codec's own rate) and
//! [`G722Output::LowBand`] (8 kHz: the reconstructed lower sub-band, i.e. 0–4 kHz, which is
//! what the 8 kHz masking pipeline records; spandsp's `G722_SAMPLE_RATE_8000`). No allocation:
//! state is a few fixed arrays, output goes into the caller's slice.

/// Which signal [`G722Decoder::decode`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G722Output {
    /// 16 kHz, two samples per code byte.
    Wide,
    /// 8 kHz lower sub-band, one sample per code byte (the higher band is not decoded).
    LowBand,
}

/// Lower sub-band log-scale-factor adaptation (ITU-T G.722 Table 14/G.722, `WL`).
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
/// 4-bit lower code → `WL` index (`RIL` → `IL4` mapping).
const RL42: [i32; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// Inverse log base table (`ILB`): 2^(i/32) scaled by 2048.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// Higher sub-band log-scale-factor adaptation (`WH`).
const WH: [i32; 3] = [0, -214, 798];
/// 2-bit higher code → `WH` index.
const RH2: [i32; 4] = [2, 1, 2, 1];
/// Higher sub-band inverse quantizer (`QM2`).
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
/// 4-bit lower sub-band inverse quantizer (`QM4`, used for the predictor in every mode).
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
/// 6-bit lower sub-band inverse quantizer (`QM6`, 64 kbit/s output).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
/// Receive QMF coefficients (24 taps, symmetric: 12 listed).
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

fn sat16(v: i32) -> i32 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// One sub-band's ADPCM state (ITU-T G.722 variable names).
#[derive(Debug, Clone, Copy, Default)]
struct Band {
    /// Signal estimate.
    s: i32,
    /// Pole-section estimate.
    sp: i32,
    /// Zero-section estimate.
    sz: i32,
    /// Reconstructed signal, delayed.
    r: [i32; 3],
    /// Pole coefficients.
    a: [i32; 3],
    /// Pole coefficients, updated.
    ap: [i32; 3],
    /// Partially reconstructed signal, delayed.
    p: [i32; 3],
    /// Quantized difference signal, delayed.
    d: [i32; 7],
    /// Zero coefficients.
    b: [i32; 7],
    /// Zero coefficients, updated.
    bp: [i32; 7],
    /// Log scale factor.
    nb: i32,
    /// Scale factor.
    det: i32,
}

impl Band {
    fn new(det: i32) -> Self {
        Band {
            det,
            ..Band::default()
        }
    }

    /// Block 4: reconstruction, pole and zero predictor adaptation, delays, prediction.
    fn block4(&mut self, d: i32) {
        // RECONS, PARREC
        self.d[0] = d;
        self.r[0] = sat16(self.s + d);
        self.p[0] = sat16(self.sz + d);
        // UPPOL2
        let sg0 = self.p[0] >> 15;
        let sg1 = self.p[1] >> 15;
        let sg2 = self.p[2] >> 15;
        let wd1 = sat16(self.a[1] << 2);
        let wd2 = (if sg0 == sg1 { -wd1 } else { wd1 }).min(32767);
        let mut wd3 = (wd2 >> 7) + if sg0 == sg2 { 128 } else { -128 };
        wd3 += (self.a[2] * 32512) >> 15;
        self.ap[2] = wd3.clamp(-12288, 12288);
        // UPPOL1
        let wd1 = if sg0 == sg1 { 192 } else { -192 };
        let wd2 = (self.a[1] * 32640) >> 15;
        let lim = sat16(15360 - self.ap[2]);
        self.ap[1] = sat16(wd1 + wd2).clamp(-lim, lim);
        // UPZERO
        let step = if d == 0 { 0 } else { 128 };
        let sgd = d >> 15;
        for i in 1..7 {
            let wd2 = if self.d[i] >> 15 == sgd { step } else { -step };
            let wd3 = (self.b[i] * 32640) >> 15;
            self.bp[i] = sat16(wd2 + wd3);
        }
        // DELAYA
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
            self.b[i] = self.bp[i];
        }
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
            self.a[i] = self.ap[i];
        }
        // FILTEP
        let wd1 = (self.a[1] * sat16(self.r[1] + self.r[1])) >> 15;
        let wd2 = (self.a[2] * sat16(self.r[2] + self.r[2])) >> 15;
        self.sp = sat16(wd1 + wd2);
        // FILTEZ
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat16(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat16(sz);
        // PREDIC
        self.s = sat16(self.sp + self.sz);
    }

    /// Blocks 3L/3H: log scale factor adaptation (`wl` step, `limit` ceiling) and the scale
    /// factor from it (`shift` = 8 lower, 10 higher).
    fn scale(&mut self, wl: i32, limit: i32, shift: i32) {
        self.nb = (((self.nb * 127) >> 7) + wl).clamp(0, limit);
        let wd1 = (self.nb >> 6) & 31;
        let wd2 = shift - (self.nb >> 11);
        let wd3 = if wd2 < 0 {
            ILB[wd1 as usize] << -wd2
        } else {
            ILB[wd1 as usize] >> wd2
        };
        self.det = wd3 << 2;
    }
}

/// A G.722 64 kbit/s decoder (one per RTP stream).
#[derive(Debug, Clone)]
pub struct G722Decoder {
    output: G722Output,
    band: [Band; 2],
    /// Receive QMF delay line.
    x: [i32; 24],
}

impl G722Decoder {
    /// A decoder in its reset state (G.722 §5: scale factors 32 and 8).
    pub fn new(output: G722Output) -> Self {
        G722Decoder {
            output,
            band: [Band::new(32), Band::new(8)],
            x: [0; 24],
        }
    }

    /// Samples [`Self::decode`] writes per code byte.
    pub fn samples_per_byte(&self) -> usize {
        match self.output {
            G722Output::Wide => 2,
            G722Output::LowBand => 1,
        }
    }

    /// Decodes `codes` (one 8-bit code per byte) into `out`; returns the samples written.
    /// Decoding stops early (returns fewer) when `out` is full.
    pub fn decode(&mut self, codes: &[u8], out: &mut [i16]) -> usize {
        let per = self.samples_per_byte();
        let mut n = 0;
        for &code in codes {
            if n + per > out.len() {
                break;
            }
            let code = i32::from(code);
            // Lower sub-band: 6-bit code (64 kbit/s), its top 4 bits drive the predictor.
            let ilow = code & 0x3f;
            let ihigh = (code >> 6) & 0x03;
            let low = &mut self.band[0];
            // Block 5L: inverse quantizer (6-bit), reconstruction, limit.
            let rlow = (low.s + ((low.det * QM6[ilow as usize]) >> 15)).clamp(-16384, 16383);
            // Block 2L: 4-bit inverse quantizer for the predictor.
            let il4 = (ilow >> 2) as usize;
            let dlowt = (low.det * QM4[il4]) >> 15;
            low.scale(WL[RL42[il4] as usize], 18432, 8);
            low.block4(dlowt);
            if self.output == G722Output::LowBand {
                out[n] = (rlow << 1) as i16;
                n += 1;
                continue;
            }
            // Higher sub-band: blocks 2H, 5H, 6H, 3H, 4H.
            let high = &mut self.band[1];
            let dhigh = (high.det * QM2[ihigh as usize]) >> 15;
            let rhigh = (dhigh + high.s).clamp(-16384, 16383);
            high.scale(WH[RH2[ihigh as usize] as usize], 22528, 10);
            high.block4(dhigh);
            // Receive QMF: two output samples per code.
            self.x.copy_within(2.., 0);
            self.x[22] = rlow + rhigh;
            self.x[23] = rlow - rhigh;
            let (mut xout1, mut xout2) = (0i32, 0i32);
            for i in 0..12 {
                xout2 += self.x[2 * i] * QMF[i];
                xout1 += self.x[2 * i + 1] * QMF[11 - i];
            }
            out[n] = sat16(xout1 >> 11) as i16;
            out[n + 1] = sat16(xout2 >> 11) as i16;
            n += 2;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_codes_decode_to_near_silence_and_counts_fit() {
        // 0xff: lower code 0x3f (smallest negative step), higher code 3: a quiet signal.
        let mut d = G722Decoder::new(G722Output::Wide);
        let mut out = [0i16; 320];
        assert_eq!(d.decode(&[0xff; 160], &mut out), 320);
        assert!(out.iter().all(|s| s.abs() < 64), "{:?}", &out[..16]);
        let mut d = G722Decoder::new(G722Output::LowBand);
        assert_eq!(d.decode(&[0xff; 160], &mut out), 160);
        // A short output slice bounds the work, never panics.
        assert_eq!(d.decode(&[0xff; 160], &mut out[..7]), 7);
        let mut w = G722Decoder::new(G722Output::Wide);
        assert_eq!(w.decode(&[0xff; 4], &mut out[..7]), 6);
    }
}
