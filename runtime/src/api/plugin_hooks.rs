//! Where plugins meet HTTP: the request head they see, the auth hook as the router's
//! [`Authenticator`], the key store behind the `keys` import, and the preprocess chain as a
//! middleware on the model routes. It lives in `api/` so that the plugin host itself
//! (`plugins/`) knows nothing of requests, identities or the app state.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;

use super::AppState;
use crate::auth::{
    Authenticator, Identity, KeyAuthenticator, KeyProblem, Principal, RequestHead, credential,
};
use crate::config::OnError;
use crate::error::{HearthError, Result};
use crate::plugins::{Failure, KeyVerifier, PluginHost, keys, types, validate};
use crate::store::Scope;

/// The head a plugin sees: lower-case header names, Hearth's internal `x-hearth-*` headers
/// stripped, values that are not UTF-8 left out.
pub fn plugin_head(
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> types::RequestHead {
    types::RequestHead {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .filter(|(name, _)| !name.as_str().starts_with("x-hearth-"))
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| (name.as_str().to_owned(), v.to_owned()))
            })
            .collect(),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned(),
        client_addr: None,
    }
}

/// A plugin's identity as the host's.
fn identity_from(id: types::Identity) -> Identity {
    let scopes = id
        .scopes
        .iter()
        .filter_map(|s| s.parse::<Scope>().ok())
        .collect();
    Identity {
        principal: if id.anonymous {
            Principal::Anonymous
        } else {
            Principal::Key {
                id: id.key_id,
                name: id.key_name,
            }
        },
        scopes,
        models: (!id.allowed_models.is_empty()).then_some(id.allowed_models),
    }
}

/// The host's identity as plugins see it.
pub fn identity_to(id: &Identity) -> types::Identity {
    let (key_id, key_name, anonymous) = match &id.principal {
        Principal::Key { id, name } => (id.clone(), name.clone(), false),
        Principal::LocalAdmin => ("local-admin".to_owned(), "local admin".to_owned(), false),
        Principal::Anonymous => ("anonymous".to_owned(), String::new(), true),
    };
    types::Identity {
        key_id,
        key_name,
        scopes: id.scopes.iter().map(ToString::to_string).collect(),
        allowed_models: id.models.clone().unwrap_or_default(),
        expires_at: None,
        anonymous,
    }
}

fn denied(d: types::Denial) -> HearthError {
    // The plugin layer validated the headers already.
    let headers = validate::headers(&d.headers).unwrap_or_default();
    HearthError::PluginDenied {
        status: d.status,
        code: d.code,
        message: d.message,
        headers,
    }
}

fn unavailable(plugin: &str, failure: &Failure) -> HearthError {
    HearthError::PluginUnavailable(format!("{plugin}: {}", failure.kind()))
}

/// The auth hook behind the router's [`Authenticator`]: the local admin token is checked by
/// the host first (it never reaches a plugin); then the auth plugin decides, failing closed;
/// with no auth plugin loaded, the built-in key verifier does.
#[derive(Debug)]
pub struct PluginAuthenticator {
    pub host: Arc<PluginHost>,
    pub keys: Arc<KeyAuthenticator>,
}

impl Authenticator for PluginAuthenticator {
    fn authenticate<'a>(&'a self, head: RequestHead<'a>) -> BoxFuture<'a, Result<Identity>> {
        Box::pin(async move {
            if let Some(admin) = self.keys.local_admin(credential(head.headers)) {
                return Ok(admin);
            }
            let set = self.host.current();
            let Some(plugin) = &set.auth else {
                return self.keys.identify(head);
            };
            let plugin_head = plugin_head(head.method, head.uri, head.headers);
            match plugin.authenticate(&plugin_head).await {
                Ok(types::AuthDecision::Allow(id)) => Ok(identity_from(id)),
                Ok(types::AuthDecision::Deny(d)) => Err(denied(d)),
                Err(failure) => Err(unavailable(&plugin.name, &failure)),
            }
        })
    }
}

impl KeyVerifier for KeyAuthenticator {
    fn verify(&self, presented: &str) -> std::result::Result<keys::KeyInfo, keys::KeyError> {
        match self.check_key(presented) {
            Ok(key) => Ok(keys::KeyInfo {
                key_id: key.id,
                name: key.name,
                scopes: key.scopes.iter().map(ToString::to_string).collect(),
                allowed_models: key.models.unwrap_or_default(),
                expires_at: key.expires_at,
            }),
            Err(KeyProblem::Malformed) => Err(keys::KeyError::Malformed),
            Err(KeyProblem::Revoked) => Err(keys::KeyError::Revoked),
            Err(KeyProblem::Expired) => Err(keys::KeyError::Expired),
            Err(KeyProblem::Unknown | KeyProblem::Store(_)) => Err(keys::KeyError::Unknown),
        }
    }

    fn open_mode(&self) -> bool {
        KeyAuthenticator::open_mode(self)
    }
}

