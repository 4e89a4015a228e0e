//! Down-mixing to mono and resampling with rubato's FFT resampler (band-limited, so content
//! above the new Nyquist rate does not alias into speech): to Whisper's 16 kHz for uploads,
//! from a voice's rate to 24 kHz for speech output.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::DecodedAudio;

/// Whisper's sample rate.
pub const TARGET_RATE: u32 = 16_000;

/// The mean of the channels of every frame, at 16 kHz.
pub fn to_mono_16k(audio: &DecodedAudio) -> Result<Vec<f32>, String> {
    let channels = audio.channels.max(1);
    let mono: Vec<f32> = audio
        .samples
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    resample_mono(&mono, audio.sample_rate, TARGET_RATE)
}

/// Mono samples at `from` Hz, resampled to `to` Hz.
pub fn resample_mono(mono: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to || mono.is_empty() {
        return Ok(mono.to_vec());
    }
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| format!("cannot resample from {from} Hz to {to} Hz: {e}"))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| e.to_string())?;
    let capacity = resampler.process_all_needed_output_len(mono.len());
    let mut out = vec![0.0f32; capacity];
    let mut output = InterleavedSlice::new_mut(&mut out, 1, capacity).map_err(|e| e.to_string())?;
    let (_, produced) = resampler
        .process_all_into_buffer(&input, &mut output, mono.len(), None)
        .map_err(|e| format!("resampling failed: {e}"))?;
    out.truncate(produced);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f32, seconds: f32, channels: usize) -> DecodedAudio {
        let frames = (rate as f32 * seconds) as usize;
        let samples = (0..frames)
            .flat_map(|i| {
                let v = (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5;
                std::iter::repeat_n(v, channels)
            })
            .collect();
        DecodedAudio {
            samples,
            channels,
            sample_rate: rate,
            container: "wav",
        }
    }

    #[test]
    fn resampling_keeps_duration_and_a_tone_in_band() {
        let mono = to_mono_16k(&tone(44_100, 440.0, 1.0, 2)).unwrap();
        assert!((mono.len() as i64 - 16_000).abs() <= 2, "{}", mono.len());
        // Same tone at 16 kHz: correlation with the ideal signal, ignoring the edges.
        let ideal: Vec<f32> = (0..mono.len())
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin() * 0.5)
            .collect();
        let (a, b) = (&mono[1000..15_000], &ideal[1000..15_000]);
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm =
            (a.iter().map(|x| x * x).sum::<f32>() * b.iter().map(|y| y * y).sum::<f32>()).sqrt();
        assert!(dot / norm > 0.99, "correlation {}", dot / norm);
    }

    #[test]
    fn channels_are_averaged_and_16k_passes_through() {
        let audio = DecodedAudio {
            samples: vec![1.0, 0.0, 0.5, 0.5],
            channels: 2,
            sample_rate: 16_000,
            container: "wav",
        };
        assert_eq!(to_mono_16k(&audio).unwrap(), vec![0.5, 0.5]);
    }
}
