//! A read-only, private memory mapping of a whole file: a data set's tensors read in place, so
//! a file larger than memory is paged in as batches touch it rather than read whole.

use std::fs::File;
use std::num::NonZeroUsize;
use std::path::Path;
use std::ptr::NonNull;

use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

/// The bytes of a file, mapped read-only; an empty file maps to no bytes.
pub struct MappedFile {
    /// `None` for an empty file (mmap refuses a length of 0).
    map: Option<(NonNull<u8>, NonZeroUsize)>,
}

// SAFETY: the mapping is read-only and private, and the handle only hands out shared `&[u8]`
// views of it, so moving or sharing it between threads is as sound as sharing a `&[u8]`.
unsafe impl Send for MappedFile {}
// SAFETY: see `Send` above.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps all of `path`.
    pub fn open(path: &Path) -> std::io::Result<MappedFile> {
        let file = File::open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("the file is larger than the address space"))?;
        let Some(len) = NonZeroUsize::new(len) else {
            return Ok(MappedFile { map: None });
        };
        // SAFETY: a fresh mapping chosen by the kernel (no address hint, no MAP_FIXED) cannot
        // overlap memory Rust already uses; it is read-only and private, so nothing this
        // process does changes it. Another process truncating the file while it is mapped
        // would make reads past the new end raise SIGBUS (the same caveat as every memory-mapped
        // reader, e.g. NumPy's mmap_mode): data files are documented as not to be changed
        // while a job reads them.
        let start = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_PRIVATE,
                &file,
                0,
            )
        }
        .map_err(std::io::Error::from)?;
        Ok(MappedFile {
            map: Some((start.cast(), len)),
        })
    }

    pub fn bytes(&self) -> &[u8] {
        match self.map {
            // SAFETY: the mapping covers exactly `len` readable bytes from `start` and lives as
            // long as `self`, which the returned slice borrows.
            Some((start, len)) => unsafe { std::slice::from_raw_parts(start.as_ptr(), len.get()) },
            None => &[],
        }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if let Some((start, len)) = self.map {
            // SAFETY: `start`/`len` are exactly the mapping made in `open`; every slice of it
            // borrows `self`, so none outlives this drop.
            let _ = unsafe { munmap(start.cast(), len.get()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_file_and_an_empty_one() {
        let dir = std::env::temp_dir().join(format!("gnc-file-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(MappedFile::open(&path).unwrap().bytes(), b"hello");
        std::fs::write(&path, b"").unwrap();
        assert!(MappedFile::open(&path).unwrap().bytes().is_empty());
        assert!(MappedFile::open(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
