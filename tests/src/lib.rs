//! Shared helpers for the end-to-end tests: locating the built `cairn` binary, starting a daemon on a
//! temporary data directory with every listener on an ephemeral loopback port, and waiting for the
//! `listen.json` it writes (never sleeping for readiness).
#![forbid(unsafe_code)]
