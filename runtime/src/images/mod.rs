//! Images in and out of the image endpoints: decoding uploads ([`codec`]), encoding results
//! as PNG, JPEG or WebP, masks and how an edit is blended with the original ([`mask`]), and
//! the expiring files behind `response_format: "url"` ([`files`]).

pub mod codec;
pub mod files;
pub mod mask;

pub use codec::{OutputFormat, decode_upload, encode};
pub use files::ImageFiles;
pub use mask::{Mask, blend};
