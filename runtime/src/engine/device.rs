//! Device selection: `auto`, `cpu` or `wgpu` per deployment, and the adapter list that
//! `hearth devices` prints.
//!
//! The CPU backend is burn's pure-Rust Flex and is always built. The GPU backend is burn's
//! wgpu (Vulkan, Metal, DX12), compiled in with the `wgpu` feature (on by default).
//! `auto` takes a real GPU adapter (discrete, then integrated, then virtual) and otherwise
//! the CPU backend: a software Vulkan driver such as Mesa's lavapipe is far slower than Flex,
//! so only an explicit `device = "wgpu"` runs on one.
//!
//! Asking Vulkan for adapters is not free of side effects: wgpu enables every window-system
//! surface extension, and Mesa's drivers then try to reach a Wayland compositor, whose client
//! library writes `error: XDG_RUNTIME_DIR is invalid or not set` to fd 2 on a headless
//! machine (once per enumeration; wgpu enumerates twice). wgpu has no option to leave those
//! extensions out, so `auto` first looks for a GPU's device node and, on a machine without
//! one, picks the CPU without loading any GPU driver. An explicit `wgpu` and `hearth devices`
//! still ask Vulkan, since a software adapter has no device node.

use hearth_models::Device;

use crate::config::DeviceChoice;
use crate::error::{HearthError, Result};

/// A device as `hearth devices` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceReport {
    /// `cpu`, or `wgpu:<index>` for an adapter.
    pub name: String,
    /// What kind of device it is (`cpu`, `discrete-gpu`, `integrated-gpu`, `virtual-gpu`,
    /// `software`).
    pub kind: String,
    /// Whether `auto` would pick it.
    pub auto: bool,
    pub note: String,
}

/// The device a deployment asked for, and a name for logs.
pub fn select_device(choice: DeviceChoice) -> Result<(Device, String)> {
    let cpu = || (hearth_models::cpu_device(), "cpu (flex)".to_owned());
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Auto => Ok(auto().unwrap_or_else(cpu)),
        DeviceChoice::Wgpu => gpu::any().ok_or_else(|| {
            HearthError::Config(format!(
                "device = \"wgpu\": {}; use \"cpu\" or \"auto\"",
                gpu::UNAVAILABLE
            ))
        }),
    }
}

/// The CPU and every GPU adapter this build can run on.
pub fn list_devices() -> Vec<DeviceReport> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut devices = vec![DeviceReport {
        name: "cpu".to_owned(),
        kind: "cpu".to_owned(),
        auto: auto().is_none(),
        note: format!("burn Flex (pure-Rust CPU backend), {threads} threads"),
    }];
    devices.extend(gpu::reports());
    devices
}

/// What `auto` takes: the best real GPU, when this machine shows one.
fn auto() -> Option<(Device, String)> {
    if !has_gpu_node(std::path::Path::new("/dev")) {
        log_once(|| {
            tracing::info!(
                "no GPU device node (/dev/dri/renderD*, /dev/nvidia*, /dev/dxg): device = \"auto\" runs on the CPU without probing wgpu"
            );
        });
        return None;
    }
    gpu::auto()
}

fn log_once(log: impl FnOnce()) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(log);
}

