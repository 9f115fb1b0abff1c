//! Whisper log-mel front end, computed as faster-whisper's `FeatureExtractor` does:
//! 16 kHz input padded with 160 zeros, centred 400-point STFT (reflect padding) with a periodic
//! Hann window and hop 160, last frame dropped, power spectrum, 80 slaney-normalised mel bands
//! (librosa `mel(sr=16000, n_fft=400, n_mels=80)`), log10 (floor 1e-10), clamp at max−8 over the
//! clip, (x+4)/4. The caller pads to 3000 frames with zeros.

use rustfft::{num_complex::Complex, Fft, FftPlanner};
use std::sync::Arc;

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 80;
/// Frames in Whisper's 30 s window.
pub const N_FRAMES: usize = 3000;

pub struct MelFrontEnd {
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    /// `N_MELS × (N_FFT/2 + 1)` row-major.
    filters: Vec<f32>,
}

impl Default for MelFrontEnd {
    fn default() -> Self {
        Self::new()
    }
}

fn hz_to_mel(f: f64) -> f64 {
    // librosa slaney scale: linear below 1 kHz, logarithmic above.
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// librosa.filters.mel(sr=16000, n_fft=400, n_mels=80, htk=False, norm="slaney").
pub fn mel_filters() -> Vec<f32> {
    let n_bins = N_FFT / 2 + 1;
    let fftfreqs: Vec<f64> = (0..n_bins)
        .map(|i| i as f64 * (SAMPLE_RATE as f64 / 2.0) / (n_bins - 1) as f64)
        .collect();
    let (mmin, mmax) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
    let mel_f: Vec<f64> = (0..N_MELS + 2)
        .map(|i| mel_to_hz(mmin + (mmax - mmin) * i as f64 / (N_MELS + 1) as f64))
        .collect();
    let mut w = vec![0f32; N_MELS * n_bins];
    for m in 0..N_MELS {
        let fd0 = mel_f[m + 1] - mel_f[m];
        let fd1 = mel_f[m + 2] - mel_f[m + 1];
        let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
        for (k, &f) in fftfreqs.iter().enumerate() {
            let lower = (f - mel_f[m]) / fd0;
            let upper = (mel_f[m + 2] - f) / fd1;
            w[m * n_bins + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    w
}

impl MelFrontEnd {
    pub fn new() -> Self {
        let fft = FftPlanner::new().plan_fft_forward(N_FFT);
        // np.hanning(N+1)[:-1]: periodic Hann.
        let window = (0..N_FFT)
            .map(|i| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos()) as f32
            })
            .collect();
        MelFrontEnd {
            fft,
            window,
            filters: mel_filters(),
        }
    }

    /// Log-mel of 16 kHz audio in [-1, 1): returns (`N_MELS × n_frames` row-major, n_frames).
    pub fn log_mel(&self, audio: &[f32]) -> (Vec<f32>, usize) {
        let mut x = audio.to_vec();
        x.extend(std::iter::repeat_n(0.0, HOP));
        let pad = N_FFT / 2;
        let n = x.len();
        // Reflect padding (numpy "reflect": edge sample not repeated).
        let at = |i: isize| -> f32 {
            let mut j = i - pad as isize;
            if j < 0 {
                j = -j;
            }
            if j >= n as isize {
                j = 2 * (n as isize - 1) - j;
            }
            x[j.clamp(0, n as isize - 1) as usize]
        };
        let n_frames = 1 + n / HOP - 1; // centred frames, last one dropped
        let n_bins = N_FFT / 2 + 1;
        let mut mel = vec![0f32; N_MELS * n_frames];
        let mut buf = vec![Complex::new(0f32, 0f32); N_FFT];
        let mut scratch = vec![Complex::new(0f32, 0f32); self.fft.get_inplace_scratch_len()];
        let mut power = vec![0f32; n_bins];
        for t in 0..n_frames {
            let start = (t * HOP) as isize;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = Complex::new(at(start + i as isize) * self.window[i], 0.0);
            }
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            for (k, p) in power.iter_mut().enumerate() {
                *p = buf[k].norm_sqr();
            }
            for m in 0..N_MELS {
                let row = &self.filters[m * n_bins..(m + 1) * n_bins];
                let e: f32 = row.iter().zip(&power).map(|(a, b)| a * b).sum();
                mel[m * n_frames + t] = e.max(1e-10).log10();
            }
        }
        let max = mel.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        for v in mel.iter_mut() {
            *v = ((*v).max(max - 8.0) + 4.0) / 4.0;
        }
        (mel, n_frames)
    }

    /// Log-mel padded (zeros) or trimmed to Whisper's 3000-frame window:
    /// returns (`N_MELS × N_FRAMES`, content frames).
    pub fn window(&self, audio: &[f32]) -> (Vec<f32>, usize) {
        self.window_n(audio, N_FRAMES)
    }

    /// [`MelFrontEnd::window`] to `frames` columns (≤ [`N_FRAMES`]): CTranslate2 accepts a
    /// shorter encoder input, and the encoder's cost is per column.
    pub fn window_n(&self, audio: &[f32], frames: usize) -> (Vec<f32>, usize) {
        let frames = frames.clamp(2, N_FRAMES);
        let (mel, n) = self.log_mel(audio);
        let keep = n.min(frames);
        let mut out = vec![0f32; N_MELS * frames];
        for m in 0..N_MELS {
            out[m * frames..m * frames + keep].copy_from_slice(&mel[m * n..m * n + keep]);
        }
        // faster-whisper passes the real frame count (without the trailing padding frame) to align.
        (out, (audio.len() / HOP).min(frames))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_window_keeps_content_and_pads() {
        let fe = MelFrontEnd::new();
        let audio: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.05).sin() * 0.1).collect();
        let (full, n_full) = fe.window(&audio);
        let (short, n_short) = fe.window_n(&audio, 300);
        assert_eq!((full.len(), short.len()), (N_MELS * N_FRAMES, N_MELS * 300));
        assert_eq!((n_full, n_short), (100, 100));
        // Same features for the content, zeros after it.
        for m in [0, 40, N_MELS - 1] {
            assert_eq!(
                full[m * N_FRAMES..m * N_FRAMES + 100],
                short[m * 300..m * 300 + 100]
            );
            assert!(short[m * 300 + 101..(m + 1) * 300]
                .iter()
                .all(|&v| v == 0.0));
        }
    }
}
