//! Active-active directors behind an ECMP router: a router namespace running BIRD with `merge
//! paths`, two directors each running xlb (DR) and BIRD, three backends on the directors' LAN,
//! and a client on the router's other side. Every BIRD has its own config, control socket and
//! log in the lab's directory; everything is stopped by pid and removed on drop.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::lab::{
    self, ECHO_PORT, Netns, Process, SUBNET, XlbOn, add_host, attach_xdp_pass, lab_bpffs,
    make_dr_backend, new_switch, spawn_named_servers, unique_name, wait_listening, wait_serving,
};

/// The announced VIP: outside every lab subnet, so the client reaches it only through the
/// router's BGP routes.
pub const VIP: &str = "10.96.0.100";
/// The client's network, on the router's eth1.
pub const CLIENT_SUBNET: &str = "10.97.0";
/// A dual-stack lab's IPv6: the announced VIP, the LAN (host N is `fd99::N`), the client's
/// network (client `fd97::10`, router `fd97::1`).
pub const VIP6: &str = "fd96::100";
pub const LAN6: &str = "fd99::";
pub const CLIENT6_NET: &str = "fd97::";
/// The backends' HTTP port over IPv6 (a server bound to `::`; port 80 is IPv4's).
pub const HTTP6_PORT: u16 = 8080;
/// The kernel table the directors' xlb puts VIP routes in.
pub const ANNOUNCE_TABLE: u32 = 100;
/// The router's AS, and the one both directors share (their paths must tie for ECMP).
pub const ROUTER_AS: u32 = 65000;
pub const DIRECTOR_AS: u32 = 65001;

/// BIRD's timers, in seconds: its defaults (hold 240, connect retry 120, error wait 60-300)
/// would have a restarted session wait minutes.
const BGP_TIMERS: &str = "\
        hold time 3;
        keepalive time 1;
        connect delay time 1;
        connect retry time 1;
        error wait time 1, 3;";

/// A director's bird.conf: the kernel protocol learns xlb's table (routes of any protocol but
/// `kernel` and `bird`), BGP exports what it learned with `next hop self` and imports nothing.
pub fn director_bird_conf(router_id: Ipv4Addr, router: Ipv4Addr, table: u32) -> String {
    director_bird_conf_v4(router_id, router, table)
}

/// The IPv6 half of a dual-stack director's bird.conf: the same table learnt for ipv6, and a
/// session over IPv6 (`own` and `router` are the LAN's host numbers).
pub fn director_bird_conf_v6(own: u8, router: u8, table: u32) -> String {
    format!(
        "protocol kernel xlb_vips6 {{
    kernel table {table};
    learn;
    scan time 10;
    ipv6 {{
        import all;
        export none;
    }};
}}
protocol bgp router1v6 {{
    local {LAN6}{own} as {DIRECTOR_AS};
    neighbor {LAN6}{router} as {ROUTER_AS};
{BGP_TIMERS}
    ipv6 {{
        import none;
        export where proto = \"xlb_vips6\";
        next hop self;
    }};
}}
"
    )
}

/// The IPv6 half of a dual-stack router's bird.conf.
pub fn router_bird_conf_v6(own: u8, directors: &[u8]) -> String {
    let mut conf = "protocol kernel kernel6 {
    merge paths on;
    ipv6 {
        import none;
        export all;
    };
}
"
    .to_string();
    for (i, d) in directors.iter().enumerate() {
        conf += &format!(
            "protocol bgp director{n}v6 {{
    local {LAN6}{own} as {ROUTER_AS};
    neighbor {LAN6}{d} as {DIRECTOR_AS};
{BGP_TIMERS}
    ipv6 {{
        import all;
        export none;
    }};
}}
",
            n = i + 1
        );
    }
    conf
}

fn director_bird_conf_v4(router_id: Ipv4Addr, router: Ipv4Addr, table: u32) -> String {
    format!(
        "router id {router_id};
log stderr all;
protocol device {{
    scan time 10;
}}
# The VIP routes xlb adds while a VIP is announceable; they vanish with xlb's device.
protocol kernel xlb_vips {{
    kernel table {table};
    learn;
    scan time 10;
    ipv4 {{
        import all;
        export none;
    }};
}}
protocol bgp router1 {{
    local {router_id} as {DIRECTOR_AS};
    neighbor {router} as {ROUTER_AS};
{BGP_TIMERS}
    ipv4 {{
        import none;
        export where proto = \"xlb_vips\";
        next hop self;
    }};
}}
"
    )
}

