//! Splits keepalived.conf text into tokens, line by line.
//!
//! keepalived reads its configuration one line at a time: a line holds one
//! keyword and its arguments, `!` or `#` at the start of a word begins a comment,
//! `"..."` is one argument, and `{` / `}` stand on their own even when written
//! against a word (`real_server 10.0.0.1 80{`).
//!
//! Tokens borrow their text from the line and carry a bare line and column:
//! the parser copies out only what a statement keeps, so lexing allocates
//! nothing per token (a megabyte of configuration is over 100,000 of them).

use crate::diagnostic::{Diags, FileId, Pos};
use crate::limits::MAX_LINE_BYTES;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind<'t> {
    Word(&'t str),
    Quoted(&'t str),
    Open,
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'t> {
    pub kind: TokenKind<'t>,
    /// 1-based, in characters.
    pub col: u32,
}

/// The same set keepalived's `isspace` accepts, so that we split lines where it does.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0b' | '\x0c')
}

/// Every byte that ends a word is ASCII, so scanning bytes never splits a
/// UTF-8 sequence: the slices taken at these positions are valid `str`s.
fn ends_word(b: u8) -> bool {
    is_space(char::from(b)) || matches!(b, b'"' | b'{' | b'}')
}

/// The lines of one text, lexed one at a time as the parser asks for them,
/// so that the tokens of a whole file (a hundred bytes or more for each line)
/// are never in memory at once.
pub struct Lines<'t> {
    lines: std::iter::Enumerate<std::str::Split<'t, char>>,
    file: FileId,
    /// The number of the line last returned.
    line: u32,
}

impl<'t> Lines<'t> {
    pub fn new(text: &'t str, file: FileId) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Lines {
            lines: text.split('\n').enumerate(),
            file,
            line: 0,
        }
    }

    /// Where `token` of the line last returned is.
    pub fn span(&self, token: &Token<'_>) -> Pos {
        Pos {
            file: self.file,
            line: self.line,
            col: token.col,
        }
    }

    /// Fills `tokens` with those of the next line that has any; false at the
    /// end of the text. `tokens` is the caller's, reused from line to line.
    ///
    /// A line longer than [`MAX_LINE_BYTES`] is reported once and skipped, not
    /// lexed: it is no configuration line (keepalived would cut it), and its
    /// content, say a megabyte of braces, would only bury the report in noise.
    pub fn next_line(&mut self, diags: &mut Diags, tokens: &mut Vec<Token<'t>>) -> bool {
        tokens.clear();
        for (index, line) in self.lines.by_ref() {
            let line_no = u32::try_from(index + 1).unwrap_or(u32::MAX);
            if line.len() > MAX_LINE_BYTES {
                diags.error(
                    Pos {
                        file: self.file,
                        line: line_no,
                        col: 1,
                    },
                    format!(
                        "found a line of {} bytes, expected at most {MAX_LINE_BYTES}",
                        line.len()
                    ),
                );
                continue;
            }
            self.line = line_no;
            lex_line(line, line_no, self.file, diags, tokens);
            if !tokens.is_empty() {
                return true;
            }
        }
        false
    }
}

/// Lexes `text`; returns the non-empty lines, each a list of tokens.
#[cfg(test)]
pub fn lex<'t>(text: &'t str, file: FileId, diags: &mut Diags) -> Vec<Vec<Token<'t>>> {
    let mut lines = Lines::new(text, file);
    let mut out = Vec::new();
    let mut tokens = Vec::new();
    while lines.next_line(diags, &mut tokens) {
        out.push(tokens.clone());
    }
    out
}

/// Columns count characters, tokens are found by byte offset: this converts,
/// moving forward only, so a line costs one pass however many tokens it has.
/// On an ASCII line (nearly all of them) a byte is a character.
struct Columns<'t> {
    line: &'t str,
    ascii: bool,
    /// A byte offset and its column.
    byte: usize,
    col: u32,
}

impl<'t> Columns<'t> {
    fn new(line: &'t str) -> Self {
        Columns {
            line,
            ascii: line.is_ascii(),
            byte: 0,
            col: 1,
        }
    }

    /// The column of byte offset `at`, which is at or after the last one asked for.
    fn at(&mut self, at: usize) -> u32 {
        if self.ascii {
            return u32::try_from(at + 1).unwrap_or(u32::MAX);
        }
        let chars = self.line[self.byte..at].chars().count();
        self.col = self
            .col
            .saturating_add(u32::try_from(chars).unwrap_or(u32::MAX));
        self.byte = at;
        self.col
    }
}

