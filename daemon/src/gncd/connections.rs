//! The connections being served, and which of them are idle, so that at the limit the one idle
//! the longest can be closed for a new client instead of refusing it. Anyone in the socket's
//! group can open connections and send nothing; without this, a few hundred of them would leave
//! every other user answered `busy` until they time out.
//!
//! A connection is *idle* while its thread waits for (or reads) its next request, and busy while
//! a request is handled or a `watch` streams; busy connections are never closed. The registry is
//! also the count of connections served: the accept loop adds a connection before handing it to
//! a thread, so the count cannot pass the limit, and [`Served`] removes it when its handling
//! ends, however it ends.

use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gnc_proto::socket::{ErrorKind, Reply};

use super::handlers::write_reply;

struct Entry {
    id: u64,
    /// A handle on the connection's socket, to close it from the accept loop.
    stream: UnixStream,
    /// Since when it waits for a request; `None` while one is handled.
    idle_since: Option<Instant>,
}

#[derive(Default)]
pub struct Connections {
    entries: Mutex<Vec<Entry>>,
    next_id: AtomicU64,
}

impl Connections {
    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // A panic elsewhere while holding the lock leaves the list consistent (every change is
        // one push, retain or field store), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections being served.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers `stream` (idle: no request yet) and returns its id.
    pub fn add(&self, stream: &UnixStream) -> std::io::Result<u64> {
        let handle = stream.try_clone()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.entries().push(Entry {
            id,
            stream: handle,
            idle_since: Some(Instant::now()),
        });
        Ok(id)
    }

    /// Marks connection `id` as waiting for a request (`true`) or handling one.
    pub fn set_idle(&self, id: u64, idle: bool) {
        if let Some(entry) = self.entries().iter_mut().find(|e| e.id == id) {
            entry.idle_since = idle.then(Instant::now);
        }
    }

    fn remove(&self, id: u64) {
        self.entries().retain(|e| e.id != id);
    }

    /// Closes the connection idle the longest, telling its client why, and stops counting it;
    /// false if every connection is busy. Its thread sees the end of its stream and goes back
    /// to waiting for the next connection.
    pub fn reclaim_oldest_idle(&self, max: usize) -> bool {
        let mut entries = self.entries();
        let Some(oldest) = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.idle_since.map(|since| (since, i)))
            .min()
            .map(|(_, i)| i)
        else {
            return false;
        };
        let mut victim = entries.swap_remove(oldest);
        drop(entries);
        // Non-blocking, so a client that stopped reading cannot stall the accept loop; the
        // socket is closed next anyway, so its thread's reads may fail from here on.
        let _ = victim.stream.set_nonblocking(true);
        let message = format!(
            "connection closed: it sent no request while gncd was at its limit of {max} \
             connections (max_connections) and another client had one; reconnect"
        );
        let _ = write_reply(&mut victim.stream, Reply::error(ErrorKind::Busy, message));
        let _ = victim.stream.shutdown(Shutdown::Both);
        true
    }
}

/// Counts connection `id` as served until dropped.
pub struct Served<'a> {
    pub connections: &'a Connections,
    pub id: u64,
}

impl Drop for Served<'_> {
    fn drop(&mut self) {
        self.connections.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_connection_idle_the_longest_is_closed_and_busy_ones_never() {
        let connections = Connections::default();
        let pairs: Vec<(UnixStream, UnixStream)> =
            (0..3).map(|_| UnixStream::pair().unwrap()).collect();
        let ids: Vec<u64> = pairs
            .iter()
            .map(|(server, _)| connections.add(server).unwrap())
            .collect();
        // 0 handles a request; 2 went back to waiting before 1 did.
        connections.set_idle(ids[0], false);
        connections.set_idle(ids[2], true);
        std::thread::sleep(std::time::Duration::from_millis(2));
        connections.set_idle(ids[1], true);

        assert!(connections.reclaim_oldest_idle(3));
        assert_eq!(connections.len(), 2);
        let mut told = String::new();
        let mut client = &pairs[2].1;
        // Closed with a notice: read at once; a wrong choice fails here instead of hanging.
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        client.read_to_string(&mut told).unwrap();
        assert!(told.contains("sent no request"), "{told}");

        assert!(connections.reclaim_oldest_idle(3));
        assert!(!connections.reclaim_oldest_idle(3), "the busy one stays");
        assert_eq!(connections.len(), 1);
        drop(Served {
            connections: &connections,
            id: ids[0],
        });
        assert!(connections.is_empty());
    }
}