/// Whether `dev` (the `/dev` folder) holds a node a GPU driver would open: a DRM render node
/// (Mesa, AMD, Intel, nvidia-drm), NVIDIA's own device files, or WSL2's GPU. Elsewhere than
/// on Linux every machine may have one: wgpu is asked.
fn has_gpu_node(dev: &std::path::Path) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let named = |folder: &std::path::Path, wanted: &dyn Fn(&str) -> bool| {
        std::fs::read_dir(folder).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_str().is_some_and(wanted))
        })
    };
    named(&dev.join("dri"), &|name| name.starts_with("renderD"))
        || named(dev, &|name| {
            name == "dxg"
                || name
                    .strip_prefix("nvidia")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

#[cfg(feature = "wgpu")]
mod gpu {
    use std::sync::OnceLock;

    use hearth_models::Device;
    use hearth_models::DeviceKind;
    use wgpu::DeviceType;

    use super::DeviceReport;

    pub const UNAVAILABLE: &str = "no Vulkan, Metal or DX12 adapter was found";

    /// The adapters, asked once: the Vulkan loader misbehaves when instances come and go on
    /// several threads, and the first call happens before any model's worker starts.
    fn adapters() -> &'static [wgpu::AdapterInfo] {
        static ADAPTERS: OnceLock<Vec<wgpu::AdapterInfo>> = OnceLock::new();
        ADAPTERS.get_or_init(|| {
            let instance = wgpu::Instance::new(
                wgpu::InstanceDescriptor::new_without_display_handle_from_env(),
            );
            let adapters: Vec<_> =
                futures_lite::future::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
                    .iter()
                    .map(wgpu::Adapter::get_info)
                    .collect();
            let found: Vec<String> = adapters.iter().map(label).collect();
            tracing::info!(count = adapters.len(), adapters = ?found, "wgpu adapters");
            adapters
        })
    }

    fn kind(device_type: DeviceType) -> &'static str {
        match device_type {
            DeviceType::DiscreteGpu => "discrete-gpu",
            DeviceType::IntegratedGpu => "integrated-gpu",
            DeviceType::VirtualGpu => "virtual-gpu",
            DeviceType::Cpu => "software",
            DeviceType::Other => "other",
        }
    }

    /// burn's index of an adapter counts adapters of the same type.
    fn device_kind(info: &wgpu::AdapterInfo) -> Option<DeviceKind> {
        let index = adapters()
            .iter()
            .take_while(|a| !std::ptr::eq(*a, info))
            .filter(|a| a.device_type == info.device_type)
            .count();
        match info.device_type {
            DeviceType::DiscreteGpu => Some(DeviceKind::DiscreteGpu(index)),
            DeviceType::IntegratedGpu => Some(DeviceKind::IntegratedGpu(index)),
            DeviceType::VirtualGpu => Some(DeviceKind::VirtualGpu(index)),
            DeviceType::Cpu => Some(DeviceKind::Cpu),
            DeviceType::Other => None,
        }
    }

    fn label(info: &wgpu::AdapterInfo) -> String {
        format!(
            "wgpu {:?}: {} ({})",
            info.backend,
            info.name,
            kind(info.device_type)
        )
    }

    fn best(types: &[DeviceType]) -> Option<(Device, String)> {
        types.iter().find_map(|wanted| {
            let info = adapters().iter().find(|a| a.device_type == *wanted)?;
            Some((hearth_models::wgpu_device(device_kind(info)?), label(info)))
        })
    }

    /// The best real GPU, if there is one.
    pub fn auto() -> Option<(Device, String)> {
        best(&[
            DeviceType::DiscreteGpu,
            DeviceType::IntegratedGpu,
            DeviceType::VirtualGpu,
        ])
    }

    /// The best adapter of any kind, software ones included.
    pub fn any() -> Option<(Device, String)> {
        auto().or_else(|| best(&[DeviceType::Cpu]))
    }

    pub fn reports() -> Vec<DeviceReport> {
        let auto_pick = auto().map(|(_, label)| label);
        if adapters().is_empty() {
            return vec![DeviceReport {
                name: "wgpu".to_owned(),
                kind: "-".to_owned(),
                auto: false,
                note: format!("{UNAVAILABLE} (is a Vulkan loader and driver installed?)"),
            }];
        }
        adapters()
            .iter()
            .enumerate()
            .map(|(index, info)| DeviceReport {
                name: format!("wgpu:{index}"),
                kind: kind(info.device_type).to_owned(),
                auto: auto_pick.as_deref() == Some(label(info).as_str()),
                note: format!(
                    "{:?}: {} (driver {} {})",
                    info.backend, info.name, info.driver, info.driver_info
                ),
            })
            .collect()
    }
}

#[cfg(not(feature = "wgpu"))]
mod gpu {
    use hearth_models::Device;

    use super::DeviceReport;

    pub const UNAVAILABLE: &str = "this build of hearth has no wgpu backend (the `wgpu` feature)";

    pub fn auto() -> Option<(Device, String)> {
        None
    }

    pub fn any() -> Option<(Device, String)> {
        None
    }

    pub fn reports() -> Vec<DeviceReport> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::has_gpu_node;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_gpu_shows_as_a_device_node() {
        let dev = tempfile::tempdir().unwrap();
        std::fs::write(dev.path().join("nvidiactl"), b"").unwrap();
        std::fs::create_dir(dev.path().join("dri")).unwrap();
        std::fs::write(dev.path().join("dri/card0"), b"").unwrap();
        assert!(
            !has_gpu_node(dev.path()),
            "a control node or a card node is not a GPU to compute on"
        );
        std::fs::write(dev.path().join("dri/renderD128"), b"").unwrap();
        assert!(has_gpu_node(dev.path()));
        std::fs::remove_file(dev.path().join("dri/renderD128")).unwrap();
        std::fs::write(dev.path().join("nvidia0"), b"").unwrap();
        assert!(has_gpu_node(dev.path()));
    }
}
