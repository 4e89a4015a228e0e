//! The crate's one error type and the one table that maps it to an HTTP status
//! and OpenAI's error envelope `{"error":{"message","type","param","code"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Everything that can go wrong in the runtime library.
#[derive(Debug, thiserror::Error)]
pub enum HearthError {
    /// The request is malformed or a parameter is invalid (400).
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    /// No credential was sent where one is required (401).
    #[error("missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")]
    MissingKey,
    /// The credential is unknown, malformed, revoked or expired (401).
    #[error("{0}")]
    InvalidKey(String),
    /// The credential is valid but not allowed to do this (403).
    #[error("{message}")]
    Forbidden { message: String, code: &'static str },
    /// The `model` names no deployment (404).
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    /// A resource other than a model is unknown (404).
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method (405).
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    /// The body is larger than the configured limit (413).
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// One uploaded file is over its limit (413, naming the form field).
    #[error("the uploaded {param} is larger than the limit of {limit} bytes")]
    FileTooLarge { param: &'static str, limit: usize },
    /// The body is well-formed but cannot be processed (422).
    #[error("{0}")]
    Unprocessable(String),
    /// The deployment exists but this build cannot serve the request yet (501).
    #[error("{0}")]
    NotImplemented(String),
    /// A dependency is temporarily unavailable (503).
    #[error("{0}")]
    Unavailable(String),
    /// The server is shutting down and its drain time is up (503).
    #[error("The server is shutting down; retry the request on another server or shortly.")]
    ShuttingDown,
    /// A plugin refused the request with its own (host-validated) status, code and headers.
    #[error("{message}")]
    PluginDenied {
        status: u16,
        code: String,
        message: String,
        headers: Vec<(axum::http::HeaderName, HeaderValue)>,
    },
    /// No upstream server of the deployment could be reached (502).
    #[error("{0}")]
    UpstreamUnreachable(String),
    /// The upstream server did not answer in time (504).
    #[error("{0}")]
    UpstreamTimeout(String),
    /// TLS with the upstream server failed: its certificate did not verify, or it refused
    /// ours (502 `upstream_tls_error`); the message names the reason.
    #[error("{0}")]
    UpstreamTls(String),
    /// A plugin the request needs failed (trap, timeout, bad output, overload) and its
    /// policy is to fail closed (503 `plugin_unavailable`).
    #[error("a request plugin is unavailable ({0}); try again shortly")]
    PluginUnavailable(String),
    /// The configuration is invalid; the message names the field.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The persistent store failed.
    #[error("store error: {0}")]
    Store(#[from] sled::Error),
    /// Reading or writing a local file failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A plugin could not be loaded (invalid component, refused admission, bad sidecar).
    #[error("plugin: {0}")]
    Plugin(String),
    /// A bug or an unexpected state; details are logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = HearthError> = std::result::Result<T, E>;

impl HearthError {
    /// A 400 naming the offending parameter.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// A 400 about the request as a whole.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The one table: status, OpenAI `type`, and `code` for every variant.
    pub fn classify(&self) -> (StatusCode, &'static str, Option<&'static str>) {
        use HearthError::*;
        match self {
            InvalidRequest { code, .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", *code)
            }
            MissingKey => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                Some("missing_api_key"),
            ),
            InvalidKey(_) => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                Some("invalid_api_key"),
            ),
            Forbidden { code, .. } => (StatusCode::FORBIDDEN, "permission_error", Some(*code)),
            ModelNotFound(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
            ),
            NotFound(_) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("not_found"),
            ),
            MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                Some("method_not_allowed"),
            ),
            PayloadTooLarge { .. } | FileTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                Some("payload_too_large"),
            ),
            Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                Some("unprocessable_entity"),
            ),
            NotImplemented(_) => (
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented_error",
                Some("not_implemented"),
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("unavailable"),
            ),
            ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("server_shutting_down"),
            ),
            PluginDenied { status, .. } => {
                let status =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let kind = match status.as_u16() {
                    403 => "permission_error",
                    429 => "rate_limit_error",
                    500.. => "server_error",
                    _ => "invalid_request_error",
                };
                (status, kind, None)
            }
            UpstreamUnreachable(_) => (
                StatusCode::BAD_GATEWAY,
                "server_error",
                Some("upstream_unreachable"),
            ),
            UpstreamTimeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                Some("upstream_timeout"),
            ),
            UpstreamTls(_) => (
                StatusCode::BAD_GATEWAY,
                "server_error",
                Some("upstream_tls_error"),
            ),
            PluginUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("plugin_unavailable"),
            ),
            Config(_) | Store(_) | Io { .. } | Plugin(_) | Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                Some("internal_error"),
            ),
        }
    }

    /// What the client is told. Server-side failures say only that they happened.
    fn public_message(&self) -> String {
        match self {
            HearthError::Config(_)
            | HearthError::Store(_)
            | HearthError::Io { .. }
            | HearthError::Plugin(_)
            | HearthError::Internal(_) => {
                "The server had an error while processing your request.".to_owned()
            }
            other => other.to_string(),
        }
    }

    fn param(&self) -> Option<String> {
        match self {
            HearthError::InvalidRequest { param, .. } => param.clone(),
            HearthError::ModelNotFound(_) => Some("model".to_owned()),
            HearthError::FileTooLarge { param, .. } => Some((*param).to_owned()),
            _ => None,
        }
    }

    /// The envelope this error is sent as.
    pub fn to_body(&self) -> ErrorEnvelope {
        let (_, kind, code) = self.classify();
        let code = match self {
            HearthError::PluginDenied { code, .. } => Some(code.clone()),
            _ => code.map(str::to_owned),
        };
        ErrorEnvelope {
            error: ErrorBody {
                message: self.public_message(),
                kind: kind.to_owned(),
                param: self.param(),
                code,
            },
        }
    }
}

/// OpenAI's error envelope.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// The inside of OpenAI's error envelope.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl IntoResponse for HearthError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.classify();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request rejected");
        }
        let mut response = (status, axum::Json(self.to_body())).into_response();
        if matches!(self, HearthError::PayloadTooLarge { .. }) {
            // The rest of the body is never read, so the connection cannot carry another
            // request; saying so keeps clients from reusing it and failing.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(
            self,
            HearthError::Unavailable(_)
                | HearthError::PluginUnavailable(_)
                | HearthError::ShuttingDown
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let HearthError::PluginDenied { headers, .. } = self {
            for (name, value) in headers {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_are_not_sent() {
        let err = HearthError::Internal("secret path /etc/x".into());
        let body = err.to_body();
        assert!(!body.error.message.contains("/etc/x"));
        assert_eq!(body.error.kind, "server_error");
    }

    #[test]
    fn model_not_found_names_the_param() {
        let body = HearthError::ModelNotFound("nope".into()).to_body();
        assert_eq!(body.error.code.as_deref(), Some("model_not_found"));
        assert_eq!(body.error.param.as_deref(), Some("model"));
        assert!(body.error.message.contains("`nope`"));
    }
}
