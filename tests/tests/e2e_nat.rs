//! Seed 003 end to end: keepalived's two-armed LVS-NAT director pair, with the seed's
//! keepalived.conf (its numbers filled in) run by xlb. The client network and the server
//! network are apart; the real servers' default route is the gateway address that a VRRP sync
//! group moves together with the client-side VIP. Every reply comes back through the master,
//! which puts the VIP back as its source.

use std::{
    thread,
    time::{Duration, Instant},
};

use xlb_tests::{
    ha_lab::HaLab,
    lab::{ECHO_PORT, EchoConn, wait_for, xlb_binary},
};

const HIGH: u8 = 150;
const LOW: u8 = 100;
const CONNECTIONS: usize = 50;

/// The seed's configuration for a director of `priority`, blanks filled: a sync group of the
/// client-side VIP and the real servers' gateway; NAT, persistence, TCP_CHECK.
fn seed_003(lab: &HaLab, priority: u8) -> String {
    let gateway = lab.server.as_ref().unwrap().gateway;
    let mut t = format!(
        "global_defs {{\n    router_id LB_{priority}\n}}\n\
         vrrp_sync_group VG1 {{\n    group {{\n        VI_To_client\n        VI_To_server\n    }}\n}}\n"
    );
    for (name, interface, vrid, address) in [
        ("VI_To_client", "eth0", 51, lab.vip),
        ("VI_To_server", "eth1", 52, gateway),
    ] {
        t += &format!(
            "vrrp_instance {name} {{\n    state BACKUP\n    interface {interface}\n    \
             virtual_router_id {vrid}\n    priority {priority}\n    nopreempt\n    \
             advert_int 1\n    authentication {{\n        auth_type PASS\n        \
             auth_pass seed003\n    }}\n    virtual_ipaddress {{\n        {address}\n    }}\n}}\n"
        );
    }
    for port in [80, ECHO_PORT] {
        t += &format!(
            "virtual_server {} {port} {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    \
             persistence_timeout 50\n    protocol TCP\n",
            lab.vip
        );
        for rs in &lab.backend_ips {
            t += &format!(
                "    real_server {rs} {port} {{\n        weight 1\n        TCP_CHECK {{\n            \
                 connect_timeout 1\n        }}\n    }}\n"
            );
        }
        t += "}\n";
    }
    t
}

fn masters(lab: &HaLab, d: usize) -> bool {
    ["VI_To_client", "VI_To_server"]
        .iter()
        .all(|name| lab.instance_state(d, name).as_deref() == Some("MASTER"))
}

/// Frames director `d`'s data plane sent on (forwarded requests and translated replies), from
/// its pins: they count on after a kill -9.
fn sent(lab: &HaLab, d: usize) -> u64 {
    lab.pinned_outcome(d, "tx").unwrap() + lab.pinned_outcome(d, "redirect").unwrap()
}

