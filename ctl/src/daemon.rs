//! Talking to `gncd`: which socket (`--socket`, else `GNC_SOCKET`, else the default), one
//! connection per command, and how replies are printed under `--json`.

use std::path::PathBuf;

use gnc_proto::client::{Client, ClientError};
use gnc_proto::socket::{Command, DEFAULT_SOCKET, Reply, SOCKET_ENV};

/// The socket `gncctl` talks to: the `--socket` flag, else `GNC_SOCKET`, else the default.
pub fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os(SOCKET_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// A connection to the daemon at `socket`; the error says to check that gncd runs.
pub fn connect(socket: &std::path::Path) -> Result<Client, ClientError> {
    Client::connect(socket)
}

/// Connects, sends one command and returns its reply.
pub fn request(socket: &std::path::Path, command: Command) -> Result<Reply, ClientError> {
    connect(socket)?.request(command)
}

/// Prints a reply as one line of JSON (the `--json` output).
pub fn print_json(reply: &Reply) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(reply)?);
    Ok(())
}

/// The error for a reply of a kind the command does not expect.
pub fn unexpected(command: &str, reply: &Reply) -> anyhow::Error {
    let kind = serde_json::to_value(reply)
        .ok()
        .and_then(|v| v.get("reply").and_then(|r| r.as_str()).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    anyhow::anyhow!("gncd answered `{command}` with an unexpected `{kind}` reply")
}
