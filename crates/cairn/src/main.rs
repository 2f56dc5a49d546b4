//! The `cairn` binary: `cairn serve` (the daemon: pools, NBD, SMI-S) and the admin CLI. The CLI
//! drives the running daemon over SMI-S by default (found through `--data-dir`, or `--url`), or
//! works directly on a pool file or device no daemon holds (`--pool-file`).
//!
//! Invariants: every command either completes (the engine or the daemon committed it) or prints
//! one error line and exits non-zero; exit codes are 0 done, 1 refused (the line says why), 2
//! usage; the CLI never opens a pool that another process holds (the device lock refuses it and
//! the message names the holder).
#![forbid(unsafe_code)]

mod check_bar;
mod cli;
mod client;
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
    about = "Cairn storage array: thin volumes, O(1) snapshots, NBD and SMI-S",
    after_help = "Without --pool-file the CLI drives the daemon running on --data-dir (or at --url) \
                  over SMI-S. Exit codes: 0 done, 1 refused (the error line says why), 2 usage."
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Work directly on this pool file or device (no daemon may hold it).
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "url")]
    pool_file: Option<PathBuf>,
    /// Data directory of the daemon (listen.json, credentials, tls/cert.pem).
    #[arg(long, global = true, default_value = "cairn-data")]
    data_dir: PathBuf,
    /// A daemon on another machine: https://host:5989.
    #[arg(long, global = true)]
    url: Option<String>,
    /// SMI-S user (default: CAIRN_SMIS_USER, else admin); the password comes from
    /// CAIRN_SMIS_PASSWORD, the data directory's credentials file, or a prompt.
    #[arg(long, global = true)]
    user: Option<String>,
    /// The daemon's certificate (PEM) to trust, instead of DATA_DIR/tls/cert.pem.
    #[arg(long, global = true, value_name = "PEM")]
    cacert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: open the pools, serve NBD and SMI-S.
    Serve(ServeArgs),
    /// List, inspect, create, grow and check pools.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Create, list, delete, grow, rename and flag volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Create, list, delete and restore snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// List, show and cancel the daemon's jobs (cross-pool copies).
    #[command(subcommand)]
    Job(JobCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The global --data-dir (default pool, credentials, certificates, listen.json).
    #[arg(skip)]
    pub data_dir: PathBuf,
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// List the pools.
    List,
    /// Show size, usage and volume count of a pool (the only one when no name is given).
    Info { name: Option<String> },
    /// Create a pool on --pool-file (created sparse if missing) or a block device.
    Create {
        /// Pool name (A-Z a-z 0-9 . _ -).
        #[arg(long, default_value = "pool0")]
        name: String,
        /// Size of a new file, e.g. 16GiB (an existing file or device keeps its size).
        #[arg(long)]
        size: Option<String>,
    },
    /// Extend the pool to the size of its (grown) file or device; `--size` grows a file first.
    Grow {
        #[arg(long)]
        size: Option<String>,
    },
    /// Verify checksums, tree invariants and reference counts of a pool (the only one when no
    /// name is given); non-zero exit on any finding. Through the daemon it checks the pool's last
    /// commit online, while hosts keep using its volumes.
    Check { name: Option<String> },
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a thin volume.
    Create {
        name: String,
        /// Size in bytes (rounded up to 4096), e.g. 10GiB.
        #[arg(long)]
        size: String,
        /// Pool to create it in (the only pool when not given).
        #[arg(long)]
        pool: Option<String>,
        /// Logical block size: 512 or 4096 (512 only with --pool-file).
        #[arg(long)]
        block_size: Option<u32>,
        /// Create it read-only (only with --pool-file).
        #[arg(long)]
        read_only: bool,
    },
    /// List volumes (snapshots included).
    List {
        /// Also list hidden (internal) volumes (only with --pool-file).
        #[arg(long)]
        all: bool,
    },
    /// Delete a volume; its space is reclaimed.
    Delete { name: String },
    /// Grow a volume.
    Grow {
        name: String,
        #[arg(long)]
        size: String,
    },
    /// Rename a volume.
    Rename { name: String, new_name: String },
    /// Change a volume's flags (only with --pool-file).
    Set {
        name: String,
        /// Make the volume read-only (true) or writable (false).
        #[arg(long, action = clap::ArgAction::Set, value_name = "true|false")]
        read_only: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a point-in-time snapshot of a volume (O(1) in its pool; a copy job into another pool).
    Create {
        source: String,
        name: String,
        /// Put the snapshot in another pool: a point-in-time copy that runs as a job.
        #[arg(long)]
        pool: Option<String>,
        /// Make the snapshot read-only (only with --pool-file).
        #[arg(long)]
        read_only: bool,
        /// Do not wait for a copy job: print its id and return.
        #[arg(long)]
        no_wait: bool,
    },
    /// List snapshots with their parent.
    List,
    /// Delete a snapshot; its space is reclaimed.
    Delete { name: String },
    /// Give a volume the contents of one of its snapshots back.
    Restore { volume: String, snapshot: String },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List the daemon's jobs.
    List,
    /// Show one job.
    Show { id: String },
    /// Stop a running job (its partial copy is removed).
    Cancel { id: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = client::DaemonOptions {
        data_dir: cli.data_dir.clone(),
        url: cli.url.clone(),
        user: cli.user.clone(),
        cacert: cli.cacert.clone(),
    };
    let result = match (cli.command, cli.pool_file) {
        (Command::Serve(args), _) => serve::run(ServeArgs {
            data_dir: cli.data_dir,
            ..args
        }),
        (cmd, Some(path)) => cli::run(cmd, &path, cli.json),
        (cmd, None) => client::run(cmd, &daemon, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cairn: {err:#}");
            ExitCode::FAILURE
        }
    }
}
