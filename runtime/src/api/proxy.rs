//! The proxy's HTTP side: `/model/proxy/{*path}` (any method, any API of an upstream
//! deployment with `generic_proxy = true`), and the `/v1/*` model routes of upstream
//! deployments, which go to the upstream unchanged instead of a local engine. The forwarding
//! itself (targets, routing, retries, streaming back) is `crate::proxy`, which knows nothing
//! of the app state.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::inference::MODEL_HEADER;
use super::plugin_hooks::{facts, identity_to, plugin_head};
use super::usage::UsageSink;
use crate::auth::Identity;
use crate::deployments::Deployment;
use crate::engine::Backend;
use crate::error::{ErrorEnvelope, HearthError, Result};
use crate::proxy::{Outgoing, UpstreamPool};

/// Where the model comes from, in order: the `X-GPUStack-Model` header, the JSON body's
/// `model`, a multipart body's `model` field.
async fn requested_model(parts: &Parts, body: &Bytes) -> Result<Option<String>> {
    if let Some(value) = parts.headers.get(MODEL_HEADER) {
        let model = value.to_str().ok().map(str::trim).filter(|v| !v.is_empty());
        return model.map(|m| Some(m.to_owned())).ok_or_else(|| {
            HearthError::invalid(format!(
                "the {MODEL_HEADER} header must be a non-empty string"
            ))
        });
    }
    if let Ok(json) = serde_json::from_slice::<Value>(body)
        && let Some(model) = json.get("model").and_then(Value::as_str)
    {
        return Ok(Some(model.to_owned()));
    }
    let multipart = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if multipart {
        let request = Request::from_parts(parts.clone(), Body::from(body.clone()));
        if let Ok(mut form) = Multipart::from_request(request, &()).await {
            while let Ok(Some(field)) = form.next_field().await {
                if field.name() == Some("model") {
                    return Ok(field.text().await.ok().filter(|m| !m.is_empty()));
                }
            }
        }
    }
    Ok(None)
}

fn upstream_of(deployment: &Deployment) -> Option<std::sync::Arc<UpstreamPool>> {
    match &deployment.backend {
        Some(Backend::Upstream(pool)) => Some(pool.clone()),
        _ => None,
    }
}

async fn forward(
    state: &AppState,
    parts: &Parts,
    body: Bytes,
    pool: &UpstreamPool,
    path_and_query: &str,
) -> Result<Response> {
    let identity = parts.extensions.get::<Identity>();
    let head = plugin_head(&parts.method, &parts.uri, &parts.headers);
    let facts = facts(parts.uri.path(), &parts.headers, &body);
    let response = pool
        .forward(
            state.plugins.as_deref(),
            Outgoing {
                method: &parts.method,
                path_and_query,
                headers: &parts.headers,
                body,
                head,
                facts,
                identity: identity.map(identity_to),
            },
        )
        .await?;
    // The upstream's own count, as local answers record theirs: per deployment and per key.
    let Some(identity) = identity else {
        return Ok(response);
    };
    let sink = UsageSink::new(state, identity, &pool.deployment);
    Ok(crate::proxy::usage::tap(response, move |usage| {
        sink.record(usage.prompt_tokens, usage.completion_tokens);
    }))
}

/// On the `/v1/*` model routes: a request for an upstream deployment is forwarded as it is
/// (path, query, body); every other request goes on to the local handlers.
pub async fn upstream_routes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !state.registry.iter().any(|d| upstream_of(d).is_some()) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
        Ok(body) => body,
        Err(_) => {
            return HearthError::PayloadTooLarge {
                limit: state.config.max_body_bytes,
            }
            .into_response();
        }
    };
    let model = requested_model(&parts, &body).await.ok().flatten();
    let target = model.as_deref().and_then(|m| {
        let deployment = state.registry.resolve(m)?;
        Some((deployment, upstream_of(deployment)?))
    });
    let Some((deployment, pool)) = target else {
        return next.run(Request::from_parts(parts, Body::from(body))).await;
    };
    let model = model.unwrap_or_default();
    if let Some(identity) = parts.extensions.get::<Identity>()
        && let Err(e) = identity.require_model(&model, deployment, &state.registry)
    {
        return e.into_response();
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
    forward(&state, &parts, body, &pool, &path_and_query)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `/model/proxy/{*path}`: any method, forwarded to the upstream of the deployment the
/// request names, with the `/model/proxy` prefix stripped.
#[utoipa::path(method(get, post, put, patch, delete), path = "/model/proxy/{path}", tag = "proxy",
    security(("bearer" = [])),
    params(("path" = String, Path, description = "the upstream path (may contain slashes)"),
        ("X-GPUStack-Model" = Option<String>, Header, description = "the deployment; else the body's `model`")),
    responses((status = 200, description = "the upstream's answer, streamed"),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 501, body = ErrorEnvelope),
        (status = 502, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope),
        (status = 504, body = ErrorEnvelope),
        (status = "default", description = "any other status: the upstream's own answer, passed through")))]
pub async fn generic_proxy(State(state): State<AppState>, request: Request) -> Response {
    match generic(&state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn generic(state: &AppState, request: Request) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| HearthError::PayloadTooLarge {
            limit: state.config.max_body_bytes,
        })?;
    let model = requested_model(&parts, &body).await?.ok_or_else(|| {
        HearthError::invalid_param(
            "model",
            format!("name the model in the {MODEL_HEADER} header or the body's `model` field"),
        )
    })?;
    let deployment = state
        .registry
        .resolve(&model)
        .ok_or_else(|| HearthError::ModelNotFound(model.clone()))?;
    if let Some(identity) = parts.extensions.get::<Identity>() {
        identity.require_model(&model, deployment, &state.registry)?;
    }
    if !deployment.config.generic_proxy {
        return Err(HearthError::Forbidden {
            message: format!(
                "the model `{}` does not accept the generic proxy (its deployment sets generic_proxy = false)",
                deployment.name()
            ),
            code: "generic_proxy_disabled",
        });
    }
    let pool = upstream_of(deployment).ok_or_else(|| {
        HearthError::NotImplemented(format!(
            "the model `{}` has no upstream target to proxy to",
            deployment.name()
        ))
    })?;
    let path = parts.uri.path().strip_prefix("/model/proxy").unwrap_or("/");
    let path = if path.is_empty() { "/" } else { path };
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    forward(state, &parts, body, &pool, &path_and_query).await
}
