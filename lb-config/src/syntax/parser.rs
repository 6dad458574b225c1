//! Builds the statement tree from lexed lines.
//!
//! One statement per line: a keyword, its arguments and, optionally, a block.
//! The block's `{` may end the keyword's line or start the next one, and `}`
//! may close several blocks or be followed by another statement on the same
//! line (`}}`, `} real_server ... {`), which keepalived tolerates too.
//!
//! An `include` is read where it is written, as keepalived does: parameters
//! its files define apply to the lines after it.

use std::fmt;
use std::ops::Deref;

use crate::diagnostic::{Diags, Pos};
use crate::limits::MAX_BLOCK_DEPTH;

use super::lexer::{Lines, Token, TokenKind, is_include};

/// Where the parser gets its lines from, and what reads its includes.
pub(crate) trait Source<'t> {
    /// The tokens of the next line of `lines` that has any; false at its end.
    fn next_line(&mut self, lines: &mut Lines<'t>, tokens: &mut Vec<Token<'t>>) -> bool;

    fn diags(&mut self) -> &mut Diags;

    /// The statements of the files `include` names, read now.
    fn include(&mut self, include: &Statement<'t>) -> Vec<Statement<'t>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arg<'t> {
    pub text: &'t str,
    pub quoted: bool,
    pub span: Pos,
}

/// A statement's arguments, read as a slice.
///
/// Nearly every keepalived statement has one or two (`lb_kind DR`,
/// `real_server IP PORT`): those are kept in the statement itself, and only
/// more in a Vec, so that a tree of tens of thousands of statements does not
/// make (and free) an allocation for each.
#[derive(Clone, Default)]
pub enum Args<'t> {
    #[default]
    None,
    One([Arg<'t>; 1]),
    Two([Arg<'t>; 2]),
    More(Vec<Arg<'t>>),
}

impl<'t> Deref for Args<'t> {
    type Target = [Arg<'t>];

    fn deref(&self) -> &[Arg<'t>] {
        match self {
            Args::None => &[],
            Args::One(args) => args,
            Args::Two(args) => args,
            Args::More(args) => args,
        }
    }
}

impl<'t> FromIterator<Arg<'t>> for Args<'t> {
    fn from_iter<I: IntoIterator<Item = Arg<'t>>>(iter: I) -> Self {
        let mut iter = iter.into_iter();
        let Some(first) = iter.next() else {
            return Args::None;
        };
        let Some(second) = iter.next() else {
            return Args::One([first]);
        };
        let Some(third) = iter.next() else {
            return Args::Two([first, second]);
        };
        Args::More([first, second, third].into_iter().chain(iter).collect())
    }
}

impl<'a, 't> IntoIterator for &'a Args<'t> {
    type Item = &'a Arg<'t>;
    type IntoIter = std::slice::Iter<'a, Arg<'t>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Args<'_> {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl Eq for Args<'_> {}

impl fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block<'t> {
    /// Where the `{` is.
    pub open: Pos,
    pub statements: Vec<Statement<'t>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement<'t> {
    pub keyword: &'t str,
    pub span: Pos,
    pub args: Args<'t>,
    pub block: Option<Block<'t>>,
}

impl Statement<'_> {
    /// The keyword and its arguments as written, for messages.
    pub fn text(&self) -> String {
        let mut s = self.keyword.to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a.text);
        }
        s
    }
}

/// keepalived's keywords that open a block (a sub-level or a list of
/// values): one whose line is not followed by `{` still opens its block, as
/// keepalived reads it ("Missing '{' at beginning of configuration block").
/// `parent` is the keyword of the block it is in: inside FILE_CHECK,
/// `track_file NAME` is a line of its own.
fn opens_block(keyword: &str, parent: Option<&str>) -> bool {
    if keyword == "track_file" && parent == Some("FILE_CHECK") {
        return false;
    }
    matches!(
        keyword,
        "global_defs"
            | "vrrp_script"
            | "vrrp_sync_group"
            | "vrrp_instance"
            | "virtual_server"
            | "virtual_server_group"
            | "real_server"
            | "TCP_CHECK"
            | "HTTP_GET"
            | "SSL_GET"
            | "MISC_CHECK"
            | "SMTP_CHECK"
            | "DNS_CHECK"
            | "UDP_CHECK"
            | "PING_CHECK"
            | "FILE_CHECK"
            | "BFD_CHECK"
            | "url"
            | "group"
            | "authentication"
            | "virtual_ipaddress"
            | "virtual_ipaddress_excluded"
            | "virtual_routes"
            | "virtual_rules"
            | "static_ipaddress"
            | "static_routes"
            | "static_rules"
            | "unicast_peer"
            | "track_script"
            | "track_interface"
            | "track_file"
            | "track_process"
            | "track_bfd"
            | "vrrp_track_file"
            | "vrrp_track_process"
            | "notification_email"
            | "garp_group"
            | "linkbeat_interfaces"
            | "bfd_instance"
    )
}

/// A block being read.
struct Frame<'t> {
    /// The statement that opened it; None for a stray `{`, whose content is
    /// read for errors and dropped.
    owner: Option<Statement<'t>>,
    /// Where its `{` is, or its keyword when the `{` is missing.
    open: Pos,
    /// Opened without `{` (see [`opens_block`]).
    implicit: bool,
    /// Where its statements start in [`Tree::statements`].
    first: usize,
}

