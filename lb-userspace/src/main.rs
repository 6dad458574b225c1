//! `xlb`: a load balancer for highly available virtual IPs.

use std::{path::PathBuf, process::ExitCode};

use aya::programs::XdpMode;
use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};
use lb_userspace::{
    cli,
    instance::{InstancePaths, InterfaceName},
    logging,
};

#[derive(Parser)]
#[command(
    name = "xlb",
    version,
    about = "XDP load balancer for highly available virtual IPs",
    long_about = "XDP load balancer for highly available virtual IPs.\n\n\
        xlb reads keepalived.conf (virtual_server, real_server, the health checkers and \
        vrrp_instance) and forwards the traffic of the virtual services in XDP, by Direct \
        Routing, with weighted Maglev consistent hashing; it speaks VRRP as keepalived does. \
        One xlb serves one interface: `xlb run -f FILE -i IFACE`, or under systemd \
        `systemctl enable --now xlb@IFACE`."
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
        /// keepalived's config id: lines `@ID ...` are read only when ID is this, `@^ID ...`
        /// only when it is not [default: the node name up to its first dot, as keepalived].
        /// Reloads keep it.
        #[arg(long, value_name = "ID")]
        config_id: Option<String>,
        #[command(flatten)]
        instance: InstanceArgs,
        /// Another interface to serve besides -i (repeatable): a NAT director's server side,
        /// where the real servers' replies arrive. Commands find this xlb by its -i.
        #[arg(long = "also-interface", value_name = "IFACE")]
        also_interface: Vec<InterfaceName>,
        #[arg(long, value_enum, default_value_t = Mode::Native)]
        xdp_mode: Mode,
        /// Flow-hash seed; every director sharing the VIPs must use the same one.
        #[arg(long, default_value_t = cli::run::DEFAULT_HASH_SEED)]
        hash_seed: u32,
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
        /// Serve Prometheus metrics at http://ADDR:PORT/metrics (keepalived exporter and
        /// node_exporter IPVS names). Off unless given: the usual choice is 127.0.0.1:9650 or
        /// a management address, never an address clients reach.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics_address: Option<std::net::SocketAddr>,
    },
    /// Make the running xlb re-read its config; prints what changed, or the errors and exits
    /// non-zero when the file is refused (the running config stays).
    Reload {
        #[command(flatten)]
        instance: InstanceArgs,
    },
    /// Validate a config and print it with every default filled in.
    Check {
        #[arg(short = 'f', long = "config")]
        config: PathBuf,
        /// keepalived's config id, as for `xlb run` [default: the node name up to its first dot].
        #[arg(long, value_name = "ID")]
        config_id: Option<String>,
        /// Refuse what keepalived only tolerates (unknown keywords, extra words, a missing
        /// `{`, ...): each such warning is an error, and the exit status non-zero.
        #[arg(long)]
        strict: bool,
        /// Print JSON instead of keepalived syntax.
        #[arg(long)]
        json: bool,
    },
    /// What the running xlb serves, in `ipvsadm -Ln`'s layout: virtual services and their
    /// real servers, then VRRP instances and the real servers that are not up.
    #[command(after_help = lb_userspace::status::CONNECTION_COLUMNS)]
    Status {
        #[command(flatten)]
        instance: InstanceArgs,
        /// Counters: Conns InPkts OutPkts InBytes OutBytes (as `ipvsadm -Ln --stats`).
        #[arg(long, conflicts_with_all = ["rate", "json"])]
        stats: bool,
        /// Rates over the last 2 s: CPS InPPS OutPPS InBPS OutBPS (as `ipvsadm -Ln --rate`).
        #[arg(long, conflicts_with = "json")]
        rate: bool,
        /// The whole model as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The data plane's counters: packets by outcome, flow-table events, per service and real
    /// server.
    Stats {
        #[command(flatten)]
        instance: InstanceArgs,
    },
    /// Stop the running xlb as SIGTERM does (VRRP handed over, XDP detached, pins removed) and
    /// wait until it has.
    Stop {
        #[command(flatten)]
        instance: InstanceArgs,
    },
    /// Remove what an xlb killed with SIGKILL left: the pinned XDP link and maps, the pidfile
    /// and socket, and the VRRP addresses it had added. Refused while an xlb runs there.
    Cleanup {
        #[command(flatten)]
        instance: InstanceArgs,
    },
    /// Write the man pages (xlb.8 and one per subcommand) into DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// Which xlb: the one serving an interface in this network namespace.
#[derive(Args)]
struct InstanceArgs {
    /// The interface VIP traffic arrives on.
    #[arg(short = 'i', long = "interface")]
    interface: InterfaceName,
    /// Where the BPF filesystem is (xlb mounts one there if it is missing or an empty
    /// directory); pins go under BPFFS/xlb/.
    #[arg(long, default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
    /// The pidfile; the control socket is beside it (FILE.sock)
    /// [default: /run/xlb/IFACE.pid, /run/xlb/netns-N/IFACE.pid outside the host's namespace].
    #[arg(long)]
    pidfile: Option<PathBuf>,
}

impl InstanceArgs {
    fn paths(&self) -> anyhow::Result<InstancePaths> {
        InstancePaths::new(&self.bpffs, &self.interface, self.pidfile.as_deref())
    }
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
    logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            config_id,
            instance,
            also_interface,
            xdp_mode,
            hash_seed,
            flow_table_size,
            tcp_idle_timeout,
            udp_idle_timeout,
            metrics_address,
        } => instance.paths().and_then(|paths| {
            cli::run::run(cli::run::DaemonOptions {
                flow_table_size,
                tcp_idle: std::time::Duration::from_secs(tcp_idle_timeout.into()),
                udp_idle: std::time::Duration::from_secs(udp_idle_timeout.into()),
                config: cli::ConfigFile::new(config, config_id, false),
                paths,
                mode: match xdp_mode {
                    Mode::Native => XdpMode::Driver,
                    Mode::Generic => XdpMode::Skb,
                    Mode::Auto => XdpMode::Default,
                },
                hash_seed,
                metrics_address,
                also: also_interface,
            })
        }),
        Command::Check {
            config,
            config_id,
            strict,
            json,
        } => cli::check::check(&cli::ConfigFile::new(config, config_id, strict), json),
        Command::Reload { instance } => instance.paths().and_then(|p| cli::reload::reload(&p)),
        Command::Status {
            instance,
            stats,
            rate,
            json,
        } => {
            use cli::status::Format;
            use lb_userspace::status::Columns;
            let format = match (stats, rate, json) {
                (_, _, true) => Format::Json,
                (true, _, _) => Format::Table(Columns::Stats),
                (_, true, _) => Format::Table(Columns::Rate),
                _ => Format::Table(Columns::Connections),
            };
            instance
                .paths()
                .and_then(|p| cli::status::status(&p, format))
        }
        Command::Stats { instance } => instance.paths().and_then(|p| cli::status::stats(&p)),
        Command::Stop { instance } => instance.paths().and_then(|p| cli::stop::stop(&p)),
        Command::Cleanup { instance } => instance.paths().and_then(|p| cli::cleanup::cleanup(&p)),
        Command::Man { dir } => cli::man::generate(Cli::command(), &dir).map(|pages| {
            for page in pages {
                println!("{}", page.display());
            }
        }),
    };
    // What was logged goes out before the last word.
    logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}xlb: {e:#}", logging::stderr_prefix(log::Level::Error));
            ExitCode::FAILURE
        }
    }
}
