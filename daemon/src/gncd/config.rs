//! `gncd.toml`: what the daemon may use (devices), where it keeps its state and listens, who
//! may connect, which data directories jobs may read, and the supervision limits. Unknown
//! keys are errors, so a typo is caught by `gncd validate` (ExecStartPre) rather than ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gnc_proto::Devices;
use serde::Deserialize;

/// Where the config is read from unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/gnc/gncd.toml";

/// The config file as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    devices: String,
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default = "default_socket")]
    socket: PathBuf,
    #[serde(default = "default_socket_mode")]
    socket_mode: u32,
    #[serde(default = "default_socket_group")]
    socket_group: String,
    #[serde(default)]
    allowed_data_roots: Vec<PathBuf>,
    #[serde(default)]
    checkpoint_keep: Option<usize>,
    #[serde(default = "default_hang_timeout")]
    hang_timeout_seconds: f64,
    #[serde(default = "default_max_restarts")]
    max_restarts: u32,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default)]
    hosts: Option<PathBuf>,
    #[serde(default)]
    min_hosts: Option<usize>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/gnc")
}
fn default_socket() -> PathBuf {
    PathBuf::from(gnc_proto::socket::DEFAULT_SOCKET)
}
fn default_socket_mode() -> u32 {
    0o660
}
fn default_socket_group() -> String {
    "gnc".into()
}
fn default_hang_timeout() -> f64 {
    300.0
}
fn default_max_restarts() -> u32 {
    3
}
fn default_max_connections() -> usize {
    256
}

/// The checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Every device the daemon may give a job (it owns them all; one job runs at a time).
    pub devices: Devices,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub socket_mode: u32,
    /// The socket's group; when it does not exist the daemon warns and keeps its own.
    pub socket_group: String,
    /// Canonical directories under which a job's `data.root` must lie.
    pub allowed_data_roots: Vec<PathBuf>,
    /// Caps each job's `checkpoint.keep` (disk use of the state directory).
    pub checkpoint_keep: Option<usize>,
    pub hang_timeout: Duration,
    pub max_restarts: u32,
    /// Client connections served at once; one more is answered with a `busy` error.
    pub max_connections: usize,
    /// The hostfile of the hosts a job across hosts runs on (`parallel.hosts` in its spec):
    /// the daemon's, never the client's. `None`: jobs run on this machine only.
    pub hosts: Option<Hosts>,
}

