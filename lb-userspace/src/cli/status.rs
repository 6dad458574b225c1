//! `xlb status` and `xlb stats`: what the running xlb serves, asked on its control socket.
//! Nothing is read from files a dead xlb may have left: no daemon, no status.

use std::io::Write as _;

use anyhow::{Context as _, Result, bail};

use crate::{
    control::{self, Request, Response},
    instance::InstancePaths,
    status::{Columns, Status, render_stats, render_status},
};

/// What `xlb status` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table(Columns),
    Json,
}

fn ask(paths: &InstancePaths) -> Result<Status> {
    match control::request(&paths.socket, &Request::Status)? {
        Response::Status(status) => Ok(*status),
        Response::Refused { errors } => bail!("xlb refused: {}", errors.join("; ")),
        other => bail!("xlb answered a status request with {other:?}"),
    }
}

fn print(text: &str) {
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

pub fn status(paths: &InstancePaths, format: Format) -> Result<()> {
    let status = ask(paths)?;
    match format {
        Format::Table(columns) => print(&render_status(&status, columns)),
        Format::Json => {
            let mut text = serde_json::to_string_pretty(&status).context("encoding the status")?;
            text.push('\n');
            print(&text);
        }
    }
    Ok(())
}

pub fn stats(paths: &InstancePaths) -> Result<()> {
    print(&render_stats(&ask(paths)?));
    Ok(())
}
