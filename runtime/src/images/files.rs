//! The files behind image URLs: each result saved under `<data_dir>/images` with an
//! unguessable name (256 random bits) and its expiry in the file name, so expiry survives a
//! restart. A file is served until it expires, then it is a 404 and deleted (on the next
//! request for it, or by the sweeper that [`ImageFiles::spawn_sweeper`] starts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;

use super::OutputFormat;
use crate::error::{HearthError, Result};

#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    expires: SystemTime,
    format: OutputFormat,
}

/// A served image file.
#[derive(Debug)]
pub struct ServedImage {
    pub bytes: Vec<u8>,
    pub format: OutputFormat,
    /// Time left before it expires.
    pub remaining: Duration,
}

/// The expiring image files of one data dir.
#[derive(Debug)]
pub struct ImageFiles {
    dir: PathBuf,
    ttl: Duration,
    index: Mutex<HashMap<String, Entry>>,
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `<expires>-<token>.<ext>` → (token.ext, expiry, format).
fn parse_name(name: &str) -> Option<(String, SystemTime, OutputFormat)> {
    let (expires, rest) = name.split_once('-')?;
    let (token, extension) = rest.rsplit_once('.')?;
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let format = OutputFormat::from_extension(extension)?;
    let expires = UNIX_EPOCH + Duration::from_secs(expires.parse().ok()?);
    Some((rest.to_owned(), expires, format))
}

impl ImageFiles {
    /// Opens (creating) `dir`, indexing the files a previous run left and deleting the
    /// expired ones.
    pub fn open(dir: &Path, ttl: Duration) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| HearthError::io(format!("cannot create {}", dir.display()), e))?;
        let files = Self {
            dir: dir.to_path_buf(),
            ttl,
            index: Mutex::new(HashMap::new()),
        };
        let entries = std::fs::read_dir(dir)
            .map_err(|e| HearthError::io(format!("cannot read {}", dir.display()), e))?;
        let now = SystemTime::now();
        let mut index = files.index.lock().expect("image index lock");
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            match parse_name(&name) {
                Some((key, expires, _)) if expires <= now => {
                    let _ = std::fs::remove_file(&path);
                    tracing::debug!(file = %key, "expired image removed at start");
                }
                Some((key, expires, format)) => {
                    index.insert(
                        key,
                        Entry {
                            path,
                            expires,
                            format,
                        },
                    );
                }
                // A write cut short by a crash.
                None if name.ends_with(".partial") => {
                    let _ = std::fs::remove_file(&path);
                }
                None => {}
            }
        }
        drop(index);
        Ok(files)
    }

    /// How long a saved file is served.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Saves `bytes`; returns the name to serve it under (`<token>.<ext>`).
    pub fn save(&self, bytes: &[u8], format: OutputFormat) -> Result<String> {
        let mut token = [0u8; 32];
        rand::rng().fill_bytes(&mut token);
        let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
        let key = format!("{token}.{}", format.extension());
        let expires = SystemTime::now() + self.ttl;
        let path = self.dir.join(format!("{}-{key}", unix(expires)));
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes)
            .and_then(|()| std::fs::rename(&partial, &path))
            .map_err(|e| HearthError::io(format!("cannot save {}", path.display()), e))?;
        self.index.lock().expect("image index lock").insert(
            key.clone(),
            Entry {
                path,
                expires,
                format,
            },
        );
        Ok(key)
    }

    /// The file served as `key`, unless it is unknown or expired (then deleted).
    pub fn get(&self, key: &str) -> Option<ServedImage> {
        let entry = self
            .index
            .lock()
            .expect("image index lock")
            .get(key)
            .cloned()?;
        let Some(remaining) = entry
            .expires
            .duration_since(SystemTime::now())
            .ok()
            .filter(|left| !left.is_zero())
        else {
            self.remove(key);
            return None;
        };
        match std::fs::read(&entry.path) {
            Ok(bytes) => Some(ServedImage {
                bytes,
                format: entry.format,
                remaining,
            }),
            Err(e) => {
                tracing::warn!(file = %entry.path.display(), error = %e, "image file unreadable");
                self.remove(key);
                None
            }
        }
    }

    fn remove(&self, key: &str) {
        if let Some(entry) = self.index.lock().expect("image index lock").remove(key) {
            let _ = std::fs::remove_file(&entry.path);
        }
    }

    /// Deletes every expired file; returns how many.
    pub fn sweep(&self) -> usize {
        let now = SystemTime::now();
        let expired: Vec<String> = self
            .index
            .lock()
            .expect("image index lock")
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            self.remove(key);
        }
        if !expired.is_empty() {
            tracing::debug!(count = expired.len(), "expired images removed");
        }
        expired.len()
    }

    /// Sweeps every `min(ttl, 1 min)` on the current tokio runtime.
    pub fn spawn_sweeper(self: &std::sync::Arc<Self>) {
        let files = std::sync::Arc::downgrade(self);
        let every = self.ttl.min(Duration::from_secs(60));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let Some(files) = files.upgrade() else { break };
                tokio::task::spawn_blocking(move || files.sweep())
                    .await
                    .ok();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_served_until_they_expire_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let files = ImageFiles::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let key = files.save(b"png bytes", OutputFormat::Png).unwrap();
        assert!(key.ends_with(".png") && key.len() == 64 + 4, "{key}");
        let served = files.get(&key).unwrap();
        assert_eq!(served.bytes, b"png bytes");
        assert!(served.remaining > Duration::from_secs(3590));
        assert!(files.get("0".repeat(64).as_str()).is_none());
        let other = files.save(b"x", OutputFormat::Jpeg).unwrap();
        assert_ne!(key, other);

        let reopened = ImageFiles::open(dir.path(), Duration::from_secs(3600)).unwrap();
        assert_eq!(reopened.get(&key).unwrap().bytes, b"png bytes");

        let short = ImageFiles::open(dir.path(), Duration::from_secs(1)).unwrap();
        let brief = short.save(b"soon gone", OutputFormat::Webp).unwrap();
        assert!(short.get(&brief).is_some());
        std::thread::sleep(Duration::from_millis(2100));
        assert!(short.get(&brief).is_none());
        let on_disk = |dir: &Path| std::fs::read_dir(dir).unwrap().count();
        assert_eq!(on_disk(dir.path()), 2, "the expired file is deleted");

        let expiring = short.save(b"swept", OutputFormat::Png).unwrap();
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(short.sweep(), 1);
        assert!(short.get(&expiring).is_none());
        // A restart deletes what expired while it was down.
        let late = ImageFiles::open(dir.path(), Duration::from_secs(1)).unwrap();
        let _ = late.save(b"y", OutputFormat::Png).unwrap();
        std::thread::sleep(Duration::from_millis(2100));
        drop(late);
        ImageFiles::open(dir.path(), Duration::from_secs(1)).unwrap();
        assert_eq!(on_disk(dir.path()), 2);
    }
}
