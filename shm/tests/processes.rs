//! The data plane across real processes: this test binary re-executes itself with
//! `GNC_SHM_TEST_ROLE` set, and the named test then plays a worker (or a crashing creator)
//! instead of the parent. No mocks: separate address spaces, real `/dev/shm` segments.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gnc_shm::cleaner::{StaleReason, clean_stale_segments};
use gnc_shm::{
    Geometry, Producer, Reader, ReductionGeometry, Segment, SegmentName, SegmentSpec,
    ShardedReducer, SlotArray, job_id, segment_name,
};
use gnc_tree::{self as tree, Block};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const ROLE: &str = "GNC_SHM_TEST_ROLE";
const TIMEOUT: Duration = Duration::from_secs(30);
const GENERATION: u64 = 2;

/// `Some(fields)` when this process was started as a child: the role's `:`-separated
/// fields.
fn child_role() -> Option<Vec<String>> {
    let role = std::env::var(ROLE).ok()?;
    Some(role.split(':').map(str::to_owned).collect())
}

/// Starts this test binary running only `test`, as a child with `role`.
fn spawn_child(test: &str, role: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn assert_children_succeed(children: Vec<Child>) {
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child failed: {}\n{}\n{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A job name unique to this parent process.
fn job(tag: &str) -> String {
    format!("{tag}{}", std::process::id())
}

fn spec(job: &str, geometry: Geometry) -> SegmentSpec {
    SegmentSpec {
        job_id: job_id(job),
        generation: GENERATION,
        geometry,
    }
}

fn open_array(job: &str, what: &str, geometry: Geometry) -> Arc<SlotArray> {
    let name = segment_name(job, GENERATION, what).unwrap();
    let segment = Segment::open(&name, &spec(job, geometry)).unwrap();
    Arc::new(SlotArray::new(segment).unwrap())
}

// ---------------------------------------------------------------------------------------
// Slot protocol stress.

const STRESS_ITERATIONS: u64 = 5000;
const STRESS_SLOT_LEN: u64 = 256;
/// Two producing processes (slot p, also reader p) and one that only reads (reader 2).
const STRESS_GEOMETRY: Geometry = Geometry {
    slots: 2,
    readers: 3,
    slot_len: STRESS_SLOT_LEN,
};

/// What producer `slot` writes at `index` of `iteration`: distinct for every triple, so a
/// reader that saw a stale or half-written slot would notice.
fn stress_value(slot: usize, iteration: u64, index: usize) -> u32 {
    (iteration as u32)
        .wrapping_mul(0x9e37_79b9)
        .wrapping_add((slot as u32) << 24)
        .wrapping_add(index as u32)
}

fn stress_child(job: &str, process: usize) {
    let array = open_array(job, "stress", STRESS_GEOMETRY);
    let mut producer = (process < 2).then(|| Producer::claim(array.clone(), process).unwrap());
    let mut reader = Reader::claim(array, process).unwrap();
    for iteration in 0..STRESS_ITERATIONS {
        if let Some(producer) = &mut producer {
            let mut write = producer.begin_write(iteration, TIMEOUT).unwrap();
            for (index, value) in write.iter_mut().enumerate() {
                *value = f32::from_bits(stress_value(process, iteration, index));
            }
            write.publish();
        }
        for slot in 0..2 {
            let data = reader.wait_for(slot, iteration, TIMEOUT).unwrap();
            for (index, value) in data.iter().enumerate() {
                assert_eq!(
                    value.to_bits(),
                    stress_value(slot, iteration, index),
                    "process {process} read slot {slot} iteration {iteration} index {index}"
                );
            }
        }
        reader.finish(iteration).unwrap();
    }
}

#[test]
fn slot_protocol_holds_over_thousands_of_iterations_across_processes() {
    if let Some(role) = child_role() {
        return stress_child(&role[0], role[1].parse().unwrap());
    }
    let job = job("stress");
    let name = segment_name(&job, GENERATION, "stress").unwrap();
    let _owner = Segment::create(&name, &spec(&job, STRESS_GEOMETRY)).unwrap();
    let children = (0..3)
        .map(|process| {
            spawn_child(
                "slot_protocol_holds_over_thousands_of_iterations_across_processes",
                &format!("{job}:{process}"),
            )
        })
        .collect();
    assert_children_succeed(children);
}

// ---------------------------------------------------------------------------------------
// Sharded all-reduce.

const M: usize = 8;
/// Uneven blocks, all subtrees: 4 + 2 + 2 logical workers.
const LAYOUT: [Block; 3] = [(0, 4), (4, 6), (6, 8)];
const LEN: usize = 301;
const REDUCE_ITERATIONS: u64 = 400;

/// Logical worker `worker`'s "gradient" at `iteration`: values of wildly different
/// magnitudes, so any other summation order would change bits.
fn gradient(iteration: u64, worker: usize) -> Vec<f32> {
    let mut state = iteration
        .wrapping_mul(1_000_003)
        .wrapping_add(worker as u64);
    (0..LEN)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let exponent = ((state >> 33) % 60) as i32 - 30;
            let sign = if state >> 63 == 0 { 1.0 } else { -1.0 };
            sign * (1.0 + (state >> 40) as f32 / (1u64 << 24) as f32) * 2f32.powi(exponent)
        })
        .collect()
}

fn tree_sum_of(workers: std::ops::Range<usize>, iteration: u64, out: &mut [f32]) {
    let leaves: Vec<Vec<f32>> = workers.map(|worker| gradient(iteration, worker)).collect();
    let leaves: Vec<&[f32]> = leaves.iter().map(Vec::as_slice).collect();
    tree::sum_into(out, &leaves);
}

fn reduce_child(job: &str, process: usize) {
    let geometry = ReductionGeometry::new(LAYOUT.len() as u32, LEN);
    let block_sums = open_array(job, "blocksums", geometry.block_sums);
    let shards = open_array(job, "shards", geometry.shards);
    let mut reducer = ShardedReducer::new(process, M, &LAYOUT, LEN, block_sums, shards).unwrap();
    let (lo, hi) = reducer.block();
    let mut reduced = vec![0.0; LEN];
    let mut expected = vec![0.0; LEN];
    for iteration in 0..REDUCE_ITERATIONS {
        let fill = |block_sum: &mut [f32]| tree_sum_of(lo..hi, iteration, block_sum);
        // The shards are visited in order and tile the vector; each is copied out where it
        // lies in shared memory.
        let mut next = 0;
        reducer
            .all_reduce(
                iteration,
                fill,
                |range, shard| {
                    assert_eq!(range.start, next, "shards in order, without gaps");
                    next = range.end;
                    reduced[range].copy_from_slice(shard);
                },
                TIMEOUT,
            )
            .unwrap();
        assert_eq!(next, LEN, "the shards cover the vector");
        tree_sum_of(0..M, iteration, &mut expected);
        let bits = |values: &[f32]| values.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&reduced), bits(&expected), "iteration {iteration}");
    }
}

