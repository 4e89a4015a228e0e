//! `hearth serve`: opens the store, builds the state, binds, publishes the
//! runtime files for the CLI, and shuts down gracefully on SIGINT/SIGTERM: the listener
//! closes, requests in flight get the drain time (`api::drain`), the store is flushed.

use std::future::IntoFuture;
use std::sync::Arc;

use axum::serve::ListenerExt;

use crate::api::{AppState, app};
use crate::config::Config;
use crate::error::{HearthError, Result};
use crate::runtime_files::{self, ServerInfo};
use crate::store::{SledStore, Store};

/// How long streams ended at the drain's end get to send their last event.
const ENDED_STREAMS_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the server until a shutdown signal.
pub async fn serve(config: Config) -> Result<()> {
    config.check_bind_policy()?;
    let data_dir = config.data_dir.clone();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&data_dir)?);
    let admin_token = runtime_files::new_admin_token();
    let state = AppState::build(config, store.clone(), Some(admin_token.clone()))?;

    let listener = tokio::net::TcpListener::bind(state.config.bind)
        .await
        .map_err(|e| HearthError::io(format!("cannot bind {}", state.config.bind), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| HearthError::io("cannot read the bound address", e))?;

    log_startup(&state, addr);
    if let Some(plugins) = &state.plugins {
        plugins.watch();
    }
    state.images.spawn_sweeper();
    for deployment in state.registry.iter() {
        if let Some(crate::engine::Backend::Upstream(pool)) = &deployment.backend {
            pool.spawn_health_checks();
        }
    }
    runtime_files::publish(
        &data_dir,
        &ServerInfo {
            addr,
            pid: std::process::id(),
        },
        &admin_token,
    )?;

    let drain = state.drain.clone();
    let signalled = {
        let drain = drain.clone();
        async move {
            shutdown_signal().await;
            tracing::info!(
                in_flight = drain.in_flight(),
                drain_s = drain.time().as_secs_f64(),
                "shutdown signal received: no new connections; finishing the requests in flight"
            );
            drain.begin();
        }
    };
    // Without TCP_NODELAY a response written in two parts (head, then a streamed body) can
    // wait on the client's delayed ACK: Nagle's algorithm holds the second segment back.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
    });
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(signalled);
    let served = tokio::select! {
        served = server.into_future() => served,
        () = drain.run_out(ENDED_STREAMS_GRACE) => Ok(()),
    };
    runtime_files::withdraw(&data_dir);
    store.flush()?;
    tracing::info!("hearth stopped");
    served.map_err(|e| HearthError::io("server error", e))
}

fn log_startup(state: &AppState, addr: std::net::SocketAddr) {
    tracing::info!(%addr, "hearth listening on http://{addr}");
    tracing::info!(data_dir = %state.config.data_dir.display(), "data dir");
    for deployment in state.registry.iter() {
        tracing::info!(
            name = deployment.name(),
            aliases = ?deployment.config.aliases,
            kind = deployment.kind().as_str(),
            targets = %deployment.targets_summary(),
            state = ?deployment.state,
            "deployment loaded"
        );
    }
    if state.registry.is_empty() {
        tracing::warn!("no deployments configured: /v1/models is empty");
    }
    if state.open.load(std::sync::atomic::Ordering::Acquire) {
        tracing::warn!(
            "auth: OPEN — no API key exists and require_auth is off, so loopback clients need no key; \
             the first `hearth keys create` turns key checks on"
        );
    } else {
        tracing::info!("auth: required (Authorization: Bearer <key> or X-API-Key)");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
