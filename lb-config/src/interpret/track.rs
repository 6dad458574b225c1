//! `track_file` (and its older name `vrrp_track_file`) and `vrrp_track_process`: objects
//! that vrrp_instances (and, for files, FILE_CHECKs) track by name.

use std::collections::{HashMap, HashSet};

use crate::diagnostic::Pos;
use crate::model::{ParamMatch, Timer, TrackFile, TrackFileInit, VrrpTrackProcess};
use crate::syntax::Statement;

use super::Reader;
use super::vrrp::weight_and_reverse;

/// Objects of one kind that other blocks name.
pub(crate) struct Named<'a, T> {
    /// Those read without error, by name (the first of a name).
    pub found: HashMap<&'a str, &'a T>,
    /// Every name declared, broken blocks included, so that a reference to one is not
    /// reported a second time.
    pub declared: &'a HashSet<String>,
}

pub(crate) trait HasName {
    fn name(&self) -> &str;
}

impl HasName for TrackFile {
    fn name(&self) -> &str {
        &self.name
    }
}

impl HasName for VrrpTrackProcess {
    fn name(&self) -> &str {
        &self.name
    }
}

impl<'a, T: HasName> Named<'a, T> {
    pub fn new(items: &'a [T], declared: &'a HashSet<String>) -> Self {
        let mut found = HashMap::new();
        for item in items {
            found.entry(item.name()).or_insert(item);
        }
        Named { found, declared }
    }

    /// The object `name` refers to; reports an unknown name (`where_` says where it was
    /// written, `what` what it should name).
    pub fn resolve(
        &self,
        r: &mut Reader<'_>,
        name: &str,
        at: Pos,
        where_: &str,
        what: &str,
    ) -> Option<&'a T> {
        let found = self.found.get(name).copied();
        if found.is_none() && !self.declared.contains(name) {
            r.diags.error(
                at,
                format!("found `{name}` {where_}, expected the name of {what} block"),
            );
        }
        found
    }
}

fn name_of(r: &mut Reader<'_>, st: &Statement) -> Option<String> {
    let Some(name) = st.args.first() else {
        r.missing(st, format_args!("the {}'s name", st.keyword));
        return None;
    };
    r.extra_args(st, 1);
    Some(name.text.to_string())
}

/// `track_file NAME { file PATH  weight W [reverse]  init_file [VALUE] [overwrite] }`.
pub(super) fn track_file(r: &mut Reader<'_>, st: &Statement) -> Option<TrackFile> {
    if r.needs_block(st) {
        return None;
    }
    if st.keyword == "vrrp_track_file" {
        r.diags.warn(
            st.span,
            "\"vrrp_track_file\" is deprecated, please use \"track_file\"",
        );
    }
    let name = name_of(r, st);
    let context = format!("{} {}", st.keyword, name.as_deref().unwrap_or(""));
    let mut file = None;
    let mut weight = None;
    let mut init_file = None;
    for st in r.block(st) {
        match st.keyword {
            "file" => file = r.string(st, "the path of the file to track").or(file),
            "weight" => {
                r.no_block(st);
                weight = weight_and_reverse(r, st, &st.args, -254, 254).or(weight);
            }
            "init_file" => {
                r.no_block(st);
                let mut init = TrackFileInit {
                    value: 0,
                    overwrite: false,
                };
                for arg in &st.args {
                    if arg.text == "overwrite" {
                        init.overwrite = true;
                    } else if let Some(v) = r.int_arg(st, arg, -254, 254) {
                        init.value = v as i32;
                    }
                }
                init_file = Some(init);
            }
            _ => r.unknown(st, &context),
        }
    }
    if file.is_none() {
        r.diags.error(
            st.span,
            format!("found no `file` in `{context}`, expected `file PATH`"),
        );
    }
    let (weight, weight_reverse) = weight.unwrap_or((1, false));
    Some(TrackFile {
        name: name?,
        file: file?,
        weight,
        weight_reverse,
        init_file,
        origin: r.origin(st.span),
    })
}

