//! The model reference tests (and `parsers`: the model-file readers against hostile bytes), one test binary (each binary links burn and its backends:
//! one link, not one per family). Each module checks one model family against fixtures
//! written by a committed script in `models/scripts/`; `scripts/test-wgpu` runs the
//! device-generic ones again on wgpu (`HEARTH_TEST_DEVICE=wgpu`).

mod common;

mod bert;
mod dcgan;
mod diffusion_clip;
mod diffusion_models;
mod diffusion_pipeline;
mod diffusion_scheduler;
mod gguf;
mod llama;
mod llama_quantised;
mod parsers;
mod qwen;
mod qwen_gguf;
mod rdn;
mod vits;
mod whisper;
mod whisper_ct2;
mod whisper_mel;