/// The statement tree as it is read.
///
/// The statements of every open block are kept on one stack, each block's
/// above its parent's: a block that closes takes its own off the top, into a
/// Vec of exactly their number, so no block's Vec is grown (and copied) one
/// statement at a time, and the file's top level is what remains at the end.
struct Tree<'t> {
    frames: Vec<Frame<'t>>,
    statements: Vec<Statement<'t>>,
    /// Blocks opened beyond MAX_BLOCK_DEPTH: counted, not kept, so braces still balance.
    skipped: usize,
}

impl<'t> Tree<'t> {
    /// The keyword of the innermost open block.
    fn parent(&self) -> Option<&str> {
        self.frames
            .last()
            .and_then(|f| f.owner.as_ref())
            .map(|o| o.keyword)
    }

    fn push(&mut self, stmt: Statement<'t>) {
        if self.skipped == 0 {
            self.statements.push(stmt);
        }
    }

    /// Reads an `include` in place: its files' statements go where it is.
    fn include(&mut self, stmt: Statement<'t>, src: &mut impl Source<'t>) {
        if self.skipped == 0 {
            let included = src.include(&stmt);
            self.statements.extend(included);
        }
    }

    /// Opens the block of `owner`, whose line ended without `{`: keepalived
    /// reads the next lines as its block all the same.
    fn open_missing_brace(&mut self, owner: Statement<'t>, next: Pos, diags: &mut Diags) {
        diags.tolerate(
            owner.span,
            format!(
                "found `{}` without `{{` (the next line, {}:{}, starts its block): keepalived \
                 reads the block without it, and so does xlb",
                owner.text(),
                next.line,
                next.col
            ),
        );
        let at = owner.span;
        self.open(Some(owner), at, diags);
        if let Some(frame) = self.frames.last_mut()
            && self.skipped == 0
        {
            frame.implicit = true;
        }
    }

    fn open(&mut self, owner: Option<Statement<'t>>, open: Pos, diags: &mut Diags) {
        if self.skipped > 0 || self.frames.len() >= MAX_BLOCK_DEPTH {
            if self.skipped == 0 {
                diags.error(
                    open,
                    format!(
                        "found a block nested more than {MAX_BLOCK_DEPTH} deep, expected fewer levels"
                    ),
                );
            }
            self.skipped += 1;
            return;
        }
        self.frames.push(Frame {
            owner,
            open,
            implicit: false,
            first: self.statements.len(),
        });
    }

    fn close(&mut self, at: Pos, diags: &mut Diags) {
        if self.skipped > 0 {
            self.skipped -= 1;
            return;
        }
        match self.frames.pop() {
            Some(frame) => self.finish(frame),
            None => diags.error(at, "found `}`, expected a keyword: no block is open here"),
        }
    }

    fn finish(&mut self, frame: Frame<'t>) {
        let statements = self.statements.split_off(frame.first);
        // A block that had no keyword was already reported; its content is dropped.
        if let Some(mut owner) = frame.owner {
            owner.block = Some(Block {
                open: frame.open,
                statements,
            });
            self.statements.push(owner);
        }
    }

    /// The top level, once blocks still open at the end of the text are
    /// reported and closed.
    fn end(mut self, diags: &mut Diags) -> Vec<Statement<'t>> {
        while let Some(frame) = self.frames.pop() {
            let what = frame
                .owner
                .as_ref()
                .map(|s| format!("`{}`", s.keyword))
                .unwrap_or_else(|| "this block".to_string());
            let opening = if frame.implicit {
                "the block (its `{` is missing too)"
            } else {
                "the `{`"
            };
            diags.error(
                frame.open,
                format!("found end of file, expected `}}` closing {opening} of {what}"),
            );
            self.finish(frame);
        }
        self.statements
    }
}

