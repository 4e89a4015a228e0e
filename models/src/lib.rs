//! Hearth's model implementations, written in [burn](https://burn.dev).
//!
//! Today: BERT-family sentence-embedding encoders ([`EmbeddingModel`]), checked against a numpy
//! reference of all-MiniLM-L6-v2 (`models/scripts/generate_embedding_reference.py`); Llama-style
//! decoders from GGUF files (on the native reader in [`gguf`]) or safetensors checkpoints
//! ([`llama::LlamaModel`], with [`ChatTokenizer`] for Hugging Face tokenizers), checked against a
//! numpy SmolLM2 (`models/scripts/generate_llama_reference.py`) and tiny random-weight Qwen2/Qwen3
//! checkpoints (`models/scripts/generate_qwen_reference.py`); Whisper ([`whisper`]); Piper's VITS
//! voices from their ONNX files ([`vits`], on the native reader in [`onnx`]), checked against
//! onnxruntime (`models/scripts/generate_vits_reference.py`); DCGAN image generators from PyTorch
//! checkpoints ([`dcgan`]), checked against numpy (`models/scripts/generate_dcgan_reference.py`);
//! RDN super-resolution from TF.js layers models ([`rdn`]), checked against UpscalerJS' own sample;
//! Stable Diffusion pipelines from diffusers folders ([`diffusion`]: CLIP text encoder, UNet,
//! VAE, five samplers), checked against a numpy reference of two tiny random-weight pipelines
//! (`models/scripts/generate_diffusion_reference.py`, itself checked against diffusers).
//!
//! Models are synchronous and pure: no async runtime, no threads of their own. The server's
//! engine thread owns them. On the CPU the heavy lifting runs in burn's Flex backend, which
//! parallelises matmuls and attention over rayon's global pool (`RAYON_NUM_THREADS` sets its
//! size).
//!
//! In burn 0.22 tensors carry their backend in their [`Device`] rather than in a type
//! parameter, so the model code is backend-generic at run time: pass [`cpu_device()`] for the
//! pure-Rust CPU backend or, with this crate's `wgpu` feature, `gpu_device()`.
//!
//! ```no_run
//! use hearth_models::{EmbeddingModel, cpu_device};
//!
//! let model = EmbeddingModel::load("/models/all-minilm-l6-v2".as_ref(), &cpu_device())?;
//! let tokens = model.tokenize("A man is eating food.")?;
//! let vectors = model.embed(&[tokens])?;
//! assert_eq!(vectors[0].len(), model.dimensions());
//! # Ok::<(), hearth_models::ModelError>(())
//! ```

pub mod bert;
mod byte_cursor;
mod causal_mask;
pub mod chat_template;
mod chat_tokenizer;
pub mod dcgan;
pub mod diffusion;
mod embedding;
mod error;
mod float_bytes;
mod gemm_call;
pub mod gguf;
mod json;
pub mod llama;
pub mod onnx;
pub mod quant;
pub mod rdn;
mod read_back;
mod safetensors_folder;
pub mod sampling;
mod tokenizer;
pub mod vits;
pub mod whisper;

pub use burn::tensor::{Device, DeviceKind};
pub use chat_tokenizer::ChatTokenizer;
pub use embedding::EmbeddingModel;
pub use error::ModelError;
pub use tokenizer::TextTokenizer;

/// burn's pure-Rust CPU backend (Flex), the default for Hearth. Tensors on [`cpu_device()`]
/// run on it.
pub type CpuBackend = burn::backend::Flex;

/// The CPU device ([`CpuBackend`]): always available, whatever features are on.
pub fn cpu_device() -> Device {
    Device::flex()
}

/// The default GPU device through wgpu (Vulkan, Metal, DX12 or WebGPU, whichever the platform
/// has). Only with the `wgpu` feature.
#[cfg(feature = "wgpu")]
pub fn gpu_device() -> Device {
    Device::wgpu(DeviceKind::DefaultDevice)
}

/// A particular wgpu adapter (`DiscreteGpu(0)`, `Cpu` for a software driver, …). Only with the
/// `wgpu` feature.
#[cfg(feature = "wgpu")]
pub fn wgpu_device(kind: DeviceKind) -> Device {
    Device::wgpu(kind)
}
