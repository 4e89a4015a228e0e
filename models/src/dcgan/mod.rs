//! DCGAN image generators: the PyTorch tutorial's generator (transposed convolutions, batch
//! norm with running statistics, ReLU, a final tanh) loaded straight from a PyTorch
//! checkpoint, any width, depth, latent size or channel count. Unconditional: an image comes
//! from a latent vector alone, which [`latents`] draws reproducibly from a seed.
//!
//! Checked against a numpy run of the same weights on fixed latents
//! (`models/scripts/generate_dcgan_reference.py`).

mod generator;
mod latent;
mod loader;

pub use generator::DcganGenerator;
pub use latent::latents;
