//! keepalived's other checkers end to end, each against a real server in a backend's network
//! namespace: PING_CHECK (ICMP and ICMPv6 echo), UDP_CHECK (a UDP echo server, reply
//! required), DNS_CHECK (Debian's dnsmasq), SMTP_CHECK (Debian's python3-aiosmtpd) and
//! FILE_CHECK (a track_file). Each real server is taken out of service, must be removed
//! within the bound keepalived's settings allow, put back, and must be added again after the
//! one good check keepalived requires; the times are printed.

use std::{
    cell::RefCell,
    fs,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use xlb_tests::lab::{DrLab, Netns, Process, xlb_binary};

// The check settings of every checker here, in seconds.
const DELAY_LOOP: u64 = 1;
const CONNECT_TIMEOUT: u64 = 1;
const RETRY: u64 = 1;
const DELAY_BEFORE_RETRY: u64 = 1;

/// How long after its server fails a real server may stay in: the failure is seen by the next
/// check (within delay_loop), each of the retry+1 attempts may take connect_timeout, the
/// retries wait delay_before_retry, plus a second for everything else.
fn removal_bound() -> Duration {
    Duration::from_secs(DELAY_LOOP + (RETRY + 1) * CONNECT_TIMEOUT + RETRY * DELAY_BEFORE_RETRY + 1)
}

/// How long after its server is back a real server may stay out: the next check is due within
/// delay_loop (or delay_before_retry, for SMTP_CHECK's retries), takes at most
/// connect_timeout, plus a second.
fn readd_bound() -> Duration {
    Duration::from_secs(DELAY_LOOP.max(DELAY_BEFORE_RETRY) + CONNECT_TIMEOUT + 1)
}

const TIMING: &str = "delay_loop 1\nconnect_timeout 1\nretry 1\ndelay_before_retry 1";

/// The VIP ports of the virtual servers, one per checker, so that each one's lines differ.
const PING4: u16 = 81;
const PING6: u16 = 82;
const UDP: u16 = 83;
const DNS: u16 = 84;
const SMTP: u16 = 85;
const FILE: u16 = 86;

/// The lab's IPv6 prefix, on the lab's own bridge.
const V6_DIRECTOR: &str = "fd99::2";
const V6_B2: &str = "fd99::12";

const UDP_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(b"pong " + data, peer)
"#;

fn trio(ip: impl std::fmt::Display, port: u16) -> String {
    format!("[{ip}]:tcp:{port}")
}

fn spawn(ns: &Netns, what: &str, argv: &[&str]) -> Process {
    let mut c = ns.command(argv[0]);
    c.args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Process {
        child: c.spawn().unwrap_or_else(|e| panic!("starting {what}: {e}")),
        what: what.into(),
    }
}

fn udp_echo(lab: &DrLab) -> Process {
    let script = lab.workdir.join("udp-echo.py");
    fs::write(&script, UDP_ECHO).unwrap();
    let script = script.display().to_string();
    spawn(
        &lab.backends[0],
        "udp echo",
        &["/usr/bin/python3", &script, "7000"],
    )
}

fn dnsmasq(lab: &DrLab) -> Process {
    let listen = format!("--listen-address={}", lab.backend_ips[1]);
    let answer = format!("--address=/example.test/{}", lab.backend_ips[1]);
    spawn(
        &lab.backends[1],
        "dnsmasq",
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &listen,
            "--port=53",
            &answer,
            "--user=root",
            "--group=root",
            "--pid-file=",
        ],
    )
}

fn smtp_server(lab: &DrLab) -> Process {
    // Every address of b1: the lab waits for it on the loopback.
    let listen = "0.0.0.0:25".to_string();
    spawn(
        &lab.backends[0],
        "aiosmtpd",
        &["/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l", &listen],
    )
}

