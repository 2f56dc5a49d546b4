//! Associators, AssociatorNames, References, ReferenceNames (and their Open* forms), computed
//! generically from the association instances the provider gives for the object: a class at a
//! time, page by page where the provider pages it ([`crate::Provider::associations_page`]), so a
//! query about one object holds a cursor and one batch, never its whole result, and a plain
//! operation is the same batches run to the end.
//!
//! Invariants: matching is subclass-aware on both ends (a reference to `Cairn_StorageVolume` matches
//! an object named as `CIM_StorageVolume` with the same keys, and vice versa); Role/ResultRole compare
//! property names case-insensitively; results are de-duplicated (within a batch, against the
//! objects reached through classes read whole, and, by the provider's contract, across pages);
//! no match is an empty result, never an error.

use std::collections::VecDeque;

use super::classes::view;
use super::instances::View;
use super::params::Params;
use super::Core;
use crate::class::{Class, ClassProperty};
use crate::error::CimError;
use crate::instance::Instance;
use crate::limits::PULL_PAGES_PER_BATCH_MAX;
use crate::path::{namespace_eq, InstancePath};
use crate::types::CimType;
use crate::types::Value;
use crate::xml::encode::ClassOptions;
use crate::xml::encode::IReturn;

/// The filters of one association query.
#[derive(Debug)]
pub(super) struct AssocQuery {
    pub object: InstancePath,
    pub assoc_class: Option<String>,
    pub result_class: Option<String>,
    pub role: Option<String>,
    pub result_role: Option<String>,
}

/// What an association operation returns before encoding.
#[derive(Debug)]
pub(super) enum AssocResult {
    Instances(Vec<Instance>),
    Paths(Vec<InstancePath>),
}

