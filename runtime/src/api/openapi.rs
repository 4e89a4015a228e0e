//! `/openapi.json`: the OpenAPI 3.1 description of every route, generated from the handlers.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{chat, completions, embeddings, health, images, keys, models, speech, transcriptions};

/// The API description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Hearth", description = "OpenAI-compatible model serving"),
    paths(
        health::healthz, health::readyz, health::metrics, serve,
        models::list, models::retrieve,
        chat::create, completions::create, embeddings::create,
        images::generations, images::edits, images::file, speech::speech,
        transcriptions::transcriptions, transcriptions::translations,
        keys::create, keys::list, keys::revoke, keys::usage,
        super::proxy::generic_proxy,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1 JSON")))]
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
