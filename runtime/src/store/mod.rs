//! Persistent state behind one small trait: API keys and usage counters.
//!
//! The server and the CLI only see [`Store`]; sled is one implementation, so a
//! shared store can replace it when Hearth runs on many machines. Writes that a
//! client is told succeeded (key creation, revocation) are durable before the
//! call returns; usage counters and `last_used` are flushed in the background.

mod keys;
mod sled_store;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use keys::{
    KeySecret, ParsedKey, generate_key, parse_key, secret_matches as keys_secret_matches,
};
pub use sled_store::SledStore;

use crate::error::Result;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Call the model endpoints.
    Inference,
    /// Manage keys and read usage.
    Management,
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "inference" => Ok(Scope::Inference),
            "management" => Ok(Scope::Management),
            other => Err(format!(
                "unknown scope `{other}` (expected inference or management)"
            )),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Inference => "inference",
            Scope::Management => "management",
        })
    }
}

/// A key as stored: the secret only as a salted hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// The access id: the public part of `hth_<id>_<secret>`.
    pub id: String,
    pub name: String,
    /// Hex of the random per-key salt.
    pub salt: String,
    /// Hex of SHA-256(salt ‖ secret).
    pub secret_hash: String,
    pub scopes: Vec<Scope>,
    /// Deployments (names or aliases) this key may use; `None` means all.
    pub models: Option<Vec<String>>,
    /// Unix seconds.
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub revoked_at: Option<u64>,
}

/// One row of usage counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageCounters {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Milliseconds of audio transcribed.
    #[serde(default)]
    pub audio_ms: u64,
    /// Characters of text spoken.
    #[serde(default)]
    pub characters: u64,
    /// Images generated or edited.
    #[serde(default)]
    pub images: u64,
}

/// Whose usage a counter row holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "subject_type", content = "subject", rename_all = "lowercase")]
pub enum UsageSubject {
    Key(String),
    Deployment(String),
}

/// The persistent store used by the server and the CLI.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Adds a key; durable when it returns.
    fn insert_key(&self, key: &StoredKey) -> Result<()>;
    /// Looks a key up by access id.
    fn get_key(&self, id: &str) -> Result<Option<StoredKey>>;
    /// All keys, oldest first.
    fn list_keys(&self) -> Result<Vec<StoredKey>>;
    /// Marks a key revoked; durable when it returns. `false` if no such key.
    fn revoke_key(&self, id: &str, at: u64) -> Result<bool>;
    /// Records that a key was used (not flushed synchronously).
    fn touch_key(&self, id: &str, at: u64) -> Result<()>;
    /// When a key was last used.
    fn key_last_used(&self, id: &str) -> Result<Option<u64>>;
    /// Adds to a subject's usage counters (not flushed synchronously).
    fn add_usage(&self, subject: &UsageSubject, delta: UsageCounters) -> Result<()>;
    /// Every usage row.
    fn usage(&self) -> Result<Vec<(UsageSubject, UsageCounters)>>;
    /// Forces everything to disk.
    fn flush(&self) -> Result<()>;
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