#[test]
fn seed_003_nat_director_pair() {
    let mut lab = HaLab::nat("seed003", 2, 2, &xlb_binary()).expect("building the lab");
    let gateway = lab.server.as_ref().unwrap().gateway;
    let first = seed_003(&lab, HIGH);
    lab.start_xlb(0, &first).unwrap();
    wait_for(Duration::from_secs(15), || masters(&lab, 0))
        .unwrap_or_else(|_| panic!("d1 never became MASTER:\n{}", lab.logs()));
    let second = seed_003(&lab, LOW);
    lab.start_xlb(1, &second).unwrap();
    assert_eq!(lab.holders_of(lab.vip).unwrap(), vec![0]);
    assert_eq!(lab.holders_of(gateway).unwrap(), vec![0]);

    // HTTP through the VIP, answered by a real server on the other network.
    let answer = lab
        .get_eventually(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}:\n{}", lab.logs()));
    assert!(answer.starts_with('b'), "answered by {answer}");

    // Long-lived connections; the real servers see the client's own address.
    let vip = std::net::SocketAddr::from((lab.vip, ECHO_PORT));
    let mut conns: Vec<EchoConn> = (0..CONNECTIONS)
        .map(|_| {
            lab.client
                .enter(|| EchoConn::connect(vip, Duration::from_secs(5)))
                .unwrap()
                .unwrap()
        })
        .collect();
    let names: Vec<String> = conns.iter_mut().map(|c| c.ask().unwrap()).collect();
    // persistence_timeout: every connection of this client goes to one real server.
    assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
    let serving = names[0].trim_start_matches('b').parse::<usize>().unwrap() - 1;
    let seen = lab.backends[serving]
        .run(&["ss", "-Htn", "state", "established", "( sport = :7 )"])
        .unwrap();
    assert!(
        seen.contains(&format!("{}:", lab.client_ip)),
        "the real server sees the client's address: {seen}"
    );

    // ipvsadm's view: Masq, persistent, the real server's replies counted out.
    let status = lab.xlb_status(0).unwrap();
    let echo = status
        .services
        .iter()
        .find(|s| s.port == ECHO_PORT)
        .expect("the echo service in xlb status");
    assert!(
        echo.flags.iter().any(|f| f.starts_with("persistent")),
        "{echo:?}"
    );
    let answering = echo
        .real_servers
        .iter()
        .find(|rs| rs.traffic.out_packets > 0)
        .unwrap_or_else(|| panic!("replies counted out on a real server: {echo:#?}"));
    assert_eq!(answering.forward, "Masq");
    assert!(
        answering.traffic.in_packets >= CONNECTIONS as u64,
        "{answering:?}"
    );

    // kill -9 of the master: the backup takes both addresses (sync group) and every
    // connection carries on, its replies translated by a director that never saw it.
    let before = [sent(&lab, 0), sent(&lab, 1)];
    let killed = lab.kill9(0).unwrap();
    wait_for(Duration::from_secs(15), || masters(&lab, 1))
        .unwrap_or_else(|_| panic!("d2 never became MASTER:\n{}", lab.logs()));
    eprintln!(
        "d2 MASTER of both instances {:?} after kill -9",
        killed.elapsed()
    );
    // The dead director's lease is over before the connections talk again.
    thread::sleep(Duration::from_secs(4).saturating_sub(killed.elapsed()));
    let lapsed = sent(&lab, 0);
    let mut broken = Vec::new();
    let slowest = conns
        .iter_mut()
        .enumerate()
        .map(|(i, c)| {
            let asked = Instant::now();
            match c.ask() {
                Ok(name) if name == names[i] => {}
                Ok(name) => broken.push(format!("{i}: moved from {} to {name}", names[i])),
                Err(e) => broken.push(format!("{i}: {e:#}")),
            }
            asked.elapsed()
        })
        .max()
        .unwrap();
    assert!(
        broken.is_empty(),
        "{} of {CONNECTIONS} connections broke: {broken:?}\n{}",
        broken.len(),
        lab.logs()
    );
    eprintln!("slowest first answer after the takeover: {slowest:?}");
    let after = [sent(&lab, 0), sent(&lab, 1)];
    eprintln!("frames sent on: d1 {before:?} -> {after:?}");
    assert_eq!(after[0], lapsed, "the dead director carried no traffic");
    assert!(
        after[1] >= before[1] + 2 * CONNECTIONS as u64,
        "the new master carried the requests and the replies: {before:?} -> {after:?}"
    );
    assert!(lab.holders_of(gateway).unwrap().contains(&1));

    // A real server that fails its TCP_CHECK is removed: new connections go to the other.
    let served = lab.get(Duration::from_secs(5)).unwrap();
    let index = served.trim_start_matches('b').parse::<usize>().unwrap() - 1;
    lab.stop_backend_http(index).unwrap();
    let stopped = Instant::now();
    wait_for(Duration::from_secs(10), || {
        lab.get(Duration::from_secs(1))
            .is_ok_and(|name| name != served)
    })
    .unwrap_or_else(|_| panic!("{served} was not removed:\n{}", lab.logs()));
    eprintln!(
        "{served} out of the table {:?} after it stopped",
        stopped.elapsed()
    );
}
