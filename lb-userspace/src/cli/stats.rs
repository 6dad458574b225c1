//! `xlb stats`: the data plane's counters, read from the pinned maps of a running xlb.

use anyhow::Result;
use lb_common::is_v4_mapped;

use crate::{
    dataplane::{self, Stats},
    instance::InstancePaths,
};

pub fn print(paths: &InstancePaths) -> Result<()> {
    use std::io::Write as _;
    let stats = dataplane::read_pinned_stats(&paths.pin_dir)?;
    let mut text = render(&stats);
    // Written by the VRRP thread of a running xlb that has vrrp_instance blocks.
    if let Ok(vrrp) = std::fs::read_to_string(paths.pidfile.with_extension("vrrp")) {
        text += "VRRP:\n";
        for line in vrrp.lines() {
            text += &format!("  {line}\n");
        }
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

fn render(stats: &Stats) -> String {
    let mut out = String::from("outcome counters:\n");
    for (outcome, n) in &stats.outcomes {
        out += &format!("  {:<20} {n}\n", outcome.name());
    }
    out += "flow table (placed by Maglev, not found):\n";
    for (event, n) in &stats.flow_events {
        out += &format!("  {:<20} {n}\n", event.name());
    }
    out += "VIPs:\n";
    for v in &stats.vips {
        let o: Vec<u8> = v.key.addr.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let ip: std::net::IpAddr = if is_v4_mapped(&v.key.addr) {
            std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]).into()
        } else {
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(o.as_slice()).unwrap_or([0; 16])).into()
        };
        let proto = match v.key.proto {
            lb_common::PROTO_TCP => "TCP",
            lb_common::PROTO_UDP => "UDP",
            _ => "?",
        };
        out += &format!(
            "  {} {} {proto}: {} packets, {} bytes\n",
            ip,
            u16::from_be(v.key.port),
            v.counters.packets,
            v.counters.bytes
        );
    }
    out += "backends:\n";
    for b in &stats.backends {
        let who = match &b.entry {
            Some(e) => format!(
                " {}:{} of {}:{}{}",
                crate::service::words_addr(&e.real_server),
                e.real_server_port,
                crate::service::words_addr(&e.vip.addr),
                u16::from_be(e.vip.port),
                if e.flags & lb_common::BACKEND_F_VALID == 0 {
                    " (down)"
                } else {
                    ""
                }
            ),
            None => String::new(),
        };
        out += &format!(
            "  #{}{who}: {} packets, {} bytes\n",
            b.id, b.counters.packets, b.counters.bytes
        );
    }
    out
}
