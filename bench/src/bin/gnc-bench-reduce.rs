//! Times gnc's cross-process all-reduce (issue 3): `ShardedReducer::all_reduce` over real
//! `/dev/shm` segments between P processes, against `memcpy` of the same bytes measured in
//! the same run.
//!
//! The parent creates the two reduction segments (as `daemon/src/segments.rs` does), then
//! re-executes this binary as P children (hidden `--role` flags). Every child owns one block
//! of the canonical tree over M logical workers (`tree::even_layout`) and a block sum of `len`
//! f32 in an ordinary `Vec`; one timed all-reduce is one `all_reduce` call doing what a
//! training iteration's call does: its fill callback copies that vector into the process's
//! slot (the in-place write a worker's `flatten_into` does) and its shard visitor copies each
//! reduced shard, where it lies in shared memory, into an output `Vec` (as the worker copies
//! them straight into its tensors): input vector to output vector, one copy in and one copy
//! out. The time spent in the fill callback is recorded too, so the reduction proper (after
//! the block sum is in place) can be reported separately.
//!
//! Per size, in this order:
//! 1. `memcpy`: this process alone copies `len` f32 between two pre-faulted vectors
//!    (`copy_from_slice`), many times back to back (median time, *hot*); then the same with a
//!    source that is in no cache (a ring of vectors, 128 MiB in all);
//! 2. `memcpy` in P processes at once (each its own pair of vectors), started together;
//! 3. the all-reduce in P processes, in chunks of [`CHUNK`] calls started together: `warmup`
//!    untimed calls, then `iters` timed ones. After each chunk the children wait (blocked on
//!    a pipe, using no CPU) while this process alone does [`CHUNK`] timed memcpys of the same
//!    bytes: the *interleaved* single-core memcpy that the fraction of memcpy is taken
//!    against, measured under the same cache and machine conditions as the all-reduce. The
//!    time of call t is the longest of the P processes' times for call t; the result of the
//!    last call is checked bit for bit against `tree::combine_blocks` over all P inputs;
//! 4. with `--phases`: a step-for-step copy of `all_reduce` with a clock read between the
//!    steps, in fresh segments, to show where the time goes (median per step and process).
//!
//! Prints one JSON line per size (`"bench":"gnc-reduce"`); `bench/run_shm_bench.py` turns them
//! into `bench/RESULTS.md`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, ValueEnum};
use gnc_bench::median;
use gnc_shm::{
    Producer, Reader, ReductionGeometry, Segment, SegmentSpec, ShardedReducer, SlotArray, job_id,
    segment_name, shard_range,
};
use gnc_tree::{self as tree, Block};
use serde_json::{Value, json};

const GENERATION: u64 = 1;
const PEER_TIMEOUT: Duration = Duration::from_secs(60);
const READY: &str = "ready";
/// All-reduce calls between two interleaved memcpy runs of the parent.
const CHUNK: usize = 5;

/// Times gnc's shared-memory all-reduce against memcpy of the same bytes.
#[derive(Debug, Parser)]
#[command(name = "gnc-bench-reduce")]
struct Args {
    /// P: processes taking part in the all-reduce.
    #[arg(long, default_value_t = 2)]
    processes: usize,
    /// M: logical workers (the tree the blocks are subtrees of; P must split it evenly).
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Vector lengths in f32, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1048576,1900510,4194304,16777216"
    )]
    sizes: Vec<usize>,
    /// Untimed all-reduces (and copies) first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Timed all-reduces (and copies) per size.
    #[arg(long, default_value_t = 50)]
    iters: usize,
    /// Also time the all-reduce's steps one by one (a step-for-step copy of it, run after
    /// the real one) and report the median of each per process.
    #[arg(long)]
    phases: bool,
    #[arg(long, hide = true, value_enum)]
    role: Option<Role>,
    #[arg(long, hide = true)]
    rank: Option<usize>,
    #[arg(long, hide = true)]
    job: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    Reduce,
    Memcpy,
    Phases,
}

impl Role {
    fn flag(self) -> &'static str {
        match self {
            Role::Reduce => "reduce",
            Role::Memcpy => "memcpy",
            Role::Phases => "phases",
        }
    }
}

/// Process `rank`'s input: distinct, deterministic, of varied magnitude, so a wrong order of
/// additions or a stale slot would change bits.
fn input(rank: usize, len: usize) -> Vec<f32> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (rank as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let exponent = ((state >> 33) % 16) as i32 - 8;
            let sign = if state >> 63 == 0 { 1.0 } else { -1.0 };
            sign * (1.0 + (state >> 40) as f32 / (1u64 << 24) as f32) * 2f32.powi(exponent)
        })
        .collect()
}

