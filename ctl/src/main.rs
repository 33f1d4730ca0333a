//! gncctl: the gnc control CLI. `main` only parses arguments and maps errors to exit codes;
//! each subcommand lives in its own file. This binary does not link libtorch: the training
//! commands (`run`, `verify`, `analyze`, `doctor`) are carried out by `gnc-run` (see `trainer`).

use clap::Parser;

use gnc_ctl::cli::{Cli, Command};
use gnc_ctl::{cmd, daemon, trainer};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    gnc_ctl::init_logging();
    let socket = daemon::socket_path(cli.socket);
    let result = match cli.command {
        Command::Run(args) => trainer::exec(trainer::spec_level(&args.spec)),
        Command::Verify(args) => trainer::exec(
            args.level
                .or_else(|| trainer::recorded_level(&args.run_dir)),
        ),
        Command::Analyze(args) => trainer::exec(trainer::recorded_level(&args.run_dir)),
        Command::Doctor(args) => trainer::exec(
            args.level
                .or_else(|| args.run_dir.as_deref().and_then(trainer::recorded_level)),
        ),
        Command::Submit(args) => cmd::submit::run(args, &socket),
        Command::List(args) => cmd::list::run(args, &socket),
        Command::Status(args) => cmd::status::run(args, &socket),
        Command::Watch(args) => cmd::watch::run(args, &socket),
        Command::Logs(args) => cmd::logs::run(args, &socket),
        Command::Metrics(args) => cmd::metrics::run(args, &socket),
        Command::Pause(args) => cmd::pause::run(args, &socket),
        Command::Resume(args) => cmd::resume::run(args, &socket),
        Command::Cancel(args) => cmd::cancel::run(args, &socket),
        Command::CheckpointNow(args) => cmd::checkpoint_now::run(args, &socket),
        Command::Shutdown(args) => cmd::shutdown::run(args, &socket),
        Command::Plot(args) => cmd::plot::run(args),
        Command::Completions(args) => cmd::completions::run(args),
        Command::Man => cmd::man::run(),
    };
    gnc_ctl::finish(result)
}
