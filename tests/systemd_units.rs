//! The files in `systemd/`: the unit passes `systemd-analyze verify` without a warning (with
//! its binaries pointed at the ones just built, since verify checks they exist), the
//! sysusers and tmpfiles snippets apply to an empty root, and the example config validates.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn systemd_dir() -> PathBuf {
    gnc_tests::repo_root().join("systemd")
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (is systemd installed?)"))
}

/// Copies the unit into `dir` with `/usr/bin/gncd` replaced by the built binary and `edit`
/// applied, and runs `systemd-analyze verify` on it.
fn verify(dir: &Path, edit: impl Fn(String) -> String) -> Output {
    let unit = std::fs::read_to_string(systemd_dir().join("gncd.service")).unwrap();
    let gncd = gnc_tests::bin_dir().join("gncd");
    assert!(gncd.is_file(), "build first: {}", gncd.display());
    let unit = edit(unit.replace("/usr/bin/gncd", gncd.to_str().unwrap()));
    let path = dir.join("gncd.service");
    std::fs::write(&path, unit).unwrap();
    run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path))
}

#[test]
fn the_unit_verifies_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let clean = verify(dir.path(), |u| u);
    let stderr = String::from_utf8_lossy(&clean.stderr);
    assert!(clean.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze warned: {stderr}");
    // With the drop-in for jobs across hosts (its [Service] lines read after the unit's).
    let hosts = std::fs::read_to_string(systemd_dir().join("gncd-hosts.conf")).unwrap();
    assert!(hosts.contains("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK"));
    let with_hosts = verify(dir.path(), |u| format!("{u}\n{hosts}"));
    let stderr = String::from_utf8_lossy(&with_hosts.stderr);
    assert!(
        with_hosts.status.success() && stderr.trim().is_empty(),
        "{stderr}"
    );
    // verify reports an unknown key only as a warning: the check above must see it.
    let typo = verify(dir.path(), |u| {
        u.replace("NotifyAccess=main", "NotifyAcess=main")
    });
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(stderr.contains("NotifyAcess"), "{stderr}");
    let unit = std::fs::read_to_string(systemd_dir().join("gncd.service")).unwrap();
    for needle in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=gnc",
        "Group=gnc",
        "StateDirectory=gnc",
        "RuntimeDirectory=gnc",
        "RemoveIPC=no",
        "ExecStartPre=/usr/bin/gncd validate --config /etc/gnc/gncd.toml",
        "ExecReload=/usr/bin/gncd reload --pid $MAINPID",
        "ReadWritePaths=/dev/shm",
        "DeviceAllow=/dev/nvidiactl rw",
    ] {
        assert!(unit.contains(needle), "{needle} missing from gncd.service");
    }
}

#[test]
fn sysusers_and_tmpfiles_apply_to_an_empty_root() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let sysusers = run(Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(systemd_dir().join("gnc.sysusers")));
    assert!(
        sysusers.status.success(),
        "{}",
        String::from_utf8_lossy(&sysusers.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("gnc:")), "{passwd}");
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("gnc:")), "{group}");
    // tmpfiles gives the directories to gnc, which only root may do.
    if !is_root() {
        eprintln!("not root: tmpfiles not applied");
        return;
    }
    let tmpfiles = run(Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .arg(systemd_dir().join("gnc.tmpfiles")));
    assert!(
        tmpfiles.status.success(),
        "{}",
        String::from_utf8_lossy(&tmpfiles.stderr)
    );
    for dir in ["etc/gnc", "var/lib/gnc", "run/gnc"] {
        assert!(root.path().join(dir).is_dir(), "{dir}");
    }
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

#[test]
fn the_example_config_validates() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(systemd_dir().join("gncd.toml")).unwrap();
    // Its data root must exist to validate; everything else is as shipped.
    let config = example.replace("/srv/gnc/data", dir.path().to_str().unwrap());
    assert_ne!(config, example);
    let path = dir.path().join("gncd.toml");
    std::fs::write(&path, config).unwrap();
    let output = run(Command::new(gnc_tests::bin_dir().join("gncd"))
        .args(["validate", "--config"])
        .arg(&path));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_man_page_the_unit_names_is_what_gncd_man_prints() {
    let unit = std::fs::read_to_string(systemd_dir().join("gncd.service")).unwrap();
    assert!(unit.contains("Documentation=man:gncd(8)"), "{unit}");
    let output = run(Command::new(gnc_tests::bin_dir().join("gncd")).arg("man"));
    assert!(output.status.success());
    let page = String::from_utf8(output.stdout).unwrap();
    let title = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect(".TH line");
    assert!(title.starts_with(".TH gncd 8"), "{title}");
    for section in ["SIGNALS", "FILES", "EXIT STATUS", "OPTIONS"] {
        assert!(
            page.contains(&format!(".SH {section}")),
            "no {section}: {page}"
        );
    }
    assert!(page.contains("SIGHUP"), "{page}");
}
