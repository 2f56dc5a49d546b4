//! What Cairn keeps in an RBD image's metadata: the volume's name and the rest of its management
//! state, read in one request ([`crate::Image::metadata_all`]) and written whole in one request
//! when an image is made ([`Pool::set_image_metadata`]), key by key after that.
//!
//! Keys (all under `cairn.`): `name` (the Cairn name; an image without it is not Cairn's),
//! `hidden` (`1` for internal volumes no host sees), `parent` (the 32-hex volume id the image was
//! snapshotted from), `created` (Unix seconds), `replica` (the hex of the replica record's
//! encoding, which the array layer owns), `origin` (`IMAGEID@SNAP`: the RBD snapshot a clone was
//! made from, removed with the clone) and `deleted` (`1` once the image waits in the trash for its
//! clones to go).
//!
//! Invariant: every key is written on every image Cairn makes before the image gets its final
//! RADOS name, so a clone never keeps a value it copied from its parent; that write is one
//! request, so a staged image has all of Cairn's keys or none of the new values.

use crate::cluster::Pool;
use crate::error::Result;
use crate::image::Image;

pub const NAME_KEY: &str = "cairn.name";
pub const HIDDEN_KEY: &str = "cairn.hidden";
pub const PARENT_KEY: &str = "cairn.parent";
pub const CREATED_KEY: &str = "cairn.created";
pub const REPLICA_KEY: &str = "cairn.replica";
pub const ORIGIN_KEY: &str = "cairn.origin";
pub const DELETED_KEY: &str = "cairn.deleted";

/// The placeholder written for a key with no value (librbd keeps no empty values apart).
pub const NONE: &str = "-";

/// Cairn's metadata of one image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub name: String,
    pub hidden: bool,
    pub parent: Option<String>,
    pub created_unix_secs: u64,
    pub replica: Option<String>,
    /// The RBD image id and snapshot name a clone was made from.
    pub origin: Option<(String, String)>,
    pub deleted: bool,
}

fn some(v: &str) -> Option<String> {
    (v != NONE && !v.is_empty()).then(|| v.to_string())
}

impl Meta {
    /// Cairn's metadata of `image`; `None` if it has no Cairn name.
    pub fn read(image: &Image) -> Result<Option<Meta>> {
        let mut meta = Meta::default();
        let mut named = false;
        for (k, v) in image.metadata_all()? {
            match k.as_str() {
                NAME_KEY => {
                    named = true;
                    meta.name = v;
                }
                HIDDEN_KEY => meta.hidden = v == "1",
                PARENT_KEY => meta.parent = some(&v),
                CREATED_KEY => meta.created_unix_secs = v.parse().unwrap_or(0),
                REPLICA_KEY => meta.replica = some(&v),
                ORIGIN_KEY => {
                    meta.origin = v
                        .split_once('@')
                        .map(|(i, s)| (i.to_string(), s.to_string()))
                }
                DELETED_KEY => meta.deleted = v == "1",
                _ => {}
            }
        }
        Ok(named.then_some(meta))
    }

    /// Writes every key of `self` to `image`, an image of `pool` no other client uses yet, in
    /// one request: all keys or none.
    pub fn write(&self, pool: &Pool, image: &Image) -> Result<()> {
        let flag = |b: bool| if b { "1" } else { "0" };
        let origin = self.origin.as_ref().map(|(i, s)| format!("{i}@{s}"));
        let pairs = [
            (HIDDEN_KEY, flag(self.hidden).to_string()),
            (
                PARENT_KEY,
                self.parent.clone().unwrap_or_else(|| NONE.into()),
            ),
            (CREATED_KEY, self.created_unix_secs.to_string()),
            (
                REPLICA_KEY,
                self.replica.clone().unwrap_or_else(|| NONE.into()),
            ),
            (ORIGIN_KEY, origin.unwrap_or_else(|| NONE.into())),
            (DELETED_KEY, flag(self.deleted).to_string()),
            (NAME_KEY, self.name.clone()),
        ];
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pool.set_image_metadata(&image.id()?, &pairs)
    }
}
