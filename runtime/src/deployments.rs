//! The deployment registry: what clients can name in `model`, resolved by name or alias.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::config::{DeploymentConfig, ModelKind};

/// Whether a deployment can serve requests in this build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum DeploymentState {
    Ready,
    Loading,
    /// Configured, but nothing in this build serves it; the reason says why.
    Unavailable(String),
}

/// One deployment as the server knows it.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub config: DeploymentConfig,
    pub state: DeploymentState,
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
    /// Builds the registry from validated config. Local and upstream serving arrive
    /// with the engine and the proxy; until then a deployment says so in its state.
    pub fn from_config(configs: &[DeploymentConfig]) -> Self {
        let mut registry = Registry::default();
        for config in configs {
            let state = DeploymentState::Unavailable(unserved_reason(config));
            let at = registry.deployments.len();
            for name in std::iter::once(&config.name).chain(&config.aliases) {
                registry.index.insert(name.clone(), at);
            }
            registry.deployments.push(Deployment {
                config: config.clone(),
                state,
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

    pub fn len(&self) -> usize {
        self.deployments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deployments.is_empty()
    }
}

fn unserved_reason(config: &DeploymentConfig) -> String {
    if config.targets.iter().any(|t| t.upstream.is_some()) {
        "this build does not forward to upstream servers yet".to_owned()
    } else {
        format!(
            "this build has no local engine for {} models yet",
            config.kind.as_str()
        )
    }
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
}
