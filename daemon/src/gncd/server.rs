//! The Unix socket: binding it safely (a stale file is removed only when nothing listens on
//! it), its mode and group, and one thread per connection reading bounded request lines.
//! A malformed line gets an `error` reply and the connection goes on.
//!
//! Connection threads are reused and connections capped: a thread whose client hung up waits
//! [`IDLE_THREAD_KEEP`] for the next connection before it exits (spawning a thread costs more
//! than answering `status`), and at most `max_connections` connections are served at once, so
//! a flood of clients cannot exhaust the daemon that supervises the running job. At the limit,
//! the connection idle the longest is closed for the new client ([`super::connections`]); only
//! when every connection is busy is the new one told `busy`. A client that sends no request for
//! [`REQUEST_IDLE_LIMIT`], or stops reading its replies for [`WRITE_STALL_LIMIT`], is
//! disconnected and frees its thread.

use std::io::BufReader;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, TrySendError};

use gnc_proto::framing::{Line, read_line};
use gnc_proto::socket::{Command, ErrorKind, MAX_REQUEST_BYTES, ProtocolError, Reply, Request};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::config::Config;
use super::connections::{Connections, Served};
use super::handlers::{handle, write_reply};
use super::state::Shared;

/// How long a connection thread with no client waits for the next one before it exits.
pub const IDLE_THREAD_KEEP: Duration = Duration::from_secs(10);
/// How long a connection may go without sending a request (between requests, or before the
/// first one).
pub const REQUEST_IDLE_LIMIT: Duration = Duration::from_secs(600);
/// How long a reply (or a `watch` update) may wait for the client to read.
pub const WRITE_STALL_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("another gncd is already listening on {0}")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; remove it or configure another `socket`")]
    NotASocket(PathBuf),
    #[error("socket {path}: {message}")]
    Io { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ServerError + '_ {
    move |e| ServerError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Binds the configured socket, with the configured mode and group.
pub fn bind(config: &Config) -> Result<UnixListener, ServerError> {
    let path = &config.socket;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ServerError::NotASocket(path.clone()));
        }
        // A socket file that accepts a connection belongs to a live daemon; one that
        // refuses it was left by a daemon that died.
        if UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse(path.clone()));
        }
        tracing::info!(socket = %path.display(), "removing a stale socket file");
        std::fs::remove_file(path).map_err(io(path))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let listener = UnixListener::bind(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(config.socket_mode))
        .map_err(io(path))?;
    set_group(path, &config.socket_group);
    Ok(listener)
}

/// Gives the socket to `group` so its members may connect; without such a group (or the
/// right to use it) the daemon warns and keeps its own group.
fn set_group(path: &Path, group: &str) {
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => {
            if let Err(e) = std::os::unix::fs::chown(path, None, Some(g.gid.as_raw())) {
                tracing::warn!(group, socket = %path.display(), "cannot give the socket to group {group}: {e}; keeping the daemon's group");
            }
        }
        Ok(None) => tracing::warn!(
            group,
            "socket_group {group:?} does not exist; the socket keeps the daemon's group"
        ),
        Err(e) => tracing::warn!(group, "cannot look up socket_group {group:?}: {e}"),
    }
}

