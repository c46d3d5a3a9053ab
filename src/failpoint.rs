//! Named pause points for the crash-safety tests.
//!
//! A SIGKILL can arrive between any two instructions; the tests make it arrive at the
//! moments that matter (a page landed but not checkpointed, a manifest written but not
//! renamed, a transform half done) by setting `M365_CONNECTOR_FAILPOINT=<name>[@N]`. The
//! process then stops at the Nth time it reaches `<name>`, says so on stderr, and waits to be
//! killed. Unset (always, outside the tests) a failpoint costs one relaxed atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the failpoint to stop at.
pub const ENV: &str = "M365_CONNECTOR_FAILPOINT";

/// What stderr says when a failpoint is reached; the harness waits for this text.
pub const REACHED: &str = "failpoint reached:";

struct Armed {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (name, nth) = match spec.split_once('@') {
                Some((n, k)) => (n.to_string(), k.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                nth,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Stops the process here, for good, if the failpoint `name` is armed and this is its Nth hit.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    if a.name != name || a.hits.fetch_add(1, Ordering::SeqCst) + 1 != a.nth {
        return;
    }
    eprintln!("{REACHED} {name}@{}", a.nth);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
