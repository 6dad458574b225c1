//! Diagnostics: where something is wrong in the configuration and why.

use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::limits::{MAX_ERRORS, MAX_WARNINGS};

/// A position in a configuration file (1-based line and column, columns count characters).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One reading of a file in this load, numbered by [`Diags::reading`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId(u32);

impl FileId {
    /// The first reading of a load (its main file).
    pub(crate) const FIRST: FileId = FileId(0);
}

/// A position in a file being read: what the statement tree records for
/// every word. Unlike a [`Span`] it is `Copy` and holds no `Arc`, so a tree
/// of a hundred thousand words costs no reference counting; the file's name
/// is looked up when a diagnostic or an [`crate::Origin`] needs it
/// ([`Diags::span`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: FileId,
    pub line: u32,
    pub col: u32,
}

/// What a diagnostic points at: a place in the text being read, or one
/// recorded in the model (an [`crate::Origin`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum At<'a> {
    Pos(Pos),
    Span(&'a Span),
}

impl From<Pos> for At<'_> {
    fn from(pos: Pos) -> Self {
        At::Pos(pos)
    }
}

impl<'a> From<&'a Span> for At<'a> {
    fn from(span: &'a Span) -> Self {
        At::Span(span)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in the configuration.
///
/// Displays as `file:line:col: error: message`. `line` and `col` are 0 for
/// problems about a whole file (for example one that cannot be read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, self.severity, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.col, self.severity, self.message
            )
        }
    }
}

/// Every error found in one run, together with the warnings, in file order.
///
/// At most [`MAX_ERRORS`] errors and [`MAX_WARNINGS`] warnings are kept, the
/// earliest in the files; when more were found, the last diagnostic of each
/// severity says how many were left out (`... N more error(s) not shown`) and
/// [`Errors::errors_not_shown`] counts them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", render(self))]
pub struct Errors {
    pub diagnostics: Vec<Diagnostic>,
    /// Errors found but not kept in `diagnostics` (beyond [`MAX_ERRORS`]).
    pub errors_not_shown: usize,
}

impl Errors {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }

    /// How many errors were found, shown or not.
    pub fn error_count(&self) -> usize {
        let summary = usize::from(self.errors_not_shown > 0);
        self.errors().count() - summary + self.errors_not_shown
    }
}

