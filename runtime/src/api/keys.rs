//! The management API: `/v1/keys` (create, list, revoke) and `/v1/usage`.
//! Store writes (and their fsync) run on the blocking pool.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{AppState, JsonBody};
use crate::error::{ErrorEnvelope, HearthError, Result};
use crate::management::{self, CreateKeyRequest, CreatedKey, KeyInfo, List, RevokedKey, UsageRow};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HearthError::Internal(format!("store task failed: {e}")))?
}

/// Creates a key. The full key is in this response only.
#[utoipa::path(post, path = "/v1/keys", tag = "management", security(("bearer" = [])),
    request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>)> {
    let store = state.store.clone();
    let created = blocking(move || management::create_key(&*store, request)).await?;
    // From the first key on, the server requires keys.
    state.open.store(false, Ordering::Release);
    Ok((StatusCode::CREATED, Json(created)))
}

/// Lists keys, masked.
#[utoipa::path(get, path = "/v1/keys", tag = "management", security(("bearer" = [])),
    responses((status = 200, body = List<KeyInfo>), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<List<KeyInfo>>> {
    let store = state.store.clone();
    Ok(Json(
        blocking(move || management::list_keys(&*store)).await?,
    ))
}

/// Revokes a key, effective for the next request.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "management", security(("bearer" = [])),
    params(("id" = String, Path, description = "the key's access id")),
    responses((status = 200, body = RevokedKey), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RevokedKey>> {
    let store = state.store.clone();
    Ok(Json(
        blocking(move || management::revoke_key(&*store, &id)).await?,
    ))
}

/// Usage counters per key and per deployment.
#[utoipa::path(get, path = "/v1/usage", tag = "management", security(("bearer" = [])),
    responses((status = 200, body = List<UsageRow>), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope)))]
pub async fn usage(State(state): State<AppState>) -> Result<Json<List<UsageRow>>> {
    let store = state.store.clone();
    Ok(Json(blocking(move || management::usage(&*store)).await?))
}
