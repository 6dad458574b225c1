//! A lab for VRRP: a client, N directors and M Direct Routing backends on one bridge, each in a
//! network namespace of its own (see [`crate::lab`]). On each director runs either xlb (a
//! keepalived.conf with one `vrrp_instance` and the virtual servers of the VIP) or keepalived
//! itself (VRRP only: as MASTER the VIP reaches the director's own stack, where a local HTTP and
//! echo server answer with the director's name, d1, d2, ...).
//!
//! Directors are 10.99.0.2, .3, ...; backends 10.99.0.11, .12, ...; the client 10.99.0.10; the
//! VIP 10.99.0.100. Nothing holds the VIP statically: VRRP adds it to the master's eth0.
//! Dropping the lab stops every process it started (by pid) and deletes its namespaces.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::lab::{
    self, ECHO_PORT, Load, Netns, Process, SUBNET, XlbOn, add_host, attach_xdp_pass, connect_from,
    http_get_id, lab_bpffs, mac_of, make_dr_backend, new_switch, spawn_named_servers, unique_name,
    wait_serving,
};

/// What runs VRRP on a director.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    Xlb,
    Keepalived,
}

impl Daemon {
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Xlb => "xlb",
            Daemon::Keepalived => "keepalived",
        }
    }
}

/// The `vrrp_instance VI_1` every director of a lab runs (priorities are per director).
#[derive(Clone, Debug)]
pub struct VrrpSpec {
    pub vrid: u8,
    /// 2 or 3.
    pub version: u8,
    /// keepalived syntax: whole seconds for version 2, e.g. "0.1" for version 3.
    pub advert_int: String,
    /// Version 2 `auth_type PASS` with this password.
    pub auth_pass: Option<String>,
    /// unicast_src_ip (the director's own address) and unicast_peer (every other director).
    pub unicast: bool,
    pub nopreempt: bool,
    /// More lines for the vrrp_instance block, as given.
    pub extra: String,
}

impl VrrpSpec {
    pub fn v3(advert_int: &str) -> Self {
        Self {
            vrid: 51,
            version: 3,
            advert_int: advert_int.into(),
            auth_pass: None,
            unicast: false,
            nopreempt: false,
            extra: String::new(),
        }
    }

    pub fn v2(advert_int: u32, auth_pass: Option<&str>) -> Self {
        Self {
            vrid: 51,
            version: 2,
            advert_int: advert_int.to_string(),
            auth_pass: auth_pass.map(str::to_string),
            unicast: false,
            nopreempt: false,
            extra: String::new(),
        }
    }

    pub fn unicast(mut self) -> Self {
        self.unicast = true;
        self
    }

    pub fn nopreempt(mut self) -> Self {
        self.nopreempt = true;
        self
    }

    /// The advert interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.advert_int.parse().unwrap_or(1.0))
    }

    /// Master_Down_Interval of a backup with `priority` (RFC 3768 / 5798, as keepalived).
    pub fn master_down_interval(&self, priority: u8) -> Duration {
        let weight = f64::from(256 - u32::from(priority)) / 256.0;
        let skew = if self.version == 2 {
            Duration::from_secs_f64(weight)
        } else {
            self.interval().mul_f64(weight)
        };
        self.interval() * 3 + skew
    }
}

/// A daemon running on a director.
struct Running {
    daemon: Daemon,
    process: Process,
    log: PathBuf,
    /// keepalived's VRRP child writes its pid here.
    vrrp_pidfile: Option<PathBuf>,
}

pub struct HaLab {
    pub client: Netns,
    pub directors: Vec<Netns>,
    pub backends: Vec<Netns>,
    pub vip: Ipv4Addr,
    pub client_ip: Ipv4Addr,
    pub director_ips: Vec<Ipv4Addr>,
    pub backend_ips: Vec<Ipv4Addr>,
    pub workdir: PathBuf,
    /// The xlb binary started on directors.
    pub xlb: PathBuf,
    /// More arguments for every `xlb run` (`--metrics-address ...`).
    pub xlb_args: Vec<String>,
    // Dropped in field order (after Drop::drop stopped them): daemons, servers, the XDP_PASS
    // program, then the namespaces, the switch last.
    running: Vec<Option<Running>>,
    /// Runs started per director, to name logs.
    runs: Vec<usize>,
    /// The director's local HTTP and echo servers (for keepalived), if started.
    local_servers: Vec<Vec<Process>>,
    servers: Vec<Process>,
    _peer_xdp: aya::Ebpf,
    /// A NAT lab's server side ([`HaLab::nat`]).
    pub server: Option<ServerSide>,
    switch: Netns,
}

/// The second network of a NAT lab: the directors' eth1 and the real servers, whose default
/// route is the gateway address VRRP moves with the client-side VIP.
pub struct ServerSide {
    pub gateway: Ipv4Addr,
    _peer_xdp: aya::Ebpf,
    pub switch: Netns,
}

/// The server side's subnet in a NAT lab.
pub const SERVER_SUBNET: &str = "10.98.0";

