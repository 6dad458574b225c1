//! Splits keepalived.conf text into tokens, line by line.
//!
//! keepalived reads its configuration one line at a time: a line holds one
//! keyword and its arguments, `!` or `#` at the start of a word begins a comment,
//! `"..."` is one argument, and `{` / `}` stand on their own even when written
//! against a word (`real_server 10.0.0.1 80{`).

use std::sync::Arc;

use crate::diagnostic::{Diags, Span};
use crate::limits::MAX_LINE_BYTES;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Word(String),
    Quoted(String),
    Open,
    Close,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

/// The same set keepalived's `isspace` accepts, so that we split lines where it does.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0b' | '\x0c')
}

fn ends_word(c: char) -> bool {
    is_space(c) || matches!(c, '"' | '{' | '}')
}

/// The lines of one text, lexed one at a time as the parser asks for them,
/// so that the tokens of a whole file (a hundred bytes or more for each line)
/// are never in memory at once.
pub struct Lines<'t> {
    lines: std::iter::Enumerate<std::str::Split<'t, char>>,
    file: Arc<str>,
}

impl<'t> Lines<'t> {
    pub fn new(text: &'t str, file: &Arc<str>) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Lines {
            lines: text.split('\n').enumerate(),
            file: file.clone(),
        }
    }

    /// The tokens of the next line that has any.
    ///
    /// A line longer than [`MAX_LINE_BYTES`] is reported once and skipped, not
    /// lexed: it is no configuration line (keepalived would cut it), and its
    /// content, say a megabyte of braces, would only bury the report in noise.
    pub fn next_line(&mut self, diags: &mut Diags) -> Option<Vec<Token>> {
        for (index, line) in self.lines.by_ref() {
            let line_no = u32::try_from(index + 1).unwrap_or(u32::MAX);
            if line.len() > MAX_LINE_BYTES {
                diags.error(
                    &Span {
                        file: self.file.clone(),
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
            let tokens = lex_line(line, line_no, &self.file, diags);
            if !tokens.is_empty() {
                return Some(tokens);
            }
        }
        None
    }
}

/// Lexes `text`; returns the non-empty lines, each a list of tokens.
#[cfg(test)]
pub fn lex(text: &str, file: &Arc<str>, diags: &mut Diags) -> Vec<Vec<Token>> {
    let mut lines = Lines::new(text, file);
    let mut out = Vec::new();
    while let Some(tokens) = lines.next_line(diags) {
        out.push(tokens);
    }
    out
}

fn lex_line(line: &str, line_no: u32, file: &Arc<str>, diags: &mut Diags) -> Vec<Token> {
    let chars: Vec<char> = line.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let span = |i: usize| Span {
        file: file.clone(),
        line: line_no,
        col: u32::try_from(i + 1).unwrap_or(u32::MAX),
    };
    while i < chars.len() {
        let c = chars[i];
        if is_space(c) {
            i += 1;
            continue;
        }
        match c {
            '!' | '#' => break,
            '{' => {
                tokens.push(Token {
                    kind: TokenKind::Open,
                    span: span(i),
                });
                i += 1;
            }
            '}' => {
                tokens.push(Token {
                    kind: TokenKind::Close,
                    span: span(i),
                });
                i += 1;
            }
            '"' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '"')
                    .map(|p| start + p);
                let stop = end.unwrap_or(chars.len());
                if end.is_none() {
                    diags.error(
                        &span(i),
                        "found end of line inside a quoted string, expected a closing `\"`",
                    );
                }
                tokens.push(Token {
                    kind: TokenKind::Quoted(chars[start..stop].iter().collect()),
                    span: span(i),
                });
                i = stop + 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !ends_word(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if word.starts_with("//") {
                    // Blog posts annotate configs with C++ style comments. keepalived
                    // would take the annotation as more arguments; say so plainly and
                    // skip it so the rest of the file is still checked.
                    let rest: String = chars[start..].iter().collect();
                    diags.error(
                        &span(start),
                        format!(
                            "found `{}`, expected end of line: keepalived has no `//` comments, \
                             start a comment with `!` or `#`",
                            rest.trim_end()
                        ),
                    );
                    break;
                }
                tokens.push(Token {
                    kind: TokenKind::Word(word),
                    span: span(start),
                });
            }
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> (Vec<Vec<TokenKind>>, Diags) {
        let mut diags = Diags::default();
        let file: Arc<str> = Arc::from("t.conf");
        let lines = lex(text, &file, &mut diags)
            .into_iter()
            .map(|l| l.into_iter().map(|t| t.kind).collect())
            .collect();
        (lines, diags)
    }

    fn w(s: &str) -> TokenKind {
        TokenKind::Word(s.to_string())
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
                vec![
                    w("script"),
                    TokenKind::Quoted("killall -0 node".to_string())
                ],
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
        let file: Arc<str> = Arc::from("t.conf");
        let lines = lex("state BACKUP\t// 改成BACKUP\n", &file, &mut diags);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), 2);
        let d = diags.into_sorted();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].line, d[0].col), (1, 14));
    }

    #[test]
    fn unterminated_quote_is_reported() {
        let (lines, diags) = kinds("script \"abc");
        assert!(diags.has_errors());
        assert_eq!(lines[0][1], TokenKind::Quoted("abc".to_string()));
    }
}
