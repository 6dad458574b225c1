//! Reads configuration files and splices `include` statements in place.
//!
//! As in keepalived, `include PATTERN` may appear at any level, PATTERN (the
//! rest of the line) is a glob taken relative to the directory of the file
//! that includes it, with `*`, `?`, `[...]` and csh braces `{a,b}`, and the
//! matching files are read in name order, where the include is written (a
//! parameter defined in one applies to the lines after the include). A
//! pattern that matches nothing is skipped, as keepalived's `include` does,
//! with a warning; its variants `includer`, `includem`, `includew`,
//! `includeb` and `includea` make that an error. A file that includes
//! itself, directly or through others, is reported instead of being read
//! again.
//!
//! A file may be included more than once (one snippet in many blocks), so
//! files that include each other by glob can still expand to factorially many
//! paths; what ends that, and any other runaway, are the per-load limits of
//! [`crate::limits`]: once the files opened, the bytes read or the paths
//! looked at by globs reach theirs, the include that crossed it is reported
//! and no further include is followed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diagnostic::{Diags, Pos};
use crate::limits::{MAX_FILES, MAX_GLOB_ENTRIES, MAX_INCLUDE_DEPTH, MAX_TOTAL_BYTES};

use super::arena::Arena;
use super::glob::{self, GlobError};
use super::language::Language;
use super::lexer::{Lines, Reading, Token};
use super::parser::{Source, Statement, parse};
use super::source::{ReadError, read_config};

/// The texts one load reads (its files, and the lines it rewrote), kept for
/// as long as its statements, which borrow their words from them (no
/// allocation per word).
pub(crate) struct Sources {
    arena: Arena,
}

impl Sources {
    pub fn new() -> Self {
        Sources {
            arena: Arena::new(),
        }
    }

    /// Keeps `text` until the end of the load.
    fn keep(&self, text: String) -> Option<&str> {
        self.arena.keep(text)
    }
}

