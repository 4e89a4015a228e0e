//! The configuration file (`hearth.toml`), its defaults, overrides and validation.
//!
//! Precedence, lowest first: built-in defaults, the file, `HEARTH_*` environment
//! variables, command-line flags. The CLI resolves the last two (clap reads both)
//! and hands them to [`Config::apply_overrides`]. Relative paths in the file are
//! resolved against the file's own folder, so a config works from any directory.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{HearthError, Result};

/// 32 MiB: OpenAI accepts 25 MB audio uploads, and multipart adds overhead.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port (written to `<data_dir>/server.json`).
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Where sled and the server's runtime files live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Whether every inference request needs a key. Unset: required on non-loopback
    /// binds; on loopback the server is open until the first key exists.
    #[serde(default)]
    pub require_auth: Option<bool>,
    /// The explicit opt-in to serve without keys on a non-loopback address.
    #[serde(default)]
    pub allow_unauthenticated_remote: bool,
    /// Largest request body accepted, in bytes (413 beyond).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// What clients can name in `model`.
    #[serde(default)]
    pub deployments: Vec<DeploymentConfig>,
    /// Wasm plugins named in the config (`[[plugins]]`), in chain order.
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    /// A folder watched for `.wasm` plugins: dropping one in (or replacing it) takes effect
    /// without a restart. Default: `<data_dir>/plugins`.
    #[serde(default)]
    pub plugins_dir: Option<PathBuf>,
    /// Load the default plugins built into the binary (`auth-keys` as the auth hook) when
    /// the config names no plugin for that hook.
    #[serde(default = "default_true")]
    pub default_plugins: bool,
    /// How long an image URL (`response_format: "url"`) serves its file, as a duration
    /// (`"1h"`, `"15m"`); then it is a 404 and the file is deleted. Default one hour.
    #[serde(default)]
    pub image_url_ttl: Option<String>,
    /// The base URL clients reach this server at (`https://ai.example.com`), for the links
    /// in image responses. Default: from the request's `Host` (and `X-Forwarded-Proto`).
    #[serde(default)]
    pub public_url: Option<String>,
    /// After SIGTERM or Ctrl-C, how long requests in flight may take to finish, as a duration
    /// (`"30s"`, `"2m"`, `"0s"`); then they are ended with a `server_shutting_down` error.
    /// Default 30 seconds.
    #[serde(default)]
    pub shutdown_drain: Option<String>,
}

/// Image URLs live an hour unless `image_url_ttl` says otherwise.
pub const DEFAULT_IMAGE_URL_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Requests in flight get half a minute to finish at shutdown unless `shutdown_drain` says
/// otherwise.
pub const DEFAULT_SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

fn default_true() -> bool {
    true
}

/// One `[[plugins]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// `auth`, `preprocess` or `route`.
    pub hook: PluginHook,
    /// The component (`.wasm`), relative to the config file.
    pub path: PathBuf,
    /// Shown in logs and metrics; default: the file name without `.wasm`.
    pub name: Option<String>,
    /// What a failing plugin means for the request (preprocess only may fail open).
    #[serde(default)]
    pub on_error: OnError,
    /// Linear-memory cap in MiB (default 16).
    pub memory_mb: Option<u32>,
    /// Per-call budget in milliseconds (default: auth 20, preprocess 50, route 10).
    pub timeout_ms: Option<u64>,
    /// Calls of this plugin running at once before new ones are refused (default 64).
    pub max_concurrency: Option<u32>,
    /// Handed to the plugin as JSON (`host.config()`).
    #[serde(default)]
    pub config: Option<toml::Table>,
}

/// The request-path hooks a plugin can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PluginHook {
    Auth,
    Preprocess,
    Route,
}

impl PluginHook {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Preprocess => "preprocess",
            Self::Route => "route",
        }
    }
}

/// The failure policy of a plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The request is refused (503 `plugin_unavailable`).
    #[default]
    FailClosed,
    /// The request goes on as if the plugin were not there (preprocess only).
    FailOpen,
}

