//! keepalived.conf syntax: tokens, the statement tree and `include`.

mod arena;
pub mod glob;
pub(crate) mod include;
mod language;
pub mod lexer;
mod mapped;
pub mod parser;
mod source;

pub use parser::{Arg, Statement};