/// Bytes read from a file, as text: invalid UTF-8 becomes U+FFFD, and valid
/// text (nearly always) is taken as it is, not copied.
fn text_of(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

pub(crate) struct Loader<'s, 'd> {
    sources: &'s Sources,
    diags: &'d mut Diags,
    /// Conditional lines and parameters, across every file of the load.
    language: Language,
    /// Files being read, outermost first, as canonical paths.
    stack: Vec<PathBuf>,
    /// The directory of each file being read, which its includes are relative to.
    dirs: Vec<PathBuf>,
    /// Every file read, in order.
    pub files: Vec<PathBuf>,
    /// Files opened so far, read or refused, repeats included.
    opened: usize,
    /// Bytes that may still be read in this load.
    bytes_left: u64,
    /// Paths the include globs of this load may still look at.
    glob_budget: u64,
    /// Set once a hard limit is reached: no further include is followed, so
    /// the one error at the include that crossed it is the only one.
    stopped: bool,
}

impl<'s, 'd> Loader<'s, 'd> {
    /// A loader whose conditional lines are read for `config_id`.
    pub fn new(sources: &'s Sources, diags: &'d mut Diags, config_id: Option<String>) -> Self {
        Loader {
            sources,
            diags,
            language: Language::new(config_id),
            stack: Vec::new(),
            dirs: Vec::new(),
            files: Vec::new(),
            opened: 0,
            bytes_left: MAX_TOTAL_BYTES,
            glob_budget: MAX_GLOB_ENTRIES,
            stopped: false,
        }
    }

    pub fn load_file(&mut self, path: &Path) -> Vec<Statement<'s>> {
        let name = path.display().to_string();
        self.opened += 1;
        match read_config(path, self.bytes_left) {
            Ok(bytes) => {
                self.spend_bytes(bytes.len());
                let Some(text) = self.sources.keep(text_of(bytes)) else {
                    self.diags.file_error(&name, too_many_files());
                    return Vec::new();
                };
                self.enter(path);
                let stmts = self.parse_text(text, &name);
                self.leave();
                stmts
            }
            Err(ReadError::Io(e)) => {
                self.diags
                    .file_error(&name, format!("cannot read file: {e}"));
                Vec::new()
            }
            Err(e @ ReadError::Refused { .. }) => {
                self.diags.file_error(&name, e);
                Vec::new()
            }
            Err(ReadError::TooLarge(_)) => {
                self.diags.file_error(
                    &name,
                    format!(
                        "found more than {MAX_TOTAL_BYTES} bytes (limit), expected a smaller \
                         file: a huge or endless file?"
                    ),
                );
                Vec::new()
            }
        }
    }

    /// Text not read from disk; its includes are taken relative to `name`'s directory.
    /// It counts against the bytes of the load as a file would, so that text
    /// and file give the same answer.
    pub fn load_text(&mut self, text: &'s str, name: &str) -> Vec<Statement<'s>> {
        if u64::try_from(text.len()).map_or(true, |n| n > self.bytes_left) {
            self.diags.file_error(
                name,
                format!(
                    "found {} bytes, expected at most {MAX_TOTAL_BYTES} (limit)",
                    text.len()
                ),
            );
            return Vec::new();
        }
        self.spend_bytes(text.len());
        self.opened += 1;
        self.enter(Path::new(name));
        let stmts = self.parse_text(text, name);
        self.leave();
        stmts
    }

    fn spend_bytes(&mut self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.bytes_left = self.bytes_left.saturating_sub(n);
    }

    /// `path` (read, or text named so) is being read.
    fn enter(&mut self, path: &Path) {
        self.files.push(path.to_path_buf());
        self.stack
            .push(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
        self.dirs.push(parent(path).to_path_buf());
    }

    fn leave(&mut self) {
        self.stack.pop();
        self.dirs.pop();
    }

    /// The statements of `text`, the file `name` just entered.
    fn parse_text(&mut self, text: &'s str, name: &str) -> Vec<Statement<'s>> {
        let file = self.diags.reading(&Arc::from(name));
        let dir = self.dirs.last().cloned().unwrap_or_default();
        parse(Lines::new(text, file, dir), self)
    }

    fn read_include(&mut self, stmt: &Statement<'_>) -> Vec<Statement<'s>> {
        let dir = self.dirs.last().cloned().unwrap_or_default();
        let dir = dir.as_path();
        let depth = self.stack.len().saturating_sub(1);
        let Some(pattern) = stmt.args.first() else {
            self.diags.error(
                stmt.span,
                format!(
                    "found end of line after `{}`, expected a file name or glob",
                    stmt.keyword
                ),
            );
            return Vec::new();
        };
        if let Some(extra) = stmt.args.get(1) {
            self.diags.error(
                extra.span,
                format!(
                    "found `{}`, expected end of line after `{} {}`",
                    extra.text, stmt.keyword, pattern.text
                ),
            );
        }
        if let Some(block) = &stmt.block {
            self.diags.error(
                block.open,
                "found `{`, expected end of line (`include` takes no block)",
            );
        }
        if self.stopped {
            return Vec::new();
        }
        if depth >= MAX_INCLUDE_DEPTH {
            self.diags.error(
                pattern.span,
                format!("found includes nested {MAX_INCLUDE_DEPTH} deep, expected fewer"),
            );
            return Vec::new();
        }
        let expansion = match glob::expand(pattern.text, dir, &mut self.glob_budget) {
            Ok(expansion) => expansion,
            Err(e) => {
                self.stopped = e == GlobError::BudgetSpent;
                self.diags.error(pattern.span, e);
                return Vec::new();
            }
        };
        if expansion.paths.is_empty() {
            self.no_match(stmt, pattern.text, pattern.span, dir, expansion.skipped);
            return Vec::new();
        }
        let mut out = Vec::new();
        for path in expansion.paths {
            // A limit reached deeper down ends this include too.
            if self.stopped {
                break;
            }
            out.extend(self.include_file(&path, pattern.span));
        }
        out
    }

    /// A pattern that matched no file: skipped by keepalived's `include`
    /// (so an optional conf.d may be empty), an error with its variants,
    /// which ask for checks.
    fn no_match(
        &mut self,
        stmt: &Statement<'_>,
        pattern: &str,
        at: Pos,
        dir: &Path,
        skipped: Option<(PathBuf, &'static str)>,
    ) {
        let looked_in = if Path::new(pattern).is_absolute() {
            "/".to_string()
        } else {
            display_dir(dir)
        };
        let not_inside = skipped
            .map(|(skipped, fs)| {
                format!(
                    ", not inside {}: {fs} holds kernel state, not configuration",
                    skipped.display()
                )
            })
            .unwrap_or_default();
        let quotes = if pattern.contains('"') {
            " (keepalived takes the quotes of an include pattern as part of the file name)"
        } else {
            ""
        };
        let found = format!(
            "found no file matching `{pattern}` (looked in {looked_in}{not_inside}){quotes}"
        );
        if stmt.keyword == "include" {
            self.diags.tolerate(
                at,
                format!(
                    "{found}: keepalived's `include` reads on without it, and so does xlb \
                     (`includea` makes this an error)"
                ),
            );
        } else {
            self.diags.error(
                at,
                format!(
                    "{found}, expected at least one file to include (`{}` checks it)",
                    stmt.keyword
                ),
            );
        }
    }

    /// The statements of one file an include (its pattern at `at`) matched.
    fn include_file(&mut self, path: &Path, at: Pos) -> Vec<Statement<'s>> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if self.stack.contains(&canonical) {
            self.diags.error(
                at,
                format!(
                    "found an include cycle: `{}` is already being read, expected a file \
                     that does not include itself",
                    path.display()
                ),
            );
            return Vec::new();
        }
        if self.opened >= MAX_FILES {
            self.diags.error(at, too_many_files());
            self.stopped = true;
            return Vec::new();
        }
        self.opened += 1;
        let bytes = match read_config(path, self.bytes_left) {
            Ok(bytes) => bytes,
            Err(ReadError::Io(e)) => {
                self.diags.error(
                    at,
                    format!("cannot read included file `{}`: {e}", path.display()),
                );
                return Vec::new();
            }
            Err(ReadError::Refused { what, expected }) => {
                self.diags.error(
                    at,
                    format!("found `{}`, {what}, expected {expected}", path.display()),
                );
                return Vec::new();
            }
            Err(ReadError::TooLarge(_)) => {
                self.diags.error(
                    at,
                    format!(
                        "found more than {MAX_TOTAL_BYTES} bytes to read with `{}` \
                         (limit), expected fewer: a huge or endless file?",
                        path.display()
                    ),
                );
                self.stopped = true;
                return Vec::new();
            }
        };
        self.spend_bytes(bytes.len());
        let Some(text) = self.sources.keep(text_of(bytes)) else {
            self.diags.error(at, too_many_files());
            self.stopped = true;
            return Vec::new();
        };
        let name = path.display().to_string();
        self.enter(path);
        // `enter` keeps the path as given; the cycle check wants it canonical.
        if let Some(top) = self.stack.last_mut() {
            *top = canonical;
        }
        let stmts = self.parse_text(text, &name);
        self.leave();
        stmts
    }
}

impl<'s> Source<'s> for Loader<'s, '_> {
    fn next_line(&mut self, lines: &mut Lines<'s>, tokens: &mut Vec<Token<'s>>) -> bool {
        let mut reading = Reading {
            language: &mut self.language,
            arena: &self.sources.arena,
            diags: self.diags,
        };
        lines.next_line(&mut reading, tokens)
    }

    fn diags(&mut self) -> &mut Diags {
        self.diags
    }

    fn include(&mut self, include: &Statement<'s>) -> Vec<Statement<'s>> {
        self.read_include(include)
    }
}

fn too_many_files() -> String {
    format!(
        "found more than {MAX_FILES} files to read, repeats counted (limit), \
         expected fewer: an include mesh?"
    )
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

fn display_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        ".".to_string()
    } else {
        dir.display().to_string()
    }
}