impl AssocResult {
    fn len(&self) -> usize {
        match self {
            AssocResult::Instances(v) => v.len(),
            AssocResult::Paths(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn empty_like(&self) -> AssocResult {
        match self {
            AssocResult::Instances(_) => AssocResult::Instances(Vec::new()),
            AssocResult::Paths(_) => AssocResult::Paths(Vec::new()),
        }
    }

    /// Keeps the first `n` objects; the rest.
    fn split_off(&mut self, n: usize) -> AssocResult {
        match self {
            AssocResult::Instances(v) => AssocResult::Instances(v.split_off(n.min(v.len()))),
            AssocResult::Paths(v) => AssocResult::Paths(v.split_off(n.min(v.len()))),
        }
    }

    fn extend(&mut self, more: AssocResult) {
        match (self, more) {
            (AssocResult::Instances(v), AssocResult::Instances(m)) => v.extend(m),
            (AssocResult::Paths(v), AssocResult::Paths(m)) => v.extend(m),
            _ => unreachable!("one query yields one kind of object"),
        }
    }
}

/// Where an association query about one object stands (Associators, References and their
/// Open* forms), and how its client sees the objects: the association classes still to read
/// and the provider's position in the current one ([`crate::Provider::associations_page`]).
/// Each batch is computed from the state of its moment, so what the query holds between
/// batches is this cursor, never its result.
#[derive(Debug)]
pub(crate) struct AssocCursor {
    query: AssocQuery,
    /// References / ReferenceNames (else Associators / AssociatorNames).
    references: bool,
    property_list: Option<Vec<String>>,
    include_class_origin: bool,
    /// The association classes still to read, the current one first.
    classes: VecDeque<String>,
    position: Option<String>,
    /// The objects at the other end of the classes read whole so far (Associators only): they
    /// are few, and an object reached twice is returned once.
    seen: Vec<InstancePath>,
    /// Objects computed past the last batch's `max` (at most one page's or one whole class's),
    /// returned first by the next batch.
    pending: AssocResult,
}

impl AssocCursor {
    /// True once every association class is read and returned.
    pub(super) fn is_done(&self) -> bool {
        self.classes.is_empty() && self.pending.is_empty()
    }
}

/// One class's association instances as a batch reads them.
struct Candidates {
    instances: Vec<Instance>,
    next: Option<String>,
    /// Read whole (not paged by the provider).
    whole: bool,
}

impl Core {
    /// Reads the filters; `references` = References/ReferenceNames (no AssocClass/ResultRole).
    pub(super) fn assoc_query(
        &self,
        p: &Params<'_>,
        object_param: &str,
        references: bool,
    ) -> Result<AssocQuery, CimError> {
        let object = p
            .object_name(object_param)?
            .ok_or_else(|| CimError::invalid_parameter(format!("{object_param} is required")))?;
        if self.repo.class(&object.class_name).is_none() {
            return Err(CimError::invalid_parameter(format!(
                "No class {}",
                object.class_name
            )));
        }
        let text = |name: &str| -> Result<Option<String>, CimError> {
            Ok(p.string(name)?
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned))
        };
        let q = AssocQuery {
            object,
            assoc_class: if references {
                None
            } else {
                p.class_name("AssocClass")?.map(str::to_owned)
            },
            result_class: p.class_name("ResultClass")?.map(str::to_owned),
            role: text("Role")?,
            result_role: if references {
                None
            } else {
                text("ResultRole")?
            },
        };
        for c in [&q.assoc_class, &q.result_class].into_iter().flatten() {
            if self.repo.class(c).is_none() {
                return Err(CimError::invalid_parameter(format!("No class {c}")));
            }
        }
        Ok(q)
    }

    /// The cursor of query `q` (about an instance), at its start.
    pub(super) fn assoc_cursor(
        &self,
        ns: &str,
        q: AssocQuery,
        references: bool,
        paths: bool,
        view: View<'_>,
    ) -> AssocCursor {
        let filter = if references {
            q.result_class.as_deref()
        } else {
            q.assoc_class.as_deref()
        };
        let classes = self
            .provider
            .class_names(ns)
            .into_iter()
            .filter(|cn| {
                self.repo.is_association(cn)
                    && filter.is_none_or(|f| self.repo.is_subclass_of(cn, f))
            })
            .collect();
        AssocCursor {
            query: q,
            references,
            property_list: view.property_list.map(<[String]>::to_vec),
            include_class_origin: view.include_class_origin,
            classes,
            position: None,
            seen: Vec::new(),
            pending: if paths {
                AssocResult::Paths(Vec::new())
            } else {
                AssocResult::Instances(Vec::new())
            },
        }
    }

    /// True if reference `r` (seen from namespace `ns`) names `object` (seen from `ns` too).
    fn refers_to(&self, ns: &str, r: &InstancePath, object: &InstancePath) -> bool {
        let rns = r.namespace.as_deref().unwrap_or(ns);
        let ons = object.namespace.as_deref().unwrap_or(ns);
        namespace_eq(rns, ons)
            && self.repo.related(&r.class_name, &object.class_name)
            && r.same_keys(object)
    }

    /// The association instances of class `class` that may refer to the object, from where `c`
    /// stands: a page of the provider's, or the whole class.
    fn candidates(
        &self,
        ns: &str,
        class: &str,
        c: &AssocCursor,
        max: usize,
    ) -> Result<Candidates, CimError> {
        let object = &c.query.object;
        let paged =
            self.provider
                .associations_page(ns, class, object, c.position.as_deref(), max)?;
        if let Some(page) = paged {
            return Ok(Candidates {
                instances: page.instances,
                next: page.next,
                whole: false,
            });
        }
        let instances = match self.provider.associations_referring_to(ns, class, object)? {
            Some(found) => found,
            None => self.provider.enumerate_instances(ns, class)?,
        };
        Ok(Candidates {
            instances,
            next: None,
            whole: true,
        })
    }

    /// Those of `candidates` that refer to the object through the query's role, with the name
    /// of the referring property.
    fn referring(
        &self,
        ns: &str,
        q: &AssocQuery,
        candidates: Vec<Instance>,
    ) -> Vec<(Instance, String)> {
        let mut out = Vec::new();
        for inst in candidates {
            let inst = self.complete(ns, inst);
            let role = inst.properties.iter().find(|p| {
                q.role
                    .as_deref()
                    .is_none_or(|r| p.name.eq_ignore_ascii_case(r))
                    && matches!(&p.value, Some(Value::Reference(r)) if self.refers_to(ns, r, &q.object))
            });
            if let Some(role) = role.map(|p| p.name.clone()) {
                out.push((inst, role));
            }
        }
        out
    }

    /// The next batch of query `c`: `max` objects unless the query ends (or
    /// `PULL_PAGES_PER_BATCH_MAX` pages were read), computed now; moves `c` past them.
    pub(super) fn assoc_batch(
        &self,
        ns: &str,
        c: &mut AssocCursor,
        max: usize,
    ) -> Result<AssocResult, CimError> {
        let empty = c.pending.empty_like();
        let mut out = std::mem::replace(&mut c.pending, empty);
        for _ in 0..PULL_PAGES_PER_BATCH_MAX {
            let Some(class) = c.classes.front().cloned() else {
                break;
            };
            if out.len() >= max {
                break;
            }
            let found = self.candidates(ns, &class, c, max - out.len())?;
            match found.next {
                Some(next) => c.position = Some(next),
                None => {
                    c.classes.pop_front();
                    c.position = None;
                }
            }
            let referring = self.referring(ns, &c.query, found.instances);
            if c.references {
                self.add_references(&mut out, referring, c);
            } else {
                self.add_associators(ns, &mut out, referring, c, found.whole)?;
            }
        }
        c.pending = out.split_off(max);
        Ok(out)
    }

    fn add_references(
        &self,
        out: &mut AssocResult,
        found: Vec<(Instance, String)>,
        c: &AssocCursor,
    ) {
        let view = View {
            only_class: None,
            property_list: c.property_list.as_deref(),
            include_class_origin: c.include_class_origin,
        };
        match out {
            AssocResult::Paths(v) => v.extend(found.into_iter().filter_map(|(i, _)| i.path)),
            AssocResult::Instances(v) => {
                v.extend(found.into_iter().map(|(i, _)| self.shape(i, view)))
            }
        }
    }

    /// The objects at the other ends of `found` (not returned before: see
    /// [`AssocCursor::seen`]), added to `out`; those of a class read whole are remembered.
    fn add_associators(
        &self,
        ns: &str,
        out: &mut AssocResult,
        found: Vec<(Instance, String)>,
        c: &mut AssocCursor,
        whole: bool,
    ) -> Result<(), CimError> {
        let q = &c.query;
        let mut targets: Vec<InstancePath> = Vec::new();
        for (assoc, role) in found {
            for p in assoc.properties {
                let Some(Value::Reference(mut t)) = p.value else {
                    continue;
                };
                if p.name.eq_ignore_ascii_case(&role)
                    || q.result_role
                        .as_deref()
                        .is_some_and(|rr| !p.name.eq_ignore_ascii_case(rr))
                {
                    continue;
                }
                if t.namespace.is_none() {
                    t.namespace = Some(ns.to_owned());
                }
                let known = |x: &InstancePath| x.same_object(&t);
                if !targets.iter().any(known) && !c.seen.iter().any(known) {
                    targets.push(t);
                }
            }
        }
        if whole {
            c.seen.extend(targets.iter().cloned());
        }
        let class_ok = |cn: &str| {
            q.result_class
                .as_deref()
                .is_none_or(|rc| self.repo.is_subclass_of(cn, rc))
        };
        let view = View {
            only_class: None,
            property_list: c.property_list.as_deref(),
            include_class_origin: c.include_class_origin,
        };
        match out {
            AssocResult::Paths(v) => {
                v.extend(targets.into_iter().filter(|t| class_ok(&t.class_name)))
            }
            AssocResult::Instances(v) => {
                for t in targets {
                    let tns = t.namespace.clone().unwrap_or_else(|| ns.to_owned());
                    let Ok(tns) = self.namespace(&tns) else {
                        continue;
                    };
                    match self.find_instance(&tns, &t) {
                        Ok(inst) if class_ok(&inst.class_name) => v.push(self.shape(inst, view)),
                        Ok(_) => {}
                        // A dangling reference (the target just went away) is skipped, not an
                        // error.
                        Err(e)
                            if e.status == crate::CimStatus::NotFound
                                || e.status == crate::CimStatus::InvalidClass => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// The whole result of query `c`, every batch of it together.
    fn assoc_all(&self, ns: &str, mut c: AssocCursor) -> Result<AssocResult, CimError> {
        let mut all = self.assoc_batch(ns, &mut c, usize::MAX)?;
        while !c.is_done() {
            all.extend(self.assoc_batch(ns, &mut c, usize::MAX)?);
        }
        Ok(all)
    }

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
        let cursor = self.assoc_cursor(ns, q, refs, names, view);
        let ret = match self.assoc_all(ns, cursor)? {
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
    fn associated_classes(&self, q: &AssocQuery, refs: bool) -> Vec<&Class> {
        let mut out: Vec<&Class> = Vec::new();
        for assoc in self
            .repo
            .classes()
            .iter()
            .filter(|c| self.repo.is_association(&c.name))
        {
            if q.assoc_class
                .as_deref()
                .is_some_and(|a| !self.repo.is_subclass_of(&assoc.name, a))
            {
                continue;
            }
            let ends = self.object_ends(assoc, q);
            if ends.is_empty() {
                continue;
            }
            let found = if refs {
                let wanted = q
                    .result_class
                    .as_deref()
                    .is_none_or(|rc| self.repo.is_subclass_of(&assoc.name, rc));
                if wanted {
                    vec![assoc]
                } else {
                    Vec::new()
                }
            } else {
                self.far_classes(assoc, &ends, q)
            };
            for c in found {
                if !out.iter().any(|x| x.name.eq_ignore_ascii_case(&c.name)) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// The references of `assoc` that can point at the object's class and match `Role`.
    fn object_ends<'a>(&self, assoc: &'a Class, q: &AssocQuery) -> Vec<&'a ClassProperty> {
        assoc
            .properties
            .iter()
            .filter(|p| is_single_ref(p))
            .filter(|p| {
                q.role
                    .as_deref()
                    .is_none_or(|r| p.name.eq_ignore_ascii_case(r))
            })
            .filter(|p| {
                p.reference_class
                    .as_deref()
                    .is_some_and(|rc| self.repo.related(rc, &q.object.class_name))
            })
            .collect()
    }

    /// The classes the other references of `assoc` point at, seen from each of the object's
    /// `ends`, that match `ResultRole` and `ResultClass`.
    fn far_classes(&self, assoc: &Class, ends: &[&ClassProperty], q: &AssocQuery) -> Vec<&Class> {
        let mut found = Vec::new();
        for end in ends {
            let others = assoc
                .properties
                .iter()
                .filter(|o| is_single_ref(o) && !o.name.eq_ignore_ascii_case(&end.name))
                .filter(|o| {
                    q.result_role
                        .as_deref()
                        .is_none_or(|rr| o.name.eq_ignore_ascii_case(rr))
                });
            for other in others {
                let target = other
                    .reference_class
                    .as_deref()
                    .and_then(|rc| self.repo.class(rc));
                if let Some(t) = target.filter(|t| {
                    q.result_class
                        .as_deref()
                        .is_none_or(|rc| self.repo.is_subclass_of(&t.name, rc))
                }) {
                    found.push(t);
                }
            }
        }
        found
    }
}

/// A reference property that is not an array: an end of an association.
fn is_single_ref(p: &ClassProperty) -> bool {
    p.ty == CimType::Reference && !p.is_array
}
