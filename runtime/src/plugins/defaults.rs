//! The default plugins built into the binary: `auth-keys` (the auth hook) and `route-default`
//! (the route hook), from `plugins/dist/` when the runtime was compiled (`scripts/build-plugins`
//! puts them there; `build.rs` embeds them). A binary built without them uses the built-in
//! key verifier, which has the same rules.

use super::host::BuiltinPlugin;
#[cfg(hearth_default_plugins)]
use crate::config::PluginHook;

#[cfg(hearth_default_plugins)]
const BUILTINS: &[BuiltinPlugin] = &[
    BuiltinPlugin {
        name: "auth-keys",
        hook: PluginHook::Auth,
        bytes: include_bytes!(env!("HEARTH_AUTH_KEYS_WASM")),
    },
    BuiltinPlugin {
        name: "route-default",
        hook: PluginHook::Route,
        bytes: include_bytes!(env!("HEARTH_ROUTE_DEFAULT_WASM")),
    },
];

#[cfg(not(hearth_default_plugins))]
const BUILTINS: &[BuiltinPlugin] = &[];

/// The plugins this binary carries.
pub fn builtins() -> &'static [BuiltinPlugin] {
    BUILTINS
}