impl HaLab {
    /// Builds the lab; `xlb` is the binary [`HaLab::start_xlb`] runs.
    pub fn new(tag: &str, directors: usize, backends: usize, xlb: &Path) -> Result<Self> {
        let base = unique_name(tag);
        let switch = new_switch(format!("{base}-sw"))?;
        let workdir = std::env::temp_dir().join(&base);
        fs::create_dir_all(&workdir)?;
        let vip: Ipv4Addr = format!("{SUBNET}.100").parse()?;

        let client = add_host(&switch, &base, "cl", 10)?;
        let mut director_ns = Vec::new();
        let mut director_ips = Vec::new();
        let mut ports = Vec::new();
        for d in 0..directors {
            let octet = 2 + d as u8;
            let role = format!("d{}", d + 1);
            director_ns.push(add_host(&switch, &base, &role, octet)?);
            director_ips.push(format!("{SUBNET}.{octet}").parse()?);
            ports.push(format!("p{role}"));
        }
        let port_names: Vec<&str> = ports.iter().map(String::as_str).collect();
        let peer_xdp = attach_xdp_pass(&switch, &port_names)?;

        let mut lab = Self {
            client,
            directors: director_ns,
            backends: Vec::new(),
            vip,
            client_ip: format!("{SUBNET}.10").parse()?,
            director_ips,
            backend_ips: Vec::new(),
            workdir,
            xlb: xlb.to_path_buf(),
            xlb_args: Vec::new(),
            running: (0..directors).map(|_| None).collect(),
            runs: vec![0; directors],
            local_servers: (0..directors).map(|_| Vec::new()).collect(),
            servers: Vec::new(),
            _peer_xdp: peer_xdp,
            server: None,
            switch,
        };
        for i in 0..backends {
            let octet = 11 + i as u8;
            let name = format!("b{}", i + 1);
            let ns = add_host(&lab.switch, &base, &name, octet)?;
            lab.backend_ips.push(format!("{SUBNET}.{octet}").parse()?);
            make_dr_backend(&ns, vip)?;
            lab.servers
                .extend(spawn_named_servers(&ns, &lab.workdir, &name)?);
            lab.backends.push(ns);
        }
        for ns in &lab.backends {
            wait_serving(ns)?;
        }
        Ok(lab)
    }

    /// A NAT lab (keepalived's two-armed LVS-NAT, as seed 003 builds it): the client and the
    /// directors' eth0 on the client network (10.99.0.0/24, VIP 10.99.0.100), the directors' eth1
    /// and the real servers on a server network (10.98.0.0/24) whose default route is the
    /// gateway 10.98.0.254 that VRRP moves with the VIP. Directors forward IP; xlb runs with
    /// `--also-interface eth1`.
    pub fn nat(tag: &str, directors: usize, backends: usize, xlb: &Path) -> Result<Self> {
        let mut lab = Self::new(tag, directors, 0, xlb)?;
        let base = lab
            .workdir
            .file_name()
            .and_then(|n| n.to_str())
            .context("lab name")?
            .to_string();
        let switch = new_switch(format!("{base}-ss"))?;
        let mut ports = Vec::new();
        for (d, ns) in lab.directors.iter().enumerate() {
            let port = format!("sd{}", d + 1);
            lab::plug(
                &switch,
                ns,
                &port,
                "eth1",
                [0x02, 0x98, 0, 0, 0, 2 + d as u8],
                &format!("{SERVER_SUBNET}.{}/24", 2 + d),
            )?;
            ns.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            ports.push(port);
        }
        let port_names: Vec<&str> = ports.iter().map(String::as_str).collect();
        let peer_xdp = attach_xdp_pass(&switch, &port_names)?;
        let gateway: Ipv4Addr = format!("{SERVER_SUBNET}.254").parse()?;
        for i in 0..backends {
            let octet = 11 + i as u8;
            let name = format!("b{}", i + 1);
            let ns = Netns::new(format!("{base}-{name}"))?;
            lab::plug(
                &switch,
                &ns,
                &format!("s{name}"),
                "eth0",
                [0x02, 0x98, 0, 0, 0, octet],
                &format!("{SERVER_SUBNET}.{octet}/24"),
            )?;
            ns.run(&["ip", "route", "add", "default", "via", &gateway.to_string()])?;
            lab.backend_ips
                .push(format!("{SERVER_SUBNET}.{octet}").parse()?);
            lab.servers
                .extend(spawn_named_servers(&ns, &lab.workdir, &name)?);
            lab.backends.push(ns);
        }
        for ns in &lab.backends {
            wait_serving(ns)?;
        }
        lab.xlb_args = vec!["--also-interface".into(), "eth1".into()];
        lab.server = Some(ServerSide {
            gateway,
            _peer_xdp: peer_xdp,
            switch,
        });
        Ok(lab)
    }

    /// Stops backend `backend`'s HTTP server (its echo server keeps running).
    pub fn stop_backend_http(&mut self, backend: usize) -> Result<()> {
        // Each backend's servers were started HTTP first, then echo.
        let server = self
            .servers
            .get_mut(2 * backend)
            .context("no such backend")?;
        server.stop(Duration::from_secs(3));
        Ok(())
    }

