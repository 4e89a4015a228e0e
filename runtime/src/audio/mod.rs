//! Audio in and out: uploads in any common container and codec decoded to samples
//! ([`decode`]), down-mixed and resampled to the 16 kHz mono Whisper reads ([`resample`]);
//! synthesised speech resampled to 24 kHz and encoded in OpenAI's formats ([`encode`]).

mod decode;
mod encode;
mod resample;

pub use decode::{AudioError, DecodedAudio, decode_audio};
pub use encode::{AudioFormat, Encoder, OUTPUT_RATE};
pub use resample::{resample_mono, to_mono_16k};
