//! The HTTP API: shared state, the router, and one module per route family.

mod chat;
mod chat_answer;
mod chat_prompt;
mod completion_run;
mod completions;
pub mod drain;
mod embeddings;
mod extract;
mod health;
pub(crate) mod image_diffusion;
mod image_inputs;
mod images;
pub mod inference;
mod keys;
mod middleware;
mod models;
pub mod openapi;
mod openapi_schemas;
pub mod plugin_hooks;
mod proxy;
mod sampling_params;
mod speech;
mod sse;
mod structured;
mod tools;
mod transcript_formats;
mod transcriptions;
mod usage;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, delete, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::{Authenticator, KeyAuthenticator};
use crate::config::Config;
use crate::deployments::Registry;
use crate::error::Result;
use crate::management::any_active_key;
use crate::plugins::PluginHost;
use crate::store::{Store, now_unix};

pub use extract::JsonBody;

/// Everything a handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub registry: Arc<Registry>,
    pub store: Arc<dyn Store>,
    pub auth: Arc<dyn Authenticator>,
    /// Shared with the key authenticator: true while the server runs open.
    pub open: Arc<AtomicBool>,
    pub metrics: PrometheusHandle,
    /// Unix seconds at start, reported as each model's `created`.
    pub started_at: u64,
    /// The Wasm plugins (auth, preprocess, route); `None` only in builds of the state that
    /// opt out (a few route tests).
    pub plugins: Option<Arc<PluginHost>>,
    /// The expiring files behind image URLs (`<data_dir>/images`).
    pub images: Arc<crate::images::ImageFiles>,
    /// Graceful shutdown: the phase and the requests in flight.
    pub drain: drain::Drain,
}

impl AppState {
    /// The state over an open store: the key authenticator, the plugin host (the config's
    /// plugins, the watched folder, the built-in defaults) with the auth hook in front of the
    /// keys, the deployments and the image files.
    pub fn build(
        config: Config,
        store: Arc<dyn Store>,
        admin_token: Option<String>,
    ) -> Result<Self> {
        let open = !config.auth_required() && !any_active_key(&*store)?;
        let open = Arc::new(AtomicBool::new(open));
        let keys = Arc::new(KeyAuthenticator::new(
            store.clone(),
            admin_token,
            open.clone(),
        ));
        let plugins = Arc::new(PluginHost::start(
            &config,
            keys.clone(),
            crate::plugins::builtins(),
        )?);
        let auth = Arc::new(plugin_hooks::PluginAuthenticator {
            host: plugins.clone(),
            keys,
        });
        let images = Arc::new(crate::images::ImageFiles::open(
            &config.data_dir.join("images"),
            config.image_url_ttl(),
        )?);
        Ok(Self {
            images,
            drain: drain::Drain::new(config.shutdown_drain()),
            registry: Arc::new(Registry::load(&config.deployments)),
            config: Arc::new(config),
            store,
            auth,
            open,
            metrics: crate::metrics::handle(),
            started_at: now_unix(),
            plugins: Some(plugins),
        })
    }
}

/// The whole router. Tests drive it with `oneshot`, the server with a socket.
pub fn app(state: AppState) -> Router {
    // The file plus the form's other fields and boundaries.
    let audio_limit = state
        .config
        .max_body_bytes
        .max(transcriptions::MAX_FILE_BYTES + 1024 * 1024);
    let image_edit_limit = image_inputs::edit_body_limit(&state);
    let inference = Router::new()
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::retrieve))
        .route("/v1/chat/completions", post(chat::create))
        .route("/v1/completions", post(completions::create))
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/images/generations", post(images::generations))
        // Uploads of several images may exceed the JSON body limit.
        .route(
            "/v1/images/edits",
            post(images::edits).layer(DefaultBodyLimit::max(image_edit_limit)),
        )
        .route("/v1/audio/speech", post(speech::speech))
        // Audio uploads may be up to 25 MB whatever the JSON body limit is.
        .route(
            "/v1/audio/transcriptions",
            post(transcriptions::transcriptions).layer(DefaultBodyLimit::max(audio_limit)),
        )
        .route(
            "/v1/audio/translations",
            post(transcriptions::translations).layer(DefaultBodyLimit::max(audio_limit)),
        )
        // Layers run outermost-last-added: auth, then the preprocess chain, then requests
        // for upstream deployments leave for their upstream.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            proxy::upstream_routes,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            plugin_hooks::preprocess,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::require_inference,
        ));

    let proxy = Router::new()
        .route("/model/proxy/{*path}", any(proxy::generic_proxy))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            plugin_hooks::preprocess,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::require_inference,
        ));

    let management = Router::new()
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{id}", delete(keys::revoke))
        .route("/v1/usage", get(keys::usage))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::require_management,
        ));

    let open = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        // Image URLs carry their own secret (256 random bits) and expire: no key needed.
        .route("/v1/images/files/{name}", get(images::file));

    let limit = state.config.max_body_bytes;
    Router::new()
        .merge(inference)
        .merge(proxy)
        .merge(management)
        .merge(open)
        .fallback(middleware::no_route)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(middleware::request_span))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(axum::middleware::from_fn(middleware::track_metrics))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    middleware::error_envelope,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    drain::guard,
                ))
                .layer(DefaultBodyLimit::max(limit)),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests;
