//! The Unix socket: binding it safely (a stale file is removed only when nothing listens on
//! it), its mode and group, and one thread per connection reading bounded request lines.
//! A malformed line gets an `error` reply and the connection goes on.

use std::io::BufReader;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gnc_proto::control::{Command, ErrorKind, ProtocolError, Reply, Request, MAX_REQUEST_BYTES};
use gnc_proto::framing::{read_line, Line};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use super::config::Config;
use super::handlers::{handle, write_reply};
use super::state::Shared;

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

/// Accepts connections forever, one thread each.
pub fn serve(listener: UnixListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let shared = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("gncd-conn".into())
                    .spawn(move || connection(stream, &shared));
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Serves one client until it hangs up (or its `watch` stream ends).
fn connection(stream: UnixStream, shared: &Shared) {
    let peer = match getsockopt(&stream, PeerCredentials) {
        Ok(creds) => creds.uid(),
        Err(e) => {
            tracing::warn!("cannot read the peer's credentials ({e}); closing the connection");
            return;
        }
    };
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
        let request = match read_line(&mut reader, MAX_REQUEST_BYTES, &mut buf) {
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
