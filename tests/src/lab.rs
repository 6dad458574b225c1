//! Labs of network namespaces: hosts joined by veth pairs to a bridge that lives in its own
//! namespace, so nothing of the machine's own network is touched. Every name is unique per lab;
//! dropping a lab stops its processes by pid and deletes its namespaces, also when a test fails.

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// The `xlb` binary the e2e tests run: `$XLB_BIN`, or the one next to the test binary
/// (`cargo xtask test` builds it first).
pub fn xlb_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("XLB_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("xlb")
}

/// A short name no other lab (in this or another test process) uses.
pub fn unique_name(tag: &str) -> String {
    format!(
        "xlbt{}-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed),
        tag
    )
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Result<Self> {
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Where an xlb in this namespace pins its data plane for `interface` under `bpffs`
    /// (`xlb/netns-N/IFACE`, N the namespace's inode).
    pub fn pin_dir(&self, bpffs: &Path, interface: &str) -> Result<PathBuf> {
        use std::os::unix::fs::MetadataExt as _;
        let inode = fs::metadata(self.path())
            .with_context(|| format!("stat {}", self.path().display()))?
            .ino();
        Ok(bpffs
            .join("xlb")
            .join(format!("netns-{inode}"))
            .join(interface))
    }

    /// A command that runs inside the namespace. `nsenter --net` keeps the mount namespace, so
    /// /sys/fs/bpf stays visible (`ip netns exec` remounts /sys and hides it).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg(program);
        c
    }

    pub fn run(&self, argv: &[&str]) -> Result<String> {
        let mut c = self.command(argv[0]);
        c.args(&argv[1..]);
        run(&mut c).with_context(|| format!("in netns {}", self.name))
    }

    /// Runs `f` on a thread that has entered this namespace (sockets it opens live there).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let file = fs::File::open(self.path())
            .with_context(|| format!("opening {}", self.path().display()))?;
        thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid namespace fd affects only this thread.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!(
                        "setns into {}: {}",
                        self.name,
                        std::io::Error::last_os_error()
                    );
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in netns {} panicked", self.name))?
        })
    }
}

impl Netns {
    /// Runs `f` on a new thread that has entered this namespace, in the background.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<Result<T>>> {
        let file = fs::File::open(self.path())
            .with_context(|| format!("opening {}", self.path().display()))?;
        let name = self.name.clone();
        Ok(thread::spawn(move || {
            // SAFETY: setns on a valid namespace fd affects only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns into {name}: {}", std::io::Error::last_os_error());
            }
            Ok(f())
        }))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// An xlb as every lab runs it on a director: in the director's namespace, on its eth0, its
/// pins under a BPF directory of the lab's own ([`lab_bpffs`]) and its pidfile in the lab's
/// work directory. The `xlb run` command line and the commands that reach the running daemon
/// are written here, once for all labs.
pub struct XlbOn<'a> {
    pub ns: &'a Netns,
    pub xlb: &'a Path,
    pub bpffs: PathBuf,
    /// `None`: xlb's default for the namespace.
    pub pidfile: Option<PathBuf>,
}

impl<'a> XlbOn<'a> {
    /// The director in `ns` with the lab's BPF directory and this pidfile.
    pub fn new(ns: &'a Netns, xlb: &'a Path, pidfile: PathBuf) -> Self {
        XlbOn {
            ns,
            xlb,
            bpffs: lab_bpffs(ns),
            pidfile: Some(pidfile),
        }
    }

    /// Where the director's xlb pins its program, link and maps.
    pub fn pin_dir(&self) -> Result<PathBuf> {
        self.ns.pin_dir(&self.bpffs, "eth0")
    }

    /// `xlb run -f CONFIG -i eth0 --bpffs B --pidfile P ARGS`, ready to spawn (the BPF
    /// filesystem is mounted when this returns).
    pub fn run(&self, config: &Path, args: &[impl AsRef<std::ffi::OsStr>]) -> Result<Command> {
        lb_userspace::dataplane::pins::Bpffs::ensure(Path::new("/sys/fs/bpf"))?;
        let mut cmd = self.ns.command(self.xlb.to_str().context("xlb path")?);
        cmd.args(["run", "-f"]).arg(config);
        self.on_director(&mut cmd);
        cmd.args(args);
        Ok(cmd)
    }

    /// `xlb ARGS -i eth0 --bpffs B --pidfile P`: its output, or its stderr as the error when
    /// it fails.
    pub fn command(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.ns.command(self.xlb.to_str().context("xlb path")?);
        cmd.args(args);
        self.on_director(&mut cmd);
        run(&mut cmd)
    }

    /// Writes `text` over the running daemon's `config` and has it reload; `xlb reload`'s
    /// answer (what changed).
    pub fn reload(&self, config: &Path, text: &str) -> Result<String> {
        fs::write(config, text)?;
        self.command(&["reload"])
    }

    /// `xlb status --json`: what the running daemon reports.
    pub fn status(&self) -> Result<lb_userspace::status::Status> {
        let text = self.command(&["status", "--json"])?;
        serde_json::from_str(&text).with_context(|| format!("xlb status --json printed {text}"))
    }