/// One deployment: a name clients use, and where it runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub kind: ModelKind,
    /// Accept any method on `/model/proxy/{*path}` for this deployment.
    #[serde(default)]
    pub generic_proxy: bool,
    /// Embeddings: cut inputs longer than the model's limit instead of refusing them.
    #[serde(default)]
    pub truncate_inputs: bool,
    /// Most sequences the engine runs in one batch.
    pub max_batch_size: Option<usize>,
    /// Requests that may wait for the engine before new ones get 503.
    pub max_queued_requests: Option<usize>,
    /// Transcription: the longest audio accepted, in seconds (default 3600).
    pub max_audio_seconds: Option<f64>,
    /// Speech: request voice names (OpenAI's `alloy`, … or your own) → the voice's speaker
    /// (name or id). Unmapped OpenAI names speak with the first speaker.
    #[serde(default)]
    pub voices: std::collections::BTreeMap<String, String>,
    /// Images from a diffusers pipeline: the defaults of the request's extension parameters.
    #[serde(default)]
    pub diffusion: DiffusionDefaults,
    pub targets: Vec<TargetConfig>,
}

/// `[deployments.diffusion]`: what a generation or edit uses when the request does not say.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionDefaults {
    /// Denoising steps (default 25; SD-Turbo and LCM pipelines want 1 to 4).
    pub steps: Option<usize>,
    /// Classifier-free guidance (default 7.5; 1 or less turns it off, as SD-Turbo needs).
    pub guidance_scale: Option<f64>,
    /// What the images should not show (default: nothing).
    pub negative_prompt: Option<String>,
    /// `euler`, `euler_a`, `ddim`, `dpm++_2m` or `lcm` (default: the folder's scheduler).
    pub sampler: Option<String>,
    /// Text-encoder layers to skip from the end (default 0).
    pub clip_skip: Option<usize>,
    /// Edits without a mask: how much of the schedule runs (default 0.75).
    pub strength: Option<f64>,
}

/// What a deployment serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Chat,
    Completion,
    Embedding,
    Image,
    Speech,
    Transcription,
    /// A proxied backend that serves whatever its upstream serves.
    Any,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Chat => "chat",
            ModelKind::Completion => "completion",
            ModelKind::Embedding => "embedding",
            ModelKind::Image => "image",
            ModelKind::Speech => "speech",
            ModelKind::Transcription => "transcription",
            ModelKind::Any => "any",
        }
    }
}

/// Where one replica of a deployment runs: a local model source, or an upstream server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Local model: a file or folder (relative to the config file).
    pub source: Option<PathBuf>,
    /// Local device: `auto`, `wgpu` or `cpu`.
    pub device: Option<DeviceChoice>,
    /// Local decoder on the CPU: `quantised` (the default) keeps a GGUF file's blocks and
    /// multiplies them with 8-bit activations as llama.cpp does, and a safetensors
    /// checkpoint's f16/bf16 matrices as stored (f32 activations); `f32` widens every weight
    /// at load (two to eight times the memory, slower).
    pub cpu_weights: Option<CpuWeights>,
    /// Upstream server base URL.
    pub upstream: Option<String>,
    /// Environment variable holding the credential sent upstream.
    pub api_key_env: Option<String>,
    /// Routing weight among the deployment's targets.
    pub weight: Option<u32>,
    /// Upstream: how long to wait for a TCP connection, in milliseconds (default 3000).
    pub connect_timeout_ms: Option<u64>,
    /// Upstream: how long to wait for the response head, in milliseconds (default 120000);
    /// a streamed body may then take as long as it takes.
    pub response_timeout_ms: Option<u64>,
    /// Upstream: the path probed by the health check (default `/health`; any answer below
    /// 500 means the server is up).
    pub health_path: Option<String>,
    /// Upstream: milliseconds between health checks (default 5000).
    pub health_interval_ms: Option<u64>,
    /// Upstream: failed checks or requests in a row that mark the target down (default 3);
    /// one success brings it back.
    pub unhealthy_after: Option<u32>,
    /// `https` upstream: the CAs (PEM) its certificate is verified against, instead of the
    /// system's roots (relative to the config file).
    pub ca_file: Option<PathBuf>,
    /// `https` upstream: the certificate chain (PEM) Hearth presents for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// `https` upstream: the private key (PEM, PKCS#8, PKCS#1 or SEC1) of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// Which compute device a local target asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    Auto,
    Wgpu,
    Cpu,
}

