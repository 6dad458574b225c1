//! keepalived.conf syntax: lexer, parser, typed model, validation.
