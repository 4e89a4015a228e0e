//! `/openapi.json`: the OpenAPI 3.1 description of every route, generated from the handlers
//! and their request types, with the hand-written schemas of `openapi_schemas` in place.

use axum::Json;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::openapi_schemas;
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

/// The document as served: utoipa's, with each literal schema in its component's place.
/// Built on first use; it never changes while the process runs.
pub fn document() -> &'static Value {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(build)
}

fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document does not serialise");
        Value::Null
    });
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in openapi_schemas::literals() {
            schemas.insert(name.to_owned(), schema);
        }
    }
    doc
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1 JSON")))]
pub async fn serve() -> Json<Value> {
    Json(document().clone())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::document;
    use crate::api::image_diffusion::EXTENSIONS;
    use crate::api::images::{COMMON, EDIT_ONLY, GENERATION_ONLY};
    use crate::api::sampling_params::{MAX_CHOICES, MAX_TOP_LOGPROBS};

    /// Every `$ref` in `value`.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        &doc["components"]["schemas"][name]
    }

    fn names(properties: &Value) -> BTreeSet<String> {
        properties
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn every_reference_resolves_to_a_real_schema() {
        let doc = document();
        let mut found = Vec::new();
        refs(doc, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for r in found {
            let target = doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{r} does not resolve"));
            assert!(
                target.as_object().is_some_and(|o| !o.is_empty()),
                "{r} is an empty schema: a literal missing from openapi_schemas::literals()"
            );
        }
    }

    #[test]
    fn every_model_route_has_a_body_and_the_model_header() {
        let doc = document();
        for (path, kinds) in [
            ("/v1/chat/completions", &["application/json"][..]),
            ("/v1/completions", &["application/json"]),
            ("/v1/embeddings", &["application/json"]),
            ("/v1/images/generations", &["application/json"]),
            (
                "/v1/images/edits",
                &["multipart/form-data", "application/json"],
            ),
            ("/v1/audio/speech", &["application/json"]),
            ("/v1/audio/transcriptions", &["multipart/form-data"]),
            ("/v1/audio/translations", &["multipart/form-data"]),
        ] {
            let operation = &doc["paths"][path]["post"];
            for kind in kinds {
                let body = &operation["requestBody"]["content"][kind]["schema"];
                assert!(body.get("$ref").is_some(), "{path} {kind}: {body}");
            }
            let header = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "X-GPUStack-Model");
            assert_eq!(
                header.map(|h| h["in"].clone()),
                Some("header".into()),
                "{path}"
            );
            assert!(operation["responses"]["400"].is_object(), "{path}");
        }
    }

    #[test]
    fn bounds_match_the_handlers_constants() {
        let doc = document();
        let common = &schema(doc, "CommonParams")["properties"];
        assert_eq!(common["n"]["maximum"], MAX_CHOICES);
        let chat = serde_json::to_string(schema(doc, "ChatRequest")).unwrap();
        assert!(chat.contains("\"messages\""), "{chat}");
        assert!(
            chat.contains("CommonParams"),
            "the shared fields are part of it: {chat}"
        );
        let chat = schema(doc, "ChatRequest");
        let top = chat
            .pointer("/allOf/1/properties/top_logprobs")
            .or_else(|| chat.pointer("/properties/top_logprobs"))
            .unwrap_or_else(|| panic!("{chat}"));
        assert_eq!(top["maximum"], MAX_TOP_LOGPROBS);
    }

    #[test]
    fn image_schemas_name_exactly_the_accepted_parameters() {
        let doc = document();
        let generation: BTreeSet<String> = COMMON
            .iter()
            .chain(&GENERATION_ONLY)
            .chain(&EXTENSIONS)
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            names(&schema(doc, "ImageGenerationRequest")["properties"]),
            generation
        );
        let edit: BTreeSet<String> = COMMON
            .iter()
            .chain(&EDIT_ONLY)
            .chain(&EXTENSIONS)
            .map(|s| (*s).to_owned())
            .collect();
        let form = names(&schema(doc, "ImageEditForm")["properties"]);
        let uploads = ["image", "image[]", "mask"].map(str::to_owned);
        assert_eq!(
            form,
            edit.iter().cloned().chain(uploads).collect::<BTreeSet<_>>()
        );
        let json = names(&schema(doc, "ImageEditJson")["properties"]);
        let uploads = ["image", "images", "mask"].map(str::to_owned);
        assert_eq!(
            json,
            edit.into_iter().chain(uploads).collect::<BTreeSet<_>>()
        );
    }
}
