//! gncctl's command line itself: shell completions, the man page, and the client subcommands'
//! answer when no gncd listens on the socket.

use std::os::unix::net::UnixListener;

use gnc_tests::{METHODS, gncctl, gncctl_output, tiny_job, write_spec};

/// gncctl's exit status when gncd cannot be reached (EX_UNAVAILABLE).
const UNAVAILABLE: i32 = 69;

#[test]
fn bash_completions_know_every_subcommand() {
    let o = gncctl_output(&["completions", "bash"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let script = String::from_utf8(o.stdout).unwrap();
    assert!(
        script.contains("_gncctl()"),
        "not a bash completion function"
    );
    for sub in [
        "run",
        "submit",
        "list",
        "status",
        "watch",
        "logs",
        "metrics",
        "pause",
        "resume",
        "cancel",
        "checkpoint-now",
        "shutdown",
        "plot",
        "verify",
        "completions",
        "man",
    ] {
        assert!(
            script.contains(&format!("gncctl,{sub})")),
            "the bash completions do not offer `{sub}`"
        );
    }
    assert!(
        script.contains("--socket"),
        "the global --socket flag is not completed"
    );
}

#[test]
fn unknown_shells_are_refused() {
    let o = gncctl_output(&["completions", "cmd.exe"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cmd.exe"));
}

#[test]
fn the_man_page_is_roff() {
    let o = gncctl_output(&["man"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = String::from_utf8(o.stdout).unwrap();
    let th = page
        .lines()
        .find(|l| l.starts_with(".TH "))
        .expect("a .TH title line");
    assert!(th.starts_with(".TH gncctl 1"), "{th}");
    assert!(
        page.contains(".SH NAME") && page.contains(".SH SYNOPSIS"),
        "{page}"
    );
    assert!(page.contains("verify") && page.contains("checkpoint\\-now"));
}

/// Every client subcommand, with the arguments it needs.
fn client_commands(spec: &str) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        s(&["submit", spec]),
        s(&["list"]),
        s(&["status"]),
        s(&["status", "1", "--json"]),
        s(&["watch", "1"]),
        s(&["logs", "1", "--tail", "5"]),
        s(&["metrics", "1"]),
        s(&["pause", "1"]),
        s(&["resume", "1"]),
        s(&["cancel", "1"]),
        s(&["checkpoint-now", "1"]),
        s(&["shutdown", "--json"]),
    ]
}

fn assert_unreachable(o: &std::process::Output, socket: &std::path::Path, args: &[String]) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(UNAVAILABLE),
        "gncctl {args:?}: {stderr}"
    );
    assert!(
        stderr.contains("is gncd running?") && stderr.contains(&socket.display().to_string()),
        "gncctl {args:?} does not say that gncd is not reachable at the socket: {stderr}"
    );
    assert!(
        o.stdout.is_empty(),
        "gncctl {args:?} printed {:?}",
        o.stdout
    );
}

#[test]
fn client_subcommands_say_when_gncd_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "client", &tiny_job("client", METHODS[0].1));
    // No file at all, through the flag.
    let missing = dir.path().join("missing.sock");
    for args in client_commands(spec.to_str().unwrap()) {
        let o = gncctl()
            .arg("--socket")
            .arg(&missing)
            .args(&args)
            .env_remove("GNC_SOCKET")
            .output()
            .unwrap();
        assert_unreachable(&o, &missing, &args);
    }
    // A socket file that nobody listens on any more, through the environment.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    for args in client_commands(spec.to_str().unwrap()) {
        let o = gncctl()
            .args(&args)
            .env("GNC_SOCKET", &stale)
            .output()
            .unwrap();
        assert_unreachable(&o, &stale, &args);
    }
}

#[test]
fn submit_checks_the_spec_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "bad", "name = \"bad\"\nseed = 1\n");
    let missing = dir.path().join("missing.sock");
    let o = gncctl()
        .arg("--socket")
        .arg(&missing)
        .arg("submit")
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad.toml") && !stderr.contains("gncd running"),
        "{stderr}"
    );
}
