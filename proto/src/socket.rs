//! The socket protocol between `gncctl` and `gncd`: JSON lines over a Unix socket.
//!
//! Every message is one line of UTF-8 JSON, at most [`MAX_REQUEST_BYTES`] for a request.
//! A request is `{"v": 1, "command": "<name>", ...fields}`; every reply is
//! `{"v": 1, "reply": "<kind>", ...fields}`. A request gets exactly one reply, except `watch`,
//! which gets a stream of `progress` replies ending with one whose job is finished (or
//! paused/cancelled), after which the daemon closes the stream. A malformed request gets an
//! `error` reply naming the problem, and the connection stays open.
//!
//! The version `v` is checked first: a client speaking another version gets an error reply
//! saying which versions the daemon speaks.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::{JobSpec, MetricRecord};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest request line the daemon reads (replies may be longer).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The longest reply line a client reads.
pub const MAX_REPLY_BYTES: usize = 256 << 20;

/// Where `gncd` listens unless configured otherwise, and where `gncctl` connects unless
/// `--socket` or `GNC_SOCKET` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/gnc/gncd.sock";

/// The environment variable `gncctl` reads for the socket path.
pub const SOCKET_ENV: &str = "GNC_SOCKET";

/// A job as the daemon names it: its id (`"7"`) or, when unique, its name.
pub type JobRef = String;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    /// Queue a job. Paths in the spec must be absolute (the client resolves them against its
    /// working directory); `data.root` must lie under one of the daemon's allowed roots. The
    /// daemon chooses the output directory (under its state directory); `devices` (optional,
    /// else the spec's, else the daemon's) only changes speed.
    Submit {
        spec: Box<JobSpec>,
        #[serde(default)]
        devices: Option<String>,
    },
    /// Every job, oldest first. (Braces so that serde refuses unknown fields here too.)
    List {},
    /// One job; without `job`, the daemon itself.
    Status {
        #[serde(default)]
        job: Option<JobRef>,
    },
    /// Stream the job's progress until it stops; `from` skips that many metric records.
    Watch {
        job: JobRef,
        #[serde(default)]
        from: usize,
    },
    /// The last `tail` lines of the job's log (worker output and supervisor notices).
    Logs {
        job: JobRef,
        #[serde(default)]
        tail: Option<usize>,
    },
    /// The job's metric records from index `from` on.
    Metrics {
        job: JobRef,
        #[serde(default)]
        from: usize,
    },
    /// Checkpoint at the next iteration boundary and stop; the job keeps its place.
    Pause { job: JobRef },
    /// Queue a paused job again; it continues from its checkpoint.
    Resume { job: JobRef },
    /// Stop the job for good (only its owner or root).
    Cancel { job: JobRef },
    /// Write a checkpoint at the next iteration boundary and go on training.
    CheckpointNow { job: JobRef },
    /// Checkpoint the running job and exit (root or the daemon's own user only).
    Shutdown {},
}

/// A request line: the version and the command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub command: Command,
}

impl Request {
    pub fn new(command: Command) -> Request {
        Request {
            v: PROTOCOL_VERSION,
            command,
        }
    }

    /// Parses one request line (without its newline), checking the version first so a
    /// client of another version is told so rather than about some field.
    pub fn parse(line: &[u8]) -> Result<Request, ProtocolError> {
        let text = std::str::from_utf8(line).map_err(|e| ProtocolError::NotUtf8 {
            at: e.valid_up_to(),
        })?;
        let mut value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
        let object = value.as_object_mut().ok_or(ProtocolError::NotAnObject)?;
        let version = object.remove("v").ok_or(ProtocolError::NoVersion)?;
        match version.as_u64() {
            Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
            _ => return Err(ProtocolError::Version(version.to_string())),
        }
        match object.get("command") {
            None => return Err(ProtocolError::NoCommand),
            Some(serde_json::Value::String(_)) => {}
            Some(other) => return Err(ProtocolError::Command(other.to_string())),
        }
        let command: Command =
            serde_json::from_value(value).map_err(|e| ProtocolError::Fields(e.to_string()))?;
        Ok(Request::new(command))
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("requests serialise");
        line.push('\n');
        line
    }
}

/// Why a request line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("the message is not UTF-8 (invalid byte at offset {at})")]
    NotUtf8 { at: usize },
    #[error("the message is not JSON: {0}")]
    NotJson(String),
    #[error("the message is not a JSON object")]
    NotAnObject,
    #[error("the message has no protocol version `v` (this daemon speaks v{PROTOCOL_VERSION})")]
    NoVersion,
    #[error("protocol version {0} is not supported (this daemon speaks v{PROTOCOL_VERSION})")]
    Version(String),
    #[error("the message has no `command`")]
    NoCommand,
    #[error("`command` must be a string, not {0}")]
    Command(String),
    #[error("bad command: {0}")]
    Fields(String),
    #[error("the message is longer than {limit} bytes")]
    TooLong { limit: usize },
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Queued,
    Running,
    Paused,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    /// Whether the job will never run again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the daemon knows of a job; also what it persists in its state directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Daemon-wide id, from 1.
    pub id: u64,
    pub name: String,
    pub state: JobState,
    /// Why the job failed, was cancelled, or was paused.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who submitted it (from the socket's peer credentials).
    pub owner_uid: u32,
    /// Seconds since the Unix epoch.
    pub submitted_at: u64,
    #[serde(default)]
    pub started_at: Option<u64>,
    #[serde(default)]
    pub finished_at: Option<u64>,
    /// Iterations completed.
    pub iteration: u64,
    pub total_iterations: u64,
    /// The worker processes it runs in, e.g. `cpu:2`.
    pub devices: String,
    /// Group restarts after worker failures (all generations of all runs of the job).
    pub restarts: u32,
    pub spec_hash: String,
    pub output_dir: PathBuf,
    /// Newest test accuracy, when evaluated.
    #[serde(default)]
    pub test_accuracy: Option<f64>,
    /// SHA-256 of the final parameters, once done.
    #[serde(default)]
    pub params_sha256: Option<String>,
}

