//! Whisper's audio front end: the Slaney-style mel filter bank (as librosa builds it for
//! openai-whisper's `mel_filters.npz`) and the log-mel spectrogram the encoder reads, both
//! computed natively so no asset file is needed at run time.
//!
//! The spectrogram follows openai-whisper's `log_mel_spectrogram`: a 400-point periodic Hann
//! window every 160 samples over 16 kHz audio, reflect-padded by half a window at both ends
//! (`torch.stft(center=True)`), the last frame dropped, power spectrum through the filter bank,
//! `log10` clamped at 1e-10, a dynamic range of 8 (in log10 units) below the maximum, then
//! `(x + 4) / 4`.

use std::sync::Arc;

use realfft::RealFftPlanner;

/// Whisper's sample rate: every input is resampled to it first.
pub const SAMPLE_RATE: u32 = 16_000;
/// FFT size and window length (25 ms).
pub const N_FFT: usize = 400;
/// Samples between frames (10 ms): one mel frame per 160 samples.
pub const HOP_LENGTH: usize = 160;
/// Frequency bins of one frame's power spectrum.
pub const N_FREQ_BINS: usize = N_FFT / 2 + 1;

/// The mel filter bank: `n_mels` rows of [`N_FREQ_BINS`] weights, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct MelFilters {
    n_mels: usize,
    weights: Vec<f32>,
}

impl MelFilters {
    /// The Slaney-scale, Slaney-normalised bank over 0 Hz to Nyquist that librosa's
    /// `filters.mel(sr=16000, n_fft=400, n_mels=n_mels)` returns (80 bins for every Whisper
    /// up to large-v2, 128 for large-v3). Computed in f64 and stored as f32, as librosa does.
    pub fn slaney(n_mels: usize) -> Self {
        let nyquist = f64::from(SAMPLE_RATE) / 2.0;
        let fft_freqs: Vec<f64> = (0..N_FREQ_BINS)
            .map(|i| nyquist * i as f64 / (N_FREQ_BINS - 1) as f64)
            .collect();
        // n_mels + 2 band edges, evenly spaced on the mel scale.
        let top = hz_to_mel(nyquist);
        let edges: Vec<f64> = (0..n_mels + 2)
            .map(|i| mel_to_hz(top * i as f64 / (n_mels + 1) as f64))
            .collect();
        let mut weights = Vec::with_capacity(n_mels * N_FREQ_BINS);
        for m in 0..n_mels {
            let (low, centre, high) = (edges[m], edges[m + 1], edges[m + 2]);
            // Slaney normalisation: each triangle has unit area in Hz.
            let norm = 2.0 / (high - low);
            for &f in &fft_freqs {
                let rising = (f - low) / (centre - low);
                let falling = (high - f) / (high - centre);
                weights.push((rising.min(falling).max(0.0) * norm) as f32);
            }
        }
        Self { n_mels, weights }
    }

    /// Number of mel bins (rows).
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The weights, `n_mels` rows of [`N_FREQ_BINS`], row-major.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    fn row(&self, m: usize) -> &[f32] {
        &self.weights[m * N_FREQ_BINS..(m + 1) * N_FREQ_BINS]
    }
}

/// The Slaney mel scale (librosa's default, `htk=False`): linear below 1 kHz, logarithmic
/// above.
fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        min_log_mel + (hz / MIN_LOG_HZ).ln() / log_step
    } else {
        hz / F_SP
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let log_step = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (log_step * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

/// A log-mel spectrogram: `n_mels` rows of `n_frames` values, row-major (the layout the
/// encoder's first convolution reads as `[n_mels, n_frames]`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    /// Mel bins (rows).
    pub n_mels: usize,
    /// Frames (columns), one per [`HOP_LENGTH`] samples.
    pub n_frames: usize,
    /// The values, row-major.
    pub values: Vec<f32>,
}

/// Computes log-mel spectrograms with a reusable FFT plan.
pub struct MelSpectrogram {
    filters: MelFilters,
    fft: Arc<dyn realfft::RealToComplex<f32>>,
    window: Vec<f32>,
}

impl std::fmt::Debug for MelSpectrogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelSpectrogram")
            .field("n_mels", &self.filters.n_mels)
            .finish_non_exhaustive()
    }
}

