//! Associators, AssociatorNames, References, ReferenceNames (and their Open* forms), computed
//! generically from the association instances the provider enumerates.
//!
//! Invariants: matching is subclass-aware on both ends (a reference to `Cairn_StorageVolume` matches
//! an object named as `CIM_StorageVolume` with the same keys, and vice versa); Role/ResultRole compare
//! property names case-insensitively; results are de-duplicated; no match is an empty result, never
//! an error.

use super::classes::view;
use super::instances::View;
use super::params::Params;
use super::Core;
use crate::class::{Class, ClassProperty};
use crate::error::CimError;
use crate::instance::Instance;
use crate::path::{namespace_eq, InstancePath};
use crate::types::CimType;
use crate::types::Value;
use crate::xml::encode::ClassOptions;
use crate::xml::encode::IReturn;

/// The filters of one association query.
pub(super) struct AssocQuery<'a> {
    pub object: InstancePath,
    pub assoc_class: Option<&'a str>,
    pub result_class: Option<&'a str>,
    pub role: Option<&'a str>,
    pub result_role: Option<&'a str>,
}

/// What an association operation returns before encoding.
pub(super) enum AssocResult {
    Instances(Vec<Instance>),
    Paths(Vec<InstancePath>),
}

impl Core {
    /// Reads the filters; `references` = References/ReferenceNames (no AssocClass/ResultRole).
    pub(super) fn assoc_query<'a>(
        &self,
        p: &Params<'a>,
        object_param: &str,
        references: bool,
    ) -> Result<AssocQuery<'a>, CimError> {
        let object = p
            .object_name(object_param)?
            .ok_or_else(|| CimError::invalid_parameter(format!("{object_param} is required")))?;
        if self.repo.class(&object.class_name).is_none() {
            return Err(CimError::invalid_parameter(format!(
                "No class {}",
                object.class_name
            )));
        }
        let q = AssocQuery {
            object,
            assoc_class: if references {
                None
            } else {
                p.class_name("AssocClass")?
            },
            result_class: p.class_name("ResultClass")?,
            role: p.string("Role")?.map(str::trim).filter(|s| !s.is_empty()),
            result_role: if references {
                None
            } else {
                p.string("ResultRole")?
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
            },
        };
        for c in [q.assoc_class, q.result_class].into_iter().flatten() {
            if self.repo.class(c).is_none() {
                return Err(CimError::invalid_parameter(format!("No class {c}")));
            }
        }
        Ok(q)
    }

    /// True if reference `r` (seen from namespace `ns`) names `object` (seen from `ns` too).
    fn refers_to(&self, ns: &str, r: &InstancePath, object: &InstancePath) -> bool {
        let rns = r.namespace.as_deref().unwrap_or(ns);
        let ons = object.namespace.as_deref().unwrap_or(ns);
        namespace_eq(rns, ons)
            && self.repo.related(&r.class_name, &object.class_name)
            && r.same_keys(object)
    }

    /// Association instances (of AssocClass, or of ResultClass for references) that refer to the
    /// object through `role`, with the name of the referring property.
    fn referencing(
        &self,
        ns: &str,
        q: &AssocQuery<'_>,
        class_filter: Option<&str>,
    ) -> Result<Vec<(Instance, String)>, CimError> {
        let mut out = Vec::new();
        for cn in self.provider.class_names(ns) {
            if !self.repo.is_association(&cn)
                || class_filter.is_some_and(|f| !self.repo.is_subclass_of(&cn, f))
            {
                continue;
            }
            let candidates = match self
                .provider
                .associations_referring_to(ns, &cn, &q.object)?
            {
                Some(found) => found,
                None => self.provider.enumerate_instances(ns, &cn)?,
            };
            for inst in candidates {
                let inst = self.complete(ns, inst);
                let role = inst.properties.iter().find(|p| {
                    q.role.is_none_or(|r| p.name.eq_ignore_ascii_case(r))
                        && matches!(&p.value, Some(Value::Reference(r)) if self.refers_to(ns, r, &q.object))
                });
                if let Some(role) = role.map(|p| p.name.clone()) {
                    out.push((inst, role));
                }
            }
        }
        Ok(out)
    }

    /// References / ReferenceNames.
    pub(super) fn references(
        &self,
        ns: &str,
        q: &AssocQuery<'_>,
        names_only: bool,
        view: View<'_>,
    ) -> Result<AssocResult, CimError> {
        let found = self.referencing(ns, q, q.result_class)?;
        Ok(if names_only {
            AssocResult::Paths(found.into_iter().filter_map(|(i, _)| i.path).collect())
        } else {
            AssocResult::Instances(
                found
                    .into_iter()
                    .map(|(i, _)| self.shape(i, view))
                    .collect(),
            )
        })
    }

    /// Associators / AssociatorNames.
    pub(super) fn associators(
        &self,
        ns: &str,
        q: &AssocQuery<'_>,
        names_only: bool,
        view: View<'_>,
    ) -> Result<AssocResult, CimError> {
        let mut targets: Vec<InstancePath> = Vec::new();
        for (assoc, role) in self.referencing(ns, q, q.assoc_class)? {
            for p in &assoc.properties {
                let Some(Value::Reference(t)) = &p.value else {
                    continue;
                };
                if p.name.eq_ignore_ascii_case(&role)
                    || q.result_role
                        .is_some_and(|rr| !p.name.eq_ignore_ascii_case(rr))
                {
                    continue;
                }
                let mut t = t.clone();
                if t.namespace.is_none() {
                    t.namespace = Some(ns.to_owned());
                }
                if !targets.iter().any(|x| x.same_object(&t)) {
                    targets.push(t);
                }
            }
        }
        let class_ok = |c: &str| {
            q.result_class
                .is_none_or(|rc| self.repo.is_subclass_of(c, rc))
        };
        if names_only {
            return Ok(AssocResult::Paths(
                targets
                    .into_iter()
                    .filter(|t| class_ok(&t.class_name))
                    .collect(),
            ));
        }
        let mut out = Vec::new();
        for t in targets {
            let tns = t.namespace.clone().unwrap_or_else(|| ns.to_owned());
            let Ok(tns) = self.namespace(&tns) else {
                continue;
            };
            match self.find_instance(&tns, &t) {
                Ok(inst) if class_ok(&inst.class_name) => out.push(self.shape(inst, view)),
                Ok(_) => {}
                // A dangling reference (the target just went away) is skipped, not an error.
                Err(e)
                    if e.status == crate::CimStatus::NotFound
                        || e.status == crate::CimStatus::InvalidClass => {}
                Err(e) => return Err(e),
            }
        }
        Ok(AssocResult::Instances(out))
    }

    /// Associators, AssociatorNames, References, ReferenceNames.
    /// Associators, AssociatorNames, References, ReferenceNames. An ObjectName without keys names a
    /// class: the answer is then about classes (from the repository), not instances.
    pub(super) fn association_op(
        &self,
        ns: &str,
        method: &str,
        p: &Params<'_>,
    ) -> Result<(IReturn, ClassOptions), CimError> {
        let refs = method.to_ascii_lowercase().starts_with("reference");
        let names = method.to_ascii_lowercase().ends_with("names");
        let q = self.assoc_query(p, "ObjectName", refs)?;
        let plist = p.property_list()?;
        let include_class_origin = p.bool("IncludeClassOrigin", false)?;
        let include_qualifiers = p.bool("IncludeQualifiers", false)?;
        if q.object.keys.is_empty() {
            let classes = self.associated_classes(&q, refs);
            let ret = if names {
                IReturn::ClassPaths {
                    namespace: ns.to_owned(),
                    names: classes.iter().map(|c| c.name.clone()).collect(),
                }
            } else {
                IReturn::ClassesWithPath {
                    namespace: ns.to_owned(),
                    classes: classes
                        .into_iter()
                        .map(|c| view(c, false, plist.as_deref()))
                        .collect(),
                }
            };
            return Ok((
                ret,
                ClassOptions {
                    include_qualifiers,
                    include_class_origin,
                },
            ));
        }
        let view = View {
            only_class: None,
            property_list: plist.as_deref(),
            include_class_origin,
        };
        let r = if refs {
            self.references(ns, &q, names, view)?
        } else {
            self.associators(ns, &q, names, view)?
        };
        let ret = match r {
            AssocResult::Instances(v) => IReturn::ObjectsWithPath(v),
            AssocResult::Paths(v) => IReturn::ObjectPaths(v),
        };
        Ok((
            ret,
            ClassOptions {
                include_qualifiers: false,
                include_class_origin: false,
            },
        ))
    }

    /// Class-level traversal over the repository: the association classes whose references can point
    /// at the object class (References), or the classes at their other ends (Associators).
    fn associated_classes(&self, q: &AssocQuery<'_>, refs: bool) -> Vec<&Class> {
        let mut out: Vec<&Class> = Vec::new();
        let is_ref = |p: &&ClassProperty| p.ty == CimType::Reference && !p.is_array;
        for assoc in self
            .repo
            .classes()
            .iter()
            .filter(|c| self.repo.is_association(&c.name))
        {
            if q.assoc_class
                .is_some_and(|a| !self.repo.is_subclass_of(&assoc.name, a))
            {
                continue;
            }
            let ends: Vec<&ClassProperty> = assoc
                .properties
                .iter()
                .filter(is_ref)
                .filter(|p| q.role.is_none_or(|r| p.name.eq_ignore_ascii_case(r)))
                .filter(|p| {
                    p.reference_class
                        .as_deref()
                        .is_some_and(|rc| self.repo.related(rc, &q.object.class_name))
                })
                .collect();
            if ends.is_empty() {
                continue;
            }
            let mut found: Vec<&Class> = Vec::new();
            if refs {
                if q.result_class
                    .is_none_or(|rc| self.repo.is_subclass_of(&assoc.name, rc))
                {
                    found.push(assoc);
                }
            } else {
                for end in &ends {
                    let others = assoc
                        .properties
                        .iter()
                        .filter(is_ref)
                        .filter(|o| !o.name.eq_ignore_ascii_case(&end.name));
                    for other in others.filter(|o| {
                        q.result_role
                            .is_none_or(|rr| o.name.eq_ignore_ascii_case(rr))
                    }) {
                        let target = other
                            .reference_class
                            .as_deref()
                            .and_then(|rc| self.repo.class(rc));
                        if let Some(t) = target.filter(|t| {
                            q.result_class
                                .is_none_or(|rc| self.repo.is_subclass_of(&t.name, rc))
                        }) {
                            found.push(t);
                        }
                    }
                }
            }
            for c in found {
                if !out.iter().any(|x| x.name.eq_ignore_ascii_case(&c.name)) {
                    out.push(c);
                }
            }
        }
        out
    }
}
