//! The edge director xlb is sized for: 1,024 VIPs, each serving TCP 80, 443 and 8080 and UDP 53
//! (4,096 virtual services), each VIP's four services on the same 4 of 64 real servers.

use std::net::{IpAddr, Ipv4Addr};

pub const VIPS: usize = 1024;
pub const REALS: usize = 64;
/// The services of one VIP: (port, protocol keyword).
pub const PORTS: [(u16, &str); 4] = [(80, "TCP"), (443, "TCP"), (8080, "TCP"), (53, "UDP")];

pub fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 100, (i >> 8) as u8, i as u8)
}

pub fn real(r: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 0, r as u8 + 1)
}

/// The four real servers of VIP `i` (indexes into 0..REALS), all different: a scatter, so that
/// VIPs mostly have sets of their own (a Maglev table each) and every real serves about 64.
pub fn reals_of(i: usize) -> [usize; 4] {
    let mut picked = [usize::MAX; 4];
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d;
    let mut n = 0;
    while n < 4 {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 29;
        let r = (x % REALS as u64) as usize;
        if !picked.contains(&r) {
            picked[n] = r;
            n += 1;
        }
    }
    picked
}

/// The config, leaving out the real servers `without` everywhere.
pub fn config(without: &[usize]) -> String {
    let mut text = String::from("global_defs {\n    router_id edge\n}\n");
    for i in 0..VIPS {
        for (port, proto) in PORTS {
            text += &format!(
                "virtual_server {} {port} {{\n    lb_algo mh\n    lb_kind DR\n    protocol {proto}\n",
                vip(i)
            );
            for r in reals_of(i).into_iter().filter(|r| !without.contains(r)) {
                text += &format!("    real_server {} {port} {{\n    }}\n", real(r));
            }
            text += "}\n";
        }
    }
    text
}

/// Every real server's address.
pub fn real_ips() -> impl Iterator<Item = IpAddr> {
    (0..REALS).map(|r| real(r).into())
}