/// A vector of `len` floats whose pages are all faulted in.
fn touched(len: usize) -> Vec<f32> {
    let mut v = vec![0f32; len];
    v.iter_mut().enumerate().for_each(|(i, x)| *x = i as f32);
    v
}

/// The block-sum and shard segments of one all-reduce job; unlinked when dropped.
fn create_reduction_segments(job: &str, geometry: &ReductionGeometry) -> Result<[Segment; 2]> {
    let create = |what, geometry| -> Result<Segment> {
        let name = segment_name(job, GENERATION, what)?;
        Ok(Segment::create(&name, &segment_spec(job, geometry))?)
    };
    Ok([
        create("blocksums", geometry.block_sums)?,
        create("shards", geometry.shards)?,
    ])
}

fn segment_spec(job: &str, geometry: gnc_shm::Geometry) -> SegmentSpec {
    SegmentSpec {
        job_id: job_id(job),
        generation: GENERATION,
        geometry,
    }
}

/// Printed by a reduce child after each chunk of calls; it then waits for the next go.
const CHUNK_DONE: &str = "chunk";

/// Prints `ready` and waits for the parent's go (one line on stdin): the start barrier.
fn barrier() -> Result<()> {
    println!("{READY}");
    std::io::stdout().flush()?;
    wait_for_go()
}

/// Blocks until the parent writes `go` on stdin.
fn wait_for_go() -> Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    ensure!(
        line.trim() == "go",
        "expected 'go' from the parent, got {line:?}"
    );
    Ok(())
}

/// Times `iters` copies of `len` floats (after `warmup`), in ns each.
fn time_memcpy(len: usize, warmup: usize, iters: usize) -> Vec<u64> {
    let src = touched(len);
    let mut dst = touched(len);
    memcpy_loop(&src, &mut dst, warmup, iters)
}

/// Bytes of buffers `time_memcpy_cold` cycles through: four times this machine's 32 MiB L3.
const COLD_BYTES: usize = 128 << 20;

/// Like [`time_memcpy`], but each copy reads a buffer that has left the caches: the copies
/// go around a ring of buffers of [`COLD_BYTES`] in all (at least 3), buffer k to k + 1.
fn time_memcpy_cold(len: usize, warmup: usize, iters: usize) -> Vec<u64> {
    let count = COLD_BYTES.div_ceil(4 * len).max(3);
    let mut ring: Vec<Vec<f32>> = (0..count).map(|_| touched(len)).collect();
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let k = i % count;
        let start = Instant::now();
        if k + 1 < count {
            let (head, tail) = ring.split_at_mut(k + 1);
            tail[0].copy_from_slice(std::hint::black_box(&head[k]));
        } else {
            let (head, tail) = ring.split_at_mut(k);
            head[0].copy_from_slice(std::hint::black_box(&tail[0]));
        }
        std::hint::black_box(&mut ring);
        let ns = start.elapsed().as_nanos() as u64;
        if i >= warmup {
            times.push(ns);
        }
    }
    times
}

fn memcpy_loop(src: &[f32], dst: &mut [f32], warmup: usize, iters: usize) -> Vec<u64> {
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let start = Instant::now();
        dst.copy_from_slice(std::hint::black_box(src));
        std::hint::black_box(&mut *dst);
        let ns = start.elapsed().as_nanos() as u64;
        if i >= warmup {
            times.push(ns);
        }
    }
    times
}