    fn on_director(&self, cmd: &mut Command) {
        cmd.args(["-i", "eth0", "--bpffs"]).arg(&self.bpffs);
        if let Some(pidfile) = &self.pidfile {
            cmd.arg("--pidfile").arg(pidfile);
        }
    }
}

/// A BPF directory of the lab's own for the xlb in `ns`, so that labs running side by side
/// never share pins.
pub fn lab_bpffs(ns: &Netns) -> PathBuf {
    Path::new("/sys/fs/bpf").join(ns.name.as_str())
}

pub fn run(c: &mut Command) -> Result<String> {
    let out = c.output().with_context(|| format!("running {c:?}"))?;
    if !out.status.success() {
        bail!(
            "{c:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command to its end, or kills it (by pid) after `limit`: an error then, so that a
/// command that hangs fails the test instead of hanging it.
pub fn output_within(c: &mut Command, limit: Duration) -> Result<std::process::Output> {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {c:?}"))?;
    let pid = child.id() as i32;
    let waiter = thread::spawn(move || child.wait_with_output());
    let deadline = Instant::now() + limit;
    while !waiter.is_finished() {
        if Instant::now() > deadline {
            // SAFETY: our own child, by its pid; wait_with_output reaps it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = waiter.join();
            bail!("{c:?} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    waiter
        .join()
        .map_err(|_| anyhow::anyhow!("waiting for {c:?} panicked"))?
        .with_context(|| format!("waiting for {c:?}"))
}

/// A child process stopped by pid (SIGTERM, then SIGKILL) when dropped.
pub struct Process {
    pub child: Child,
    pub what: String,
}

impl Process {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` to the process, by pid; the moment it was sent.
    pub fn signal(&self, signal: libc::c_int) -> Instant {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.pid(), signal) };
        Instant::now()
    }

    /// Waits up to `limit` for the process to exit; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{} did not exit within {limit:?}", self.what);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// An interface's MAC, asked of rtnetlink: /sys/class/net shows the namespace that mounted
/// /sys, not the one `nsenter --net` entered.
pub fn mac_of(ns: &Netns, dev: &str) -> Result<[u8; 6]> {
    let text = ns.run(&["ip", "-o", "link", "show", "dev", dev])?;
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .with_context(|| format!("no link/ether in {text}"))?;
    parse_mac(mac)
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC {s}"))?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("bad MAC {s}"))
}

/// Client, director and backends on one bridge, set up for Direct Routing:
/// the director holds the VIP on eth0, each backend on lo with arp_ignore=1, arp_announce=2
/// and rp_filter off, serves HTTP on port 80 answering its own name (`GET /id`), and runs an
/// echo server on port 7 answering its own name to every line.
pub struct DrLab {
    pub client: Netns,
    pub director: Netns,
    pub backends: Vec<Netns>,
    pub vip: Ipv4Addr,
    pub director_ip: Ipv4Addr,
    pub client_ip: Ipv4Addr,
    pub backend_ips: Vec<Ipv4Addr>,
    pub workdir: PathBuf,
    // Dropped in field order: processes first, then the XDP_PASS program, then namespaces.
    processes: Vec<Process>,
    /// Each backend's HTTP server, `None` while stopped.
    http: Vec<Option<Process>>,
    /// Each backend's echo server.
    echo: Vec<Option<Process>>,
    peer_xdp: aya::Ebpf,
    switch: Netns,
}

/// The lab subnet: client .10, directors .2 and up, backends .11 and up, VIP .100.
pub const SUBNET: &str = "10.99.0";

/// The port of the backends' echo servers.
pub const ECHO_PORT: u16 = 7;

/// A persistent line server: every line a client sends is answered with the server's name.
pub const ECHO_SERVER: &str = r#"
import asyncio, sys

NAME = sys.argv[1].encode() + b"\n"

async def serve(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(NAME)
            await writer.drain()
    except Exception:
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "0.0.0.0", int(sys.argv[2]), backlog=1024)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"#;

impl DrLab {
    pub fn new(tag: &str, backends: usize) -> Result<Self> {
        let base = unique_name(tag);
        let switch = new_switch(format!("{base}-sw"))?;
        let workdir = std::env::temp_dir().join(&base);
        fs::create_dir_all(&workdir)?;

        let client = add_host(&switch, &base, "cl", 10)?;
        let director = add_host(&switch, &base, "dir", 2)?;
        let vip: Ipv4Addr = format!("{SUBNET}.100").parse()?;
        director.run(&["ip", "addr", "add", &format!("{vip}/32"), "dev", "eth0"])?;

        let peer_xdp = attach_xdp_pass(&switch, &["pdir"])?;

        let mut lab = Self {
            client,
            director,
            backends: Vec::new(),
            vip,
            director_ip: format!("{SUBNET}.2").parse()?,
            client_ip: format!("{SUBNET}.10").parse()?,
            backend_ips: Vec::new(),
            workdir,
            processes: Vec::new(),
            http: Vec::new(),
            echo: Vec::new(),
            peer_xdp,
            switch,
        };
        for i in 0..backends {
            let octet = 11 + i as u8;
            let name = lab.backend_name(i);
            let ns = add_host(&lab.switch, &base, &name, octet)?;
            lab.backend_ips.push(format!("{SUBNET}.{octet}").parse()?);
            make_dr_backend(&ns, vip)?;
            let [http, echo] = spawn_named_servers(&ns, &lab.workdir, &name)?;
            lab.backends.push(ns);
            lab.http.push(Some(http));
            lab.echo.push(Some(echo));
        }
        for ns in &lab.backends {
            wait_serving(ns)?;
        }
        Ok(lab)
    }

    /// The docroot of a backend's HTTP server (see [`spawn_named_servers`]).
    fn docroot(&self, backend: usize) -> PathBuf {
        self.workdir.join(self.backend_name(backend))
    }

    /// A backend's name, which its HTTP and echo servers answer: b1, b2, ...
    pub fn backend_name(&self, backend: usize) -> String {
        format!("b{}", backend + 1)
    }

    /// The index of the backend with this address.
    pub fn backend_of(&self, ip: Ipv4Addr) -> Option<usize> {
        self.backend_ips.iter().position(|b| *b == ip)
    }

    fn spawn_http(&self, backend: usize) -> Result<Process> {
        spawn_http_server(
            &self.backends[backend],
            &self.docroot(backend),
            &format!("http b{}", backend + 1),
        )
    }

    /// Stops a backend's HTTP server (by its pid); returns when it has exited, and that moment.
    pub fn stop_http(&mut self, backend: usize) -> Result<Instant> {
        let mut server = self.http[backend]
            .take()
            .with_context(|| format!("the HTTP server of b{} is not running", backend + 1))?;
        server.stop(Duration::from_secs(3));
        Ok(Instant::now())
    }

    /// Starts a backend's HTTP server again; returns once it accepts connections, and that moment.
    pub fn start_http(&mut self, backend: usize) -> Result<Instant> {
        if self.http[backend].is_some() {
            bail!("the HTTP server of b{} is running", backend + 1);
        }
        let server = self.spawn_http(backend)?;
        self.http[backend] = Some(server);
        self.wait_listening(backend, 80, Duration::from_secs(10))?;
        Ok(Instant::now())
    }

    /// Waits until something accepts TCP connections on a backend's port (asked on its loopback).
    pub fn wait_listening(&self, backend: usize, port: u16, limit: Duration) -> Result<()> {
        wait_listening(&self.backends[backend], port, limit)
    }

    pub fn director_mac(&self) -> Result<[u8; 6]> {
        mac_of(&self.director, "eth0")
    }

    /// A pin directory on the BPF filesystem of this lab's own.
    pub fn bpffs(&self) -> PathBuf {
        lab_bpffs(&self.director)
    }

    /// The director's xlb, run by `xlb` with the lab's pins and pidfile.
    pub fn xlb_on<'a>(&'a self, xlb: &'a Path) -> XlbOn<'a> {
        XlbOn::new(&self.director, xlb, self.pidfile())
    }

    /// Deletes the director's eth0 and plugs in a new one (same name, MAC and addresses; a new
    /// ifindex), as a re-created veth or a re-plugged NIC would be.
    pub fn replug_director(&mut self) -> Result<()> {
        self.director.run(&["ip", "link", "del", "eth0"])?;
        plug_host(&self.switch, &self.director, "dir", 2)?;
        self.director.run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/32", self.vip),
            "dev",
            "eth0",
        ])?;
        self.peer_xdp = attach_xdp_pass(&self.switch, &["pdir"])?;
        Ok(())
    }

    /// Detaches the XDP_PASS program from the director's switch port: native XDP_TX on the
    /// director then fails in the veth driver, as on a host set up without it.
    pub fn remove_peer_xdp(&mut self) -> Result<()> {
        // Replacing the object drops the old one, which detaches its program.
        self.peer_xdp = aya::Ebpf::load(lb_userspace::dataplane::FLOOR_OBJECT)?;
        Ok(())
    }

    /// Where the director's xlb pins its program, link and maps.
    pub fn pin_dir(&self) -> PathBuf {
        self.director
            .pin_dir(&self.bpffs(), "eth0")
            .expect("the director's namespace")
    }

    /// Writes a DR config for the VIP on port 80 with the given backend weights.
    pub fn write_config(&self, name: &str, weights: &[u32]) -> Result<PathBuf> {
        let members: Vec<(usize, u32)> = weights.iter().copied().enumerate().collect();
        self.write_config_members(name, &members)
    }

    /// Writes a DR config for the VIP on port 80 with the given (backend index, weight) members.
    pub fn write_config_members(&self, name: &str, members: &[(usize, u32)]) -> Result<PathBuf> {
        let mut text = format!(
            "virtual_server {} 80 {{\n    delay_loop 6\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n",
            self.vip
        );
        for (i, w) in members {
            let ip = self.backend_ips[*i];
            text += &format!("    real_server {ip} 80 {{\n        weight {w}\n    }}\n");
        }
        text += "}\n";
        let path = self.workdir.join(name);
        fs::write(&path, text)?;
        Ok(path)
    }

    /// One `virtual_server` block for the VIP on `port` (TCP, DR, Maglev): `settings` go into it
    /// as given, then a `real_server` on the same port for each (backend index, weight), with
    /// `body(index)` in its block after the weight.
    pub fn virtual_server(
        &self,
        port: u16,
        settings: &str,
        members: &[(usize, u32)],
        body: impl Fn(usize) -> String,
    ) -> String {
        let mut text = format!(
            "virtual_server {} {port} {{\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n",
            self.vip
        );
        for line in settings.lines().filter(|l| !l.trim().is_empty()) {
            text += &format!("    {}\n", line.trim());
        }
        for (i, w) in members {
            let ip = self.backend_ips[*i];
            text += &format!("    real_server {ip} {port} {{\n        weight {w}\n");
            for line in body(*i).lines().filter(|l| !l.trim().is_empty()) {
                text += &format!("        {line}\n");
            }
            text += "    }\n";
        }
        text += "}\n";
        text
    }

    /// Replaces the running config with `text` and makes xlb reload it; waits until xlb has
    /// applied it (`data plane updated`) or refused it (`reload refused`).
    pub fn reload_with(&self, xlb: &Path, config: &Path, text: &str) -> Result<()> {
        self.reload_expecting(xlb, config, text, "data plane updated")
    }

    /// As [`Self::reload_with`], waiting for one more log line containing `mark` (or
    /// `reload refused`): a reload that changes nothing in the data plane logs only `reloaded`.
    pub fn reload_expecting(
        &self,
        xlb: &Path,
        config: &Path,
        text: &str,
        mark: &str,
    ) -> Result<()> {
        let log_marks = |log: &str| {
            (
                log.matches(mark).count(),
                log.matches("reload refused").count(),
            )
        };
        let before = log_marks(&self.log());
        fs::write(config, text)?;
        // `xlb reload` answers once the daemon applied or refused the file; a refused file
        // exits non-zero, and the caller looks for `reload refused` in the log.
        let _ = self.xlb_on(xlb).command(&["reload"]);
        wait_for(Duration::from_secs(10), || {
            let now = log_marks(&self.log());
            now.0 > before.0 || now.1 > before.1
        })
        .with_context(|| format!("xlb did not act on the reload; log:\n{}", self.log()))
    }

    /// Back-to-back GETs through the VIP from the client, each on a new connection, until the
    /// returned handle is finished (or 120 s or 100,000 requests pass).
    pub fn start_load(&self) -> Result<Load> {
        start_load_from(&self.client, SocketAddr::from((self.vip, 80)))
    }

    /// Starts `xlb run` in the director namespace; its log goes to the lab's work directory.
    pub fn start_director(&mut self, xlb: &Path, config: &Path) -> Result<usize> {
        let (bpffs, pidfile) = (self.bpffs(), self.pidfile());
        self.start_director_with(xlb, config, &bpffs, Some(&pidfile))
    }

    /// As [`Self::start_director`], with pins under `bpffs` and the pidfile given (`None`: xlb's
    /// default for the director's namespace).
    pub fn start_director_with(
        &mut self,
        xlb: &Path,
        config: &Path,
        bpffs: &Path,
        pidfile: Option<&Path>,
    ) -> Result<usize> {
        self.start_director_args(xlb, config, bpffs, pidfile, &[])
    }

    /// As [`Self::start_director_with`], with more arguments for `xlb run`.
    pub fn start_director_args(
        &mut self,
        xlb: &Path,
        config: &Path,
        bpffs: &Path,
        pidfile: Option<&Path>,
        args: &[&str],
    ) -> Result<usize> {
        let log_path = self.workdir.join("xlb.log");
        let log = fs::File::create(&log_path)?;
        let on = XlbOn {
            ns: &self.director,
            xlb,
            bpffs: bpffs.to_path_buf(),
            pidfile: pidfile.map(Path::to_path_buf),
        };
        let child = on
            .run(config, args)?
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting xlb")?;
        self.processes.push(Process {
            child,
            what: "xlb".into(),
        });
        // One " is at " line per real server address (a backend may serve several VIPs).
        let n = fs::read_to_string(config)?
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some("real_server"))
                    .then(|| words.next().map(str::to_string))
                    .flatten()
            })
            .collect::<BTreeSet<_>>()
            .len();
        wait_for(Duration::from_secs(20), || {
            fs::read_to_string(&log_path).is_ok_and(|l| l.matches(" is at ").count() >= n)
        })
        .with_context(|| format!("xlb did not resolve its backends; log:\n{}", self.log()))?;
        // Resolved is not yet forwarding: the update that writes the backends' MACs follows.
        // A client sent before it gets a reset from the director's stack. Not an error when it
        // never comes (a config whose backends all stay unresolved, say): callers assert on
        // traffic.
        let _ = wait_for(Duration::from_secs(5), || {
            fs::read_to_string(&log_path).is_ok_and(|l| {
                l.rfind(" is at ")
                    .is_some_and(|at| l[at..].contains("data plane updated"))
            })
        });
        Ok(self.processes.len() - 1)
    }

    /// `xlb ARGS -i eth0 --bpffs B --pidfile P` in the director's namespace: its output, or
    /// its stderr as the error when it fails.
    pub fn xlb(&self, xlb: &Path, args: &[&str]) -> Result<String> {
        self.xlb_on(xlb).command(args)
    }

    /// `xlb stats` of the running xlb: its outcome counters, flow events, VIPs and backends.
    pub fn stats(&self, xlb: &Path) -> Result<String> {
        self.xlb(xlb, &["stats"])
    }

    /// One counter of `xlb stats` output, by name (`drop_no_backend`, `flow_backend_gone`, ...).
    pub fn counter(stats: &str, name: &str) -> Option<u64> {
        stats.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(name))
                .then(|| words.next()?.parse().ok())
                .flatten()
        })
    }

    pub fn pidfile(&self) -> PathBuf {
        self.workdir.join("xlb.pid")
    }

    pub fn process(&mut self, index: usize) -> &mut Process {
        &mut self.processes[index]
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.workdir.join("xlb.log")).unwrap_or_default()
    }

    /// Waits (polling every 10 ms, up to `limit`) until the log holds more than `before` lines
    /// containing `needle`; returns when it saw the new one.
    pub fn wait_for_log(&self, needle: &str, before: usize, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if self.log_count(needle) > before {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                bail!(
                    "no new log line with {needle:?} within {limit:?}; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// One HTTP GET of /id through the VIP from the client; the body names the backend.
    pub fn get(&self, timeout: Duration) -> Result<String> {
        let vip = self.vip;
        self.client
            .enter(move || http_get_id(SocketAddr::from((vip, 80)), timeout))?
    }

    /// `count` GETs from one client thread; returns the answers in order (errors included).
    pub fn get_many(&self, count: usize, timeout: Duration) -> Result<Vec<Result<String>>> {
        let vip = self.vip;
        self.client.enter(move || {
            (0..count)
                .map(|_| http_get_id(SocketAddr::from((vip, 80)), timeout))
                .collect()
        })
    }

    /// Starts tcpdump on a backend's eth0 for TCP to the VIP, printing link-level headers.
    pub fn capture_on_backend(&mut self, index: usize, packets: u32) -> Result<usize> {
        let out = self.workdir.join(format!("tcpdump-b{}.txt", index + 1));
        let mut cmd = self.backends[index].command("timeout");
        cmd.args([
            "30",
            "tcpdump",
            "-i",
            "eth0",
            "-e",
            "-n",
            "-l",
            "-c",
            &packets.to_string(),
        ])
        .arg(format!("tcp and dst host {} and dst port 80", self.vip))
        .stdout(fs::File::create(&out)?)
        .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .context("starting tcpdump (apt-get install tcpdump)")?;
        self.processes.push(Process {
            child,
            what: "tcpdump".into(),
        });
        thread::sleep(Duration::from_millis(700));
        Ok(self.processes.len() - 1)
    }

    pub fn capture_text(&self, index: usize) -> String {
        fs::read_to_string(self.workdir.join(format!("tcpdump-b{}.txt", index + 1)))
            .unwrap_or_default()
    }
}

/// One request of a [`Load`]: when it started, the client port it used (known as soon as the
/// SYN left, so also for a connection that failed) and what it got (the backend's name).
#[derive(Debug)]
pub struct Answer {
    pub started: Instant,
    /// How long the request took, to its answer or its failure.
    pub took: Duration,
    pub port: Option<u16>,
    pub result: std::result::Result<String, String>,
}

/// A client load running in the background; [`Load::finish`] stops it.
pub struct Load {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Answer>>>,
}

impl Load {
    pub fn finish(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Back-to-back GETs of /id to `addr` from `ns`, each on a new connection (3 s timeout), until
/// the returned handle is finished (or 120 s or 100,000 requests pass).
pub fn start_load_from(ns: &Netns, addr: SocketAddr) -> Result<Load> {
    let file = fs::File::open(ns.path())?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = thread::spawn(move || {
        // SAFETY: setns on a valid namespace fd affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return vec![Answer {
                started: Instant::now(),
                took: Duration::ZERO,
                port: None,
                result: Err(format!("setns: {}", std::io::Error::last_os_error())),
            }];
        }
        let limit = Instant::now() + Duration::from_secs(120);
        let mut answers = Vec::new();
        while !flag.load(Ordering::Relaxed) && Instant::now() < limit && answers.len() < 100_000 {
            let started = Instant::now();
            let (port, result) = http_get_from(None, addr, Duration::from_secs(3));
            answers.push(Answer {
                started,
                took: started.elapsed(),
                port,
                result: result.map_err(|e| format!("{e:#}")),
            });
        }
        answers
    });
    Ok(Load {
        stop,
        handle: Some(handle),
    })
}

/// Makes `ns` a Direct Routing backend for `vip`: the VIP on lo, arp_ignore=1, arp_announce=2,
/// rp_filter off.
pub fn make_dr_backend(ns: &Netns, vip: Ipv4Addr) -> Result<()> {
    ns.run(&["ip", "addr", "add", &format!("{vip}/32"), "dev", "lo"])?;
    for (key, value) in [
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.all.arp_announce", "2"),
        ("net.ipv4.conf.eth0.arp_ignore", "1"),
        ("net.ipv4.conf.eth0.arp_announce", "2"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        ("net.ipv4.conf.eth0.rp_filter", "0"),
        ("net.ipv4.conf.lo.rp_filter", "0"),
    ] {
        ns.run(&["sysctl", "-q", "-w", &format!("{key}={value}")])?;
    }
    Ok(())
}

/// A namespace for a lab's switch: the bridge `br0`, up, that its hosts are plugged into.
pub fn new_switch(name: String) -> Result<Netns> {
    let switch = Netns::new(name)?;
    switch.run(&["ip", "link", "add", "br0", "type", "bridge"])?;
    switch.run(&["ip", "link", "set", "br0", "up"])?;
    Ok(switch)
}

/// The servers of a host named `name` in every lab: HTTP on port 80 answering `GET /id` with
/// the name (its docroot `workdir/NAME`) and the echo server on [`ECHO_PORT`] answering the
/// name to every line. Started, not waited for: see [`wait_serving`].
pub fn spawn_named_servers(ns: &Netns, workdir: &Path, name: &str) -> Result<[Process; 2]> {
    let docroot = workdir.join(name);
    fs::create_dir_all(&docroot)?;
    fs::write(docroot.join("id"), name)?;
    Ok([
        spawn_http_server(ns, &docroot, &format!("http {name}"))?,
        spawn_echo_server(ns, &workdir.join("echo.py"), name)?,
    ])
}

/// Waits (up to 10 s each) until the servers of [`spawn_named_servers`] accept connections.
pub fn wait_serving(ns: &Netns) -> Result<()> {
    for port in [80, ECHO_PORT] {
        wait_listening(ns, port, Duration::from_secs(10))?;
    }
    Ok(())
}

/// Python's HTTP server on port 80 of every address of `ns`, serving `docroot`.
pub fn spawn_http_server(ns: &Netns, docroot: &Path, what: &str) -> Result<Process> {
    let mut cmd = ns.command("python3");
    cmd.args([
        "-m",
        "http.server",
        "80",
        "--bind",
        "0.0.0.0",
        "--directory",
    ])
    .arg(docroot)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    Ok(Process {
        child,
        what: what.into(),
    })
}

/// The line server [`ECHO_SERVER`] (written to `script`) on [`ECHO_PORT`] of every address of
/// `ns`, answering `name` to every line.
pub fn spawn_echo_server(ns: &Netns, script: &Path, name: &str) -> Result<Process> {
    if !script.exists() {
        fs::write(script, ECHO_SERVER)?;
    }
    let mut cmd = ns.command("python3");
    cmd.arg(script)
        .arg(name)
        .arg(ECHO_PORT.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .with_context(|| format!("starting the echo server of {name}"))?;
    Ok(Process {
        child,
        what: format!("echo {name}"),
    })
}

/// Waits until something accepts TCP connections on `port` of `ns` (asked on its loopback).
pub fn wait_listening(ns: &Netns, port: u16, limit: Duration) -> Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + limit;
    loop {
        let up = ns
            .enter(move || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())?;
        if up {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "nothing listens on port {port} in {} after {limit:?}",
                ns.name
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Attaches an XDP_PASS program to the given ports of the switch: a director's XDP_TX frames
/// reach the bridge only if the veth peer runs XDP too. Keep the returned object alive as long
/// as the ports.
pub fn attach_xdp_pass(switch: &Netns, ports: &[&str]) -> Result<aya::Ebpf> {
    let mut peer_xdp = aya::Ebpf::load(lb_userspace::dataplane::FLOOR_OBJECT)?;
    {
        let prog: &mut aya::programs::Xdp = peer_xdp
            .program_mut("xdp_pass")
            .context("no xdp_pass program")?
            .try_into()?;
        prog.load()?;
        for port in ports {
            switch
                .enter(|| prog.attach(port, aya::programs::XdpMode::Driver))?
                .with_context(|| format!("attaching xdp_pass to {port}"))?;
        }
    }
    Ok(peer_xdp)
}

/// A host `{base}-{role}` with eth0 (MAC 02:99:00:00:00:{octet}, address {SUBNET}.{octet}/24)
/// whose peer `p{role}` is a port of the switch's br0.
pub fn add_host(switch: &Netns, base: &str, role: &str, octet: u8) -> Result<Netns> {
    let ns = Netns::new(format!("{base}-{role}"))?;
    plug_host(switch, &ns, role, octet)?;
    Ok(ns)
}

/// Gives host `ns` an interface `dev` (MAC `mac`, address `cidr`) on `switch`'s br0, through
/// the switch port `port`.
pub fn plug(
    switch: &Netns,
    ns: &Netns,
    port: &str,
    dev: &str,
    mac: [u8; 6],
    cidr: &str,
) -> Result<()> {
    switch.run(&[
        "ip", "link", "add", port, "type", "veth", "peer", "name", "tmp0",
    ])?;
    switch.run(&["ip", "link", "set", "tmp0", "netns", &ns.name])?;
    switch.run(&["ip", "link", "set", port, "master", "br0", "up"])?;
    ns.run(&["ip", "link", "set", "tmp0", "name", dev])?;
    address(&End { ns, dev, mac, cidr })
}

/// One end of a [`wire`]: interface `dev` in `ns`, with MAC `mac` and address `cidr`.
pub struct End<'a> {
    pub ns: &'a Netns,
    pub dev: &'a str,
    pub mac: [u8; 6],
    pub cidr: &'a str,
}

/// Joins two hosts with a veth pair and no switch between (a point-to-point link, as a
/// director's two arms in a bench, where a bridge would only add its own cost to every packet).
/// Each end is set up as [`plug`] sets up a host's interface.
pub fn wire(a: &End, b: &End) -> Result<()> {
    a.ns.run(&[
        "ip", "link", "add", a.dev, "type", "veth", "peer", "name", "tmp0",
    ])?;
    a.ns.run(&["ip", "link", "set", "tmp0", "netns", &b.ns.name])?;
    b.ns.run(&["ip", "link", "set", "tmp0", "name", b.dev])?;
    address(a)?;
    address(b)
}

/// Gives an interface its MAC and address and brings it up.
fn address(end: &End) -> Result<()> {
    let End { ns, dev, mac, cidr } = *end;
    let mac = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    ns.run(&["ip", "link", "set", dev, "address", &mac])?;
    ns.run(&["ip", "addr", "add", cidr, "dev", dev])?;
    ns.run(&["ip", "link", "set", dev, "up"])?;
    // Local TCP/UDP on veth leaves checksums partial; offload off makes them real.
    ns.run(&["ethtool", "-K", dev, "tx", "off"])?;
    Ok(())
}

/// Gives host `ns` its eth0 on the switch, as [`add_host`] describes.
pub fn plug_host(switch: &Netns, ns: &Netns, role: &str, octet: u8) -> Result<()> {
    plug(
        switch,
        ns,
        &format!("p{role}"),
        "eth0",
        [0x02, 0x99, 0, 0, 0, octet],
        &format!("{SUBNET}.{octet}/24"),
    )
}

impl Drop for DrLab {
    fn drop(&mut self) {
        // xlb first, with time to detach and unpin.
        for p in self.processes.iter_mut().rev() {
            p.stop(Duration::from_secs(5));
        }
        for p in self.http.iter_mut().chain(self.echo.iter_mut()).flatten() {
            p.stop(Duration::from_secs(3));
        }
        let _ = fs::remove_dir_all(self.bpffs());
        let _ = fs::remove_dir_all(&self.workdir);
        let _ = &self.switch;
    }
}

/// Connects to `remote`, from `local` if given (bound with SO_REUSEADDR) or else from a port the
/// kernel picks. Returns the local port as soon as the SYN is sent, so that a connection that is
/// refused or times out can still be told apart. `linger0`: closing sends RST, leaving no
/// TIME_WAIT behind, so that the same port can connect again at once.
pub fn connect_from(
    local: Option<SocketAddr>,
    remote: SocketAddr,
    timeout: Duration,
    linger0: bool,
) -> (Option<u16>, Result<TcpStream>) {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    let sockaddr = |a: SocketAddr| -> Result<libc::sockaddr_in> {
        let SocketAddr::V4(a) = a else {
            bail!("{a}: IPv4 only");
        };
        Ok(libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            },
            sin_zero: [0; 8],
        })
    };
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let last_error = std::io::Error::last_os_error;
    // SAFETY: plain socket call; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return (None, Err(last_error()).context("socket"));
    }
    // SAFETY: fd is a socket we just opened and nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let setopt = |level, name, value: &[u8]| -> Result<()> {
        // SAFETY: value points to value.len() readable bytes.
        let r = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                value.as_ptr().cast(),
                value.len() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(last_error()).context("setsockopt");
        }
        Ok(())
    };
    let setup = || -> Result<()> {
        if let Some(local) = local {
            setopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32.to_ne_bytes())?;
            let sa = sockaddr(local)?;
            // SAFETY: sa is a valid sockaddr_in of length len.
            if unsafe { libc::bind(fd, (&raw const sa).cast(), len) } != 0 {
                return Err(last_error()).with_context(|| format!("binding {local}"));
            }
        }
        if linger0 {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: reading the bytes of a plain C struct.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&raw const linger).cast::<u8>(),
                    size_of::<libc::linger>(),
                )
            };
            setopt(libc::SOL_SOCKET, libc::SO_LINGER, bytes)?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        return (local.map(|l| l.port()), Err(e));
    }
    let connected = sockaddr(remote).and_then(|sa| {
        // SAFETY: sa is a valid sockaddr_in of length len.
        if unsafe { libc::connect(fd, (&raw const sa).cast(), len) } == 0 {
            return Ok(());
        }
        let e = last_error();
        if e.raw_os_error() == Some(libc::EINPROGRESS) {
            return Ok(());
        }
        Err(e).with_context(|| format!("connecting to {remote}"))
    });
    // The port is the socket's from the moment the SYN is sent.
    let port = {
        // SAFETY: zeroed sockaddr_in is valid; getsockname writes at most `l` bytes.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut l = len;
        let r = unsafe { libc::getsockname(fd, (&raw mut sa).cast(), &mut l) };
        (r == 0 && sa.sin_port != 0).then(|| u16::from_be(sa.sin_port))
    };
    let result = connected.and_then(|()| {
        let deadline = Instant::now() + timeout;
        // Bounded: each pass waits until the deadline unless a signal interrupts it.
        let mut ready = false;
        for _ in 0..100 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if n > 0 {
                ready = true;
                break;
            }
            if n < 0 && last_error().kind() != std::io::ErrorKind::Interrupted {
                return Err(last_error()).context("poll");
            }
        }
        if !ready {
            bail!("connecting to {remote}: timed out after {timeout:?}");
        }
        let mut err: libc::c_int = 0;
        let mut l = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: err is a c_int of length l.
        if unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&raw mut err).cast(),
                &mut l,
            )
        } != 0
        {
            return Err(last_error()).context("getsockopt SO_ERROR");
        }
        if err != 0 {
            return Err(std::io::Error::from_raw_os_error(err))
                .with_context(|| format!("connecting to {remote}"));
        }
        let stream = TcpStream::from(owned);
        stream.set_nonblocking(false)?;
        Ok(stream)
    });
    (port, result)
}

/// One GET of /id on a new connection from `local` (or a kernel-chosen port); see
/// [`connect_from`]. With a fixed local port the socket closes with RST (SO_LINGER 0).
pub fn http_get_from(
    local: Option<SocketAddr>,
    remote: SocketAddr,
    timeout: Duration,
) -> (Option<u16>, Result<String>) {
    let (port, stream) = connect_from(local, remote, timeout, local.is_some());
    (port, stream.and_then(|s| http_get_on(s, timeout)))
}

/// One GET of /id on a new connection to `addr`; the body (a name).
pub fn http_get_id(addr: SocketAddr, timeout: Duration) -> Result<String> {
    let s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    http_get_on(s, timeout)
}

fn http_get_on(mut s: TcpStream, timeout: Duration) -> Result<String> {
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"GET /id HTTP/1.0\r\nHost: xlb\r\n\r\n")?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).context("reading the reply")?;
    let text = String::from_utf8_lossy(&reply);
    if !text.starts_with("HTTP/1.0 200") && !text.starts_with("HTTP/1.1 200") {
        bail!("unexpected reply: {}", text.lines().next().unwrap_or(""));
    }
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    Ok(body)
}

/// Polls `done` every 50 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("gave up after {limit:?}")
}

/// A persistent connection to an echo server (the backends' port 7): every line sent is answered
/// with the name of the backend that got it.
pub struct EchoConn {
    reader: BufReader<TcpStream>,
    pub local_port: u16,
}

impl EchoConn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self> {
        let s = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        let local_port = s.local_addr()?.port();
        Ok(Self {
            reader: BufReader::new(s),
            local_port,
        })
    }

    pub fn send(&mut self) -> Result<()> {
        self.reader
            .get_mut()
            .write_all(b"ping\n")
            .context("sending a line")
    }

    /// The next answer: a backend's name.
    pub fn recv(&mut self) -> Result<String> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).context("reading a line")?;
        if n == 0 || !line.ends_with('\n') {
            bail!("connection closed (got {line:?})");
        }
        Ok(line.trim().to_string())
    }

    pub fn ask(&mut self) -> Result<String> {
        self.send()?;
        self.recv()
    }
}

/// What long-lived echo connections saw while they talked ([`converse`]).
#[derive(Debug)]
pub struct Conversations {
    pub ports: Vec<u16>,
    /// The backend each connection's first answer named.
    pub first: Vec<String>,
    pub rounds: usize,
    /// Per broken connection, the first exchange that did not name its backend.
    pub broken: Vec<String>,
}

/// Opens `n` echo connections to `addr` (each read may wait `timeout`), reports them ready,
/// then has every connection exchange a line every 100 ms until `stop`, `max_rounds` or
/// `limit`. A connection is broken by its first exchange that fails or names another backend.
pub fn converse(
    addr: SocketAddr,
    n: usize,
    timeout: Duration,
    (max_rounds, limit): (usize, Duration),
    ready: std::sync::mpsc::Sender<()>,
    stop: Arc<AtomicBool>,
) -> Result<Conversations> {
    let mut conns = Vec::with_capacity(n);
    let mut first = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = EchoConn::connect(addr, timeout)?;
        first.push(c.ask()?);
        conns.push(c);
    }
    let ports = conns.iter().map(|c| c.local_port).collect();
    let _ = ready.send(());
    let mut alive = vec![true; n];
    let mut broken = Vec::new();
    let started = Instant::now();
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) && rounds < max_rounds && started.elapsed() < limit {
        let tick = Instant::now();
        // All lines out first, then all answers in: one round trip per round, not n.
        let sent: Vec<Result<()>> = conns
            .iter_mut()
            .zip(&alive)
            .map(|(c, a)| if *a { c.send() } else { Ok(()) })
            .collect();
        for (i, sent) in sent.into_iter().enumerate() {
            if !alive[i] {
                continue;
            }
            match sent.and_then(|()| conns[i].recv()) {
                Ok(name) if name == first[i] => {}
                other => {
                    alive[i] = false;
                    let other = match other {
                        Ok(name) => format!("answered by {name}"),
                        Err(e) => format!("{e:#}"),
                    };
                    broken.push(format!(
                        "connection {i} (port {}, on {}), round {rounds} at {:?}: {other}",
                        conns[i].local_port,
                        first[i],
                        started.elapsed()
                    ));
                }
            }
        }
        rounds += 1;
        if let Some(rest) = Duration::from_millis(100).checked_sub(tick.elapsed()) {
            thread::sleep(rest);
        }
    }
    Ok(Conversations {
        ports,
        first,
        rounds,
        broken,
    })
}
