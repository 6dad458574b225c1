//! `xlb run`: the daemon ([`crate::daemon`]) on a runtime of its own.

use anyhow::{Context as _, Result};

pub use crate::daemon::{DEFAULT_HASH_SEED, DaemonOptions};

pub fn run(opts: DaemonOptions) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(crate::daemon::run(opts))
}
