//! Splits keepalived.conf text into tokens, line by line.
//!
//! keepalived reads its configuration one line at a time: a line holds one
//! keyword and its arguments, `!` or `#` at the start of a word begins a comment,
//! `"..."` is one argument, and `{` / `}` stand on their own even when written
//! against a word (`real_server 10.0.0.1 80{`).
//!
//! Tokens borrow their text from the line and carry a bare column: the parser
//! copies out only what a statement keeps, so lexing allocates nothing per
//! token (a megabyte of configuration is over 100,000 of them). Lines are
//! found by the same pass over the bytes that finds the tokens.

use crate::diagnostic::{Diags, FileId, Pos};
use crate::limits::MAX_LINE_BYTES;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind<'t> {
    Word(&'t str),
    Quoted(&'t str),
    Open,
    Close,
}

impl<'t> TokenKind<'t> {
    /// The text of a word or quoted string, and whether it was quoted.
    pub fn word(self) -> Option<(&'t str, bool)> {
        match self {
            TokenKind::Word(text) => Some((text, false)),
            TokenKind::Quoted(text) => Some((text, true)),
            TokenKind::Open | TokenKind::Close => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'t> {
    pub kind: TokenKind<'t>,
    /// 1-based, in characters.
    pub col: u32,
}

/// The same set keepalived's `isspace` accepts, so that we split lines where it does.
pub(crate) const fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0b' | '\x0c')
}

/// What the lexer asks of every byte, answered by one table load: it looks
/// at each byte of the configuration, a megabyte for thousands of services.
/// Every byte that ends a word is ASCII, so scanning bytes never splits a
/// UTF-8 sequence: the slices taken at these positions are valid `str`s.
///
/// A space within a line (`\n` ends the line instead).
const SPACE: u8 = 1;
/// A space, `\n`, `"`, `{` or `}`.
const ENDS_WORD: u8 = 2;
const CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        if c == b'\n' {
            class[b] = ENDS_WORD;
        } else if is_space(c as char) {
            class[b] = SPACE | ENDS_WORD;
        } else if matches!(c, b'"' | b'{' | b'}') {
            class[b] = ENDS_WORD;
        }
        b += 1;
    }
    class
};

fn is_space_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & SPACE != 0
}

fn ends_word(b: u8) -> bool {
    CLASS[usize::from(b)] & ENDS_WORD != 0
}

/// The length of the line at the start of `bytes`, without its `\n`.
fn line_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len())
}

/// The lines of one text, lexed one at a time as the parser asks for them,
/// so that the tokens of a whole file (a hundred bytes or more for each line)
/// are never in memory at once.
pub struct Lines<'t> {
    /// The text, without a byte order mark.
    text: &'t str,
    /// Where the next line starts; None after the last one.
    next: Option<usize>,
    /// The number of the next line.
    next_no: u32,
    file: FileId,
    /// The number of the line last returned.
    line: u32,
}