/// A child's part: `--role memcpy` or `--role reduce`. Prints one JSON line.
fn child(args: &Args, role: Role) -> Result<()> {
    let rank = args.rank.context("--rank")?;
    let len = *args.sizes.first().context("--sizes")?;
    match role {
        Role::Memcpy => {
            let src = touched(len);
            let mut dst = touched(len);
            barrier()?;
            let times = memcpy_loop(&src, &mut dst, args.warmup, args.iters);
            println!("{}", json!({ "rank": rank, "ns": times }));
        }
        Role::Phases => phases_child(args, rank, len)?,
        Role::Reduce => {
            let job = args.job.as_deref().context("--job")?;
            let p = args.processes;
            let blocks = tree::even_layout(args.workers, p)?;
            let geometry = ReductionGeometry::new(p as u32, len);
            let open = |what, geometry| open_array(job, what, geometry);
            let mut reducer = ShardedReducer::new(
                rank,
                args.workers,
                &blocks,
                len,
                open("blocksums", geometry.block_sums)?,
                open("shards", geometry.shards)?,
            )?;
            let mine = input(rank, len);
            let mut out = touched(len);
            let (mut total_ns, mut fill_ns) = (Vec::new(), Vec::new());
            barrier()?;
            for iteration in 0..(args.warmup + args.iters) as u64 {
                if iteration > 0 && (iteration as usize).is_multiple_of(CHUNK) {
                    // The parent's interleaved memcpys run while this process sleeps here.
                    println!("{CHUNK_DONE}");
                    std::io::stdout().flush()?;
                    wait_for_go()?;
                }
                let mut fill = 0u64;
                let start = Instant::now();
                reducer.all_reduce(
                    iteration,
                    |slot| {
                        let begin = Instant::now();
                        slot.copy_from_slice(&mine);
                        fill = begin.elapsed().as_nanos() as u64;
                    },
                    |range, shard| out[range].copy_from_slice(shard),
                    PEER_TIMEOUT,
                )?;
                let ns = start.elapsed().as_nanos() as u64;
                if iteration >= args.warmup as u64 {
                    total_ns.push(ns);
                    fill_ns.push(fill);
                }
            }
            // The last result, bit for bit, against the single-process tree over all inputs.
            let inputs: Vec<Vec<f32>> = (0..p)
                .map(|r| {
                    if r == rank {
                        mine.clone()
                    } else {
                        input(r, len)
                    }
                })
                .collect();
            let views: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            let mut expected = vec![0f32; len];
            tree::combine_blocks(&mut expected, args.workers, &blocks, &views)?;
            let exact = out
                .iter()
                .zip(&expected)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            println!(
                "{}",
                json!({ "rank": rank, "ns": total_ns, "fill_ns": fill_ns, "exact": exact })
            );
        }
    }
    Ok(())
}

fn open_array(job: &str, what: &str, geometry: gnc_shm::Geometry) -> Result<Arc<SlotArray>> {
    let name = segment_name(job, GENERATION, what)?;
    let segment = Segment::open(&name, &segment_spec(job, geometry))?;
    Ok(Arc::new(SlotArray::new(segment)?))
}

/// Phases of one all-reduce, in the order `ShardedReducer::all_reduce` runs them.
const PHASES: [&str; 7] = [
    "wait_slot_free",
    "fill",
    "wait_block_sums",
    "wait_shard_free",
    "reduce_shard",
    "wait_shards",
    "gather",
];

