//! End to end over veth in network namespaces: a client, a director running `xlb run` with
//! native XDP, and three DR backends on one bridge.

use std::{collections::BTreeMap, time::Duration};

use xlb_tests::lab::{DrLab, parse_mac, wait_for, xlb_binary};

#[test]
fn three_hundred_connections_through_the_vip() {
    let mut lab = DrLab::new("dr", 3).expect("building the lab");
    let config = lab.write_config("xlb.conf", &[1, 1, 1]).unwrap();
    let xlb = lab.start_director(&xlb_binary(), &config).unwrap();
    let pins = lab.pin_dir();
    for pin in [
        "prog",
        "link",
        "XLB_VIPS",
        "XLB_RINGS",
        "XLB_MEMBERS",
        "XLB_OUTCOMES",
    ] {
        assert!(
            pins.join(pin).exists(),
            "{pin} is not pinned under {}",
            pins.display()
        );
    }
    let dump = lab.capture_on_backend(0, 3).unwrap();

    let answers = lab.get_many(300, Duration::from_secs(3)).unwrap();
    let mut per_backend: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (i, a) in answers.into_iter().enumerate() {
        match a {
            Ok(id) => *per_backend.entry(id).or_default() += 1,
            Err(e) => failures.push(format!("#{i}: {e:#}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 300 failed: {:?}\nxlb log:\n{}",
        failures.len(),
        failures,
        lab.log()
    );
    assert_eq!(
        per_backend.len(),
        3,
        "every backend answers some: {per_backend:?}"
    );
    eprintln!("answers per backend: {per_backend:?}");

    // On the wire at backend 1: frames to the VIP, from the director's MAC.
    lab.process(dump).stop(Duration::from_secs(5));
    let director_mac = lab.director_mac().unwrap();
    let captured = lab.capture_text(0);
    let frames: Vec<&str> = captured
        .lines()
        .filter(|l| l.contains(&format!("> {}.80", lab.vip)))
        .collect();
    assert!(
        !frames.is_empty(),
        "tcpdump on b1 saw no frame to the VIP:\n{captured}"
    );
    for line in frames {
        let src = line.split_whitespace().nth(1).unwrap();
        assert_eq!(parse_mac(src).unwrap(), director_mac, "{line}");
    }

    // Reload: drain b1; then an invalid file, which leaves the drained config in force.
    // `xlb reload` answers with what changed, or with the errors and a failure exit.
    let reload = |lab: &DrLab| {
        let out = std::process::Command::new(xlb_binary())
            .args(["reload", "-i", "eth0", "--pidfile"])
            .arg(lab.pidfile())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    std::fs::write(
        &config,
        std::fs::read_to_string(lab.write_config("drained.conf", &[0, 1, 1]).unwrap()).unwrap(),
    )
    .unwrap();
    let updates = lab.log().matches("data plane updated").count();
    let (ok, stdout, stderr) = reload(&lab);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("weight of 10.99.0.11:80 in TCP 10.99.0.100:80 1 -> 0"),
        "{stdout}"
    );
    wait_for(Duration::from_secs(10), || {
        lab.log().matches("data plane updated").count() > updates
    })
    .unwrap();
    assert!(lab.log().contains("reloaded"), "{}", lab.log());
    let drained = lab.get_many(60, Duration::from_secs(3)).unwrap();
    assert!(
        drained
            .iter()
            .all(|a| a.as_ref().is_ok_and(|id| id != "b1")),
        "{drained:?}"
    );
    std::fs::write(
        &config,
        "virtual_server 10.99.0.100 80 {\n    delay_loop x\n    weight x\n",
    )
    .unwrap();
    let (ok, _, stderr) = reload(&lab);
    assert!(!ok, "an invalid file is refused with a failure exit");
    assert!(
        stderr.contains("xlb.conf:2:") && stderr.contains("reload refused"),
        "the errors are located: {stderr}"
    );
    assert!(lab.log().contains("reload refused"), "{}", lab.log());
    let kept = lab.get_many(60, Duration::from_secs(3)).unwrap();
    assert!(
        kept.iter().all(|a| a.as_ref().is_ok_and(|id| id != "b1")),
        "{kept:?}"
    );
    std::fs::write(
        &config,
        std::fs::read_to_string(lab.write_config("again.conf", &[1, 1, 1]).unwrap()).unwrap(),
    )
    .unwrap();

    // kill -9: the pinned link keeps the program attached and forwarding; a restarted xlb
    // takes over the link and the maps (tables rewritten into idle halves, then flipped).
    let pid = lab.process(xlb).pid();
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = lab.process(xlb).child.wait();
    assert!(
        pins.join("link").exists(),
        "the pinned link outlives a crash"
    );
    let during = lab.get_many(20, Duration::from_secs(3)).unwrap();
    assert!(
        during.iter().all(|a| a.is_ok()),
        "forwarding stopped with the control plane: {during:?}"
    );
    let xlb = lab.start_director(&xlb_binary(), &config).unwrap();
    let log = lab.log();
    assert!(log.contains("took over the pinned XDP link"), "{log}");
    assert!(log.contains("adopting 1 VIP(s)"), "{log}");
    let after = lab.get_many(50, Duration::from_secs(3)).unwrap();
    assert!(
        after.iter().all(|a| a.is_ok()),
        "after the restart: {after:?}\n{}",
        lab.log()
    );

    // A clean stop detaches the program and removes every pin.
    let status = lab
        .process(xlb)
        .stop(Duration::from_secs(5))
        .expect("xlb exit status");
    assert!(
        status.success(),
        "xlb exited with {status}; log:\n{}",
        lab.log()
    );
    assert!(!pins.exists(), "pins left behind in {}", pins.display());
    let link = lab
        .director
        .run(&["ip", "link", "show", "dev", "eth0"])
        .unwrap();
    assert!(!link.contains("xdp"), "XDP still attached: {link}");
}

/// A backend whose MAC changes (a NIC swapped, a VM moved) announces it with a gratuitous ARP
/// (arp_notify); xlb follows the kernel's neighbour table without a restart.
#[test]
fn a_backend_whose_mac_changes_is_followed() {
    let mut lab = DrLab::new("mac", 2).expect("building the lab");
    let config = lab.write_config("xlb.conf", &[1, 1]).unwrap();
    lab.start_director(&xlb_binary(), &config).unwrap();
    let before = lab.get_many(40, Duration::from_secs(3)).unwrap();
    assert!(before.iter().all(|a| a.is_ok()), "{before:?}");

    let b1 = &lab.backends[0];
    b1.run(&["sysctl", "-q", "-w", "net.ipv4.conf.eth0.arp_notify=1"])
        .unwrap();
    b1.run(&["ip", "link", "set", "eth0", "address", "02:99:00:00:aa:0b"])
        .unwrap();
    wait_for(Duration::from_secs(15), || {
        lab.log().contains("is at 02:99:00:00:aa:0b")
    })
    .unwrap_or_else(|e| panic!("{e}: xlb did not follow the new MAC\n{}", lab.log()));
    let after = lab.get_many(40, Duration::from_secs(3)).unwrap();
    assert!(
        after.iter().all(|a| a.is_ok()),
        "after the MAC change: {after:?}\n{}",
        lab.log()
    );
    assert!(
        after.iter().any(|a| a.as_ref().is_ok_and(|id| id == "b1")),
        "b1 answers at its new MAC: {after:?}"
    );
}

/// `virtual_server group`: a range of the group (the VIP and the next address) is two virtual
/// services, each forwarding by DR to the real servers of the one virtual_server block.
#[test]
fn each_address_of_a_virtual_server_group_range_forwards() {
    let mut lab = DrLab::new("vsg", 2).expect("building the lab");
    let second: std::net::Ipv4Addr = format!("{}.101", xlb_tests::lab::SUBNET).parse().unwrap();
    lab.director
        .run(&["ip", "addr", "add", &format!("{second}/32"), "dev", "eth0"])
        .unwrap();
    for b in &lab.backends {
        b.run(&["ip", "addr", "add", &format!("{second}/32"), "dev", "lo"])
            .unwrap();
    }
    let mut text = format!(
        "virtual_server_group web {{\n    {}-101 80\n}}\nvirtual_server group web {{\n    \
         lb_algo mh\n    lb_kind DR\n",
        lab.vip
    );
    for ip in &lab.backend_ips {
        text += &format!("    real_server {ip} {{\n        weight 1\n    }}\n");
    }
    text += "}\n";
    let config = lab.workdir.join("xlb.conf");
    std::fs::write(&config, &text).unwrap();
    let printed = xlb_tests::lab::run(
        std::process::Command::new(xlb_binary())
            .args(["check", "-f"])
            .arg(&config),
    )
    .unwrap_or_else(|e| panic!("xlb check: {e:#}"));
    assert!(
        printed.contains("virtual_server group web {"),
        "xlb check prints the group back:\n{printed}"
    );
    lab.start_director(&xlb_binary(), &config).unwrap();
    assert!(
        lab.log().contains("forwarding 2 virtual service(s)"),
        "{}",
        lab.log()
    );
    for vip in [lab.vip, second] {
        let answers = lab
            .client
            .enter(move || {
                (0..40)
                    .map(|_| {
                        xlb_tests::lab::http_get_id(
                            std::net::SocketAddr::from((vip, 80)),
                            Duration::from_secs(3),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap();
        let mut per_backend: BTreeMap<String, usize> = BTreeMap::new();
        for a in &answers {
            match a {
                Ok(id) => *per_backend.entry(id.clone()).or_default() += 1,
                Err(e) => panic!("{vip}:80: {e:#}\nlog:\n{}", lab.log()),
            }
        }
        eprintln!("{vip}:80 answers per backend: {per_backend:?}");
        assert_eq!(
            per_backend.len(),
            2,
            "{vip}: both backends answer: {per_backend:?}"
        );
    }
}
