//! The `xlb` subcommands.

pub mod check;
pub mod cleanup;
pub mod man;
pub mod reload;
pub mod run;
pub mod status;
pub mod stop;

use std::path::Path;

use anyhow::{Result, bail};

/// A config that parsed and fits the data plane.
pub struct Checked {
    pub loaded: lb_config::Loaded,
    pub usage: crate::capacity::Usage,
}

/// Reads and validates a config file, and checks it against the data plane's limits; every
/// error is printed, the warnings are logged.
pub fn load_config(path: &Path) -> Result<Checked> {
    let loaded = match lb_config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for d in &errors.diagnostics {
                let level = if d.is_error() {
                    log::Level::Error
                } else {
                    log::Level::Warn
                };
                eprintln!("{}{d}", crate::logging::stderr_prefix(level));
            }
            bail!("{}: {} error(s)", path.display(), errors.error_count())
        }
    };
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    match crate::capacity::check(&loaded.config) {
        Ok(usage) => Ok(Checked { loaded, usage }),
        Err(over) => {
            let prefix = crate::logging::stderr_prefix(log::Level::Error);
            for e in &over {
                eprintln!("{prefix}{e}");
            }
            bail!(
                "{}: {} error(s): over the data plane's limits",
                path.display(),
                over.len()
            )
        }
    }
}
