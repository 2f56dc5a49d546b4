//! The shared device suite on the in-memory devices: `MemDevice` at both alignments and
//! `RecordingDevice` (whose live image must behave like any device).

mod suite;

use std::sync::Arc;

use cairn_io::{BlockDevice, MemDevice, RecordingDevice};
use suite::SUITE_SIZE_BYTES;

fn mem(alignment: u64) -> Option<Arc<dyn BlockDevice>> {
    Some(Arc::new(MemDevice::with_alignment(
        SUITE_SIZE_BYTES,
        alignment,
    )))
}

fn recording() -> Option<Arc<dyn BlockDevice>> {
    Some(Arc::new(RecordingDevice::new(MemDevice::new(
        SUITE_SIZE_BYTES,
    ))))
}

device_suite!(mem_512, || mem(512));
device_suite!(mem_4096, || mem(4096));
device_suite!(recording, recording);
