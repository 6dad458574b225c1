//! Splits keepalived.conf text into tokens, line by line.
//!
//! keepalived reads its configuration one line at a time: a line holds one
//! keyword and its arguments, `!` or `#` outside quotes begins a comment
//! (anywhere, even inside a word: keepalived.conf(5)), `"..."` is one
//! argument, `{` / `}` stand on their own even when written against a word
//! (`real_server 10.0.0.1 80{`), and `include` takes the rest of its line as
//! one pattern.
//!
//! Tokens borrow their text from the line and carry a bare column: the parser
//! copies out only what a statement keeps, so lexing allocates nothing per
//! token (a megabyte of configuration is over 100,000 of them). Lines are
//! found by the same pass over the bytes that finds the tokens.
//!
//! A line that uses keepalived's language above keywords (a conditional `@`
//! or a sequence `~` at its start, a `$` parameter, a `\#` escape) is seen to
//! by the same pass, which stops there; the line is then rewritten by
//! [`super::language`] and lexed again. Its tokens borrow from the rewritten
//! line, kept in the load's arena, and their positions come from where each
//! byte was typed.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use crate::diagnostic::{Diags, FileId, Pos};
use crate::limits::MAX_LINE_BYTES;

use super::arena::Arena;
use super::language::{Context, Language, Read};
use super::mapped::{Mapped, Positions};

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
    /// The byte offset in the line.
    pub at: u32,
}

/// The keywords that take the rest of their line as a file name or glob:
/// keepalived's `include` and its variants, which add checks (a pattern
/// that matches no file is then an error).
pub const INCLUDE_KEYWORDS: &[&str] = &[
    "include", "includer", "includem", "includew", "includeb", "includea",
];

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
/// A space, `\n`, `"`, `{`, `}`, `!`, `#` or `$`.
const ENDS_WORD: u8 = 2;
/// `!`, `#` or `$`: a word that ends at one is cut by a comment or uses a parameter.
const CUTS_WORD: u8 = 4;
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
        } else if matches!(c, b'!' | b'#' | b'$') {
            class[b] = ENDS_WORD | CUTS_WORD;
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

/// Where the words of the line being lexed were typed.
#[derive(Clone, Copy)]
enum LineMap<'m> {
    /// The line as it is in the file.
    Written { file: FileId, line: u32 },
    /// A rewritten line (its text, and where each byte comes from).
    Rewritten(&'m str, &'m Positions),
}

impl LineMap<'_> {
    fn pos(&self, col: u32, at: usize) -> Pos {
        match *self {
            LineMap::Written { file, line } => Pos { file, line, col },
            LineMap::Rewritten(text, positions) => positions.pos(text, at),
        }
    }
}

/// Why a line was not lexed.
enum NotLexed {
    /// Longer than [`MAX_LINE_BYTES`].
    TooLong,
    /// It uses the language above keywords (`@`, `~`, `$`, `\#`): it is read
    /// again as keepalived rewrites it.
    Language,
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
    /// The directory of the file, for `${_PWD}`.
    dir: PathBuf,
    /// The line last returned, when it was rewritten: its text and where
    /// each of its bytes was typed.
    rewritten: Option<(&'t str, Positions)>,
    /// Lines of a multi-line parameter still to be read, before the text's
    /// next line.
    expansion: VecDeque<Mapped>,
    /// The multi-line parameter whose value the next lines go on with.
    defining: Option<Arc<str>>,
}

/// What [`Lines::next_line`] reads with: the load's language state, the
/// arena rewritten lines go to, and its diagnostics.
pub(crate) struct Reading<'r, 't> {
    pub language: &'r mut Language,
    pub arena: &'t Arena,
    pub diags: &'r mut Diags,
}

impl<'t> Lines<'t> {
    pub fn new(text: &'t str, file: FileId, dir: PathBuf) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Lines {
            text,
            next: Some(0),
            next_no: 1,
            file,
            line: 0,
            dir,
            rewritten: None,
            expansion: VecDeque::new(),
            defining: None,
        }
    }

