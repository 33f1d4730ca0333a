//! What a job across hosts is placed on: the hostfile's hosts and processes per host, the
//! largest valid layout over the hosts that can be reached (elastic jobs), the rank binary,
//! and the errors that stop such a job before or between its generations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gnc_proto::Devices;

use crate::hostfile::{Host, HostfileError};

/// Overrides where `gnc-mpi-worker` is (else next to the running executable).
pub const WORKER_ENV: &str = "GNC_MPI_WORKER_BIN";

/// Why a job across hosts cannot start, or must not be started again.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error(transparent)]
    Hostfile(#[from] HostfileError),
    #[error("--hosts {hostfile}: {hosts} host(s) of {per_host} process(es): {error}")]
    Layout {
        hostfile: PathBuf,
        hosts: usize,
        per_host: usize,
        error: Box<gnc_tree::LayoutError>,
    },
    #[error(
        "--hosts {hostfile}: its hosts have different slot counts ({slots}); say how many \
         processes each host runs with --devices cpu:N (or the spec's parallel.devices)"
    )]
    UnequalSlots { hostfile: PathBuf, slots: String },
    #[error(
        "--hosts {hostfile}: host {host} has {slots} slot(s), fewer than the {per_host} \
         processes per host of {devices}"
    )]
    FewSlots {
        hostfile: PathBuf,
        host: String,
        slots: usize,
        per_host: usize,
        devices: Devices,
    },
    #[error("--hosts with --devices {0}")]
    Device(#[from] gnc_proto::devices::DeviceUnavailable),
    #[error("cannot start {program}: {message} (is Open MPI installed? `make` installs it)")]
    Launch { program: String, message: String },
    #[error(
        "{failure} before all {ranks} ranks on the hosts of {hostfile} had started: {why}; \
         not restarting"
    )]
    NeverStarted {
        failure: String,
        ranks: usize,
        hostfile: PathBuf,
        why: String,
    },
    #[error(
        "{what} within {timeout:?} of mpirun's start (--join-timeout); every rank was stopped; \
         not restarting"
    )]
    NeverJoined { what: String, timeout: Duration },
    #[error(
        "ranks of an earlier start of this job still write to {out} ({silent:?} since the last \
         heartbeat after waiting {waited:?}); not starting beside them"
    )]
    EarlierRanks {
        out: PathBuf,
        silent: Duration,
        waited: Duration,
    },
    #[error(
        "--min-hosts {min}: only {reachable} host(s) of {hostfile} can be reached (cannot reach \
         {unreachable}); not starting"
    )]
    TooFewHosts {
        min: usize,
        reachable: usize,
        hostfile: PathBuf,
        unreachable: String,
    },
    #[error(
        "--min-hosts {min}: no layout of the job's {workers} logical workers fits {reachable} \
         reachable host(s) of at most {per_host} process(es) each with at least {min} host(s)"
    )]
    NoLayout {
        min: usize,
        workers: usize,
        reachable: usize,
        per_host: usize,
    },
}

/// Processes on every host: `cpu:N` where given, else each host's slots (all equal).
pub(super) fn processes_per_host(
    hostfile: &Path,
    hosts: &[Host],
    devices: Option<&Devices>,
) -> Result<usize, HostsError> {
    match devices {
        Some(&Devices::Cpu(per_host)) => match hosts.iter().find(|h| h.slots < per_host) {
            None => Ok(per_host),
            Some(host) => Err(HostsError::FewSlots {
                hostfile: hostfile.to_path_buf(),
                host: host.name.clone(),
                slots: host.slots,
                per_host,
                devices: Devices::Cpu(per_host),
            }),
        },
        Some(other) => Err(gnc_proto::devices::DeviceUnavailable {
            device: other.to_string(),
        }
        .into()),
        None if hosts.iter().all(|h| h.slots == hosts[0].slots) => Ok(hosts[0].slots),
        None => Err(HostsError::UnequalSlots {
            hostfile: hostfile.to_path_buf(),
            slots: hosts
                .iter()
                .map(|h| format!("{}: {}", h.name, h.slots))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

pub(super) fn worker_bin() -> Result<PathBuf, HostsError> {
    let launch = |message: String| HostsError::Launch {
        program: "gnc-mpi-worker".into(),
        message,
    };
    let path = crate::worker_bin::locate_named("gnc-mpi-worker", WORKER_ENV).map_err(launch)?;
    if !path.is_file() {
        return Err(HostsError::Launch {
            program: path.display().to_string(),
            message: format!("no such file (build the workspace, or set {WORKER_ENV})"),
        });
    }
    Ok(path)
}

/// The largest layout of `workers` logical workers over `min..=reachable` hosts of at most
/// `max_per_host` processes each: the most processes, then the most hosts; `None` if none is
/// valid (the blocks must be subtrees of the reduction tree).
pub fn largest_layout(
    workers: usize,
    reachable: usize,
    max_per_host: usize,
    min: usize,
) -> Option<(usize, usize)> {
    (min.max(1)..=reachable)
        .flat_map(|h| (1..=max_per_host).map(move |p| (h, p)))
        .filter(|&(h, p)| gnc_tree::host_layout(workers, h, p).is_ok())
        .max_by_key(|&(h, p)| (h * p, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_layout_has_the_most_processes_then_hosts() {
        // 16 workers: 3 hosts cannot split them into subtrees, 2 of 4 can.
        assert_eq!(largest_layout(16, 3, 4, 1), Some((2, 4)));
        assert_eq!(largest_layout(16, 4, 4, 1), Some((4, 4)));
        assert_eq!(largest_layout(16, 1, 2, 1), Some((1, 2)));
        // 8 workers over 2 hosts of up to 3: 4 per host as subtrees 2 + 1 + 1.
        assert_eq!(largest_layout(8, 2, 3, 2), Some((2, 3)));
        assert_eq!(largest_layout(8, 1, 4, 2), None);
    }
}
