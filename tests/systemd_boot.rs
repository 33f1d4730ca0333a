//! `gncd.service` under a real systemd: a minimal Debian bookworm root (debootstrap
//! `--variant=minbase`, built by `make nspawn-root`) booted with `systemd-nspawn`, where
//! `assets/systemd-boot.sh` installs gnc as a package would and drives the unit: start and
//! STATUS=, a job, `systemctl stop` (checkpoint), start, `systemctl reload` (the root has no
//! procps), SIGKILL and Restart=on-failure, and the job to its end with the hash of an
//! uninterrupted `gncctl run`.
//!
//! Skipped, saying why, where the machine cannot boot such a root: not root, no
//! `systemd-nspawn`, or no root built.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `make nspawn-root` puts the root (a fixture this test writes into); beside it,
/// `bookworm.complete` says debootstrap finished.
fn root_dir() -> PathBuf {
    gnc_tests::repo_root().join("target/nspawn/bookworm")
}

fn skip_reason(root: &Path) -> Option<String> {
    if !nix_is_root() {
        return Some("booting a container needs root".into());
    }
    let nspawn = Command::new("systemd-nspawn").arg("--version").output();
    if !nspawn.is_ok_and(|o| o.status.success()) {
        return Some("systemd-nspawn is not installed (package systemd-container)".into());
    }
    if !root.with_extension("complete").exists() {
        return Some(format!(
            "no minimal root at {} (`make nspawn-root` builds it with debootstrap)",
            root.display()
        ));
    }
    None
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// A teacher–student GNC job of 768 iterations, checkpoints every 4.
fn job() -> String {
    gnc_tests::teacher_student_job(&gnc_tests::TinyJob {
        name: "boot",
        method: gnc_tests::METHODS[1].1,
        seed: 11,
        train_examples: 16384,
        test_examples: 128,
        workers: 16,
        small_batch: 4,
        parallel: "",
    })
}

const CONFIG: &str = r#"
devices = "cpu:2"
state_dir = "/var/lib/gnc"
socket = "/run/gnc/gncd.sock"
allowed_data_roots = ["/srv/gnc/data"]
"#;

const TEST_UNIT: &str = "[Unit]
Description=gnc boot test (tests/systemd_boot.rs)
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/bin/gnc-boot-test
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
";

/// Where the container sees the project's venv, and in it libtorch: outside /tmp, which the
/// unit's `PrivateTmp=yes` replaces (a checkout under /tmp would vanish for the service).
const VENV: &str = "/opt/gnc/venv";

/// libtorch's directory in the project's venv, relative to the venv.
fn torch_lib(venv: &Path) -> PathBuf {
    let lib = venv.join("lib");
    let python = std::fs::read_dir(&lib)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("python"))
        .expect("a python directory in the venv");
    Path::new("lib")
        .join(python.file_name())
        .join("site-packages/torch/lib")
}

/// Writes what the package would not ship: the config, the data root, the test's unit, and
/// the drop-in an installation adds to find libtorch (README: `LD_LIBRARY_PATH`).
fn prepare(root: &Path, torch_lib: &Path) {
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("etc/gnc/gncd.toml", CONFIG);
    write("etc/systemd/system/gnc-boot-test.service", TEST_UNIT);
    write(
        "etc/systemd/system/gncd.service.d/libtorch.conf",
        &format!(
            "[Service]\nEnvironment=LD_LIBRARY_PATH={}\n",
            Path::new(VENV).join(torch_lib).display()
        ),
    );
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    let link = wants.join("gnc-boot-test.service");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("../gnc-boot-test.service", link).unwrap();
    for dir in ["srv/gnc/data", "results"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
}

#[test]
fn the_unit_starts_stops_reloads_and_survives_sigkill_under_a_real_systemd() {
    let root = root_dir();
    if let Some(why) = skip_reason(&root) {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = gnc_tests::write_spec(dir.path(), "boot", &job());
    let expected = gnc_tests::run_job(&spec, &dir.path().join("reference"), &[]);
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    std::fs::copy(&spec, results.join("job.toml")).unwrap();
    let venv = gnc_tests::repo_root().join(".venv");
    prepare(&root, &torch_lib(&venv));

    let bin = gnc_tests::bin_dir();
    let repo = gnc_tests::repo_root();
    let bind_ro = |from: PathBuf, to: &str| format!("--bind-ro={}:{to}", from.display());
    let mut command = Command::new("timeout");
    command
        .args(["600", "systemd-nspawn", "--quiet", "--boot"])
        .arg(format!("--directory={}", root.display()))
        .args(["--register=no", "--keep-unit", "--console=pipe"])
        .arg(bind_ro(bin.join("gncd"), "/usr/bin/gncd"))
        .arg(bind_ro(bin.join("gncctl"), "/usr/bin/gncctl"))
        .arg(bind_ro(bin.join("gnc-worker"), "/usr/bin/gnc-worker"))
        .arg(bind_ro(
            repo.join("systemd/gncd.service"),
            "/etc/systemd/system/gncd.service",
        ))
        .arg(bind_ro(
            repo.join("systemd/gnc.sysusers"),
            "/usr/lib/sysusers.d/gnc.conf",
        ))
        .arg(bind_ro(
            repo.join("systemd/gnc.tmpfiles"),
            "/usr/lib/tmpfiles.d/gnc.conf",
        ))
        .arg(bind_ro(
            repo.join("tests/assets/systemd-boot.sh"),
            "/usr/local/bin/gnc-boot-test",
        ))
        .arg(bind_ro(venv.clone(), VENV))
        .arg(format!("--bind={}:/results", results.display()));
    let output = command.output().expect("systemd-nspawn runs");
    let read = |name: &str| std::fs::read_to_string(results.join(name)).unwrap_or_default();
    let log = read("log");
    let context = format!(
        "{command:?}: {}\nlog:\n{log}\nconsole:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let failed = read("failed");
    assert!(failed.is_empty(), "{failed}\n{context}");
    assert_eq!(
        read("hash").trim(),
        expected["params_sha256"].as_str().unwrap(),
        "{context}"
    );
    for step in [
        "STATUS=",
        "checkpoint at",
        "reloaded",
        "restarted as pid",
        "finished",
    ] {
        assert!(log.contains(step), "no `{step}` step: {context}");
    }
    eprintln!("{log}");
}
