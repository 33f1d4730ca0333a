//! A blocking client of `gncd`'s socket: one request, one reply (or a stream for `watch`).

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::framing::{Line, read_line};
use crate::socket::{Command, ErrorKind, MAX_REPLY_BYTES, Reply, Request, Response};

/// Why talking to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to gncd at {path}: {message} (is gncd running? the socket is set by --socket or GNC_SOCKET)"
    )]
    Connect { path: PathBuf, message: String },
    #[error("lost the connection to gncd: {0}")]
    Io(#[from] std::io::Error),
    #[error("gncd closed the connection before replying")]
    Closed,
    #[error("gncd sent a reply this client cannot read: {0}")]
    BadReply(String),
    #[error("{message}")]
    Daemon { kind: ErrorKind, message: String },
}

/// One connection to the daemon.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path).map_err(|e| ClientError::Connect {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
            buf: Vec::new(),
        })
    }

    /// Sends `command` and returns its reply; an error reply becomes [`ClientError::Daemon`].
    pub fn request(&mut self, command: Command) -> Result<Reply, ClientError> {
        self.send(command)?;
        self.next_reply()?.ok_or(ClientError::Closed)
    }

    /// Sends `command` without waiting (for streams: then call [`Client::next_reply`]).
    pub fn send(&mut self, command: Command) -> Result<(), ClientError> {
        let written = self
            .writer
            .write_all(Request::new(command).to_line().as_bytes());
        match written {
            Ok(()) => Ok(()),
            // A daemon that refuses the connection (e.g. `busy`) replies at once and closes
            // it, so the request may find the socket closed: its reply says why.
            Err(e) => match self.next_reply() {
                Err(refusal @ ClientError::Daemon { .. }) => Err(refusal),
                _ => Err(ClientError::Io(e)),
            },
        }
    }

    /// The next reply line; `None` once the daemon has closed the stream.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ClientError> {
        match read_line(&mut self.reader, MAX_REPLY_BYTES, &mut self.buf)? {
            Line::End => return Ok(None),
            Line::TooLong { bytes } => {
                return Err(ClientError::BadReply(format!(
                    "a reply of {bytes} bytes exceeds {MAX_REPLY_BYTES}"
                )));
            }
            Line::Complete => {}
        }
        let response: Response =
            serde_json::from_slice(&self.buf).map_err(|e| ClientError::BadReply(e.to_string()))?;
        match response.reply {
            Reply::Error { kind, message } => Err(ClientError::Daemon { kind, message }),
            reply => Ok(Some(reply)),
        }
    }
}
