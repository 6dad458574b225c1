//! `xlb check`: validate a config and print it as xlb understands it.

use anyhow::{Context as _, Result};

use super::ConfigFile;

/// Prints the effective config (every default filled in), or its errors; on stderr, what it
/// asks of the data plane and the kernel memory that costs. The warnings say what keepalived
/// tolerates and xlb runs as keepalived would; with `--strict` they are errors.
pub fn check(config: &ConfigFile, json: bool) -> Result<()> {
    let checked = super::load_config(config)?;
    let config = &checked.loaded.config;
    if json {
        let text = serde_json::to_string_pretty(config).context("serializing the config")?;
        println!("{text}");
    } else {
        print!("{config}");
    }
    let cpus = aya::util::nr_cpus().map(|n| n.max(1)).unwrap_or(1);
    let memory = crate::capacity::memory(
        checked.usage.maglev_size,
        cpus,
        lb_common::DEFAULT_FLOW_TABLE_SIZE,
    );
    eprint!("{}", checked.usage.summary(&memory, cpus));
    Ok(())
}
