//! Model resolution shared by every model endpoint: the deployment a request
//! names (`X-GPUStack-Model` header first, else the JSON or multipart `model`),
//! whether the caller may use it, and whether it serves this kind of request.
//! A deployment with no engine for the request (a kind this build cannot run) answers an
//! honest 501 through [`unserved`]; each endpoint family has its own module.

use axum::extract::Request;
use axum::http::HeaderMap;
use serde_json::Value;

use super::AppState;
use super::extract::{parse_json, read_body};
use crate::auth::Identity;
use crate::config::ModelKind;
use crate::deployments::{Deployment, DeploymentState};
use crate::error::{HearthError, Result};

/// The header that names the model ahead of the body (GPUStack's convention).
pub const MODEL_HEADER: &str = "x-gpustack-model";

/// The header as the document describes it on every model route.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(names("X-GPUStack-Model"), parameter_in = Header)]
#[allow(
    dead_code,
    reason = "describes the header for the OpenAPI document; read by header_model"
)]
pub struct ModelHeader(
    /// The deployment (name or alias); wins over the body's `model`.
    #[param(nullable = false)]
    Option<String>,
);

pub(super) fn header_model(headers: &HeaderMap) -> Result<Option<String>> {
    match headers.get(MODEL_HEADER) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| Some(v.to_owned()))
            .ok_or_else(|| {
                HearthError::invalid(format!(
                    "the {MODEL_HEADER} header must be a non-empty string"
                ))
            }),
    }
}

fn missing_model() -> HearthError {
    HearthError::invalid_param("model", "you must provide a model parameter")
}

/// The model named by a JSON body's `model` field.
fn json_model(body: &Value) -> Result<String> {
    let Some(object) = body.as_object() else {
        return Err(HearthError::invalid(
            "the request body must be a JSON object",
        ));
    };
    match object.get("model") {
        None | Some(Value::Null) => Err(missing_model()),
        Some(Value::String(m)) if !m.trim().is_empty() => Ok(m.clone()),
        Some(_) => Err(HearthError::invalid_param(
            "model",
            "`model` must be a non-empty string",
        )),
    }
}

/// Finds the deployment, checks the allow-list and the kind.
pub(super) fn admit<'a>(
    state: &'a AppState,
    identity: &Identity,
    model: &str,
    accepts: &[ModelKind],
    endpoint: &str,
) -> Result<&'a Deployment> {
    let deployment = state
        .registry
        .resolve(model)
        .ok_or_else(|| HearthError::ModelNotFound(model.to_owned()))?;
    identity.require_model(model, deployment, &state.registry)?;
    let kind = deployment.kind();
    if kind != ModelKind::Any && !accepts.contains(&kind) {
        return Err(HearthError::InvalidRequest {
            message: format!(
                "the model `{model}` is a {} model and does not serve {endpoint}",
                kind.as_str()
            ),
            param: Some("model".to_owned()),
            code: Some("model_not_supported"),
        });
    }
    Ok(deployment)
}

/// The answer for a deployment that has no backend for this request.
pub fn unserved(deployment: &Deployment, endpoint: &str) -> HearthError {
    match &deployment.state {
        DeploymentState::Unavailable(reason) => HearthError::NotImplemented(format!(
            "the model `{}` cannot serve {endpoint}: {reason}",
            deployment.name()
        )),
        DeploymentState::Failed(reason) => HearthError::Unavailable(format!(
            "the model `{}` failed to load: {reason}",
            deployment.name()
        )),
        DeploymentState::Loading => HearthError::Unavailable(format!(
            "the model `{}` is still loading; retry shortly",
            deployment.name()
        )),
        DeploymentState::Ready => HearthError::NotImplemented(format!(
            "the model `{}` does not serve {endpoint}",
            deployment.name()
        )),
    }
}

/// A JSON request resolved to its deployment: the name the client used and the body.
#[derive(Debug)]
pub struct Resolved<'a> {
    pub deployment: &'a Deployment,
    pub model: String,
    pub body: Value,
}

/// Reads a JSON body and resolves the model it names (header first).
pub async fn resolve_json<'a>(
    state: &'a AppState,
    identity: &Identity,
    request: Request,
    accepts: &[ModelKind],
    endpoint: &str,
) -> Result<Resolved<'a>> {
    let from_header = header_model(request.headers())?;
    let body: Value = parse_json(&read_body(request, state).await?)?;
    let model = match from_header {
        Some(model) => model,
        None => json_model(&body)?,
    };
    let deployment = admit(state, identity, &model, accepts, endpoint)?;
    Ok(Resolved {
        deployment,
        model,
        body,
    })
}
