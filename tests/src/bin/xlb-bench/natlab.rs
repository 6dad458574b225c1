//! NAT forwarding live: xlb beside the kernel's NAT (nftables DNAT) on the same veth lab, in
//! the same run.
//!
//! Three namespaces joined by veth pairs, no bridge: the client (10.97.1.10), the director
//! (`cli` 10.97.1.1, `srv` 10.97.2.1, IP forwarding on) and the real server (10.97.2.10). The
//! client's and the real server's default routes are the director, the VIP 10.97.0.100
//! included. The same traffic goes through xlb (`lb_kind NAT`), then through an nftables
//! `dnat` rule with conntrack undoing it on the replies, and (the floor) to the real server's
//! own address with the director only routing, in interleaved rounds so that drift in the
//! machine's load hits every mode alike:
//!
//! - request/response: sequential UDP exchanges with an echo server on the real server, the
//!   round trip of each as the client times it;
//! - one way: the client sends small datagrams as fast as `sendmmsg` takes them for a fixed
//!   time; what the real server's interface received and what its socket read, per second.
//!   On veth a sent packet is carried through the director to the server's socket by the
//!   sender's own CPU (each veth hands the packet to its peer in the sender's softirq), so this
//!   is one CPU's rate for the whole path, of which the director's work is a part;
//! - xlb only: its XDP program's own time per packet in the lab (the kernel's BPF run-time
//!   statistics, switched on only for a separate flood so they cost the other figures nothing).
//!
//! The veths where local sockets send have checksum offload off (partial checksums would be
//! left in the packets), and the client's and server's ends run an XDP_PASS program in every
//! mode, since a veth takes redirected frames only from XDP on its peer. Neighbours are
//! entered by hand. Prints figures and ratios; asserts nothing.

use std::{
    fs,
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    programs::ProgramInfo,
    sys::{Stats, enable_stats},
};
use lb_userspace::dataplane::pins::{Bpffs, PROGRAM_PIN};
use xlb_tests::lab::{End, Netns, Process, attach_xdp_pass, unique_name, wait_for, wire};

use crate::summary;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 97, 0, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 97, 1, 10);
const DIRECTOR_CLI: Ipv4Addr = Ipv4Addr::new(10, 97, 1, 1);
const DIRECTOR_SRV: Ipv4Addr = Ipv4Addr::new(10, 97, 2, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 97, 2, 10);
const CLIENT_MAC: [u8; 6] = [0x02, 0x97, 1, 0, 0, 10];
const DIRECTOR_CLI_MAC: [u8; 6] = [0x02, 0x97, 1, 0, 0, 1];
const DIRECTOR_SRV_MAC: [u8; 6] = [0x02, 0x97, 2, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x02, 0x97, 2, 0, 0, 10];
/// The echo service (request/response) and the discard service (one way), the same port on
/// the VIP and on the real server.
const ECHO: u16 = 7;
const SINK: u16 = 9;

/// Interleaved rounds of (no NAT, xlb, nftables): many short ones, since the machine's other
/// work moves every figure from one second to the next.
const ROUNDS: usize = 9;
const EXCHANGES: usize = 20_000;
/// A round's exchanges stop here even if fewer were done (a slow or lossy path).
const EXCHANGE_LIMIT: Duration = Duration::from_secs(20);
/// How long one exchange waits for its answer before it counts as lost.
const REPLY_WAIT: Duration = Duration::from_millis(200);
const FLOOD: Duration = Duration::from_secs(1);
/// The flood timed with BPF statistics on, xlb only.
const STATS_FLOOD: Duration = Duration::from_secs(1);
/// Datagrams per `sendmmsg`.
const BATCH: usize = 64;
/// 18 bytes of payload: a 60-byte frame, Ethernet's minimum.
const PAYLOAD: usize = 18;
/// After a flood, for the packets still queued on the way to be counted.
const SETTLE: Duration = Duration::from_millis(300);

