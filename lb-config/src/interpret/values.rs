//! Reading one statement's arguments as typed values, with a diagnostic for
//! anything missing, extra or malformed.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use crate::diagnostic::{Diags, Pos};
use crate::model::{NotifyScript, Origin, ScriptUser, Timer};
use crate::syntax::{Arg, Statement};

use super::unknown::{did_you_mean, odd_blank};

/// A year: beyond any sensible timer, and far from overflowing.
const MAX_TIMER: Timer = Timer::from_secs(86_400 * 365);

pub(crate) struct Reader<'d> {
    pub diags: &'d mut Diags,
    /// The preference keepalived gives the next rule written without one, IPv4 and IPv6
    /// (it counts down from 16384 in reading order).
    pub next_rule_priority: [u32; 2],
}

impl Reader<'_> {
    /// Where `pos` is, to keep in the model.
    pub fn origin(&self, pos: Pos) -> Origin {
        Origin(Some(self.diags.span(pos)))
    }

    pub fn no_block(&mut self, st: &Statement) {
        if let Some(block) = &st.block {
            self.diags.error(
                block.open,
                format!(
                    "found `{{`, expected end of line: `{}` takes no block",
                    st.keyword
                ),
            );
        }
    }

    /// Reports the first argument past the `allowed` ones: keepalived reads
    /// the words it expects and ignores the rest, and so does xlb.
    pub fn extra_args(&mut self, st: &Statement, allowed: usize) {
        if let Some(extra) = st.args.get(allowed) {
            let before = words_before(st, allowed);
            self.diags.tolerate(
                extra.span,
                format!(
                    "found `{}` after `{before}`, expected end of line: keepalived ignores it, \
                     and so does xlb",
                    extra.text
                ),
            );
        }
    }

    /// Refuses the first argument past the `allowed` ones where keepalived
    /// drops more than the words (`why`).
    pub fn extra_args_refused(&mut self, st: &Statement, allowed: usize, why: &str) -> bool {
        let Some(extra) = st.args.get(allowed) else {
            return false;
        };
        let before = words_before(st, allowed);
        self.diags.error(
            extra.span,
            format!(
                "found `{}` after `{before}`, expected end of line: {why}",
                extra.text
            ),
        );
        true
    }

    pub fn missing(&mut self, st: &Statement, expected: impl fmt::Display) {
        self.diags.error(
            st.span,
            format!(
                "found end of line after `{}`, expected {expected}",
                st.keyword
            ),
        );
    }

    pub fn bad(&mut self, st: &Statement, arg: &Arg, expected: impl fmt::Display) {
        self.diags.error(
            arg.span,
            format!(
                "found `{}` after `{}`, expected {expected}",
                arg.text, st.keyword
            ),
        );
    }

    /// The one argument of `keyword VALUE`.
    ///
    /// `expected` is only displayed when the value is missing: callers may
    /// pass a [`fmt::from_fn`] that formats it then, not on every statement.
    pub fn value<'s, 't>(
        &mut self,
        st: &'s Statement<'t>,
        expected: impl fmt::Display,
    ) -> Option<&'s Arg<'t>> {
        self.no_block(st);
        match st.args.first() {
            None => {
                self.missing(st, expected);
                None
            }
            Some(arg) => {
                self.extra_args(st, 1);
                Some(arg)
            }
        }
    }

    pub fn string(&mut self, st: &Statement, expected: impl fmt::Display) -> Option<String> {
        self.value(st, expected).map(|a| a.text.to_string())
    }

    /// All arguments joined, for commands keepalived accepts quoted or not.
    pub fn command(&mut self, st: &Statement) -> Option<String> {
        self.no_block(st);
        if st.args.is_empty() {
            self.missing(st, "a command");
            return None;
        }
        Some(st.args.iter().map(|a| a.text).collect::<Vec<_>>().join(" "))
    }

    pub fn uint(&mut self, st: &Statement, lo: u64, hi: u64) -> Option<u64> {
        let arg = self.value(st, fmt::from_fn(|f| write!(f, "an integer {lo}..{hi}")))?;
        self.uint_arg(st, arg, lo, hi)
    }

    pub fn uint_arg(&mut self, st: &Statement, arg: &Arg, lo: u64, hi: u64) -> Option<u64> {
        match parse_uint(arg.text) {
            Some(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                self.bad(st, arg, format_args!("an integer {lo}..{hi}"));
                None
            }
        }
    }

    pub fn u32(&mut self, st: &Statement, lo: u32, hi: u32) -> Option<u32> {
        self.uint(st, u64::from(lo), u64::from(hi))
            .and_then(|n| u32::try_from(n).ok())
    }

    pub fn int_arg(&mut self, st: &Statement, arg: &Arg, lo: i64, hi: i64) -> Option<i64> {
        let parsed = match arg.text.strip_prefix('-') {
            Some(rest) => parse_uint(rest)
                .and_then(|n| i64::try_from(n).ok())
                .map(|n| -n),
            None => parse_uint(arg.text.strip_prefix('+').unwrap_or(arg.text))
                .and_then(|n| i64::try_from(n).ok()),
        };
        match parsed {
            Some(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                self.bad(st, arg, format_args!("an integer {lo}..{hi}"));
                None
            }
        }
    }

    /// Decimal seconds in `min..=max`; `max` None for no bound worth naming.
    pub fn timer(&mut self, st: &Statement, min: Timer, max: Option<Timer>) -> Option<Timer> {
        let expected = fmt::from_fn(|f| match max {
            Some(max) => write!(f, "a number of seconds {min}..{max}"),
            None if min == Timer::default() => f.write_str("a number of seconds"),
            None => f.write_str("a number of seconds above 0"),
        });
        let arg = self.value(st, &expected)?;
        let max = max.unwrap_or(MAX_TIMER);
        match parse_timer(arg.text) {
            Some(t) if min <= t && t <= max => Some(t),
            _ => {
                self.bad(st, arg, &expected);
                None
            }
        }
    }

    pub fn ip_arg(&mut self, st: &Statement, arg: &Arg) -> Option<IpAddr> {
        match arg.text.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.bad(st, arg, "an IPv4 or IPv6 address");
                None
            }
        }
    }

    pub fn ip(&mut self, st: &Statement) -> Option<IpAddr> {
        let arg = self.value(st, "an IPv4 or IPv6 address")?;
        self.ip_arg(st, arg)
    }

    pub fn port_arg(&mut self, st: &Statement, arg: &Arg) -> Option<u16> {
        match parse_uint(arg.text).and_then(|n| u16::try_from(n).ok()) {
            Some(p) if p > 0 => Some(p),
            _ => {
                self.bad(st, arg, "a port 1..65535");
                None
            }
        }
    }

    pub fn port(&mut self, st: &Statement) -> Option<u16> {
        let arg = self.value(st, "a port 1..65535")?;
        self.port_arg(st, arg)
    }

    /// keepalived's `<BOOL>` options: the bare keyword means true.
    pub fn flag(&mut self, st: &Statement) -> bool {
        self.no_block(st);
        let Some(arg) = st.args.first() else {
            return true;
        };
        self.extra_args(st, 1);
        match arg.text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => true,
            "false" | "no" | "off" => false,
            _ => {
                self.bad(
                    st,
                    arg,
                    "end of line, or one of true, false, yes, no, on, off",
                );
                true
            }
        }
    }

    /// `USER [GROUP]`, `USER:GROUP` or `USER :GROUP` from `args`.
    pub fn script_user(&mut self, st: &Statement, args: &[Arg]) -> Option<ScriptUser> {
        let first = args.first()?;
        // Any run of ':' separates user from group, so that what is printed
        // (`USER GROUP`) reads back the same.
        let group_of = |g: &str| {
            let g = g.trim_start_matches(':');
            (!g.is_empty()).then(|| g.to_string())
        };
        let (user, mut group, split) = match first.text.split_once(':') {
            Some((u, g)) => (u.to_string(), group_of(g), true),
            None => (first.text.to_string(), None, false),
        };
        let mut used = 1;
        if let Some(second) = args.get(1)
            && group.is_none()
            && (!split || first.text.ends_with(':'))
        {
            group = group_of(second.text);
            used = 2;
        }
        if let Some(extra) = args.get(used) {
            self.diags.error(
                extra.span,
                format!(
                    "found `{}`, expected end of line after the user and group of `{}`",
                    extra.text, st.keyword
                ),
            );
        }
        if user.is_empty() {
            self.bad(st, first, "a user name");
            return None;
        }
        Some(ScriptUser { user, group })
    }

    /// `notify_* COMMAND|"COMMAND ARGS" [USER [GROUP]]`.
    pub fn notify_script(&mut self, st: &Statement) -> Option<NotifyScript> {
        self.no_block(st);
        let Some(command) = st.args.first() else {
            self.missing(st, "a script, quoted if it has arguments");
            return None;
        };
        if let Some(next) = st.args.get(1)
            && !command.quoted
        {
            // A frequent slip: keepalived reads the word after an unquoted
            // script as the user to run it as, not as its argument.
            self.diags.tolerate(
                next.span,
                format!(
                    "`{}` is read as the user to run `{}` as, as keepalived does; \
                         to pass it as an argument write `{} \"{} {}\"`",
                    next.text, command.text, st.keyword, command.text, next.text
                ),
            );
        }
        let user = self.script_user(st, &st.args[1..]);
        Some(NotifyScript {
            command: command.text.to_string(),
            user,
        })
    }

    /// The statements of a block keyword; reports a missing block.
    pub fn block<'s, 't>(&mut self, st: &'s Statement<'t>) -> &'s [Statement<'t>] {
        match &st.block {
            Some(block) => &block.statements,
            None => {
                self.diags.error(
                    st.span,
                    format!(
                        "found end of line after `{}`, expected `{{` opening its block",
                        st.text()
                    ),
                );
                &[]
            }
        }
    }

    /// Reports a block keyword written without its block; true if so, and the
    /// caller then skips the checks of the block's content.
    pub fn needs_block(&mut self, st: &Statement) -> bool {
        if st.block.is_some() {
            return false;
        }
        self.block(st);
        true
    }

    /// A list entry (`virtual_ipaddress`, `track_script`, ...) must not open a block.
    pub fn list_entry(&mut self, st: &Statement) {
        self.no_block(st);
    }

    /// `context` names the block `st` is in; it is displayed only if a
    /// diagnostic is made (see [`block_name`]).
    pub fn unknown(&mut self, st: &Statement, context: impl fmt::Display) {
        self.unknown_among(st, context, &[]);
    }

    /// An unknown keyword, perhaps a misspelling of one of `known`. keepalived
    /// ignores it and reads on, and so does xlb. An unknown block inside a
    /// known one is refused: keepalived reads its lines as the enclosing
    /// block's and ends that block at its `}`, which is surely not what was
    /// meant.
    pub fn unknown_among(&mut self, st: &Statement, context: impl fmt::Display, known: &[&str]) {
        if let Some(odd) = odd_blank(st.keyword) {
            let found = format!(
                "found {odd}, expected spaces or tabs: keepalived does not take it for a blank, \
                 so it reads an unknown keyword and ignores the line"
            );
            if st.block.is_some() {
                self.diags.error(
                    st.span,
                    format!("{found}; xlb refuses it: write spaces instead"),
                );
            } else {
                self.diags.tolerate(
                    st.span,
                    format!("{found}, and so does xlb (write spaces instead)"),
                );
            }
            return;
        }
        let hint = did_you_mean(st.keyword, known);
        if st.block.is_some() {
            self.diags.error(
                st.span,
                format!(
                    "found unknown block `{}` in {context}{hint}, expected a keepalived block \
                     keyword: keepalived would read its lines as if in {context} and end {context} \
                     at its `}}`, which xlb refuses",
                    st.keyword
                ),
            );
        } else {
            self.diags.tolerate(
                st.span,
                format!(
                    "unknown keyword `{}` in {context}{hint}, ignored as keepalived does",
                    st.keyword
                ),
            );
        }
    }

    /// A keepalived keyword xlb accepts but does not act on, and why.
    pub fn ignored(&mut self, st: &Statement, why: &str) {
        self.diags.warn(
            st.span,
            format!("`{}` is ignored by xlb: {why}", st.keyword),
        );
    }

    /// [`Reader::ignored`] if `st`'s keyword is in `table` (keyword, why);
    /// false if it is not.
    pub fn ignored_from(&mut self, st: &Statement, table: &[(&str, &str)]) -> bool {
        match table.iter().find(|(k, _)| *k == st.keyword) {
            Some((_, why)) => {
                self.ignored(st, why);
                true
            }
            None => false,
        }
    }

    /// Separates a block keyword written at the end of another statement's line
    /// (`protocol TCP real_server 10.0.0.102 {`, seen when a blog loses line
    /// breaks): reports it, then reads both as keepalived's author meant them.
    /// Statements that need no split are borrowed, not copied: this runs at
    /// every level of the tree, and a copy would duplicate each subtree there.
    /// A block that needs no split at all, nearly every one, is borrowed whole.
    pub fn split_run_together<'s, 't>(
        &mut self,
        stmts: &'s [Statement<'t>],
        block_keywords: &[&str],
    ) -> Statements<'s, 't> {
        let split_at = |st: &Statement<'_>| {
            if st.block.is_none() || block_keywords.contains(&st.keyword) {
                return None;
            }
            st.args
                .iter()
                .position(|a| !a.quoted && block_keywords.contains(&a.text))
        };
        let Some(first) = stmts.iter().position(|st| split_at(st).is_some()) else {
            return Statements::Written(stmts);
        };
        let mut out: Vec<Cow<'s, Statement<'t>>> = Vec::with_capacity(stmts.len() + 1);
        out.extend(stmts[..first].iter().map(Cow::Borrowed));
        for st in &stmts[first..] {
            let Some(k) = split_at(st) else {
                out.push(Cow::Borrowed(st));
                continue;
            };
            let head = Statement {
                keyword: st.keyword,
                span: st.span,
                args: st.args[..k].iter().copied().collect(),
                block: None,
            };
            let inner = &st.args[k];
            self.diags.error(
                inner.span,
                format!(
                    "found `{}` on the line of `{}`, expected `{}` to start its own line",
                    inner.text,
                    head.text(),
                    inner.text
                ),
            );
            out.push(Cow::Owned(head));
            out.push(Cow::Owned(Statement {
                keyword: inner.text,
                span: inner.span,
                args: st.args[k + 1..].iter().copied().collect(),
                block: st.block.clone(),
            }));
        }
        Statements::Split(out)
    }
}

