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

/// The edge director with the real daemon: a namespace whose eth0 reaches the 64 real servers
/// through neighbour entries made by hand (no hosts needed: nothing is sent to them), xlb
/// serving [`config`], and its pinned program to ask, with BPF_PROG_TEST_RUN, where a packet
/// would go.
pub struct EdgeLab {
    pub ns: crate::lab::Netns,
    pub dir: std::path::PathBuf,
    pub config: std::path::PathBuf,
    pub bpffs: std::path::PathBuf,
    pub daemon: Option<crate::lab::Process>,
}

/// BPF_PROG_TEST_RUN's verdicts for a forwarded frame.
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

pub fn mac_of_real(r: usize) -> [u8; 6] {
    [0x02, 0xbe, 0, 0, 0, r as u8]
}

impl EdgeLab {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let ns = crate::lab::Netns::new(crate::lab::unique_name(tag))?;
        ns.run(&[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ])?;
        ns.run(&["ip", "addr", "add", "10.200.0.254/24", "dev", "eth0"])?;
        ns.run(&["ip", "link", "set", "eth0", "up"])?;
        ns.run(&["ip", "link", "set", "peer0", "up"])?;
        for r in 0..REALS {
            let mac = mac_of_real(r)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            ns.run(&[
                "ip",
                "neigh",
                "replace",
                &real(r).to_string(),
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])?;
        }
        let dir = std::env::temp_dir().join(&ns.name);
        std::fs::create_dir_all(&dir).context("creating the lab's directory")?;
        let config = dir.join("edge.conf");
        std::fs::write(&config, self::config(&[]))?;
        let bpffs = crate::lab::lab_bpffs(&ns);
        Ok(Self {
            ns,
            dir,
            config,
            bpffs,
            daemon: None,
        })
    }

    /// Starts `xlb run` on the config (a flow table of 65,536; the log in `xlb.log`).
    pub fn start(&mut self, xlb: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let log = std::fs::File::create(self.dir.join("xlb.log"))?;
        let child = crate::lab::XlbOn::new(&self.ns, xlb, self.dir.join("xlb.pid"))
            .run(&self.config, &["--flow-table-size", "65536"])?
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting xlb")?;
        self.daemon = Some(crate::lab::Process {
            child,
            what: "xlb".into(),
        });
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("xlb.log")).unwrap_or_default()
    }

    /// xlb's pinned program, once it is there (within `limit`).
    pub fn program(&self, limit: std::time::Duration) -> anyhow::Result<aya::programs::Xdp> {
        let pin = self.ns.pin_dir(&self.bpffs, "eth0")?.join("prog");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(p) =
                aya::programs::Xdp::from_pin(&pin, aya_obj::programs::XdpAttachType::Interface)
            {
                return Ok(p);
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("xlb pinned no program within {limit:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Rewrites the config without the real servers `without` and makes xlb reload it
    /// (SIGHUP); when the signal was sent.
    pub fn reload_without(&self, without: &[usize]) -> anyhow::Result<std::time::Instant> {
        use anyhow::Context as _;
        std::fs::write(&self.config, self::config(without))?;
        let pid = self.daemon.as_ref().context("xlb is not running")?.pid();
        let sent = std::time::Instant::now();
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        Ok(sent)
    }
}

impl Drop for EdgeLab {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop(std::time::Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.bpffs);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every service: (VIP index, port, protocol keyword).
pub fn services() -> Vec<(usize, u16, &'static str)> {
    (0..VIPS)
        .flat_map(|i| PORTS.iter().map(move |(p, proto)| (i, *p, *proto)))
        .collect()
}

/// A SYN (or, for UDP, a datagram) from `client_port` to VIP `i`'s service `port`.
pub fn syn(i: usize, port: u16, proto: &str, client_port: u16) -> Vec<u8> {
    let l4 = if proto == "TCP" {
        crate::packet::L4::Tcp
    } else {
        crate::packet::L4::Udp
    };
    crate::packet::PacketSpec::new("198.18.0.7", &vip(i).to_string(), client_port, port, l4).build()
}

/// Where the program sends a frame: the destination MAC, if it forwards it.
pub fn forwarded(prog: &aya::programs::Xdp, frame: &[u8]) -> anyhow::Result<Option<[u8; 6]>> {
    use anyhow::Context as _;
    use aya::programs::TestRun as _;
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(aya::programs::TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN")?;
    Ok(matches!(r.return_value, XDP_TX | XDP_REDIRECT)
        .then(|| out[..6].try_into().unwrap_or_default()))
}

/// SYNs (TCP only: a UDP datagram is a flow the table remembers, and it rightly keeps its
/// draining real server) that the program sends to real server `r` now: up to `n`, at most one
/// per service.
pub fn syns_reaching(
    prog: &aya::programs::Xdp,
    r: usize,
    n: usize,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut found = Vec::new();
    for (i, port, proto) in services() {
        if !reals_of(i).contains(&r) || proto != "TCP" {
            continue;
        }
        for client_port in 1024..1124 {
            let frame = syn(i, port, proto, client_port);
            if forwarded(prog, &frame)? == Some(mac_of_real(r)) {
                found.push(frame);
                break;
            }
        }
        if found.len() >= n {
            break;
        }
    }
    Ok(found)
}
