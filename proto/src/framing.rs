//! Reading one newline-terminated message with a size limit, so a peer that sends a 10 MB
//! line (or no newline at all) costs a bounded buffer, and the stream stays usable after it.

use std::io::BufRead;

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line is in the buffer, without its newline (a final line without a newline,
    /// at end of stream, counts too).
    Complete,
    /// The line was longer than the limit; it was read to its newline and dropped.
    TooLong { bytes: usize },
    /// The peer closed the stream before sending anything more.
    End,
}

/// Reads the next line into `buf` (cleared first), holding at most `limit` bytes of it.
pub fn read_line(
    reader: &mut impl BufRead,
    limit: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<Line> {
    buf.clear();
    let mut seen = 0usize;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match seen {
                0 => Line::End,
                n if n > limit => Line::TooLong { bytes: n },
                _ => Line::Complete,
            });
        }
        let (chunk, newline) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], true),
            None => (available, false),
        };
        if seen + chunk.len() <= limit {
            buf.extend_from_slice(chunk);
        } else {
            buf.clear();
        }
        seen += chunk.len();
        let consumed = chunk.len() + usize::from(newline);
        reader.consume(consumed);
        if newline {
            return Ok(if seen > limit {
                Line::TooLong { bytes: seen }
            } else {
                Line::Complete
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor};

    #[test]
    fn lines_within_the_limit_come_whole_and_long_ones_are_skipped() {
        let long = "x".repeat(100);
        let input = format!("{{\"a\":1}}\n{long}\nnext\nlast");
        // A tiny buffer makes every line span several reads.
        let mut reader = BufReader::with_capacity(7, Cursor::new(input));
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut reader, 10, &mut buf).unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"{\"a\":1}");
        assert_eq!(
            read_line(&mut reader, 10, &mut buf).unwrap(),
            Line::TooLong { bytes: 100 }
        );
        assert!(buf.len() <= 10);
        assert_eq!(
            read_line(&mut reader, 10, &mut buf).unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"next");
        assert_eq!(
            read_line(&mut reader, 10, &mut buf).unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"last");
        assert_eq!(read_line(&mut reader, 10, &mut buf).unwrap(), Line::End);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_kept() {
        let mut reader = BufReader::with_capacity(3, Cursor::new("abcd\nabcde\n"));
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut reader, 4, &mut buf).unwrap(), Line::Complete);
        assert_eq!(buf, b"abcd");
        assert_eq!(
            read_line(&mut reader, 4, &mut buf).unwrap(),
            Line::TooLong { bytes: 5 }
        );
    }
}
