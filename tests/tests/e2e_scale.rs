//! The edge director at full size with the real daemon: 4,096 virtual services on 64 real
//! servers start, every service forwards to its own real servers, and a reload (SIGHUP) that
//! removes one real server takes effect. Read off the pinned program with BPF_PROG_TEST_RUN.
//! (How fast is `cargo xtask bench`'s business, not a test's.)

use std::time::{Duration, Instant};

use xlb_tests::{
    edge::{self, EdgeLab, forwarded, mac_of_real, syn, syns_reaching},
    lab::xlb_binary,
};

#[test]
fn an_edge_director_of_4096_services_starts_and_reloads() {
    let mut lab = EdgeLab::new("scale").expect("building the lab");
    lab.start(&xlb_binary()).expect("starting xlb");
    let prog = lab
        .program(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.log()));

    // Every service forwards, each to one of its own real servers.
    let services = edge::services();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut waiting: Vec<usize> = (0..services.len()).collect();
    while !waiting.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} services not forwarded after 60 s\n{}",
            waiting.len(),
            lab.log()
        );
        waiting.retain(|&s| {
            let (i, port, proto) = services[s];
            match forwarded(&prog, &syn(i, port, proto, 40000)).unwrap() {
                None => true,
                Some(mac) => {
                    let own: Vec<[u8; 6]> =
                        edge::reals_of(i).iter().map(|r| mac_of_real(*r)).collect();
                    assert!(own.contains(&mac), "service {s} went to {mac:02x?}");
                    false
                }
            }
        });
    }

    // A reload that removes one real server from the 64 or so VIPs it serves.
    let removed = 5;
    let probes = syns_reaching(&prog, removed, 32).unwrap();
    assert!(
        probes.len() >= 16,
        "{} SYNs reach real server {removed}",
        probes.len()
    );
    lab.reload_without(&[removed]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reaching = probes
            .iter()
            .filter(|f| forwarded(&prog, f).unwrap() == Some(mac_of_real(removed)))
            .count();
        if reaching == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{reaching} SYNs still reach the removed real server after 30 s\n{}",
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for frame in &probes {
        assert!(
            forwarded(&prog, frame).unwrap().is_some(),
            "still forwarded, elsewhere"
        );
    }
}
