//! The process heap: glibc malloc's settings for a training process.
//!
//! An iteration allocates and frees the same large blocks over and over (libtorch's tensors of
//! a layer's weights or gradients, a few MB each). With glibc's defaults, freeing them leaves
//! free space at the top of the heap that is returned to the kernel (trimmed) as soon as it
//! exceeds twice the (dynamically raised) mmap threshold, and the next iteration faults the
//! same pages in again, zero-filled: measured on F1 (M = 64, one thread), about 31,000 page
//! faults (120 MiB) per iteration, none of which buys anything. Keeping freed memory for
//! reuse removes them without raising the peak: the heap still never holds more than the
//! process once used.

/// Blocks up to this size come from the heap, not from a mapping of their own (glibc's
/// largest dynamic threshold on 64-bit), so they are reused instead of unmapped on free.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free space at the top of a heap is returned to the kernel only beyond this.
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Keeps memory the process frees for its next allocations instead of returning it to the
/// kernel (see the module documentation). Returns false where the C library refused a setting
/// (not glibc); the process then runs with the library's defaults, only slower.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's parameters, under the allocator's own
        // lock; it is safe to call at any time, from any thread, with any value (an invalid one
        // is refused with 0).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use nix::sys::resource::{UsageWho, getrusage};

    /// Minor page faults of this thread so far.
    fn faults() -> i64 {
        getrusage(UsageWho::RUSAGE_THREAD)
            .expect("getrusage works on Linux")
            .minor_page_faults()
    }

    /// One cycle of the pattern an iteration makes: a few blocks of a few MB, each written
    /// in full, then all freed.
    fn cycle() {
        let blocks: Vec<Vec<u8>> = (0..3).map(|k| vec![k as u8 + 1; 3 << 20]).collect();
        std::hint::black_box(&blocks);
    }

    #[test]
    fn freed_blocks_are_reused_without_faulting_pages_in_again() {
        assert!(super::retain_freed_memory(), "glibc accepts the settings");
        cycle();
        // The least of three batches: a fork elsewhere in this test process (lifeline's test
        // spawns a child) makes the heap copy-on-write for a moment, and every page written
        // then faults once, which is not what this test measures.
        let per_cycle = (0..3)
            .map(|_| {
                let before = faults();
                for _ in 0..20 {
                    cycle();
                }
                (faults() - before) / 20
            })
            .min()
            .expect("three batches");
        // glibc's defaults trim the freed top of the heap at every cycle, so each faults its
        // 2,304 pages in again (measured: 2,273 per cycle without the settings).
        assert!(per_cycle < 100, "{per_cycle} page faults per cycle");
    }
}
