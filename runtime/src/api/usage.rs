//! Recording what a model request used: per deployment and per key in the
//! store (`hearth usage`), and per deployment in `/metrics`.

use super::AppState;
use crate::auth::Identity;
use crate::store::{UsageCounters, UsageSubject};

/// Where one request's usage is recorded, carried into a stream's task.
#[derive(Debug, Clone)]
pub struct UsageSink {
    state: AppState,
    identity: Identity,
    deployment: String,
}

impl UsageSink {
    pub fn new(state: &AppState, identity: &Identity, deployment: &str) -> Self {
        Self {
            state: state.clone(),
            identity: identity.clone(),
            deployment: deployment.to_owned(),
        }
    }

    pub fn record(&self, prompt_tokens: u64, completion_tokens: u64) {
        record_usage(
            &self.state,
            &self.identity,
            &self.deployment,
            UsageCounters {
                requests: 0,
                prompt_tokens,
                completion_tokens,
                ..UsageCounters::default()
            },
        );
    }

    /// A transcription: `seconds` of audio and the tokens of its text.
    pub fn record_audio(&self, seconds: f64, completion_tokens: u64) {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "positive, far below 2^64 ms"
        )]
        let audio_ms = (seconds * 1000.0).round() as u64;
        metrics::counter!("hearth_usage_audio_milliseconds_total", "deployment" => self.deployment.clone())
            .increment(audio_ms);
        record_usage(
            &self.state,
            &self.identity,
            &self.deployment,
            UsageCounters {
                requests: 0,
                prompt_tokens: 0,
                completion_tokens,
                audio_ms,
                ..UsageCounters::default()
            },
        );
    }

    /// A speech request: `characters` of input spoken as `seconds` of audio.
    pub fn record_speech(&self, characters: u64, seconds: f64) {
        metrics::counter!("hearth_usage_characters_total", "deployment" => self.deployment.clone())
            .increment(characters);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "positive, far below 2^64 ms"
        )]
        let audio_ms = (seconds * 1000.0).round() as u64;
        metrics::counter!("hearth_usage_speech_milliseconds_total", "deployment" => self.deployment.clone())
            .increment(audio_ms);
        record_usage(
            &self.state,
            &self.identity,
            &self.deployment,
            UsageCounters {
                characters,
                ..UsageCounters::default()
            },
        );
    }
}

impl UsageSink {
    /// An image request that made `images` images.
    pub fn record_images(&self, images: u64) {
        metrics::counter!("hearth_usage_images_total", "deployment" => self.deployment.clone())
            .increment(images);
        record_usage(
            &self.state,
            &self.identity,
            &self.deployment,
            UsageCounters {
                images,
                ..UsageCounters::default()
            },
        );
    }
}

/// Adds one request and its tokens. The key's request was already counted by the
/// auth layer, so only its tokens are added here.
fn record_usage(state: &AppState, identity: &Identity, deployment: &str, tokens: UsageCounters) {
    let UsageCounters {
        prompt_tokens,
        completion_tokens,
        ..
    } = tokens;
    let label = deployment.to_owned();
    metrics::counter!("hearth_usage_requests_total", "deployment" => label.clone()).increment(1);
    metrics::counter!("hearth_usage_prompt_tokens_total", "deployment" => label.clone())
        .increment(prompt_tokens);
    metrics::counter!("hearth_usage_completion_tokens_total", "deployment" => label)
        .increment(completion_tokens);
    let mut result = state.store.add_usage(
        &UsageSubject::Deployment(deployment.to_owned()),
        UsageCounters {
            requests: 1,
            ..tokens
        },
    );
    if let Some(id) = identity.key_id() {
        result = result.and(
            state
                .store
                .add_usage(&UsageSubject::Key(id.to_owned()), tokens),
        );
    }
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not record usage");
    }
}