    /// The directors holding `address` on any interface.
    pub fn holders_of(&self, address: Ipv4Addr) -> Result<Vec<usize>> {
        let needle = format!("inet {address}/");
        let mut out = Vec::new();
        for (d, ns) in self.directors.iter().enumerate() {
            if ns.run(&["ip", "-o", "addr", "show"])?.contains(&needle) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The state xlb on `d` reports for instance `name`.
    pub fn instance_state(&self, d: usize, name: &str) -> Option<String> {
        let status = self.xlb_status(d).ok()?;
        status
            .vrrp
            .into_iter()
            .find(|vi| vi.name == name)
            .map(|vi| vi.state)
    }

    /// d1, d2, ...
    pub fn director_name(&self, d: usize) -> String {
        format!("d{}", d + 1)
    }

    pub fn director_mac(&self, d: usize) -> Result<[u8; 6]> {
        mac_of(&self.directors[d], "eth0")
    }

    /// Which director a MAC is (their MACs are 02:99:00:00:00:{octet}).
    pub fn director_of_mac(&self, mac: [u8; 6]) -> Option<usize> {
        (0..self.directors.len()).find(|&d| self.director_mac(d).is_ok_and(|m| m == mac))
    }

    /// The director's pin directory on the BPF filesystem.
    pub fn bpffs(&self, d: usize) -> PathBuf {
        lab_bpffs(&self.directors[d])
    }

    /// Director `d`'s xlb: the lab's binary, pins and pidfile.
    pub fn xlb_on(&self, d: usize) -> XlbOn<'_> {
        XlbOn::new(&self.directors[d], &self.xlb, self.pidfile(d))
    }

    /// Where director `d`'s xlb pins its program, link and maps.
    pub fn pin_dir(&self, d: usize) -> PathBuf {
        self.xlb_on(d).pin_dir().expect("the director's namespace")
    }

    pub fn pidfile(&self, d: usize) -> PathBuf {
        self.workdir.join(format!("{}.pid", self.director_name(d)))
    }

    /// The config file of director `d`'s xlb.
    fn config_path(&self, d: usize) -> PathBuf {
        self.workdir.join(format!("{}.conf", self.director_name(d)))
    }

    /// The `vrrp_instance VI_1` block for director `d` at `priority`.
    pub fn vrrp_instance(&self, d: usize, spec: &VrrpSpec, priority: u8) -> String {
        let mut t = String::from("vrrp_instance VI_1 {\n");
        t += if spec.nopreempt {
            "    state BACKUP\n    nopreempt\n"
        } else {
            "    state BACKUP\n"
        };
        t += &format!(
            "    interface eth0\n    virtual_router_id {}\n    priority {priority}\n    advert_int {}\n    version {}\n",
            spec.vrid, spec.advert_int, spec.version
        );
        if let Some(pass) = &spec.auth_pass {
            t += &format!(
                "    authentication {{\n        auth_type PASS\n        auth_pass {pass}\n    }}\n"
            );
        }
        if spec.unicast {
            t += &format!(
                "    unicast_src_ip {}\n    unicast_peer {{\n",
                self.director_ips[d]
            );
            for (o, ip) in self.director_ips.iter().enumerate() {
                if o != d {
                    t += &format!("        {ip}\n");
                }
            }
            t += "    }\n";
        }
        for line in spec.extra.lines().filter(|l| !l.trim().is_empty()) {
            t += &format!("    {}\n", line.trim());
        }
        t += &format!(
            "    virtual_ipaddress {{\n        {}/32 dev eth0\n    }}\n}}\n",
            self.vip
        );
        t
    }

    /// `virtual_server` blocks for the VIP on port 80 and the echo port, DR with Maglev, over
    /// the given backends (indices), all of weight 1.
    pub fn virtual_servers(&self, backends: &[usize]) -> String {
        let mut t = String::new();
        for port in [80, ECHO_PORT] {
            t += &format!(
                "virtual_server {} {port} {{\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n",
                self.vip
            );
            for &b in backends {
                t += &format!(
                    "    real_server {} {port} {{\n        weight 1\n    }}\n",
                    self.backend_ips[b]
                );
            }
            t += "}\n";
        }
        t
    }

    /// xlb's config for director `d`: the instance and the virtual servers over every backend.
    pub fn xlb_config(&self, d: usize, spec: &VrrpSpec, priority: u8) -> String {
        let all: Vec<usize> = (0..self.backends.len()).collect();
        self.vrrp_instance(d, spec, priority) + &self.virtual_servers(&all)
    }

    /// keepalived's config for director `d`: VRRP only.
    pub fn keepalived_config(&self, d: usize, spec: &VrrpSpec, priority: u8) -> String {
        format!(
            "global_defs {{\n    router_id {}\n}}\n{}",
            self.director_name(d),
            self.vrrp_instance(d, spec, priority)
        )
    }

    fn next_log(&mut self, d: usize, daemon: Daemon) -> PathBuf {
        self.runs[d] += 1;
        self.workdir.join(format!(
            "{}-{}-{}.log",
            self.director_name(d),
            daemon.name(),
            self.runs[d]
        ))
    }

    /// Starts `xlb run` on director `d` with this config text; returns once its VRRP instance
    /// has entered its first state and its backends are resolved.
    pub fn start_xlb(&mut self, d: usize, config: &str) -> Result<()> {
        self.start_xlb_logging(d, config, None)
    }

    /// As [`Self::start_xlb`], with xlb's stderr (its log) on `stderr` when given: the log file
    /// then gets only stdout, and xlb is asked on its control socket whether it has started.
    pub fn start_xlb_logging(
        &mut self,
        d: usize,
        config: &str,
        stderr: Option<std::os::fd::OwnedFd>,
    ) -> Result<()> {
        if self.is_running(d) {
            bail!("{} runs a daemon already", self.director_name(d));
        }
        let path = self.config_path(d);
        fs::write(&path, config)?;
        let log = self.next_log(d, Daemon::Xlb);
        let file = fs::File::create(&log)?;
        let args = ["--flow-table-size", "65536"].map(String::from);
        let mut cmd = self
            .xlb_on(d)
            .run(&path, &[&args[..], &self.xlb_args].concat())?;
        cmd.stdout(file.try_clone()?);
        let logs_elsewhere = stderr.is_some();
        match stderr {
            Some(fd) => cmd.stderr(fd),
            None => cmd.stderr(file),
        };
        let child = cmd.spawn().context("starting xlb")?;
        self.running[d] = Some(Running {
            daemon: Daemon::Xlb,
            process: Process {
                child,
                what: format!("xlb on {}", self.director_name(d)),
            },
            log,
            vrrp_pidfile: None,
        });
        let servers = config
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("real_server"))
                    .then(|| w.next().map(str::to_string))
                    .flatten()
            })
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if logs_elsewhere {
            return self.wait_started(d, |lab| {
                lab.xlb_status(d).is_ok_and(|s| {
                    s.vrrp.iter().any(|vi| vi.state != "INIT")
                        && s.services
                            .iter()
                            .flat_map(|svc| &svc.real_servers)
                            .all(|rs| rs.state != "unresolved")
                })
            });
        }
        self.wait_started(d, |lab| {
            let log = lab.log(d);
            log.contains(" Entering ") && log.matches(" is at ").count() >= servers
        })
    }

    /// Starts the director's local HTTP (port 80) and echo servers, answering its name.
    pub fn start_local_servers(&mut self, d: usize) -> Result<()> {
        if !self.local_servers[d].is_empty() {
            return Ok(());
        }
        let name = self.director_name(d);
        self.local_servers[d] =
            spawn_named_servers(&self.directors[d], &self.workdir, &name)?.into();
        wait_serving(&self.directors[d])
    }

    /// Starts keepalived (VRRP only, in the foreground, no respawn) on director `d` with this
    /// config text, and the director's local servers; returns once the instance has entered
    /// its first state.
    pub fn start_keepalived(&mut self, d: usize, config: &str) -> Result<()> {
        if self.is_running(d) {
            bail!("{} runs a daemon already", self.director_name(d));
        }
        self.start_local_servers(d)?;
        let name = self.director_name(d);
        let path = self.workdir.join(format!("{name}-keepalived.conf"));
        fs::write(&path, config)?;
        let log = self.next_log(d, Daemon::Keepalived);
        let file = fs::File::create(&log)?;
        let pid = |what: &str| self.workdir.join(format!("{name}-keepalived{what}.pid"));
        let vrrp_pidfile = pid("-vrrp");
        for p in [pid(""), pid("-vrrp"), pid("-checkers"), pid("-bfd")] {
            let _ = fs::remove_file(p);
        }
        let mut cmd = self.directors[d].command("keepalived");
        // -n foreground, -l log to the console, -D detailed, -P VRRP only, -G no syslog,
        // -R no respawn (a killed VRRP child ends keepalived, as a crash would).
        cmd.args(["-n", "-l", "-D", "-P", "-G", "-R", "-f"])
            .arg(&path)
            .arg("-p")
            .arg(pid(""))
            .arg("-r")
            .arg(&vrrp_pidfile)
            .arg("-c")
            .arg(pid("-checkers"))
            .arg("-b")
            .arg(pid("-bfd"))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = cmd
            .spawn()
            .context("starting keepalived (cargo xtask setup installs it)")?;
        self.running[d] = Some(Running {
            daemon: Daemon::Keepalived,
            process: Process {
                child,
                what: format!("keepalived on {name}"),
            },
            log,
            vrrp_pidfile: Some(vrrp_pidfile),
        });
        self.wait_started(d, |lab| {
            lab.log(d).contains(" Entering ") && lab.keepalived_vrrp_pid(d).is_some()
        })
    }

    /// Waits (up to 20 s) until `ready` holds for the daemon just started on `d`; fails if it
    /// exits first.
    fn wait_started(&mut self, d: usize, ready: impl Fn(&Self) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if !self.is_running(d) {
                bail!(
                    "the daemon on {} exited while starting; log:\n{}",
                    self.director_name(d),
                    self.log(d)
                );
            }
            if ready(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the daemon on {} did not start VRRP within 20 s; log:\n{}",
                    self.director_name(d),
                    self.log(d)
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts `daemon` on director `d` with the lab's config for it.
    pub fn start(&mut self, d: usize, daemon: Daemon, spec: &VrrpSpec, priority: u8) -> Result<()> {
        match daemon {
            Daemon::Xlb => {
                let config = self.xlb_config(d, spec, priority);
                self.start_xlb(d, &config)
            }
            Daemon::Keepalived => {
                let config = self.keepalived_config(d, spec, priority);
                self.start_keepalived(d, &config)
            }
        }
    }

    /// What runs on director `d`, if anything still does.
    pub fn daemon(&mut self, d: usize) -> Option<Daemon> {
        self.is_running(d)
            .then(|| self.running[d].as_ref().map(|r| r.daemon))
            .flatten()
    }

    /// Whether the daemon started on director `d` is still alive.
    pub fn is_running(&mut self, d: usize) -> bool {
        match &mut self.running[d] {
            Some(r) => matches!(r.process.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The pid of the process started on `d` (xlb, or keepalived's parent).
    pub fn pid(&self, d: usize) -> Option<i32> {
        self.running[d].as_ref().map(|r| r.process.pid())
    }

    /// keepalived's VRRP child on `d`: the pid its pidfile names, if that process is a child of
    /// the keepalived this lab started.
    pub fn keepalived_vrrp_pid(&self, d: usize) -> Option<i32> {
        let r = self.running[d].as_ref()?;
        let pid: i32 = fs::read_to_string(r.vrrp_pidfile.as_ref()?)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // pid (comm) state ppid ...
        let ppid: i32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == r.process.pid()).then_some(pid)
    }

    /// `kill -9` of the daemon on `d` (for keepalived: its VRRP child, after which the parent,
    /// started with --dont-respawn, exits; it is killed too if it lingers). Returns the moment
    /// of the kill.
    pub fn kill9(&mut self, d: usize) -> Result<Instant> {
        let target = match self.running[d].as_ref().map(|r| r.daemon) {
            Some(Daemon::Xlb) => self.pid(d),
            Some(Daemon::Keepalived) => self.keepalived_vrrp_pid(d),
            None => None,
        }
        .with_context(|| format!("nothing runs on {}", self.director_name(d)))?;
        // SAFETY: signalling a process this lab started (or its keepalived child) by pid.
        unsafe { libc::kill(target, libc::SIGKILL) };
        let at = Instant::now();
        let r = self.running[d].as_mut().context("no daemon")?;
        if r.process.wait_exit(Duration::from_secs(5)).is_err() {
            let _ = r.process.child.kill();
            let _ = r.process.child.wait();
        }
        Ok(at)
    }

    /// SIGTERM to the daemon on `d`; returns at once, with the moment it was sent.
    pub fn sigterm(&mut self, d: usize) -> Result<Instant> {
        let r = self.running[d]
            .as_ref()
            .with_context(|| format!("nothing runs on {}", self.director_name(d)))?;
        Ok(r.process.signal(libc::SIGTERM))
    }

    /// Waits up to `limit` for the daemon on `d` to exit; its exit status.
    pub fn wait_exit(&mut self, d: usize, limit: Duration) -> Result<std::process::ExitStatus> {
        let r = self.running[d].as_mut().context("no daemon")?;
        r.process.wait_exit(limit)
    }

    /// A clean stop (SIGTERM, then SIGKILL after `grace`).
    pub fn stop(&mut self, d: usize, grace: Duration) {
        if let Some(r) = &mut self.running[d] {
            r.process.stop(grace);
        }
    }

    /// The log of the latest daemon started on `d`.
    pub fn log(&self, d: usize) -> String {
        self.running[d]
            .as_ref()
            .and_then(|r| fs::read_to_string(&r.log).ok())
            .unwrap_or_default()
    }

    /// Every log of director `d`, oldest first.
    pub fn all_logs(&self, d: usize) -> String {
        let mut out = String::new();
        for run in 1..=self.runs[d] {
            for daemon in [Daemon::Xlb, Daemon::Keepalived] {
                let p = self.workdir.join(format!(
                    "{}-{}-{run}.log",
                    self.director_name(d),
                    daemon.name()
                ));
                if let Ok(text) = fs::read_to_string(&p) {
                    out += &format!("--- {} ---\n{text}", p.display());
                }
            }
        }
        out
    }

    /// Every director's logs, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.directors.len())
            .map(|d| self.all_logs(d))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How many lines of the current log of `d` contain `needle`.
    pub fn log_count(&self, d: usize, needle: &str) -> usize {
        self.log(d).lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until the current log of `d` has more than `before` lines containing `needle`.
    pub fn wait_for_log(
        &self,
        d: usize,
        needle: &str,
        before: usize,
        limit: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if self.log_count(d, needle) > before {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                bail!(
                    "no new line with {needle:?} in the log of {} within {limit:?}; logs:\n{}",
                    self.director_name(d),
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The state the current daemon of `d` last logged entering (MASTER, BACKUP, FAULT), or
    /// None if it is not running.
    pub fn state(&mut self, d: usize) -> Option<String> {
        if !self.is_running(d) {
            return None;
        }
        self.log(d).lines().rev().find_map(|l| {
            let rest = l.split("(VI_1) Entering ").nth(1)?;
            Some(rest.split_whitespace().next()?.to_string())
        })
    }

    /// Number of lines "(VI_1) Entering {state} STATE" in the current log of `d`.
    pub fn entered(&self, d: usize, state: &str) -> usize {
        self.log_count(d, &format!("(VI_1) Entering {state} STATE"))
    }

    /// The directors whose eth0 holds the VIP.
    pub fn holders(&self) -> Result<Vec<usize>> {
        let needle = format!("inet {}/", self.vip);
        let mut out = Vec::new();
        for (d, ns) in self.directors.iter().enumerate() {
            if ns
                .run(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"])?
                .contains(&needle)
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Waits until `d` is MASTER (by its log) and the only VIP holder.
    pub fn wait_master(&mut self, d: usize, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if self.state(d).as_deref() == Some("MASTER") && self.holders()? == vec![d] {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                let states: Vec<_> = (0..self.directors.len()).map(|d| self.state(d)).collect();
                bail!(
                    "{} is not the only MASTER after {limit:?}: states {states:?}, holders {:?}; logs:\n{}",
                    self.director_name(d),
                    self.holders()?,
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the daemon on `d` has logged entering `state` (MASTER, BACKUP, FAULT) as
    /// its latest state.
    pub fn wait_state(&mut self, d: usize, state: &str, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if self.state(d).as_deref() == Some(state) {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} is not {state} after {limit:?} but {:?}; logs:\n{}",
                    self.director_name(d),
                    self.state(d),
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The directors whose MAC answers an ARP request for the VIP from the client within
    /// `wait` (a raw AF_PACKET socket in the client namespace: one request, then every reply).
    pub fn arp_responders(&self, wait: Duration) -> Result<Vec<usize>> {
        let macs = arp_who_has(&self.client, self.client_ip, self.vip, wait)?;
        let mut out = Vec::new();
        for mac in macs {
            match self.director_of_mac(mac) {
                Some(d) => out.push(d),
                None => bail!("an unknown MAC {mac:02x?} answered ARP for {}", self.vip),
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Gets the lab ready for an IPv6 instance: the client gets [`CLIENT6`] (no DAD) and every
    /// director's link-local address (VRRP's source over IPv6) is past DAD.
    pub fn enable_ipv6(&self) -> Result<()> {
        self.client.run(&[
            "ip",
            "addr",
            "add",
            &format!("{CLIENT6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        let deadline = Instant::now() + Duration::from_secs(10);
        for ns in &self.directors {
            loop {
                let text = ns.run(&["ip", "-6", "-o", "addr", "show", "dev", "eth0"])?;
                if text.contains("fe80:") && !text.contains("tentative") {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("no usable link-local address in {}: {text}", ns.name);
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The line of `ip -6 -o addr` for [`VIP6`] on director `d`'s eth0 (flags such as
    /// `tentative` or `dadfailed` show there), if it holds it.
    pub fn vip6_line(&self, d: usize) -> Result<Option<String>> {
        let needle = format!("inet6 {VIP6}/");
        Ok(self.directors[d]
            .run(&["ip", "-6", "-o", "addr", "show", "dev", "eth0"])?
            .lines()
            .find(|l| l.contains(&needle))
            .map(str::to_string))
    }

    /// The directors whose MAC answers a neighbour solicitation for [`VIP6`] from the client
    /// within `wait`.
    pub fn nd_responders(&self, wait: Duration) -> Result<Vec<usize>> {
        let macs = nd_who_has(&self.client, CLIENT6, VIP6, wait)?;
        let mut out = Vec::new();
        for mac in macs {
            match self.director_of_mac(mac) {
                Some(d) => out.push(d),
                None => bail!("an unknown MAC {mac:02x?} answered for {VIP6}"),
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Takes director `d`'s eth0 down or up (inside its namespace).
    pub fn set_link(&self, d: usize, up: bool) -> Result<()> {
        self.directors[d].run(&["ip", "link", "set", "eth0", if up { "up" } else { "down" }])?;
        Ok(())
    }

    /// Takes the switch side of director `d`'s cable (its bridge port) down or up: the
    /// director's eth0 stays administratively up but loses its carrier.
    pub fn set_switch_port(&self, d: usize, up: bool) -> Result<()> {
        let port = format!("p{}", self.director_name(d));
        self.switch
            .run(&["ip", "link", "set", &port, if up { "up" } else { "down" }])?;
        Ok(())
    }

    /// One GET of /id through the VIP: the name of whoever answered (b1.. or d1..).
    pub fn get(&self, timeout: Duration) -> Result<String> {
        let addr = SocketAddr::from((self.vip, 80));
        self.client.enter(move || http_get_id(addr, timeout))?
    }

    /// Tries GETs until one succeeds (up to `limit`); its answer.
    pub fn get_eventually(&self, limit: Duration) -> Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.get(Duration::from_millis(500)) {
                Ok(name) => return Ok(name),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).context(format!("no answer through the VIP within {limit:?}"));
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// `n` GETs in a row; every answer or error.
    pub fn get_many(&self, n: usize, timeout: Duration) -> Result<Vec<Result<String>>> {
        let addr = SocketAddr::from((self.vip, 80));
        self.client
            .enter(move || (0..n).map(|_| http_get_id(addr, timeout)).collect())
    }

    /// Back-to-back GETs through the VIP, each on a new connection (see [`lab::start_load_from`]).
    pub fn start_load(&self) -> Result<Load> {
        lab::start_load_from(&self.client, SocketAddr::from((self.vip, 80)))
    }

    /// `xlb stats` for director `d`.
    pub fn xlb_stats(&self, d: usize) -> Result<String> {
        self.xlb_command(d, &["stats"])
    }

    /// `xlb ARGS -i eth0 --bpffs B --pidfile P` on director `d`: its output, or its stderr as
    /// the error.
    pub fn xlb_command(&self, d: usize, args: &[&str]) -> Result<String> {
        self.xlb_on(d).command(args)
    }

    /// Replaces the config of the xlb on `d` with `config` and has it reloaded; `xlb reload`'s
    /// answer (what changed).
    pub fn reload_xlb(&self, d: usize, config: &str) -> Result<String> {
        self.xlb_on(d).reload(&self.config_path(d), config)
    }

    /// `xlb status --json` of director `d`: what its running xlb reports.
    pub fn xlb_status(&self, d: usize) -> Result<lb_userspace::status::Status> {
        self.xlb_on(d).status()
    }

    /// One outcome counter of director `d`'s data plane, read from its pins: it counts on
    /// after its xlb was killed, which no command asks (no daemon, no status).
    pub fn pinned_outcome(&self, d: usize, name: &str) -> Result<u64> {
        let stats = lb_userspace::dataplane::read_pinned_stats(&self.pin_dir(d))?;
        stats
            .outcomes
            .iter()
            .find(|(o, _)| o.name() == name)
            .map(|(_, n)| *n)
            .with_context(|| format!("no outcome {name}"))
    }

    /// xlb's VRRP drop counters on `d`, by reason (every VRRP packet its thread dropped).
    pub fn drop_counters(&self, d: usize) -> BTreeMap<String, u64> {
        self.xlb_status(d)
            .map(|s| s.dataplane.vrrp_dropped)
            .unwrap_or_default()
    }

    /// The state xlb on `d` reports for VI_1 (`MASTER`, `BACKUP`, ...).
    pub fn status_state(&self, d: usize) -> Option<String> {
        let status = self.xlb_status(d).ok()?;
        status
            .vrrp
            .into_iter()
            .find(|vi| vi.name == "VI_1")
            .map(|vi| vi.state)
    }

    /// Sends whole IPv4 packets (header included, as built by [`ipv4_packet`]) from the client.
    pub fn send_from_client(&self, packets: &[Vec<u8>]) -> Result<()> {
        send_raw_ipv4(&self.client, packets)
    }
}

impl Drop for HaLab {
    fn drop(&mut self) {
        for r in self.running.iter_mut().flatten() {
            let parent = r.process.pid();
            let child = r.vrrp_pidfile.as_ref().and_then(|p| {
                let pid: i32 = fs::read_to_string(p).ok()?.trim().parse().ok()?;
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let ppid: i32 = stat
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                (ppid == parent).then_some(pid)
            });
            r.process.stop(Duration::from_secs(5));
            if let Some(pid) = child
                && fs::metadata(format!("/proc/{pid}")).is_ok()
            {
                // SAFETY: keepalived's VRRP child, started by this lab, outliving its parent.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for p in self.local_servers.iter_mut().flatten() {
            p.stop(Duration::from_secs(3));
        }
        for p in &mut self.servers {
            p.stop(Duration::from_secs(3));
        }
        for d in 0..self.directors.len() {
            let _ = fs::remove_dir_all(self.bpffs(d));
        }
        let _ = fs::remove_dir_all(&self.workdir);
        let _ = &self.switch;
    }
}

/// A background prober: back-to-back short exchanges with the VIP's echo port, each on a new
/// connection, for measuring gaps. See [`start_prober`].
pub struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<thread::JoinHandle<Vec<Probe>>>,
}

/// One probe: when it started and ended, and who answered (or why not).
#[derive(Debug, Clone)]
pub struct Probe {
    pub started: Instant,
    pub ended: Instant,
    pub result: std::result::Result<String, String>,
}

impl Prober {
    pub fn finish(mut self) -> Vec<Probe> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts probing `addr` (an echo server) from `ns`: connect (giving up after
/// `connect_timeout`, to retry at once rather than wait for a SYN retransmission), send a line,
/// read the answer (`answer_timeout`), close with RST. Stops when finished, after `limit`, or
/// after 200,000 probes.
pub fn start_prober(
    ns: &Netns,
    addr: SocketAddr,
    connect_timeout: Duration,
    answer_timeout: Duration,
    limit: Duration,
) -> Result<Prober> {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = ns.spawn(move || {
        let end = Instant::now() + limit;
        let mut probes = Vec::new();
        while !flag.load(Ordering::Relaxed) && Instant::now() < end && probes.len() < 200_000 {
            let started = Instant::now();
            let result = probe_once(addr, connect_timeout, answer_timeout);
            probes.push(Probe {
                started,
                ended: Instant::now(),
                result: result.map_err(|e| format!("{e:#}")),
            });
        }
        probes
    })?;
    // The namespace thread returns Result<Vec<Probe>>; flatten it.
    let handle = thread::spawn(move || handle.join().ok().and_then(|r| r.ok()).unwrap_or_default());
    Ok(Prober {
        stop,
        handle: Some(handle),
    })
}

fn probe_once(
    addr: SocketAddr,
    connect_timeout: Duration,
    answer_timeout: Duration,
) -> Result<String> {
    let (_, stream) = connect_from(None, addr, connect_timeout, true);
    let mut s = stream?;
    s.set_read_timeout(Some(answer_timeout))?;
    s.set_write_timeout(Some(answer_timeout))?;
    s.set_nodelay(true)?;
    s.write_all(b"ping\n")?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.ends_with(b"\n") && got.len() < 64 {
        let n = s.read(&mut buf).context("reading the answer")?;
        if n == 0 {
            bail!("closed after {got:?}");
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&got).trim().to_string())
}

/// Asks "who has `target`" from `ns`'s eth0 (sender `sender`), collecting the sender MAC of
/// every ARP reply for `target` within `wait`.
pub fn arp_who_has(
    ns: &Netns,
    sender: Ipv4Addr,
    target: Ipv4Addr,
    wait: Duration,
) -> Result<Vec<[u8; 6]>> {
    ns.enter(move || -> Result<Vec<[u8; 6]>> {
        let (fd, sll, own) = packet_socket(0x0806)?;
        let mut frame = Vec::with_capacity(42);
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&own);
        frame.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        frame.extend_from_slice(&own);
        frame.extend_from_slice(&sender.octets());
        frame.extend_from_slice(&[0; 6]);
        frame.extend_from_slice(&target.octets());
        exchange(&fd, &sll, &frame, wait, |f| {
            let is_reply = f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2];
            (is_reply && f[28..32] == target.octets())
                .then(|| f[22..28].try_into().ok())
                .flatten()
        })
    })?
}

/// The IPv6 VIP of [`HaLab::enable_ipv6`] labs.
pub const VIP6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x100);
/// The client's IPv6 address.
pub const CLIENT6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x10);

/// A raw AF_PACKET socket on `ns`'s eth0 for one ethertype, and eth0's MAC.
fn packet_socket(ethertype: u16) -> Result<(std::os::fd::OwnedFd, libc::sockaddr_ll, [u8; 6])> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let last = std::io::Error::last_os_error;
    // SAFETY: plain socket call; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ethertype.to_be()),
        )
    };
    if fd < 0 {
        return Err(last()).context("AF_PACKET socket");
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new("eth0")?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(last()).context("no eth0");
    }
    // SAFETY: zeroed sockaddr_ll, filled in below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ethertype.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: a valid sockaddr_ll and its length.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    } != 0
    {
        return Err(last()).context("binding to eth0");
    }
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "dev", "eth0"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .context("no MAC")?
        .to_string();
    Ok((fd, sll, lab::parse_mac(&mac)?))
}

/// Sends `frame` on the packet socket, then collects for `wait` what `pick` makes of each frame
/// received (deduplicated).
fn exchange<T: PartialEq>(
    fd: &std::os::fd::OwnedFd,
    sll: &libc::sockaddr_ll,
    frame: &[u8],
    wait: Duration,
    mut pick: impl FnMut(&[u8]) -> Option<T>,
) -> Result<Vec<T>> {
    use std::os::fd::AsRawFd as _;
    let mut to = *sll;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: frame and address live across the call.
    if unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const to).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error()).context("sending a frame");
    }
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 1600];
    for _ in 0..10_000 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
        if n <= 0 {
            continue;
        }
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        if let Some(t) = pick(&buf[..n as usize])
            && !out.contains(&t)
        {
            out.push(t);
        }
    }
    Ok(out)
}

/// Sends a neighbour solicitation for `target` from `ns`'s eth0 (source `src`, with its
/// link-layer address option) to the solicited-node group, collecting the Ethernet source of
/// every neighbour advertisement for `target` within `wait`.
pub fn nd_who_has(
    ns: &Netns,
    src: std::net::Ipv6Addr,
    target: std::net::Ipv6Addr,
    wait: Duration,
) -> Result<Vec<[u8; 6]>> {
    ns.enter(move || -> Result<Vec<[u8; 6]>> {
        let (fd, sll, own) = packet_socket(0x86dd)?;
        let t = target.octets();
        let group: [u8; 16] = [
            0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
        ];
        let mut icmp = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&t);
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(&own);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&group);
        pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        pseudo.extend_from_slice(&icmp);
        let sum = inet_checksum(&pseudo);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut frame = vec![0x33, 0x33, 0xff, t[13], t[14], t[15]];
        frame.extend_from_slice(&own);
        frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        frame.extend_from_slice(&[58, 255]);
        frame.extend_from_slice(&src.octets());
        frame.extend_from_slice(&group);
        frame.extend_from_slice(&icmp);
        exchange(&fd, &sll, &frame, wait, |f| {
            let is_na = f.len() >= 78 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 136;
            (is_na && f[62..78] == t)
                .then(|| f[6..12].try_into().ok())
                .flatten()
        })
    })?
}

/// Sends whole IPv4 packets from `ns`'s eth0 through a raw socket (IP_HDRINCL: the TTL and
/// everything else as given; the kernel fills in only the header checksum and total length).
pub fn send_raw_ipv4(ns: &Netns, packets: &[Vec<u8>]) -> Result<()> {
    let packets = packets.to_vec();
    ns.enter(move || -> Result<()> {
        use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
        let last = std::io::Error::last_os_error;
        // SAFETY: plain socket call; the fd is owned at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        if fd < 0 {
            return Err(last()).context("raw socket");
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new("eth0")?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        let mreq = libc::ip_mreqn {
            imr_multiaddr: libc::in_addr { s_addr: 0 },
            imr_address: libc::in_addr { s_addr: 0 },
            imr_ifindex: ifindex as i32,
        };
        // SAFETY: a valid ip_mreqn and its length; a NUL-free name and its length.
        unsafe {
            if libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MULTICAST_IF,
                (&raw const mreq).cast(),
                size_of::<libc::ip_mreqn>() as u32,
            ) != 0
            {
                return Err(last()).context("IP_MULTICAST_IF");
            }
            if libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                b"eth0".as_ptr().cast(),
                4,
            ) != 0
            {
                return Err(last()).context("SO_BINDTODEVICE");
            }
        }
        for p in &packets {
            let dst = p.get(16..20).context("short packet")?;
            let to = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(dst.try_into()?),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: packet and address live across the call.
            if unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&raw const to).cast(),
                    size_of::<libc::sockaddr_in>() as u32,
                )
            } < 0
            {
                return Err(last()).context("sending a raw packet");
            }
        }
        Ok(())
    })?
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A VRRP advert (the IP payload), built here byte by byte from RFC 3768 / 5798, independently
/// of xlb's codec. `advert_int`: seconds (v2) or centiseconds (v3). The checksum is right unless
/// changed afterwards; version 3's covers the pseudo-header of `src` and `dst`.
#[derive(Clone, Debug)]
pub struct AdvertSpec {
    pub version: u8,
    pub kind: u8,
    pub vrid: u8,
    pub priority: u8,
    pub advert_int: u16,
    pub auth_type: u8,
    pub auth_pass: Vec<u8>,
    pub addresses: Vec<Ipv4Addr>,
    /// The count field; `None`: the number of addresses.
    pub count: Option<u8>,
}

impl AdvertSpec {
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut m = vec![
            (self.version << 4) | (self.kind & 0x0f),
            self.vrid,
            self.priority,
            self.count.unwrap_or(self.addresses.len() as u8),
        ];
        if self.version == 3 {
            m.extend_from_slice(&(self.advert_int & 0x0fff).to_be_bytes());
        } else {
            m.push(self.auth_type);
            m.push(self.advert_int as u8);
        }
        m.extend_from_slice(&[0, 0]);
        for a in &self.addresses {
            m.extend_from_slice(&a.octets());
        }
        if self.version != 3 {
            let mut auth = [0u8; 8];
            let n = self.auth_pass.len().min(8);
            auth[..n].copy_from_slice(&self.auth_pass[..n]);
            m.extend_from_slice(&auth);
        }
        let sum = if self.version == 3 {
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&src.octets());
            pseudo.extend_from_slice(&dst.octets());
            pseudo.extend_from_slice(&[0, 112]);
            pseudo.extend_from_slice(&(m.len() as u16).to_be_bytes());
            pseudo.extend_from_slice(&m);
            inet_checksum(&pseudo)
        } else {
            inet_checksum(&m)
        };
        m[6..8].copy_from_slice(&sum.to_be_bytes());
        m
    }
}

/// An IPv4 packet of protocol 112 around `payload` with this TTL, as keepalived sends it (TOS
/// 0xc0, no options). The kernel fills in the header checksum.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0xc0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0, 0, ttl, 112, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = inet_checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// The multicast group of VRRP over IPv4.
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
