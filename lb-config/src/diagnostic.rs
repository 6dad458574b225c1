//! Diagnostics: where something is wrong in the configuration and why.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", render(diagnostics))]
pub struct Errors {
    pub diagnostics: Vec<Diagnostic>,
}

impl Errors {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| !d.is_error())
    }
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out.push_str(&format!(
        "{errors} error{} found",
        if errors == 1 { "" } else { "s" }
    ));
    out
}

/// Collects diagnostics while a configuration is read.
#[derive(Debug, Default)]
pub(crate) struct Diags {
    list: Vec<Diagnostic>,
    /// Files in the order they were read, so diagnostics follow reading order.
    files: Vec<String>,
}

impl Diags {
    /// Notes that `file` is being read; its diagnostics sort after earlier files'.
    pub fn reading(&mut self, file: &str) {
        if !self.files.iter().any(|f| f == file) {
            self.files.push(file.to_string());
        }
    }

    pub fn error(&mut self, at: &Span, message: impl fmt::Display) {
        self.push(at, Severity::Error, message);
    }

    pub fn warn(&mut self, at: &Span, message: impl fmt::Display) {
        self.push(at, Severity::Warning, message);
    }

    /// A problem about a whole file rather than a place in it.
    pub fn file_error(&mut self, file: &str, message: impl fmt::Display) {
        self.list.push(Diagnostic {
            file: file.to_string(),
            line: 0,
            col: 0,
            severity: Severity::Error,
            message: message.to_string(),
        });
    }

    fn push(&mut self, at: &Span, severity: Severity, message: impl fmt::Display) {
        self.list.push(Diagnostic {
            file: at.file.to_string(),
            line: at.line,
            col: at.col,
            severity,
            message: message.to_string(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(Diagnostic::is_error)
    }

    /// Sorted by place (files in reading order) so that output reads top to
    /// bottom; the sort is stable, so two problems at one place keep the order
    /// they were found in.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        let files = std::mem::take(&mut self.files);
        let rank = |file: &str| files.iter().position(|f| f == file).unwrap_or(usize::MAX);
        self.list.sort_by(|a, b| {
            (rank(&a.file), &a.file, a.line, a.col).cmp(&(rank(&b.file), &b.file, b.line, b.col))
        });
        self.list.dedup();
        self.list
    }
}
