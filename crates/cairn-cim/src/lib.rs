//! cairn-cim (under construction)
#![forbid(unsafe_code)]
