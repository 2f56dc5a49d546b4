//! A safe layer over librados and librbd (Ceph 16.2, librbd 1.16): the one place in Cairn that
//! speaks to a Ceph cluster.
//!
//! It owns:
//! - [`Cluster`]: a connection (configuration file, cephx user, keyring) that gives up within
//!   [`limits::MOUNT_TIMEOUT_S`] when no monitor answers, and the cluster's fsid;
//! - [`Pool`]: a RADOS pool (its id; create, list, open, clone, remove images);
//! - [`Image`]: an opened RBD image (size, resize, id, metadata, snapshots, flatten with progress,
//!   allocated extents by diff iteration) and its asynchronous data path (read, write, discard,
//!   write-zeroes, flush; one request per call or many in flight as [`Pending`]);
//! - [`array`]: the array backend (`cairn_array::ArrayBackend`) over RBD pools, for SMI-S: pools
//!   with capacity, volumes with their metadata, snapshots as RBD snapshot + clone, and an
//!   image's data for the array layer's mapped-extent copy (`cairn_array::VolumeData`);
//! - [`exports`]: the export layer's [`cairn_export::Exports`] over an RBD pool, its images
//!   opened for hosts once each and served again through a new connection after an outage
//!   (`opened`), and [`served`]: such a pool connecting (and reconnecting) in the background,
//!   beside other backends, for the daemon;
//! - [`Error`]: the one error type.
//!
//! Invariants:
//! - Nothing of Ceph (handles, errno values, C types) appears in the public API.
//! - This crate and `cairn-io` are the only ones allowed `unsafe`; here it is confined to the
//!   modules that call the C API ([`ffi`] declares it), and every `unsafe` block says who owns
//!   each buffer until its completion.
//! - A buffer handed to librbd stays owned and untouched until its completion fires (see [`aio`]).
//! - Every connection sets `client_mount_timeout` and the RADOS operation timeouts, so a missing
//!   cluster never blocks a caller for librados's default 300 s.
#![deny(unsafe_op_in_unsafe_fn)]

#[allow(unsafe_code)]
mod aio;
pub mod array;
#[allow(unsafe_code)]
mod cluster;
mod error;
pub mod exports;
#[allow(unsafe_code)]
mod ffi;
#[allow(unsafe_code)]
mod image;
pub mod limits;
mod manage;
mod meta;
mod opened;
pub mod served;

pub use aio::Pending;
pub use cluster::{Cluster, ConnectOptions, Pool, Usage};
pub use error::{Error, ErrorKind, Result};
pub use image::{Extent, Image, ImageSpec, IMAGE_FEATURES};
