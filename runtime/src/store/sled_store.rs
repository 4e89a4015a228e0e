//! The sled implementation of [`Store`].
//!
//! Trees: `keys` (access id → JSON), `key_last_used` (access id → u64 BE),
//! `usage` (`key:<id>` / `deployment:<name>` → three u64 LE counters).

use std::path::Path;

use super::{Store, StoredKey, UsageCounters, UsageSubject};
use crate::error::{HearthError, Result};

/// sled under the data directory.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    keys: sled::Tree,
    last_used: sled::Tree,
    usage: sled::Tree,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`. Fails with a clear message when
    /// another process holds it: sled admits one process per database.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| HearthError::io(format!("cannot create data dir {}", dir.display()), e))?;
        let path = dir.join("db");
        let db = sled::Config::new()
            .path(&path)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => HearthError::Unavailable(
                    format!("the database {} is in use by another process (is `hearth serve` running with this data dir?)", path.display()),
                ),
                other => HearthError::Store(other),
            })?;
        Ok(Self {
            keys: db.open_tree("keys")?,
            last_used: db.open_tree("key_last_used")?,
            usage: db.open_tree("usage")?,
            db,
        })
    }

    fn durable(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

fn decode_key(bytes: &[u8]) -> Result<StoredKey> {
    serde_json::from_slice(bytes)
        .map_err(|e| HearthError::Internal(format!("corrupt key record: {e}")))
}

fn usage_key(subject: &UsageSubject) -> String {
    match subject {
        UsageSubject::Key(id) => format!("key:{id}"),
        UsageSubject::Deployment(name) => format!("deployment:{name}"),
    }
}

fn decode_counters(bytes: &[u8]) -> UsageCounters {
    let word = |i: usize| {
        bytes
            .get(i * 8..i * 8 + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    UsageCounters {
        requests: word(0),
        prompt_tokens: word(1),
        completion_tokens: word(2),
        // Rows written before audio (characters, images) were counted have fewer words.
        audio_ms: word(3),
        characters: word(4),
        images: word(5),
    }
}

fn encode_counters(c: UsageCounters) -> Vec<u8> {
    [
        c.requests,
        c.prompt_tokens,
        c.completion_tokens,
        c.audio_ms,
        c.characters,
        c.images,
    ]
    .iter()
    .flat_map(|w| w.to_le_bytes())
    .collect()
}

impl Store for SledStore {
    fn insert_key(&self, key: &StoredKey) -> Result<()> {
        let bytes = serde_json::to_vec(key).map_err(|e| HearthError::Internal(e.to_string()))?;
        let previous =
            self.keys
                .compare_and_swap(key.id.as_bytes(), None as Option<&[u8]>, Some(bytes))?;
        if previous.is_err() {
            return Err(HearthError::Internal(format!(
                "access id {} already exists",
                key.id
            )));
        }
        self.durable()
    }

    fn get_key(&self, id: &str) -> Result<Option<StoredKey>> {
        self.keys
            .get(id.as_bytes())?
            .map(|v| decode_key(&v))
            .transpose()
    }

    fn list_keys(&self) -> Result<Vec<StoredKey>> {
        let mut keys = self
            .keys
            .iter()
            .values()
            .map(|v| decode_key(&v?))
            .collect::<Result<Vec<_>>>()?;
        keys.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(keys)
    }

    fn revoke_key(&self, id: &str, at: u64) -> Result<bool> {
        let mut found = false;
        let mut failure = None;
        self.keys.fetch_and_update(id.as_bytes(), |old| {
            let old = old?;
            found = true;
            match decode_key(old) {
                Ok(mut key) => {
                    key.revoked_at.get_or_insert(at);
                    serde_json::to_vec(&key).ok()
                }
                Err(e) => {
                    failure = Some(e);
                    Some(old.to_vec())
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if found {
            self.durable()?;
        }
        Ok(found)
    }

    fn touch_key(&self, id: &str, at: u64) -> Result<()> {
        self.last_used.insert(id.as_bytes(), &at.to_be_bytes())?;
        Ok(())
    }

    fn key_last_used(&self, id: &str) -> Result<Option<u64>> {
        Ok(self
            .last_used
            .get(id.as_bytes())?
            .and_then(|v| v.as_ref().try_into().ok())
            .map(u64::from_be_bytes))
    }

    fn add_usage(&self, subject: &UsageSubject, delta: UsageCounters) -> Result<()> {
        self.usage
            .update_and_fetch(usage_key(subject).as_bytes(), |old| {
                let c = old.map(decode_counters).unwrap_or_default();
                Some(encode_counters(UsageCounters {
                    requests: c.requests + delta.requests,
                    prompt_tokens: c.prompt_tokens + delta.prompt_tokens,
                    completion_tokens: c.completion_tokens + delta.completion_tokens,
                    audio_ms: c.audio_ms + delta.audio_ms,
                    characters: c.characters + delta.characters,
                    images: c.images + delta.images,
                }))
            })?;
        Ok(())
    }

    fn usage(&self) -> Result<Vec<(UsageSubject, UsageCounters)>> {
        let mut rows = Vec::new();
        for item in self.usage.iter() {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k);
            let subject = match key.split_once(':') {
                Some(("key", id)) => UsageSubject::Key(id.to_owned()),
                Some(("deployment", name)) => UsageSubject::Deployment(name.to_owned()),
                _ => continue,
            };
            rows.push((subject, decode_counters(&v)));
        }
        Ok(rows)
    }

    fn flush(&self) -> Result<()> {
        self.durable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Scope, generate_key};

    fn sample_key(name: &str) -> StoredKey {
        let k = generate_key();
        StoredKey {
            id: k.id,
            name: name.into(),
            salt: k.salt,
            secret_hash: k.secret_hash,
            scopes: vec![Scope::Inference],
            models: None,
            created_at: 1,
            expires_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn keys_round_trip_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let key = sample_key("a");
        store.insert_key(&key).unwrap();
        assert!(
            store.insert_key(&key).is_err(),
            "duplicate id must not overwrite"
        );
        assert_eq!(store.get_key(&key.id).unwrap().as_ref(), Some(&key));
        assert!(store.revoke_key(&key.id, 7).unwrap());
        assert_eq!(store.get_key(&key.id).unwrap().unwrap().revoked_at, Some(7));
        assert!(!store.revoke_key("missing", 7).unwrap());
        assert_eq!(store.list_keys().unwrap().len(), 1);
    }

    #[test]
    fn usage_accumulates_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let subject = UsageSubject::Deployment("m".into());
            let one = UsageCounters {
                requests: 1,
                prompt_tokens: 3,
                completion_tokens: 5,
                audio_ms: 1500,
                characters: 42,
                images: 7,
            };
            store.add_usage(&subject, one).unwrap();
            store.add_usage(&subject, one).unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let rows = store.usage().unwrap();
        assert_eq!(
            rows,
            vec![(
                UsageSubject::Deployment("m".into()),
                UsageCounters {
                    requests: 2,
                    prompt_tokens: 6,
                    completion_tokens: 10,
                    audio_ms: 3000,
                    characters: 84,
                    images: 14,
                }
            )]
        );
    }
}
