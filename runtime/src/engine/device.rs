//! Device selection: `auto`, `cpu` or `wgpu` per deployment.
//!
//! The CPU backend is burn's pure-Rust Flex and is always built. The model code is
//! device-generic (burn 0.22 dispatches on the `Device` at run time, and
//! `hearth-models` has a `wgpu` feature), but this binary does not compile the
//! wgpu backend yet — it adds 25–40 minutes to a clean build on two cores — so
//! `wgpu` is refused with that reason and `auto` means the CPU.

use hearth_models::Device;

use crate::config::DeviceChoice;
use crate::error::{HearthError, Result};

/// A device as `hearth devices` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceReport {
    pub name: &'static str,
    pub available: bool,
    pub note: String,
}

/// The device a deployment asked for, and a name for logs.
pub fn select_device(choice: DeviceChoice) -> Result<(Device, &'static str)> {
    match choice {
        DeviceChoice::Cpu | DeviceChoice::Auto => Ok((hearth_models::cpu_device(), "cpu (flex)")),
        DeviceChoice::Wgpu => Err(HearthError::Config(
            "device = \"wgpu\": this build of hearth has no wgpu backend; use \"cpu\" or \"auto\""
                .to_owned(),
        )),
    }
}

/// What this build can run on.
pub fn list_devices() -> Vec<DeviceReport> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    vec![
        DeviceReport {
            name: "cpu",
            available: true,
            note: format!("burn Flex (pure-Rust CPU backend), {threads} threads"),
        },
        DeviceReport {
            name: "wgpu",
            available: false,
            note: "not compiled into this build".to_owned(),
        },
    ]
}