/// The router's bird.conf: one eBGP session per director, ECMP into the kernel (`merge paths`).
pub fn router_bird_conf(router_id: Ipv4Addr, directors: &[Ipv4Addr]) -> String {
    let mut conf = format!(
        "router id {router_id};
log stderr all;
protocol device {{
    scan time 10;
}}
protocol kernel {{
    merge paths on;
    ipv4 {{
        import none;
        export all;
    }};
}}
"
    );
    for (i, d) in directors.iter().enumerate() {
        conf += &format!(
            "protocol bgp director{n} {{
    local {router_id} as {ROUTER_AS};
    neighbor {d} as {DIRECTOR_AS};
{BGP_TIMERS}
    ipv4 {{
        import all;
        export none;
    }};
}}
",
            n = i + 1
        );
    }
    conf
}

/// One running BIRD.
struct Bird {
    process: Process,
    socket: PathBuf,
}

pub struct BgpLab {
    pub client: Netns,
    pub router: Netns,
    pub directors: Vec<Netns>,
    pub backends: Vec<Netns>,
    pub vip: Ipv4Addr,
    pub router_ip: Ipv4Addr,
    pub client_ip: Ipv4Addr,
    pub director_ips: Vec<Ipv4Addr>,
    pub backend_ips: Vec<Ipv4Addr>,
    pub workdir: PathBuf,
    pub xlb: PathBuf,
    /// More arguments for every `xlb run` (`--metrics-address ...`).
    pub xlb_args: Vec<String>,
    /// Dual stack: IPv6 on the LAN and the client's network, [`VIP6`] announced too.
    pub ipv6: bool,
    // Dropped in field order (after Drop::drop stopped them): daemons, BIRDs, servers, the
    // XDP_PASS program, then the namespaces, the switch last.
    xlbs: Vec<Option<Process>>,
    runs: Vec<usize>,
    birds: Vec<Bird>,
    servers: Vec<Process>,
    _peer_xdp: aya::Ebpf,
    switch: Netns,
}

impl BgpLab {
    pub fn new(tag: &str, directors: usize, backends: usize, xlb: &Path) -> Result<Self> {
        Self::build(tag, directors, backends, xlb, false)
    }

    /// As [`Self::new`], dual stack: every host has an IPv6 address too, the backends serve
    /// HTTP over IPv6 on [`HTTP6_PORT`], and [`VIP6`] is announced beside [`VIP`].
    pub fn dual_stack(tag: &str, directors: usize, backends: usize, xlb: &Path) -> Result<Self> {
        Self::build(tag, directors, backends, xlb, true)
    }

    fn build(tag: &str, directors: usize, backends: usize, xlb: &Path, ipv6: bool) -> Result<Self> {
        let base = unique_name(tag);
        let switch = new_switch(format!("{base}-sw"))?;
        let workdir = std::env::temp_dir().join(&base);
        fs::create_dir_all(&workdir)?;
        let vip: Ipv4Addr = VIP.parse()?;

        // The router: eth0 on the directors' LAN, eth1 to the client.
        let router = add_host(&switch, &base, "rt", 1)?;
        let client = Netns::new(format!("{base}-cl"))?;
        router.run(&[
            "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "tmp0",
        ])?;
        router.run(&["ip", "link", "set", "tmp0", "netns", &client.name])?;
        client.run(&["ip", "link", "set", "tmp0", "name", "eth0"])?;
        router.run(&[
            "ip",
            "addr",
            "add",
            &format!("{CLIENT_SUBNET}.1/24"),
            "dev",
            "eth1",
        ])?;
        router.run(&["ip", "link", "set", "eth1", "up"])?;
        client.run(&[
            "ip",
            "addr",
            "add",
            &format!("{CLIENT_SUBNET}.10/24"),
            "dev",
            "eth0",
        ])?;
        client.run(&["ip", "link", "set", "eth0", "up"])?;
        client.run(&["ethtool", "-K", "eth0", "tx", "off"])?;
        client.run(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("{CLIENT_SUBNET}.1"),
        ])?;
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            // ECMP on the flow's ports too: connections from one client spread.
            ("net.ipv4.fib_multipath_hash_policy", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv4.conf.eth0.rp_filter", "0"),
            ("net.ipv4.conf.eth1.rp_filter", "0"),
        ] {
            router.run(&["sysctl", "-q", "-w", &format!("{key}={value}")])?;
        }