#[test]
fn sharded_all_reduce_across_processes_equals_the_single_process_tree_sum() {
    if let Some(role) = child_role() {
        return reduce_child(&role[0], role[1].parse().unwrap());
    }
    let job = job("reduce");
    let geometry = ReductionGeometry::new(LAYOUT.len() as u32, LEN);
    let create = |what, geometry| {
        let name = segment_name(&job, GENERATION, what).unwrap();
        Segment::create(&name, &spec(&job, geometry)).unwrap()
    };
    let _segments = [
        create("blocksums", geometry.block_sums),
        create("shards", geometry.shards),
    ];
    let children = (0..LAYOUT.len())
        .map(|process| {
            spawn_child(
                "sharded_all_reduce_across_processes_equals_the_single_process_tree_sum",
                &format!("{job}:{process}"),
            )
        })
        .collect();
    assert_children_succeed(children);
}

// ---------------------------------------------------------------------------------------
// Cleaner.

const READY: &str = "segment-created";

/// Creates a segment, says so, and waits to be killed (so its owner handle never drops).
fn create_and_hang(name: &SegmentName) {
    let _owner = Segment::create(name, &spec(name.job(), Geometry::new(1, 1, 1))).unwrap();
    // libtest may have printed "test <name> ... " on the same line.
    println!("{READY}");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn cleaner_removes_segments_of_dead_creators_and_keeps_live_ones() {
    if let Some(role) = child_role() {
        return create_and_hang(&SegmentName::parse(&role[0]).unwrap());
    }
    let job = job("clean");
    let orphan = segment_name(&job, GENERATION, "orphan").unwrap();
    let alive = segment_name(&job, GENERATION, "alive").unwrap();
    let _alive = Segment::create(&alive, &spec(&job, Geometry::new(1, 1, 1))).unwrap();

    let mut child = spawn_child(
        "cleaner_removes_segments_of_dead_creators_and_keeps_live_ones",
        orphan.as_str(),
    );
    let stdout = BufReader::new(child.stdout.take().unwrap());
    assert!(
        stdout
            .lines()
            .map_while(Result::ok)
            .any(|line| line.ends_with(READY)),
        "the child never created its segment"
    );
    let pid = child.id();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let orphan_file = std::path::Path::new("/dev/shm").join(orphan.file_name());
    assert!(orphan_file.exists(), "SIGKILL leaves the segment behind");

    let report = clean_stale_segments(Duration::from_secs(3600)).unwrap();
    assert!(
        report
            .removed
            .contains(&(orphan.clone(), StaleReason::CreatorDead { pid })),
        "{report:?}"
    );
    assert!(!orphan_file.exists());
    assert!(
        std::path::Path::new("/dev/shm")
            .join(alive.file_name())
            .exists(),
        "a live creator's segment is kept"
    );
}