/// The statements of `lines`, which borrow their words from its text (or
/// from the load's arena, for rewritten lines).
pub(crate) fn parse<'t>(mut lines: Lines<'t>, src: &mut impl Source<'t>) -> Vec<Statement<'t>> {
    let mut tree = Tree {
        frames: Vec::new(),
        statements: Vec::new(),
        skipped: 0,
    };
    // A statement that ended its line; its block may open on the next line.
    let mut pending: Option<Statement> = None;

    // One buffer for the tokens of every line.
    let mut line = Vec::new();
    while src.next_line(&mut lines, &mut line) {
        let diags = src.diags();
        let mut tokens = line.iter().peekable();
        if let Some(stmt) = pending.take() {
            if let Some(open) = tokens.next_if(|t| t.kind == TokenKind::Open) {
                tree.open(Some(stmt), lines.span(open), diags);
            } else if opens_block(stmt.keyword, tree.parent())
                && let Some(next) = tokens.peek()
                // A `}` ends the enclosing block: the line before was a line.
                && next.kind != TokenKind::Close
            {
                tree.open_missing_brace(stmt, lines.span(next), diags);
            } else {
                tree.push(stmt);
            }
        }
        while let Some(token) = tokens.next() {
            let diags = src.diags();
            match token.kind {
                TokenKind::Close => tree.close(lines.span(token), diags),
                TokenKind::Open => {
                    let span = lines.span(token);
                    diags.error(span, "found `{`, expected a keyword before it");
                    tree.open(None, span, diags);
                }
                TokenKind::Word(keyword) | TokenKind::Quoted(keyword) => {
                    // The arguments are the words up to the end of the line or a brace.
                    let args = std::iter::from_fn(|| {
                        let t = tokens.next_if(|t| t.kind.word().is_some())?;
                        let (text, quoted) = t.kind.word()?;
                        Some(Arg {
                            text,
                            quoted,
                            span: lines.span(t),
                        })
                    })
                    .collect();
                    let stmt = Statement {
                        keyword,
                        span: lines.span(token),
                        args,
                        block: None,
                    };
                    // keepalived reads an include at once: it takes no block.
                    if is_include(token.kind) {
                        tree.include(stmt, src);
                        continue;
                    }
                    match tokens.next_if(|t| t.kind == TokenKind::Open) {
                        Some(open) => tree.open(Some(stmt), lines.span(open), src.diags()),
                        // A `}` ends the statement; the loop above closes the block.
                        None if tokens.peek().is_some() => tree.push(stmt),
                        None => pending = Some(stmt),
                    }
                }
            }
        }
    }
    if let Some(stmt) = pending.take() {
        tree.push(stmt);
    }
    tree.end(src.diags())
}

#[cfg(test)]
mod tests {
    use super::super::include::{Loader, Sources};
    use super::*;

    fn tree(text: &str) -> (Vec<Statement<'_>>, Vec<crate::Diagnostic>) {
        let mut diags = Diags::default();
        // Leaked: the statements borrow from it for the rest of the test.
        let sources: &Sources = Box::leak(Box::new(Sources::new()));
        let text: &str = Box::leak(text.to_string().into_boxed_str());
        let stmts = Loader::new(sources, &mut diags, None).load_text(text, "t.conf");
        (stmts, diags.into_sorted())
    }

    fn shape(stmts: &[Statement]) -> String {
        stmts
            .iter()
            .map(|s| match &s.block {
                Some(b) => format!("{}{{{}}}", s.text(), shape(&b.statements)),
                None => s.text(),
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    #[test]
    fn brace_on_next_line_and_several_closes() {
        let (stmts, d) = tree("a 1\n{\n b {\n c\n}}\nd");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(shape(&stmts), "a 1{b{c}};d");
    }

    #[test]
    fn statement_after_close_on_same_line() {
        let (stmts, d) = tree("vs {\n rs 1 {\n w\n} rs 2 {\n w\n}\n}");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(shape(&stmts), "vs{rs 1{w};rs 2{w}}");
    }

    #[test]
    fn one_line_block() {
        let (stmts, _) = tree("track_script { chk }");
        assert_eq!(shape(&stmts), "track_script{chk}");
    }

    #[test]
    fn unclosed_and_stray_braces_are_reported() {
        let (_, d) = tree("a {\n b\n");
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].line, d[0].col), (1, 3));
        let (_, d) = tree("}\n");
        assert_eq!((d[0].line, d[0].col), (1, 1));
        let (_, d) = tree("{ x }\n");
        assert_eq!((d[0].line, d[0].col), (1, 1));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let text = "a {".repeat(10_000) + &"}".repeat(10_000);
        let (stmts, d) = tree(&text);
        assert_eq!(d.len(), 1);
        assert_eq!(stmts.len(), 1);
    }
}
