//! `xlb`: a load balancer for highly available virtual IPs.

use std::{path::PathBuf, process::ExitCode};

use aya::programs::XdpMode;
use clap::{Parser, Subcommand, ValueEnum};
use lb_userspace::cli;

#[derive(Parser)]
#[command(
    name = "xlb",
    version,
    about = "XDP load balancer for highly available virtual IPs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the data plane on an interface and serve the virtual servers of a config.
    Run {
        /// keepalived.conf syntax.
        #[arg(short = 'f', long = "config")]
        config: PathBuf,
        /// The interface VIP traffic arrives on.
        #[arg(short = 'i', long = "interface")]
        interface: String,
        #[arg(long, value_enum, default_value_t = Mode::Native)]
        xdp_mode: Mode,
        /// Where the BPF filesystem is (mounted there when it is not).
        #[arg(long, default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
        /// Flow-hash seed; every director sharing the VIPs must use the same one.
        #[arg(long, default_value_t = cli::run::DEFAULT_HASH_SEED)]
        hash_seed: u32,
        /// Where to write the pid, for `xlb reload` [default: /run/xlb/IFACE.pid].
        #[arg(long)]
        pidfile: Option<PathBuf>,
        /// Connections the flow table remembers (about 90 bytes of kernel memory each).
        #[arg(long, default_value_t = lb_common::DEFAULT_FLOW_TABLE_SIZE,
              value_parser = clap::value_parser!(u32).range(1..))]
        flow_table_size: u32,
        /// Seconds an idle TCP connection keeps its backend (ipvsadm --set's tcp).
        #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u32).range(1..))]
        tcp_idle_timeout: u32,
        /// Seconds an idle UDP flow keeps its backend (ipvsadm --set's udp).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
        udp_idle_timeout: u32,
    },
    /// Make a running `xlb run` re-read its config (as SIGHUP does).
    Reload {
        #[arg(short = 'i', long = "interface")]
        interface: String,
        #[arg(long)]
        pidfile: Option<PathBuf>,
    },
    /// Validate a config and print it with every default filled in.
    Check {
        #[arg(short = 'f', long = "config")]
        config: PathBuf,
        /// Print JSON instead of keepalived syntax.
        #[arg(long)]
        json: bool,
    },
    /// Print the data plane's counters for an interface xlb runs on.
    Stats {
        #[arg(short = 'i', long = "interface")]
        interface: String,
        #[arg(long, default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
        /// The pidfile of the xlb to ask; VRRP states are beside it [default: /run/xlb/IFACE.pid].
        #[arg(long)]
        pidfile: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// In the driver (the fast path; veth supports it).
    Native,
    /// In the kernel stack, for drivers without XDP support.
    Generic,
    /// Whatever the kernel picks.
    Auto,
}

fn main() -> ExitCode {
    // netlink_proto warns whenever a reply arrives for a request that timed out (a neighbour
    // probe, say): noise, not news.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,netlink_proto=error"),
    )
    .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            interface,
            xdp_mode,
            bpffs,
            hash_seed,
            pidfile,
            flow_table_size,
            tcp_idle_timeout,
            udp_idle_timeout,
        } => {
            let opts = cli::run::RunOptions {
                flow_table_size,
                tcp_idle: std::time::Duration::from_secs(tcp_idle_timeout.into()),
                udp_idle: std::time::Duration::from_secs(udp_idle_timeout.into()),
                pidfile: pidfile.unwrap_or_else(|| cli::run::default_pidfile(&interface)),
                config,
                interface,
                mode: match xdp_mode {
                    Mode::Native => XdpMode::Driver,
                    Mode::Generic => XdpMode::Skb,
                    Mode::Auto => XdpMode::Default,
                },
                bpffs,
                hash_seed,
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(cli::run::run(opts)))
        }
        Command::Check { config, json } => cli::check::check(&config, json),
        Command::Reload { interface, pidfile } => cli::run::reload_running(
            &pidfile.unwrap_or_else(|| cli::run::default_pidfile(&interface)),
        ),
        Command::Stats {
            interface,
            bpffs,
            pidfile,
        } => cli::stats::print(
            &bpffs,
            &interface,
            &pidfile.unwrap_or_else(|| cli::run::default_pidfile(&interface)),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xlb: {e:#}");
            ExitCode::FAILURE
        }
    }
}
