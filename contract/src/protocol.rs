//! What the supervisor and its `gnc-worker` processes agree on: segment names, the control
//! block's words, the reduction's length and geometry, and the workers' exit codes. Both
//! sides build these only here, so they cannot drift apart.

use std::path::Path;

use gnc_shm::{ReductionGeometry, SegmentName, SegmentSpec, job_id, segment_name};

/// The shm job field for a run: the spec's name made name-safe, and a hash of the output
/// directory, so two runs of one spec into different directories never share segments.
pub fn shm_job(spec_name: &str, out: &Path) -> String {
    let safe: String = spec_name
        .chars()
        .take(48)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = out.canonicalize().unwrap_or_else(|_| out.to_path_buf());
    let hash = job_id(&dir.to_string_lossy()) as u32;
    format!("{safe}_{hash:08x}")
}

/// The three segments of one generation.
pub const CONTROL: &str = "control";
pub const BLOCK_SUMS: &str = "blocksums";
pub const SHARDS: &str = "shards";

pub fn name(shm_job: &str, generation: u64, what: &str) -> SegmentName {
    segment_name(shm_job, generation, what).expect("shm_job() builds valid names")
}

/// Headers of the two reduction segments for `processes` processes and bundles of `len`
/// floats.
pub fn reduction_specs(
    shm_job: &str,
    generation: u64,
    processes: usize,
    len: usize,
) -> (SegmentSpec, SegmentSpec) {
    let geometry = ReductionGeometry::new(processes as u32, len);
    let spec = |geometry| SegmentSpec {
        job_id: job_id(shm_job),
        generation,
        geometry,
    };
    (spec(geometry.block_sums), spec(geometry.shards))
}

/// Floats in one flattened bundle of these shapes.
pub fn bundle_len(shapes: &[Vec<i64>]) -> usize {
    shapes
        .iter()
        .map(|s| s.iter().product::<i64>() as usize)
        .sum()
}

/// Control word layout. Word 0 is the generation (written by the supervisor before it
/// spawns anyone; a worker that finds another value exits). Word 1 is the request word
/// (supervisor and workers, see [`crate::request`]). Word 2 is written by process 0 only:
/// 1 + the iteration of the newest complete checkpoint (0: none yet in this generation).
/// Then three words per process p, each written only by p:
/// - `begun`: iterations p has begun (t + 1 once iteration t starts);
/// - `done`: iterations p has completed;
/// - `part`: the iteration of the newest checkpoint whose part p has made durable.
///
/// The supervisor watches `begun`/`done` for progress; process 0 waits on `part`.
pub const GENERATION_WORD: usize = 0;
pub const REQUEST_WORD: usize = 1;
pub const CHECKPOINT_WORD: usize = 2;
const PROCESS_WORDS: usize = 3;

pub fn control_words(processes: usize) -> usize {
    PROCESS_WORDS + 3 * processes
}

pub fn begun_word(process: usize) -> usize {
    PROCESS_WORDS + 3 * process
}

pub fn done_word(process: usize) -> usize {
    PROCESS_WORDS + 1 + 3 * process
}

pub fn part_word(process: usize) -> usize {
    PROCESS_WORDS + 2 + 3 * process
}

/// Exit codes of `gnc-worker`. The supervisor restarts the group after a crash, a signal, a
/// hang or [`EXIT_FAILED`]; it does not after the other codes, which would recur.
pub const EXIT_OK: u8 = 0;
/// A failure a restart may cure (a peer vanished, an I/O error).
pub const EXIT_FAILED: u8 = 1;
/// Bad arguments or an environment that cannot honour the determinism contract.
pub const EXIT_USAGE: u8 = 2;
/// Told to stop: the generation changed or the supervisor is gone.
pub const EXIT_STOPPED: u8 = 3;
/// The job itself failed (diverged, invalid spec or data, another job's checkpoint): every
/// restart would fail the same way.
pub const EXIT_JOB_FAILED: u8 = 4;

/// In a job across hosts (MPI), the file in the output directory where rank 0 records the
/// last generation whose ranks all joined; a launch that fails before it is not restarted.
pub const MPI_STARTED_FILE: &str = ".mpi-generation-started";

/// In a job across hosts, the directory in the output directory where each rank leaves a
/// file named by its rank as it starts, before MPI's start-up: the launcher names the ranks
/// that never arrived when a generation does not start in time.
pub const MPI_ARRIVED_DIR: &str = ".mpi-ranks-arrived";

/// In a job across hosts, the file in the output directory through which the launcher asks
/// for a checkpoint or a stop (`crate::request::file`).
pub const MPI_REQUEST_FILE: &str = ".mpi-request";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_job_is_name_safe_and_differs_by_directory() {
        let a = shm_job("demo-gnc.v2", Path::new("/tmp/a"));
        let b = shm_job("demo-gnc.v2", Path::new("/tmp/b"));
        assert!(a.starts_with("demo_gnc_v2_"), "{a}");
        assert_ne!(a, b);
        segment_name(&a, 0, CONTROL).unwrap();
    }

    #[test]
    fn control_words_do_not_overlap() {
        let mut all: Vec<usize> = (0..4)
            .flat_map(|p| [begun_word(p), done_word(p), part_word(p)])
            .collect();
        all.extend([GENERATION_WORD, REQUEST_WORD, CHECKPOINT_WORD]);
        all.sort();
        all.dedup();
        assert_eq!(all, (0..control_words(4)).collect::<Vec<_>>());
    }
}
