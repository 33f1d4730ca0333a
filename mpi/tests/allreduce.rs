//! The MPI all-reduce under a real `mpirun`: with 1 to 4 ranks standing in for hosts (each
//! rank a process of its own), every rank's total has the bits of the one-host tree sum, for
//! worker counts that are and are not powers of two and a length no rank count divides.

use std::process::Command;

/// `mpirun` as this machine allows it: as root (CI) OpenMPI wants explicit consent, and more
/// ranks than cores need `--oversubscribe`.
pub fn mpirun(ranks: usize) -> Command {
    let mut command = Command::new("mpirun");
    command
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["--oversubscribe", "-np", &ranks.to_string()]);
    command
}

#[test]
fn every_rank_count_gives_the_one_host_bits() {
    for (m, ranks) in [(12, 1), (12, 2), (12, 3), (12, 4), (16, 4), (16, 2)] {
        let output = mpirun(ranks)
            .arg(env!("CARGO_BIN_EXE_gnc-mpi-selftest"))
            .args([m.to_string(), "100003".into()])
            .output()
            .expect("mpirun runs (make installs openmpi-bin)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let context = format!(
            "M = {m}, {ranks} ranks: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{context}");
        assert_eq!(
            stdout
                .matches("bit-equal (naive order differs: true)")
                .count(),
            ranks,
            "{context}"
        );
    }
}
