//! cairn-smis (under construction)
#![forbid(unsafe_code)]
