//! Between pictures and the tensors the VAE reads and writes: RGB bytes ↔ `[1, 3, h, w]` in
//! −1..1, and a mask (any grey levels) → the binary 0/1 map diffusers' mask processor makes.

use burn::prelude::*;

use crate::ModelError;
use crate::read_back::read_back;

/// An RGB picture, row-major, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Picture {
    fn check(&self) -> Result<(), ModelError> {
        if self.rgb.len() != self.width * self.height * 3 {
            return Err(ModelError::InvalidInput(format!(
                "a {}×{} picture needs {} bytes, got {}",
                self.width,
                self.height,
                self.width * self.height * 3,
                self.rgb.len()
            )));
        }
        Ok(())
    }

    /// `[1, 3, h, w]`, each byte `b` as `b/127.5 − 1`.
    pub(crate) fn to_tensor(&self, device: &Device) -> Result<Tensor<4>, ModelError> {
        self.check()?;
        let plane = self.width * self.height;
        let mut values = vec![0.0f32; 3 * plane];
        for (i, pixel) in self.rgb.chunks_exact(3).enumerate() {
            for (c, &byte) in pixel.iter().enumerate() {
                values[c * plane + i] = f32::from(byte) / 127.5 - 1.0;
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(values, [1, 3, self.height, self.width]),
            device,
        ))
    }
}

/// A mask the size of the picture: one grey byte a pixel, white (≥ 128) = repaint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub grey: Vec<u8>,
}

impl Mask {
    /// `[1, 1, h, w]` of 0 (keep) and 1 (repaint): grey levels binarised at one half, as
    /// diffusers' `VaeImageProcessor(do_binarize=True)` does.
    pub(crate) fn to_tensor(&self, device: &Device) -> Result<Tensor<4>, ModelError> {
        if self.grey.len() != self.width * self.height {
            return Err(ModelError::InvalidInput(format!(
                "a {}×{} mask needs {} bytes, got {}",
                self.width,
                self.height,
                self.width * self.height,
                self.grey.len()
            )));
        }
        let values: Vec<f32> = self
            .grey
            .iter()
            .map(|&g| {
                if f32::from(g) / 255.0 >= 0.5 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Tensor::from_data(
            TensorData::new(values, [1, 1, self.height, self.width]),
            device,
        ))
    }
}

/// The pictures of a decoded batch `[batch, 3, h, w]` (nominally −1..1): `(x/2 + ½)` clamped
/// to 0..1, times 255, rounded.
pub(crate) fn to_pictures(images: Tensor<4>) -> Result<Vec<Picture>, ModelError> {
    let [batch, channels, height, width] = images.dims();
    if channels != 3 {
        return Err(ModelError::InvalidInput(format!(
            "the VAE made {channels}-channel images; only RGB is supported"
        )));
    }
    let values = read_back(images, "decoded images")?;
    let plane = height * width;
    Ok(values
        .chunks_exact(3 * plane)
        .take(batch)
        .map(|image| {
            let mut rgb = Vec::with_capacity(3 * plane);
            for i in 0..plane {
                for c in 0..3 {
                    let unit = (image[c * plane + i] / 2.0 + 0.5).clamp(0.0, 1.0);
                    rgb.push((unit * 255.0).round() as u8);
                }
            }
            Picture { width, height, rgb }
        })
        .collect())
}
