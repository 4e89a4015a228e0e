//! Decoding uploaded images (PNG, JPEG or WebP, by their bytes, never their name) within a
//! pixel budget, and encoding results in the format a request asks for.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::{HearthError, Result};

/// The largest upload decoded, in pixels (a 4096×4096 image); bigger is a 400, not an
/// out-of-memory. Also bounds what a decompression bomb can cost.
pub const MAX_INPUT_PIXELS: u64 = 4096 * 4096;

/// What a response encodes images as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Png,
    Jpeg,
    Webp,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 3] = [OutputFormat::Png, OutputFormat::Jpeg, OutputFormat::Webp];

    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "png" => Some(Self::Png),
            "jpeg" | "jpg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Webp => "webp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    /// The file extension of [`ImageFiles`](super::ImageFiles) names.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Webp => "webp",
        }
    }

    pub fn from_extension(extension: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.extension() == extension)
    }
}

/// `image` in `format`. `quality` (1–100) sets JPEG's quality (default 100); PNG and WebP are
/// lossless and take none.
pub fn encode(image: &RgbImage, format: OutputFormat, quality: Option<u8>) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    let encoded = match format {
        OutputFormat::Png => image.write_to(&mut out, ImageFormat::Png),
        OutputFormat::Webp => image.write_to(&mut out, ImageFormat::WebP),
        OutputFormat::Jpeg => {
            let quality = quality.unwrap_or(100).clamp(1, 100);
            image.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut out, quality,
            ))
        }
    };
    encoded
        .map_err(|e| HearthError::Internal(format!("cannot encode {}: {e}", format.as_str())))?;
    Ok(out.into_inner())
}

/// Decodes an uploaded image; errors are 400s naming `param`.
pub fn decode_upload(bytes: &[u8], param: &str) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(HearthError::invalid_param(param, "the image is empty"));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| HearthError::invalid_param(param, format!("cannot read the image: {e}")))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP) => {}
        Some(other) => {
            return Err(HearthError::invalid_param(
                param,
                format!("{other:?} images are not accepted; send PNG, JPEG or WebP"),
            ));
        }
        None => {
            return Err(HearthError::invalid_param(
                param,
                "not a PNG, JPEG or WebP image",
            ));
        }
    }
    // One parse: the header's size is checked before any pixel is decoded.
    let decoder = reader
        .into_decoder()
        .map_err(|e| HearthError::invalid_param(param, format!("cannot decode the image: {e}")))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_INPUT_PIXELS {
        return Err(HearthError::invalid_param(
            param,
            format!("a {width}×{height} image is larger than the {MAX_INPUT_PIXELS}-pixel limit"),
        ));
    }
    DynamicImage::from_decoder(decoder)
        .map_err(|e| HearthError::invalid_param(param, format!("cannot decode the image: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> RgbImage {
        RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, 100])
        })
    }

    #[test]
    fn every_format_round_trips_through_the_decoder() {
        let image = gradient();
        for format in OutputFormat::ALL {
            let bytes = encode(&image, format, None).unwrap();
            let back = decode_upload(&bytes, "image").unwrap().to_rgb8();
            assert_eq!(back.dimensions(), (40, 30), "{format:?}");
            if format != OutputFormat::Jpeg {
                assert_eq!(back, image, "{format:?} is lossless");
            }
        }
        let small = encode(&image, OutputFormat::Jpeg, Some(10)).unwrap();
        let large = encode(&image, OutputFormat::Jpeg, Some(100)).unwrap();
        assert!(
            small.len() < large.len(),
            "{} vs {}",
            small.len(),
            large.len()
        );
    }

    #[test]
    fn other_bytes_are_errors_naming_the_param() {
        let err = decode_upload(b"GIF89a....", "mask").unwrap_err();
        assert!(err.to_string().contains("PNG, JPEG or WebP"), "{err}");
        let err = decode_upload(b"hello", "image").unwrap_err();
        assert!(
            matches!(err, HearthError::InvalidRequest { ref param, .. } if param.as_deref() == Some("image"))
        );
        let png = encode(&gradient(), OutputFormat::Png, None).unwrap();
        assert!(decode_upload(&png[..png.len() / 2], "image").is_err());
        assert!(decode_upload(&[], "image").is_err());
    }
}
