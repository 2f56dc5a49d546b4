//! Change events: what a backend tells the model after each change it made, so an index above it
//! can follow the array without reading it again.
//!
//! Invariant: a backend delivers the event of a change synchronously, after the change is durable
//! and before the call that made it returns, to every listener in the order they subscribed; a
//! listener must not call back into the backend.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, ErrorKind, Result};
use crate::limits::LISTENERS_MAX;
use crate::types::{PoolInfo, Volume, VolumeId};

/// One change of the array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeEvent {
    /// A pool's figures changed (its free space, after a volume operation in it). Sent after each
    /// change of the pool's volumes the backend makes, once per step that moves
    /// `PoolInfo::volume_changes`.
    PoolChanged(PoolInfo),
    /// A volume or snapshot was created.
    VolumeCreated(Volume),
    /// A volume's size, name, visibility or replica record changed, or it was restored.
    VolumeChanged(Volume),
    /// A volume was deleted (its space is reclaimed in the background).
    VolumeDeleted(VolumeId),
    /// A copy into another pool wrote `copied_bytes` so far.
    CopyProgress {
        from: VolumeId,
        to: VolumeId,
        copied_bytes: u64,
    },
}

/// A subscriber to a backend's change events.
pub type Listener = Arc<dyn Fn(&ChangeEvent) + Send + Sync>;

/// The subscribers of one backend.
#[derive(Default)]
pub struct Listeners {
    all: RwLock<Vec<Listener>>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("count", &self.all.read().len())
            .finish()
    }
}

impl Listeners {
    /// Adds a subscriber; it sees every change made after this call. At most [`LISTENERS_MAX`].
    pub fn subscribe(&self, listener: Listener) -> Result<()> {
        let mut all = self.all.write();
        if all.len() >= LISTENERS_MAX {
            return Err(Error::new(
                ErrorKind::OutOfRange,
                format!("At most {LISTENERS_MAX} change listeners"),
            ));
        }
        all.push(listener);
        Ok(())
    }

    /// Delivers `event` to every subscriber.
    pub fn notify(&self, event: &ChangeEvent) {
        for l in self.all.read().iter() {
            l(event);
        }
    }
}