impl MelSpectrogram {
    /// A spectrogram with `filters` (from [`MelFilters::slaney`]).
    pub fn new(filters: MelFilters) -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        // torch.hann_window(N_FFT) is periodic: the denominator is N, not N - 1.
        let window = (0..N_FFT)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64;
                (0.5 - 0.5 * phase.cos()) as f32
            })
            .collect();
        Self {
            filters,
            fft,
            window,
        }
    }

    /// The filter bank in use.
    pub fn filters(&self) -> &MelFilters {
        &self.filters
    }

    /// The log-mel spectrogram of 16 kHz mono `samples` followed by `padding` zero samples
    /// (openai-whisper's `transcribe` appends 30 s of silence so the last window is whole).
    /// `samples.len() / HOP_LENGTH` frames of `samples` plus `padding / HOP_LENGTH` more (the
    /// frame `torch.stft` adds at the end is dropped, as Whisper does). Empty input gives an
    /// empty spectrogram.
    pub fn compute(&self, samples: &[f32], padding: usize) -> LogMel {
        let n_mels = self.filters.n_mels;
        let len = samples.len() + padding;
        if len == 0 {
            return LogMel {
                n_mels,
                n_frames: 0,
                values: Vec::new(),
            };
        }
        let signal = |i: usize| samples.get(i).copied().unwrap_or(0.0);
        let half = N_FFT / 2;
        // Reflection without repeating the edge sample, as torch's and numpy's "reflect";
        // a signal shorter than half a window reflects back and forth.
        let padded_at = |j: usize| -> f32 {
            let mut i = j as isize - half as isize;
            let last = len as isize - 1;
            if last == 0 {
                return signal(0);
            }
            while i < 0 || i > last {
                i = if i < 0 { -i } else { 2 * last - i };
            }
            signal(i as usize)
        };
        let n_frames = len / HOP_LENGTH;
        let mut power = vec![0f32; N_FREQ_BINS * n_frames];
        let mut frame = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        for t in 0..n_frames {
            for (n, slot) in frame.iter_mut().enumerate() {
                *slot = padded_at(t * HOP_LENGTH + n) * self.window[n];
            }
            self.fft
                .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                .expect("buffers come from the plan");
            for (k, c) in spectrum.iter().enumerate() {
                power[k * n_frames + t] = c.norm_sqr();
            }
        }
        let mut values = vec![0f32; n_mels * n_frames];
        let mut max = f32::NEG_INFINITY;
        for m in 0..n_mels {
            let row = self.filters.row(m);
            let out = &mut values[m * n_frames..(m + 1) * n_frames];
            for (k, &w) in row.iter().enumerate() {
                if w == 0.0 {
                    continue;
                }
                let bins = &power[k * n_frames..(k + 1) * n_frames];
                for (o, &p) in out.iter_mut().zip(bins) {
                    *o += w * p;
                }
            }
            for o in out.iter_mut() {
                *o = o.max(1e-10).log10();
                max = max.max(*o);
            }
        }
        let floor = max - 8.0;
        for v in &mut values {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        LogMel {
            n_mels,
            n_frames,
            values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mel_scale_round_trips_and_bends_at_one_kilohertz() {
        for hz in [0.0, 100.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9, "{hz}");
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn filters_are_triangles_of_unit_area() {
        let filters = MelFilters::slaney(80);
        assert_eq!(filters.weights().len(), 80 * N_FREQ_BINS);
        assert!(filters.weights().iter().all(|w| *w >= 0.0));
        for m in 0..80 {
            assert!(filters.row(m).iter().any(|w| *w > 0.0), "row {m} is empty");
        }
    }

    #[test]
    fn frames_follow_the_hop_and_silence_is_the_floor() {
        let mel = MelSpectrogram::new(MelFilters::slaney(80));
        let silence = mel.compute(&[0.0; 1600], 0);
        assert_eq!((silence.n_mels, silence.n_frames), (80, 10));
        // log10(1e-10) = -10, range 8 below the max (also -10): (−10 + 4) / 4.
        assert!(silence.values.iter().all(|v| (*v + 1.5).abs() < 1e-6));
        assert_eq!(mel.compute(&[0.1; 3], 480_000).n_frames, 3000);
        assert_eq!(mel.compute(&[], 0).n_frames, 0);
    }

    #[test]
    fn a_tone_lights_the_bin_of_its_frequency() {
        let mel = MelSpectrogram::new(MelFilters::slaney(80));
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin())
            .collect();
        let spec = mel.compute(&tone, 0);
        let frame = 50;
        let column: Vec<f32> = (0..80)
            .map(|m| spec.values[m * spec.n_frames + frame])
            .collect();
        let loudest = (0..80)
            .max_by(|a, b| column[*a].total_cmp(&column[*b]))
            .unwrap();
        // The band whose centre is nearest 440 Hz on the mel scale.
        let centre_mel = |m: usize| hz_to_mel(8000.0) * (m + 1) as f64 / 81.0;
        let nearest = (0..80)
            .min_by(|a, b| {
                (centre_mel(*a) - hz_to_mel(440.0))
                    .abs()
                    .total_cmp(&(centre_mel(*b) - hz_to_mel(440.0)).abs())
            })
            .unwrap();
        assert_eq!(loudest, nearest);
    }
}
