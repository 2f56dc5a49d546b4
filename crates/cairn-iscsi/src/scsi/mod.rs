//! The SCSI side of the target, free of sockets and storage: CDB decoding ([`cdb`]), sense data
//! ([`sense`]) and the data-in pages ([`pages`]).

pub mod cdb;
pub mod pages;
pub mod sense;
