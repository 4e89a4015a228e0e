//! Whisper (speech recognition and translation), every size from tiny to large-v3, English-only
//! and multilingual: the log-mel front end ([`mel`]), the network ([`WhisperModel`], loaded
//! from a CTranslate2 folder as faster-whisper ships it or from a Hugging Face
//! `WhisperForConditionalGeneration` folder), window decoding with openai-whisper's logit
//! rules ([`decoding`]), long-form transcription with seeking and the temperature fallback
//! ([`Transcription`]) and word timestamps from the alignment heads.
//!
//! Checked against a numpy float64 Whisper on the real tiny.en weights
//! (`models/scripts/generate_whisper_reference.py`), itself checked once against
//! CTranslate2.

mod alignment;
mod config;
pub mod ct2;
mod ct2_weights;
pub mod decoding;
mod hf_weights;
mod languages;
pub mod mel;
mod model;
mod tokenizer;
mod transcribe;
mod weights;

pub use config::{DecodingConfig, WhisperDims};
pub use languages::{LANGUAGES, language_code, language_name};
pub use model::{AlignmentPass, AudioFeatures, CrossCache, WhisperFormat, WhisperModel};
pub use tokenizer::{SpecialTokens, Task, WhisperTokenizer};
pub use transcribe::{
    Segment, TIME_PRECISION, TranscribeOptions, Transcript, Transcription, Word, detect_language,
};