fn lex_line<'t>(
    line: &'t str,
    line_no: u32,
    file: FileId,
    diags: &mut Diags,
    tokens: &mut Vec<Token<'t>>,
) {
    let bytes = line.as_bytes();
    let mut cols = Columns::new(line);
    let span = |col: u32| Pos {
        file,
        line: line_no,
        col,
    };
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_space(char::from(b)) {
            i += 1;
            continue;
        }
        let col = cols.at(i);
        match b {
            b'!' | b'#' => break,
            b'{' => {
                tokens.push(Token {
                    kind: TokenKind::Open,
                    col,
                });
                i += 1;
            }
            b'}' => {
                tokens.push(Token {
                    kind: TokenKind::Close,
                    col,
                });
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                let end = bytes[start..]
                    .iter()
                    .position(|&c| c == b'"')
                    .map(|p| start + p);
                let stop = end.unwrap_or(bytes.len());
                if end.is_none() {
                    diags.error(
                        span(col),
                        "found end of line inside a quoted string, expected a closing `\"`",
                    );
                }
                tokens.push(Token {
                    kind: TokenKind::Quoted(&line[start..stop]),
                    col,
                });
                i = stop + 1;
            }
            _ => {
                let start = i;
                while i < bytes.len() && !ends_word(bytes[i]) {
                    i += 1;
                }
                let word = &line[start..i];
                if word.starts_with("//") {
                    // Blog posts annotate configs with C++ style comments. keepalived
                    // would take the annotation as more arguments; say so plainly and
                    // skip it so the rest of the file is still checked.
                    diags.error(
                        span(col),
                        format!(
                            "found `{}`, expected end of line: keepalived has no `//` comments, \
                             start a comment with `!` or `#`",
                            line[start..].trim_end()
                        ),
                    );
                    break;
                }
                tokens.push(Token {
                    kind: TokenKind::Word(word),
                    col,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn kinds(text: &str) -> (Vec<Vec<TokenKind<'_>>>, Diags) {
        let mut diags = Diags::default();
        let file = diags.reading(&Arc::from("t.conf"));
        let lines = lex(text, file, &mut diags)
            .into_iter()
            .map(|l| l.into_iter().map(|t| t.kind).collect())
            .collect();
        (lines, diags)
    }

    fn w(s: &str) -> TokenKind<'_> {
        TokenKind::Word(s)
    }

    #[test]
    fn comments_braces_and_quotes() {
        let (lines, diags) =
            kinds("! header\nvrrp_script chk{ # trailing\n  script \"killall -0 node\"\n}}\n\n");
        assert!(!diags.has_errors());
        assert_eq!(
            lines,
            vec![
                vec![w("vrrp_script"), w("chk"), TokenKind::Open],
                vec![w("script"), TokenKind::Quoted("killall -0 node")],
                vec![TokenKind::Close, TokenKind::Close],
            ]
        );
    }

    #[test]
    fn comment_char_inside_a_word_is_part_of_it() {
        let (lines, _) = kinds("auth_pass ab#c!d");
        assert_eq!(lines, vec![vec![w("auth_pass"), w("ab#c!d")]]);
    }

    #[test]
    fn slash_comment_is_an_error_at_its_column() {
        let mut diags = Diags::default();
        let file = diags.reading(&Arc::from("t.conf"));
        let lines = lex("state BACKUP\t// 改成BACKUP\n", file, &mut diags);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), 2);
        let d = diags.into_sorted();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].line, d[0].col), (1, 14));
    }

    #[test]
    fn columns_count_characters() {
        let mut diags = Diags::default();
        let file = diags.reading(&Arc::from("t.conf"));
        let lines = lex("é x \"ü ü\" y{ }\n\u{feff}z é{", file, &mut diags);
        let cols: Vec<Vec<u32>> = lines
            .iter()
            .map(|l| l.iter().map(|t| t.col).collect())
            .collect();
        // A byte order mark is skipped at the start of the text only: elsewhere
        // it is a character of a word.
        assert_eq!(cols, vec![vec![1, 3, 5, 11, 12, 14], vec![1, 4, 5]]);
    }

    #[test]
    fn unterminated_quote_is_reported() {
        let (lines, diags) = kinds("script \"abc");
        assert!(diags.has_errors());
        assert_eq!(lines[0][1], TokenKind::Quoted("abc"));
    }
}