/// How a local decoder keeps its weights on the CPU (other devices compute in f32): a GGUF
/// file's blocks, or a safetensors checkpoint's f16/bf16 matrices (an f32 checkpoint is f32
/// either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuWeights {
    /// The file's own types, on the quantised (or 16-bit float) kernels.
    #[default]
    Quantised,
    /// Dequantised to f32 at load.
    F32,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            data_dir: default_data_dir(),
            require_auth: None,
            allow_unauthenticated_remote: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            deployments: Vec::new(),
            plugins: Vec::new(),
            plugins_dir: None,
            default_plugins: true,
            image_url_ttl: None,
            public_url: None,
            shutdown_drain: None,
        }
    }
}

/// Values from flags or the environment that beat the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub require_auth: Option<bool>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| HearthError::io(format!("cannot read config {}", path.display()), e))?;
        let mut config = Self::parse(&text)
            .map_err(|e| HearthError::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and validates config text; errors name the field (and line).
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        if self.data_dir.is_relative() {
            self.data_dir = base.join(&self.data_dir);
        }
        for target in self
            .deployments
            .iter_mut()
            .flat_map(|d| d.targets.iter_mut())
        {
            let paths = [
                target.source.as_mut(),
                target.ca_file.as_mut(),
                target.client_cert.as_mut(),
                target.client_key.as_mut(),
            ];
            for path in paths.into_iter().flatten().filter(|p| p.is_relative()) {
                *path = base.join(&*path);
            }
        }
        for plugin in &mut self.plugins {
            if plugin.path.is_relative() {
                plugin.path = base.join(&plugin.path);
            }
        }
        if let Some(dir) = self.plugins_dir.as_mut().filter(|d| d.is_relative()) {
            *dir = base.join(&*dir);
        }
    }

    /// The watched plugins folder.
    pub fn plugins_dir(&self) -> PathBuf {
        self.plugins_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }

    pub fn apply_overrides(&mut self, overrides: &Overrides) {
        if let Some(bind) = overrides.bind {
            self.bind = bind;
        }
        if let Some(dir) = &overrides.data_dir {
            self.data_dir = dir.clone();
        }
        if let Some(require) = overrides.require_auth {
            self.require_auth = Some(require);
        }
    }

    /// How long image URLs live.
    pub fn image_url_ttl(&self) -> std::time::Duration {
        self.image_url_ttl
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(DEFAULT_IMAGE_URL_TTL)
    }

    /// How long requests in flight may take after the shutdown signal.
    pub fn shutdown_drain(&self) -> std::time::Duration {
        self.shutdown_drain
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
            .unwrap_or(DEFAULT_SHUTDOWN_DRAIN)
    }

    /// Checks that cross fields agree; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(drain) = &self.shutdown_drain
            && let Err(e) = humantime::parse_duration(drain)
        {
            return Err(format!(
                "shutdown_drain: `{drain}` is not a duration like \"30s\" or \"2m\": {e}"
            ));
        }
        if let Some(ttl) = &self.image_url_ttl {
            match humantime::parse_duration(ttl) {
                Ok(d) if d >= std::time::Duration::from_secs(1) => {}
                Ok(_) => return Err("image_url_ttl: must be at least 1s".into()),
                Err(e) => {
                    return Err(format!(
                        "image_url_ttl: `{ttl}` is not a duration like \"1h\" or \"90s\": {e}"
                    ));
                }
            }
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!("public_url: `{url}` is not an http(s) URL"));
        }
        for (i, plugin) in self.plugins.iter().enumerate() {
            if plugin.on_error == OnError::FailOpen && plugin.hook != PluginHook::Preprocess {
                return Err(format!(
                    "plugins[{i}].on_error: only preprocess plugins may fail open ({} plugins fail closed or fall back)",
                    plugin.hook.as_str()
                ));
            }
            if plugin.memory_mb == Some(0)
                || plugin.timeout_ms == Some(0)
                || plugin.max_concurrency == Some(0)
            {
                return Err(format!(
                    "plugins[{i}]: memory_mb, timeout_ms and max_concurrency must be greater than 0"
                ));
            }
        }
        let auth = self
            .plugins
            .iter()
            .filter(|p| p.hook == PluginHook::Auth)
            .count();
        let route = self
            .plugins
            .iter()
            .filter(|p| p.hook == PluginHook::Route)
            .count();
        if auth > 1 || route > 1 {
            return Err(
                "plugins: at most one auth and one route plugin (preprocess plugins chain)".into(),
            );
        }
        if self.max_body_bytes == 0 {
            return Err("max_body_bytes: must be greater than 0".into());
        }
        let mut names = HashSet::new();
        for (i, dep) in self.deployments.iter().enumerate() {
            let at = format!("deployments[{i}]");
            if dep.name.trim().is_empty() {
                return Err(format!("{at}.name: must not be empty"));
            }
            for name in std::iter::once(&dep.name).chain(&dep.aliases) {
                if name.trim().is_empty() {
                    return Err(format!("{at}.aliases: an alias must not be empty"));
                }
                if !names.insert(name.as_str()) {
                    return Err(format!(
                        "{at}: the name or alias `{name}` is used by more than one deployment"
                    ));
                }
            }
            if dep.targets.is_empty() {
                return Err(format!(
                    "{at}.targets: a deployment needs at least one target"
                ));
            }
            for (j, target) in dep.targets.iter().enumerate() {
                target.validate(&format!("{at}.targets[{j}]"))?;
            }
            if dep.max_batch_size == Some(0) || dep.max_queued_requests == Some(0) {
                return Err(format!(
                    "{at}: max_batch_size and max_queued_requests must be at least 1"
                ));
            }
            if let Some(seconds) = dep.max_audio_seconds
                && !(seconds.is_finite() && seconds > 0.0)
            {
                return Err(format!(
                    "{at}.max_audio_seconds: must be a positive number of seconds"
                ));
            }
            if dep.generic_proxy && dep.targets.iter().any(|t| t.upstream.is_none()) {
                return Err(format!(
                    "{at}.generic_proxy: only upstream targets can be proxied"
                ));
            }
        }
        Ok(())
    }

    /// Whether every inference request must carry a key.
    pub fn auth_required(&self) -> bool {
        self.require_auth.unwrap_or(!self.bind.ip().is_loopback())
    }

    /// Refuses an open server on a non-loopback address unless explicitly allowed.
    pub fn check_bind_policy(&self) -> Result<()> {
        if !self.auth_required()
            && !self.bind.ip().is_loopback()
            && !self.allow_unauthenticated_remote
        {
            return Err(HearthError::Config(format!(
                "require_auth: refusing to serve without authentication on non-loopback address {}; \
                 set `require_auth = true`, bind to 127.0.0.1, or set `allow_unauthenticated_remote = true`",
                self.bind
            )));
        }
        Ok(())
    }
}