/// A block's statements as [`Reader::split_run_together`] reads them.
pub(crate) enum Statements<'s, 't> {
    /// As written: no statement needed separating.
    Written(&'s [Statement<'t>]),
    /// Some did: the others borrowed, the separated ones owned.
    Split(Vec<Cow<'s, Statement<'t>>>),
}

impl<'t> Statements<'_, 't> {
    pub fn iter(&self) -> StatementsIter<'_, 't> {
        self.into_iter()
    }
}

impl<'a, 't> IntoIterator for &'a Statements<'_, 't> {
    type Item = &'a Statement<'t>;
    type IntoIter = StatementsIter<'a, 't>;

    fn into_iter(self) -> StatementsIter<'a, 't> {
        match self {
            Statements::Written(stmts) => StatementsIter::Written(stmts.iter()),
            Statements::Split(stmts) => StatementsIter::Split(stmts.iter()),
        }
    }
}

pub(crate) enum StatementsIter<'a, 't> {
    Written(std::slice::Iter<'a, Statement<'t>>),
    Split(std::slice::Iter<'a, Cow<'a, Statement<'t>>>),
}

impl<'a, 't> Iterator for StatementsIter<'a, 't> {
    type Item = &'a Statement<'t>;

    fn next(&mut self) -> Option<&'a Statement<'t>> {
        match self {
            StatementsIter::Written(it) => it.next(),
            StatementsIter::Split(it) => it.next().map(|st| &**st),
        }
    }
}

/// `KEYWORD ARG...` up to argument `count`, for messages.
fn words_before(st: &Statement, count: usize) -> String {
    let mut before = st.keyword.to_string();
    for a in &st.args[..count.min(st.args.len())] {
        before.push(' ');
        before.push_str(a.text);
    }
    before
}

/// `NAME ARG...` of a block statement, as messages about its content name it
/// (`virtual_server 10.0.0.1 80`). Formatted only when displayed: every block
/// has a name and few have a problem, and a configuration may hold tens of
/// thousands of blocks.
pub fn block_name<'s>(name: &'s str, st: &'s Statement) -> impl fmt::Display + 's {
    fmt::from_fn(move |f| {
        f.write_str(name)?;
        f.write_str(" ")?;
        for (i, arg) in st.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(arg.text)?;
        }
        Ok(())
    })
}