/// The daemon itself, for `status` without a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: f64,
    pub devices: String,
    pub state_dir: PathBuf,
    /// The running job, if any.
    #[serde(default)]
    pub running: Option<u64>,
    pub queued: usize,
    pub jobs: usize,
}

/// Machine-readable class of an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The message could not be parsed (see [`ProtocolError`]).
    BadRequest,
    /// The job spec is invalid or reads data outside the allowed roots.
    BadSpec,
    NoSuchJob,
    /// The job is not in a state where the command applies.
    WrongState,
    /// The peer may not do this (e.g. cancel another user's job).
    PermissionDenied,
    /// The daemon is shutting down.
    ShuttingDown,
    /// The daemon serves as many connections as it may (`max_connections`); try again.
    Busy,
    Internal,
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    #[serde(flatten)]
    pub reply: Reply,
}

impl Response {
    pub fn new(reply: Reply) -> Response {
        Response {
            v: PROTOCOL_VERSION,
            reply,
        }
    }

    /// The reply as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("replies serialise");
        line.push('\n');
        line
    }
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    /// To `status` without a job.
    Daemon {
        daemon: DaemonInfo,
    },
    /// To `submit`, `status`, `pause`, `resume`, `cancel`, `checkpoint-now`: the job as it is
    /// after the command was accepted (a pause or checkpoint happens at the next iteration
    /// boundary, so watch or poll to see it done).
    Job {
        job: JobInfo,
    },
    Jobs {
        jobs: Vec<JobInfo>,
    },
    /// One event of a `watch` stream: the job now and the metric records since the last one.
    Progress {
        job: JobInfo,
        records: Vec<MetricRecord>,
    },
    Logs {
        lines: Vec<String>,
    },
    Metrics {
        records: Vec<MetricRecord>,
    },
    /// To `shutdown`: the daemon checkpoints the running job and exits.
    ShuttingDown,
    Error {
        kind: ErrorKind,
        message: String,
    },
}

impl Reply {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Reply {
        Reply::Error {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Request, ProtocolError> {
        Request::parse(text.as_bytes())
    }

    #[test]
    fn requests_round_trip_through_their_line() {
        for command in [
            Command::List {},
            Command::Status { job: None },
            Command::Status {
                job: Some("3".into()),
            },
            Command::Watch {
                job: "demo".into(),
                from: 4,
            },
            Command::CheckpointNow { job: "1".into() },
            Command::Shutdown {},
        ] {
            let request = Request::new(command);
            let line = request.to_line();
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(parse(line.trim_end()).unwrap(), request);
        }
        assert_eq!(
            Request::new(Command::CheckpointNow { job: "1".into() }).to_line(),
            "{\"v\":1,\"command\":\"checkpoint-now\",\"job\":\"1\"}\n"
        );
    }

    #[test]
    fn each_kind_of_malformed_request_gets_its_own_error() {
        assert!(matches!(
            Request::parse(b"\xff\xfe"),
            Err(ProtocolError::NotUtf8 { at: 0 })
        ));
        assert!(matches!(
            parse("{\"v\":1,\"command\":\"li"),
            Err(ProtocolError::NotJson(_))
        ));
        assert_eq!(parse("[1,2]"), Err(ProtocolError::NotAnObject));
        assert_eq!(
            parse("{\"command\":\"list\"}"),
            Err(ProtocolError::NoVersion)
        );
        assert_eq!(
            parse("{\"v\":2,\"command\":\"list\"}"),
            Err(ProtocolError::Version("2".into()))
        );
        assert_eq!(
            parse("{\"v\":\"1\",\"command\":\"list\"}"),
            Err(ProtocolError::Version("\"1\"".into()))
        );
        assert_eq!(parse("{\"v\":1}"), Err(ProtocolError::NoCommand));
        assert_eq!(
            parse("{\"v\":1,\"command\":7}"),
            Err(ProtocolError::Command("7".into()))
        );
        let unknown = parse("{\"v\":1,\"command\":\"reboot\"}").unwrap_err();
        assert!(unknown.to_string().contains("reboot"), "{unknown}");
        let wrong_type = parse("{\"v\":1,\"command\":\"cancel\",\"job\":5}").unwrap_err();
        assert!(
            matches!(wrong_type, ProtocolError::Fields(_)),
            "{wrong_type}"
        );
        let extra = parse("{\"v\":1,\"command\":\"list\",\"x\":1}").unwrap_err();
        assert!(extra.to_string().contains('x'), "{extra}");
    }

    #[test]
    fn replies_are_tagged_lines() {
        let line = Response::new(Reply::error(ErrorKind::NoSuchJob, "no job 9")).to_line();
        assert_eq!(
            line,
            "{\"v\":1,\"reply\":\"error\",\"kind\":\"no-such-job\",\"message\":\"no job 9\"}\n"
        );
        let back: Response = serde_json::from_str(&line).unwrap();
        assert_eq!(back.reply, Reply::error(ErrorKind::NoSuchJob, "no job 9"));
    }
}
