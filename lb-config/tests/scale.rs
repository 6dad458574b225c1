//! The edge director xlb is sized for (4,096 virtual services, about 1 MB of
//! keepalived.conf) loads whole and as written. How fast is for
//! `examples/load_bench.rs`; no timing is asserted here.

mod common;

use common::edge;
use lb_config::{LbAlgo, LbKind, Protocol};

#[test]
fn edge_config_loads_every_service_and_real_server() {
    let dir = std::env::temp_dir().join(format!("lb-config-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("keepalived.conf");
    std::fs::write(&path, edge::config()).expect("write config");
    let loaded = load_ok_cleanup(&path, &dir);

    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.files, std::slice::from_ref(&path));
    let services = &loaded.config.virtual_servers;
    assert_eq!(services.len(), edge::SERVICES);
    let reals: usize = services.iter().map(|vs| vs.real_servers.len()).sum();
    assert_eq!(reals, edge::SERVICES * edge::REALS_PER_SERVICE);
    assert_eq!(reals, 16_384);
    for (i, vs) in services.iter().enumerate() {
        let (port, proto) = edge::PORTS[i % edge::PORTS.len()];
        let vip = i / edge::PORTS.len();
        assert_eq!(
            vs.address.to_string(),
            format!("10.100.{}.{}", vip >> 8, vip & 0xff)
        );
        assert_eq!(vs.port, port);
        let protocol = if proto == "UDP" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        assert_eq!(vs.protocol, protocol);
        assert_eq!((vs.lb_algo, vs.lb_kind), (LbAlgo::Mh, LbKind::Dr));
        assert_eq!(vs.real_servers.len(), edge::REALS_PER_SERVICE);
        for rs in &vs.real_servers {
            assert_eq!(rs.port, port);
            assert!(rs.checkers.is_empty());
        }
    }
    // Each service's origin is its own `virtual_server` line.
    let origin = services[1].origin.span().expect("origin");
    assert_eq!((origin.line, origin.col), (17, 1));
}

/// Loads `path`, removing `dir` whatever the outcome.
fn load_ok_cleanup(path: &std::path::Path, dir: &std::path::Path) -> lb_config::Loaded {
    let result = lb_config::load(path);
    let _ = std::fs::remove_dir_all(dir);
    match result {
        Ok(loaded) => loaded,
        Err(e) => panic!("the edge config should load:\n{e}"),
    }
}
