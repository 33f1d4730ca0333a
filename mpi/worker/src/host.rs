//! The processes of one host: where they sit in the job, and the shared-memory segments over
//! which they reduce their blocks to the host's block sum (DESIGN.md §5).
//!
//! Ranks are placed host by host (`mpirun --map-by ppr:N:node`): ranks `h·N .. (h+1)·N` are
//! host h's N processes, process i of them is "lane" i. Host h owns the h-th node of
//! [`gnc_tree::host_layout`], its processes the nodes inside it.
//!
//! Segments: the host's first process creates them, every other process of the host opens
//! them, and once all have, the creator removes their names. The mappings live on, and a rank
//! killed at any later moment leaves nothing in `/dev/shm`. Each host group's names carry its
//! host index, so ranks that stand in for hosts on one machine (the tests) never share one.

use std::sync::Arc;

use gnc_contract::protocol;
use gnc_shm::{Segment, SegmentError, SlotArray};
use gnc_tree::{self as tree, Block};
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::*;

use crate::MpiWorkerError;

/// Where one rank sits: its host, its lane, and every process's block.
#[derive(Debug, Clone)]
pub struct Placement {
    pub rank: usize,
    pub per_host: usize,
    /// Every process's block, host by host (rank r's is `blocks[r]`).
    pub blocks: Vec<Block>,
    /// Every host's block.
    pub host_blocks: Vec<Block>,
}

impl Placement {
    /// Rank `rank` of `ranks`, in hosts of `per_host` processes, over `m` logical workers.
    pub fn new(
        m: usize,
        rank: usize,
        ranks: usize,
        per_host: usize,
    ) -> Result<Self, MpiWorkerError> {
        if per_host == 0 || !ranks.is_multiple_of(per_host) {
            return Err(MpiWorkerError::PerHost { ranks, per_host });
        }
        let hosts = ranks / per_host;
        let layout = |error| MpiWorkerError::Layout {
            hosts,
            per_host,
            workers: m,
            error,
        };
        let blocks = tree::host_layout(m, hosts, per_host).map_err(layout)?;
        // Each host's node is the span of its processes' blocks.
        let host_blocks = blocks
            .chunks(per_host)
            .map(|mine| (mine[0].0, mine[per_host - 1].1))
            .collect();
        Ok(Placement {
            rank,
            per_host,
            blocks,
            host_blocks,
        })
    }

    pub fn host(&self) -> usize {
        self.rank / self.per_host
    }

    /// This process's index among its host's.
    pub fn lane(&self) -> usize {
        self.rank % self.per_host
    }

    pub fn block(&self) -> Block {
        self.blocks[self.rank]
    }

    /// This host's processes' blocks, in the coordinates of the host's own tree (shifted so
    /// that the host's block starts at 0).
    pub fn local_blocks(&self) -> Vec<Block> {
        let (lo, _) = self.host_blocks[self.host()];
        let first = self.host() * self.per_host;
        self.blocks[first..first + self.per_host]
            .iter()
            .map(|&(a, b)| (a - lo, b - lo))
            .collect()
    }

    /// Logical workers on this host.
    pub fn host_workers(&self) -> usize {
        let (lo, hi) = self.host_blocks[self.host()];
        hi - lo
    }
}

/// The communicators of a rank: its host's processes, and its lane across hosts.
pub struct Comms {
    pub host: SimpleCommunicator,
    pub lane: SimpleCommunicator,
}

impl Comms {
    pub fn split(world: &SimpleCommunicator, placement: &Placement) -> Comms {
        let split = |color: usize| {
            world
                .split_by_color(Color::with_value(color as i32))
                .expect("every rank has a colour, so every rank gets a communicator")
        };
        // Both keep world order: host h is rank h of every lane, lane i process i of a host.
        Comms {
            host: split(placement.host()),
            lane: split(placement.lane()),
        }
    }
}

/// The two reduction arrays of a host's processes, for bundles of `len` floats.
pub struct HostSegments {
    pub block_sums: Arc<SlotArray>,
    pub shards: Arc<SlotArray>,
}

impl HostSegments {
    /// Collective over `host`: process 0 creates, the others open, process 0 unlinks.
    pub fn open(
        host: &SimpleCommunicator,
        job: &str,
        generation: u64,
        len: usize,
    ) -> Result<HostSegments, MpiWorkerError> {
        let processes = host.size() as usize;
        let (sums_spec, shards_spec) = protocol::reduction_specs(job, generation, processes, len);
        let sums_name = protocol::name(job, generation, protocol::BLOCK_SUMS);
        let shards_name = protocol::name(job, generation, protocol::SHARDS);
        let creator = host.rank() == 0;
        // Each step ends with every process hearing whether all succeeded, so that none is
        // left waiting at the next step for a process that gave up.
        let created = agree(
            host,
            "create",
            if creator {
                Segment::create(&sums_name, &sums_spec)
                    .and_then(|s| Ok(Some((s, Segment::create(&shards_name, &shards_spec)?))))
            } else {
                Ok(None)
            },
        )?;
        let opened = match created {
            Some(pair) => Ok(pair),
            None => Segment::open(&sums_name, &sums_spec)
                .and_then(|s| Ok((s, Segment::open(&shards_name, &shards_spec)?))),
        };
        let (mut sums, mut shards) = agree(host, "open", opened)?;
        // Every process has mapped both: the names are no longer needed.
        sums.unlink_name()?;
        shards.unlink_name()?;
        let array = |segment| {
            SlotArray::new(segment)
                .map(Arc::new)
                .map_err(|e| MpiWorkerError::HostReduce(e.into()))
        };
        Ok(HostSegments {
            block_sums: array(sums)?,
            shards: array(shards)?,
        })
    }
}

/// This process's `result` once every process of `comm` has reported its own: its own error,
/// or, where it succeeded but another did not, an error naming that process.
fn agree<T>(
    comm: &SimpleCommunicator,
    step: &'static str,
    result: Result<T, SegmentError>,
) -> Result<T, MpiWorkerError> {
    let mine = [u8::from(result.is_ok())];
    let mut all = vec![0u8; comm.size() as usize];
    comm.all_gather_into(&mine[..], &mut all[..]);
    let value = result?;
    match all.iter().position(|&ok| ok == 0) {
        None => Ok(value),
        Some(process) => Err(MpiWorkerError::HostPeer { process, step }),
    }
}
