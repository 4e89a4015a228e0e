//! `GET /v1/models` and `GET /v1/models/{id}` in OpenAI's shape, aliases included.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use crate::auth::Identity;
use crate::config::ModelKind;
use crate::deployments::Deployment;
use crate::error::{ErrorEnvelope, HearthError, Result};
use crate::management::List;

/// OpenAI's model object, with Hearth's extra fields (clients ignore unknown fields).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelObject {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
    /// What the deployment serves.
    pub kind: ModelKind,
    /// On the deployment's own entry: its other names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aliases: Option<Vec<String>>,
    /// On an alias's entry: the deployment it names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias_of: Option<String>,
    /// `ready`, `loading`, `unavailable` or `failed`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// On image models: what it can do (`generate`, `edit`), whether it reads the prompt,
    /// the sizes it makes or its upscale factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::engine::ImageFacts>,
}

fn model_object(deployment: &Deployment, id: &str, created: u64) -> ModelObject {
    let is_alias = id != deployment.name();
    ModelObject {
        id: id.to_owned(),
        object: "model".to_owned(),
        created,
        owned_by: "hearth".to_owned(),
        kind: deployment.kind(),
        aliases: (!is_alias).then(|| deployment.config.aliases.clone()),
        alias_of: is_alias.then(|| deployment.name().to_owned()),
        state: deployment.state.as_str().to_owned(),
        state_reason: deployment.state.reason().map(str::to_owned),
        image: match &deployment.backend {
            Some(crate::engine::Backend::Image(engine)) => Some(engine.facts().clone()),
            _ => None,
        },
    }
}

/// Every deployment the caller may use, then each alias as its own entry.
#[utoipa::path(get, path = "/v1/models", tag = "models", security(("bearer" = [])),
    responses((status = 200, body = List<ModelObject>), (status = 401, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
) -> Json<List<ModelObject>> {
    let visible: Vec<&Deployment> = state
        .registry
        .iter()
        .filter(|d| identity.may_use(d, &state.registry))
        .collect();
    let mut data: Vec<ModelObject> = visible
        .iter()
        .map(|d| model_object(d, d.name(), state.started_at))
        .collect();
    for deployment in &visible {
        for alias in &deployment.config.aliases {
            data.push(model_object(deployment, alias, state.started_at));
        }
    }
    Json(List::new(data))
}

/// One model by name or alias.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "models", security(("bearer" = [])),
    params(("id" = String, Path, description = "deployment name or alias")),
    responses((status = 200, body = ModelObject), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn retrieve(
    State(state): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Json<ModelObject>> {
    let deployment = state
        .registry
        .resolve(&id)
        .ok_or_else(|| HearthError::ModelNotFound(id.clone()))?;
    identity.require_model(&id, deployment, &state.registry)?;
    Ok(Json(model_object(deployment, &id, state.started_at)))
}
