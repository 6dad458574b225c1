//! Operating xlb as an operator who ran keepalived and LVS would: `xlb status` in `ipvsadm
//! -Ln`'s layout (with `--stats`, `--rate`, `--json`), Prometheus `/metrics` checked by the
//! reference OpenMetrics parser, keepalived's signals, `xlb stop`, and `xlb cleanup` after a
//! SIGKILL; bad clients and bad start-up arguments are refused without disturbing anything.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use lb_userspace::status::Status;
use xlb_tests::{
    ha_lab::{Daemon, HaLab, VRRP_GROUP, VrrpSpec, ipv4_packet},
    lab::{DrLab, Netns, output_within, wait_for, xlb_binary},
};

const METRICS: &str = "127.0.0.1:9650";
const LIMIT: Duration = Duration::from_secs(30);

fn http_get_check() -> String {
    "HTTP_GET {\n url {\n path /id\n status_code 200\n }\n delay_loop 1\n connect_timeout 1\n \
     retry 0\n}"
        .to_string()
}

/// `xlb status --json` of the lab's xlb.
fn status_json(lab: &DrLab) -> Status {
    let text = lab.xlb(&xlb_binary(), &["status", "--json"]).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// One GET on a new connection from inside `ns`: (status code, body).
fn http_get(ns: &Netns, address: &str, path: &str) -> (u16, String) {
    let address: SocketAddr = address.parse().unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: xlb\r\nConnection: close\r\n\r\n");
    ns.enter(move || {
        let mut s = TcpStream::connect_timeout(&address, LIMIT).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let code = reply
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    })
    .unwrap()
}

/// One sample of an exposition, as the reference parser read it.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses `text` with prometheus_client's OpenMetrics parser (Debian's python3, which has
/// it), which refuses anything the format does not allow.
fn parse_openmetrics(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = "import sys, json\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       print(json.dumps([s.name, s.labels, s.value]))\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let (name, labels, value): (String, BTreeMap<String, String>, f64) =
                serde_json::from_str(line).unwrap();
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

fn sample<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

fn metrics(ns: &Netns) -> Vec<Sample> {
    let (code, body) = http_get(ns, METRICS, "/metrics");
    assert_eq!(code, 200, "{body}");
    parse_openmetrics(&body)
}

#[test]
fn status_metrics_signals_and_stop() {
    let mut lab = DrLab::new("ops", 3).expect("building the lab");
    let xlb = xlb_binary();
    let config = lab.workdir.join("xlb.conf");
    let text = lab.virtual_server(80, "delay_loop 1", &[(0, 1), (1, 1), (2, 2)], |_| {
        http_get_check()
    });
    fs::write(&config, text).unwrap();
    let (bpffs, pidfile) = (lab.bpffs(), lab.pidfile());
    let index = lab
        .start_director_args(
            &xlb,
            &config,
            &bpffs,
            Some(&pidfile),
            &["--metrics-address", METRICS],
        )
        .unwrap();
    wait_for(LIMIT, || {
        let s = status_json(&lab);
        s.services.len() == 1
            && s.services[0].real_servers.iter().all(|rs| {
                rs.state == "up" && rs.last_check.as_ref().is_some_and(|c| c.failure.is_none())
            })
    })
    .unwrap_or_else(|_| panic!("the real servers never came up: {:#?}", status_json(&lab)));

    const N: usize = 60;
    let answers = lab.get_many(N, Duration::from_secs(5)).unwrap();
    assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");

    // ipvsadm -Ln's layout.
    let vip = format!("{}:80", lab.vip);
    let table = lab.xlb(&xlb, &["status"]).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("IP Virtual Server version xlb"),
        "{table}"
    );
    assert_eq!(
        lines[1], "Prot LocalAddress:Port Scheduler Flags",
        "{table}"
    );
    assert_eq!(
        lines[2], "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        "{table}"
    );
    assert_eq!(lines[3], format!("TCP  {vip} mh"), "{table}");
    let mut active = 0;
    for (i, weight) in [1, 1, 2].into_iter().enumerate() {
        let line = lines[4 + i];
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words[..4],
            [
                "->",
                &format!("{}:80", lab.backend_ips[i]),
                "Route",
                &weight.to_string()
            ],
            "{table}"
        );
        active += words[4].parse::<usize>().unwrap();
        assert_eq!(words[5], "0", "nothing idle yet: {table}");
    }
    assert!(
        (N * 9 / 10..=N).contains(&active),
        "{active} active connections after {N} GETs: {table}"
    );

    // --stats: InPkts is the 4th column of the service line, as ipvsadm has it.
    let stats = lab.xlb(&xlb, &["status", "--stats"]).unwrap();
    let line = stats
        .lines()
        .find(|l| l.starts_with("TCP"))
        .unwrap_or_else(|| panic!("{stats}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| words[i].parse::<u64>().unwrap();
    assert!(number(2) >= N as u64, "Conns: {stats}");
    assert!(number(3) >= 4 * N as u64, "InPkts: {stats}");
    assert_eq!(number(4), 0, "OutPkts of a DR director: {stats}");
    assert!(number(5) > number(3) * 40, "InBytes: {stats}");
    let rate = lab.xlb(&xlb, &["status", "--rate"]).unwrap();
    assert!(
        rate.contains("CPS    InPPS   OutPPS    InBPS   OutBPS"),
        "{rate}"
    );
    assert_eq!(
        rate.lines().filter(|l| l.starts_with("  -> ")).count(),
        4,
        "{rate}"
    );

    // --json: the whole model.
    let status = status_json(&lab);
    let svc = &status.services[0];
    assert_eq!(svc.forward, "Route");
    assert!(svc.active && svc.quorum_up && !svc.sorry_active, "{svc:#?}");
    assert!(svc.table_checksum.is_some(), "{svc:#?}");
    assert_eq!(status.dataplane.flow_table_size, 1 << 21);
    assert!(status.dataplane.flow_table_entries >= active as u64);

    // /metrics, through the reference parser.
    let samples = metrics(&lab.director);
    let local = [
        ("local_address", lab.vip.to_string()),
        ("local_port", "80".to_string()),
        ("proto", "TCP".to_string()),
    ];
    let labels = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        local.iter().cloned().chain(extra.iter().cloned()).collect()
    };
    let get = |name: &str, labels: &[(&'static str, String)]| -> f64 {
        let want: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sample(&samples, name, &want)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {samples:#?}"))
            .value
    };
    let mut backend_packets = 0.0;
    for ip in &lab.backend_ips {
        let rs = labels(&[
            ("remote_address", ip.to_string()),
            ("remote_port", "80".to_string()),
        ]);
        backend_packets += get("xlb_backend_incoming_packets_total", &rs);
        assert_eq!(get("xlb_backend_up", &rs), 1.0);
    }
    assert!(backend_packets >= 4.0 * N as f64, "{backend_packets}");
    assert!(get("xlb_service_incoming_packets_total", &labels(&[])) >= backend_packets);
    assert!(get("xlb_packets_total", &[("outcome", "tx".to_string())]) >= backend_packets);
    assert_eq!(get("xlb_flow_table_size", &[]), f64::from(1u32 << 21));
    assert!(get("xlb_maglev_table_checksum", &labels(&[])) > 0.0);
    assert_eq!(http_get(&lab.director, METRICS, "/other").0, 404);

    // A real server that fails its check is listed with the reason, and weighs 0.
    lab.stop_http(2).unwrap();
    wait_for(LIMIT, || {
        status_json(&lab).services[0].real_servers[2].state == "down"
    })
    .unwrap();
    let table = lab.xlb(&xlb, &["status"]).unwrap();
    let b3 = format!("{}:80", lab.backend_ips[2]);
    let not_up = table
        .split("Real servers not up\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        not_up.contains(&format!("{b3} of TCP {vip}: down since"))
            && not_up.contains("HTTP_CHECK Error connecting"),
        "{table}"
    );
    assert!(
        lab.log().contains(&format!(
            "data plane updated: weight of {b3} in TCP {vip} 2 -> 0"
        )),
        "{}",
        lab.log()
    );
    let samples = metrics(&lab.director);
    let b3_ip = lab.backend_ips[2].to_string();
    let b3_labels = [("remote_address", b3_ip.as_str()), ("proto", "TCP")];
    assert_eq!(
        sample(&samples, "xlb_backend_up", &b3_labels)
            .unwrap()
            .value,
        0.0
    );
    assert_eq!(
        sample(&samples, "xlb_backend_weight", &b3_labels)
            .unwrap()
            .value,
        0.0
    );

    // A real server removed from the config drains: listed, weight 0, its connections kept.
    let without_b2 =
        lab.virtual_server(80, "delay_loop 1", &[(0, 1), (2, 2)], |_| http_get_check());
    lab.reload_with(&xlb, &config, &without_b2).unwrap();
    let status = status_json(&lab);
    let b2 = status.services[0]
        .real_servers
        .iter()
        .find(|rs| rs.address == std::net::IpAddr::V4(lab.backend_ips[1]))
        .unwrap_or_else(|| panic!("{status:#?}"));
    assert_eq!((b2.state.as_str(), b2.effective_weight), ("draining", 0));
    assert!(b2.active_conns > 0, "{b2:#?}");

    // keepalived's signals: USR1 dumps the status, USR2 the counters, to the log; a stray
    // signal is logged and changes nothing.
    let pid = lab.process(index).pid();
    for (signal, needle) in [
        (libc::SIGUSR1, "IP Virtual Server version xlb"),
        (libc::SIGUSR2, "outcome counters:"),
        (libc::SIGALRM, "SIGALRM received and ignored"),
    ] {
        let before = lab.log_count(needle);
        // SAFETY: signalling the lab's own child, still running (not reaped).
        unsafe { libc::kill(pid, signal) };
        lab.wait_for_log(needle, before, LIMIT).unwrap();
    }
    assert!(lab.process(index).child.try_wait().unwrap().is_none());
    assert_eq!(status_json(&lab).services.len(), 1);

    // xlb stop: VRRP handed over (none here), XDP detached, pins and pidfile removed.
    let out = lab.xlb(&xlb, &["stop"]).unwrap();
    assert!(out.contains("stopped"), "{out}");
    let exit = lab.process(index).child.wait().unwrap();
    assert!(exit.success(), "{exit:?}\n{}", lab.log());
    assert!(!lab.pin_dir().exists(), "{}", lab.pin_dir().display());
    assert!(!pidfile.exists());
    let err = lab.xlb(&xlb, &["status"]).unwrap_err().to_string();
    assert!(err.contains("no xlb is running here"), "{err}");
}

#[test]
fn cleanup_after_kill9() {
    let mut lab = DrLab::new("cleanup", 1).expect("building the lab");
    let xlb = xlb_binary();
    let config = lab.write_config("xlb.conf", &[1]).unwrap();
    let index = lab.start_director(&xlb, &config).unwrap();
    assert!(lab.get(Duration::from_secs(5)).is_ok());
    // Our own child, not yet reaped: its pid is still its own.
    lab.process(index).child.kill().unwrap();
    lab.process(index).child.wait().unwrap();

    let err = lab.xlb(&xlb, &["status"]).unwrap_err().to_string();
    assert!(err.contains("no xlb is running here"), "{err}");
    let err = lab.xlb(&xlb, &["stats"]).unwrap_err().to_string();
    assert!(err.contains("no xlb is running here"), "{err}");
    let link = lab.director.run(&["ip", "link", "show", "eth0"]).unwrap();
    assert!(
        link.contains("xdp"),
        "the pinned link keeps XDP attached: {link}"
    );

    let out = lab.xlb(&xlb, &["cleanup"]).unwrap();
    assert!(out.contains("removed the pins"), "{out}");
    let link = lab.director.run(&["ip", "link", "show", "eth0"]).unwrap();
    assert!(!link.contains("xdp"), "{link}");
    assert!(!lab.pin_dir().exists());
    assert!(!lab.pidfile().exists());
    assert!(!lab.pidfile().with_extension("sock").exists());

    // And a new xlb starts as on a fresh machine.
    lab.start_director(&xlb, &config).unwrap();
    assert!(lab.get(Duration::from_secs(5)).is_ok());
    // Cleanup is refused while one runs.
    let err = lab.xlb(&xlb, &["cleanup"]).unwrap_err().to_string();
    assert!(err.contains("is running on eth0: use `xlb stop"), "{err}");
    assert!(lab.get(Duration::from_secs(5)).is_ok());
}

/// Native XDP on a veth whose peer runs no XDP program: every XDP_TX frame is dropped by the
/// driver, invisibly to XDP. xlb reads the driver's counters and says what is wrong and how to
/// fix it.
#[test]
fn lost_xdp_tx_frames_are_reported_with_the_fix() {
    let mut lab = DrLab::new("txerr", 1).expect("building the lab");
    let xlb = xlb_binary();
    let config = lab.write_config("xlb.conf", &[1]).unwrap();
    lab.start_director(&xlb, &config).unwrap();
    assert!(lab.get(Duration::from_secs(5)).is_ok());
    lab.remove_peer_xdp().unwrap();
    let before = lab.log_count("xdp_tx_errors");
    // Keep sending: connections now fail (their SYNs go nowhere).
    for _ in 0..3 {
        assert!(
            lab.get(Duration::from_millis(500)).is_err(),
            "forwarded anyway?"
        );
    }
    lab.wait_for_log("xdp_tx_errors", before, LIMIT)
        .unwrap_or_else(|e| panic!("{e}: {}", lab.log()));
    let log = lab.log();
    assert!(
        log.contains("the peer interface has an XDP program too")
            && log.contains("--xdp-mode generic"),
        "{log}"
    );
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    let lab = DrLab::new("badargs", 1).expect("building the lab");
    let xlb = xlb_binary();
    let config = lab.write_config("xlb.conf", &[1]).unwrap();
    let run_xlb = |config: &Path, extra: &[&str]| {
        let mut c = lab.director.command(xlb.to_str().unwrap());
        c.args(["run", "-f"])
            .arg(config)
            .args(["-i", "eth0", "--bpffs"])
            .arg(lab.bpffs())
            .arg("--pidfile")
            .arg(lab.pidfile())
            .args(extra);
        let out = output_within(&mut c, LIMIT).unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // A metrics address in use.
    let mut holder = lab
        .director
        .command("/usr/bin/python3")
        .args([
            "-c",
            "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', 9651))\n\
             s.listen()\nprint('bound', flush=True)\ntime.sleep(60)",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The whole line: python writes its newline apart, and a closed pipe would end it.
    let mut bound = [0u8; 6];
    holder
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut bound)
        .unwrap();
    let err = run_xlb(&config, &["--metrics-address", "127.0.0.1:9651"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        err.contains("--metrics-address 127.0.0.1:9651: cannot listen there"),
        "{err}"
    );
    assert!(!lab.pin_dir().exists(), "nothing was loaded");

    // A VRRP instance on another interface than -i.
    let other = lab.workdir.join("other.conf");
    fs::write(
        &other,
        format!(
            "{}\nvrrp_instance VI_9 {{\n    interface eth7\n    virtual_router_id 9\n    \
             priority 100\n    virtual_ipaddress {{\n        {}/32\n    }}\n}}\n",
            fs::read_to_string(&config).unwrap(),
            lab.vip
        ),
    )
    .unwrap();
    let err = run_xlb(&other, &[]);
    assert!(
        err.contains("other.conf:") && err.contains("error: vrrp_instance VI_9 runs on eth7"),
        "{err}"
    );
    assert!(!lab.pin_dir().exists(), "nothing was loaded");

    // A metrics address that is not one.
    let mut c = lab.director.command(xlb.to_str().unwrap());
    c.args(["run", "-f"])
        .arg(&config)
        .args(["-i", "eth0", "--metrics-address", "localhost"]);
    let out = output_within(&mut c, LIMIT).unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid value 'localhost'"),
        "{out:?}"
    );
}

/// A real server with no neighbour entry is reported when first seen, then every 5 minutes:
/// it used to log every second, forever.
#[test]
fn an_unresolvable_real_server_is_reported_once() {
    let mut lab = DrLab::new("unres", 1).expect("building the lab");
    let xlb = xlb_binary();
    let config = lab.write_config("xlb.conf", &[1]).unwrap();
    lab.start_director(&xlb, &config).unwrap();
    let ghost = "10.99.0.77";
    let text = format!(
        "{}    real_server {ghost} 80 {{\n        weight 1\n    }}\n}}\n",
        fs::read_to_string(&config)
            .unwrap()
            .trim_end()
            .trim_end_matches('}')
    );
    lab.reload_with(&xlb, &config, &text).unwrap();
    thread::sleep(Duration::from_secs(4));
    let needle = format!("backend {ghost}: no neighbour entry yet");
    assert_eq!(lab.log_count(&needle), 1, "{}", lab.log());
    let status = status_json(&lab);
    let states: Vec<&str> = status.services[0]
        .real_servers
        .iter()
        .map(|rs| rs.state.as_str())
        .collect();
    assert_eq!(states, ["up", "unresolved"], "{status:#?}");
    assert!(lab.get(Duration::from_secs(5)).is_ok());
}

/// A real server whose route leaves by an interface this xlb does not serve could only have
/// its frames dropped at the redirect: it is reported, with what to do, and gets no traffic.
#[test]
fn a_real_server_behind_an_unserved_interface_is_reported_with_the_fix() {
    let mut lab = DrLab::new("unserved", 1).expect("building the lab");
    let xlb = xlb_binary();
    let config = lab.write_config("xlb.conf", &[1]).unwrap();
    let elsewhere = "10.98.0.9";
    for argv in [
        // No dummy devices here (no modules): a veth pair inside the namespace.
        vec![
            "ip", "link", "add", "side0", "type", "veth", "peer", "name", "side1",
        ],
        vec!["ip", "addr", "add", "10.98.0.1/24", "dev", "side0"],
        vec!["ip", "link", "set", "side0", "up"],
        vec!["ip", "link", "set", "side1", "up"],
        vec![
            "ip",
            "neigh",
            "replace",
            elsewhere,
            "lladdr",
            "02:98:00:00:00:09",
            "dev",
            "side0",
            "nud",
            "permanent",
        ],
    ] {
        lab.director.run(&argv).unwrap();
    }
    lab.start_director(&xlb, &config).unwrap();
    let text = format!(
        "{}    real_server {elsewhere} 80 {{\n        weight 1\n    }}\n}}\n",
        fs::read_to_string(&config)
            .unwrap()
            .trim_end()
            .trim_end_matches('}')
    );
    lab.reload_with(&xlb, &config, &text).unwrap();
    lab.wait_for_log("which this xlb does not serve", 0, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}: {}", lab.log()));
    let log = lab.log();
    assert!(
        log.contains(&format!(
            "backend {elsewhere} is unreachable: its route leaves by side0"
        )) && log.contains("--also-interface side0"),
        "{log}"
    );
    let status = status_json(&lab);
    let states: Vec<&str> = status.services[0]
        .real_servers
        .iter()
        .map(|rs| rs.state.as_str())
        .collect();
    assert_eq!(states, ["up", "unresolved"], "{status:#?}");
    let answers = lab.get_many(20, Duration::from_secs(3)).unwrap();
    assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");
}

#[test]
fn control_socket_clients_cannot_disturb_the_daemon() {
    let mut lab = DrLab::new("clients", 1).expect("building the lab");
    let xlb = xlb_binary();
    let config = lab.write_config("xlb.conf", &[1]).unwrap();
    lab.start_director(&xlb, &config).unwrap();
    let socket = lab.pidfile().with_extension("sock");

    // Not root: refused by the socket's mode, before the daemon sees anything.
    let mut c = lab.director.command("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&xlb)
        .args(["status", "-i", "eth0", "--pidfile"])
        .arg(lab.pidfile());
    let out = output_within(&mut c, LIMIT).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied (run as root)"), "{err}");

    // A socket that is not root's is not talked to.
    let dir = lab.workdir.join("foreign");
    fs::create_dir_all(&dir).unwrap();
    let foreign = std::os::unix::net::UnixListener::bind(dir.join("xlb.sock")).unwrap();
    std::os::unix::fs::chown(dir.join("xlb.sock"), Some(65534), Some(65534)).unwrap();
    let mut c = lab.director.command(xlb.to_str().unwrap());
    c.args(["status", "-i", "eth0", "--pidfile"])
        .arg(dir.join("xlb.pid"));
    let out = output_within(&mut c, LIMIT).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("belongs to uid 65534, not to root: refusing to talk to it"),
        "{err}"
    );
    drop(foreign);

    // Garbage, an endless line, and clients that say nothing: each answered or dropped.
    let ask = |bytes: &[u8]| -> String {
        let mut s = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let _ = s.write_all(bytes);
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    };
    let answer = ask(b"{\"command\":\"format_disk\"}\n");
    assert!(answer.contains("not a request"), "{answer}");
    let answer = ask(&vec![b'x'; 100 * 1024]);
    assert!(answer.contains("longer than"), "{answer}");
    let idle: Vec<_> = (0..20)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    let status = lab.xlb(&xlb, &["status"]).unwrap();
    assert!(status.contains("TCP  "), "{status}");
    drop(idle);
    assert!(lab.get(Duration::from_secs(5)).is_ok());
}

const HIGH: u8 = 150;
const LOW: u8 = 100;

/// Two xlb directors, d1 MASTER and d2 BACKUP, each serving /metrics.
fn ha_pair(tag: &str, spec: &VrrpSpec, notify: Option<&Path>) -> HaLab {
    let mut lab = HaLab::new(tag, 2, 1, &xlb_binary()).expect("building the lab");
    lab.xlb_args = vec!["--metrics-address".into(), METRICS.into()];
    for (d, priority) in [(0, HIGH), (1, LOW)] {
        let spec = VrrpSpec {
            extra: notify
                .map(|n| format!("notify {}", n.display()))
                .unwrap_or_default(),
            ..spec.clone()
        };
        let config = lab.xlb_config(d, &spec, priority);
        lab.start_xlb(d, &config).unwrap();
    }
    lab.wait_master(0, Duration::from_secs(10)).unwrap();
    lab.wait_state(1, "BACKUP", Duration::from_secs(2)).unwrap();
    lab
}

fn vrrp_labels(vip: &str) -> [(&str, &str); 4] {
    [
        ("iname", "VI_1"),
        ("intf", "eth0"),
        ("vrid", "51"),
        ("ip_address", vip),
    ]
}

#[test]
fn vrrp_in_status_and_metrics_and_cleanup_after_kill9() {
    let spec = VrrpSpec::v3("0.1");
    let mut lab = ha_pair("opsha", &spec, None);
    let vip = lab.vip.to_string();

    let table = lab.xlb_command(0, &["status"]).unwrap();
    let vrrp = table
        .split("\nVRRP\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        vrrp.contains("VI_1 MASTER on eth0 vrid 51: priority 150/150, master since")
            && vrrp.contains(&format!("{vip}/32")),
        "{table}"
    );
    let master = metrics(&lab.directors[0]);
    let backup = metrics(&lab.directors[1]);
    let state = |samples: &[Sample]| {
        sample(samples, "keepalived_vrrp_state", &vrrp_labels(&vip))
            .unwrap_or_else(|| panic!("no keepalived_vrrp_state in {samples:#?}"))
            .value
    };
    assert_eq!(state(&master), 2.0);
    assert_eq!(state(&backup), 1.0);
    let counter = |samples: &[Sample], name: &str, state: &str| {
        sample(
            samples,
            name,
            &[("iname", "VI_1"), ("vrid", "51"), ("state", state)],
        )
        .unwrap_or_else(|| panic!("no {name} in {samples:#?}"))
        .value
    };
    assert!(counter(&master, "keepalived_advertisements_sent_total", "MASTER") > 0.0);
    assert!(
        counter(
            &backup,
            "keepalived_advertisements_received_total",
            "BACKUP"
        ) > 0.0
    );
    assert_eq!(
        counter(&master, "keepalived_become_master_total", "MASTER"),
        1.0
    );
    assert_eq!(
        counter(&master, "keepalived_authentication_failure_total", "MASTER"),
        0.0
    );
    let lease = sample(&master, "xlb_claim_lease_seconds", &[("instance", "VI_1")])
        .unwrap_or_else(|| panic!("{master:#?}"))
        .value;
    assert!(lease > 0.0 && lease < 1.0, "{lease}");
    assert_eq!(sample(&master, "keepalived_up", &[]).unwrap().value, 1.0);

    // kill -9 of the master: the survivor says MASTER in its status and its metrics.
    lab.kill9(0).unwrap();
    lab.wait_state(1, "MASTER", Duration::from_secs(5)).unwrap();
    let survivor = metrics(&lab.directors[1]);
    assert_eq!(state(&survivor), 2.0);
    assert_eq!(
        counter(&survivor, "keepalived_become_master_total", "MASTER"),
        1.0
    );
    assert_eq!(lab.status_state(1).as_deref(), Some("MASTER"));
    let err = lab.xlb_command(0, &["status"]).unwrap_err().to_string();
    assert!(err.contains("no xlb is running here"), "{err}");

    // The dead director's kernel still has the VIP; cleanup removes it with the pins.
    assert_eq!(lab.holders().unwrap(), vec![0, 1]);
    let out = lab.xlb_command(0, &["cleanup"]).unwrap();
    assert!(
        out.contains("removed the pins") && out.contains(&format!("removed VRRP address {vip}/32")),
        "{out}"
    );
    assert_eq!(lab.holders().unwrap(), vec![1]);
    assert!(!lab.pin_dir(0).exists());
}

/// keepalived runs notify scripts on transitions only: a reload that changes the priority of a
/// MASTER that stays MASTER runs none (it used to run `notify MASTER` again, paging whoever
/// alerts on it at every reload).
#[test]
fn notify_runs_on_transitions_only_across_reloads() {
    use std::os::unix::fs::PermissionsExt as _;
    let spec = VrrpSpec::v3("0.1");
    let dir = std::env::temp_dir().join(format!("xlb-notify-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let notified = dir.join("notified");
    let script = dir.join("notify.sh");
    fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", notified.display()),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let lab = ha_pair("notify", &spec, Some(&script));
    let lines = || {
        fs::read_to_string(&notified)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // Both directors write to the file: d1 MASTER, d2 BACKUP.
    wait_for(LIMIT, || lines().len() >= 2).unwrap();
    let before = lines();
    assert!(
        before.contains(&"INSTANCE VI_1 MASTER 150".to_string()),
        "{before:?}"
    );

    let with_priority = |priority: u8| {
        let spec = VrrpSpec {
            extra: format!("notify {}", script.display()),
            ..spec.clone()
        };
        lab.xlb_config(0, &spec, priority)
    };
    let answer = lab.reload_xlb(0, &with_priority(160)).unwrap();
    assert!(answer.contains("reloaded"), "{answer}");
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        lines(),
        before,
        "a reload that keeps MASTER runs no notify script"
    );
    assert_eq!(lab.status_state(0).as_deref(), Some("MASTER"));
    let status = lab.xlb_status(0).unwrap();
    assert_eq!(status.vrrp[0].priority, 160);

    // Below the backup's priority: a real transition, and its script runs.
    lab.reload_xlb(0, &with_priority(50)).unwrap();
    wait_for(LIMIT, || {
        lines().iter().any(|l| l == "INSTANCE VI_1 BACKUP 50")
    })
    .unwrap_or_else(|_| panic!("{:?}\n{}", lines(), lab.logs()));
    let _ = fs::remove_dir_all(&dir);
}

/// Nothing on the VRRP thread waits for its log: with stderr a full pipe nobody reads, the
/// MASTER keeps advertising (its backup never takes over) while its VRRP thread logs, and what
/// it logged comes out once stderr moves again.
#[test]
fn vrrp_adverts_keep_their_interval_while_stderr_is_blocked() {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let spec = VrrpSpec::v3("0.1");
    let mut lab = HaLab::new("stderr", 2, 1, &xlb_binary()).expect("building the lab");
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors are ours and open.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The smallest pipe (a page): a few dozen lines fill it.
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    let config = lab.xlb_config(0, &spec, HIGH);
    lab.start_xlb_logging(0, &config, Some(write)).unwrap();
    lab.start(1, Daemon::Xlb, &spec, LOW).unwrap();
    wait_for(LIMIT, || lab.status_state(0).as_deref() == Some("MASTER")).unwrap();
    lab.wait_state(1, "BACKUP", Duration::from_secs(2)).unwrap();

    // Fill the pipe: SIGUSR1 dumps the status to the log.
    let pid = lab.pid(0).unwrap();
    let queued = || {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD into an int, on our own descriptor.
        unsafe { libc::ioctl(read.as_raw_fd(), libc::FIONREAD, &mut n) };
        n
    };
    // Full: another dump adds nothing (a line longer than the room left waits whole).
    let mut full = false;
    for _ in 0..50 {
        let before = queued();
        // SAFETY: the lab's own child, running.
        unsafe { libc::kill(pid, libc::SIGUSR1) };
        thread::sleep(Duration::from_millis(100));
        if before > 3000 && queued() == before {
            full = true;
            break;
        }
    }
    assert!(full, "the pipe did not fill: {} bytes", queued());

    // Make the master's VRRP thread log: junk for its VRID, each dropped for a reason of its own.
    let me = lab.client_ip;
    let junk: Vec<Vec<u8>> = (0u8..40)
        .map(|i| {
            ipv4_packet(
                me,
                VRRP_GROUP,
                255,
                &[0x31, 51, i, 1, 0, 1, 0, 0, 10, 99, 0, i],
            )
        })
        .collect();
    lab.send_from_client(&junk).unwrap();
    let ttl64 = ipv4_packet(
        me,
        VRRP_GROUP,
        64,
        &[0x31, 51, 200, 1, 0, 1, 0, 0, 10, 99, 0, 1],
    );
    lab.send_from_client(&[ttl64]).unwrap();
    // Three seconds: thirty advert intervals, ten Master_Down_Intervals of the backup.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        lab.entered(1, "MASTER"),
        0,
        "the backup took over: the master stopped advertising\n{}",
        lab.logs()
    );
    assert_eq!(lab.status_state(0).as_deref(), Some("MASTER"));
    let dropped: u64 = lab.drop_counters(0).values().sum();
    assert!(dropped >= 40, "the junk reached the VRRP thread: {dropped}");

    // stderr moves again: the lines the VRRP thread logged meanwhile come out (queued, not
    // lost: the queue holds thousands).
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut file = std::fs::File::from(read);
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = std::time::Instant::now() + LIMIT;
    while !String::from_utf8_lossy(&seen).contains("VRRP packet dropped from")
        && std::time::Instant::now() < deadline
    {
        match file.read(&mut chunk) {
            Ok(n) if n > 0 => seen.extend_from_slice(&chunk[..n]),
            _ => thread::sleep(Duration::from_millis(20)),
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("VRRP packet dropped from"), "{text}");
}