/// The API a model route serves, as plugins name it.
fn endpoint(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat.completions",
        "/v1/completions" => "completions",
        "/v1/embeddings" => "embeddings",
        "/v1/images/generations" => "images.generations",
        "/v1/images/edits" => "images.edits",
        "/v1/audio/speech" => "audio.speech",
        "/v1/audio/transcriptions" => "audio.transcriptions",
        "/v1/audio/translations" => "audio.translations",
        p if p.starts_with("/v1/models") => "models",
        p if p.starts_with("/model/proxy") => "proxy",
        _ => "other",
    }
}

/// What the host reads from a JSON body for plugins. The prompt size is a byte-count
/// estimate (≈ 4 bytes per token), not a tokenizer count: plugins run before the model is
/// known to be local.
pub fn facts(path: &str, headers: &HeaderMap, body: &[u8]) -> types::Facts {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| json.as_ref().and_then(|j| j.get(name));
    let model = headers
        .get("x-gpustack-model")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| field("model").and_then(|m| m.as_str()).map(str::to_owned));
    let max_tokens = field("max_completion_tokens")
        .or_else(|| field("max_tokens"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok());
    let prompt_bytes = ["messages", "prompt", "input"]
        .iter()
        .filter_map(|k| field(k))
        .map(|v| v.to_string().len())
        .sum::<usize>();
    types::Facts {
        model,
        endpoint: endpoint(path).to_owned(),
        stream: field("stream")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        max_tokens,
        prompt_tokens: (prompt_bytes > 0)
            .then(|| u32::try_from(prompt_bytes.div_ceil(4)).unwrap_or(u32::MAX)),
    }
}

/// The preprocess chain on the model routes: each plugin sees the body as the plugins before
/// it left it. A denial ends the request with the plugin's status; a failure ends it with 503
/// unless the plugin is configured `on_error = "fail_open"`.
pub async fn preprocess(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(host) = state.plugins.clone() else {
        return next.run(request).await;
    };
    let set = host.current();
    if set.preprocess.is_empty() {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let mut body: Bytes = match axum::body::to_bytes(body, host.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return HearthError::PayloadTooLarge {
                limit: host.max_body_bytes,
            }
            .into_response();
        }
    };
    let identity = parts.extensions.get::<Identity>().map(identity_to);
    for plugin in &set.preprocess {
        let head = plugin_head(&parts.method, &parts.uri, &parts.headers);
        let facts = facts(&head.path, &parts.headers, &body);
        let decision = plugin
            .preprocess(&head, &facts, identity.as_ref(), &body, host.max_body_bytes)
            .await;
        match decision {
            Ok(types::PreprocessDecision::Unchanged) => {}
            Ok(types::PreprocessDecision::Rewrite(rewrite)) => {
                for name in &rewrite.remove_headers {
                    if let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                        parts.headers.remove(name);
                    }
                }
                for (name, value) in validate::headers(&rewrite.set_headers).unwrap_or_default() {
                    parts.headers.insert(name, value);
                }
                if let Some(new_body) = rewrite.body {
                    body = Bytes::from(new_body);
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                }
            }
            Ok(types::PreprocessDecision::Deny(d)) => return denied(d).into_response(),
            Err(failure) if plugin.on_error == OnError::FailOpen => {
                tracing::warn!(plugin = %plugin.name, error = %failure, "preprocess plugin failed open");
            }
            Err(failure) => return unavailable(&plugin.name, &failure).into_response(),
        }
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_read_the_body_and_the_model_header() {
        let mut headers = HeaderMap::new();
        let body = br#"{"model":"m","stream":true,"max_tokens":7,"messages":[{"role":"user","content":"hi"}]}"#;
        let f = facts("/v1/chat/completions", &headers, body);
        assert_eq!(f.model.as_deref(), Some("m"));
        assert!(f.stream);
        assert_eq!(f.max_tokens, Some(7));
        assert_eq!(f.endpoint, "chat.completions");
        assert!(f.prompt_tokens.is_some_and(|t| t > 0));
        headers.insert("x-gpustack-model", HeaderValue::from_static("h"));
        assert_eq!(
            facts("/model/proxy/x", &headers, b"not json")
                .model
                .as_deref(),
            Some("h")
        );
    }

    #[test]
    fn internal_headers_never_reach_plugins() {
        let mut headers = HeaderMap::new();
        headers.insert("x-hearth-key-id", HeaderValue::from_static("forged"));
        headers.insert("authorization", HeaderValue::from_static("Bearer x"));
        let head = plugin_head(
            &axum::http::Method::POST,
            &"/v1/embeddings?a=1".parse().unwrap(),
            &headers,
        );
        assert_eq!(
            head.headers,
            vec![("authorization".to_owned(), "Bearer x".to_owned())]
        );
        assert_eq!(head.query.as_deref(), Some("a=1"));
    }
}
