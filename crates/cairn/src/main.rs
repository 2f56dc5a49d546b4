//! The cairn binary.
#![forbid(unsafe_code)]
fn main() {}
