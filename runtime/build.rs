//! Embeds the default plugins (`plugins/dist/*.wasm`, built by `scripts/build-plugins`) when
//! they exist. Nothing is built or downloaded here.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hearth_default_plugins)");
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    println!("cargo::rerun-if-changed={}", dist.display());
    let auth = dist.join("auth_keys.wasm");
    let route = dist.join("route_default.wasm");
    if auth.is_file() && route.is_file() {
        println!("cargo::rustc-cfg=hearth_default_plugins");
        println!("cargo::rustc-env=HEARTH_AUTH_KEYS_WASM={}", auth.display());
        println!(
            "cargo::rustc-env=HEARTH_ROUTE_DEFAULT_WASM={}",
            route.display()
        );
    } else {
        println!(
            "cargo::warning=plugins/dist has no default plugins: this build authenticates with the built-in key verifier (run scripts/build-plugins)"
        );
    }
}
