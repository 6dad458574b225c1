//! The data plane's limits are checked before anything runs: `xlb check` and `xlb run` refuse a
//! config over one with the `file:line:col` of the first `virtual_server` or `real_server` over
//! it, a reload over one leaves the running config forwarding, and two xlbs in two network
//! namespaces, each on its own eth0, both run.

use std::{fs, path::Path, process::Command, time::Duration};

use xlb_tests::lab::{DrLab, Netns, output_within, unique_name, xlb_binary};

const LIMIT: Duration = Duration::from_secs(60);

fn text(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `n` services of `reals` real servers each; a service takes `3 + 2 * reals` lines.
fn services(n: usize, reals: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        text += &format!(
            "virtual_server 10.{}.{}.{} 80 {{\n lb_kind DR\n",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        );
        for r in 0..reals {
            text += &format!(" real_server 192.168.{}.{} 80 {{\n }}\n", r >> 8, r & 255);
        }
        text += "}\n";
    }
    text
}

fn vrrp_instances(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "vrrp_instance VI_{i} {{\n interface eth{}\n virtual_router_id {}\n \
                 virtual_ipaddress {{\n  10.250.{}.{}\n }}\n}}\n",
                i / 200,
                i % 200 + 1,
                i >> 8,
                i & 255
            )
        })
        .collect()
}

/// Each limit: a config one over it, and where the error must point.
fn over_limit_cases() -> Vec<(&'static str, String, String)> {
    vec![
        (
            "4,097 virtual services",
            services(4097, 1),
            format!(
                "{}:1: error: found virtual service number 4097",
                4096 * 5 + 1
            ),
        ),
        (
            "65,537 real-server entries",
            services(17, 4096),
            format!(
                "{}:2: error: found real-server entry number 65537",
                16 * (3 + 2 * 4096) + 3
            ),
        ),
        (
            "4,097 real servers in one service",
            services(1, 4097),
            format!(
                "{}:2: error: found real server number 4097 of one virtual service",
                2 * 4096 + 3
            ),
        ),
        (
            "a table size that is not offered",
            format!(
                "global_defs {{\n xlb_maglev_table_size 1000\n}}\n{}",
                services(1, 1)
            ),
            "2:24: error: found `1000` after `xlb_maglev_table_size`, expected a Maglev table size"
                .to_string(),
        ),
        (
            "288 services with tables of 131071",
            format!(
                "global_defs {{\n xlb_maglev_table_size 131071\n}}\n{}",
                services(288, 1)
            ),
            format!(
                "{}:1: error: found virtual service number 288",
                3 + 287 * 5 + 1
            ),
        ),
        (
            "256 VRRP instances",
            vrrp_instances(256),
            format!("{}:1: error: found VRRP instance number 256", 255 * 7 + 1),
        ),
    ]
}

#[test]
fn configs_over_a_limit_are_refused_by_check_and_run_before_anything_runs() {
    let ns = Netns::new(unique_name("limits")).unwrap();
    let dir = std::env::temp_dir().join(&ns.name);
    fs::create_dir_all(&dir).unwrap();
    let bpffs = Path::new("/sys/fs/bpf").join(&ns.name);
    for (what, config, at) in over_limit_cases() {
        let path = dir.join("over.conf");
        fs::write(&path, config).unwrap();
        let want = format!("{}:{at}", path.display());
        let out = output_within(
            Command::new(xlb_binary()).args(["check", "-f"]).arg(&path),
            LIMIT,
        )
        .unwrap();
        let log = text(&out);
        assert!(!out.status.success(), "{what}: {log}");
        assert!(
            log.contains(&want),
            "{what}: xlb check says {want:?}: {log}"
        );

        let mut run = ns.command(xlb_binary().to_str().unwrap());
        run.args(["run", "-f"])
            .arg(&path)
            .args(["-i", "lo", "--bpffs"])
            .arg(&bpffs)
            .arg("--pidfile")
            .arg(dir.join("xlb.pid"));
        let out = output_within(&mut run, LIMIT).unwrap();
        let log = text(&out);
        assert!(!out.status.success(), "{what}: {log}");
        assert!(log.contains(&want), "{what}: xlb run says {want:?}: {log}");
        assert!(!bpffs.exists(), "{what}: xlb run touched nothing: {log}");
        assert!(!dir.join("xlb.pid").exists(), "{what}: no pidfile: {log}");
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_reload_over_a_limit_leaves_the_running_config_forwarding() {
    let mut lab = DrLab::new("limreload", 2).expect("building the lab");
    let config = lab.write_config("xlb.conf", &[1, 1]).unwrap();
    lab.start_director(&xlb_binary(), &config).unwrap();
    let good = fs::read_to_string(&config).unwrap();
    // The running service, then 4,096 more.
    fs::write(&config, format!("{good}{}", services(4096, 1))).unwrap();
    let mut reload = Command::new(xlb_binary());
    reload
        .args(["reload", "-i", "eth0", "--pidfile"])
        .arg(lab.pidfile());
    let out = output_within(&mut reload, LIMIT).unwrap();
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    let first_over = good.lines().count() + 4095 * 5 + 1;
    assert!(
        log.contains(&format!(
            "xlb.conf:{first_over}:1: error: found virtual service number 4097"
        )),
        "{log}"
    );
    let answers = lab.get_many(20, Duration::from_secs(3)).unwrap();
    assert!(
        answers.iter().all(|a| a.is_ok()),
        "{answers:?}\n{}",
        lab.log()
    );
}

/// Two xlbs in two network namespaces on one host, each on its own eth0, with the same
/// BPF filesystem and their default pidfiles: each gets pins and a pidfile of its own.
#[test]
fn two_xlbs_in_two_namespaces_each_on_eth0_both_run() {
    let mut labs: Vec<DrLab> = (0..2)
        .map(|i| DrLab::new(&format!("twons{i}"), 2).expect("building a lab"))
        .collect();
    let shared = Path::new("/sys/fs/bpf").join(unique_name("shared"));
    let mut pins = Vec::new();
    for lab in &mut labs {
        let config = lab.write_config("xlb.conf", &[1, 1]).unwrap();
        lab.start_director_with(&xlb_binary(), &config, &shared, None)
            .unwrap();
        pins.push(lab.director.pin_dir(&shared, "eth0").unwrap());
    }
    assert_ne!(pins[0], pins[1]);
    for (lab, pin) in labs.iter().zip(&pins) {
        assert!(pin.join("link").exists(), "{}", pin.display());
        let answers = lab.get_many(20, Duration::from_secs(3)).unwrap();
        assert!(
            answers.iter().all(|a| a.is_ok()),
            "{answers:?}\n{}",
            lab.log()
        );
    }
    drop(labs);
    for pin in &pins {
        assert!(!pin.exists(), "a clean stop removes {}", pin.display());
    }
    let _ = fs::remove_dir_all(&shared);
}
