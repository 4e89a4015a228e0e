//! Liveness, readiness and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;
use crate::deployments::DeploymentState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: 503 while any deployment is still loading, and from the shutdown signal on.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "ready"), (status = 503, description = "a deployment is loading, or the server is draining to shut down")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let deployments: serde_json::Map<String, Value> = state
        .registry
        .iter()
        .map(|d| {
            let mut entry = json!(d.state);
            if let Some(crate::engine::Backend::Upstream(pool)) = &d.backend {
                entry["targets"] = pool
                    .targets
                    .iter()
                    .map(|t| json!({"url": t.base, "healthy": t.healthy(), "in_flight": t.in_flight(), "weight": t.weight}))
                    .collect();
            }
            (d.name().to_owned(), entry)
        })
        .collect();
    let loading = state
        .registry
        .iter()
        .any(|d| d.state == DeploymentState::Loading);
    let draining = state.drain.is_draining();
    let status = if loading || draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let word = match (draining, loading) {
        (true, _) => "draining",
        (false, true) => "loading",
        (false, false) => "ready",
    };
    (
        status,
        Json(json!({"status": word, "deployments": deployments})),
    )
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