/// `vrrp_track_process NAME { process ... }` with keepalived's defaults: quorum 1, no
/// quorum_max, weight 0, no delays.
pub(super) fn vrrp_track_process(r: &mut Reader<'_>, st: &Statement) -> Option<VrrpTrackProcess> {
    if r.needs_block(st) {
        return None;
    }
    let name = name_of(r, st);
    let context = format!("vrrp_track_process {}", name.as_deref().unwrap_or(""));
    let mut process: Option<(String, Vec<String>)> = None;
    let mut param_match: Option<ParamMatch> = None;
    let mut full_command = false;
    let mut weight = None;
    let mut quorum: Option<(u32, Pos)> = None;
    let mut quorum_max: Option<(u32, Pos)> = None;
    let mut fork_delay = Timer::default();
    let mut terminate_delay = Timer::default();
    let (min_delay, max_delay) = (Timer::from_micros(1), Timer::from_secs(3600));
    for st in r.block(st) {
        match st.keyword {
            "process" => {
                r.no_block(st);
                match st.args.first() {
                    None => r.missing(st, "a process name, then any arguments to match"),
                    Some(first) => {
                        let params = st.args[1..].iter().map(|a| a.text.to_string()).collect();
                        process = Some((first.text.to_string(), params));
                    }
                }
            }
            "param_match" => {
                r.no_block(st);
                param_match = match st.args.first().map(|a| a.text) {
                    None => Some(ParamMatch::Exact),
                    Some("initial") => Some(ParamMatch::Initial),
                    Some("partial") => Some(ParamMatch::Partial),
                    Some(_) => {
                        r.bad(st, &st.args[0], "initial, partial or end of line");
                        param_match
                    }
                };
                r.extra_args(st, 1);
            }
            "full_command" => full_command = r.flag(st),
            "weight" => {
                r.no_block(st);
                weight = weight_and_reverse(r, st, &st.args, -254, 254).or(weight);
            }
            "quorum" => quorum = r.u32(st, 1, 65535).map(|q| (q, st.span)).or(quorum),
            "quorum_max" => quorum_max = r.u32(st, 0, 65535).map(|q| (q, st.span)).or(quorum_max),
            "delay" => {
                if let Some(t) = r.timer(st, min_delay, Some(max_delay)) {
                    fork_delay = t;
                    terminate_delay = t;
                }
            }
            "fork_delay" => {
                fork_delay = r
                    .timer(st, min_delay, Some(max_delay))
                    .unwrap_or(fork_delay)
            }
            "terminate_delay" => {
                terminate_delay = r
                    .timer(st, min_delay, Some(max_delay))
                    .unwrap_or(terminate_delay)
            }
            _ => r.unknown(st, &context),
        }
    }
    let Some((process, params)) = process else {
        r.diags.error(
            st.span,
            format!("found no `process` in `{context}`, expected `process NAME [ARGUMENTS...]`"),
        );
        return None;
    };
    // keepalived: arguments mean an exact match of the whole command line unless
    // param_match says otherwise.
    let param_match = param_match.unwrap_or(if params.is_empty() {
        ParamMatch::None
    } else {
        ParamMatch::Exact
    });
    let full_command = full_command || param_match != ParamMatch::None;
    // keepalived: `quorum_max 0` means none may run, and the quorum becomes 0.
    let quorum_value = match (quorum, quorum_max) {
        (None, Some((0, _))) => 0,
        (Some((q, _)), _) => q,
        (None, _) => 1,
    };
    if let (Some((q, at)), Some((max, _))) = (quorum, quorum_max)
        && q > max
    {
        r.diags.error(
            at,
            format!(
                "found quorum {q} above quorum_max {max} in `{context}`, expected quorum <= quorum_max"
            ),
        );
    }
    let (weight, weight_reverse) = weight.unwrap_or((0, false));
    Some(VrrpTrackProcess {
        name: name?,
        process,
        params,
        param_match,
        full_command,
        weight,
        weight_reverse,
        quorum: quorum_value,
        quorum_max: quorum_max.map(|(q, _)| q),
        fork_delay,
        terminate_delay,
        origin: r.origin(st.span),
    })
}
