//! The end-to-end harness: starts the real `hearth` binary on a free port with a
//! temporary data dir, and runs its CLI. Used by the Rust suite in `e2e/`; the
//! Python and Node suites have their own small copies of the same steps.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a server may take to come up: generous, since CI machines are slow.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The `hearth` binary: `$HEARTH_BIN`, else the one cargo built beside this test.
pub fn hearth_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HEARTH_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/e2e-<hash> → target/<profile>/hearth
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("hearth");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p hearth-runtime` first",
        bin.display()
    );
    bin
}

/// The installed model files (`scripts/fetch-models`): `$HEARTH_MODELS_DIR`, else `<repo>/.models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("HEARTH_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models"))
}

/// The shared suite config (`tests/config.toml`) with the real model folder filled in.
pub fn config() -> String {
    let models = models_dir();
    let minilm = models.join("all-minilm-l6-v2");
    assert!(
        minilm.join("model.safetensors").exists(),
        "{} is missing: run scripts/fetch-models",
        minilm.display()
    );
    include_str!("../config.toml").replace("@MODELS@", &models.display().to_string())
}

/// A running server and its files.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub admin_token: String,
    log_path: PathBuf,
}

impl Server {
    /// Writes `config` to `dir/hearth.toml` and starts `hearth serve` on port 0,
    /// with its data in `dir/data`.
    pub fn start(dir: &Path, config: &str, extra_args: &[&str]) -> Result<Server> {
        Self::spawn(dir, config, extra_args, false)
    }

    /// As [`Server::start`], on what a headless machine's environment looks like: no
    /// `XDG_RUNTIME_DIR`, `WAYLAND_DISPLAY` or `DISPLAY`.
    pub fn start_headless(dir: &Path, config: &str, extra_args: &[&str]) -> Result<Server> {
        Self::spawn(dir, config, extra_args, true)
    }

    fn spawn(dir: &Path, config: &str, extra_args: &[&str], headless: bool) -> Result<Server> {
        let config_path = dir.join("hearth.toml");
        std::fs::write(&config_path, config)?;
        let data_dir = dir.join("data");
        let log_path = dir.join(format!("server-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path)?;
        let _ = std::fs::remove_file(data_dir.join("server.json"));
        let mut command = Command::new(hearth_bin());
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--bind")
            .arg("127.0.0.1:0")
            .args(extra_args)
            .env_remove("HEARTH_BIND")
            .env_remove("HEARTH_DATA_DIR")
            .env("HEARTH_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log);
        if headless {
            for var in ["XDG_RUNTIME_DIR", "WAYLAND_DISPLAY", "DISPLAY"] {
                command.env_remove(var);
            }
        }
        let child = command.spawn().context("spawning hearth")?;
        let mut server = Server {
            child,
            addr: "127.0.0.1:0".parse()?,
            dir: data_dir,
            config_path,
            admin_token: String::new(),
            log_path,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let info_path = self.dir.join("server.json");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("hearth exited early ({status}):\n{}", self.log());
            }
            if let Ok(text) = std::fs::read_to_string(&info_path) {
                let info: serde_json::Value = serde_json::from_str(&text)?;
                if info["pid"].as_u64() == Some(u64::from(self.child.id())) {
                    self.addr = info["addr"].as_str().context("addr")?.parse()?;
                    self.admin_token = std::fs::read_to_string(self.dir.join("admin.token"))?
                        .trim()
                        .to_owned();
                    let health = reqwest::blocking::get(self.url("/healthz"));
                    if health.is_ok_and(|r| r.status().is_success()) {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("hearth did not become ready:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        reqwest::blocking::get(self.url("/metrics"))
            .and_then(reqwest::blocking::Response::text)
            .expect("GET /metrics")
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no graceful shutdown, no flush.
    pub fn kill9(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> Result<std::process::ExitStatus> {
        self.send_sigterm()?;
        Ok(self.child.wait()?)
    }

    /// Sends SIGTERM and returns at once.
    pub fn send_sigterm(&self) -> Result<()> {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !status.success() {
            bail!("kill -TERM {pid}: {status}");
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("hearth did not exit within {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a `hearth` CLI command against `data_dir`.
pub fn hearth(data_dir: &Path, args: &[&str]) -> Result<Output> {
    let output = Command::new(hearth_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("HEARTH_DATA_DIR")
        .env_remove("HEARTH_CONFIG")
        .stdin(Stdio::null())
        .output()?;
    Ok(output)
}

/// Runs `hearth keys create` and returns the key (the last stdout line).
pub fn create_key(data_dir: &Path, args: &[&str]) -> Result<String> {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    let output = hearth(data_dir, &all)?;
    if !output.status.success() {
        bail!(
            "keys create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8(output.stdout)?;
    let key = stdout
        .lines()
        .last()
        .context("no output")?
        .trim()
        .to_owned();
    Ok(key)
}

/// `models/tests/fixtures`: the tiny checkpoints and reference outputs of the model tests.
pub fn model_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures")
}

/// The text of an SSE chat stream: every chunk's first-choice `delta.content`, joined.
pub fn sse_chat_text(stream: &str) -> String {
    stream
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}