/// The lab. Dropped in order: xlb (by pid), the server's threads, the XDP_PASS programs, then
/// the namespaces (which takes the nftables table and the veths with them).
struct Lab {
    xlb: Option<Process>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Datagrams the real server's discard socket has read.
    sunk: Arc<AtomicU64>,
    /// The discard socket's reader spins (non-blocking reads) while this is set, during a
    /// flood: woken by the kernel for each datagram instead, it would make every one cost a
    /// wakeup of another CPU (an IPI, a VM exit here) in the sender's softirq, which would then
    /// be most of what the flood measures.
    spin: Arc<AtomicBool>,
    _peer_xdp: Vec<aya::Ebpf>,
    client: Netns,
    director: Netns,
    server: Netns,
    workdir: PathBuf,
    bpffs: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut xlb) = self.xlb.take() {
            xlb.stop(Duration::from_secs(5));
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = fs::remove_dir_all(&self.bpffs);
        let _ = fs::remove_dir_all(&self.workdir);
    }
}

impl Lab {
    fn new() -> Result<Self> {
        let base = unique_name("natlab");
        let workdir = std::env::temp_dir().join(&base);
        fs::create_dir_all(&workdir)?;
        let client = Netns::new(format!("{base}-cl"))?;
        let director = Netns::new(format!("{base}-dir"))?;
        let server = Netns::new(format!("{base}-rs"))?;
        let mut lab = Self {
            xlb: None,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            sunk: Arc::new(AtomicU64::new(0)),
            spin: Arc::new(AtomicBool::new(false)),
            _peer_xdp: Vec::new(),
            bpffs: Path::new("/sys/fs/bpf").join(&director.name),
            client,
            director,
            server,
            workdir,
        };
        let cidr = |a: Ipv4Addr| format!("{a}/24");
        wire(
            &End {
                ns: &lab.client,
                dev: "eth0",
                mac: CLIENT_MAC,
                cidr: &cidr(CLIENT),
            },
            &End {
                ns: &lab.director,
                dev: "cli",
                mac: DIRECTOR_CLI_MAC,
                cidr: &cidr(DIRECTOR_CLI),
            },
        )?;
        wire(
            &End {
                ns: &lab.director,
                dev: "srv",
                mac: DIRECTOR_SRV_MAC,
                cidr: &cidr(DIRECTOR_SRV),
            },
            &End {
                ns: &lab.server,
                dev: "eth0",
                mac: SERVER_MAC,
                cidr: &cidr(SERVER),
            },
        )?;
        lab.director
            .run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        // The VIP, and the real server's network for the floor, through the director.
        lab.client.run(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &DIRECTOR_CLI.to_string(),
        ])?;
        lab.server.run(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &DIRECTOR_SRV.to_string(),
        ])?;
        lab._peer_xdp.push(attach_xdp_pass(&lab.client, &["eth0"])?);
        lab._peer_xdp.push(attach_xdp_pass(&lab.server, &["eth0"])?);
        // Every neighbour entered by hand: no ARP while anything is timed, in both modes alike.
        for (ns, addr, mac, dev) in [
            (&lab.director, CLIENT, CLIENT_MAC, "cli"),
            (&lab.director, SERVER, SERVER_MAC, "srv"),
            (&lab.client, DIRECTOR_CLI, DIRECTOR_CLI_MAC, "eth0"),
            (&lab.server, DIRECTOR_SRV, DIRECTOR_SRV_MAC, "eth0"),
        ] {
            ns.run(&[
                "ip",
                "neigh",
                "replace",
                &addr.to_string(),
                "lladdr",
                &mac_text(mac),
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
        lab.start_servers()?;
        Ok(lab)
    }

    /// The real server's echo and discard services: sockets opened in its namespace, served by
    /// threads of this process until the lab is dropped.
    fn start_servers(&mut self) -> Result<()> {
        let (echo, sink) = self.server.enter(|| -> Result<(UdpSocket, UdpSocket)> {
            Ok((
                UdpSocket::bind((Ipv4Addr::UNSPECIFIED, ECHO)).context("binding the echo port")?,
                UdpSocket::bind((Ipv4Addr::UNSPECIFIED, SINK))
                    .context("binding the discard port")?,
            ))
        })??;
        // A large receive buffer, so that the socket's reader is not what loses the flood.
        let size: libc::c_int = 8 << 20;
        // SAFETY: setsockopt on an open socket with a c_int option of its size.
        let rc = unsafe {
            libc::setsockopt(
                sink.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            bail!("SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        }
        for sock in [&echo, &sink] {
            // Wakes the threads up to see the lab stop.
            sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        }
        let stop = self.stop.clone();
        self.threads.push(thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], from);
                }
            }
        }));
        let (stop, sunk, spin) = (self.stop.clone(), self.sunk.clone(), self.spin.clone());
        self.threads.push(thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if !spin.load(Ordering::Relaxed) {
                    if sink.recv(&mut buf).is_ok() {
                        sunk.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                // SAFETY: recv into a buffer of the length given, on an open socket.
                let n = unsafe {
                    libc::recv(
                        sink.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n >= 0 {
                    sunk.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        Ok(())
    }

    fn log(&self) -> String {
        fs::read_to_string(self.workdir.join("xlb.log")).unwrap_or_default()
    }

    /// `xlb run` on the director's two arms with one NAT service per port; returns once it has
    /// resolved the real server.
    fn start_xlb(&mut self, xlb: &Path) -> Result<()> {
        Bpffs::ensure(Path::new("/sys/fs/bpf"))?;
        let mut config = String::new();
        for port in [ECHO, SINK] {
            config += &format!(
                "virtual_server {VIP} {port} {{\n    lb_algo mh\n    lb_kind NAT\n    \
                 protocol UDP\n    real_server {SERVER} {port} {{\n    }}\n}}\n"
            );
        }
        let conf = self.workdir.join("xlb.conf");
        fs::write(&conf, config)?;
        let log = fs::File::create(self.workdir.join("xlb.log"))?;
        let mut cmd = self.director.command(xlb.to_str().context("xlb path")?);
        cmd.args(["run", "-f"])
            .arg(&conf)
            .args(["-i", "cli", "--also-interface", "srv", "--bpffs"])
            .arg(&self.bpffs)
            .arg("--pidfile")
            .arg(self.workdir.join("xlb.pid"))
            .args(["--flow-table-size", "65536"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", xlb.display()))?;
        let mut process = Process {
            child,
            what: "xlb".into(),
        };
        let log = self.workdir.join("xlb.log");
        let mut exited = None;
        // Until it has resolved the real server, or has exited (no point waiting then).
        let waited = wait_for(Duration::from_secs(20), || {
            exited = process.child.try_wait().ok().flatten();
            exited.is_some() || fs::read_to_string(&log).is_ok_and(|l| l.contains(" is at "))
        });
        self.xlb = Some(process);
        if let Some(status) = exited {
            bail!("xlb exited ({status}); log:\n{}", self.log());
        }
        waited.with_context(|| format!("xlb did not resolve the real server; log:\n{}", self.log()))
    }

    /// Stops xlb by its pid and checks that it took its program off both arms: the kernel's
    /// run must not pass through it.
    fn stop_xlb(&mut self) -> Result<()> {
        if let Some(mut xlb) = self.xlb.take() {
            xlb.stop(Duration::from_secs(5));
        }
        for dev in ["cli", "srv"] {
            let link = self
                .director
                .run(&["ip", "-d", "link", "show", "dev", dev])?;
            if link.contains("prog/xdp") {
                bail!("xlb left its XDP program on {dev}: {link}");
            }
        }
        Ok(())
    }

    /// The kernel's NAT in xlb's place: DNAT of both services to the real server in prerouting;
    /// conntrack translates the replies back.
    fn start_nft(&self) -> Result<()> {
        let rules = format!(
            "table ip xlb_bench {{\n    chain prerouting {{\n        type nat hook prerouting \
             priority dstnat; policy accept;\n        ip daddr {VIP} udp dport {{ {ECHO}, {SINK} }} \
             dnat to {SERVER}\n    }}\n}}\n"
        );
        let path = self.workdir.join("nat.nft");
        fs::write(&path, rules)?;
        let path = path.to_str().context("nft file path")?;
        self.director
            .run(&["nft", "-f", path])
            .context("loading the DNAT rule (apt-get install nftables)")?;
        Ok(())
    }

    fn stop_nft(&self) -> Result<()> {
        self.director
            .run(&["nft", "delete", "table", "ip", "xlb_bench"])?;
        Ok(())
    }

    /// Packets the real server's interface has received.
    fn server_rx(&self) -> Result<u64> {
        let text = self
            .server
            .run(&["ip", "-j", "-s", "link", "show", "dev", "eth0"])?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("ip -j printed {text}"))?;
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .with_context(|| format!("no rx packets in {text}"))
    }

    /// `count` sequential exchanges with the echo service at `to` (the VIP, or the real server
    /// for the floor), for at most `limit`: the round trips answered (µs) and how many went
    /// unanswered.
    fn exchanges(&self, to: Ipv4Addr, count: usize, limit: Duration) -> Result<(Vec<f64>, usize)> {
        self.client.enter(move || -> Result<(Vec<f64>, usize)> {
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            sock.connect(SocketAddrV4::new(to, ECHO))?;
            sock.set_read_timeout(Some(REPLY_WAIT))?;
            let mut rtts = Vec::with_capacity(count);
            let mut lost = 0;
            let mut buf = [0u8; 64];
            let started = Instant::now();
            for i in 0..count as u64 {
                if started.elapsed() > limit {
                    break;
                }
                let seq = i.to_be_bytes();
                let sent = Instant::now();
                sock.send(&seq).context("sending a request")?;
                loop {
                    match sock.recv(&mut buf) {
                        Ok(8) if buf[..8] == seq => {
                            rtts.push(sent.elapsed().as_secs_f64() * 1e6);
                            break;
                        }
                        // A late answer to an exchange already counted lost.
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::WouldBlock
                                    | ErrorKind::TimedOut
                                    | ErrorKind::ConnectionRefused
                            ) =>
                        {
                            lost += 1;
                            break;
                        }
                        Err(e) => return Err(e).context("reading an answer"),
                    }
                }
            }
            Ok((rtts, lost))
        })?
    }

    /// Until one exchange is answered (up to 10 s): the path works before it is timed.
    fn wait_path(&self, to: Ipv4Addr, mode: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.exchanges(to, 1, REPLY_WAIT)?.0.is_empty() {
                return Ok(());
            }
        }
        bail!(
            "no answer through {mode} within 10 s; xlb log:\n{}",
            self.log()
        )
    }

    /// The client floods the discard service at `to` for `length`.
    fn flood(&self, to: Ipv4Addr, length: Duration) -> Result<Flood> {
        let (rx0, sunk0) = (self.server_rx()?, self.sunk.load(Ordering::Relaxed));
        self.spin.store(true, Ordering::Relaxed);
        let sent = self.client.enter(move || -> Result<(u64, Duration)> {
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            sock.connect(SocketAddr::from((to, SINK)))?;
            let payload = [0u8; PAYLOAD];
            let mut iov = [libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: PAYLOAD,
            }; BATCH];
            // SAFETY: mmsghdr is plain data; all zeroes is a header with no name and no
            // control data, completed below.
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
            }
            let mut sent = 0u64;
            let cpu0 = thread_cpu()?;
            let end = Instant::now() + length;
            while Instant::now() < end {
                // SAFETY: a connected socket and BATCH headers each pointing at one iovec of
                // `payload`, all alive for the call.
                let n =
                    unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
                if n >= 0 {
                    sent += n as u64;
                    continue;
                }
                let e = std::io::Error::last_os_error();
                // A full queue on the way, or an ICMP error for an earlier datagram: the
                // datagram is not sent, the flood goes on.
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::ENOBUFS | libc::EAGAIN | libc::ECONNREFUSED)
                ) {
                    return Err(e).context("sendmmsg");
                }
            }
            Ok((sent, thread_cpu()? - cpu0))
        });
        thread::sleep(SETTLE);
        self.spin.store(false, Ordering::Relaxed);
        let (sent, sender_cpu) = sent??;
        let (rx1, sunk1) = (self.server_rx()?, self.sunk.load(Ordering::Relaxed));
        Ok(Flood {
            sent,
            delivered: rx1 - rx0,
            read: sunk1 - sunk0,
            sender_cpu,
        })
    }

    /// xlb's XDP program's run time over run count while the client floods: the kernel's BPF
    /// statistics, on only for this (the fd `enable_stats` returns switches them off on drop,
    /// whatever happens, so `kernel.bpf_stats_enabled` is never left on).
    fn xdp_ns_per_packet(&self) -> Result<(f64, u64)> {
        let pin = self.director.pin_dir(&self.bpffs, "cli")?.join(PROGRAM_PIN);
        let info =
            || ProgramInfo::from_pin(&pin).with_context(|| format!("reading {}", pin.display()));
        let stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
        let before = info()?;
        self.flood(VIP, STATS_FLOOD)?;
        let after = info()?;
        drop(stats);
        let runs = after.run_count() - before.run_count();
        if runs == 0 {
            bail!("xlb's program did not run during the flood");
        }
        let ns = (after.run_time() - before.run_time()).as_nanos() as f64;
        Ok((ns / runs as f64, runs))
    }
}

