//! `xlb cleanup`: what an xlb killed with SIGKILL leaves behind, removed: the pinned XDP link
//! (which `ip link set dev IFACE xdp off` cannot remove), the pinned maps, the pidfile and the
//! control socket, and the VRRP virtual addresses it had added. Refused while an xlb serves
//! the interface.

use std::{collections::BTreeSet, net::IpAddr};

use anyhow::{Context as _, Result, bail};
use lb_common::{Addr, CLAIM_STATIC, VIP_ADDR_CLAIM_MASK, VipAddrValue, names};

use crate::{
    dataplane::pins,
    instance::{InstanceLock, InstancePaths, lock_holder},
    netlink::Netlink,
    service::words_addr,
};

pub fn cleanup(paths: &InstancePaths) -> Result<()> {
    if !paths.pin_dir.exists() {
        println!(
            "nothing pinned in {}; removing the pidfile and socket if left",
            paths.pin_dir.display()
        );
        remove_runtime_files(paths);
        return Ok(());
    }
    let Some(lock) = InstanceLock::try_acquire(&paths.pin_dir)? else {
        let holder = lock_holder(&paths.pin_dir)
            .map(|pid| format!("xlb (pid {pid})"))
            .unwrap_or_else(|| "an xlb".to_string());
        bail!(
            "{holder} is running on {}: use `xlb stop -i {}` instead",
            paths.interface,
            paths.interface
        );
    };
    let vrrp_addresses = pinned_vrrp_addresses(&paths.pin_dir);
    pins::remove_pin_set(&paths.pin_dir)?;
    println!(
        "removed the pins in {} (XDP detached from {})",
        paths.pin_dir.display(),
        paths.interface
    );
    pins::remove_empty_parents(lock.path(), &paths.bpffs);
    drop(lock);
    remove_runtime_files(paths);
    match vrrp_addresses {
        Ok(addresses) if !addresses.is_empty() => remove_addresses(&addresses)?,
        Ok(_) => {}
        Err(e) => eprintln!("xlb: VRRP addresses not removed: {e:#}"),
    }
    Ok(())
}

fn remove_runtime_files(paths: &InstancePaths) {
    for path in [&paths.pidfile, &paths.socket] {
        if std::fs::remove_file(path).is_ok() {
            println!("removed {}", path.display());
        }
    }
}

/// The VRRP virtual addresses the pinned address map lists (those of a VRRP instance's
/// claim; a virtual server's address with no instance is the operator's, left alone).
fn pinned_vrrp_addresses(dir: &std::path::Path) -> Result<BTreeSet<IpAddr>> {
    let path = dir.join(names::VIP_ADDRS);
    if !path.exists() {
        return Ok(BTreeSet::new());
    }
    let data = aya::maps::MapData::from_pin(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let map: aya::maps::HashMap<_, Addr, VipAddrValue> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data))
            .context("the VIP address map")?;
    let mut out = BTreeSet::new();
    for entry in map.iter() {
        let (addr, value) = entry.context("reading the VIP address map")?;
        if value & VIP_ADDR_CLAIM_MASK != CLAIM_STATIC {
            out.insert(words_addr(&addr));
        }
    }
    Ok(out)
}

fn remove_addresses(addresses: &BTreeSet<IpAddr>) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(async {
            let netlink = Netlink::connect()?;
            for (ifindex, ip, prefix_len) in netlink.addresses().await? {
                if addresses.contains(&ip) {
                    netlink.remove_address(ifindex, ip, prefix_len).await?;
                    println!("removed VRRP address {ip}/{prefix_len} (ifindex {ifindex})");
                }
            }
            Ok(())
        })
}
