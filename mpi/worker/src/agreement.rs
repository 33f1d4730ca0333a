//! Before any work, the ranks of a job check that they agree on what they run: the same gnc
//! build and the same spec (a host with another installation, or a launcher handing ranks
//! different files, would otherwise train something no single host would). The first rank
//! that differs from rank 0 is named with its host; every rank then stops with the same error.
//! Having passed it, rank 0 records that every rank of this generation joined, which tells the
//! launcher that a later failure is worth a restart.

use gnc_proto::ValidSpec;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use crate::MpiWorkerError;

/// Bytes each rank contributes (its description, padded with zeros).
const WIDTH: usize = 160;

/// What must be equal across ranks.
pub fn fingerprint(spec: &ValidSpec) -> String {
    format!(
        "gnc {} (commit {}), spec {}",
        env!("CARGO_PKG_VERSION"),
        env!("GNC_COMMIT"),
        spec.spec_hash()
    )
}

/// Every rank calls it with its own fingerprint; all get the same verdict.
pub fn check(comm: &SimpleCommunicator, mine: &str) -> Result<(), MpiWorkerError> {
    let host = mpi::environment::processor_name().unwrap_or_else(|_| "?".into());
    let mut entry = [0u8; WIDTH];
    let text = format!("{host}\n{mine}");
    let n = text.len().min(WIDTH);
    entry[..n].copy_from_slice(&text.as_bytes()[..n]);
    let mut all = vec![0u8; WIDTH * comm.size() as usize];
    comm.all_gather_into(&entry[..], &mut all[..]);
    let decode = |chunk: &[u8]| -> (String, String) {
        let text = String::from_utf8_lossy(chunk)
            .trim_end_matches('\0')
            .to_string();
        let (host, what) = text.split_once('\n').unwrap_or(("?", &text));
        (host.to_string(), what.to_string())
    };
    let entries: Vec<_> = all.chunks(WIDTH).map(decode).collect();
    let (host0, first) = &entries[0];
    match entries
        .iter()
        .enumerate()
        .find(|(_, (_, what))| what != first)
    {
        None => Ok(()),
        Some((rank, (host, theirs))) => Err(MpiWorkerError::Disagree {
            rank,
            host: host.clone(),
            theirs: theirs.clone(),
            host0: host0.clone(),
            first: first.clone(),
        }),
    }
}
