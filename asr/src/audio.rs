//! G.711 µ-law and 2× sample-rate conversion (8 kHz ↔ 16 kHz) for the recognizer front end.

/// Decode one G.711 µ-law byte to linear 16-bit PCM.
pub fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0f;
    let magnitude = ((i32::from(mantissa) << 3) + 0x84) << exponent;
    let sample = magnitude - 0x84;
    (if sign != 0 { -sample } else { sample }) as i16
}

/// Encode linear 16-bit PCM to a G.711 µ-law byte.
pub fn ulaw_encode(pcm: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(pcm);
    let sign = if s < 0 { 0x80 } else { 0 };
    if s < 0 {
        s = -s;
    }
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Half-band low-pass FIR (windowed sinc, cut-off at a quarter of the higher rate), odd length.
fn halfband() -> Vec<f32> {
    const HALF: i32 = 31; // 63 taps
    let n = (2 * HALF + 1) as f32;
    (-HALF..=HALF)
        .map(|k| {
            let x = k as f32 / 2.0;
            let sinc = if k == 0 {
                1.0
            } else {
                (std::f32::consts::PI * x).sin() / (std::f32::consts::PI * x)
            };
            let i = (k + HALF) as f32;
            let w = 0.42 - 0.5 * (2.0 * std::f32::consts::PI * i / (n - 1.0)).cos()
                + 0.08 * (4.0 * std::f32::consts::PI * i / (n - 1.0)).cos();
            0.5 * sinc * w
        })
        .collect()
}

/// 8 kHz → 16 kHz, output as f32 in [-1, 1) (the scale Whisper's front end expects).
pub fn upsample2(pcm: &[i16]) -> Vec<f32> {
    let h = halfband();
    let half = (h.len() / 2) as isize;
    // Zero-stuffed signal y[2i] = 2·x[i]; out[n] = Σ_k h[k]·y[n - k + half].
    let n_out = pcm.len() * 2;
    let x = |i: isize| -> f32 {
        if i < 0 || i as usize >= pcm.len() {
            0.0
        } else {
            f32::from(pcm[i as usize]) / 32768.0
        }
    };
    let mut out = Vec::with_capacity(n_out);
    for n in 0..n_out as isize {
        let mut acc = 0.0f32;
        for (k, hk) in h.iter().enumerate() {
            let m = n - k as isize + half;
            if m % 2 == 0 {
                acc += hk * 2.0 * x(m / 2);
            }
        }
        out.push(acc);
    }
    out
}

/// 16 kHz → 8 kHz (low-pass then keep every other sample), for simulating a phone line.
pub fn downsample2(pcm: &[i16]) -> Vec<i16> {
    let h = halfband();
    let half = (h.len() / 2) as isize;
    let mut out = Vec::with_capacity(pcm.len() / 2);
    for n in (0..pcm.len() as isize).step_by(2) {
        let mut acc = 0.0f32;
        for (k, hk) in h.iter().enumerate() {
            let m = n - k as isize + half;
            if m >= 0 && (m as usize) < pcm.len() {
                acc += hk * 2.0 * f32::from(pcm[m as usize]);
            }
        }
        out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trip_is_close() {
        for s in [-32000i16, -1000, -1, 0, 1, 100, 5000, 32000] {
            let d = ulaw_decode(ulaw_encode(s));
            assert!(
                (i32::from(d) - i32::from(s)).abs() <= (i32::from(s).abs() / 16).max(8),
                "{s} -> {d}"
            );
        }
    }

    #[test]
    fn upsample_keeps_a_tone() {
        let x: Vec<i16> = (0..800)
            .map(|i| {
                (10000.0 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 8000.0).sin()) as i16
            })
            .collect();
        let y = upsample2(&x);
        assert_eq!(y.len(), 1600);
        let rms = (y[200..1400].iter().map(|v| v * v).sum::<f32>() / 1200.0).sqrt();
        assert!(
            (rms - 10000.0 / 32768.0 / 2f32.sqrt()).abs() < 0.01,
            "{rms}"
        );
    }
}
