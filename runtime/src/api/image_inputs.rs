//! What an image request sends, read into one shape whichever way it came: the text
//! parameters (JSON values; multipart fields arrive as strings) and, for edits, the uploaded
//! images and mask as bytes. Multipart forms carry files (`image`, `image[]`, `mask`) as
//! both SDKs send them; JSON edit bodies carry base64 or `data:` URLs (`image`, `images`
//! with `image_url` objects, `mask`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::AppState;
use crate::error::{HearthError, Result};

/// The most bytes one uploaded image may have (OpenAI's limit for GPT image models).
pub const MAX_IMAGE_BYTES: usize = 50 * 1024 * 1024;
/// The edit route's body limit: several images, base64's growth and the form's overhead.
pub const EDIT_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A request's parameters and uploads.
#[derive(Debug, Default)]
pub struct ImageInputs {
    pub params: Map<String, Value>,
    /// `(param, bytes)` of each image, in order.
    pub images: Vec<(String, Vec<u8>)>,
    pub mask: Option<Vec<u8>>,
}

/// The edit route's limit as the server applies it.
pub fn edit_body_limit(state: &AppState) -> usize {
    state.config.max_body_bytes.max(EDIT_BODY_BYTES)
}

fn too_large(state: &AppState) -> HearthError {
    HearthError::PayloadTooLarge {
        limit: edit_body_limit(state),
    }
}

fn multipart_error(e: &axum::extract::multipart::MultipartError, state: &AppState) -> HearthError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(state)
    } else {
        HearthError::invalid(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// Reads a multipart edit form.
pub async fn read_multipart(request: Request, state: &AppState) -> Result<ImageInputs> {
    let mut form = Multipart::from_request(request, state).await.map_err(|e| {
        HearthError::invalid(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    })?;
    let mut inputs = ImageInputs::default();
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error(&e, state))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "image" | "image[]" | "mask" => {
                let param: &'static str = if name == "mask" { "mask" } else { "image" };
                let mut bytes = Vec::new();
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| multipart_error(&e, state))?
                {
                    if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                        return Err(HearthError::FileTooLarge {
                            param,
                            limit: MAX_IMAGE_BYTES,
                        });
                    }
                    bytes.extend_from_slice(&chunk);
                }
                if param == "mask" {
                    if inputs.mask.replace(bytes).is_some() {
                        return Err(HearthError::invalid_param("mask", "send one mask"));
                    }
                } else {
                    let label = format!("image[{}]", inputs.images.len());
                    inputs.images.push((label, bytes));
                }
            }
            _ => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| HearthError::invalid_param(name.clone(), e.body_text()))?;
                if inputs
                    .params
                    .insert(name.clone(), Value::String(text))
                    .is_some()
                {
                    return Err(HearthError::invalid_param(
                        name.clone(),
                        format!("`{name}` is sent more than once"),
                    ));
                }
            }
        }
    }
    Ok(inputs)
}

/// Reads a JSON edit body: images as base64 or `data:` URLs.
pub async fn read_json(request: Request, state: &AppState) -> Result<ImageInputs> {
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(state)
            } else {
                HearthError::invalid(format!(
                    "could not read the request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
    let body: Value = super::extract::parse_json(&bytes)?;
    let Value::Object(mut params) = body else {
        return Err(HearthError::invalid(
            "the request body must be a JSON object",
        ));
    };
    let mut inputs = ImageInputs::default();
    let mut sources: Vec<(String, Value)> = Vec::new();
    // `image` may be one image or a list; `images` is always a list.
    for key in ["image", "images"] {
        match params.remove(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                sources.extend(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (format!("{key}[{i}]"), v)),
                );
            }
            Some(_) if key == "images" => {
                return Err(HearthError::invalid_param(
                    "images",
                    "`images` must be a list",
                ));
            }
            Some(one) => sources.push((key.to_owned(), one)),
        }
    }
    for (param, value) in sources {
        let bytes = image_bytes(&param, value)?;
        inputs.images.push((param, bytes));
    }
    if let Some(mask) = params.remove("mask").filter(|m| !m.is_null()) {
        inputs.mask = Some(image_bytes("mask", mask)?);
    }
    inputs.params = params;
    Ok(inputs)
}

