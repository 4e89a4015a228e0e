//! The deployment registry: what clients can name in `model`, resolved by name or
//! alias, with the backend that serves each one once it is loaded.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use crate::config::{DeploymentConfig, DeviceChoice, ModelKind};
use crate::engine::generation::GenerationOptions;
use crate::engine::{
    Backend, EmbeddingEngine, EmbeddingOptions, ImageEngine, ImageFamily, ImageOptions,
    SpeechEngine, SpeechOptions, TranscriptionEngine, TranscriptionOptions, start_llama,
};

/// Whether a deployment can serve requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum DeploymentState {
    Ready,
    Loading,
    /// Configured, but nothing in this build serves it; the reason says why.
    Unavailable(String),
    /// Its model failed to load; the reason says why.
    Failed(String),
}

impl DeploymentState {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeploymentState::Ready => "ready",
            DeploymentState::Loading => "loading",
            DeploymentState::Unavailable(_) => "unavailable",
            DeploymentState::Failed(_) => "failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            DeploymentState::Unavailable(r) | DeploymentState::Failed(r) => Some(r),
            _ => None,
        }
    }
}

/// One deployment as the server knows it.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub config: DeploymentConfig,
    pub state: DeploymentState,
    pub backend: Option<Backend>,
}

impl Deployment {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn kind(&self) -> ModelKind {
        self.config.kind
    }

