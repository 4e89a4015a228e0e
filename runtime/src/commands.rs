//! What each CLI command does. Key and usage commands open the store directly
//! when no server runs, and go through the running server's management API (with
//! the local admin token from its data dir) when one does, because sled admits
//! one process per database. Each says on stderr which path it took.

#![allow(clippy::print_stdout, reason = "stdout is the CLI's interface")]

use std::path::Path;

use anyhow::{Context, Result, bail};
use hearth::config::{Config, Overrides};
use hearth::deployments::Registry;
use hearth::management::{self, CreateKeyRequest, CreatedKey, KeyInfo, List, RevokedKey, UsageRow};
use hearth::runtime_files;
use hearth::store::{Scope, SledStore, UsageSubject};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cli::{Cli, Command, KeysCommand, PluginCommand};

pub fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut config = load_config(cli.global.config.as_deref())?;
    let mut overrides = Overrides {
        data_dir: cli.global.data_dir.clone(),
        ..Default::default()
    };
    if let Command::Serve(args) = &cli.command {
        overrides.bind = args.bind;
        overrides.require_auth = args.require_auth;
    }
    config.apply_overrides(&overrides);
    match cli.command {
        Command::Serve(_) => runtime
            .block_on(hearth::server::serve(config))
            .map_err(Into::into),
        Command::Keys(command) => runtime.block_on(keys(&config.data_dir, command)),
        Command::Models => runtime.block_on(models(&config)),
        Command::Usage => runtime.block_on(usage(&config.data_dir)),
        Command::Plugin(command) => plugin(command),
        Command::Devices => {
            println!("{:<8} {:<15} {:<5} NOTE", "DEVICE", "KIND", "AUTO");
            for device in hearth::engine::list_devices() {
                let auto = if device.auto { "yes" } else { "" };
                println!(
                    "{:<8} {:<15} {:<5} {}",
                    device.name, device.kind, auto, device.note
                );
            }
            Ok(())
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None if Path::new("hearth.toml").exists() => Ok(Config::load(Path::new("hearth.toml"))?),
        None => Ok(Config::default()),
    }
}

/// Where key and usage commands are carried out.
enum Target {
    Server {
        base: String,
        token: String,
        client: reqwest::Client,
    },
    Local(SledStore),
}

async fn target(data_dir: &Path) -> Result<Target> {
    if let Some((info, token)) = runtime_files::discover(data_dir) {
        let base = format!("http://{}", info.addr);
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let alive = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if alive {
            eprintln!("(via the running server at {base}, pid {})", info.pid);
            return Ok(Target::Server {
                base,
                token,
                client,
            });
        }
        eprintln!(
            "(a server left {} behind but does not answer; opening the store directly)",
            data_dir.display()
        );
    }
    let store = SledStore::open(data_dir)
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    eprintln!("(store in {})", data_dir.display());
    Ok(Target::Local(store))
}

impl Target {
    /// Runs one command: over HTTP on a running server, else with `local` on the store.
    async fn run<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
        local: impl FnOnce(&SledStore) -> hearth::Result<T>,
    ) -> Result<T> {
        match self {
            Target::Server {
                base,
                token,
                client,
            } => call(base, token, client, method, path, body).await,
            Target::Local(store) => Ok(local(store)?),
        }
    }
}

async fn call<T: DeserializeOwned>(
    base: &str,
    token: &str,
    client: &reqwest::Client,
    method: reqwest::Method,
    path: &str,
    body: Option<&impl Serialize>,
) -> Result<T> {
    let mut request = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {base}"))?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        let message = serde_json::from_str::<hearth::error::ErrorEnvelope>(&text)
            .map(|e| e.error.message)
            .unwrap_or(text);
        bail!("the server answered {status}: {message}");
    }
    serde_json::from_str(&text)
        .with_context(|| format!("unexpected answer from the server: {text}"))
}

async fn keys(data_dir: &Path, command: KeysCommand) -> Result<()> {
    let target = target(data_dir).await?;
    match command {
        KeysCommand::Create {
            name,
            scope,
            models,
            expires_in,
        } => {
            let scopes = scope
                .iter()
                .map(|s| s.trim().parse::<Scope>().map_err(anyhow::Error::msg))
                .collect::<Result<Vec<_>>>()?;
            let request = CreateKeyRequest {
                name,
                scopes: (!scopes.is_empty()).then_some(scopes),
                models: (!models.is_empty()).then_some(models),
                expires_in,
            };
            let created: CreatedKey = target
                .run(reqwest::Method::POST, "/v1/keys", Some(&request), |store| {
                    management::create_key(store, request.clone())
                })
                .await?;
            let info = &created.info;
            println!("Created key {} ({})", info.id, info.name);
            println!("  scopes:  {}", join(&info.scopes));
            println!(
                "  models:  {}",
                info.models
                    .as_ref()
                    .map_or("all".to_owned(), |m| m.join(", "))
            );
            println!(
                "  expires: {}",
                info.expires_at.map_or("never".to_owned(), format_time)
            );
            println!("Store it now; it cannot be shown again:");
            println!("{}", created.key);
        }
        KeysCommand::List => {
            let list: List<KeyInfo> = target
                .run(reqwest::Method::GET, "/v1/keys", None::<&()>, |store| {
                    management::list_keys(store)
                })
                .await?;
            print_keys(&list.data);
        }
        KeysCommand::Revoke { id } => {
            let path = format!("/v1/keys/{id}");
            let revoked: RevokedKey = target
                .run(reqwest::Method::DELETE, &path, None::<&()>, |store| {
                    management::revoke_key(store, &id)
                })
                .await?;
            println!("Revoked key {}", revoked.id);
        }
    }
    Ok(())
}

