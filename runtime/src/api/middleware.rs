//! Request-path middleware: auth and scope, metrics, spans, and the error envelope
//! for responses that axum itself produces (404, 405, 413).

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;

use super::AppState;
use crate::auth::{Identity, Principal, RequestHead};
use crate::error::{HearthError, Result};
use crate::store::{Scope, UsageCounters, UsageSubject};

/// The span every request runs in: method, matched route, request id.
pub fn request_span(request: &Request<Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %request.method(), route, request_id)
}

/// Not an `async fn`: the future must borrow the request's parts, not the request. A body is
/// not `Sync`, so a future holding `&Request` across the plugin's await would not be `Send`.
fn authenticate<'a>(state: &'a AppState, request: &'a Request) -> BoxFuture<'a, Result<Identity>> {
    state.auth.authenticate(RequestHead {
        method: request.method(),
        uri: request.uri(),
        headers: request.headers(),
    })
}

async fn require(state: AppState, scope: Scope, mut request: Request, next: Next) -> Response {
    let identity = match authenticate(&state, &request).await {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = identity.require_scope(scope) {
        // Open mode only covers inference: an anonymous caller elsewhere lacks a key, not a scope.
        let e = if identity.principal == Principal::Anonymous {
            HearthError::MissingKey
        } else {
            e
        };
        return e.into_response();
    }
    if let Some(id) = identity.key_id().map(str::to_owned) {
        let one = UsageCounters {
            requests: 1,
            ..Default::default()
        };
        if let Err(e) = state.store.add_usage(&UsageSubject::Key(id), one) {
            tracing::warn!(error = %e, "could not record usage");
        }
    }
    request.extensions_mut().insert(identity);
    next.run(request).await
}

/// Auth for model endpoints: any identity with the `inference` scope.
pub async fn require_inference(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    require(state, Scope::Inference, request, next).await
}

/// Auth for `/v1/keys` and `/v1/usage`: the `management` scope.
pub async fn require_management(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    require(state, Scope::Management, request, next).await
}

/// Decrements the in-flight gauge even when the client goes away mid-request.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!("hearth_http_requests_in_flight").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("hearth_http_requests_in_flight").decrement(1.0);
    }
}

/// Requests by route and status, latency to response headers, in-flight.
pub async fn track_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let _in_flight = InFlight::enter();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("hearth_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("hearth_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// Gives axum's own error responses (bare 404/405/413…) the OpenAI envelope.
pub async fn error_envelope(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => HearthError::NotFound(format!("no route for {method} {path}")),
        StatusCode::METHOD_NOT_ALLOWED => HearthError::MethodNotAllowed(method.to_string()),
        StatusCode::PAYLOAD_TOO_LARGE => HearthError::PayloadTooLarge {
            limit: state.config.max_body_bytes,
        },
        s if s.is_server_error() => HearthError::Internal(format!("{s} from {method} {path}")),
        s => HearthError::invalid(format!(
            "{} ({})",
            s.canonical_reason().unwrap_or("bad request"),
            s.as_u16()
        )),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut replaced = error.into_response();
    *replaced.status_mut() = status;
    if let Some(allow) = allow {
        replaced.headers_mut().insert(header::ALLOW, allow);
    }
    replaced
}

/// The fallback for unknown paths.
pub async fn no_route(request: Request) -> Response {
    HearthError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}
