//! keepalived.conf for xlb: lexer, parser, typed model, validation and printer.
//!
//! xlb replaces keepalived + LVS and reads the configuration users already
//! have. [`load`] reads a file (following `include`s), [`parse_str`] reads text;
//! both return the typed [`Config`] with keepalived's defaults filled in and the
//! warnings, or every error found in the run ([`Errors`]), each as
//! `file:line:col: error: found X, expected Y`. `Config` prints back as the
//! effective keepalived.conf (`Display`, [`Config::to_keepalived_string`]) and
//! serializes with serde for `--json`.
//!
//! ```
//! let text = "
//! vrrp_instance VI_1 {
//!     interface eth0
//!     virtual_router_id 51
//!     virtual_ipaddress {
//!         192.168.163.100/24 dev eth0 label eth0:3
//!     }
//! }
//! virtual_server 192.168.163.100 80 {
//!     lb_algo mh
//!     lb_kind DR
//!     real_server 192.168.163.112 80 {
//!         TCP_CHECK {
//!             connect_timeout 3
//!         }
//!     }
//! }
//! ";
//! let loaded = lb_config::parse_str(text, "keepalived.conf").expect("valid");
//! let vi = &loaded.config.vrrp_instances[0];
//! assert_eq!((vi.priority, vi.advert_int_centis), (100, 100)); // keepalived's defaults
//! assert!(loaded.warnings.is_empty());
//!
//! let errors = lb_config::parse_str("vrrp_instance VI_1 {\n    priority 300\n}\n", "k.conf")
//!     .unwrap_err();
//! let messages: Vec<String> = errors.errors().map(|d| d.to_string()).collect();
//! assert_eq!(messages, [
//!     "k.conf:1:1: error: found no `virtual_router_id` in `vrrp_instance VI_1`, expected one (an integer 1..255)",
//!     "k.conf:2:14: error: found `300` after `priority`, expected an integer 1..255",
//! ]);
//! ```
//!
//! Supported:
//! - syntax: `!`/`#` comments anywhere outside quotes (`\#` keeps the
//!   character), quoted strings, `{` on the keyword line or the next, `}}`
//!   and `} keyword ...` on one line, `include` (and its checking variants
//!   `includea`, `includer`, ...) with `*`, `?`, `[...]` and `{a,b}` globs
//!   relative to the including file, read where it is written (a pattern that
//!   matches nothing is skipped with a warning, as keepalived does; cycles
//!   are errors);
//! - keepalived's language above keywords: conditional lines `@ID ...` and
//!   `@^ID ...` for [`LoadOptions::config_id`], parameters `$NAME=VALUE`
//!   (multi-line with `\`), `$NAME`, `${NAME}`, `${_PWD}`, `${_INSTANCE}`,
//!   `${_HASH}`, `${_BANG}`; a diagnostic about substituted text points into
//!   the value and names where it was used;
//! - `global_defs`: router_id, vrrp_version, script_user,
//!   enable_script_security, default_interface, vrrp_strict,
//!   vrrp_skip_check_adv_addr, vrrp_garp/gna_interval, vrrp_garp_master_*;
//!   mail/SNMP notification settings are accepted and ignored with a warning;
//! - `vrrp_script`, `vrrp_sync_group`, `vrrp_instance` (state, interface,
//!   virtual_router_id, priority, advert_int incl. VRRPv3 fractions, version,
//!   nopreempt, preempt_delay, authentication, virtual_ipaddress[_excluded]
//!   with dev/brd/scope/label/no_track, unicast_src_ip, unicast_peer,
//!   mcast_src_ip, track_script, track_interface, garp_master_*, notify_*);
//! - `track_file` (and `vrrp_track_file`), `vrrp_track_process`, and an instance's
//!   `track_file`/`track_process` blocks;
//! - `virtual_server_group` (`IP PORT`, `IP-LAST PORT`, `IP/LEN PORT`) and
//!   `virtual_server group NAME`, expanded into one [`VirtualServer`] per address and port
//!   ([`VirtualServer::group`] names the group; [`Config::virtual_server_groups`] keeps it as
//!   written);
//! - `static_ipaddress`, `static_routes`, `static_rules`, and an instance's `virtual_routes`
//!   and `virtual_rules` ([`Route`], [`Rule`]): `ip route` with dest, via/gw, dev/oif, src,
//!   metric, table, scope, onlink, no_track and blackhole/unreachable/prohibit/throw; `ip rule`
//!   with from, to, fwmark, iif/dev, oif, priority and table or blackhole/unreachable/prohibit
//!   (a rule without priority gets keepalived's, 16384 down, with a warning);
//! - `virtual_server IP PORT` with real_server, TCP_CHECK, HTTP_GET, SSL_GET,
//!   MISC_CHECK, PING_CHECK, UDP_CHECK, DNS_CHECK, SMTP_CHECK (with the deprecated
//!   `host` blocks, each one more checker) and FILE_CHECK; checker settings
//!   inherit from real and virtual server. Settings that can never pass (a
//!   reply shorter than it must be long, an empty DNS label, a quorum above
//!   quorum_max...) are errors.
//!
//! Forwarding: `lb_kind DR` and `NAT` (keepalived's default, with a warning
//! when it is not written).
//!
//! Refused with an error: `lb_kind TUN`, `virtual_server fwmark` and `fwmark` in a
//! virtual_server_group (XDP runs before netfilter: no packet has a mark yet), the rest of the
//! `ip route`/`ip rule` syntax (nexthop, mtu, goto, not, ...: the error lists what is
//! supported), BFD, tracking on a sync group. Any
//! `lb_algo` but `mh` is accepted with a warning: xlb always uses weighted
//! consistent hashing (Maglev), on the client address only when
//! [`VirtualServer::hash_on_source_only`]. Unknown keywords inside a known
//! block are warnings, as in keepalived; unknown blocks are errors.
//!
//! Reading is bounded ([`limits`]): only regular files are read (never a FIFO,
//! a device or a file on procfs/sysfs), and the bytes and files of one load,
//! the matches of one glob, the length of a line and the number of diagnostics
//! kept all have a ceiling, so no input hangs `xlb check` or a reload.