/// What a flood did: datagrams the client sent, the real server's interface received and its
/// socket read, and the CPU time of the sending thread.
struct Flood {
    sent: u64,
    delivered: u64,
    read: u64,
    sender_cpu: Duration,
}

/// The CPU time of the calling thread. It includes the softirq work done in its context (the
/// whole path of a packet on veth) when, as here, the kernel does not account IRQ time apart
/// (CONFIG_IRQ_TIME_ACCOUNTING off); time other work took the CPU away is not in it.
fn thread_cpu() -> Result<Duration> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        bail!(
            "CLOCK_THREAD_CPUTIME_ID: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(Duration::new(t.tv_sec as u64, t.tv_nsec as u32))
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// One mode's figures in one round.
#[derive(Default, Clone)]
struct Figures {
    rtt_median: f64,
    rtt_p99: f64,
    answered: f64,
    lost: f64,
    sent_pps: f64,
    delivered_pps: f64,
    read_pps: f64,
    /// The sending thread's CPU time per delivered datagram.
    sender_ns: f64,
    xdp_ns: Option<f64>,
}

fn measure(lab: &Lab, to: Ipv4Addr, mode: &str) -> Result<Figures> {
    lab.wait_path(to, mode)?;
    // Warm-up: flows and caches settled on every path alike.
    lab.exchanges(to, 500, EXCHANGE_LIMIT)?;
    let (mut rtts, lost) = lab.exchanges(to, EXCHANGES, EXCHANGE_LIMIT)?;
    if rtts.is_empty() {
        bail!("no exchange answered through {mode}");
    }
    rtts.sort_by(|a, b| a.total_cmp(b));
    let flood = lab.flood(to, FLOOD)?;
    let per_s = |n: u64| n as f64 / FLOOD.as_secs_f64();
    Ok(Figures {
        rtt_median: rtts[rtts.len() / 2],
        rtt_p99: rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)],
        answered: rtts.len() as f64,
        lost: lost as f64,
        sent_pps: per_s(flood.sent),
        delivered_pps: per_s(flood.delivered),
        read_pps: per_s(flood.read),
        sender_ns: flood.sender_cpu.as_nanos() as f64 / flood.delivered.max(1) as f64,
        xdp_ns: None,
    })
}

