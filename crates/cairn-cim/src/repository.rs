//! The class repository: the DMTF and Cairn class definitions compiled into `repository/classes.json`
//! (see its README for attribution and format), embedded in the binary and indexed at start-up.
//!
//! Invariants: every class's superclass is in the repository and every property has a name
//! (checked at load); lookups are case-insensitive; the repository is immutable after load, so
//! it is shared without locks.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::class::Class;

/// The embedded repository file.
const CLASSES_JSON: &str = include_str!("../repository/classes.json");

#[derive(Deserialize)]
struct RepositoryFile {
    classes: Vec<Class>,
}

/// The loaded class repository.
#[derive(Debug)]
pub struct ClassRepository {
    classes: Vec<Class>,
    /// Lower-case name → index into `classes`.
    by_name: HashMap<String, usize>,
    /// Index → indices of immediate subclasses, in name order.
    children: Vec<Vec<usize>>,
    /// Index → whether it or an ancestor is an association.
    association: Vec<bool>,
}

impl ClassRepository {
    /// Loads the embedded repository. Panics only if the committed file is corrupt, which the
    /// crate's tests rule out.
    pub fn embedded() -> ClassRepository {
        ClassRepository::from_json(CLASSES_JSON).expect("embedded class repository is valid")
    }

    /// The embedded repository, loaded once per process and shared by every user (it is
    /// immutable, and each copy costs about 9 MiB of heap).
    pub fn shared() -> Arc<ClassRepository> {
        static SHARED: OnceLock<Arc<ClassRepository>> = OnceLock::new();
        SHARED
            .get_or_init(|| Arc::new(ClassRepository::embedded()))
            .clone()
    }

    /// Loads a repository from its JSON text.
    pub fn from_json(text: &str) -> Result<ClassRepository, String> {
        let file: RepositoryFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        ClassRepository::from_classes(file.classes)
    }

