//! The connector server (`serve`): the scheduler that runs every hosted, active connector on
//! its schedule, and the status page beside it in the same process.
//!
//! ```text
//! scheduler.rs  the loop: rescans the folder, starts due runs and Run now, publishes ──┐
//! board.rs      the snapshot every page reads (runs read from staging, read-only)  <──┘
//! web/          axum: pages (askama templates in templates/), metrics, access, health
//! lock.rs       one run of a connector at a time, whoever starts it
//! clock.rs      real and virtual time          systemd.rs  readiness and the watchdog
//! status.rs     `status`, the page's twin on the terminal
//! ```

pub mod board;
pub mod clock;
pub mod lock;
pub mod scheduler;
pub mod status;
pub mod systemd;
pub mod web;

pub use clock::{Clock, ManualClock, SystemClock};
pub use lock::ConnectorLock;
pub use scheduler::{Outcome, Request, RunEvent, RunNow, ServeOptions, Server};
pub use status::status;
