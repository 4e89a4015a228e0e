//! Speech output in every format of OpenAI's `response_format`, as a stream of byte chunks:
//! each sentence's samples go in as they are synthesised and what the format can already say
//! comes out. MP3 (LAME), Opus in Ogg (libopus and the `ogg` crate), WAV with a streaming
//! header and raw PCM stream; FLAC is written whole at the end (its header holds totals).
//! Every format carries 24 kHz mono 16-bit audio, OpenAI's contract, so the caller resamples
//! the voice's output first ([`super::resample_mono`]).

use std::num::NonZeroU32;

use mp3lame_encoder::{Bitrate, Builder, FlushNoGap, MonoPcm, Quality};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use opusic_c::{Application, Channels, SampleRate};

/// The rate of every format (OpenAI: "24kHz, 16-bit signed, little-endian" for pcm, and
/// the same audio in the others).
pub const OUTPUT_RATE: u32 = 24_000;

/// A `response_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Mp3,
    Opus,
    Aac,
    Flac,
    Wav,
    Pcm,
}

impl AudioFormat {
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "mp3" => Self::Mp3,
            "opus" => Self::Opus,
            "aac" => Self::Aac,
            "flac" => Self::Flac,
            "wav" => Self::Wav,
            "pcm" => Self::Pcm,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
            Self::Aac => "aac",
            Self::Flac => "flac",
            Self::Wav => "wav",
            Self::Pcm => "pcm",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Mp3 => "audio/mpeg",
            Self::Opus => "audio/ogg; codecs=opus",
            Self::Aac => "audio/aac",
            Self::Flac => "audio/flac",
            Self::Wav => "audio/wav",
            Self::Pcm => "audio/pcm",
        }
    }

    /// The formats this build encodes, in OpenAI's order (AAC has no encoder here).
    pub const SUPPORTED: [Self; 5] = [Self::Mp3, Self::Opus, Self::Flac, Self::Wav, Self::Pcm];

    /// Whether audio can go out before the whole text is spoken.
    pub fn streams(self) -> bool {
        !matches!(self, Self::Flac)
    }
}

