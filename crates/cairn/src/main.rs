//! The `cairn` binary: `cairn serve` (the daemon: pools, NBD, SMI-S) and the admin CLI that works
//! directly on a pool file or device no daemon holds.
//!
//! Invariants: every command either completes and commits, or prints one error line and exits
//! non-zero with the pool unchanged; the CLI never opens a pool that another process holds (the
//! device lock refuses it and the message names the holder).
#![forbid(unsafe_code)]

mod cli;
mod config;
mod device;
mod output;
mod serve;
mod size;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn storage array: thin volumes, O(1) snapshots, NBD and SMI-S"
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: open the pools, serve NBD and SMI-S.
    Serve(ServeArgs),
    /// Create, inspect, grow and check pools.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Create, list, delete, grow, rename and flag volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Create, list, delete and restore snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (default pool, credentials, certificates, listen.json).
    #[arg(long, default_value = "cairn-data")]
    pub data_dir: PathBuf,
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create a pool on a file (created sparse if missing) or a block device.
    Create {
        path: PathBuf,
        /// Pool name (A-Z a-z 0-9 . _ -).
        #[arg(long, default_value = "pool0")]
        name: String,
        /// Size of a new file, e.g. 16GiB (an existing file or device keeps its size).
        #[arg(long)]
        size: Option<String>,
    },
    /// Show size, usage and volume count.
    Info { path: PathBuf },
    /// Extend the pool to the size of its (grown) file or device; `--size` grows a file first.
    Grow {
        path: PathBuf,
        #[arg(long)]
        size: Option<String>,
    },
    /// Verify checksums, tree invariants and reference counts; non-zero exit on any finding.
    Check { path: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a thin volume.
    Create {
        pool: PathBuf,
        name: String,
        /// Size in bytes (multiple of 4096), e.g. 10GiB.
        #[arg(long)]
        size: String,
        /// Logical block size: 512 or 4096.
        #[arg(long, default_value_t = 4096)]
        block_size: u32,
        #[arg(long)]
        read_only: bool,
    },
    /// List volumes (snapshots included).
    List {
        pool: PathBuf,
        /// Also list hidden (internal) volumes.
        #[arg(long)]
        all: bool,
    },
    /// Delete a volume; its space is reclaimed.
    Delete { pool: PathBuf, name: String },
    /// Grow a volume.
    Grow {
        pool: PathBuf,
        name: String,
        #[arg(long)]
        size: String,
    },
    /// Rename a volume.
    Rename {
        pool: PathBuf,
        name: String,
        new_name: String,
    },
    /// Change a volume's flags.
    Set {
        pool: PathBuf,
        name: String,
        /// Make the volume read-only (true) or writable (false).
        #[arg(long, action = clap::ArgAction::Set, value_name = "true|false")]
        read_only: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take an O(1) point-in-time snapshot of a volume (or of a snapshot).
    Create {
        pool: PathBuf,
        source: String,
        name: String,
        #[arg(long)]
        read_only: bool,
    },
    /// List snapshots with their parent and creation time.
    List { pool: PathBuf },
    /// Delete a snapshot; its space is reclaimed.
    Delete { pool: PathBuf, name: String },
    /// Give a volume the contents of one of its snapshots back.
    Restore {
        pool: PathBuf,
        volume: String,
        snapshot: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Pool(cmd) => cli::pool(cmd, cli.json),
        Command::Volume(cmd) => cli::volume(cmd, cli.json),
        Command::Snapshot(cmd) => cli::snapshot(cmd, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cairn: {err:#}");
            ExitCode::FAILURE
        }
    }
}
