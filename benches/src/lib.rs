//! Shared set-up for the criterion benchmarks in `benches/benches/`.
#![forbid(unsafe_code)]
