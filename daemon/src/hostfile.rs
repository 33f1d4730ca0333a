//! Hostfiles in Open MPI's format, read before a job across hosts starts so that a bad one is
//! refused by name rather than by `mpirun`: one host per line, `NAME [slots=N]
//! [max_slots=N]`, `#` comments; without `--devices cpu:N`, a host runs one process per slot.

use std::path::{Path, PathBuf};

/// One line of a hostfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub slots: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum HostfileError {
    #[error("cannot read hostfile {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("hostfile {path}, line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("hostfile {path} names no host")]
    Empty { path: PathBuf },
}

/// The hosts of `path`, in order.
pub fn read(path: &Path) -> Result<Vec<Host>, HostfileError> {
    let text = std::fs::read_to_string(path).map_err(|e| HostfileError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let hosts = parse(&text).map_err(|(line, message)| HostfileError::Line {
        path: path.to_path_buf(),
        line,
        message,
    })?;
    if hosts.is_empty() {
        return Err(HostfileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(hosts)
}

fn parse(text: &str) -> Result<Vec<Host>, (usize, String)> {
    let mut hosts = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let mut fields = raw.split('#').next().unwrap_or("").split_whitespace();
        let Some(name) = fields.next() else {
            continue;
        };
        let bad = |message: String| (index + 1, message);
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c))
        {
            return Err(bad(format!("{name:?} is not a host name")));
        }
        let mut slots = 1;
        for field in fields {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| bad(format!("{field:?}: expected slots=N or max_slots=N")))?;
            let n: usize = value
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(format!("{key}={value}: expected a count of at least 1")))?;
            match key {
                "slots" => slots = n,
                "max_slots" => {}
                _ => return Err(bad(format!("unknown key {key:?} (slots, max_slots)"))),
            }
        }
        hosts.push(Host {
            name: name.to_string(),
            slots,
        });
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_slots_and_comments_parse_and_bad_lines_are_named() {
        let hosts = parse("# cluster\nnode-1 slots=2\n\nnode-2 # one slot\n").unwrap();
        assert_eq!(
            hosts,
            [
                Host {
                    name: "node-1".into(),
                    slots: 2
                },
                Host {
                    name: "node-2".into(),
                    slots: 1
                }
            ]
        );
        assert_eq!(parse("a\nb slots=0\n").unwrap_err().0, 2);
        let (line, message) = parse("a slot=2").unwrap_err();
        assert!(line == 1 && message.contains("slot"), "{message}");
        assert!(parse("a;rm slots=1").unwrap_err().1.contains("host name"));
    }
}
