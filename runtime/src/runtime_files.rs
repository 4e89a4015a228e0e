//! Files a running server leaves in its data dir so that the CLI can reach it.
//!
//! sled admits one process per database, so while `hearth serve` runs, `hearth
//! keys …` talks to it over HTTP instead: `server.json` says where it listens and
//! `admin.token` (mode 0600, new at every start) is the local admin credential.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use crate::error::{HearthError, Result};

const SERVER_FILE: &str = "server.json";
const TOKEN_FILE: &str = "admin.token";

/// What `server.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    pub addr: SocketAddr,
    pub pid: u32,
}

/// A fresh random admin token.
pub fn new_admin_token() -> String {
    let secret: String = rand::rng()
        .sample_iter(Alphanumeric)
        .map(char::from)
        .take(48)
        .collect();
    format!("hth-admin-{secret}")
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| HearthError::io(format!("cannot write {}", path.display()), e))
}

/// Writes the token first, then `server.json`, so a reader that sees the address
/// also finds the token.
pub fn publish(data_dir: &Path, info: &ServerInfo, admin_token: &str) -> Result<()> {
    write_private(&data_dir.join(TOKEN_FILE), admin_token)?;
    let json = serde_json::to_string(info).map_err(|e| HearthError::Internal(e.to_string()))?;
    write_private(&data_dir.join(SERVER_FILE), &json)
}

/// Removes both files at shutdown.
pub fn withdraw(data_dir: &Path) {
    for name in [SERVER_FILE, TOKEN_FILE] {
        let _ = std::fs::remove_file(data_dir.join(name));
    }
}

/// The running server's address and admin token, if its files are there.
pub fn discover(data_dir: &Path) -> Option<(ServerInfo, String)> {
    let info = std::fs::read_to_string(data_dir.join(SERVER_FILE)).ok()?;
    let info: ServerInfo = serde_json::from_str(&info).ok()?;
    let token = std::fs::read_to_string(data_dir.join(TOKEN_FILE)).ok()?;
    Some((info, token.trim().to_owned()))
}
