//! The shared device suite on the in-memory devices: `MemDevice` at both alignments and
//! `RecordingDevice` (whose live image must behave like any device).

mod suite;

use cairn_io::{MemDevice, RecordingDevice};
use suite::SUITE_SIZE_BYTES;

device_suite!(mem_512, || Arc::new(MemDevice::new(SUITE_SIZE_BYTES)));
device_suite!(mem_4096, || Arc::new(MemDevice::with_alignment(
    SUITE_SIZE_BYTES,
    4096
)));
device_suite!(recording, || Arc::new(RecordingDevice::new(
    MemDevice::new(SUITE_SIZE_BYTES)
)));
