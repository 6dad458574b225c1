//! `xlb check`: validate a config and print it as xlb understands it.

use std::path::Path;

use anyhow::{Context as _, Result};

/// Prints the effective config (every default filled in), or its errors.
pub fn check(path: &Path, json: bool) -> Result<()> {
    let loaded = super::load_config(path)?;
    if json {
        let text =
            serde_json::to_string_pretty(&loaded.config).context("serializing the config")?;
        println!("{text}");
    } else {
        print!("{}", loaded.config);
    }
    Ok(())
}
