//! Reads configuration files and splices `include` statements in place.
//!
//! As in keepalived, `include PATTERN` may appear at any level, PATTERN is a
//! glob taken relative to the directory of the file that includes it, and the
//! matching files are read in name order. A file that includes itself, directly
//! or through others, is reported instead of being read again.
//!
//! A file may be included more than once (one snippet in many blocks), so
//! files that include each other by glob can still expand to factorially many
//! paths; what ends that, and any other runaway, are the per-load limits of
//! [`crate::limits`]: once the files opened, the bytes read or the paths
//! looked at by globs reach theirs, the include that crossed it is reported
//! and no further include is followed.

use std::cell::{Cell, OnceCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diagnostic::Diags;
use crate::limits::{MAX_FILES, MAX_GLOB_ENTRIES, MAX_INCLUDE_DEPTH, MAX_TOTAL_BYTES};

use super::glob::{self, GlobError};
use super::lexer::Lines;
use super::parser::{Statement, parse};
use super::source::{ReadError, read_config};

/// The texts of the files one load reads, kept for as long as its
/// statements, which borrow their words from them (no allocation per word).
///
/// Includes are found while the tree is being built, so texts are added while
/// earlier ones are borrowed: each goes into a slot of its own, set once,
/// and the slots never move. The loader opens at most [`MAX_FILES`] files,
/// so that many slots are enough.
pub(crate) struct Sources {
    slots: Box<[OnceCell<String>]>,
    used: Cell<usize>,
}

impl Sources {
    pub fn new() -> Self {
        Sources {
            slots: (0..MAX_FILES).map(|_| OnceCell::new()).collect(),
            used: Cell::new(0),
        }
    }

    /// Keeps `text` until the end of the load; None if every slot is taken,
    /// which the loader's count of files opened prevents.
    fn keep(&self, text: String) -> Option<&str> {
        let slot = self.slots.get(self.used.get())?;
        self.used.set(self.used.get() + 1);
        Some(slot.get_or_init(|| text))
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
    /// Files being read, outermost first, as canonical paths.
    stack: Vec<PathBuf>,
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
    pub fn new(sources: &'s Sources, diags: &'d mut Diags) -> Self {
        Loader {
            sources,
            diags,
            stack: Vec::new(),
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
                let stmts = self.parse_text(text, &name, parent(path), 0);
                self.stack.pop();
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
        let path = Path::new(name);
        self.enter(path);
        let stmts = self.parse_text(text, name, parent(path), 0);
        self.stack.pop();
        stmts
    }

    fn spend_bytes(&mut self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.bytes_left = self.bytes_left.saturating_sub(n);
    }

    fn enter(&mut self, path: &Path) {
        self.files.push(path.to_path_buf());
        self.stack
            .push(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
    }

    fn parse_text(
        &mut self,
        text: &'s str,
        name: &str,
        dir: &Path,
        depth: usize,
    ) -> Vec<Statement<'s>> {
        let file = self.diags.reading(&Arc::from(name));
        let mut stmts = parse(Lines::new(text, file), self.diags);
        // Every keyword is a slice of the text: one that never spells
        // `include` has nothing to splice, and its tree is not walked again.
        if text.contains("include") {
            self.expand(&mut stmts, dir, depth);
        }
        stmts
    }

    /// Replaces each `include` in `stmts`, at any depth, with the statements
    /// of the files it names, in the order written.
    ///
    /// A list without an include (nearly every block) stays where it is: only
    /// its blocks are walked, so the tree is not rebuilt to splice nothing.
    fn expand(&mut self, stmts: &mut Vec<Statement<'s>>, dir: &Path, depth: usize) {
        if !stmts.iter().any(|stmt| stmt.keyword == "include") {
            for stmt in stmts.iter_mut() {
                if let Some(block) = stmt.block.as_mut() {
                    self.expand(&mut block.statements, dir, depth);
                }
            }
            return;
        }
        let written = std::mem::take(stmts);
        stmts.reserve(written.len());
        for mut stmt in written {
            if stmt.keyword == "include" {
                stmts.extend(self.include(&stmt, dir, depth));
                continue;
            }
            if let Some(block) = stmt.block.as_mut() {
                self.expand(&mut block.statements, dir, depth);
            }
            stmts.push(stmt);
        }
    }

    fn include(&mut self, stmt: &Statement<'_>, dir: &Path, depth: usize) -> Vec<Statement<'s>> {
        let Some(pattern) = stmt.args.first() else {
            self.diags.error(
                stmt.span,
                "found end of line after `include`, expected a file name or glob",
            );
            return Vec::new();
        };
        if let Some(extra) = stmt.args.get(1) {
            self.diags.error(
                extra.span,
                format!(
                    "found `{}`, expected end of line after `include {}`",
                    extra.text, pattern.text
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
            let looked_in = if Path::new(&pattern.text).is_absolute() {
                "/".to_string()
            } else {
                display_dir(dir)
            };
            let not_inside = expansion
                .skipped
                .map(|(skipped, fs)| {
                    format!(
                        ", not inside {}: {fs} holds kernel state, not configuration",
                        skipped.display()
                    )
                })
                .unwrap_or_default();
            self.diags.error(
                pattern.span,
                format!(
                    "found no file matching `{}` (looked in {looked_in}{not_inside}), \
                     expected at least one file to include",
                    pattern.text,
                ),
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        for path in expansion.paths {
            // A limit reached deeper down ends this include too.
            if self.stopped {
                break;
            }
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if self.stack.contains(&canonical) {
                self.diags.error(
                    pattern.span,
                    format!(
                        "found an include cycle: `{}` is already being read, expected a file \
                         that does not include itself",
                        path.display()
                    ),
                );
                continue;
            }
            if self.opened >= MAX_FILES {
                self.diags.error(pattern.span, too_many_files());
                self.stopped = true;
                break;
            }
            self.opened += 1;
            let bytes = match read_config(&path, self.bytes_left) {
                Ok(bytes) => bytes,
                Err(ReadError::Io(e)) => {
                    self.diags.error(
                        pattern.span,
                        format!("cannot read included file `{}`: {e}", path.display()),
                    );
                    continue;
                }
                Err(ReadError::Refused { what, expected }) => {
                    self.diags.error(
                        pattern.span,
                        format!("found `{}`, {what}, expected {expected}", path.display()),
                    );
                    continue;
                }
                Err(ReadError::TooLarge(_)) => {
                    self.diags.error(
                        pattern.span,
                        format!(
                            "found more than {MAX_TOTAL_BYTES} bytes to read with `{}` \
                             (limit), expected fewer: a huge or endless file?",
                            path.display()
                        ),
                    );
                    self.stopped = true;
                    break;
                }
            };
            self.spend_bytes(bytes.len());
            let Some(text) = self.sources.keep(text_of(bytes)) else {
                self.diags.error(pattern.span, too_many_files());
                self.stopped = true;
                break;
            };
            let name = path.display().to_string();
            self.files.push(path.clone());
            self.stack.push(canonical);
            out.extend(self.parse_text(text, &name, parent(&path), depth + 1));
            self.stack.pop();
        }
        out
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
