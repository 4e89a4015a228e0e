//! The command line (clap): `serve`, `keys`, `models`, `usage`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Hearth: self-hosted, extensible, OpenAI-compatible model serving.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes: where the config and the data live.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file (TOML). Default: ./hearth.toml if it exists.
    #[arg(long, short = 'c', global = true, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (sled store, runtime files). Beats the config's `data_dir`.
    #[arg(long, global = true, env = "HEARTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Create, list and revoke API keys (works while the server runs).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// List deployments and their state.
    Models,
    /// Show usage per key and per deployment.
    Usage,
    /// List the compute devices this build can run models on.
    Devices,
    /// Write and check Wasm plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Scaffold a buildable Rust plugin crate in ./<name> (or --dir).
    New {
        /// The hook it serves.
        hook: hearth::config::PluginHook,
        /// The crate's name (lower-case letters, digits, dashes).
        name: String,
        /// Where to write it. Default: ./<name>.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Type-check a component against Hearth's worlds and run its admission call.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The plugin's config as a TOML file (the `[plugins.config]` table's contents).
        #[arg(long)]
        plugin_config: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one). Beats the config's `bind`.
    #[arg(long, env = "HEARTH_BIND")]
    pub bind: Option<SocketAddr>,
    /// Require a key on every inference request. Beats the config's `require_auth`.
    #[arg(long, env = "HEARTH_REQUIRE_AUTH")]
    pub require_auth: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (the last stdout line is the key alone; it is never shown again).
    Create {
        /// A label for people.
        #[arg(long)]
        name: String,
        /// Scopes: inference, management (repeat or separate with commas). Default: inference.
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
        /// Deployments the key may use (comma-separated). Default: all.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Lifetime such as 30d or 12h. Default: no expiry.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List keys (masked).
    List,
    /// Revoke a key by its id, effective at once.
    Revoke {
        /// The key's access id (the part after `hth_`).
        id: String,
    },
}

impl Cli {
    /// `serve` logs at info; other commands keep quiet unless something is wrong.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Serve(_) => "info,tower_http=info",
            _ => "warn",
        }
    }
}
