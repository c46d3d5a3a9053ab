//! systemd's notify protocol (`Type=notify`, packaging/m365-connector.service): readiness once
//! the server listens, the watchdog from the scheduler loop, stopping on shutdown. Outside
//! systemd (no `NOTIFY_SOCKET`) every call does nothing.

use std::sync::OnceLock;
use std::time::Duration;

/// The folder is scanned and the page listens.
pub fn ready() {
    #[cfg(unix)]
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}

/// Shutting down (running connectors get their grace period).
pub fn stopping() {
    #[cfg(unix)]
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

/// Re-reading the folder (SIGHUP), then ready again.
pub fn reloading() {
    #[cfg(unix)]
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
}

/// The scheduler loop turned: systemd restarts the server if this stops for `WatchdogSec`.
pub fn watchdog() {
    #[cfg(unix)]
    if watchdog_interval().is_some() {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
    }
}

/// How often the loop must turn to keep the watchdog fed: half of `WatchdogSec`, as
/// sd_watchdog_enabled(3) advises; `None` when no watchdog is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    static INTERVAL: OnceLock<Option<Duration>> = OnceLock::new();
    *INTERVAL.get_or_init(|| {
        #[cfg(unix)]
        {
            let mut usec = 0u64;
            if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
                return Some(Duration::from_micros(usec / 2));
            }
        }
        None
    })
}
