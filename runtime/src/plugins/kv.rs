//! The per-plugin key-value store behind `host.kv-*`: in memory, shared by every call of one
//! plugin (and its reloads), with TTLs and an atomic increment for rate limits and budgets.
//! Bounded: past `max_entries` the expired entries are dropped, then the soonest-expiring.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// One plugin's store.
#[derive(Debug)]
pub struct KvStore {
    entries: Mutex<HashMap<String, Entry>>,
    max_entries: usize,
    max_value_bytes: usize,
}

impl KvStore {
    pub fn new(max_entries: usize, max_value_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_entries,
            max_value_bytes,
        }
    }

    /// A panic elsewhere while holding the lock leaves the map consistent (every write is
    /// one insert or remove), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        let entries = self.lock();
        entries
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.clone())
    }

    /// Stores `value`; a value over the size cap is refused (returns false).
    pub fn set(&self, key: &str, value: Vec<u8>, ttl_ms: Option<u64>) -> bool {
        if value.len() > self.max_value_bytes {
            return false;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        self.make_room(&mut entries, now, key);
        entries.insert(
            key.to_owned(),
            Entry {
                value,
                expires: ttl_ms.map(|ms| now + Duration::from_millis(ms)),
            },
        );
        true
    }

    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Adds `delta` to the little-endian i64 under `key` (absent, expired or not 8 bytes: 0),
    /// saturating; a new entry gets `ttl_ms`, an existing one keeps its expiry.
    pub fn incr(&self, key: &str, delta: i64, ttl_ms: Option<u64>) -> i64 {
        let now = Instant::now();
        let mut entries = self.lock();
        let current = entries.get(key).filter(|e| e.live(now)).map(|e| {
            let value = <[u8; 8]>::try_from(e.value.as_slice()).map_or(0, i64::from_le_bytes);
            (value, e.expires)
        });
        let (value, expires) = match current {
            Some((value, expires)) => (value.saturating_add(delta), expires),
            None => {
                self.make_room(&mut entries, now, key);
                (delta, ttl_ms.map(|ms| now + Duration::from_millis(ms)))
            }
        };
        entries.insert(
            key.to_owned(),
            Entry {
                value: value.to_le_bytes().to_vec(),
                expires,
            },
        );
        value
    }

    fn make_room(&self, entries: &mut HashMap<String, Entry>, now: Instant, key: &str) {
        if entries.len() < self.max_entries || entries.contains_key(key) {
            return;
        }
        entries.retain(|_, e| e.live(now));
        while entries.len() >= self.max_entries {
            let victim = entries
                .iter()
                .min_by_key(|(_, e)| {
                    e.expires
                        .unwrap_or(now + Duration::from_secs(u64::from(u32::MAX)))
                })
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    entries.remove(&k);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incr_is_atomic_counting_and_keeps_the_first_ttl() {
        let kv = KvStore::new(16, 64);
        assert_eq!(kv.incr("a", 2, Some(60_000)), 2);
        assert_eq!(kv.incr("a", 3, Some(1)), 5);
        assert_eq!(kv.get("a"), Some(5i64.to_le_bytes().to_vec()));
        assert_eq!(kv.incr("a", i64::MAX, None), i64::MAX);
    }

    #[test]
    fn entries_expire_and_the_store_stays_bounded() {
        let kv = KvStore::new(2, 4);
        assert!(kv.set("x", vec![1], Some(0)));
        assert_eq!(kv.get("x"), None);
        assert!(!kv.set("big", vec![0; 5], None));
        kv.set("a", vec![1], None);
        kv.set("b", vec![2], Some(60_000));
        kv.set("c", vec![3], None);
        let live = ["a", "b", "c"]
            .iter()
            .filter(|k| kv.get(k).is_some())
            .count();
        assert_eq!(live, 2);
        assert_eq!(kv.get("c"), Some(vec![3]));
        kv.delete("c");
        assert_eq!(kv.get("c"), None);
    }
}