mod diagnostic;
mod interpret;
pub mod limits;
pub mod model;
mod print;
mod syntax;
mod validate;

use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, Errors, Severity, Span};
pub use model::*;

use diagnostic::Diags;
use syntax::Statement;
use syntax::include::{Loader, Sources};

/// A configuration that has no errors, and what was said about it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
    /// Every file read, the main one first, then includes in reading order.
    pub files: Vec<PathBuf>,
}

/// How to read a configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// keepalived's config id (its `-i`/`--config-id`): a line `@ID rest` is
    /// read (as `rest`) only when ID is this one, `@^ID rest` only when it is
    /// not. None reads no `@ID` line and every `@^ID` line, as keepalived
    /// without an id would; keepalived's own default is the node name, see
    /// [`node_config_id`].
    pub config_id: Option<String>,
    /// Refuses what keepalived only tolerates (`xlb check --strict`): each
    /// problem keepalived reads past, which is otherwise a warning saying
    /// what keepalived and xlb do instead, is an error.
    pub strict: bool,
}

/// keepalived's default config id: the node name (uname(2)) up to its first dot.
pub fn node_config_id() -> Option<String> {
    // SAFETY: uname only writes into the zeroed struct we own.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut name) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = name
        .nodename
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    let node = String::from_utf8_lossy(&bytes);
    let id = node.split('.').next().unwrap_or_default();
    (!id.is_empty()).then(|| id.to_string())
}

/// Reads the configuration at `path` and every file it includes, with the
/// default [`LoadOptions`] (no config id, keepalived's leniency).
pub fn load(path: &Path) -> Result<Loaded, Errors> {
    load_with(path, &LoadOptions::default())
}

/// Reads the configuration at `path` and every file it includes.
pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Loaded, Errors> {
    let sources = Sources::new();
    let mut diags = diags_for(options);
    let mut loader = Loader::new(&sources, &mut diags, options.config_id.clone());
    let stmts = loader.load_file(path);
    let files = loader.files;
    finish(&stmts, files, diags)
}

/// Reads configuration text, with the default [`LoadOptions`]; `name` is
/// used in diagnostics, and `include`s are taken relative to its directory.
pub fn parse_str(text: &str, name: &str) -> Result<Loaded, Errors> {
    parse_str_with(text, name, &LoadOptions::default())
}

/// Reads configuration text; `name` is used in diagnostics, and `include`s are
/// taken relative to its directory.
pub fn parse_str_with(text: &str, name: &str, options: &LoadOptions) -> Result<Loaded, Errors> {
    let sources = Sources::new();
    let mut diags = diags_for(options);
    let mut loader = Loader::new(&sources, &mut diags, options.config_id.clone());
    let stmts = loader.load_text(text, name);
    let files = loader.files;
    finish(&stmts, files, diags)
}

fn diags_for(options: &LoadOptions) -> Diags {
    if options.strict {
        Diags::strict()
    } else {
        Diags::default()
    }
}

fn finish(
    stmts: &[Statement<'_>],
    files: Vec<PathBuf>,
    mut diags: Diags,
) -> Result<Loaded, Errors> {
    let (config, declared) = interpret::interpret(stmts, &mut diags);
    validate::validate(&config, &declared, &mut diags);
    if diags.has_errors() {
        let errors_not_shown = diags.errors_not_shown();
        Err(Errors {
            diagnostics: diags.into_sorted(),
            errors_not_shown,
        })
    } else {
        Ok(Loaded {
            config,
            warnings: diags.into_sorted(),
            files,
        })
    }
}
