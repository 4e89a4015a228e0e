//! Body extractors that answer bad input with the OpenAI envelope and name the
//! offending parameter (`serde_path_to_error` gives its path).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::error::HearthError;

/// Like `axum::Json`, with OpenAI-shaped rejections.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = HearthError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, HearthError> {
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The raw body, with the size limit turned into a 413.
pub async fn read_body(request: Request, state: &AppState) -> Result<Bytes, HearthError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                HearthError::PayloadTooLarge {
                    limit: state.config.max_body_bytes,
                }
            } else {
                HearthError::invalid(format!(
                    "could not read the request body: {}",
                    rejection.body_text()
                ))
            }
        })
}

/// Parses JSON; syntax errors and type errors are both 400, the latter naming the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HearthError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(HearthError::InvalidRequest {
            message: "the request body is empty; send a JSON object".to_owned(),
            param: None,
            code: Some("invalid_json"),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    if value.is_ok()
        && let Err(trailing) = deserializer.end()
    {
        return Err(HearthError::InvalidRequest {
            message: format!("We could not parse the JSON body of your request: {trailing}"),
            param: None,
            code: Some("invalid_json"),
        });
    }
    value.map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                HearthError::InvalidRequest {
                    message: format!("We could not parse the JSON body of your request: {inner}"),
                    param: None,
                    code: Some("invalid_json"),
                }
            }
            _ => {
                let param = param_of(&path, &inner.to_string());
                HearthError::InvalidRequest {
                    message: match &param {
                        Some(p) => format!("invalid value for `{p}`: {inner}"),
                        None => format!("invalid request body: {inner}"),
                    },
                    param,
                    code: Some("invalid_type"),
                }
            }
        }
    })
}

/// A JSON list of token ids (`param` names the field in errors, `at` its index).
pub fn token_id_list(
    value: &serde_json::Value,
    param: &str,
    at: usize,
) -> Result<Vec<u32>, HearthError> {
    let items = value
        .as_array()
        .ok_or_else(|| HearthError::invalid_param(param, "mix of token lists and other values"))?;
    if items.is_empty() {
        return Err(HearthError::invalid_param(
            param,
            format!("{param}[{at}] is an empty token list"),
        ));
    }
    items
        .iter()
        .map(|t| {
            t.as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .ok_or_else(|| {
                    HearthError::invalid_param(
                        param,
                        format!("{param}[{at}] holds `{t}`, which is not a token id"),
                    )
                })
        })
        .collect()
}

/// The parameter a serde error is about: its path, or for a missing field the
/// field's own name (serde reports those at the parent's path).
fn param_of(path: &str, message: &str) -> Option<String> {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(field)) => Some(field.to_owned()),
        (parent, Some(field)) => Some(format!("{parent}.{field}")),
        (".", None) => None,
        (path, None) => Some(path.to_owned()),
    }
}

/// Converts an already parsed body into `T`, naming the offending field.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, HearthError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let param = param_of(&error.path().to_string(), &error.inner().to_string());
        HearthError::InvalidRequest {
            message: match &param {
                Some(p) => format!("invalid value for `{p}`: {}", error.inner()),
                None => format!("invalid request body: {}", error.inner()),
            },
            param,
            code: Some("invalid_type"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "fields exist to be type-checked by serde")]
    struct Sample {
        name: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "fields exist to be type-checked by serde")]
    struct Inner {
        count: u32,
    }

    fn param_of(body: &str) -> Option<String> {
        match parse_json::<Sample>(body.as_bytes()).unwrap_err() {
            HearthError::InvalidRequest { param, .. } => param,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wrong_type_names_the_nested_field() {
        assert_eq!(
            param_of(r#"{"name":"a","inner":{"count":"x"}}"#).as_deref(),
            Some("inner.count")
        );
    }

    #[test]
    fn missing_field_is_the_param() {
        assert_eq!(param_of(r#"{"inner":null}"#).as_deref(), Some("name"));
        assert_eq!(
            param_of(r#"{"name":"a","inner":{}}"#).as_deref(),
            Some("inner.count")
        );
    }

    #[test]
    fn syntax_error_has_no_param() {
        assert_eq!(param_of(r#"{"name": "#), None);
        assert_eq!(param_of(""), None);
    }

    #[test]
    fn unknown_field_is_rejected() {
        let err = parse_json::<Sample>(br#"{"name":"a","nmae":"b"}"#).unwrap_err();
        assert!(err.to_string().contains("nmae"), "{err}");
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        assert!(parse_json::<Sample>(br#"{"name":"a"} x"#).is_err());
    }
}