/// IPv6 on the lab's bridge, for ICMPv6 echo from the director to b2.
fn add_ipv6(lab: &DrLab) {
    for (ns, address) in [(&lab.director, V6_DIRECTOR), (&lab.backends[1], V6_B2)] {
        ns.run(&[
            "ip",
            "addr",
            "add",
            &format!("{address}/64"),
            "dev",
            "eth0",
            "nodad",
        ])
        .unwrap();
    }
}

fn sysctl(ns: &Netns, key: &str, value: u8) {
    ns.run(&["sysctl", "-q", "-w", &format!("{key}={value}")])
        .unwrap();
}

/// Waits for a new line containing `needle` (there were `before`), up to `bound` plus five
/// seconds of grace so that a late line is measured rather than missed.
fn next_line(lab: &DrLab, needle: &str, before: usize, bound: Duration) -> Instant {
    lab.wait_for_log(needle, before, bound + Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A checker's real server taken out by `fail` and put back by `recover`: the removal and the
/// return are logged as keepalived logs them, within the bounds. Returns both times.
fn out_and_back(
    lab: &DrLab,
    what: &str,
    service: &str,
    vs: &str,
    bounds: (Duration, Duration),
    fail: impl FnOnce() -> Instant,
    recover: impl FnOnce() -> Instant,
) -> (Duration, Duration) {
    let removing = format!("Removing service {service} from VS {vs}");
    let adding = format!("Adding service {service} to VS {vs}");
    let (removed, added) = (lab.log_count(&removing), lab.log_count(&adding));
    let failed = fail();
    let out = next_line(lab, &removing, removed, bounds.0).duration_since(failed);
    thread::sleep(Duration::from_millis(500));
    let back = recover();
    let readd = next_line(lab, &adding, added, bounds.1).duration_since(back);
    eprintln!(
        "{what}: removed {out:?} after the failure (bound {:?}), added back {readd:?} after the \
         recovery (bound {:?})",
        bounds.0, bounds.1
    );
    assert!(
        out <= bounds.0,
        "{what}: removal took {out:?}\n{}",
        lab.log()
    );
    assert!(
        readd <= bounds.1,
        "{what}: return took {readd:?}\n{}",
        lab.log()
    );
    (out, readd)
}

#[test]
fn ping_udp_dns_smtp_and_file_checkers_follow_real_servers() {
    let mut lab = DrLab::new("checkers", 2).expect("building the lab");
    let xlb = xlb_binary();
    add_ipv6(&lab);
    // Each server is stopped (dropped: by its pid) and started again from two closures.
    let echo = RefCell::new(Some(udp_echo(&lab)));
    let dns = RefCell::new(Some(dnsmasq(&lab)));
    let smtp = RefCell::new(Some(smtp_server(&lab)));
    xlb_tests::lab::wait_listening(&lab.backends[0], 25, Duration::from_secs(10)).unwrap();
    let flag = lab.workdir.join("maintenance");
    let boost = lab.workdir.join("boost");

    let (b1, b2) = (0usize, 1usize);
    let vs = |port: u16, member: usize, body: &str| {
        lab.virtual_server(port, "", &[(member, 1)], |_| body.to_string())
    };
    let config = [
        format!(
            "track_file maintenance {{\n    file \"{}\"\n    init_file 0\n}}\ntrack_file boost {{\n    file \"{}\"\n}}\n",
            flag.display(),
            boost.display()
        ),
        vs(PING4, b1, &format!("PING_CHECK {{\n{TIMING}\n}}")),
        vs(
            PING6,
            b2,
            &format!("PING_CHECK {{\nconnect_ip {V6_B2}\n{TIMING}\n}}"),
        ),
        vs(
            UDP,
            b1,
            &format!(
                "UDP_CHECK {{\nconnect_port 7000\npayload 70 69 6e 67\nrequire_reply 70 6f 6e 67 20 70 69 6e 67\n{TIMING}\n}}"
            ),
        ),
        vs(
            DNS,
            b2,
            &format!("DNS_CHECK {{\nconnect_port 53\ntype A\nname www.example.test\n{TIMING}\n}}"),
        ),
        vs(
            SMTP,
            b1,
            &format!("SMTP_CHECK {{\nconnect_port 25\nhelo_name xlb.test\n{TIMING}\n}}"),
        ),
        vs(
            FILE,
            b2,
            "FILE_CHECK {\ntrack_file maintenance\nweight 0\n}\nFILE_CHECK {\ntrack_file boost\nweight 2\n}",
        ),
    ]
    .concat();
    let path = lab.workdir.join("xlb.conf");
    fs::write(&path, &config).unwrap();
    lab.start_director(&xlb, &path).unwrap();
    assert_eq!(
        fs::read_to_string(&flag).unwrap(),
        "0\n",
        "init_file wrote the missing file"
    );
    // Every polled checker has passed once (a random warmup within delay_loop comes first).
    for line in [
        format!(
            "ICMP connection to {} success.",
            trio(lab.backend_ips[b1], PING4)
        ),
        format!(
            "ICMP connection to {} success.",
            trio(lab.backend_ips[b2], PING6)
        ),
        format!(
            "UDP connection to {} success.",
            trio(lab.backend_ips[b1], UDP)
        ),
        format!(
            "Remote SMTP server {} succeed on service.",
            trio(lab.backend_ips[b1], SMTP)
        ),
    ] {
        next_line(&lab, &line, 0, Duration::from_secs(DELAY_LOOP + 3));
    }
    let vip = lab.vip;
    let bounds = (removal_bound(), readd_bound());

    // PING_CHECK, IPv4: b1 stops answering echo requests (every attempt times out).
    let b1ns = &lab.backends[b1];
    let b2ns = &lab.backends[b2];
    out_and_back(
        &lab,
        "PING_CHECK (ICMP)",
        &trio(lab.backend_ips[b1], PING4),
        &trio(vip, PING4),
        bounds,
        || {
            sysctl(b1ns, "net.ipv4.icmp_echo_ignore_all", 1);
            Instant::now()
        },
        || {
            sysctl(b1ns, "net.ipv4.icmp_echo_ignore_all", 0);
            Instant::now()
        },
    );
    let log = lab.log();
    assert!(
        log.contains(&format!(
            "ICMP CHECK on service {} of {} failed after 1 retries.",
            trio(lab.backend_ips[b1], PING4),
            trio(vip, PING4)
        )),
        "keepalived's words for a failed ping:\n{log}"
    );

    // PING_CHECK, IPv6.
    out_and_back(
        &lab,
        "PING_CHECK (ICMPv6)",
        &trio(lab.backend_ips[b2], PING6),
        &trio(vip, PING6),
        bounds,
        || {
            sysctl(b2ns, "net.ipv6.icmp.echo_ignore_all", 1);
            Instant::now()
        },
        || {
            sysctl(b2ns, "net.ipv6.icmp.echo_ignore_all", 0);
            Instant::now()
        },
    );

    // UDP_CHECK: the echo server stops (ICMP port unreachable), then starts again.
    out_and_back(
        &lab,
        "UDP_CHECK",
        &trio(lab.backend_ips[b1], UDP),
        &trio(vip, UDP),
        bounds,
        || {
            drop(echo.borrow_mut().take());
            Instant::now()
        },
        || {
            *echo.borrow_mut() = Some(udp_echo(&lab));
            Instant::now()
        },
    );

    // DNS_CHECK: dnsmasq stops, then starts again.
    out_and_back(
        &lab,
        "DNS_CHECK",
        &trio(lab.backend_ips[b2], DNS),
        &trio(vip, DNS),
        bounds,
        || {
            drop(dns.borrow_mut().take());
            Instant::now()
        },
        || {
            *dns.borrow_mut() = Some(dnsmasq(&lab));
            Instant::now()
        },
    );
    let log = lab.log();
    assert!(
        log.contains(&format!(
            "DNS_CHECK ({}) failed to read socket",
            trio(lab.backend_ips[b2], DNS)
        )) && log.contains("after 1 retries"),
        "keepalived's words for a failed DNS check:\n{log}"
    );

    // SMTP_CHECK: the SMTP server stops, then starts again.
    out_and_back(
        &lab,
        "SMTP_CHECK",
        &trio(lab.backend_ips[b1], SMTP),
        &trio(vip, SMTP),
        bounds,
        || {
            drop(smtp.borrow_mut().take());
            Instant::now()
        },
        || {
            *smtp.borrow_mut() = Some(smtp_server(&lab));
            xlb_tests::lab::wait_listening(&lab.backends[b1], 25, Duration::from_secs(10)).unwrap();
            Instant::now()
        },
    );
    let log = lab.log();
    assert!(
        log.contains(&format!(
            "SMTP_CHECK Error connecting to server [{}]:25",
            lab.backend_ips[b1]
        )),
        "keepalived's words for a failed SMTP check:\n{log}"
    );

    // FILE_CHECK: no polling, so the change shows at once (well within a second).
    let at_once = Duration::from_secs(1);
    let file_service = trio(lab.backend_ips[b2], FILE);
    out_and_back(
        &lab,
        "FILE_CHECK",
        &file_service,
        &trio(vip, FILE),
        (at_once, at_once),
        || {
            fs::write(&flag, "1\n").unwrap();
            Instant::now()
        },
        || {
            fs::write(&flag, "0\n").unwrap();
            Instant::now()
        },
    );
    // A weighted FILE_CHECK adds value x weight to the real server's weight.
    let changing = format!(
        "Changing weight from 1 to 11 for active service {file_service} of VS {}",
        trio(vip, FILE)
    );
    let written = Instant::now();
    fs::write(&boost, "5\n").unwrap();
    let took = next_line(&lab, &changing, 0, at_once).duration_since(written);
    eprintln!("FILE_CHECK weight 2, file 5: weight 11 after {took:?}");
    assert!(took <= at_once, "the weight changed after {took:?}");
}

/// PING_CHECK over unprivileged ICMP datagram sockets, which xlb uses when the namespace's
/// ping_group_range lets root's group open them (the test above runs on raw sockets, the
/// range being empty by default): the same removal and return, IPv4 and IPv6.
#[test]
fn ping_check_over_datagram_sockets() {
    let mut lab = DrLab::new("pingdgram", 2).expect("building the lab");
    let xlb = xlb_binary();
    lab.director
        .run(&["sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 0"])
        .unwrap();
    add_ipv6(&lab);
    let config = [
        lab.virtual_server(PING4, "", &[(0, 1)], |_| {
            format!("PING_CHECK {{\n{TIMING}\n}}")
        }),
        lab.virtual_server(PING6, "", &[(1, 1)], |_| {
            format!("PING_CHECK {{\nconnect_ip {V6_B2}\n{TIMING}\n}}")
        }),
    ]
    .concat();
    let path = lab.workdir.join("xlb.conf");
    fs::write(&path, &config).unwrap();
    lab.start_director(&xlb, &path).unwrap();
    let vip = lab.vip;
    for (what, b, port, key) in [
        (
            "PING_CHECK (ICMP, datagram)",
            0,
            PING4,
            "net.ipv4.icmp_echo_ignore_all",
        ),
        (
            "PING_CHECK (ICMPv6, datagram)",
            1,
            PING6,
            "net.ipv6.icmp.echo_ignore_all",
        ),
    ] {
        let service = trio(lab.backend_ips[b], port);
        next_line(
            &lab,
            &format!("ICMP connection to {service} success."),
            0,
            Duration::from_secs(DELAY_LOOP + 3),
        );
        let ns = &lab.backends[b];
        out_and_back(
            &lab,
            what,
            &service,
            &trio(vip, port),
            (removal_bound(), readd_bound()),
            || {
                sysctl(ns, key, 1);
                Instant::now()
            },
            || {
                sysctl(ns, key, 0);
                Instant::now()
            },
        );
    }
}
