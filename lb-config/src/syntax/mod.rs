//! keepalived.conf syntax: tokens, the statement tree and `include`.

pub mod glob;
pub(crate) mod include;
pub mod lexer;
pub mod parser;
mod source;

pub use parser::{Arg, Statement};
