//! Load on `gncd`'s socket: N concurrent clients each asking `status` (the daemon's or a
//! job's) over and over, as `gncctl status` / `watch` users would. Runs until `--seconds`
//! pass or `--stop-file` appears, then prints one JSON object: requests answered, errors,
//! latency percentiles, and the fewest answers any client got (every client must get some).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use gnc_proto::client::Client;
use gnc_proto::socket::{Command, Reply};

#[derive(Parser)]
struct Args {
    /// gncd's socket.
    #[arg(long)]
    socket: PathBuf,
    /// Concurrent clients (one thread each).
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Pause between one client's requests; 0 floods.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Ask about this job instead of the daemon.
    #[arg(long)]
    job: Option<String>,
    /// Keep one connection per client instead of connecting for every request (as
    /// `gncctl status` does).
    #[arg(long)]
    persistent: bool,
    /// Stop after this long…
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// …or as soon as this file exists.
    #[arg(long)]
    stop_file: Option<PathBuf>,
}

#[derive(Default)]
struct Tally {
    answered: u64,
    errors: Vec<String>,
    latencies_us: Vec<u64>,
}

fn one_request(client: &mut Client, job: &Option<String>) -> anyhow::Result<()> {
    match client.request(Command::Status { job: job.clone() })? {
        Reply::Daemon { .. } | Reply::Job { .. } => Ok(()),
        other => anyhow::bail!("unexpected reply {other:?}"),
    }
}

fn client_loop(args: &Args, start: &Barrier, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut kept: Option<Client> = None;
    start.wait();
    let stop = |path: &Option<PathBuf>| path.as_deref().is_some_and(Path::exists);
    while Instant::now() < deadline && !stop(&args.stop_file) {
        let began = Instant::now();
        let result = match kept.take() {
            Some(client) => Ok(client),
            None => Client::connect(&args.socket),
        }
        .map_err(anyhow::Error::from)
        .and_then(|mut client| {
            one_request(&mut client, &args.job)?;
            if args.persistent {
                kept = Some(client);
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                tally.answered += 1;
                tally.latencies_us.push(began.elapsed().as_micros() as u64);
            }
            Err(e) => tally.errors.push(format!("{e:#}")),
        }
        std::thread::sleep(Duration::from_millis(args.interval_ms));
    }
    tally
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    let start = Arc::new(Barrier::new(args.clients));
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let began = Instant::now();
    let threads: Vec<_> = (0..args.clients)
        .map(|_| {
            let (args, start) = (args.clone(), start.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || client_loop(&args, &start, deadline))
                .context("cannot start a client thread")
        })
        .collect::<anyhow::Result<_>>()?;
    let tallies: Vec<Tally> = threads
        .into_iter()
        .map(|t| t.join().expect("client threads do not panic"))
        .collect();
    let seconds = began.elapsed().as_secs_f64();
    let mut latencies: Vec<u64> = tallies
        .iter()
        .flat_map(|t| t.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let answered: u64 = tallies.iter().map(|t| t.answered).sum();
    let errors: Vec<&String> = tallies.iter().flat_map(|t| &t.errors).collect();
    let report = serde_json::json!({
        "clients": args.clients,
        "interval_ms": args.interval_ms,
        "persistent": args.persistent,
        "seconds": seconds,
        "answered": answered,
        "requests_per_second": answered as f64 / seconds,
        "fewest_answers_per_client": tallies.iter().map(|t| t.answered).min(),
        "errors": errors.len(),
        "first_errors": errors.iter().take(5).collect::<Vec<_>>(),
        "latency_ms": {
            "p50": percentile(&latencies, 0.5),
            "p99": percentile(&latencies, 0.99),
            "max": percentile(&latencies, 1.0),
        },
    });
    println!("{report}");
    Ok(())
}
