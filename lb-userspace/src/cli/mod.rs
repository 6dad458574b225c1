//! The `xlb` subcommands.

pub mod check;
pub mod cleanup;
pub mod man;
pub mod reload;
pub mod run;
pub mod status;
pub mod stop;

use std::ops::Deref;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// A config file and how to read it (keepalived's config id, `--strict`): what `xlb run` keeps
/// so that every reload reads the file as the start did. Derefs to the path.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub options: lb_config::LoadOptions,
}

impl ConfigFile {
    /// `path` read with `config_id`, or keepalived's default id (the node name) without one.
    pub fn new(path: PathBuf, config_id: Option<String>, strict: bool) -> Self {
        ConfigFile {
            path,
            options: lb_config::LoadOptions {
                config_id: config_id.or_else(lb_config::node_config_id),
                strict,
            },
        }
    }

    /// Reads and validates the file (every include, every error).
    pub fn load(&self) -> Result<lb_config::Loaded, lb_config::Errors> {
        lb_config::load_with(&self.path, &self.options)
    }
}

impl Deref for ConfigFile {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

/// A config that parsed and fits the data plane.
pub struct Checked {
    pub loaded: lb_config::Loaded,
    pub usage: crate::capacity::Usage,
}

/// Reads and validates a config file, and checks it against the data plane's limits; every
/// error is printed, the warnings are logged.
pub fn load_config(config: &ConfigFile) -> Result<Checked> {
    let path = config.path.as_path();
    let loaded = match config.load() {
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
