//! The `xlb` subcommands.

pub mod check;
pub mod reload;
pub mod run;
pub mod stats;

use std::path::Path;

use anyhow::{Result, bail};

/// Reads and validates a config file; every error is printed, the warnings are logged.
pub fn load_config(path: &Path) -> Result<lb_config::Loaded> {
    match lb_config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                log::warn!("{w}");
            }
            Ok(loaded)
        }
        Err(errors) => {
            for d in &errors.diagnostics {
                eprintln!("{d}");
            }
            bail!("{}: {} error(s)", path.display(), errors.error_count())
        }
    }
}