/// Accepts connections forever: while fewer than `max_connections` are being served (or one
/// of them is idle and can be closed), each goes to an idle connection thread if one is
/// waiting, else to a new thread; beyond that it gets a `busy` error.
pub fn serve(listener: UnixListener, shared: Arc<Shared>) {
    // Zero capacity: a hand-off succeeds only if an idle thread is waiting in `recv` now.
    let (handoff, idle) = crossbeam_channel::bounded::<(UnixStream, u64)>(0);
    // Only this loop adds connections, so their number cannot pass the limit between the
    // check and the addition; a thread removes its connection when its client is gone.
    let connections = Arc::new(Connections::default());
    let mut last_busy_warning: Option<std::time::Instant> = None;
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let max = shared.config().max_connections;
        if connections.len() >= max && !connections.reclaim_oldest_idle(max) {
            // One warning per burst of refusals, not one log line per refused client.
            if last_busy_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections = max,
                    "refusing connections: the limit of connections served at once is reached \
                     and none of them is idle"
                );
                last_busy_warning = Some(std::time::Instant::now());
            }
            refuse_busy(stream, max);
            continue;
        }
        let id = match connections.add(&stream) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!("cannot register a connection ({e}); closing it");
                continue;
            }
        };
        let stream = match handoff.try_send((stream, id)) {
            Ok(()) => continue,
            Err(TrySendError::Full(next) | TrySendError::Disconnected(next)) => next,
        };
        let (shared, idle, registry) = (shared.clone(), idle.clone(), connections.clone());
        let spawned = std::thread::Builder::new()
            .name("gncd-conn".into())
            .spawn(move || connection_thread(stream, &shared, &idle, &registry));
        if let Err(e) = spawned {
            // The connection was dropped unserved with the closure.
            tracing::warn!("cannot start a connection thread: {e}");
        }
    }
}

/// Serves `first`, then every connection handed over while it waits idle, until none comes
/// for [`IDLE_THREAD_KEEP`]. Each was registered in `connections` by the accept loop.
fn connection_thread(
    first: (UnixStream, u64),
    shared: &Shared,
    idle: &Receiver<(UnixStream, u64)>,
    connections: &Connections,
) {
    let (mut stream, mut id) = first;
    loop {
        {
            let served = Served { connections, id };
            connection(stream, shared, &served);
        }
        match idle.recv_timeout(IDLE_THREAD_KEEP) {
            Ok(next) => (stream, id) = next,
            Err(_) => return,
        }
    }
}

/// Answers a connection beyond the limit with a `busy` error and closes it.
fn refuse_busy(mut stream: UnixStream, max: usize) {
    // A fresh socket's buffer takes one short line without blocking; the timeout only
    // guards the accept loop against the unexpected.
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let message = format!(
        "gncd is serving its limit of {max} connections at once (max_connections); try again"
    );
    let _ = write_reply(&mut stream, Reply::error(ErrorKind::Busy, message));
}

/// Serves one client until it hangs up (or its `watch` stream ends, or it is closed idle).
fn connection(stream: UnixStream, shared: &Shared, served: &Served) {
    let peer = match getsockopt(&stream, PeerCredentials) {
        Ok(creds) => creds.uid(),
        Err(e) => {
            tracing::warn!("cannot read the peer's credentials ({e}); closing the connection");
            return;
        }
    };
    for (what, set) in [
        ("read", stream.set_read_timeout(Some(REQUEST_IDLE_LIMIT))),
        ("write", stream.set_write_timeout(Some(WRITE_STALL_LIMIT))),
    ] {
        if let Err(e) = set {
            tracing::warn!("cannot set a connection's {what} timeout ({e}); closing it");
            return;
        }
    }
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot clone a connection: {e}");
            return;
        }
    };
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        served.connections.set_idle(served.id, true);
        let line = read_line(&mut reader, MAX_REQUEST_BYTES, &mut buf);
        served.connections.set_idle(served.id, false);
        let request = match line {
            Ok(Line::End) | Err(_) => return,
            Ok(Line::TooLong { .. }) => Err(ProtocolError::TooLong {
                limit: MAX_REQUEST_BYTES,
            }),
            Ok(Line::Complete) => Request::parse(&buf),
        };
        let written = match request {
            Err(e) => write_reply(
                &mut writer,
                Reply::error(ErrorKind::BadRequest, e.to_string()),
            ),
            Ok(Request { command, .. }) => {
                let streams = matches!(command, Command::Watch { .. });
                let written = handle(shared, peer, command, &mut writer);
                if streams {
                    // A watch stream ends with the connection.
                    return;
                }
                written
            }
        };
        if written.is_err() {
            return;
        }
    }
}