async fn usage(data_dir: &Path) -> Result<()> {
    let rows: List<UsageRow> = target(data_dir)
        .await?
        .run(reqwest::Method::GET, "/v1/usage", None::<&()>, |store| {
            management::usage(store)
        })
        .await?;
    println!(
        "{:<12} {:<28} {:>10} {:>14} {:>18} {:>14} {:>11} {:>7}",
        "TYPE",
        "SUBJECT",
        "REQUESTS",
        "PROMPT_TOKENS",
        "COMPLETION_TOKENS",
        "AUDIO_SECONDS",
        "CHARACTERS",
        "IMAGES"
    );
    for row in rows.data {
        let (kind, subject) = match row.subject {
            UsageSubject::Key(id) => ("key", id),
            UsageSubject::Deployment(name) => ("deployment", name),
        };
        let c = row.counters;
        println!(
            "{kind:<12} {subject:<28} {:>10} {:>14} {:>18} {:>14.1} {:>11} {:>7}",
            c.requests,
            c.prompt_tokens,
            c.completion_tokens,
            c.audio_ms as f64 / 1000.0,
            c.characters,
            c.images
        );
    }
    Ok(())
}

async fn models(config: &Config) -> Result<()> {
    println!(
        "{:<24} {:<14} {:<12} {:<24} TARGETS",
        "NAME", "KIND", "STATE", "ALIASES"
    );
    if let Some((info, token)) = runtime_files::discover(&config.data_dir) {
        let base = format!("http://{}", info.addr);
        let client = reqwest::Client::new();
        let answer: Result<List<serde_json::Value>> = call(
            &base,
            &token,
            &client,
            reqwest::Method::GET,
            "/v1/models",
            None::<&()>,
        )
        .await;
        if let Ok(list) = answer {
            eprintln!("(as reported by the running server at {base})");
            let registry = Registry::from_config(&config.deployments);
            // Live upstream health from /readyz (it needs no credential).
            let ready: serde_json::Value = match client.get(format!("{base}/readyz")).send().await {
                Ok(response) => response.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            let live_targets = |name: &str| {
                ready["deployments"][name]["targets"]
                    .as_array()
                    .map(|targets| {
                        targets
                            .iter()
                            .map(|t| {
                                let health = if t["healthy"].as_bool() == Some(true) {
                                    "up"
                                } else {
                                    "down"
                                };
                                format!(
                                    "upstream:{} ({health}, {} in flight)",
                                    t["url"].as_str().unwrap_or("?"),
                                    t["in_flight"]
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
            };
            for model in list.data.iter().filter(|m| m.get("alias_of").is_none()) {
                let field = |k: &str| {
                    model
                        .get(k)
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_owned()
                };
                let name = field("id");
                let targets = live_targets(&name).unwrap_or_else(|| {
                    registry
                        .resolve(&name)
                        .map(|d| d.targets_summary())
                        .unwrap_or_default()
                });
                let aliases: Vec<&str> = model
                    .get("aliases")
                    .and_then(|a| a.as_array())
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                let aliases = aliases.join(",");
                println!(
                    "{name:<24} {:<14} {:<12} {aliases:<24} {targets}",
                    field("kind"),
                    field("state")
                );
            }
            return Ok(());
        }
    }
    eprintln!("(no running server found; showing the configuration)");
    for deployment in Registry::from_config(&config.deployments).iter() {
        let state = deployment.state.as_str();
        println!(
            "{:<24} {:<14} {:<12} {:<24} {}",
            deployment.name(),
            deployment.kind().as_str(),
            state,
            deployment.config.aliases.join(","),
            deployment.targets_summary()
        );
    }
    Ok(())
}

fn print_keys(keys: &[KeyInfo]) {
    println!(
        "{:<12} {:<20} {:<32} {:<9} {:<22} {:<20} {:<20} LAST_USED",
        "ID", "NAME", "KEY", "STATUS", "SCOPES", "MODELS", "EXPIRES"
    );
    for k in keys {
        println!(
            "{:<12} {:<20} {:<32} {:<9} {:<22} {:<20} {:<20} {}",
            k.id,
            k.name,
            k.masked_key,
            k.status,
            join(&k.scopes),
            k.models.as_ref().map_or("all".to_owned(), |m| m.join(",")),
            k.expires_at.map_or("never".to_owned(), format_time),
            k.last_used_at.map_or("never".to_owned(), format_time),
        );
    }
}

fn join(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn format_time(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
        .to_string()
}

fn plugin(command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::New { hook, name, dir } => {
            let dir = dir.unwrap_or_else(|| name.clone().into());
            hearth::plugins::authoring::scaffold(hook, &name, &dir)?;
            println!("created {} ({} plugin)", dir.display(), hook.as_str());
            println!("build:   cd {} && cargo build --release", dir.display());
            println!(
                "check:   hearth plugin check {}/target/wasm32-wasip2/release/{}.wasm",
                dir.display(),
                name.replace('-', "_")
            );
            println!(
                "install: copy the .wasm into the server's plugins folder (<data_dir>/plugins)"
            );
            Ok(())
        }
        PluginCommand::Check {
            file,
            plugin_config,
        } => {
            let config_json = match plugin_config {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let table: toml::Table = toml::from_str(&text)
                        .with_context(|| format!("parsing {}", path.display()))?;
                    serde_json::to_string(&table)?
                }
                None => "{}".to_owned(),
            };
            let report = hearth::plugins::authoring::check(&file, &config_json)?;
            println!(
                "ok: {} is a {} plugin (hearth:plugin@0.1.0); admission passed; sha256 {}; {} ms",
                file.display(),
                report.hook.as_str(),
                report.digest,
                report.compile_ms
            );
            Ok(())
        }
    }
}
