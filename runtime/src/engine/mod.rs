//! The engine: loads local deployments onto a device and runs them on worker
//! threads that own their weights ([`worker`]: one thread, bounded queue and 503 mechanism
//! for every modality). One module per model family's serving loop.

mod device;
mod diffusion;
mod embedding;
pub mod generation;
mod grammar;
mod image;
mod llama;
mod speech;
mod text;
mod text_stream;
mod transcription;
mod worker;

pub use device::{DeviceReport, list_devices, select_device};
pub use diffusion::{DiffusionEngine, DiffusionEvent, DiffusionFacts, DiffusionWork};
pub use embedding::{EmbeddingEngine, EmbeddingOptions};
pub use generation::TokenConstraint;
pub use grammar::{GrammarConstraint, GrammarEngine, LazyGrammar};
pub use image::{
    ImageEngine, ImageFacts, ImageFamily, ImageOptions, MAX_EDIT_IMAGES, SAMPLERS, SizeRange,
};
pub use llama::start_llama;
pub use speech::{SpeechEngine, SpeechEvent, SpeechOptions};
pub use text::{ChoiceEvent, ChoiceStream, TextCodec, TextEngine};
pub use transcription::{TranscriptionEngine, TranscriptionEvent, TranscriptionOptions};

use std::sync::Arc;

/// What serves a ready deployment.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A local sentence-embedding model.
    Embedding(Arc<EmbeddingEngine>),
    /// A local chat/completion model.
    Text(Arc<TextEngine>),
    /// A local image model (generator or upscaler).
    Image(Arc<ImageEngine>),
    /// A local text-to-speech voice.
    Speech(Arc<SpeechEngine>),
    /// A local speech-recognition model.
    Transcription(Arc<TranscriptionEngine>),
    /// Upstream servers the requests are forwarded to.
    Upstream(Arc<crate::proxy::UpstreamPool>),
}