/// `--role phases`: the steps of `ShardedReducer::all_reduce` (shm/src/reduce.rs), copied
/// here step for step on the crate's public slot API with a clock read between steps, to
/// show where a call's time goes. Timing only; the measured calls are the real ones.
fn phases_child(args: &Args, rank: usize, len: usize) -> Result<()> {
    let job = args.job.as_deref().context("--job")?;
    let p = args.processes;
    let blocks = tree::even_layout(args.workers, p)?;
    let geometry = ReductionGeometry::new(p as u32, len);
    let block_sums = open_array(job, "blocksums", geometry.block_sums)?;
    let shards = open_array(job, "shards", geometry.shards)?;
    let mut block_sum_slot = Producer::claim(block_sums.clone(), rank)?;
    let mut block_sum_reader = Reader::claim(block_sums, rank)?;
    let mut shard_slot = Producer::claim(shards.clone(), rank)?;
    let mut shard_reader = Reader::claim(shards, rank)?;
    let mine = input(rank, len);
    let mut out = touched(len);
    let mut times: Vec<Vec<u64>> = vec![Vec::new(); PHASES.len() + 1];
    barrier()?;
    for iteration in 0..(args.warmup + args.iters) as u64 {
        let mut t = [0u64; PHASES.len()];
        let start = Instant::now();
        let mut last = start;
        let mut lap = |phase: usize, t: &mut [u64]| {
            let now = Instant::now();
            t[phase] += (now - last).as_nanos() as u64;
            last = now;
        };
        let mut write = block_sum_slot.begin_write(iteration, PEER_TIMEOUT)?;
        lap(0, &mut t);
        write.copy_from_slice(&mine);
        write.publish();
        lap(1, &mut t);
        let shard = shard_range(len, p, rank);
        let mut block_shards = Vec::with_capacity(p);
        for slot in 0..p {
            let block_sum = block_sum_reader.wait_for(slot, iteration, PEER_TIMEOUT)?;
            block_shards.push(&block_sum[shard.clone()]);
        }
        lap(2, &mut t);
        let mut reduced = shard_slot.begin_write(iteration, PEER_TIMEOUT)?;
        lap(3, &mut t);
        tree::combine_blocks(
            &mut reduced[..shard.len()],
            args.workers,
            &blocks,
            &block_shards,
        )?;
        reduced.publish();
        drop(block_shards);
        block_sum_reader.finish(iteration)?;
        lap(4, &mut t);
        for slot in 0..p {
            let shard = shard_range(len, p, slot);
            let reduced = shard_reader.wait_for(slot, iteration, PEER_TIMEOUT)?;
            lap(5, &mut t);
            out[shard.clone()].copy_from_slice(&reduced[..shard.len()]);
            lap(6, &mut t);
        }
        shard_reader.finish(iteration)?;
        let total = start.elapsed().as_nanos() as u64;
        if iteration >= args.warmup as u64 {
            for (phase, ns) in t.iter().enumerate() {
                times[phase].push(*ns);
            }
            times[PHASES.len()].push(total);
        }
    }
    let mut line = json!({ "rank": rank });
    for (phase, name) in PHASES.iter().chain(["total"].iter()).enumerate() {
        line[*name] = json!(median(&ms(&times[phase])));
    }
    println!("{line}");
    Ok(())
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Starts P children of `role` for vectors of `len`, waits until all are ready, releases
/// them together and returns their JSON lines in rank order.
fn run_children(args: &Args, role: Role, len: usize, job: &str) -> Result<Vec<Value>> {
    run_children_interleaved(args, role, len, job, |_| Ok(()))
}

/// [`run_children`] for `--role reduce`, whose children stop after every [`CHUNK`] calls:
/// once all have stopped before call `iteration`, `between(iteration)` runs here while they
/// wait, then they are released together for the next chunk.
fn run_children_interleaved(
    args: &Args,
    role: Role,
    len: usize,
    job: &str,
    mut between: impl FnMut(usize) -> Result<()>,
) -> Result<Vec<Value>> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for rank in 0..args.processes {
        let mut child = Command::new(&exe)
            .args(["--role", role.flag(), "--job", job])
            .args(["--rank", &rank.to_string(), "--sizes", &len.to_string()])
            .args(["--processes", &args.processes.to_string()])
            .args(["--workers", &args.workers.to_string()])
            .args(["--warmup", &args.warmup.to_string()])
            .args(["--iters", &args.iters.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        children.push(Running {
            child,
            stdin,
            stdout,
        });
    }
    for (rank, c) in children.iter_mut().enumerate() {
        let mut line = String::new();
        c.stdout.read_line(&mut line)?;
        if line.trim() != READY {
            bail!("{} child {rank} did not get ready: {line:?}", role.flag());
        }
    }
    let go = |children: &mut Vec<Running>| -> Result<()> {
        for c in children.iter_mut() {
            writeln!(c.stdin, "go")?;
            c.stdin.flush()?;
        }
        Ok(())
    };
    go(&mut children)?;
    if role == Role::Reduce {
        for iteration in (CHUNK..args.warmup + args.iters).step_by(CHUNK) {
            for (rank, c) in children.iter_mut().enumerate() {
                let mut line = String::new();
                c.stdout.read_line(&mut line)?;
                if line.trim() != CHUNK_DONE {
                    bail!("reduce child {rank} did not stop before call {iteration}: {line:?}");
                }
            }
            between(iteration)?;
            go(&mut children)?;
        }
    }
    let mut results = Vec::new();
    for (rank, mut c) in children.into_iter().enumerate() {
        let mut line = String::new();
        c.stdout.read_line(&mut line)?;
        let status = c.child.wait()?;
        ensure!(
            status.success(),
            "{} child {rank} failed: {status}",
            role.flag()
        );
        results.push(
            serde_json::from_str(line.trim())
                .with_context(|| format!("{} child {rank} printed {line:?}", role.flag()))?,
        );
    }
    Ok(results)
}

fn ns_list(value: &Value, key: &str) -> Result<Vec<u64>> {
    value[key]
        .as_array()
        .with_context(|| format!("no {key} in {value}"))?
        .iter()
        .map(|x| x.as_u64().context("not a count of ns"))
        .collect()
}

/// Per call: the longest of the processes' times. In ms.
fn slowest_per_call(per_rank: &[Vec<u64>]) -> Vec<f64> {
    let calls = per_rank.iter().map(Vec::len).min().unwrap_or(0);
    (0..calls)
        .map(|t| per_rank.iter().map(|r| r[t]).max().unwrap_or(0) as f64 / 1e6)
        .collect()
}

fn ms(ns: &[u64]) -> Vec<f64> {
    ns.iter().map(|&n| n as f64 / 1e6).collect()
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(role) = args.role {
        return child(&args, role);
    }
    ensure!(args.processes >= 1, "--processes must be at least 1");
    ensure!(args.iters >= 1, "--iters must be at least 1");
    let blocks: Vec<Block> = tree::even_layout(args.workers, args.processes)?;
    for &len in &args.sizes {
        ensure!(
            len >= args.processes,
            "size {len} is shorter than the process count"
        );
        let bytes = 4 * len;

        let memcpy_hot_ms = ms(&time_memcpy(len, args.warmup, args.iters));
        let memcpy_cold_ms = ms(&time_memcpy_cold(len, args.warmup, args.iters));

        let results = run_children(&args, Role::Memcpy, len, "")?;
        let per_rank = results
            .iter()
            .map(|r| ns_list(r, "ns"))
            .collect::<Result<Vec<_>>>()?;
        let memcpy_concurrent_ms = slowest_per_call(&per_rank);

        let job = format!("benchreduce{}_{len}", std::process::id());
        let geometry = ReductionGeometry::new(args.processes as u32, len);
        let _segments = create_reduction_segments(&job, &geometry)?;
        // The reference: single-core memcpys of the same bytes, done here between chunks of
        // all-reduce calls while the children sleep (after the warm-up calls).
        let (src, mut dst) = (touched(len), touched(len));
        let mut interleaved_ns = Vec::new();
        let results = run_children_interleaved(&args, Role::Reduce, len, &job, |iteration| {
            let times = memcpy_loop(&src, &mut dst, 0, CHUNK);
            if iteration >= args.warmup {
                interleaved_ns.extend(times);
            }
            Ok(())
        })?;
        ensure!(
            !interleaved_ns.is_empty(),
            "--warmup + --iters must exceed {CHUNK} + --warmup to interleave any memcpy"
        );
        let memcpy_interleaved_ms = ms(&interleaved_ns);
        let total = results
            .iter()
            .map(|r| ns_list(r, "ns"))
            .collect::<Result<Vec<_>>>()?;
        let fill = results
            .iter()
            .map(|r| ns_list(r, "fill_ns"))
            .collect::<Result<Vec<_>>>()?;
        let exact = results.iter().all(|r| r["exact"] == Value::Bool(true));
        let allreduce_ms = slowest_per_call(&total);
        // The reduction proper: each process's call minus its own fill, slowest process.
        let without_fill: Vec<Vec<u64>> = total
            .iter()
            .zip(&fill)
            .map(|(t, f)| t.iter().zip(f).map(|(t, f)| t.saturating_sub(*f)).collect())
            .collect();
        let reduce_only_ms = slowest_per_call(&without_fill);
        let fill_ms: Vec<f64> = slowest_per_call(&fill);

        let phases = if args.phases {
            let job = format!("benchphases{}_{len}", std::process::id());
            let _segments = create_reduction_segments(&job, &geometry)?;
            run_children(&args, Role::Phases, len, &job)?
        } else {
            Vec::new()
        };

        let memcpy = median(&memcpy_interleaved_ms);
        let allreduce = median(&allreduce_ms);
        // Each process's own call times (not the slowest per call), median, for context.
        let per_process_ms: Vec<f64> = total.iter().map(|t| median(&ms(t))).collect();
        let line = json!({
            "bench": "gnc-reduce",
            "processes": args.processes,
            "workers": args.workers,
            "blocks": blocks,
            "len": len,
            "bytes": bytes,
            "warmup": args.warmup,
            "iters": args.iters,
            "memcpy_ms": memcpy,
            "memcpy_interleaved_per_call_ms": memcpy_interleaved_ms,
            "memcpy_hot_ms": median(&memcpy_hot_ms),
            "memcpy_concurrent_ms": median(&memcpy_concurrent_ms),
            "memcpy_cold_ms": median(&memcpy_cold_ms),
            "allreduce_ms": allreduce,
            "allreduce_min_ms": allreduce_ms.iter().copied().fold(f64::INFINITY, f64::min),
            "allreduce_mean_ms": allreduce_ms.iter().sum::<f64>() / allreduce_ms.len() as f64,
            "allreduce_per_process_ms": per_process_ms,
            "fill_ms": median(&fill_ms),
            "reduce_only_ms": median(&reduce_only_ms),
            "memcpy_gbps": bytes as f64 / memcpy / 1e6,
            "allreduce_gbps": bytes as f64 / allreduce / 1e6,
            "fraction_of_memcpy": memcpy / allreduce,
            "exact": exact,
            "phases_ms_per_rank": phases,
            "allreduce_per_call_ms": allreduce_ms,
        });
        println!("{line}");
        std::io::stdout().flush()?;
        ensure!(
            exact,
            "the all-reduce of {len} floats did not give the tree sum's bits"
        );
    }
    Ok(())
}
