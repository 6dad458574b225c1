//! `xlb man DIR`: man pages made from the clap definitions, `xlb.8` and one page per subcommand
//! (`xlb-run.8`, ...), with the sections clap knows nothing of: FILES, SIGNALS, ENVIRONMENT and
//! SEE ALSO.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use clap_mangen::{
    Man,
    roff::{Roff, bold, roman},
};

/// The manual section: xlb is a system administration command.
pub const SECTION: &str = "8";

const FILES: &[(&str, &str)] = &[
    (
        "/etc/keepalived/keepalived.conf",
        "The configuration (keepalived.conf syntax), given with -f; the systemd unit \
         xlb@.service serves this file. Stop keepalived before starting xlb on the same \
         interface: both would speak VRRP for the same virtual routers.",
    ),
    (
        "/run/xlb/IFACE.pid",
        "The pidfile of the xlb serving IFACE (/run/xlb/netns-N/IFACE.pid outside the host's \
         network namespace; --pidfile moves it and the files beside it).",
    ),
    (
        "/run/xlb/IFACE.sock",
        "The control socket beside the pidfile (mode 0600, root only): xlb reload, status, \
         stats and stop ask the daemon over it and wait for its answer. With no daemon \
         listening they say so and fail.",
    ),
    (
        "/sys/fs/bpf/xlb/IFACE",
        "The pinned XDP program, link and maps (BPFFS/xlb/[netns-N/]IFACE with --bpffs). The \
         running xlb holds a lock on this directory; a restarted xlb takes the pins over \
         without a gap, a clean stop removes them.",
    ),
    (
        "/run/bird/bird.ctl",
        "BIRD's control socket (xlb_bird_socket in global_defs), asked show protocols for the \
         BGP sessions xlb status shows beside the announced VIPs (xlb_announce). The VIP routes \
         BIRD announces are in table 100 (xlb_announce_table), through the device xlbvip0, \
         which goes with xlb.",
    ),
    (
        "/lib/systemd/system/xlb@.service",
        "The systemd unit, one instance per interface: systemctl enable --now xlb@eth0.",
    ),
];

const SIGNALS: &[(&str, &str)] = &[
    (
        "SIGHUP",
        "Re-read the config and apply only what changed (as xlb reload, which also reports the \
         outcome). An invalid file is refused and the running config stays in force.",
    ),
    (
        "SIGTERM, SIGINT, SIGQUIT",
        "Stop (as xlb stop). VIPs announced through BIRD (xlb_announce) are withdrawn first, \
         and xlb keeps forwarding for xlb_announce_drain while the routers move their traffic. \
         VRRP instances in MASTER state hand over: they send priority 0 and keep forwarding \
         until the new MASTER is heard. Then the notify_down scripts of what was up run \
         (omega), the XDP program is detached and the pins are removed.",
    ),
    (
        "SIGUSR1",
        "Log the status, as xlb status prints it (keepalived's data dump).",
    ),
    (
        "SIGUSR2",
        "Log the counters, as xlb stats prints them (keepalived's stats dump).",
    ),
    (
        "SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGXCPU, SIGXFSZ",
        "Logged and ignored: a stray signal never stops xlb.",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "RUST_LOG",
        "The log filter (env_logger syntax); info by default.",
    ),
    (
        "NOTIFY_SOCKET",
        "Set by systemd for Type=notify: xlb reports READY=1 once the program is attached and \
         the config applied, RELOADING=1 and READY=1 around a reload, STOPPING=1 at SIGTERM.",
    ),
    (
        "JOURNAL_STREAM",
        "Set by systemd when stderr goes to the journal: log lines then carry a <N> syslog \
         priority and no timestamp.",
    ),
];

