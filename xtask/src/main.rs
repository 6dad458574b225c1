//! Project tasks: `cargo xtask run | test | bench | package | setup`.
//!
//! Every task first makes sure the toolchain is there (see [`setup`]): the nightly's rust-src,
//! a bpf-linker built against the nightly's own LLVM, and the Debian packages the labs use.

mod package;
mod setup;

use std::process::Command;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and the tests need (idempotent).
    Setup,
    /// Build xlb and run it. Without arguments: a demo lab (client, director, three backends
    /// in network namespaces) with xlb forwarding for real. With arguments: `xlb ARGS`.
    Run {
        /// Keep the demo lab up this many seconds (0: until Ctrl-C).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
        /// Arguments for xlb, e.g. `run -f /etc/keepalived/keepalived.conf -i eth0`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Every test: unit, BPF_PROG_TEST_RUN packet tests, netns end to end.
    Test {
        /// Extra arguments for `cargo test`, e.g. a test name filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Benchmarks with side-by-side ratios: the XDP program per packet, the edge director at
    /// full size (xlb-bench), Maglev builds against the previous builder, then VRRP
    /// failover of xlb beside keepalived (xlb-failover-bench; run counts from
    /// XLB_FAILOVER_RUNS, XLB_SIGTERM_RUNS, XLB_FLAP_RUNS, XLB_FLAP_SECONDS).
    Bench,
    /// A Debian package of the release xlb, its systemd unit and man pages:
    /// target/package/xlb_VERSION_ARCH.deb (install it with `dpkg -i`).
    Package,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    setup::ensure()?;
    match cli.task {
        Task::Setup => Ok(()),
        Task::Run { seconds, args } => {
            if args.is_empty() {
                cargo(&["build", "-p", "lb-userspace", "--bins"])?;
                cargo(&[
                    "run",
                    "-p",
                    "xlb-tests",
                    "--bin",
                    "xlb-demo",
                    "--",
                    &seconds.to_string(),
                ])
            } else {
                let mut argv = vec!["run", "-p", "lb-userspace", "--bin", "xlb", "--"];
                argv.extend(args.iter().map(String::as_str));
                cargo(&argv)
            }
        }
        Task::Test { args } => {
            // The end-to-end tests start the real `xlb` binary.
            cargo(&["build", "-p", "lb-userspace", "--bins"])?;
            // Every test binary runs, so one failure does not hide the others.
            let mut argv = vec![
                "test",
                "--workspace",
                "--exclude",
                "lb-ebpf",
                "--no-fail-fast",
            ];
            if !args.is_empty() {
                argv.push("--");
                argv.extend(args.iter().map(String::as_str));
            }
            cargo(&argv)
        }
        Task::Package => {
            cargo(&["build", "--release", "-p", "lb-userspace", "--bin", "xlb"])?;
            let deb = package::build(&package::target_dir().join("release/xlb"))?;
            package::check(&deb)?;
            println!("{}", deb.display());
            Ok(())
        }
        Task::Bench => {
            // Both benches start the release `xlb` in network namespaces.
            cargo(&["build", "--release", "-p", "lb-userspace", "--bins"])?;
            cargo(&["run", "--release", "-p", "xlb-tests", "--bin", "xlb-bench"])?;
            // Maglev builds beside the builder before the occupancy bitmap, alternately.
            cargo(&[
                "run",
                "--release",
                "-p",
                "lb-common",
                "--example",
                "maglev_bench",
                "--",
                "101",
            ])?;
            // VRRP failover beside keepalived.
            cargo(&[
                "run",
                "--release",
                "-p",
                "xlb-tests",
                "--bin",
                "xlb-failover-bench",
            ])
        }
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