/// The daemon's hosts for jobs across hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Hosts {
    pub hostfile: PathBuf,
    /// Their names, in order (for the log and the job's record).
    pub names: Vec<String>,
    /// Elastic: a job goes on on as few as this many reachable hosts (`--min-hosts`).
    pub min_hosts: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("config {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: key `{key}` {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let config = Config::parse(&text, path)?;
        if config.hosts.is_some()
            && let Err(e) = std::net::UdpSocket::bind(("0.0.0.0", 0))
        {
            // mpirun and its ranks talk TCP between the hosts; a unit that allows AF_UNIX
            // only (gncd.service without the hosts drop-in) forbids it.
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: "hosts",
                message: format!(
                    "jobs across hosts need network sockets, which this process may not open \
                     ({e}); under systemd, install systemd/gncd-hosts.conf as \
                     /etc/systemd/system/gncd.service.d/hosts.conf"
                ),
            });
        }
        Ok(config)
    }

    /// Parses and checks `text`; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let invalid = |key, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let devices = file.devices.parse().map_err(|m| invalid("devices", m))?;
        for (key, dir) in [("state_dir", &file.state_dir), ("socket", &file.socket)] {
            if !dir.is_absolute() {
                return Err(invalid(
                    key,
                    format!("must be absolute, not {}", dir.display()),
                ));
            }
        }
        if file.socket_mode > 0o777 {
            return Err(invalid(
                "socket_mode",
                format!(
                    "{:#o} is not a permission mode (at most 0o777)",
                    file.socket_mode
                ),
            ));
        }
        let mut roots = Vec::new();
        for root in &file.allowed_data_roots {
            // Canonical, so that a job's root is compared after symlinks and `..` resolve.
            let canonical = root.canonicalize().map_err(|e| {
                invalid(
                    "allowed_data_roots",
                    format!("entry {} cannot be resolved: {e}", root.display()),
                )
            })?;
            roots.push(canonical);
        }
        if file.checkpoint_keep == Some(0) {
            return Err(invalid("checkpoint_keep", "must be at least 1".into()));
        }
        let hang = file.hang_timeout_seconds;
        if !(hang.is_finite() && hang > 0.0) {
            return Err(invalid(
                "hang_timeout_seconds",
                format!("must be a positive number of seconds, not {hang}"),
            ));
        }
        if file.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1".into()));
        }
        let hosts = match &file.hosts {
            None if file.min_hosts.is_some() => {
                return Err(invalid("min_hosts", "needs `hosts` (a hostfile)".into()));
            }
            None => None,
            Some(hostfile) if !hostfile.is_absolute() => {
                return Err(invalid(
                    "hosts",
                    format!("must be absolute, not {}", hostfile.display()),
                ));
            }
            Some(hostfile) => {
                let hosts =
                    crate::hostfile::read(hostfile).map_err(|e| invalid("hosts", e.to_string()))?;
                if let Some(min) = file.min_hosts
                    && !(1..=hosts.len()).contains(&min)
                {
                    return Err(invalid(
                        "min_hosts",
                        format!(
                            "must be 1 to {} (the hosts of {}), not {min}",
                            hosts.len(),
                            hostfile.display()
                        ),
                    ));
                }
                Some(Hosts {
                    hostfile: hostfile.clone(),
                    names: hosts.into_iter().map(|h| h.name).collect(),
                    min_hosts: file.min_hosts,
                })
            }
        };
        Ok(Config {
            devices,
            state_dir: file.state_dir,
            socket: file.socket,
            socket_mode: file.socket_mode,
            socket_group: file.socket_group,
            allowed_data_roots: roots,
            checkpoint_keep: file.checkpoint_keep,
            hang_timeout: Duration::from_secs_f64(hang),
            max_restarts: file.max_restarts,
            max_connections: file.max_connections,
            hosts,
        })
    }

    /// What changed from `self` to `new`, one phrase per key (for the SIGHUP log).
    pub fn changes(&self, new: &Config) -> Vec<String> {
        let mut out = Vec::new();
        let mut diff = |key: &str, old: String, new: String| {
            if old != new {
                out.push(format!("{key}: {old} -> {new}"));
            }
        };
        diff("devices", self.devices.to_string(), new.devices.to_string());
        diff(
            "state_dir",
            self.state_dir.display().to_string(),
            new.state_dir.display().to_string(),
        );
        diff(
            "socket",
            self.socket.display().to_string(),
            new.socket.display().to_string(),
        );
        diff(
            "socket_mode",
            format!("{:#o}", self.socket_mode),
            format!("{:#o}", new.socket_mode),
        );
        diff(
            "socket_group",
            self.socket_group.clone(),
            new.socket_group.clone(),
        );
        diff(
            "allowed_data_roots",
            format!("{:?}", self.allowed_data_roots),
            format!("{:?}", new.allowed_data_roots),
        );
        diff(
            "checkpoint_keep",
            format!("{:?}", self.checkpoint_keep),
            format!("{:?}", new.checkpoint_keep),
        );
        diff(
            "hang_timeout_seconds",
            self.hang_timeout.as_secs_f64().to_string(),
            new.hang_timeout.as_secs_f64().to_string(),
        );
        diff(
            "max_restarts",
            self.max_restarts.to_string(),
            new.max_restarts.to_string(),
        );
        diff(
            "max_connections",
            self.max_connections.to_string(),
            new.max_connections.to_string(),
        );
        diff(
            "hosts",
            format!("{:?}", self.hosts),
            format!("{:?}", new.hosts),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/gnc/gncd.toml"))
    }

    #[test]
    fn defaults_fill_everything_but_devices() {
        let c = parse("devices = \"cpu:2\"").unwrap();
        assert_eq!(c.devices, Devices::Cpu(2));
        assert_eq!(c.socket, Path::new(gnc_proto::socket::DEFAULT_SOCKET));
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.socket_group, "gnc");
        assert_eq!(c.state_dir, Path::new("/var/lib/gnc"));
        assert!(c.allowed_data_roots.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = parse("devices = \"cpu:2\"\nsoket = \"/x\"").unwrap_err();
        assert!(unknown.to_string().contains("soket"), "{unknown}");
        let devices = parse("devices = \"gpu:1\"").unwrap_err();
        assert!(devices.to_string().contains("`devices`"), "{devices}");
        let mode = parse("devices = \"cpu:1\"\nsocket_mode = 0o1777").unwrap_err();
        assert!(mode.to_string().contains("`socket_mode`"), "{mode}");
        let root =
            parse("devices = \"cpu:1\"\nallowed_data_roots = [\"/no/such/dir\"]").unwrap_err();
        assert!(root.to_string().contains("/no/such/dir"), "{root}");
        let rel = parse("devices = \"cpu:1\"\nstate_dir = \"state\"").unwrap_err();
        assert!(rel.to_string().contains("`state_dir`"), "{rel}");
        let none = parse("devices = \"cpu:1\"\nmax_connections = 0").unwrap_err();
        assert!(none.to_string().contains("`max_connections`"), "{none}");
        let hosts = parse("devices = \"cpu:1\"\nhosts = \"/no/such/hostfile\"").unwrap_err();
        assert!(
            hosts
                .to_string()
                .contains("`hosts` cannot read hostfile /no/such/hostfile"),
            "{hosts}"
        );
        let min = parse("devices = \"cpu:1\"\nmin_hosts = 1").unwrap_err();
        assert!(
            min.to_string().contains("`min_hosts` needs `hosts`"),
            "{min}"
        );
    }

    #[test]
    fn changes_list_only_changed_keys() {
        let a = parse("devices = \"cpu:2\"").unwrap();
        let b = parse("devices = \"cpu:4\"\nmax_restarts = 3").unwrap();
        assert_eq!(a.changes(&b), vec!["devices: cpu:2 -> cpu:4".to_string()]);
    }
}
