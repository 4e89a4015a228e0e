//! Edit masks as OpenAI defines them: a PNG the size of the image whose fully transparent
//! pixels mark where the model may change the picture. Outside the mask the result is the
//! original, resized plainly to the output size.

use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};

use crate::error::{HearthError, Result};

/// Which pixels of an image an edit may change.
#[derive(Debug, Clone)]
pub struct Mask {
    width: u32,
    height: u32,
    editable: Vec<bool>,
}

impl Mask {
    /// The mask of an uploaded image: it must have an alpha channel; alpha 0 is editable.
    pub fn from_image(image: &DynamicImage) -> Result<Self> {
        if !image.color().has_alpha() {
            return Err(HearthError::invalid_param(
                "mask",
                "the mask has no alpha channel: send a PNG whose fully transparent pixels mark the area to edit",
            ));
        }
        let rgba = image.to_rgba8();
        let (width, height) = rgba.dimensions();
        let editable = rgba.pixels().map(|p| p.0[3] == 0).collect();
        Ok(Self {
            width,
            height,
            editable,
        })
    }

    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Whether any pixel may be edited.
    pub fn is_empty(&self) -> bool {
        !self.editable.contains(&true)
    }

    /// The mask at `width`×`height` (nearest pixel), one byte a pixel: 255 where the image may
    /// be redrawn, 0 where it is kept.
    pub fn editable_grey(&self, width: u32, height: u32) -> Vec<u8> {
        (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| {
                if self.editable_at(x, y, width, height) {
                    255
                } else {
                    0
                }
            })
            .collect()
    }

    /// Whether the pixel at `(x, y)` of an image `scale`d from the mask's size is editable.
    fn editable_at(&self, x: u32, y: u32, out_width: u32, out_height: u32) -> bool {
        let mx = (u64::from(x) * u64::from(self.width) / u64::from(out_width)) as u32;
        let my = (u64::from(y) * u64::from(self.height) / u64::from(out_height)) as u32;
        self.editable[(my * self.width + mx) as usize]
    }
}

/// The edit where the mask allows it, elsewhere `original` resized (Catmull-Rom) to the
/// edit's size.
pub fn blend(edited: &RgbImage, original: &RgbImage, mask: &Mask) -> RgbImage {
    let (width, height) = edited.dimensions();
    let plain = image::imageops::resize(original, width, height, FilterType::CatmullRom);
    RgbImage::from_fn(width, height, |x, y| {
        if mask.editable_at(x, y, width, height) {
            *edited.get_pixel(x, y)
        } else {
            *plain.get_pixel(x, y)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, Rgba, RgbaImage};

    #[test]
    fn transparent_pixels_take_the_edit_and_the_rest_the_resized_original() {
        let original = RgbImage::from_pixel(4, 4, Rgb([10, 20, 30]));
        let edited = RgbImage::from_pixel(8, 8, Rgb([200, 200, 200]));
        // Left half transparent (editable), right half opaque.
        let mask = RgbaImage::from_fn(4, 4, |x, _| Rgba([0, 0, 0, if x < 2 { 0 } else { 255 }]));
        let mask = Mask::from_image(&DynamicImage::ImageRgba8(mask)).unwrap();
        assert!(!mask.is_empty());
        let out = blend(&edited, &original, &mask);
        assert_eq!(out.dimensions(), (8, 8));
        for y in 0..8 {
            for x in 0..8 {
                let want = if x < 4 { [200, 200, 200] } else { [10, 20, 30] };
                assert_eq!(out.get_pixel(x, y).0, want, "({x}, {y})");
            }
        }
    }

    #[test]
    fn a_mask_without_alpha_is_refused() {
        let err = Mask::from_image(&DynamicImage::ImageRgb8(RgbImage::new(2, 2))).unwrap_err();
        assert!(err.to_string().contains("alpha"), "{err}");
        let opaque = RgbaImage::from_pixel(2, 2, Rgba([0, 0, 0, 255]));
        assert!(
            Mask::from_image(&DynamicImage::ImageRgba8(opaque))
                .unwrap()
                .is_empty()
        );
    }
}
