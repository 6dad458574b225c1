//! `cargo xtask run` without a config: a demo lab on this machine. A client, a director running
//! `xlb run` with native XDP and three DR backends, each in its own network namespace on one
//! bridge; the client's requests to the VIP are spread over the backends by Maglev.
//! Everything is removed when the demo ends (Ctrl-C, or after the given seconds).

use std::{collections::BTreeMap, path::PathBuf, process::Command, thread, time::Duration};

use anyhow::{Context as _, Result};
use xlb_tests::lab::DrLab;

fn main() -> Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    let exe = std::env::current_exe()?;
    let xlb: PathBuf = exe.parent().context("no target dir")?.join("xlb");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let flag = stop.clone();
        // SAFETY: the handler only stores to an atomic.
        unsafe { signal_hook(sig, flag) };
    }

    println!("building the lab: client, director, three backends (network namespaces)");
    let mut lab = DrLab::new("demo", 3)?;
    let config = lab.write_config("demo.conf", &[1, 1, 2])?;
    println!(
        "config {}:\n{}",
        config.display(),
        std::fs::read_to_string(&config)?
    );
    lab.start_director(&xlb, &config)?;
    println!(
        "xlb runs in netns {} on eth0; VIP {}:80",
        lab.director.name, lab.vip
    );

    let mut round = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && (seconds == 0 || round < seconds) {
        let mut per_backend: BTreeMap<String, usize> = BTreeMap::new();
        for answer in lab.get_many(100, Duration::from_secs(2))? {
            let key = answer.unwrap_or_else(|e| format!("error: {e:#}"));
            *per_backend.entry(key).or_default() += 1;
        }
        println!(
            "100 GETs to {}:80 answered by {per_backend:?} (weights b1=1 b2=1 b3=2)",
            lab.vip
        );
        round += 1;
        thread::sleep(Duration::from_secs(1));
    }
    for columns in [None, Some("--stats")] {
        let status = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.director.name))
            .arg(&xlb)
            .args(["status", "-i", "eth0", "--bpffs"])
            .arg(lab.bpffs())
            .arg("--pidfile")
            .arg(lab.pidfile())
            .args(columns)
            .output()?;
        println!("{}", String::from_utf8_lossy(&status.stdout));
    }
    println!("tearing the lab down");
    Ok(())
}

static mut FLAG: Option<std::sync::Arc<std::sync::atomic::AtomicBool>> = None;

extern "C" fn on_signal(_: libc::c_int) {
    // SAFETY: FLAG is set once before the handler is installed and never changed after.
    if let Some(flag) = unsafe { (*std::ptr::addr_of!(FLAG)).as_ref() } {
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

unsafe fn signal_hook(sig: libc::c_int, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    unsafe {
        FLAG = Some(flag);
        libc::signal(sig, on_signal as *const () as libc::sighandler_t);
    }
}