/// The bytes of a JSON image: a base64 string, a `data:` URL, or `{"image_url": …}`.
fn image_bytes(param: &str, value: Value) -> Result<Vec<u8>> {
    let text = match value {
        Value::String(text) => text,
        Value::Object(mut object) => match object.remove("image_url") {
            Some(Value::String(url)) => url,
            Some(Value::Object(mut inner)) => match inner.remove("url") {
                Some(Value::String(url)) => url,
                _ => {
                    return Err(HearthError::invalid_param(
                        param,
                        "`image_url.url` must be a string",
                    ));
                }
            },
            _ if object.contains_key("file_id") => {
                return Err(HearthError::invalid_param(
                    param,
                    "file ids are not supported (Hearth has no Files API); send the image itself",
                ));
            }
            _ => return Err(HearthError::invalid_param(param, "expected `image_url`")),
        },
        _ => {
            return Err(HearthError::invalid_param(
                param,
                "an image is a base64 string or a data URL",
            ));
        }
    };
    let encoded = if let Some(rest) = text.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| {
            HearthError::invalid_param(param, "a data URL needs a comma before its data")
        })?;
        if !meta.ends_with(";base64") {
            return Err(HearthError::invalid_param(
                param,
                "only base64 data URLs are accepted",
            ));
        }
        data.to_owned()
    } else if text.starts_with("http://") || text.starts_with("https://") {
        return Err(HearthError::invalid_param(
            param,
            "Hearth does not fetch images from URLs; send the image as base64 or a data URL",
        ));
    } else {
        text
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| HearthError::invalid_param(param, format!("not valid base64: {e}")))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(HearthError::FileTooLarge {
            param: "image",
            limit: MAX_IMAGE_BYTES,
        });
    }
    Ok(bytes)
}

/// Typed reads of the parameters; a wrong type is a 400 naming it.
pub struct Params<'a>(pub &'a Map<String, Value>);

impl Params<'_> {
    /// A string parameter (absent or null: `None`).
    pub fn string(&self, key: &str) -> Result<Option<String>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(HearthError::invalid_param(
                key,
                format!("`{key}` must be a string"),
            )),
        }
    }

    /// An integer parameter: a JSON number or, from a form, its digits.
    pub fn integer(&self, key: &str) -> Result<Option<i128>> {
        let bad = || HearthError::invalid_param(key, format!("`{key}` must be an integer"));
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .map(Some)
                .ok_or_else(bad),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A number parameter: a JSON number or, from a form, its decimal text.
    pub fn number(&self, key: &str) -> Result<Option<f64>> {
        let bad = || HearthError::invalid_param(key, format!("`{key}` must be a number"));
        let value = match self.0.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
            Some(Value::String(s)) => s.trim().parse().map_err(|_| bad())?,
            Some(_) => return Err(bad()),
        };
        if value.is_finite() {
            Ok(Some(value))
        } else {
            Err(bad())
        }
    }

    /// A boolean parameter: JSON `true`/`false` or, from a form, the word.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.trim() == "true" => Ok(Some(true)),
            Some(Value::String(s)) if s.trim() == "false" => Ok(Some(false)),
            Some(_) => Err(HearthError::invalid_param(
                key,
                format!("`{key}` must be true or false"),
            )),
        }
    }

    /// Refuses any parameter not in `known`.
    pub fn only(&self, known: &[&str], endpoint: &str) -> Result<()> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(HearthError::invalid_param(
                unknown.clone(),
                format!("unknown parameter `{unknown}` for {endpoint}"),
            )),
            None => Ok(()),
        }
    }
}