        if ipv6 {
            for (ns, dev, cidr) in [
                (&router, "eth0", format!("{LAN6}1/64")),
                (&router, "eth1", format!("{CLIENT6_NET}1/64")),
                (&client, "eth0", format!("{CLIENT6_NET}10/64")),
            ] {
                ns.run(&["ip", "-6", "addr", "add", &cidr, "dev", dev, "nodad"])?;
            }
            client.run(&[
                "ip",
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("{CLIENT6_NET}1"),
            ])?;
            for (key, value) in [
                ("net.ipv6.conf.all.forwarding", "1"),
                ("net.ipv6.fib_multipath_hash_policy", "1"),
            ] {
                router.run(&["sysctl", "-q", "-w", &format!("{key}={value}")])?;
            }
        }

        let mut director_ns = Vec::new();
        let mut director_ips = Vec::new();
        let mut ports = Vec::new();
        for d in 0..directors {
            let octet = 2 + d as u8;
            let role = format!("d{}", d + 1);
            let ns = add_host(&switch, &base, &role, octet)?;
            if ipv6 {
                ns.run(&[
                    "ip",
                    "-6",
                    "addr",
                    "add",
                    &format!("{LAN6}{octet}/64"),
                    "dev",
                    "eth0",
                    "nodad",
                ])?;
            }
            director_ns.push(ns);
            director_ips.push(format!("{SUBNET}.{octet}").parse()?);
            ports.push(format!("p{role}"));
        }
        let port_names: Vec<&str> = ports.iter().map(String::as_str).collect();
        let peer_xdp = attach_xdp_pass(&switch, &port_names)?;

