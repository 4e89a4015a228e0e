//! Stable Diffusion–class text-to-image pipelines from a diffusers folder
//! (`model_index.json`, `text_encoder/`, `tokenizer/`, `unet/`, `vae/`, `scheduler/`): the CLIP
//! text encoder and its BPE tokenizer ([`clip`]), the UNet2DConditionModel, the AutoencoderKL
//! and the samplers ([`scheduler`]).

mod attention;
pub mod clip;
mod layers;
pub mod pipeline;
mod resnet;
pub mod scheduler;
pub mod unet;
pub mod vae;
mod weights;