    /// Where `token` of the line last returned is.
    pub fn span(&self, token: &Token<'_>) -> Pos {
        match &self.rewritten {
            None => Pos {
                file: self.file,
                line: self.line,
                col: token.col,
            },
            Some((text, positions)) => positions.pos(text, token.at as usize),
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
    pub(crate) fn next_line(
        &mut self,
        r: &mut Reading<'_, 't>,
        tokens: &mut Vec<Token<'t>>,
    ) -> bool {
        loop {
            // The lines of a multi-line value come before the text's next line.
            if let Some(line) = self.expansion.pop_front() {
                if self.lex_read(r, line, false, tokens) {
                    return true;
                }
                continue;
            }
            let Some(start) = self.next else {
                return false;
            };
            let line_no = self.next_no;
            self.next_no = self.next_no.saturating_add(1);
            let rest = &self.text[start..];
            tokens.clear();
            let map = LineMap::Written {
                file: self.file,
                line: line_no,
            };
            // The lines of a multi-line definition are its value.
            let lexed = if self.defining.is_some() {
                Err(NotLexed::Language)
            } else {
                lex_line(rest, map, true, r.diags, tokens)
            };
            let len = match lexed {
                Ok(len) => len,
                Err(NotLexed::TooLong) => {
                    tokens.clear();
                    let len = line_len(rest.as_bytes());
                    r.diags.error(
                        map.pos(1, 0),
                        format!("found a line of {len} bytes, expected at most {MAX_LINE_BYTES}"),
                    );
                    len
                }
                Err(NotLexed::Language) => {
                    tokens.clear();
                    let len = line_len(rest.as_bytes());
                    self.next = (len < rest.len()).then_some(start + len + 1);
                    if len > MAX_LINE_BYTES {
                        r.diags.error(
                            map.pos(1, 0),
                            format!(
                                "found a line of {len} bytes, expected at most {MAX_LINE_BYTES}"
                            ),
                        );
                        continue;
                    }
                    let raw = rest[..len].strip_suffix('\r').unwrap_or(&rest[..len]);
                    let raw = Mapped::written(raw, map.pos(1, 0));
                    if self.lex_read(r, raw, true, tokens) {
                        return true;
                    }
                    continue;
                }
            };
            // Past the line's `\n`: the text after the last one is a line too,
            // if empty.
            self.next = (len < rest.len()).then_some(start + len + 1);
            if !tokens.is_empty() {
                self.line = line_no;
                self.rewritten = None;
                return true;
            }
        }
    }

    /// Reads `line` (from the file when `from_file`, else from a multi-line
    /// value) through the language and lexes what it becomes; true if that
    /// has tokens.
    fn lex_read(
        &mut self,
        r: &mut Reading<'_, 't>,
        line: Mapped,
        from_file: bool,
        tokens: &mut Vec<Token<'t>>,
    ) -> bool {
        tokens.clear();
        if let Some(name) = &self.defining {
            if !r
                .language
                .continue_definition(name, &line, from_file, r.diags)
            {
                self.defining = None;
            }
            return false;
        }
        let cx = Context { dir: &self.dir };
        let read = r
            .language
            .read(line, from_file, &cx, &mut self.expansion, r.diags);
        let line = match read {
            Read::Nothing => return false,
            Read::Defining(name) => {
                self.defining = Some(name);
                return false;
            }
            Read::Line(line) => line,
        };
        let (text, positions) = line.into_parts();
        let Some(text) = r.arena.keep(text) else {
            return false;
        };
        let map = LineMap::Rewritten(text, &positions);
        // The language removed comments and escapes already.
        match lex_line(text, map, false, r.diags, tokens) {
            Ok(_) => {}
            Err(_) => {
                tokens.clear();
                r.diags.error(
                    map.pos(1, 0),
                    format!(
                        "found a line of {} bytes, expected at most {MAX_LINE_BYTES}",
                        text.len()
                    ),
                );
            }
        }
        if tokens.is_empty() {
            return false;
        }
        self.rewritten = Some((text, positions));
        true
    }
}

/// Lexes `text`; returns the non-empty lines, each a list of tokens.
#[cfg(test)]
pub fn lex<'t>(text: &'t str, file: FileId, diags: &mut Diags) -> Vec<Vec<Token<'t>>> {
    // Leaked: a test's text and arena live for the test.
    let arena: &'t Arena = Box::leak(Box::new(Arena::new()));
    let mut lines = Lines::new(text, file, PathBuf::from("."));
    let mut language = Language::new(None);
    let mut reading = Reading {
        language: &mut language,
        arena,
        diags,
    };
    let mut out = Vec::new();
    let mut tokens = Vec::new();
    while lines.next_line(&mut reading, &mut tokens) {
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
    #[inline(always)]
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

/// Reports a comment character inside a word: keepalived starts the comment
/// there, which cuts the word (`auth_pass ab#cd` sets `ab`).
pub(crate) fn comment_inside_word(line: &str, at: usize, pos: Pos, diags: &mut Diags) {
    let before = line[..at]
        .rfind(|c: char| is_space(c) || matches!(c, '"' | '{' | '}'))
        .map_or(0, |i| i + 1);
    let after = line[at..]
        .find(|c: char| is_space(c) || matches!(c, '"' | '{' | '}'))
        .map_or(line.len(), |i| at + i);
    let mark = &line[at..=at];
    diags.tolerate(
        pos,
        format!(
            "`{mark}` inside `{}` starts a comment, so the word is `{}` (keepalived reads it so \
             and so does xlb); write `\\{mark}` to keep the character",
            &line[before..after],
            &line[before..at]
        ),
    );
}

/// Lexes the line at the start of `text` into `tokens`; returns its length
/// in bytes (up to its `\n` or the end of the text), or why it was not
/// lexed: as soon as it is seen to be longer than [`MAX_LINE_BYTES`], before
/// any diagnostic about its content is made, or at an escaped comment
/// character (then nothing about it was reported either). `comments` is false
/// for a line the language rewrote, whose comments and escapes are gone.
#[inline(always)]
fn lex_line<'t>(
    text: &'t str,
    map: LineMap<'_>,
    comments: bool,
    diags: &mut Diags,
    tokens: &mut Vec<Token<'t>>,
) -> Result<usize, NotLexed> {
    let bytes = text.as_bytes();
    let mut cols = Columns::new(text);
    let within = |len: usize| {
        if len <= MAX_LINE_BYTES {
            Ok(len)
        } else {
            Err(NotLexed::TooLong)
        }
    };
    let mut i = 0;
    loop {
        i += bytes[i..]
            .iter()
            .position(|&b| !is_space_byte(b))
            .unwrap_or(bytes.len() - i);
        within(i)?;
        let Some(&b) = bytes.get(i) else {
            return Ok(i);
        };
        let col = cols.at(i);
        let at = u32::try_from(i).unwrap_or(u32::MAX);
        match b {
            b'\n' => return Ok(i),
            b'!' | b'#' if comments => return within(i + line_len(&bytes[i..])),
            // A conditional line or a sequence block.
            b'@' | b'~' if comments && tokens.is_empty() => return Err(NotLexed::Language),
            b'{' => {
                tokens.push(Token {
                    kind: TokenKind::Open,
                    col,
                    at,
                });
                i += 1;
            }
            b'}' => {
                tokens.push(Token {
                    kind: TokenKind::Close,
                    col,
                    at,
                });
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                let stop = bytes[start..]
                    .iter()
                    .position(|&c| c == b'"' || c == b'\n' || (comments && c == b'$'))
                    .map_or(bytes.len(), |n| start + n);
                // keepalived substitutes parameters inside quotes too.
                if bytes.get(stop) == Some(&b'$') {
                    return Err(NotLexed::Language);
                }
                if bytes.get(stop) == Some(&b'"') {
                    tokens.push(Token {
                        kind: TokenKind::Quoted(&text[start..stop]),
                        col,
                        at,
                    });
                    i = stop + 1;
                    continue;
                }
                let len = within(stop)?;
                diags.error(
                    map.pos(col, i),
                    "found end of line inside a quoted string, expected a closing `\"`",
                );
                tokens.push(Token {
                    kind: TokenKind::Quoted(&text[start..stop]),
                    col,
                    at,
                });
                return Ok(len);
            }
            _ => {
                let start = i;
                i = word_end(bytes, start, comments);
                if comments
                    && bytes
                        .get(i)
                        .is_some_and(|&b| CLASS[usize::from(b)] & CUTS_WORD != 0)
                {
                    if bytes[i] == b'$' || bytes[i - 1] == b'\\' {
                        return Err(NotLexed::Language);
                    }
                    within(i)?;
                    comment_inside_word(text, i, map.pos(cols.at(i), i), diags);
                }
                let word = &text[start..i];
                if word.starts_with("//") {
                    // Blog posts annotate configs with C++ style comments. keepalived
                    // would take the annotation as more arguments; say so plainly and
                    // skip it so the rest of the file is still checked.
                    let len = within(start + line_len(&bytes[start..]))?;
                    let shown = text[start..len].trim_end();
                    let shown = if comments {
                        shown
                            .find(['!', '#'])
                            .map_or(shown, |c| shown[..c].trim_end())
                    } else {
                        shown
                    };
                    diags.error(
                        map.pos(col, start),
                        format!(
                            "found `{shown}`, expected end of line: keepalived has no `//` \
                             comments, start a comment with `!` or `#`",
                        ),
                    );
                    return Ok(len);
                }
                tokens.push(Token {
                    kind: TokenKind::Word(word),
                    col,
                    at,
                });
                if tokens.len() == 1 && is_include(TokenKind::Word(word)) {
                    return include_pattern(text, i, comments, tokens);
                }
            }
        }
    }
}

/// After an include keyword that ends at `i`: keepalived takes the rest of
/// the line as the pattern, spaces, quotes and braces included.
fn include_pattern<'t>(
    text: &'t str,
    mut i: usize,
    comments: bool,
    tokens: &mut Vec<Token<'t>>,
) -> Result<usize, NotLexed> {
    let bytes = text.as_bytes();
    let len = i + line_len(&bytes[i..]);
    if len > MAX_LINE_BYTES {
        return Err(NotLexed::TooLong);
    }
    while i < len && is_space_byte(bytes[i]) {
        i += 1;
    }
    let mut end = len;
    if comments
        && let Some(c) = bytes[i..len]
            .iter()
            .position(|&c| matches!(c, b'!' | b'#' | b'\\' | b'$'))
    {
        if matches!(bytes[i + c], b'\\' | b'$') {
            return Err(NotLexed::Language);
        }
        end = i + c;
    }
    let pattern = text[i..end].trim_end_matches(is_space);
    if !pattern.is_empty() {
        let col = text[..i].chars().count() + 1;
        tokens.push(Token {
            kind: TokenKind::Word(pattern),
            col: u32::try_from(col).unwrap_or(u32::MAX),
            at: u32::try_from(i).unwrap_or(u32::MAX),
        });
    }
    Ok(len)
}