/// Decimal digits only, as keepalived's strtoul-based readers accept.
pub fn parse_uint(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// keepalived's decimal seconds: `5`, `0.5`, `.5`, to the microsecond.
pub fn parse_timer(text: &str) -> Option<Timer> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = if whole.is_empty() {
        0
    } else {
        parse_uint(whole)?
    };
    let frac_micros = if frac.is_empty() {
        0
    } else {
        let digits: u64 = frac.parse().ok()?;
        digits * 10u64.pow(6 - u32::try_from(frac.len()).ok()?)
    };
    secs.checked_mul(1_000_000)?
        .checked_add(frac_micros)
        .map(Timer::from_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers() {
        assert_eq!(parse_timer("5"), Some(Timer::from_secs(5)));
        assert_eq!(parse_timer("0.05"), Some(Timer::from_micros(50_000)));
        assert_eq!(parse_timer(".5"), Some(Timer::from_micros(500_000)));
        assert_eq!(parse_timer("1.0000001"), None);
        assert_eq!(parse_timer("."), None);
        assert_eq!(parse_timer("-1"), None);
        assert_eq!(parse_timer("99999999999999999999"), None);
        assert_eq!(Timer::from_micros(1_500_000).to_string(), "1.5");
        assert_eq!(Timer::from_micros(10).to_string(), "0.00001");
    }

    #[test]
    fn uints() {
        assert_eq!(parse_uint("42"), Some(42));
        assert_eq!(parse_uint("+4"), None);
        assert_eq!(parse_uint(""), None);
        assert_eq!(parse_uint("4a"), None);
    }
}