impl<'t> Lines<'t> {
    pub fn new(text: &'t str, file: FileId) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Lines {
            text,
            next: Some(0),
            next_no: 1,
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
    /// (Lexing stops as soon as a line is seen to be that long, and nothing
    /// lexed from it is kept or reported.)
    pub fn next_line(&mut self, diags: &mut Diags, tokens: &mut Vec<Token<'t>>) -> bool {
        while let Some(start) = self.next {
            let line_no = self.next_no;
            self.next_no = self.next_no.saturating_add(1);
            let rest = &self.text[start..];
            tokens.clear();
            let len = match lex_line(rest, line_no, self.file, diags, tokens) {
                Some(len) => len,
                None => {
                    tokens.clear();
                    let len = line_len(rest.as_bytes());
                    diags.error(
                        Pos {
                            file: self.file,
                            line: line_no,
                            col: 1,
                        },
                        format!("found a line of {len} bytes, expected at most {MAX_LINE_BYTES}"),
                    );
                    len
                }
            };
            // Past the line's `\n`: the text after the last one is a line too,
            // if empty.
            self.next = (len < rest.len()).then_some(start + len + 1);
            if !tokens.is_empty() {
                self.line = line_no;
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
struct Columns<'t> {
    line: &'t str,
    /// A byte offset and its column.
    byte: usize,
    col: u32,
}

impl<'t> Columns<'t> {
    fn new(line: &'t str) -> Self {
        Columns {
            line,
            byte: 0,
            col: 1,
        }
    }

    /// The column of byte offset `at`, which is at or after the last one asked for.
    fn at(&mut self, at: usize) -> u32 {
        let gap = &self.line.as_bytes()[self.byte..at];
        // On an ASCII line (nearly all of them) a byte is a character.
        let chars = if gap.is_ascii() {
            gap.len()
        } else {
            self.line[self.byte..at].chars().count()
        };
        self.col = self
            .col
            .saturating_add(u32::try_from(chars).unwrap_or(u32::MAX));
        self.byte = at;
        self.col
    }
}

/// Lexes the line at the start of `text` into `tokens`; returns its length
/// in bytes (up to its `\n` or the end of the text), or None as soon as it is
/// seen to be longer than [`MAX_LINE_BYTES`], before any diagnostic about
/// its content is made.
fn lex_line<'t>(
    text: &'t str,
    line_no: u32,
    file: FileId,
    diags: &mut Diags,
    tokens: &mut Vec<Token<'t>>,
) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut cols = Columns::new(text);
    let span = |col: u32| Pos {
        file,
        line: line_no,
        col,
    };
    let within = |len: usize| (len <= MAX_LINE_BYTES).then_some(len);
    let mut i = 0;
    loop {
        while i < bytes.len() && is_space_byte(bytes[i]) {
            i += 1;
        }
        within(i)?;
        let Some(&b) = bytes.get(i) else {
            return Some(i);
        };
        let col = cols.at(i);
        match b {
            b'\n' => return Some(i),
            b'!' | b'#' => return within(i + line_len(&bytes[i..])),
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
                let stop = bytes[start..]
                    .iter()
                    .position(|&c| c == b'"' || c == b'\n')
                    .map_or(bytes.len(), |n| start + n);
                if bytes.get(stop) == Some(&b'"') {
                    tokens.push(Token {
                        kind: TokenKind::Quoted(&text[start..stop]),
                        col,
                    });
                    i = stop + 1;
                    continue;
                }
                let len = within(stop)?;
                diags.error(
                    span(col),
                    "found end of line inside a quoted string, expected a closing `\"`",
                );
                tokens.push(Token {
                    kind: TokenKind::Quoted(&text[start..stop]),
                    col,
                });
                return Some(len);
            }
            _ => {
                let start = i;
                i = bytes[start..]
                    .iter()
                    .position(|&b| ends_word(b))
                    .map_or(bytes.len(), |n| start + n);
                let word = &text[start..i];
                if word.starts_with("//") {
                    // Blog posts annotate configs with C++ style comments. keepalived
                    // would take the annotation as more arguments; say so plainly and
                    // skip it so the rest of the file is still checked.
                    let len = within(start + line_len(&bytes[start..]))?;
                    diags.error(
                        span(col),
                        format!(
                            "found `{}`, expected end of line: keepalived has no `//` comments, \
                             start a comment with `!` or `#`",
                            text[start..len].trim_end()
                        ),
                    );
                    return Some(len);
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
    fn lines_are_numbered_as_written() {
        let mut diags = Diags::default();
        let file = diags.reading(&Arc::from("t.conf"));
        let text = "a\r\n\n  \t\n# c\nb \"q\nc // x \n\"d\" !e\nf";
        let mut lines = Lines::new(text, file);
        let mut tokens = Vec::new();
        let mut seen = Vec::new();
        while lines.next_line(&mut diags, &mut tokens) {
            let line = lines.span(&tokens[0]).line;
            seen.push((line, tokens.iter().map(|t| t.kind).collect::<Vec<_>>()));
        }
        assert_eq!(
            seen,
            vec![
                (1, vec![w("a")]),
                (5, vec![w("b"), TokenKind::Quoted("q")]),
                (6, vec![w("c")]),
                (7, vec![TokenKind::Quoted("d")]),
                (8, vec![w("f")]),
            ]
        );
        let d = diags.into_sorted();
        let at: Vec<(u32, u32)> = d.iter().map(|d| (d.line, d.col)).collect();
        assert_eq!(at, [(5, 3), (6, 3)]);
        assert!(
            d[1].message.starts_with("found `// x`,"),
            "{}",
            d[1].message
        );
    }

    #[test]
    fn a_long_line_is_skipped_whole_and_the_next_is_read() {
        let mut diags = Diags::default();
        let file = diags.reading(&Arc::from("t.conf"));
        // Over the limit in its spaces, in a word and in an unterminated quote.
        for long in [
            format!("a{}b", " ".repeat(MAX_LINE_BYTES)),
            format!("a {}", "b".repeat(MAX_LINE_BYTES)),
            format!("a \"{}", "b".repeat(MAX_LINE_BYTES)),
        ] {
            let text = format!("x\n{long}\ny");
            let mut diags = Diags::default();
            let file = diags.reading(&Arc::from("t.conf"));
            let lines = lex(&text, file, &mut diags);
            assert_eq!(
                lines,
                vec![
                    vec![Token {
                        kind: w("x"),
                        col: 1
                    }],
                    vec![Token {
                        kind: w("y"),
                        col: 1
                    }]
                ]
            );
            let d = diags.into_sorted();
            assert_eq!(d.len(), 1, "{d:?}");
            assert_eq!((d[0].line, d[0].col), (2, 1));
            assert!(d[0].message.contains(&format!("{} bytes", long.len())));
        }
        // At the limit it is read.
        let text = format!("a{}b", " ".repeat(MAX_LINE_BYTES - 2));
        assert_eq!(lex(&text, file, &mut diags).len(), 1);
        assert!(!diags.has_errors());
    }

    #[test]
    fn unterminated_quote_is_reported() {
        let (lines, diags) = kinds("script \"abc");
        assert!(diags.has_errors());
        assert_eq!(lines[0][1], TokenKind::Quoted("abc"));
    }
}
