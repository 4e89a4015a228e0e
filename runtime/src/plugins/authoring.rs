//! Plugin authoring: `hearth plugin new` writes a buildable Rust plugin crate for a hook (with
//! its own copy of the WIT), and `hearth plugin check` type-checks a component against the
//! worlds and runs its admission call, as the server would before accepting it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::bindings::keys;
use super::engine::PluginEngine;
use super::plugin::{Plugin, PluginSpec};
use super::state::KeyVerifier;
use crate::config::{OnError, PluginHook};
use crate::error::{HearthError, Result};

/// The WIT the scaffold copies (the one source in `wit/`).
const WIT: &str = include_str!("../../../wit/plugin.wit");

/// The files of a new plugin crate for `hook` called `name`, relative to its folder.
pub fn scaffold_files(hook: PluginHook, name: &str) -> Vec<(PathBuf, String)> {
    let crate_name = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{crate}", &crate_name)
    };
    let source = match hook {
        PluginHook::Auth => include_str!("templates/auth.rs.txt"),
        PluginHook::Preprocess => include_str!("templates/preprocess.rs.txt"),
        PluginHook::Route => include_str!("templates/route.rs.txt"),
    };
    vec![
        (
            "Cargo.toml".into(),
            fill(include_str!("templates/Cargo.toml.txt")),
        ),
        (
            ".cargo/config.toml".into(),
            include_str!("templates/cargo-config.toml.txt").to_owned(),
        ),
        ("src/lib.rs".into(), fill(source)),
        ("wit/plugin.wit".into(), WIT.to_owned()),
    ]
}

/// Writes the crate into `dir` (which must not exist yet).
pub fn scaffold(hook: PluginHook, name: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase();
    if !valid {
        return Err(HearthError::invalid(format!(
            "`{name}` is not a crate name: use lower-case letters, digits and dashes"
        )));
    }
    if dir.exists() {
        return Err(HearthError::invalid(format!(
            "{} already exists",
            dir.display()
        )));
    }
    let mut written = Vec::new();
    for (relative, text) in scaffold_files(hook, name) {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| HearthError::io(format!("cannot create {}", parent.display()), e))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| HearthError::io(format!("cannot write {}", path.display()), e))?;
        written.push(path);
    }
    Ok(written)
}

/// What `hearth plugin check` found.
#[derive(Debug)]
pub struct CheckReport {
    pub hook: PluginHook,
    pub digest: String,
    pub compile_ms: u128,
}

/// Key verification for a check: no key store, never open.
#[derive(Debug)]
struct NoKeys;

impl KeyVerifier for NoKeys {
    fn verify(&self, _: &str) -> std::result::Result<keys::KeyInfo, keys::KeyError> {
        Err(keys::KeyError::Unknown)
    }

    fn open_mode(&self) -> bool {
        false
    }
}

/// Compiles `path`, matches it to a world and runs its admission call with `config_json`.
pub fn check(path: &Path, config_json: &str) -> Result<CheckReport> {
    let bytes = std::fs::read(path)
        .map_err(|e| HearthError::io(format!("cannot read {}", path.display()), e))?;
    let engine = PluginEngine::new(None)?;
    let started = Instant::now();
    let spec = PluginSpec {
        name: path
            .file_stem()
            .map_or_else(|| "plugin".to_owned(), |s| s.to_string_lossy().into_owned()),
        hook: None,
        source: path.to_path_buf(),
        config_json: config_json.to_owned(),
        on_error: OnError::FailClosed,
        memory_mb: None,
        timeout_ms: None,
        max_concurrency: None,
    };
    let plugin = Plugin::load(&engine, spec, &bytes, None, Some(Arc::new(NoKeys)))?;
    Ok(CheckReport {
        hook: plugin.hook,
        digest: plugin.digest.clone(),
        compile_ms: started.elapsed().as_millis(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaffolds_refuse_bad_names_and_existing_folders() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scaffold(PluginHook::Auth, "Bad Name", &dir.path().join("x")).is_err());
        assert!(scaffold(PluginHook::Auth, "ok", dir.path()).is_err());
        let files = scaffold(PluginHook::Route, "my-router", &dir.path().join("r")).unwrap();
        assert_eq!(files.len(), 4);
        let lib = std::fs::read_to_string(dir.path().join("r/src/lib.rs")).unwrap();
        assert!(lib.contains("world: \"route-plugin\""));
        assert!(!lib.contains("{name}"));
    }
}
