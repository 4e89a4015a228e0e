//! The CLIP text encoder and its tokenizer.
//!
//! [`ClipTokenizer`] turns a prompt into the fixed-length id row a Stable Diffusion text
//! encoder expects (`tokenizer/`), and [`ClipTextEncoder`] runs transformers'
//! `CLIPTextModel` (`text_encoder/`) on such rows, optionally skipping its last layers
//! (`clip_skip`) as diffusers' `encode_prompt` does.

mod config;
mod text_encoder;
mod tokenizer;

pub use config::ClipTextConfig;
pub use text_encoder::ClipTextEncoder;
pub use tokenizer::ClipTokenizer;
