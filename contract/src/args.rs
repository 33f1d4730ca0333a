//! The `gnc-worker` command line: parsed by the worker, built by the supervisor
//! ([`WorkerArgs::to_args`]), one definition for both.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use gnc_proto::Device;
use gnc_tree::Block;

/// One worker process of a job's current generation.
#[derive(Debug, Clone, PartialEq, clap::Parser)]
#[command(
    name = "gnc-worker",
    version,
    about = "One gnc worker process; started by the gnc supervisor (gncctl run --devices, gncd), \
             not by hand"
)]
pub struct WorkerArgs {
    /// The job spec, as JSON (written by the supervisor).
    #[arg(long)]
    pub spec: PathBuf,
    /// The run's output directory (metrics, checkpoints, result).
    #[arg(long)]
    pub out: PathBuf,
    /// The job field of the shared-memory segment names.
    #[arg(long)]
    pub shm_job: String,
    /// The supervisor's generation; the segments must carry the same.
    #[arg(long)]
    pub generation: u64,
    /// This process's index p: it hosts block p.
    #[arg(long)]
    pub process: usize,
    /// The device this process computes on (`cpu`, `cuda:I`).
    #[arg(long)]
    pub device: Device,
    /// Every process's block of logical workers, `lo-hi` ranges separated by commas.
    #[arg(long)]
    pub blocks: BlockList,
    /// Continue from the checkpoint of this iteration (chosen by the supervisor, so that
    /// every process loads the same one); without it, start from iteration 0.
    #[arg(long)]
    pub resume_from: Option<u64>,
    /// Stop, with a checkpoint, once this many iterations are complete.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Give up on a peer that has not reached the same point after this many milliseconds.
    #[arg(long)]
    pub peer_timeout_ms: u64,
    /// The supervisor's pid: if our parent is no longer it, the supervisor died before we
    /// could ask to be killed with it, and we exit.
    #[arg(long)]
    pub parent_pid: u32,
}

impl WorkerArgs {
    /// The command-line arguments that parse back into `self`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--spec".into(),
            self.spec.clone().into(),
            "--out".into(),
            self.out.clone().into(),
            "--shm-job".into(),
            self.shm_job.clone().into(),
            "--generation".into(),
            self.generation.to_string().into(),
            "--process".into(),
            self.process.to_string().into(),
            "--device".into(),
            self.device.to_string().into(),
            "--blocks".into(),
            self.blocks.to_string().into(),
            "--peer-timeout-ms".into(),
            self.peer_timeout_ms.to_string().into(),
            "--parent-pid".into(),
            self.parent_pid.to_string().into(),
        ];
        if let Some(n) = self.resume_from {
            args.push("--resume-from".into());
            args.push(n.to_string().into());
        }
        if let Some(n) = self.stop_after {
            args.push("--stop-after".into());
            args.push(n.to_string().into());
        }
        args
    }
}

/// Blocks written `0-4,4-8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockList(pub Vec<Block>);

impl fmt::Display for BlockList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            write!(f, "{}{lo}-{hi}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

impl FromStr for BlockList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(|range| {
                let bad = || format!("{range:?} is not a block lo-hi");
                let (lo, hi) = range.split_once('-').ok_or_else(bad)?;
                Ok((
                    lo.parse().map_err(|_| bad())?,
                    hi.parse().map_err(|_| bad())?,
                ))
            })
            .collect::<Result<_, String>>()
            .map(BlockList)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn arguments_round_trip() {
        let args = WorkerArgs {
            spec: "/o/spec.json".into(),
            out: "/o".into(),
            shm_job: "demo_0011aabb".into(),
            generation: 3,
            process: 1,
            device: Device::Cuda(1),
            blocks: BlockList(vec![(0, 8), (8, 12), (12, 16)]),
            resume_from: Some(20),
            stop_after: Some(40),
            peer_timeout_ms: 1500,
            parent_pid: 77,
        };
        let mut argv = vec![OsString::from("gnc-worker")];
        argv.extend(args.to_args());
        assert_eq!(WorkerArgs::parse_from(argv), args);
    }

    #[test]
    fn malformed_blocks_are_refused() {
        assert!("0-4,4".parse::<BlockList>().is_err());
        assert!("a-b".parse::<BlockList>().is_err());
    }
}
