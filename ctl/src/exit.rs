//! Exit codes, and the error that carries a "no" answer rather than a failure to answer.
//!
//! 0: success. 1: the command failed. 2: bad arguments (clap). 3: the command ran and its
//! answer is negative (a run did not reproduce; a watched job failed or was cancelled).
//! 69 (EX_UNAVAILABLE): gncd is not reachable, or busy (try again).

use gnc_proto::client::ClientError;
use gnc_proto::socket::ErrorKind;

pub const FAILURE: u8 = 1;
pub const NEGATIVE: u8 = 3;
pub const UNAVAILABLE: u8 = 69;

/// The command ran to the end and found a negative answer; exits with [`NEGATIVE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Negative(pub String);

/// The exit code for an error: [`UNAVAILABLE`] when the daemon could not be reached or is
/// serving its limit of connections,
/// [`NEGATIVE`] for a [`Negative`] answer, else [`FAILURE`].
pub fn code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(
            ClientError::Connect { .. }
            | ClientError::Daemon {
                kind: ErrorKind::Busy,
                ..
            },
        ) = cause.downcast_ref::<ClientError>()
        {
            return UNAVAILABLE;
        }
        if cause.downcast_ref::<Negative>().is_some() {
            return NEGATIVE;
        }
    }
    FAILURE
}