        let mut lab = Self {
            client,
            router,
            directors: director_ns,
            backends: Vec::new(),
            vip,
            router_ip: format!("{SUBNET}.1").parse()?,
            client_ip: format!("{CLIENT_SUBNET}.10").parse()?,
            director_ips,
            backend_ips: Vec::new(),
            workdir,
            xlb: xlb.to_path_buf(),
            xlb_args: Vec::new(),
            ipv6,
            xlbs: (0..directors).map(|_| None).collect(),
            runs: vec![0; directors],
            birds: Vec::new(),
            servers: Vec::new(),
            _peer_xdp: peer_xdp,
            switch,
        };
        for i in 0..backends {
            let octet = 11 + i as u8;
            let name = format!("b{}", i + 1);
            let ns = add_host(&lab.switch, &base, &name, octet)?;
            lab.backend_ips.push(format!("{SUBNET}.{octet}").parse()?);
            make_dr_backend(&ns, vip)?;
            // Replies go to the client through the router, straight from the backend.
            ns.run(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &format!("{SUBNET}.1"),
            ])?;
            lab.servers
                .extend(spawn_named_servers(&ns, &lab.workdir, &name)?);
            if ipv6 {
                let vip6 = format!("{VIP6}/128");
                ns.run(&[
                    "ip",
                    "-6",
                    "addr",
                    "add",
                    &format!("{LAN6}{octet}/64"),
                    "dev",
                    "eth0",
                    "nodad",
                ])?;
                ns.run(&["ip", "-6", "addr", "add", &vip6, "dev", "lo", "nodad"])?;
                ns.run(&[
                    "ip",
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("{LAN6}1"),
                ])?;
                // Dual stack on `::`, so it answers the IPv4 readiness probe too.
                let mut cmd = ns.command("python3");
                cmd.args([
                    "-m",
                    "http.server",
                    &HTTP6_PORT.to_string(),
                    "--bind",
                    "::",
                    "--directory",
                ])
                .arg(lab.workdir.join(&name))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
                let child = cmd.spawn().context("starting the IPv6 HTTP server")?;
                lab.servers.push(Process {
                    child,
                    what: format!("http6 {name}"),
                });
            }
            lab.backends.push(ns);
        }
        for ns in &lab.backends {
            wait_serving(ns)?;
            if ipv6 {
                wait_listening(ns, HTTP6_PORT, Duration::from_secs(10))?;
            }
        }

        let octets: Vec<u8> = (0..directors).map(|d| 2 + d as u8).collect();
        let mut router_conf = router_bird_conf(lab.router_ip, &lab.director_ips);
        if ipv6 {
            router_conf += &router_bird_conf_v6(1, &octets);
        }
        lab.start_bird("rt", &router_conf, |lab| &lab.router)?;
        for (d, octet) in octets.into_iter().enumerate() {
            let mut conf = director_bird_conf(lab.director_ips[d], lab.router_ip, ANNOUNCE_TABLE);
            if ipv6 {
                conf += &director_bird_conf_v6(octet, 1, ANNOUNCE_TABLE);
            }
            let name = lab.director_name(d);
            lab.start_bird(&name, &conf, move |lab| &lab.directors[d])?;
            lab.set_healthy(d, true)?;
        }
        Ok(lab)
    }

    fn start_bird(&mut self, name: &str, conf: &str, ns: impl Fn(&Self) -> &Netns) -> Result<()> {
        let conf_path = self.workdir.join(format!("bird-{name}.conf"));
        fs::write(&conf_path, conf)?;
        let socket = self.workdir.join(format!("bird-{name}.ctl"));
        let log = fs::File::create(self.workdir.join(format!("bird-{name}.log")))?;
        let mut cmd = ns(self).command("bird");
        cmd.arg("-f")
            .arg("-c")
            .arg(&conf_path)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(self.workdir.join(format!("bird-{name}.pid")))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("starting bird")?;
        let process = Process {
            child,
            what: format!("bird on {name}"),
        };
        self.birds.push(Bird { process, socket });
        // Its control socket answers once the config is read.
        let bird = self.birds.last().context("bird")?;
        lab::wait_for(Duration::from_secs(10), || {
            Self::birdc_at(ns(self), &bird.socket, "show status").is_ok()
        })
        .with_context(|| format!("BIRD on {name} did not come up: {}", self.bird_log(name)))
    }

    fn birdc_at(ns: &Netns, socket: &Path, command: &str) -> Result<String> {
        let mut c = ns.command("birdc");
        c.arg("-s").arg(socket).args(command.split_whitespace());
        let out = lab::output_within(&mut c, Duration::from_secs(5))?;
        if !out.status.success() {
            bail!("birdc {command}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `birdc COMMAND` on the router.
    pub fn router_birdc(&self, command: &str) -> Result<String> {
        Self::birdc_at(&self.router, &self.birds[0].socket, command)
    }

    /// The control socket of director `d`'s BIRD.
    pub fn bird_socket(&self, d: usize) -> &Path {
        &self.birds[d + 1].socket
    }

    pub fn bird_log(&self, name: &str) -> String {
        fs::read_to_string(self.workdir.join(format!("bird-{name}.log"))).unwrap_or_default()
    }

    pub fn director_name(&self, d: usize) -> String {
        format!("d{}", d + 1)
    }

    /// Director `d`'s directory on the BPF filesystem.
    pub fn bpffs(&self, d: usize) -> PathBuf {
        lab_bpffs(&self.directors[d])
    }

    /// Director `d`'s xlb: the lab's binary, pins and pidfile.
    pub fn xlb_on(&self, d: usize) -> XlbOn<'_> {
        XlbOn::new(&self.directors[d], &self.xlb, self.pidfile(d))
    }

    /// The config file of director `d`'s xlb.
    fn config_path(&self, d: usize) -> PathBuf {
        self.workdir.join(format!("{}.conf", self.director_name(d)))
    }

    pub fn pidfile(&self, d: usize) -> PathBuf {
        self.workdir.join(format!("{}.pid", self.director_name(d)))
    }

    /// The flag file director `d`'s health checks pass on.
    fn health_flag(&self, d: usize) -> PathBuf {
        self.workdir
            .join(format!("{}.healthy", self.director_name(d)))
    }

    /// Makes every real server pass (or fail) director `d`'s health checks: the checks of
    /// each director look at a file of its own, so one director can lose quorum alone.
    pub fn set_healthy(&self, d: usize, healthy: bool) -> Result<()> {
        let flag = self.health_flag(d);
        if healthy {
            fs::write(&flag, "")?;
        } else if flag.exists() {
            fs::remove_file(&flag)?;
        }
        Ok(())
    }

    /// xlb's config for director `d`: the VIP announced, port 80 and the echo port over every
    /// backend, each real server checked by a MISC_CHECK on the director's flag file.
    pub fn xlb_config(&self, d: usize, drain: &str) -> String {
        let mut t = format!(
            "global_defs {{\n    router_id {}\n    xlb_announce {}\n    xlb_announce_table \
             {ANNOUNCE_TABLE}\n    xlb_announce_drain {drain}\n    xlb_bird_socket {}\n}}\n",
            self.director_name(d),
            self.vip,
            self.bird_socket(d).display()
        );
        let mut services: Vec<(String, u16, Vec<String>)> = [80, ECHO_PORT]
            .into_iter()
            .map(|port| {
                let reals = self.backend_ips.iter().map(|ip| ip.to_string()).collect();
                (self.vip.to_string(), port, reals)
            })
            .collect();
        if self.ipv6 {
            t = t.replacen(
                "    xlb_announce_table",
                &format!("    xlb_announce {VIP6}\n    xlb_announce_table"),
                1,
            );
            let reals = (0..self.backend_ips.len())
                .map(|i| format!("{LAN6}{}", 11 + i))
                .collect();
            services.push((VIP6.to_string(), HTTP6_PORT, reals));
        }
        for (vip, port, reals) in services {
            t += &format!(
                "virtual_server {vip} {port} {{\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n"
            );
            for ip in &reals {
                t += &format!(
                    "    real_server {ip} {port} {{\n        weight 1\n        MISC_CHECK {{\n            \
                     misc_path \"/usr/bin/test -e {}\"\n            misc_timeout 1\n            \
                     delay_loop 1\n        }}\n    }}\n",
                    self.health_flag(d).display()
                );
            }
            t += "}\n";
        }
        t
    }

    /// Starts `xlb run` on director `d`; returns once it has resolved its backends.
    pub fn start_xlb(&mut self, d: usize, drain: &str) -> Result<()> {
        if self.xlbs[d].is_some() {
            bail!("xlb runs on {} already", self.director_name(d));
        }
        let path = self.config_path(d);
        fs::write(&path, self.xlb_config(d, drain))?;
        self.runs[d] += 1;
        let log = fs::File::create(self.log_path(d))?;
        let args = ["--flow-table-size", "65536"].map(String::from);
        let child = self
            .xlb_on(d)
            .run(&path, &[&args[..], &self.xlb_args].concat())?
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting xlb")?;
        self.xlbs[d] = Some(Process {
            child,
            what: format!("xlb on {}", self.director_name(d)),
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(p) = &mut self.xlbs[d]
                && let Ok(Some(status)) = p.child.try_wait()
            {
                bail!(
                    "xlb on {} exited ({status}); log:\n{}",
                    self.director_name(d),
                    self.log(d)
                );
            }
            if self.log(d).matches(" is at ").count() >= self.backends.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "xlb on {} did not start within 20 s; log:\n{}",
                    self.director_name(d),
                    self.log(d)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_path(&self, d: usize) -> PathBuf {
        self.workdir.join(format!(
            "{}-xlb-{}.log",
            self.director_name(d),
            self.runs[d]
        ))
    }

    /// The log of the latest xlb started on `d`.
    pub fn log(&self, d: usize) -> String {
        fs::read_to_string(self.log_path(d)).unwrap_or_default()
    }

    fn xlb_process(&mut self, d: usize) -> Result<&mut Process> {
        let name = self.director_name(d);
        self.xlbs[d]
            .as_mut()
            .with_context(|| format!("no xlb runs on {name}"))
    }

    /// `kill -9` of the xlb on `d`, by pid; the moment it was sent, once it is gone.
    pub fn kill9(&mut self, d: usize) -> Result<Instant> {
        let p = self.xlb_process(d)?;
        let at = p.signal(libc::SIGKILL);
        p.wait_exit(Duration::from_secs(5))
            .context("outlived kill -9")?;
        self.xlbs[d] = None;
        Ok(at)
    }

    /// SIGTERM to the xlb on `d`; the moment it was sent.
    pub fn sigterm(&mut self, d: usize) -> Result<Instant> {
        Ok(self.xlb_process(d)?.signal(libc::SIGTERM))
    }

    /// Waits up to `limit` for the xlb on `d` to exit.
    pub fn wait_exit(&mut self, d: usize, limit: Duration) -> Result<std::process::ExitStatus> {
        let status = self.xlb_process(d)?.wait_exit(limit)?;
        self.xlbs[d] = None;
        Ok(status)
    }

    /// Removes what a killed xlb left pinned (its XDP program stays attached otherwise).
    pub fn cleanup(&self, d: usize) -> Result<String> {
        self.xlb_command(d, &["cleanup"])
    }

    /// `xlb ARGS -i eth0 --bpffs B --pidfile P` on director `d`.
    pub fn xlb_command(&self, d: usize, args: &[&str]) -> Result<String> {
        self.xlb_on(d).command(args)
    }

    /// Replaces director `d`'s config with `text` and has its xlb reload it; the answer.
    pub fn reload(&self, d: usize, text: &str) -> Result<String> {
        self.xlb_on(d).reload(&self.config_path(d), text)
    }

    /// `GET /metrics` from the xlb of director `d` on `address` (in its namespace).
    pub fn metrics(&self, d: usize, address: std::net::SocketAddr) -> Result<String> {
        self.directors[d].enter(|| -> Result<String> {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: xlb\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })?
    }

    /// `xlb status --json` of director `d`.
    pub fn xlb_status(&self, d: usize) -> Result<lb_userspace::status::Status> {
        self.xlb_on(d).status()
    }

    /// Packets director `d` forwarded to the VIP's services, from its pinned counters (they
    /// count on after its xlb is killed).
    pub fn forwarded(&self, d: usize) -> Result<u64> {
        let pin_dir = self.xlb_on(d).pin_dir()?;
        let stats = lb_userspace::dataplane::read_pinned_stats(&pin_dir)?;
        Ok(stats.vips.iter().map(|v| v.counters.packets).sum())
    }

    /// The router's next hops to the VIP, as its kernel has them.
    pub fn next_hops(&self) -> Result<Vec<Ipv4Addr>> {
        let text = self
            .router
            .run(&["ip", "-4", "route", "show", &format!("{}/32", self.vip)])?;
        let mut hops: Vec<Ipv4Addr> = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .filter_map(|w| w[1].parse().ok())
            .collect();
        hops.sort();
        Ok(hops)
    }

    /// How many next hops the router's kernel has to [`VIP6`].
    pub fn next_hops6(&self) -> Result<usize> {
        let text = self
            .router
            .run(&["ip", "-6", "route", "show", &format!("{VIP6}/128")])?;
        Ok(text.split_whitespace().filter(|w| *w == "via").count())
    }

    /// Polls (every 10 ms, up to `limit`) until the router has `want` next hops to [`VIP6`].
    pub fn wait_next_hops6(&self, want: usize, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        let mut last = 0;
        while Instant::now() < deadline {
            last = self.next_hops6()?;
            if last == want {
                return Ok(Instant::now());
            }
            thread::sleep(Duration::from_millis(10));
        }
        bail!(
            "the router has {last} next hops to {VIP6} after {limit:?}, expected {want}; \
             router's BIRD:\n{}",
            self.router_birdc("show protocols").unwrap_or_default()
        )
    }

    /// Polls the router's route (every 10 ms, up to `limit`) until its next hops are `want`;
    /// the moment they were seen.
    pub fn wait_next_hops(&self, want: &[Ipv4Addr], limit: Duration) -> Result<Instant> {
        let mut want = want.to_vec();
        want.sort();
        let deadline = Instant::now() + limit;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = self.next_hops()?;
            if last == want {
                return Ok(Instant::now());
            }
            thread::sleep(Duration::from_millis(10));
        }
        bail!(
            "the router's next hops to {} are {last:?} after {limit:?}, expected {want:?}; \
             router's BIRD:\n{}",
            self.vip,
            self.router_birdc("show protocols").unwrap_or_default()
        )
    }
}

impl Drop for BgpLab {
    fn drop(&mut self) {
        for p in self.xlbs.iter_mut().flatten() {
            p.stop(Duration::from_secs(10));
        }
        for d in 0..self.directors.len() {
            // A killed xlb's pins keep XDP attached until removed.
            let _ = self.cleanup(d);
        }
        for b in self.birds.iter_mut() {
            b.process.stop(Duration::from_secs(3));
        }
        for p in self.servers.iter_mut() {
            p.stop(Duration::from_secs(3));
        }
        for d in 0..self.directors.len() {
            let _ = fs::remove_dir_all(self.bpffs(d));
        }
        if std::env::var_os("XLB_KEEP_LAB").is_none() {
            let _ = fs::remove_dir_all(&self.workdir);
        }
        let _ = &self.switch;
    }
}