/// A format's encoder, fed 24 kHz mono samples in `[-1, 1]`.
pub struct Encoder {
    inner: Inner,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

enum Inner {
    Pcm,
    Wav { header_sent: bool },
    Flac { samples: Vec<i32> },
    Mp3(Box<mp3lame_encoder::Encoder>),
    Opus(Box<OggOpus>),
}

fn to_i16(samples: &[f32]) -> Vec<i16> {
    #[allow(clippy::cast_possible_truncation, reason = "clamped to the i16 range")]
    samples
        .iter()
        .map(|&s| (s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
        .collect()
}

fn le_bytes(samples: &[f32]) -> Vec<u8> {
    to_i16(samples)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect()
}

/// A RIFF/WAVE header for 16-bit mono at [`OUTPUT_RATE`] whose sizes say "unknown" (the
/// maximum), as streaming WAV writers do; decoders read to the end of the data.
fn streaming_wav_header() -> Vec<u8> {
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&u32::MAX.to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&1u16.to_le_bytes()); // mono
    h.extend_from_slice(&OUTPUT_RATE.to_le_bytes());
    h.extend_from_slice(&(OUTPUT_RATE * 2).to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&(u32::MAX - 36).to_le_bytes());
    h
}

/// Ogg Opus (RFC 7845): `OpusHead` and `OpusTags` pages, then 20 ms packets whose granule
/// positions count 48 kHz samples.
struct OggOpus {
    encoder: opusic_c::Encoder,
    writer: PacketWriter<'static, Vec<u8>>,
    /// Samples not yet a whole frame.
    pending: Vec<f32>,
    /// 48 kHz samples written, pre-skip included.
    granule: u64,
    pre_skip: u64,
}

/// 20 ms at 24 kHz.
const OPUS_FRAME: usize = 480;
const OPUS_SERIAL: u32 = 0x4845_4152; // "HEAR"

impl OggOpus {
    fn new() -> Result<Self, String> {
        let mut encoder =
            opusic_c::Encoder::new(Channels::Mono, SampleRate::Hz24000, Application::Audio)
                .map_err(|e| format!("cannot start the Opus encoder: {e:?}"))?;
        // Lookahead is counted at the input rate; Ogg Opus counts pre-skip at 48 kHz.
        let pre_skip = u64::from(encoder.get_look_ahead().map_err(|e| format!("{e:?}"))?) * 2;
        let mut writer = PacketWriter::new(Vec::new());
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // channels
        #[allow(clippy::cast_possible_truncation, reason = "a few hundred samples")]
        head.extend_from_slice(&(pre_skip as u16).to_le_bytes());
        head.extend_from_slice(&OUTPUT_RATE.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family: mono/stereo
        let mut tags = Vec::new();
        let vendor = b"Hearth";
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes()); // no comments
        let io = |e: std::io::Error| format!("writing Ogg: {e}");
        writer
            .write_packet(head, OPUS_SERIAL, PacketWriteEndInfo::EndPage, 0)
            .map_err(io)?;
        writer
            .write_packet(tags, OPUS_SERIAL, PacketWriteEndInfo::EndPage, 0)
            .map_err(io)?;
        Ok(Self {
            encoder,
            writer,
            pending: Vec::new(),
            granule: pre_skip,
            pre_skip,
        })
    }

    fn frames(&mut self, last: bool) -> Result<Vec<u8>, String> {
        if last {
            // Pad to a whole frame and cover the encoder's delay, so the end is heard.
            #[allow(clippy::cast_possible_truncation, reason = "a few hundred samples")]
            let delay = (self.pre_skip / 2) as usize;
            let total = (self.pending.len() + delay).div_ceil(OPUS_FRAME).max(1) * OPUS_FRAME;
            self.pending.resize(total, 0.0);
        }
        let whole = self.pending.len() / OPUS_FRAME * OPUS_FRAME;
        let chunks: Vec<Vec<f32>> = self.pending[..whole]
            .chunks(OPUS_FRAME)
            .map(<[f32]>::to_vec)
            .collect();
        self.pending.drain(..whole);
        let count = chunks.len();
        for (i, frame) in chunks.into_iter().enumerate() {
            let mut packet = Vec::with_capacity(1500);
            self.encoder
                .encode_float_to_vec(&frame, &mut packet)
                .map_err(|e| format!("Opus encoding failed: {e:?}"))?;
            self.granule += (OPUS_FRAME * 2) as u64;
            let end = if last && i + 1 == count {
                PacketWriteEndInfo::EndStream
            } else if i + 1 == count {
                // Flush a page per sentence so the client gets it now.
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            self.writer
                .write_packet(packet, OPUS_SERIAL, end, self.granule)
                .map_err(|e| format!("writing Ogg: {e}"))?;
        }
        Ok(std::mem::take(self.writer.inner_mut()))
    }
}

impl Encoder {
    /// An encoder for `format`; [`AudioFormat::Aac`] is not in this build.
    pub fn new(format: AudioFormat) -> Result<Self, String> {
        let inner = match format {
            AudioFormat::Pcm => Inner::Pcm,
            AudioFormat::Wav => Inner::Wav { header_sent: false },
            AudioFormat::Flac => Inner::Flac {
                samples: Vec::new(),
            },
            AudioFormat::Mp3 => {
                let mut builder = Builder::new().ok_or("cannot start the MP3 encoder")?;
                let setup = |e: mp3lame_encoder::BuildError| format!("MP3 encoder: {e}");
                builder.set_num_channels(1).map_err(setup)?;
                builder.set_sample_rate(OUTPUT_RATE).map_err(setup)?;
                builder
                    .set_output_sample_rate(NonZeroU32::new(OUTPUT_RATE))
                    .map_err(setup)?;
                builder.set_brate(Bitrate::Kbps64).map_err(setup)?;
                builder.set_quality(Quality::Good).map_err(setup)?;
                Inner::Mp3(Box::new(builder.build().map_err(setup)?))
            }
            AudioFormat::Opus => Inner::Opus(Box::new(OggOpus::new()?)),
            AudioFormat::Aac => return Err("this build has no AAC encoder".into()),
        };
        Ok(Self { inner })
    }

    /// The bytes that `samples` (24 kHz mono) add to the stream; may be empty.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>, String> {
        match &mut self.inner {
            Inner::Pcm => Ok(le_bytes(samples)),
            Inner::Wav { header_sent } => {
                let mut out = if *header_sent {
                    Vec::new()
                } else {
                    *header_sent = true;
                    streaming_wav_header()
                };
                out.extend(le_bytes(samples));
                Ok(out)
            }
            Inner::Flac { samples: all } => {
                all.extend(to_i16(samples).into_iter().map(i32::from));
                Ok(Vec::new())
            }
            Inner::Mp3(encoder) => {
                let pcm = to_i16(samples);
                let mut out =
                    Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(pcm.len()));
                encoder
                    .encode_to_vec(MonoPcm(&pcm), &mut out)
                    .map_err(|e| format!("MP3 encoding failed: {e}"))?;
                Ok(out)
            }
            Inner::Opus(ogg) => {
                ogg.pending.extend_from_slice(samples);
                ogg.frames(false)
            }
        }
    }

    /// The stream's last bytes.
    pub fn finish(&mut self) -> Result<Vec<u8>, String> {
        match &mut self.inner {
            Inner::Pcm => Ok(Vec::new()),
            Inner::Wav { header_sent } => Ok(if *header_sent {
                Vec::new()
            } else {
                *header_sent = true;
                streaming_wav_header()
            }),
            Inner::Flac { samples } => flac(samples),
            Inner::Mp3(encoder) => {
                let mut out = Vec::with_capacity(7200);
                encoder
                    .flush_to_vec::<FlushNoGap>(&mut out)
                    .map_err(|e| format!("MP3 encoding failed: {e}"))?;
                Ok(out)
            }
            Inner::Opus(ogg) => ogg.frames(true),
        }
    }
}

fn flac(samples: &[i32]) -> Result<Vec<u8>, String> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|e| format!("FLAC configuration: {e:?}"))?;
    // flacenc counts a short last block in STREAMINFO's minimum block size, which strict
    // decoders (symphonia) refuse for a fixed-block-size stream: end on a whole block of
    // silence instead (under 0.2 s).
    let block = config.block_size;
    let mut padded = samples.to_vec();
    padded.resize(samples.len().div_ceil(block).max(1) * block, 0);
    let source = flacenc::source::MemSource::from_samples(&padded, 1, 16, OUTPUT_RATE as usize);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| format!("FLAC encoding failed: {e:?}"))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| format!("FLAC encoding failed: {e:?}"))?;
    Ok(sink.as_slice().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::decode_audio;

    fn tone(seconds: f32) -> Vec<f32> {
        let n = (OUTPUT_RATE as f32 * seconds) as usize;
        (0..n)
            .map(|i| {
                (2.0 * std::f32::consts::PI * 330.0 * i as f32 / OUTPUT_RATE as f32).sin() * 0.4
            })
            .collect()
    }

    fn encode(format: AudioFormat, chunks: &[&[f32]]) -> Vec<u8> {
        let mut encoder = Encoder::new(format).unwrap();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(encoder.push(chunk).unwrap());
        }
        out.extend(encoder.finish().unwrap());
        out
    }

    #[test]
    fn every_supported_format_decodes_to_the_same_duration() {
        let (a, b) = (tone(0.7), tone(0.5));
        for format in AudioFormat::SUPPORTED {
            let bytes = encode(format, &[&a, &b]);
            if format == AudioFormat::Pcm {
                assert_eq!(bytes.len(), (a.len() + b.len()) * 2);
                continue;
            }
            let ext = match format {
                AudioFormat::Opus => "ogg",
                other => other.as_str(),
            };
            let decoded =
                decode_audio(bytes, Some(ext), 60.0).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            let seconds = decoded.samples.len() as f64
                / decoded.channels as f64
                / f64::from(decoded.sample_rate);
            // FLAC ends on a whole block (4096 samples): up to 0.17 s of silence more.
            let slack = if format == AudioFormat::Flac {
                0.18
            } else {
                0.0
            };
            assert!(
                seconds > 1.12 && seconds < 1.28 + slack,
                "{format:?}: {seconds} s"
            );
        }
    }

    #[test]
    fn streaming_formats_give_bytes_before_the_end() {
        for format in [
            AudioFormat::Mp3,
            AudioFormat::Opus,
            AudioFormat::Wav,
            AudioFormat::Pcm,
        ] {
            let mut encoder = Encoder::new(format).unwrap();
            assert!(!encoder.push(&tone(1.0)).unwrap().is_empty(), "{format:?}");
        }
        let mut flac = Encoder::new(AudioFormat::Flac).unwrap();
        assert!(flac.push(&tone(1.0)).unwrap().is_empty());
        assert!(Encoder::new(AudioFormat::Aac).is_err());
    }
}
