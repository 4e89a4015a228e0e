//! Audio uploads: any common container and codec decoded to samples ([`decode`]), then
//! down-mixed and resampled to the 16 kHz mono Whisper reads ([`resample`]).

mod decode;
mod resample;

pub use decode::{AudioError, DecodedAudio, decode_audio};
pub use resample::to_mono_16k;
