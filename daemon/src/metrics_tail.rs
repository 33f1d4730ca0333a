//! Following a job's `metrics.jsonl` as it grows, for `watch`, `metrics` and the job's test
//! accuracy. A resumed run rewrites the file (by rename) down to its checkpoint and then
//! appends the same records again, bit for bit, so after a rewrite the tail re-reads from the
//! start and hands out only the records past those it already gave.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use gnc_proto::MetricRecord;

pub struct MetricsTail {
    path: PathBuf,
    /// The inode and byte offset read so far.
    inode: u64,
    offset: u64,
    /// Complete records seen in the current file, and handed out in all.
    seen: usize,
    handed_out: usize,
    partial: Vec<u8>,
}

impl MetricsTail {
    /// A tail that skips the first `from` records.
    pub fn new(path: PathBuf, from: usize) -> MetricsTail {
        MetricsTail {
            path,
            inode: 0,
            offset: 0,
            seen: 0,
            handed_out: from,
            partial: Vec::new(),
        }
    }

    /// The records written since the last call (none if the file does not exist yet; lines
    /// that do not parse are skipped).
    pub fn read_new(&mut self) -> Vec<MetricRecord> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(meta) = file.metadata() else {
            return Vec::new();
        };
        if meta.ino() != self.inode || meta.len() < self.offset {
            self.inode = meta.ino();
            self.offset = 0;
            self.seen = 0;
            self.partial.clear();
        }
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return Vec::new();
        }
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let mut records = Vec::new();
        // Only whole lines: the writer may be in the middle of one.
        let complete = match self.partial.iter().rposition(|&b| b == b'\n') {
            Some(at) => at + 1,
            None => return records,
        };
        let lines: Vec<u8> = self.partial.drain(..complete).collect();
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(record) = serde_json::from_slice::<MetricRecord>(line) else {
                continue;
            };
            self.seen += 1;
            if self.seen > self.handed_out {
                self.handed_out = self.seen;
                records.push(record);
            }
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iter_line(i: u64) -> String {
        format!(
            "{{\"kind\":\"iter\",\"iter\":{i},\"epoch\":0.0,\"loss\":1.0,\"lr\":0.1,\"grad_norm\":1.0,\"noise_norm\":0.5}}\n"
        )
    }

    fn iters(records: &[MetricRecord]) -> Vec<u64> {
        records
            .iter()
            .map(|r| match r {
                MetricRecord::Iter(r) => r.iter,
                _ => u64::MAX,
            })
            .collect()
    }

    #[test]
    fn partial_lines_wait_and_a_rewrite_does_not_repeat_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut tail = MetricsTail::new(path.clone(), 1);
        assert!(tail.read_new().is_empty());
        let text = format!("{}{}{}", iter_line(0), iter_line(1), iter_line(2));
        std::fs::write(&path, &text[..text.len() - 5]).unwrap();
        assert_eq!(iters(&tail.read_new()), vec![1]);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(iters(&tail.read_new()), vec![2]);
        // A resume rewrites the file by rename down to iteration 1, then appends again.
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, iter_line(0) + &iter_line(1)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(tail.read_new().is_empty());
        std::fs::write(&path, format!("{text}{}", iter_line(3))).unwrap();
        assert_eq!(iters(&tail.read_new()), vec![3]);
    }
}
