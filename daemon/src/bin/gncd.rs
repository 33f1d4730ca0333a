//! `gncd`: the gnc daemon. `gncd [--config PATH]` serves until SIGTERM; `gncd validate
//! [--config PATH]` checks the config (systemd's ExecStartPre); `gncd reload --pid PID` makes
//! a running gncd read its config again (ExecReload); `gncd man` prints gncd(8).
//! Exit status: 0 done, 1 error (the message on stderr), 2 bad usage.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use gnc_daemon::gncd::{self, config::DEFAULT_CONFIG};

#[derive(Parser)]
#[command(name = "gncd", version, about = "gnc training daemon")]
struct Args {
    /// The daemon's config file.
    #[arg(long, global = true, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand)]
enum Sub {
    /// Check the config file and exit (0: valid, 1: not).
    Validate,
    /// Tell the running gncd of process PID to read its config again (sends SIGHUP; the
    /// unit's ExecReload, so reloading needs no `kill` binary).
    Reload {
        /// The daemon's process id (systemd passes $MAINPID).
        #[arg(long)]
        pid: i32,
    },
    /// Print the man page, gncd(8), in roff (e.g. `gncd man > gncd.8`).
    Man,
}

/// Sends SIGHUP to the daemon `pid`; refuses pids that name no single process.
fn reload(pid: i32) -> anyhow::Result<()> {
    anyhow::ensure!(pid > 0, "--pid {pid} is not a process id");
    let target = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGHUP)
        .map_err(|e| anyhow::anyhow!("cannot signal gncd (pid {pid}) to reload: {e}"))
}

/// The sections of gncd(8) that clap cannot derive: what the daemon does, then (below) its
/// signals, files and exit status. Config keys are described in README.md and
/// systemd/gncd.toml.
const MAN_DESCRIPTION: &str = r#".SH DESCRIPTION
gncd runs gnc training jobs submitted with gncctl(1), one at a time, as a group of
gnc-worker processes (one per device) that reduce gradients over shared memory in a fixed
order, so a job gives the same bits whatever the number of processes and after any restart.
It listens on a Unix socket (versioned JSON lines), keeps its queue, job logs, metrics and
checkpoints under the state directory, and resumes a job left running by a killed daemon
from its newest checkpoint.
"#;

/// Sections of gncd(8) after the options and subcommands.
const MAN_REFERENCE: &str = r#".SH SIGNALS
.TP
.B SIGTERM, SIGINT
Stop: the running job writes a checkpoint, is re-queued, and gncd exits 0.
.TP
.B SIGHUP
(or \fBgncd reload --pid\fR \fIPID\fR) Read the config file again; an invalid file is logged and the old config kept. Devices and
limits apply from the next job start, the socket and state directory after a restart.
.SH FILES
.TP
.I /etc/gnc/gncd.toml
The config (unknown keys are errors; check it with \fBgncd validate\fR).
.TP
.I /run/gnc/gncd.sock
The socket (config key \fBsocket\fR).
.TP
.I /var/lib/gnc/jobs/<id>/
A job: job.json, spec.json, job.log and out/ with metrics.jsonl, checkpoints and
result.json (config key \fBstate_dir\fR).
.TP
.I /dev/shm/gnc-*
Shared-memory segments of the running job; stale ones are removed at the next start.
.SH EXIT STATUS
0 on a clean stop, 1 on an error (the message on standard error), 2 on bad usage.
.SH SEE ALSO
gncctl(1), systemd.service(5)
"#;

fn man() -> std::io::Result<()> {
    let page = clap_mangen::Man::new(Args::command()).section("8");
    let mut out = std::io::stdout().lock();
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    std::io::Write::write_all(&mut out, MAN_DESCRIPTION.as_bytes())?;
    page.render_options_section(&mut out)?;
    page.render_subcommands_section(&mut out)?;
    std::io::Write::write_all(&mut out, MAN_REFERENCE.as_bytes())?;
    page.render_version_section(&mut out)?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // journald and log files want plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let result: anyhow::Result<()> = match args.command {
        Some(Sub::Validate) => gncd::validate(&args.config)
            .map(|_| println!("{}: valid", args.config.display()))
            .map_err(Into::into),
        Some(Sub::Reload { pid }) => reload(pid),
        Some(Sub::Man) => man().map_err(|e| anyhow::anyhow!("cannot print the man page: {e}")),
        None => gncd::run(&args.config).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gncd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
