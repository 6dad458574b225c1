//! `xlb stop`: asks the running xlb to stop as SIGTERM does (VRRP handed over, XDP detached,
//! pins removed) and waits until it has.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::{
    control::{self, Request, Response},
    instance::InstancePaths,
};

/// A stop hands VRRP over first (priority 0 and a short wait), then detaches.
const STOP_DEADLINE: Duration = Duration::from_secs(60);

pub fn stop(paths: &InstancePaths) -> Result<()> {
    let pid = match control::request(&paths.socket, &Request::Stop)? {
        Response::Stopping { pid } => pid,
        Response::Refused { errors } => bail!("xlb refused to stop: {}", errors.join("; ")),
        other => bail!("xlb answered a stop with {other:?}"),
    };
    // The daemon removes its pidfile last, once XDP is detached and the pins are gone.
    let started = Instant::now();
    while paths.pidfile.exists() {
        if started.elapsed() > STOP_DEADLINE {
            bail!(
                "xlb (pid {pid}) has not finished stopping after {} s; its log says why",
                STOP_DEADLINE.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("xlb (pid {pid}) stopped");
    Ok(())
}
