//! Before any work, the ranks of a job check that they agree on what they run: the same gnc
//! build and the same spec (a host with another installation, or a launcher handing ranks
//! different files, would otherwise train something no single host would). The first rank
//! that differs from rank 0 is named with its host; every rank then stops with the same error.
//! The processes of one host must also be on one machine, since they share memory.
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

/// Every rank calls it with its own fingerprint; all get the same verdict. Ranks that are one
/// host's `per_host` processes must also run on one machine.
pub fn check(comm: &SimpleCommunicator, mine: &str, per_host: usize) -> Result<(), MpiWorkerError> {
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
    if let Some((rank, (host, theirs))) = entries
        .iter()
        .enumerate()
        .find(|(_, (_, what))| what != first)
    {
        return Err(MpiWorkerError::Disagree {
            rank,
            host: host.clone(),
            theirs: theirs.clone(),
            host0: host0.clone(),
            first: first.clone(),
        });
    }
    split_host(&entries, per_host)
}

/// The first rank that runs on another machine than its host's first process.
fn split_host(entries: &[(String, String)], per_host: usize) -> Result<(), MpiWorkerError> {
    let per_host = per_host.max(1);
    for (rank, (host, _)) in entries.iter().enumerate() {
        let first = rank - rank % per_host;
        let first_host = &entries[first].0;
        if host != first_host {
            return Err(MpiWorkerError::SplitHost {
                rank,
                host: host.clone(),
                first,
                first_host: first_host.clone(),
                end: (first + per_host).min(entries.len()),
                per_host,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hosts_processes_on_two_machines_are_named() {
        let entries: Vec<(String, String)> = ["a", "a", "b", "c"]
            .iter()
            .map(|h| (h.to_string(), "same".to_string()))
            .collect();
        split_host(&entries, 1).unwrap();
        split_host(&entries[..2], 2).unwrap();
        let message = split_host(&entries, 2).unwrap_err().to_string();
        assert!(
            message.starts_with("rank 3 runs on c, but rank 2 on b: ranks 2..4"),
            "{message}"
        );
        assert!(message.contains("--map-by ppr:2:node"), "{message}");
    }
}
