//! Super-resolution with idealo's RDN as UpscalerJS ships it: a TF.js layers model
//! (`model.json` with the Keras topology and weight manifest, raw little-endian f32 shards).
//! The topology is read, not assumed: any Keras functional model built from Conv2D, ReLU,
//! Concatenate, Add and nearest UpSampling2D runs ([`topology`], [`graph`]). Large images
//! are processed in equal, overlapping windows ([`tiles`]) wide enough that every kept
//! pixel sees its whole receptive field, so tiling changes nothing but the memory used.
//!
//! Checked against the package's own fixture and its reference ×2 output.

mod graph;
mod model;
mod tiles;
mod topology;

pub use model::Upscaler;
pub use tiles::{Span, spans};