    /// A one-line description of where it runs.
    pub fn targets_summary(&self) -> String {
        self.config
            .targets
            .iter()
            .map(|t| match (&t.source, &t.upstream) {
                (Some(source), _) => format!("local:{}", source.display()),
                (_, Some(url)) => format!("upstream:{url}"),
                _ => "?".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// All deployments, with an index over names and aliases.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    deployments: Vec<Deployment>,
    index: HashMap<String, usize>,
}

impl Registry {
    /// The registry as configured, nothing loaded (for the CLI's offline view).
    pub fn from_config(configs: &[DeploymentConfig]) -> Self {
        Self::build(configs, |_| {
            (
                DeploymentState::Unavailable("not loaded: no server is running".into()),
                None,
            )
        })
    }

    /// Loads every local model this build can run, each on its own worker.
    /// A model that fails to load is marked failed; the others still serve.
    pub fn load(configs: &[DeploymentConfig]) -> Self {
        Self::build(configs, load_backend)
    }

    fn build(
        configs: &[DeploymentConfig],
        mut backend_for: impl FnMut(&DeploymentConfig) -> (DeploymentState, Option<Backend>),
    ) -> Self {
        let mut registry = Registry::default();
        for config in configs {
            let (state, backend) = backend_for(config);
            let at = registry.deployments.len();
            for name in std::iter::once(&config.name).chain(&config.aliases) {
                registry.index.insert(name.clone(), at);
            }
            registry.deployments.push(Deployment {
                config: config.clone(),
                state,
                backend,
            });
        }
        registry
    }

    /// Finds a deployment by name or alias.
    pub fn resolve(&self, model: &str) -> Option<&Deployment> {
        self.index.get(model).map(|&i| &self.deployments[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Deployment> {
        self.deployments.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.deployments.is_empty()
    }
}

fn load_backend(config: &DeploymentConfig) -> (DeploymentState, Option<Backend>) {
    let local = config.targets.iter().any(|t| t.source.is_some());
    if !local && config.targets.iter().any(|t| t.upstream.is_some()) {
        return match crate::proxy::UpstreamPool::from_config(config) {
            Ok(pool) => (
                DeploymentState::Ready,
                Some(Backend::Upstream(Arc::new(pool))),
            ),
            Err(e) => (DeploymentState::Failed(e.to_string()), None),
        };
    }
    let Some((target, source)) = config
        .targets
        .iter()
        .find_map(|t| t.source.as_ref().map(|s| (t, s)))
    else {
        return (DeploymentState::Unavailable(unserved_reason(config)), None);
    };
    if config.targets.len() > 1 {
        tracing::warn!(deployment = %config.name, "only the first local target is served; replicas need the proxy");
    }
    let device = target.device.unwrap_or(DeviceChoice::Auto);
    let started = std::time::Instant::now();
    let loaded = match config.kind {
        ModelKind::Embedding => {
            let defaults = EmbeddingOptions::default();
            let options = EmbeddingOptions {
                max_batch_size: config.max_batch_size.unwrap_or(defaults.max_batch_size),
                max_queued_requests: config
                    .max_queued_requests
                    .unwrap_or(defaults.max_queued_requests),
                ..defaults
            };
            EmbeddingEngine::start(&config.name, source, device, options).map(|engine| {
                tracing::info!(
                    deployment = %config.name,
                    device = engine.device_name(),
                    dimensions = engine.dimensions(),
                    max_input_tokens = engine.max_input_tokens(),
                    seconds = started.elapsed().as_secs_f32(),
                    "embedding model ready"
                );
                Backend::Embedding(Arc::new(engine))
            })
        }
        ModelKind::Chat | ModelKind::Completion
            if source.is_dir() || source.extension().is_some_and(|e| e == "gguf") =>
        {
            let defaults = GenerationOptions::default();
            let options = GenerationOptions {
                max_active: config.max_batch_size.unwrap_or(defaults.max_active),
                max_queued: config.max_queued_requests.unwrap_or(defaults.max_queued),
            };
            let weights = target.cpu_weights.unwrap_or_default();
            start_llama(&config.name, source, device, weights, options)
                .map(|engine| Backend::Text(Arc::new(engine)))
        }
        ModelKind::Transcription => {
            let defaults = TranscriptionOptions::default();
            let options = TranscriptionOptions {
                max_active: config.max_batch_size.unwrap_or(defaults.max_active),
                max_queued: config.max_queued_requests.unwrap_or(defaults.max_queued),
                max_audio_seconds: config
                    .max_audio_seconds
                    .unwrap_or(defaults.max_audio_seconds),
            };
            TranscriptionEngine::start(&config.name, source, device, options).map(|engine| {
                tracing::info!(
                    deployment = %config.name,
                    device = engine.device_name(),
                    multilingual = engine.is_multilingual(),
                    seconds = started.elapsed().as_secs_f32(),
                    "transcription model ready"
                );
                Backend::Transcription(Arc::new(engine))
            })
        }
        ModelKind::Speech => {
            let defaults = SpeechOptions::default();
            let options = SpeechOptions {
                max_active: config.max_batch_size.unwrap_or(defaults.max_active),
                max_queued: config.max_queued_requests.unwrap_or(defaults.max_queued),
            };
            SpeechEngine::start(&config.name, source, device, options).and_then(|engine| {
                if let Some((name, target)) =
                    config.voices.iter().find(|(_, t)| engine.speaker(t).is_none())
                {
                    return Err(crate::error::HearthError::Config(format!(
                        "voices.{name} = `{target}`: the voice has no such speaker (names: {:?}, ids 0 to {})",
                        engine.speakers().keys().collect::<Vec<_>>(),
                        engine.speaker_count() - 1
                    )));
                }
                tracing::info!(
                    deployment = %config.name,
                    device = engine.device_name(),
                    sample_rate = engine.sample_rate(),
                    speakers = engine.speaker_count(),
                    seconds = started.elapsed().as_secs_f32(),
                    "speech voice ready"
                );
                Ok(Backend::Speech(Arc::new(engine)))
            })
        }
        ModelKind::Image => {
            let family = ImageFamily::detect(source);
            let defaults = ImageOptions::default();
            let options = ImageOptions {
                max_batch: config.max_batch_size.unwrap_or(defaults.max_batch),
                max_queued: config.max_queued_requests.unwrap_or(defaults.max_queued),
            };
            ImageEngine::start(&config.name, family, device, options).map(|engine| {
                tracing::info!(
                    deployment = %config.name,
                    device = engine.device_name(),
                    capabilities = ?engine.facts().capabilities,
                    seconds = started.elapsed().as_secs_f32(),
                    "image model ready"
                );
                Backend::Image(Arc::new(engine))
            })
        }
        ModelKind::Chat | ModelKind::Completion => Err(crate::error::HearthError::Config(format!(
            "{}: a chat model is a `.gguf` file or a Hugging Face checkpoint folder",
            source.display()
        ))),
        _ => return (DeploymentState::Unavailable(unserved_reason(config)), None),
    };
    match loaded {
        Ok(backend) => (DeploymentState::Ready, Some(backend)),
        Err(e) => {
            tracing::error!(deployment = %config.name, error = %e, "model failed to load");
            (DeploymentState::Failed(e.to_string()), None)
        }
    }
}

fn unserved_reason(config: &DeploymentConfig) -> String {
    format!(
        "this build has no local engine for {} models yet",
        config.kind.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn resolves_names_and_aliases() {
        let config = Config::parse(
            "[[deployments]]\nname='m'\naliases=['x','y']\nkind='chat'\n[[deployments.targets]]\nsource='f'\n",
        )
        .unwrap();
        let registry = Registry::from_config(&config.deployments);
        assert_eq!(registry.resolve("m").unwrap().name(), "m");
        assert_eq!(registry.resolve("y").unwrap().name(), "m");
        assert!(registry.resolve("z").is_none());
    }

    #[test]
    fn a_missing_model_is_failed_not_fatal() {
        let config = Config::parse(
            "[[deployments]]\nname='e'\nkind='embedding'\n[[deployments.targets]]\nsource='/nonexistent'\n",
        )
        .unwrap();
        let registry = Registry::load(&config.deployments);
        let state = &registry.resolve("e").unwrap().state;
        assert_eq!(state.as_str(), "failed");
        assert!(
            state.reason().unwrap().contains("/nonexistent"),
            "{state:?}"
        );
    }
}