fn render(errors: &Errors) -> String {
    let count = errors.error_count();
    let mut out = String::new();
    for d in &errors.diagnostics {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out.push_str(&format!(
        "{count} error{} found",
        if count == 1 { "" } else { "s" }
    ));
    out
}

/// Where a diagnostic sorts: files in reading order, then line and column,
/// then the order found, so two problems at one place keep that order.
#[derive(Clone, Debug)]
struct Place {
    file_rank: usize,
    file: Arc<str>,
    line: u32,
    col: u32,
    seq: u64,
}

impl Place {
    fn key(&self) -> (usize, u32, u32, u64) {
        (self.file_rank, self.line, self.col, self.seq)
    }
}

impl PartialEq for Place {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Place {}

impl PartialOrd for Place {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Place {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Files of one rank are one file, except those never read (rank
        // usize::MAX), which sort by name. The names are compared only then:
        // this runs for every diagnostic of a flood.
        let by_name = || {
            if Arc::ptr_eq(&self.file, &other.file) {
                std::cmp::Ordering::Equal
            } else {
                self.file.cmp(&other.file)
            }
        };
        self.file_rank
            .cmp(&other.file_rank)
            .then_with(|| {
                if self.file_rank == usize::MAX {
                    by_name()
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .then_with(|| self.key().cmp(&other.key()))
    }
}

#[derive(Debug)]
struct Kept {
    place: Place,
    diagnostic: Diagnostic,
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.place == other.place
    }
}

impl Eq for Kept {}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kept {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.place.cmp(&other.place)
    }
}

/// The diagnostics of one severity: the `cap` earliest in the files, and a
/// count of the others. A max-heap, so the latest kept one is the one a new,
/// earlier diagnostic displaces; the message of a diagnostic that will not be
/// kept is never formatted, so a flood of them costs a comparison each.
#[derive(Debug)]
struct Bounded {
    cap: usize,
    kept: BinaryHeap<Kept>,
    dropped: usize,
}

impl Bounded {
    fn new(cap: usize) -> Self {
        Bounded {
            cap,
            kept: BinaryHeap::new(),
            dropped: 0,
        }
    }

    fn push(&mut self, place: Place, make: impl FnOnce() -> Diagnostic) {
        let full = self.kept.len() >= self.cap;
        if full && self.kept.peek().is_none_or(|latest| place >= latest.place) {
            self.dropped += 1;
            return;
        }
        let diagnostic = make();
        // The same problem twice (one snippet included in several blocks) is
        // shown once.
        let same = |k: &Kept| {
            let d = &k.diagnostic;
            (d.line, d.col) == (diagnostic.line, diagnostic.col) && *d == diagnostic
        };
        if self.kept.iter().any(same) {
            return;
        }
        self.kept.push(Kept { place, diagnostic });
        if self.kept.len() > self.cap {
            self.kept.pop();
            self.dropped += 1;
        }
    }

    fn len(&self) -> usize {
        self.kept.len() + self.dropped
    }
}

/// One reading of a file, or of a parameter's value substituted somewhere.
#[derive(Debug)]
struct Reading {
    name: Arc<str>,
    /// Its rank in [`Diags::files`]: a file included twice is read twice,
    /// and ranks as first read.
    rank: usize,
    /// For text put in place of a `$NAME`: which parameter, and where the
    /// `$NAME` was written (itself perhaps substituted text).
    via: Option<Via>,
}

#[derive(Debug)]
struct Via {
    parameter: Arc<str>,
    at: Pos,
    /// Substitutions this one is nested in, plus one.
    depth: usize,
}

/// Collects diagnostics while a configuration is read.
#[derive(Debug)]
pub(crate) struct Diags {
    errors: Bounded,
    warnings: Bounded,
    /// Problems keepalived tolerates are errors rather than warnings
    /// (`xlb check --strict`).
    strict: bool,
    /// Files in the order they were first read, so diagnostics follow reading order.
    files: HashMap<Arc<str>, usize>,
    /// Every reading, by [`FileId`].
    readings: Vec<Reading>,
    /// The main file, named in the `... more not shown` summary.
    first_file: Option<Arc<str>>,
    /// The file of the last diagnostic and its rank: floods come from one
    /// file, whose spans share one `Arc`, so this spares hashing its name.
    last_rank: Option<(Arc<str>, usize)>,
    seq: u64,
    /// While a block is read once per expansion (a virtual_server group with several ports):
    /// what was said, so that each diagnostic is said once.
    said: Option<std::collections::HashSet<(usize, u32, u32, String)>>,
}

impl Default for Diags {
    fn default() -> Self {
        Diags {
            errors: Bounded::new(MAX_ERRORS),
            warnings: Bounded::new(MAX_WARNINGS),
            strict: false,
            files: HashMap::new(),
            readings: Vec::new(),
            first_file: None,
            last_rank: None,
            seq: 0,
            said: None,
        }
    }
}

impl Diags {
    /// Diagnostics of a load that refuses what keepalived only tolerates.
    pub fn strict() -> Self {
        Diags {
            strict: true,
            ..Diags::default()
        }
    }

    /// Notes that `file` is being read; its diagnostics sort after earlier
    /// files'. Positions in it name it by the id returned.
    pub fn reading(&mut self, file: &Arc<str>) -> FileId {
        let next = self.files.len();
        let rank = *self.files.entry(file.clone()).or_insert(next);
        self.first_file.get_or_insert_with(|| file.clone());
        // The cached rank may be that of this file before it was read.
        self.last_rank = None;
        // At most MAX_FILES readings, far below u32::MAX.
        self.push_reading(Reading {
            name: file.clone(),
            rank,
            via: None,
        })
    }

    /// Text written at `written` (in a parameter's value) being put in place
    /// of `$parameter` at `at`: positions in it keep their line and column in
    /// the value, in the reading returned, whose diagnostics also name where
    /// the parameter was used. Returns None when `at` is already nested
    /// `max_depth` substitutions deep.
    pub fn substitution(
        &mut self,
        written: FileId,
        parameter: &Arc<str>,
        at: Pos,
        max_depth: usize,
    ) -> Option<FileId> {
        let depth = self.substitution_depth(at) + 1;
        if depth > max_depth {
            return None;
        }
        let source = &self.readings[written.0 as usize];
        let reading = Reading {
            name: source.name.clone(),
            rank: source.rank,
            via: Some(Via {
                parameter: parameter.clone(),
                at,
                depth,
            }),
        };
        Some(self.push_reading(reading))
    }

    /// How many substitutions `pos` is nested in (0 for text as written).
    pub fn substitution_depth(&self, pos: Pos) -> usize {
        self.readings[pos.file.0 as usize]
            .via
            .as_ref()
            .map_or(0, |via| via.depth)
    }

    /// Where the outermost `$NAME` that put `pos` in place was written
    /// (`pos` itself for text as written).
    pub fn written_at(&self, mut pos: Pos) -> Pos {
        while let Some(via) = &self.readings[pos.file.0 as usize].via {
            pos = via.at;
        }
        pos
    }

    fn push_reading(&mut self, reading: Reading) -> FileId {
        // At most MAX_FILES readings of files and a bounded number of
        // substitutions (crate::limits), far below u32::MAX.
        let id = FileId(u32::try_from(self.readings.len()).unwrap_or(u32::MAX));
        self.readings.push(reading);
        id
    }

    /// The span of `pos`, to keep in the model.
    pub fn span(&self, pos: Pos) -> Span {
        Span {
            file: self.readings[pos.file.0 as usize].name.clone(),
            line: pos.line,
            col: pos.col,
        }
    }

    /// Where substituted text at `pos` came from, for messages:
    /// ` (in `$B` at k.conf:3:9, in `$A` at k.conf:7:14)`; empty for text as
    /// written.
    fn substituted_from(&self, mut pos: Pos) -> String {
        let mut note = String::new();
        while let Some(via) = &self.readings[pos.file.0 as usize].via {
            note.push_str(if note.is_empty() {
                " (in `$"
            } else {
                ", in `$"
            });
            note.push_str(&via.parameter);
            note.push_str("` at ");
            note.push_str(&self.span(via.at).to_string());
            pos = via.at;
        }
        if !note.is_empty() {
            note.push(')');
        }
        note
    }

    pub fn error<'a>(&mut self, at: impl Into<At<'a>>, message: impl fmt::Display) {
        self.push(at.into(), Severity::Error, message);
    }

    pub fn warn<'a>(&mut self, at: impl Into<At<'a>>, message: impl fmt::Display) {
        self.push(at.into(), Severity::Warning, message);
    }

    /// Something keepalived reads past, logging a line, and so does xlb: a
    /// warning that says what keepalived (and xlb) do instead, or an error
    /// under `--strict`.
    pub fn tolerate<'a>(&mut self, at: impl Into<At<'a>>, message: impl fmt::Display) {
        if self.strict {
            self.push(
                at.into(),
                Severity::Error,
                format_args!("{message} (refused by --strict)"),
            );
        } else {
            self.push(at.into(), Severity::Warning, message);
        }
    }

    /// A problem about a whole file rather than a place in it.
    pub fn file_error(&mut self, file: &str, message: impl fmt::Display) {
        let span = Span {
            file: Arc::from(file),
            line: 0,
            col: 0,
        };
        self.push(At::Span(&span), Severity::Error, message);
    }

    /// From now on until [`Diags::say_repeats`], a diagnostic made again at the same place
    /// with the same words is dropped.
    pub fn say_once(&mut self) {
        self.said = Some(Default::default());
    }

    pub fn say_repeats(&mut self) {
        self.said = None;
    }

    fn push(&mut self, at: At<'_>, severity: Severity, message: impl fmt::Display) {
        let mut note = String::new();
        let (file, file_rank, line, col) = match at {
            At::Pos(pos) => {
                let reading = &self.readings[pos.file.0 as usize];
                if reading.via.is_some() {
                    note = self.substituted_from(pos);
                }
                (&reading.name, reading.rank, pos.line, pos.col)
            }
            At::Span(span) => {
                let rank = match &self.last_rank {
                    Some((last, rank)) if Arc::ptr_eq(last, &span.file) => *rank,
                    _ => {
                        // A file not (yet) read, such as a main file that
                        // cannot be opened, sorts last.
                        let rank = self.files.get(&span.file).copied().unwrap_or(usize::MAX);
                        self.last_rank = Some((span.file.clone(), rank));
                        rank
                    }
                };
                (&span.file, rank, span.line, span.col)
            }
        };
        if let Some(said) = &mut self.said
            && !said.insert((file_rank, line, col, format!("{message}{note}")))
        {
            return;
        }
        self.seq += 1;
        let place = Place {
            file_rank,
            file: file.clone(),
            line,
            col,
            seq: self.seq,
        };
        let make = || Diagnostic {
            file: file.to_string(),
            line,
            col,
            severity,
            message: format!("{message}{note}"),
        };
        match severity {
            Severity::Error => self.errors.push(place, make),
            Severity::Warning => self.warnings.push(place, make),
        }
    }

    pub fn has_errors(&self) -> bool {
        self.errors.len() > 0
    }

    pub fn errors_not_shown(&self) -> usize {
        self.errors.dropped
    }

    /// Sorted by place (files in reading order) so that output reads top to
    /// bottom, each severity's `... N more not shown` last.
    pub fn into_sorted(self) -> Vec<Diagnostic> {
        let mut kept: Vec<Kept> = self.errors.kept.into_iter().collect();
        kept.extend(self.warnings.kept);
        kept.sort();
        let mut list: Vec<Diagnostic> = kept.into_iter().map(|k| k.diagnostic).collect();
        let file = self.first_file.as_deref().unwrap_or_default();
        for (severity, dropped) in [
            (Severity::Error, self.errors.dropped),
            (Severity::Warning, self.warnings.dropped),
        ] {
            if dropped > 0 {
                list.push(Diagnostic {
                    file: file.to_string(),
                    line: 0,
                    col: 0,
                    severity,
                    message: format!("... {dropped} more {severity}(s) not shown"),
                });
            }
        }
        list
    }
}
