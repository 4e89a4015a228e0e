//! Llama-style decoders (Llama 2/3, SmolLM2, Mistral, Qwen2/2.5/3) from GGUF files or Hugging
//! Face safetensors checkpoints: configuration from the metadata or `config.json`, weights
//! converted to f32 at load, a per-sequence KV cache and a forward pass over a batch of
//! sequences at their own positions.
//!
//! ```no_run
//! use hearth_models::gguf::{GgufFile, GgufTokenizer};
//! use hearth_models::{cpu_device, llama::LlamaModel};
//!
//! let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref())?;
//! let tokenizer = GgufTokenizer::from_gguf(&file)?;
//! let model = LlamaModel::from_gguf(&file, &cpu_device())?;
//! let prompt = tokenizer.encode("The capital of France is", true)?;
//! let mut cache = model.new_cache();
//! let mut logits = model.forward(&prompt, &mut cache)?; // prefill
//! for _ in 0..8 {
//!     let next = hearth_models::llama::argmax(&logits);
//!     logits = model.forward(&[next], &mut cache)?; // one decode step
//! }
//! # Ok::<(), hearth_models::ModelError>(())
//! ```

mod attention;
mod cache;
mod config;
mod gguf_weights;
mod hf_weights;
mod host;
mod model;
pub(crate) mod weights;

pub use cache::KvCache;
pub use config::{LlamaConfig, RopeScaling};
pub use model::LlamaModel;

/// Greedy decoding: the index of the largest logit (the first one on ties).
pub use crate::sampling::argmax;
