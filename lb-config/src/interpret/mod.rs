//! Turns the statement tree into the typed model, block by block, checking
//! each value where it is written.
//!
//! Cross-references (names, duplicates) are left to `validate`, which sees the
//! whole configuration.

mod checkers;
mod global;
mod groups;
mod lvs;
mod routes;
mod track;
mod unknown;
mod values;
mod vrrp;

use std::collections::{HashMap, HashSet};

use crate::diagnostic::Diags;
use crate::model::{Config, VrrpScript};
use crate::syntax::Statement;

pub(crate) use values::Reader;

/// Top-level blocks keepalived knows and xlb does not run.
const UNSUPPORTED_BLOCKS: &[&str] = &["garp_group", "linkbeat_interfaces", "bfd_instance"];

const TOP_BLOCKS: &[&str] = &[
    "global_defs",
    "vrrp_script",
    "track_file",
    "vrrp_track_file",
    "vrrp_track_process",
    "vrrp_sync_group",
    "vrrp_instance",
    "virtual_server_group",
    "virtual_server",
    "static_ipaddress",
    "static_routes",
    "static_rules",
];

/// Names declared in the file, including those whose block had errors, so that
/// a reference to a broken instance is not reported a second time as unknown.
#[derive(Debug, Default)]
pub(crate) struct Declared {
    pub vrrp_scripts: HashSet<String>,
    pub vrrp_instances: HashSet<String>,
    pub track_files: HashSet<String>,
    pub vrrp_track_processes: HashSet<String>,
}