    /// Indexes a set of classes; every superclass must be present.
    pub fn from_classes(mut classes: Vec<Class>) -> Result<ClassRepository, String> {
        classes.sort_by_key(|c| c.name.to_ascii_lowercase());
        let by_name: HashMap<String, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.to_ascii_lowercase(), i))
            .collect();
        if by_name.len() != classes.len() {
            return Err("Duplicate class name".into());
        }
        // Shaping an instance marks the properties it has taken with an empty name.
        if let Some(c) = classes
            .iter()
            .find(|c| c.properties.iter().any(|p| p.name.is_empty()))
        {
            return Err(format!("{}: a property without a name", c.name));
        }
        let mut children = vec![Vec::new(); classes.len()];
        for (i, c) in classes.iter().enumerate() {
            if let Some(sc) = &c.superclass {
                let parent = by_name
                    .get(&sc.to_ascii_lowercase())
                    .ok_or_else(|| format!("{}: no superclass {sc}", c.name))?;
                children[*parent].push(i);
            }
        }
        let mut repo = ClassRepository {
            classes,
            by_name,
            children,
            association: Vec::new(),
        };
        repo.association = (0..repo.classes.len())
            .map(|i| repo.ancestors(i).any(|a| repo.classes[a].is_association()))
            .collect();
        Ok(repo)
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    /// Class `name` (case-insensitive).
    pub fn class(&self, name: &str) -> Option<&Class> {
        self.index(name).map(|i| &self.classes[i])
    }

    /// All classes, in case-insensitive name order.
    pub fn classes(&self) -> &[Class] {
        &self.classes
    }

    /// `i` and its ancestors, nearest first. Bounded by the class count (the superclass relation is a
    /// tree, checked at load: a cycle would need a class to be its own superclass's parent).
    fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let mut cur = Some(i);
        let mut steps = 0;
        std::iter::from_fn(move || {
            let c = cur?;
            steps += 1;
            if steps > self.classes.len() {
                return None;
            }
            cur = self.classes[c]
                .superclass
                .as_ref()
                .and_then(|s| self.index(s));
            Some(c)
        })
    }

    /// True if `class` is `ancestor` or derives from it (case-insensitive). Unknown names are
    /// related only to themselves.
    pub fn is_subclass_of(&self, class: &str, ancestor: &str) -> bool {
        if class.eq_ignore_ascii_case(ancestor) {
            return true;
        }
        match (self.index(class), self.index(ancestor)) {
            (Some(c), Some(a)) => self.ancestors(c).any(|x| x == a),
            _ => false,
        }
    }

    /// True if one of the two classes derives from the other.
    pub fn related(&self, a: &str, b: &str) -> bool {
        self.is_subclass_of(a, b) || self.is_subclass_of(b, a)
    }

    /// True for association classes (the Association qualifier on the class or an ancestor).
    pub fn is_association(&self, name: &str) -> bool {
        self.index(name).is_some_and(|i| self.association[i])
    }

    /// Subclasses of `name` (or the root classes for `None`): immediate ones, or all descendants
    /// (depth-first, parents before children) when `deep`.
    pub fn subclasses(&self, name: Option<&str>, deep: bool) -> Result<Vec<&Class>, String> {
        let start: Vec<usize> = match name {
            Some(n) => {
                let i = self.index(n).ok_or_else(|| n.to_owned())?;
                self.children[i].clone()
            }
            None => (0..self.classes.len())
                .filter(|&i| self.classes[i].superclass.is_none())
                .collect(),
        };
        let mut out = Vec::new();
        let mut stack: Vec<usize> = start.into_iter().rev().collect();
        while let Some(i) = stack.pop() {
            out.push(&self.classes[i]);
            if deep {
                stack.extend(self.children[i].iter().rev());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_repository_loads_with_required_classes() {
        let r = ClassRepository::embedded();
        for name in [
            "CIM_RegisteredProfile",
            "CIM_ReferencedProfile",
            "CIM_ElementConformsToProfile",
            "CIM_ObjectManager",
            "CIM_Namespace",
            "CIM_ComputerSystem",
            "CIM_StoragePool",
            "CIM_StorageVolume",
            "CIM_ConcreteJob",
            "CIM_Error",
            "CIM_IndicationSubscription",
            "CIM_ListenerDestinationCIMXML",
            "CIM_IndicationFilter",
            "Cairn_StorageSystem",
            "Cairn_StorageVolume",
            "Cairn_StorageSynchronized",
            "Cairn_RegisteredProfile",
            "Cairn_ObjectManager",
            "Cairn_Namespace",
            "Cairn_ElementConformsToProfile",
            "Cairn_ReferencedProfile",
        ] {
            assert!(r.class(name).is_some(), "{name}");
        }
        assert!(r.class("cairn_storagevolume").is_some());
        assert!(r.class("CAIRN_STORAGEVOLUME").is_some());
    }

    #[test]
    fn hierarchy_queries() {
        let r = ClassRepository::embedded();
        assert!(r.is_subclass_of("Cairn_StorageVolume", "CIM_StorageVolume"));
        assert!(r.is_subclass_of("CAIRN_StorageVolume", "cim_managedelement"));
        assert!(!r.is_subclass_of("CIM_StorageVolume", "Cairn_StorageVolume"));
        assert!(r.related("CIM_StorageVolume", "Cairn_StorageVolume"));
        assert!(r.is_association("Cairn_ElementConformsToProfile"));
        assert!(r.is_association("CIM_Dependency"));
        assert!(!r.is_association("Cairn_StorageVolume"));
        let direct: Vec<_> = r
            .subclasses(Some("CIM_StorageVolume"), false)
            .expect("known")
            .iter()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(direct, ["Cairn_StorageVolume"]);
        let roots = r.subclasses(None, false).expect("roots");
        assert!(roots.iter().any(|c| c.name == "CIM_ManagedElement"));
        assert!(roots.iter().all(|c| c.superclass.is_none()));
        let deep = r
            .subclasses(Some("CIM_ManagedElement"), true)
            .expect("known");
        assert!(deep.len() > 50);
        assert!(r.subclasses(Some("No_Such"), false).is_err());
    }

    #[test]
    fn registered_profile_has_typed_value_maps() {
        let r = ClassRepository::embedded();
        let c = r.class("CIM_RegisteredProfile").expect("class");
        let org = c.property("RegisteredOrganization").expect("property");
        assert_eq!(org.ty, crate::types::CimType::Uint16);
        assert!(org.qualifiers.iter().any(|q| q.name == "ValueMap"));
        assert!(org.qualifiers.iter().any(|q| q.name == "Values"));
        assert_eq!(c.key_names().collect::<Vec<_>>(), ["InstanceID"]);
    }
}
