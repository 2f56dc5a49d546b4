//! cairn-nbd (under construction)
#![forbid(unsafe_code)]