pub(crate) fn interpret(stmts: &[Statement], diags: &mut Diags) -> (Config, Declared) {
    let mut declared = Declared::default();
    let mut r = Reader {
        diags,
        next_rule_priority: [routes::FIRST_RULE_PRIORITY; 2],
    };
    let stmts = r.split_run_together(stmts, TOP_BLOCKS);
    let mut config = Config::default();
    // global_defs and vrrp_script first: instances take their defaults and
    // track_script weights from them wherever they are written.
    let mut services = 0;
    for st in &stmts {
        match st.keyword {
            "global_defs" => global::global_defs(&mut r, st, &mut config.global_defs),
            "virtual_server" => services += 1,
            _ => {}
        }
    }
    // Groups before virtual servers: keepalived looks a group up once everything is read.
    let mut group_names = Vec::new();
    for st in &stmts {
        if st.keyword == "virtual_server_group" {
            group_names.extend(st.args.first().map(|a| a.text.to_string()));
            if let Some(g) = groups::virtual_server_group(&mut r, st) {
                config.virtual_server_groups.push(g);
            }
        }
    }
    let mut group_expanded = 0;
    for st in &stmts {
        if st.keyword == "vrrp_script" {
            if let Some(name) = st.args.first() {
                declared.vrrp_scripts.insert(name.text.to_string());
            }
            if let Some(script) = vrrp::vrrp_script(&mut r, st) {
                config.vrrp_scripts.push(script);
            }
        }
    }
    // Tracked objects too: instances and FILE_CHECKs take their weights from them.
    for st in &stmts {
        let name = st.args.first().map(|a| a.text.to_string());
        match st.keyword {
            "track_file" | "vrrp_track_file" => {
                declared.track_files.extend(name);
                config.track_files.extend(track::track_file(&mut r, st));
            }
            "vrrp_track_process" => {
                declared.vrrp_track_processes.extend(name);
                config
                    .vrrp_track_processes
                    .extend(track::vrrp_track_process(&mut r, st));
            }
            _ => {}
        }
    }
    let mut scripts: HashMap<&str, &VrrpScript> = HashMap::new();
    for script in &config.vrrp_scripts {
        scripts.entry(script.name.as_str()).or_insert(script);
    }
    let files = track::Named::new(&config.track_files, &declared.track_files);
    let processes = track::Named::new(&config.vrrp_track_processes, &declared.vrrp_track_processes);
    let trackable = vrrp::Trackable {
        files: &files,
        processes: &processes,
    };
    let mut instances: Vec<crate::model::VrrpInstance> = Vec::new();
    // Sized once: a configuration may hold thousands of services, each a
    // large struct, which growing the Vec would copy again and again.
    let mut virtual_servers = Vec::with_capacity(services);
    for st in &stmts {
        match st.keyword {
            "global_defs"
            | "vrrp_script"
            | "track_file"
            | "vrrp_track_file"
            | "vrrp_track_process"
            | "virtual_server_group" => {}
            "static_ipaddress" => {
                r.extra_args(st, 0);
                for entry in r.block(st) {
                    config.static_ipaddress.extend(vrrp::static_address(
                        &mut r,
                        entry,
                        &config.global_defs.default_interface,
                    ));
                }
            }
            "static_routes" => {
                r.extra_args(st, 0);
                for entry in r.block(st) {
                    config
                        .static_routes
                        .extend(routes::route(&mut r, entry, "static_routes"));
                }
            }
            "static_rules" => {
                r.extra_args(st, 0);
                for entry in r.block(st) {
                    config
                        .static_rules
                        .extend(routes::rule(&mut r, entry, "static_rules"));
                }
            }
            "vrrp_sync_group" => {
                if let Some(g) = vrrp::vrrp_sync_group(&mut r, st) {
                    config.vrrp_sync_groups.push(g);
                }
            }
            "vrrp_instance" => {
                if let Some(name) = st.args.first() {
                    declared.vrrp_instances.insert(name.text.to_string());
                }
                if let Some(i) = vrrp::vrrp_instance(
                    &mut r,
                    st,
                    &config.global_defs,
                    &scripts,
                    &trackable,
                    &declared.vrrp_scripts,
                ) {
                    // keepalived: "vrrp instance X already defined", the block skipped.
                    match instances.iter().find(|f| f.name == i.name) {
                        Some(first) => r.diags.tolerate(
                            st.span,
                            format!(
                                "found a second `vrrp_instance {}`{}: keepalived skips it, and \
                                 so does xlb",
                                i.name,
                                first
                                    .origin
                                    .span()
                                    .map(|s| format!(" (first at {s})"))
                                    .unwrap_or_default()
                            ),
                        ),
                        None => instances.push(i),
                    }
                }
            }
            "virtual_server" if st.args.first().is_some_and(|a| a.text == "group") => {
                let expanded = groups::expand(
                    &mut r,
                    st,
                    &files,
                    &config.virtual_server_groups,
                    &group_names,
                    group_expanded,
                );
                group_expanded += expanded.len();
                virtual_servers.extend(expanded);
            }
            "virtual_server" => {
                if let Some(vs) = lvs::virtual_server(&mut r, st, &files, None) {
                    virtual_servers.push(vs);
                }
            }
            kw if UNSUPPORTED_BLOCKS.contains(&kw) => {
                r.diags.error(
                    st.span,
                    format!(
                        "found `{kw}`, expected global_defs, vrrp_script, track_file, \
                         vrrp_track_process, vrrp_sync_group, vrrp_instance, \
                         virtual_server_group, virtual_server, static_ipaddress, static_routes \
                         or static_rules: `{kw}` is not supported by xlb"
                    ),
                );
            }
            _ => unknown_at_top(&mut r, st),
        }
    }
    config.vrrp_instances = instances;
    config.virtual_servers = virtual_servers;
    (config, declared)
}

/// keepalived reads past an unknown keyword at the top level, and past each
/// line of an unknown block (none of which it knows there either): xlb
/// ignores the block whole, saying what was probably meant.
fn unknown_at_top(r: &mut Reader<'_>, st: &Statement) {
    let known: Vec<&str> = TOP_BLOCKS
        .iter()
        .chain(UNSUPPORTED_BLOCKS)
        .copied()
        .collect();
    if st.block.is_none() {
        r.unknown_among(st, "the top level", &known);
        return;
    }
    let found = match unknown::odd_blank(st.keyword) {
        Some(odd) => format!("found {odd} opening a block, expected spaces or tabs"),
        None => format!(
            "unknown block `{}` at the top level{}",
            st.keyword,
            unknown::did_you_mean(st.keyword, &known)
        ),
    };
    r.diags.tolerate(
        st.span,
        format!("{found}: keepalived ignores it and every line in it, and so does xlb"),
    );
}
