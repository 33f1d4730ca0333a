//! systemd notifications (sd_notify): READY=1 once the socket listens, STATUS= with the
//! running job, WATCHDOG=1 while the daemon is healthy, STOPPING=1 on the way out. Without
//! NOTIFY_SOCKET (not under systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
    last_status: String,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: watchdog_from_env(),
            last_status: String::new(),
        }
    }

    /// How often to send WATCHDOG=1 (half the period systemd allows), if it is asked for.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    fn send(&self, states: &[NotifyState]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(false, states)
        {
            tracing::warn!("sd_notify failed: {e}");
        }
    }

    pub fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// Sends STATUS= when it differs from the last one sent.
    pub fn status(&mut self, status: String) {
        if status != self.last_status {
            self.send(&[NotifyState::Status(&status)]);
            self.last_status = status;
        }
    }
}

/// WATCHDOG_USEC, when WATCHDOG_PID is absent or names this process (as
/// sd_watchdog_enabled(3) has it; the crate's helper insists on WATCHDOG_PID).
fn watchdog_from_env() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ if usec == 0 => None,
        _ => Some(Duration::from_micros(usec)),
    }
}
