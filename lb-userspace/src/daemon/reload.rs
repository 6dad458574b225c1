//! A reload: the config read and checked off the main loop, within a deadline.

use std::time::Duration;

use lb_config::Config;
use log::warn;
use tokio::{sync::oneshot, task::JoinHandle};

use crate::{cli::ConfigFile, control::Response};

/// A reload whose config takes longer than this to read is refused (the running config stays).
/// Reading is bounded by lb-config's limits; this is the backstop.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

/// A reload being read off the main loop, and who waits for its answer.
pub(super) struct PendingReload {
    pub task: JoinHandle<Result<Config, Vec<String>>>,
    pub waiters: Vec<oneshot::Sender<Response>>,
}

impl PendingReload {
    /// Reads `config` as the daemon started with it (the same config id).
    pub fn start(config: &ConfigFile, served: Vec<String>, maglev_size: u32) -> Self {
        Self {
            task: start_reload(config, served, maglev_size),
            waiters: Vec::new(),
        }
    }
}

/// Reads the config on a blocking thread, within [`RELOAD_DEADLINE`], and checks it against
/// the data plane's limits and the running table size.
fn start_reload(
    config: &ConfigFile,
    served: Vec<String>,
    maglev_size: u32,
) -> JoinHandle<Result<Config, Vec<String>>> {
    let path = config.path.clone();
    let started = std::time::Instant::now();
    let config = config.clone();
    tokio::spawn(async move {
        let read = tokio::task::spawn_blocking({
            move || {
                config.load().map(|loaded| {
                    let fits = crate::capacity::check(&loaded.config);
                    (loaded, fits)
                })
            }
        });
        match tokio::time::timeout(RELOAD_DEADLINE, read).await {
            Err(_) => Err(vec![format!(
                "{}: not read within {RELOAD_DEADLINE:?}",
                path.display()
            )]),
            Ok(Err(e)) => Err(vec![format!("{}: reading failed: {e}", path.display())]),
            // Already capped by lb-config, with a last line that counts the rest.
            Ok(Ok(Err(errors))) => Err(errors.errors().map(|d| d.to_string()).collect()),
            Ok(Ok(Ok((_, Err(over))))) => Err(over.iter().map(|e| e.to_string()).collect()),
            Ok(Ok(Ok((loaded, Ok(_))))) => {
                log::debug!(
                    "{} read and checked in {:?}",
                    path.display(),
                    started.elapsed()
                );
                let wanted = loaded.config.global_defs.xlb_maglev_table_size;
                if wanted != maglev_size {
                    let at = loaded
                        .config
                        .global_defs
                        .xlb_maglev_table_size_origin
                        .span()
                        .map(|s| format!("{s}: "))
                        .unwrap_or_default();
                    return Err(vec![format!(
                        "{at}error: found xlb_maglev_table_size {wanted}, expected {maglev_size} \
                         as running: a new table size moves most flows and needs a restart"
                    )]);
                }
                let served: Vec<&str> = served.iter().map(String::as_str).collect();
                let elsewhere = super::other_interface_errors(&loaded.config, &served);
                if !elsewhere.is_empty() {
                    return Err(elsewhere);
                }
                if let Some(missing) = super::nat_forwarding_missing(&loaded.config) {
                    return Err(vec![missing]);
                }
                super::accept_translated_replies(&loaded.config, &served);
                for w in &loaded.warnings {
                    warn!("{w}");
                }
                Ok(loaded.config)
            }
        }
    })
}
