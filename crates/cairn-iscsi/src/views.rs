//! Masking views, read from the data directory: each a name, an initiator group (IQNs) and a
//! device group (volumes with their LUN numbers). With no view defined, the no-view default applies
//! (every export, numbered by [`crate::lunmap`]); once a view exists, an initiator sees exactly the
//! LUNs of the views its IQN is in, and an initiator in no view sees none.
//!
//! Invariants (checked at load): LUN numbers are below 256 and an initiator has at most
//! [`LUNS_MAX`]; no initiator is given two volumes at one LUN number, nor one volume twice;
//! initiator names compare in lower case (RFC 3722).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::limits::LUNS_MAX;

/// One volume of a device group at its LUN number.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapped {
    /// The volume (or snapshot) name.
    pub volume: String,
    pub lun: u16,
}

/// One masking view.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    pub name: String,
    pub initiators: Vec<String>,
    pub luns: Vec<Mapped>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Views {
    #[serde(default)]
    pub views: Vec<View>,
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

impl Views {
    /// Reads the views at `path`; a missing file means no views (the default applies).
    pub fn load(path: &Path) -> std::io::Result<Views> {
        let views: Views = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Views::default()),
            Err(e) => return Err(e),
        };
        views.check()?;
        Ok(views)
    }

    /// True when no view is defined.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    /// Volume name by LUN for `initiator`: the union of the views it is in.
    pub fn luns_of(&self, initiator: &str) -> BTreeMap<u16, String> {
        let initiator = initiator.to_lowercase();
        self.views
            .iter()
            .filter(|v| v.initiators.iter().any(|i| i.to_lowercase() == initiator))
            .flat_map(|v| v.luns.iter().map(|m| (m.lun, m.volume.clone())))
            .collect()
    }

    fn check(&self) -> std::io::Result<()> {
        let initiators: Vec<String> = self
            .views
            .iter()
            .flat_map(|v| v.initiators.iter().map(|i| i.to_lowercase()))
            .collect();
        for view in &self.views {
            if let Some(m) = view.luns.iter().find(|m| m.lun > 255) {
                return Err(invalid(format!(
                    "view {}: LUN {} is above 255",
                    view.name, m.lun
                )));
            }
        }
        for initiator in &initiators {
            let mut seen: BTreeMap<u16, &str> = BTreeMap::new();
            let mine = self
                .views
                .iter()
                .filter(|v| v.initiators.iter().any(|i| i.to_lowercase() == *initiator));
            for m in mine.flat_map(|v| v.luns.iter()) {
                let clash = seen
                    .insert(m.lun, &m.volume)
                    .is_some_and(|other| other != m.volume);
                let twice = seen.iter().filter(|(_, v)| **v == m.volume).count() > 1;
                if clash || twice || seen.len() > LUNS_MAX {
                    return Err(invalid(format!(
                        "initiator {initiator}: LUN {} or volume {} mapped twice",
                        m.lun, m.volume
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> std::io::Result<Views> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("views.json");
        std::fs::write(&path, text).unwrap();
        Views::load(&path)
    }

    #[test]
    fn an_initiator_sees_the_union_of_its_views() {
        let v = load(
            r#"{"views":[
                {"name":"a","initiators":["IQN.X:Host1"],"luns":[{"volume":"db","lun":0}]},
                {"name":"b","initiators":["iqn.x:host1","iqn.x:host2"],"luns":[{"volume":"logs","lun":3}]}]}"#,
        )
        .unwrap();
        let host1 = v.luns_of("iqn.x:host1");
        assert_eq!(
            host1.into_iter().collect::<Vec<_>>(),
            vec![(0, "db".into()), (3, "logs".into())]
        );
        assert_eq!(v.luns_of("iqn.x:host2").len(), 1);
        assert!(v.luns_of("iqn.x:other").is_empty());
        assert!(Views::load(Path::new("/nonexistent/views.json"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn clashes_and_bad_files_are_refused() {
        let clash = r#"{"views":[
            {"name":"a","initiators":["i"],"luns":[{"volume":"db","lun":0}]},
            {"name":"b","initiators":["i"],"luns":[{"volume":"logs","lun":0}]}]}"#;
        assert!(load(clash).is_err());
        let twice = r#"{"views":[{"name":"a","initiators":["i"],"luns":[{"volume":"db","lun":0},{"volume":"db","lun":1}]}]}"#;
        assert!(load(twice).is_err());
        assert!(load(
            r#"{"views":[{"name":"a","initiators":[],"luns":[{"volume":"db","lun":256}]}]}"#
        )
        .is_err());
        assert!(load(r#"{"views":[{"name":"a"}]}"#).is_err());
        assert!(load("[").is_err());
    }
}
