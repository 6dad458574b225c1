//! The edge director xlb is sized for, as keepalived.conf: 1,024 VIPs, each serving TCP 80, 443
//! and 8080 and UDP 53 (4,096 virtual services), each VIP's services on the same 4 of 64 real
//! servers (16,384 real-server entries, about 1 MB). The same shape as the workspace's
//! `tests/src/edge.rs`, written out here so that lb-config's tests and its load benchmark
//! need nothing outside the crate.

use std::fmt::Write;

pub const VIPS: usize = 1024;
pub const REALS: usize = 64;
/// The services of one VIP: (port, protocol keyword).
pub const PORTS: [(u16, &str); 4] = [(80, "TCP"), (443, "TCP"), (8080, "TCP"), (53, "UDP")];
pub const SERVICES: usize = VIPS * PORTS.len();
pub const REALS_PER_SERVICE: usize = 4;

/// The four real servers of VIP `i` (indexes into 0..REALS), all different: a scatter, as in
/// `tests/src/edge.rs`.
fn reals_of(i: usize) -> [usize; REALS_PER_SERVICE] {
    let mut picked = [usize::MAX; REALS_PER_SERVICE];
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d;
    let mut n = 0;
    while n < REALS_PER_SERVICE {
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

/// The whole config text.
pub fn config() -> String {
    let mut text = String::from("global_defs {\n    router_id edge\n}\n");
    for i in 0..VIPS {
        let vip = format!("10.100.{}.{}", i >> 8, i & 0xff);
        for (port, proto) in PORTS {
            let _ = write!(
                text,
                "virtual_server {vip} {port} {{\n    lb_algo mh\n    lb_kind DR\n    protocol {proto}\n"
            );
            for r in reals_of(i) {
                let _ = write!(
                    text,
                    "    real_server 10.200.0.{} {port} {{\n    }}\n",
                    r + 1
                );
            }
            text += "}\n";
        }
    }
    text
}
