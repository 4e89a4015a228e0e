//! Speech synthesis with Piper's VITS voices: any voice of Piper's catalogue, loaded from its
//! `.onnx` (weights read natively, see [`crate::onnx`]) and `.onnx.json`. The network: the
//! phoneme encoder (transformer with windowed relative-position attention), the stochastic or
//! deterministic duration predictor, length regulation, the normalising flow (residual
//! coupling layers over WaveNet-style stacks) run backwards, and the HiFi-GAN decoder; single-
//! and multi-speaker. [`Phonemizer`] turns text into Piper's phoneme ids through espeak-ng.
//!
//! Checked against onnxruntime running the same voice with the noise scales at 0
//! (`models/scripts/generate_vits_reference.py`).

mod duration;
mod flow;
mod generator;
mod layers;
mod loader;
mod model;
mod phonemize;
mod spline;
mod text_encoder;
mod voice_config;

pub use model::{Durations, Latent, Prior, SynthesisOptions, VitsModel, config_path};
pub use phonemize::{Phonemizer, Sentence};
pub use voice_config::{PhonemeType, SynthesisScales, VoiceConfig};
