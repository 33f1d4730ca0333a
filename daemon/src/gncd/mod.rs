//! `gncd`, the daemon (DESIGN.md §2): a job queue persisted in a state directory, served on a
//! Unix socket with the JSON-lines protocol of [`gnc_proto::socket`], running one job at a
//! time with [`crate::supervise`] on every device it owns.
//!
//! - [`config`]: the `gncd.toml` file;
//! - [`store`] / [`jobs`]: the queue on disk and in memory, and each job's state machine;
//! - [`roots`]: which data directories a job may read;
//! - [`server`] / [`handlers`]: the socket, peer credentials, requests and replies;
//! - [`runner`]: one job's run on a thread, its devices, its events;
//! - [`lifecycle`] / [`notify`]: signals, the main loop, systemd notifications.

pub mod config;
pub mod connections;
pub mod handlers;
pub mod jobs;
pub mod lifecycle;
pub mod notify;
pub mod roots;
pub mod runner;
pub mod server;
pub mod state;
pub mod store;

use std::path::Path;
use std::sync::Arc;

use config::{Config, ConfigError};
use server::ServerError;
use state::Shared;
use store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("state directory: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cannot handle signals: {0}")]
    Signals(String),
    #[error("cannot start a thread: {0}")]
    Thread(String),
}

/// `gncd validate`: checks the config file.
pub fn validate(config_path: &Path) -> Result<Config, ConfigError> {
    Config::load(config_path)
}

/// Runs the daemon until SIGTERM, SIGINT or a `shutdown` request.
pub fn run(config_path: &Path) -> Result<(), DaemonError> {
    let config = Config::load(config_path)?;
    let store = Store::open(&config.state_dir)?;
    let (jobs, requeued) = jobs::Jobs::load(store)?;
    for id in requeued {
        tracing::info!(
            job = id,
            "the job was running when gncd stopped; re-queued to resume from its checkpoint"
        );
    }
    let socket = config.socket.clone();
    let listener = server::bind(&config)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared::new(config, jobs, tx));
    lifecycle::forward_signals(&shared)?;
    let serving = shared.clone();
    std::thread::Builder::new()
        .name("gncd-accept".into())
        .spawn(move || server::serve(listener, serving))
        .map_err(|e| DaemonError::Thread(e.to_string()))?;
    let mut notifier = notify::Notifier::from_env();
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "gncd listening");
    notifier.ready();
    lifecycle::main_loop(&shared, &rx, config_path, &mut notifier);
    // Nobody can be served any more; a stale file would only make the next start check it.
    let _ = std::fs::remove_file(&socket);
    tracing::info!("gncd stopped");
    Ok(())
}
