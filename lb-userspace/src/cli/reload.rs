//! `xlb reload`: asks the running xlb, over its control socket, to re-read its config, and
//! reports what changed or why the file was refused. Never signals a pid read from a file.

use anyhow::{Result, bail};

use crate::{
    control::{self, Request, Response},
    instance::InstancePaths,
};

pub fn reload(paths: &InstancePaths) -> Result<()> {
    match control::request(&paths.socket, &Request::Reload)? {
        Response::Reloaded { changes } if changes.is_empty() => {
            println!("reloaded: nothing changed");
            Ok(())
        }
        Response::Reloaded { changes } => {
            println!("reloaded: {} change(s)", changes.len());
            for c in changes {
                println!("  {c}");
            }
            Ok(())
        }
        Response::Refused { errors } => {
            for e in &errors {
                eprintln!("{e}");
            }
            bail!("reload refused; the running config stays in force")
        }
        other => bail!("xlb answered a reload with {other:?}"),
    }
}