impl TargetConfig {
    fn validate(&self, at: &str) -> Result<(), String> {
        match (&self.source, &self.upstream) {
            (Some(_), Some(_)) => {
                return Err(format!("{at}: set either `source` or `upstream`, not both"));
            }
            (None, None) => {
                return Err(format!(
                    "{at}: set `source` (a local model) or `upstream` (a URL)"
                ));
            }
            (None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!("{at}.upstream: `{url}` is not an http(s) URL"));
                }
                if self.device.is_some() {
                    return Err(format!("{at}.device: only local targets have a device"));
                }
                let tls = self.ca_file.is_some()
                    || self.client_cert.is_some()
                    || self.client_key.is_some();
                if tls && !url.starts_with("https://") {
                    return Err(format!(
                        "{at}: ca_file, client_cert and client_key are for https:// upstreams"
                    ));
                }
                if self.client_cert.is_some() != self.client_key.is_some() {
                    return Err(format!("{at}: client_cert and client_key go together"));
                }
            }
            (Some(_), None) => {
                if self.api_key_env.is_some() {
                    return Err(format!(
                        "{at}.api_key_env: only upstream targets take a credential"
                    ));
                }
            }
        }
        if self.weight == Some(0) {
            return Err(format!("{at}.weight: must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_open_until_keys() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert!(!config.auth_required());
        config.check_bind_policy().unwrap();
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Config::parse("bnid = \"0.0.0.0:1\"").unwrap_err();
        assert!(err.contains("bnid"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::parse("require_auth = \"yes\"").unwrap_err();
        assert!(err.contains("require_auth"), "{err}");
    }

    #[test]
    fn target_needs_exactly_one_place() {
        let text =
            "[[deployments]]\nname='a'\nkind='chat'\n[[deployments.targets]]\ndevice='cpu'\n";
        let err = Config::parse(text).unwrap_err();
        assert!(err.contains("deployments[0].targets[0]"), "{err}");
    }

    #[test]
    fn cpu_weights_default_to_quantised() {
        let local = |extra: &str| {
            format!(
                "[[deployments]]\nname='a'\nkind='chat'\n[[deployments.targets]]\nsource='m.gguf'\n{extra}"
            )
        };
        let config = Config::parse(&local("")).unwrap();
        let target = &config.deployments[0].targets[0];
        assert_eq!(
            target.cpu_weights.unwrap_or_default(),
            CpuWeights::Quantised
        );
        let config = Config::parse(&local("cpu_weights='f32'")).unwrap();
        assert_eq!(
            config.deployments[0].targets[0].cpu_weights,
            Some(CpuWeights::F32)
        );
        let err = Config::parse(&local("cpu_weights='q4'")).unwrap_err();
        assert!(err.contains("cpu_weights"), "{err}");
    }

    #[test]
    fn duplicate_alias_is_rejected() {
        let text = "[[deployments]]\nname='a'\nkind='chat'\n[[deployments.targets]]\nsource='x'\n\
                    [[deployments]]\nname='b'\naliases=['a']\nkind='chat'\n[[deployments.targets]]\nsource='y'\n";
        let err = Config::parse(text).unwrap_err();
        assert!(err.contains("`a`"), "{err}");
    }

    #[test]
    fn open_remote_bind_is_refused_unless_explicit() {
        let mut config = Config::parse("bind = '0.0.0.0:8080'\nrequire_auth = false").unwrap();
        assert!(config.check_bind_policy().is_err());
        config.allow_unauthenticated_remote = true;
        config.check_bind_policy().unwrap();
        let remote = Config::parse("bind = '0.0.0.0:8080'").unwrap();
        assert!(remote.auth_required());
    }

    #[test]
    fn tls_files_belong_to_https_upstreams_and_follow_the_config_file() {
        let target = |fields: &str| {
            format!("[[deployments]]\nname='a'\nkind='any'\n[[deployments.targets]]\n{fields}\n")
        };
        let err = Config::parse(&target("upstream='http://x'\nca_file='ca.pem'")).unwrap_err();
        assert!(err.contains("https://"), "{err}");
        let err = Config::parse(&target("upstream='https://x'\nclient_cert='c.pem'")).unwrap_err();
        assert!(err.contains("client_key"), "{err}");
        let mut config = Config::parse(&target(
            "upstream='https://x'\nca_file='ca.pem'\nclient_cert='c.pem'\nclient_key='/k.pem'",
        ))
        .unwrap();
        config.resolve_paths(Path::new("/etc/hearth"));
        let target = &config.deployments[0].targets[0];
        assert_eq!(
            target.ca_file.as_deref(),
            Some(Path::new("/etc/hearth/ca.pem"))
        );
        assert_eq!(
            target.client_cert.as_deref(),
            Some(Path::new("/etc/hearth/c.pem"))
        );
        assert_eq!(target.client_key.as_deref(), Some(Path::new("/k.pem")));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let mut config = Config::parse(
            "data_dir='d'\n[[deployments]]\nname='a'\nkind='embedding'\n[[deployments.targets]]\nsource='m'\n",
        )
        .unwrap();
        config.resolve_paths(Path::new("/etc/hearth"));
        assert_eq!(config.data_dir, Path::new("/etc/hearth/d"));
        assert_eq!(
            config.deployments[0].targets[0].source.as_deref(),
            Some(Path::new("/etc/hearth/m"))
        );
    }
}