/// The floor: the director only routes (the client sends to the real server's own address),
/// no NAT. What the veths and the two end hosts cost, which both NATs pay on top of.
fn floor_round(lab: &Lab) -> Result<Figures> {
    measure(lab, SERVER, "plain forwarding")
}

fn xlb_round(lab: &mut Lab, xlb: &Path) -> Result<Figures> {
    lab.start_xlb(xlb)?;
    let mut figures = measure(lab, VIP, "xlb")?;
    figures.xdp_ns = Some(lab.xdp_ns_per_packet()?.0);
    lab.stop_xlb()?;
    Ok(figures)
}

fn nft_round(lab: &Lab) -> Result<Figures> {
    lab.start_nft()?;
    let figures = measure(lab, VIP, "nftables DNAT")?;
    lab.stop_nft()?;
    Ok(figures)
}

/// A row of the table: its name, the figure, its decimals.
type Row = (&'static str, fn(&Figures) -> f64, usize);

pub fn run(xlb: &Path) -> Result<()> {
    let mut lab = Lab::new().context("building the NAT lab")?;
    let (mut floor, mut xlbs, mut nfts) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        floor.push(floor_round(&lab).context("the plain forwarding round")?);
        // Each NAT first in every other round: neither always follows the other.
        if round % 2 == 0 {
            xlbs.push(xlb_round(&mut lab, xlb).context("the xlb round")?);
            nfts.push(nft_round(&lab).context("the nftables round")?);
        } else {
            nfts.push(nft_round(&lab).context("the nftables round")?);
            xlbs.push(xlb_round(&mut lab, xlb).context("the xlb round")?);
        }
    }
    println!();
    println!(
        "NAT live, veth lab (client -> director -> real server, UDP): xlb lb_kind NAT beside \
         nftables DNAT + conntrack, and the director only routing (no NAT) as the floor"
    );
    println!(
        "({ROUNDS} interleaved rounds, median over rounds, xlb/nft the median of each round's \
         ratio; per round {EXCHANGES} sequential \
         echo exchanges (at most {}s) and a {}s sendmmsg flood of {}-byte frames)",
        EXCHANGE_LIMIT.as_secs(),
        FLOOD.as_secs(),
        PAYLOAD + 42,
    );
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>8}",
        "figure", "no NAT", "xlb", "nftables", "xlb/nft"
    );
    let median = |rounds: &[Figures], f: fn(&Figures) -> f64| -> f64 {
        summary(rounds.iter().map(f).collect()).1
    };
    let rows: [Row; 8] = [
        ("request/response RTT median (us)", |f| f.rtt_median, 1),
        ("request/response RTT p99 (us)", |f| f.rtt_p99, 1),
        ("exchanges answered", |f| f.answered, 0),
        ("exchanges lost", |f| f.lost, 0),
        ("one way: client sent (pkt/s)", |f| f.sent_pps, 0),
        (
            "one way: server iface received (pkt/s)",
            |f| f.delivered_pps,
            0,
        ),
        ("one way: server socket read (pkt/s)", |f| f.read_pps, 0),
        ("one way: sender CPU per delivered (ns)", |f| f.sender_ns, 0),
    ];
    for (name, f, decimals) in rows {
        let (o, x, n) = (median(&floor, f), median(&xlbs, f), median(&nfts, f));
        // Each round's own ratio (its xlb and nftables runs are next to each other in time),
        // the median of those: drift between rounds cancels.
        let ratios: Vec<f64> = xlbs
            .iter()
            .zip(&nfts)
            .filter(|(_, n)| f(n) > 0.0)
            .map(|(x, n)| f(x) / f(n))
            .collect();
        let ratio = if ratios.is_empty() {
            "-".into()
        } else {
            format!("{:.2}", summary(ratios).1)
        };
        println!("{name:<40} {o:>10.decimals$} {x:>10.decimals$} {n:>10.decimals$} {ratio:>8}");
    }
    let xdp: Vec<f64> = xlbs.iter().filter_map(|f| f.xdp_ns).collect();
    if !xdp.is_empty() {
        let (min, med, max) = summary(xdp);
        println!(
            "{:<40} {:>10} {med:>10.1} {:>10} {:>8}",
            "xlb XDP run time per packet (ns)", "-", "-", "-"
        );
        println!(
            "  (the kernel's BPF run-time statistics over a separate {}s flood; min {min:.1}, \
             max {max:.1})",
            STATS_FLOOD.as_secs()
        );
    }
    Ok(())
}