/// Writes `xlb.8` and a page per visible subcommand of `cmd` into `dir` (created if missing);
/// returns the paths written.
pub fn generate(cmd: clap::Command, dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let name = cmd.get_name().to_string();
    let subcommands: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut see_also: Vec<String> = subcommands
        .iter()
        .map(|s| format!("{name}-{}", s.get_name()))
        .collect();
    let mut written = vec![write_page(
        &cmd,
        dir,
        true,
        &[
            &see_also.iter().map(String::as_str).collect::<Vec<_>>()[..],
            REFERENCES,
        ]
        .concat(),
    )?];
    see_also.insert(0, name.clone());
    for sub in &subcommands {
        let own = format!("{name}-{}", sub.get_name());
        let others: Vec<&str> = see_also
            .iter()
            .filter(|p| **p != own)
            .map(String::as_str)
            .collect();
        // The daemon's page says where its files are and what its signals do, as the main one.
        let daemon = sub.get_name() == "run";
        written.push(write_page(
            sub,
            dir,
            daemon,
            &[&others[..], REFERENCES].concat(),
        )?);
    }
    Ok(written)
}

/// Pages of other packages worth reading beside these.
const REFERENCES: &[&str] = &[
    "keepalived.conf(5)",
    "keepalived(8)",
    "bird(8)",
    "systemctl(1)",
    "journalctl(1)",
];

fn write_page(cmd: &clap::Command, dir: &Path, daemon: bool, see_also: &[&str]) -> Result<PathBuf> {
    let man = Man::new(cmd.clone()).section(SECTION);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut page)?;
    }
    let mut extra = Roff::default();
    if daemon {
        definitions(&mut extra, "FILES", FILES);
        definitions(&mut extra, "SIGNALS", SIGNALS);
        definitions(&mut extra, "ENVIRONMENT", ENVIRONMENT);
    }
    extra.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    for (i, r) in see_also.iter().enumerate() {
        if i > 0 {
            refs.push(roman(", "));
        }
        match r.split_once('(') {
            Some((name, section)) => {
                refs.push(bold(name));
                refs.push(roman(format!("({section}")));
            }
            None => {
                refs.push(bold(*r));
                refs.push(roman(format!("({SECTION})")));
            }
        }
    }
    extra.text(refs);
    extra.to_writer(&mut page)?;
    let page = tidy(&String::from_utf8_lossy(&page), &title_line(cmd));
    let path = dir.join(man.get_filename());
    fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `.TH NAME 8 DATE SOURCE MANUAL`, the date left empty (the same source, the same page).
/// clap_mangen's own drops an empty argument, which shifts the source into the date's place.
fn title_line(cmd: &clap::Command) -> String {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    let version = cmd.get_version().unwrap_or(env!("CARGO_PKG_VERSION"));
    format!(".TH {name} {SECTION} \"\" \"xlb {version}\" \"System Administration\"")
}

/// The page with `title` as its `.TH` line, and the string definitions that each rendered part
/// starts with kept once, at the top.
fn tidy(page: &str, title: &str) -> String {
    const PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];
    let mut out = format!("{}\n{}\n", PREAMBLE[0], PREAMBLE[1]);
    for line in page.lines() {
        if PREAMBLE.contains(&line) {
            continue;
        }
        if line.starts_with(".TH ") {
            out.push_str(title);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// A section of terms, each with its paragraph.
fn definitions(roff: &mut Roff, heading: &str, items: &[(&str, &str)]) {
    roff.control("SH", [heading]);
    for (term, text) in items {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*text)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_those_the_daemon_uses() {
        let paths = crate::instance::InstancePaths::new(
            Path::new("/sys/fs/bpf"),
            &"eth0".parse().unwrap(),
            None,
        )
        .unwrap();
        // Outside the host's namespace the paths gain a netns-N level; the page says so.
        if crate::instance::netns_tag().unwrap().is_none() {
            for p in [&paths.pidfile, &paths.socket, &paths.pin_dir] {
                let shown = p.to_string_lossy().replace("eth0", "IFACE");
                assert!(
                    FILES.iter().any(|(f, _)| *f == shown),
                    "{shown} is not in FILES"
                );
            }
        }
    }
}
