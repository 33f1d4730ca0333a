//! An owned, shared, read-write memory mapping of a file descriptor: `mmap` on creation,
//! `munmap` on drop. The only place that calls either.

use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;

use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

pub(crate) struct Mapping {
    start: NonNull<u8>,
    len: NonZeroUsize,
}

// SAFETY: a `Mapping` is an address range, not data. Everything inside it is shared with
// other processes anyway and is only reached through atomics or the slot protocol
// (crate::slots), which is what makes concurrent access sound; moving or sharing the handle
// between threads adds nothing to that.
unsafe impl Send for Mapping {}
// SAFETY: see `Send` above; `&Mapping` only hands out the base pointer and the length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, shared and read-write.
    pub(crate) fn shared(fd: impl AsFd, len: NonZeroUsize) -> nix::Result<Self> {
        // SAFETY: a fresh mapping chosen by the kernel (no address hint, no MAP_FIXED) cannot
        // overlap memory Rust already uses. Callers only touch bytes that lie inside the file
        // (they check the file size first), so no access can raise SIGBUS.
        let start = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )?
        };
        Ok(Self {
            start: start.cast(),
            len,
        })
    }

    /// Base address; page aligned.
    pub(crate) fn start(&self) -> *mut u8 {
        self.start.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `start`/`len` describe exactly the mapping made in `shared`, and every
        // reference into it borrows from its owner (Segment), so none outlives this drop.
        // munmap can only fail for invalid arguments, which these are not.
        let _ = unsafe { munmap(self.start.cast(), self.len.get()) };
    }
}
