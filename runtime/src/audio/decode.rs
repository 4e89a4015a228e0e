//! Decoding an uploaded file with symphonia: WAV, AIFF, CAF, FLAC, MP3, Ogg (Vorbis, Opus),
//! MP4/M4A (AAC, ALAC) and WebM/Matroska (Opus, Vorbis), Opus through libopus. The
//! container is detected from the bytes (the file name is only a hint); every failure says
//! which container was found, so a client can tell a truncated file from an unsupported one.

use std::io::Cursor;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::registry::CodecRegistry;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Samples as decoded: interleaved f32 frames at the file's own rate.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Interleaved samples, `channels` per frame.
    pub samples: Vec<f32>,
    pub channels: usize,
    pub sample_rate: u32,
    /// The container recognised (`wav`, `ogg`, `mp4/m4a`, `webm/mkv`, …).
    pub container: &'static str,
}

/// Why a file could not be decoded (a client error: 400 with `param: "file"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error("the audio file is empty")]
    Empty,
    #[error(
        "the file is not audio in a supported format (wav, mp3, flac, ogg, opus, m4a, webm, aiff, caf): {0}"
    )]
    UnknownContainer(String),
    #[error("the {container} file has no audio track")]
    NoAudioTrack { container: &'static str },
    #[error("the {container} file's codec is not supported: {reason}")]
    UnsupportedCodec {
        container: &'static str,
        reason: String,
    },
    #[error("the {container} file is truncated or corrupt: {reason}")]
    Corrupt {
        container: &'static str,
        reason: String,
    },
    #[error("the {container} file contains no audio samples")]
    NoSamples { container: &'static str },
    #[error("the {container} file is longer than {limit_seconds} s of audio")]
    TooLong {
        container: &'static str,
        limit_seconds: u64,
    },
}

/// The name users know a container by (`wav`, not symphonia's `wave`).
fn container_name(short_name: &'static str) -> &'static str {
    match short_name {
        "wave" => "wav",
        "isomp4" => "mp4/m4a",
        "mkv" | "matroska" => "webm/mkv",
        "aac" => "aac (adts)",
        other => other,
    }
}

fn codecs() -> &'static CodecRegistry {
    static REGISTRY: std::sync::OnceLock<CodecRegistry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_audio_decoder::<symphonia_adapter_libopus::OpusDecoder>();
        registry
    })
}

/// Decodes `bytes` (the whole file). `extension` (from the upload's file name) only helps the
/// probe; `max_frames` bounds the decoded length (frames at the file's rate) so a long file
/// is refused before it is all in memory.
pub fn decode_audio(
    bytes: Vec<u8>,
    extension: Option<&str>,
    max_seconds: f64,
) -> Result<DecodedAudio, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    let mut hint = Hint::new();
    if let Some(extension) = extension {
        hint.with_extension(extension);
    }
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| AudioError::UnknownContainer(e.to_string()))?;
    let container = container_name(format.format_info().short_name);
    let track = format
        .default_track(TrackType::Audio)
        .ok_or(AudioError::NoAudioTrack { container })?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or(AudioError::NoAudioTrack { container })?
        .clone();
    let mut decoder = codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| AudioError::UnsupportedCodec {
            container,
            reason: e.to_string(),
        })?;
    let mut samples: Vec<f32> = Vec::new();
    let mut channels = params.channels.as_ref().map_or(0, |c| c.count());
    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut decode_errors = 0usize;
    let mut last_error = String::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A cut-off file ends early: keep what decoded, unless nothing did.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                if samples.is_empty() {
                    return Err(AudioError::Corrupt {
                        container,
                        reason: "it ends before the first audio frame".into(),
                    });
                }
                tracing::debug!(container, "audio ends mid-stream; using what decoded");
                break;
            }
            Err(e) => {
                return Err(AudioError::Corrupt {
                    container,
                    reason: e.to_string(),
                });
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buffer) => {
                let spec = buffer.spec();
                channels = spec.channels().count();
                sample_rate = spec.rate();
                let start = samples.len();
                samples.resize(start + buffer.samples_interleaved(), 0.0);
                buffer.copy_to_slice_interleaved(&mut samples[start..]);
                if sample_rate > 0
                    && channels > 0
                    && samples.len() as f64 / (channels as f64 * f64::from(sample_rate))
                        > max_seconds
                {
                    return Err(AudioError::TooLong {
                        container,
                        limit_seconds: max_seconds as u64,
                    });
                }
            }
            // One bad packet is skipped, as players do; a file of nothing else is corrupt.
            Err(SymphoniaError::DecodeError(reason)) => {
                decode_errors += 1;
                last_error = reason.to_owned();
            }
            Err(e) => {
                return Err(AudioError::Corrupt {
                    container,
                    reason: e.to_string(),
                });
            }
        }
    }
    if samples.is_empty() || channels == 0 || sample_rate == 0 {
        if decode_errors > 0 {
            return Err(AudioError::Corrupt {
                container,
                reason: last_error,
            });
        }
        return Err(AudioError::NoSamples { container });
    }
    Ok(DecodedAudio {
        samples,
        channels,
        sample_rate,
        container,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-bit PCM WAV of `samples` at `rate`, `channels` interleaved.
    pub(crate) fn wav(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
        let data_len = (samples.len() * 2) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        out.extend_from_slice(&(channels * 2).to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    #[test]
    fn a_stereo_wav_decodes_to_interleaved_samples() {
        let bytes = wav(&[16384, -16384, 0, 8192], 22_050, 2);
        let audio = decode_audio(bytes, Some("wav"), 3600.0).unwrap();
        assert_eq!(
            (audio.channels, audio.sample_rate, audio.container),
            (2, 22_050, "wav")
        );
        assert_eq!(audio.samples, vec![0.5, -0.5, 0.0, 0.25]);
    }

    #[test]
    fn empty_garbage_truncated_and_long_files_are_client_errors() {
        assert_eq!(decode_audio(Vec::new(), None, 10.0), Err(AudioError::Empty));
        let garbage = decode_audio(b"definitely not audio at all".to_vec(), None, 10.0);
        assert!(
            matches!(garbage, Err(AudioError::UnknownContainer(_))),
            "{garbage:?}"
        );
        let full = wav(&vec![1000; 16_000], 16_000, 1);
        let header_only = full[..44].to_vec();
        let cut = decode_audio(header_only, None, 10.0).unwrap_err();
        assert!(cut.to_string().contains("wav"), "{cut}");
        let long = decode_audio(full, None, 0.5).unwrap_err();
        assert_eq!(
            long,
            AudioError::TooLong {
                container: "wav",
                limit_seconds: 0
            }
        );
    }
}