/// Where the word starting at `start` ends: at a blank, a quote, a brace, a
/// line end or, when `comments` (a line as written), a comment character or
/// a `$`.
#[inline(always)]
fn word_end(bytes: &[u8], start: usize, comments: bool) -> usize {
    let mut i = start;
    loop {
        i = bytes[i..]
            .iter()
            .position(|&b| ends_word(b))
            .map_or(bytes.len(), |n| i + n);
        match bytes.get(i) {
            Some(&b) if !comments && CLASS[usize::from(b)] & CUTS_WORD != 0 => i += 1,
            _ => return i,
        }
    }
}

/// Whether `kind` is an unquoted include keyword. Asked of the first word of
/// every line: most differ from `include` in their first byte.
pub(crate) fn is_include(kind: TokenKind<'_>) -> bool {
    matches!(kind, TokenKind::Word(w) if w.starts_with("include") && INCLUDE_KEYWORDS.contains(&w))
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
    fn comment_char_inside_a_word_starts_a_comment_with_a_warning() {
        // keepalived.conf(5): comments "can start anywhere in a line".
        let (lines, diags) = kinds("auth_pass ab#c!d");
        assert_eq!(lines, vec![vec![w("auth_pass"), w("ab")]]);
        let d = diags.into_sorted();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].line, d[0].col), (1, 13));
        assert!(d[0].message.contains("`ab#c!d`"), "{}", d[0].message);
        // Escaped, the character is kept; quoted, it is text.
        let (lines, diags) = kinds("auth_pass ab\\#c\nscript \"a#b\" # c");
        assert_eq!(
            lines,
            vec![
                vec![w("auth_pass"), w("ab#c")],
                vec![w("script"), TokenKind::Quoted("a#b")]
            ]
        );
        assert!(diags.into_sorted().is_empty());
    }

    #[test]
    fn include_takes_the_rest_of_its_line() {
        let (lines, _) = kinds("include conf.d/{a,b}.conf  # c\nincluder  my file\n");
        assert_eq!(
            lines,
            vec![
                vec![w("include"), w("conf.d/{a,b}.conf")],
                vec![w("includer"), w("my file")]
            ]
        );
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
        let mut lines = Lines::new(text, file, PathBuf::from("."));
        let arena = Arena::new();
        let mut language = Language::new(None);
        let mut reading = Reading {
            language: &mut language,
            arena: &arena,
            diags: &mut diags,
        };
        let mut tokens = Vec::new();
        let mut seen = Vec::new();
        while lines.next_line(&mut reading, &mut tokens) {
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
                        col: 1,
                        at: 0,
                    }],
                    vec![Token {
                        kind: w("y"),
                        col: 1,
                        at: 0,
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
