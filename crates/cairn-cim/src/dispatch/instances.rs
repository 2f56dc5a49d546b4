//! GetInstance, CreateInstance, ModifyInstance, DeleteInstance, and the instance plumbing shared
//! with enumerations (plain ones in [`super::stream`], pulls in [`super::pull`]) and associations:
//! finding the instance a client's path names, completing paths and shaping properties for output.
//!
//! Invariants: an enumeration always includes subclass instances; DeepInheritance=FALSE only
//! drops properties the requested class does not declare; PropertyList filters properties but never
//! the path; a provider instance with no path gets one built from its class's key properties.

use super::params::{listed, Params};
use super::Core;
use crate::class::{Class, ClassProperty};
use crate::error::CimError;
use crate::instance::{Instance, Property};
use crate::path::{namespace_eq, InstancePath, KeyBinding, KeyValue};
use crate::request::RawValue;
use crate::types::{CimType, Value};
use crate::xml::encode::IReturn;

/// How a client asked to see instances.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    /// Keep only properties declared by this class (DeepInheritance=FALSE).
    pub only_class: Option<&'a Class>,
    pub property_list: Option<&'a [String]>,
    pub include_class_origin: bool,
}

impl Core {
    /// The class `name`, or CIM_ERR_INVALID_CLASS.
    pub(super) fn known_class(&self, name: &str) -> Result<&Class, CimError> {
        self.repo
            .class(name)
            .ok_or_else(|| CimError::invalid_class(name))
    }

    /// Finds the instance a client's path names (its class may be a superclass of the real one).
    pub(super) fn find_instance(
        &self,
        ns: &str,
        path: &InstancePath,
    ) -> Result<Instance, CimError> {
        if path
            .namespace
            .as_deref()
            .is_some_and(|p| !namespace_eq(p, ns))
        {
            return Err(CimError::not_found(path));
        }
        self.known_class(&path.class_name)?;
        for cn in self.provider.class_names(ns) {
            if !self.repo.is_subclass_of(&cn, &path.class_name) {
                continue;
            }
            let mut concrete = path.clone();
            concrete.class_name = cn;
            concrete.namespace = Some(ns.to_owned());
            match self.provider.get_instance(ns, &concrete) {
                Ok(Some(inst)) => return Ok(self.complete(ns, inst)),
                Ok(None) => {
                    let found = self
                        .provider
                        .enumerate_instances(ns, &concrete.class_name)?
                        .into_iter()
                        .map(|i| self.complete(ns, i))
                        .find(|i| i.path.as_ref().is_some_and(|p| p.same_keys(&concrete)));
                    if let Some(inst) = found {
                        return Ok(inst);
                    }
                }
                Err(e) if e.status == crate::CimStatus::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Err(CimError::not_found(path))
    }

    /// Gives a provider instance a full path (namespace, keys from the class if missing).
    pub(super) fn complete(&self, ns: &str, mut inst: Instance) -> Instance {
        let mut path = match inst.path.take() {
            Some(p) => p,
            None => self.path_from_keys(&inst),
        };
        if path.namespace.is_none() {
            path.namespace = Some(ns.to_owned());
        }
        inst.path = Some(path);
        inst
    }

    fn path_from_keys(&self, inst: &Instance) -> InstancePath {
        let mut path = InstancePath::new(inst.class_name.clone());
        if let Some(class) = self.repo.class(&inst.class_name) {
            for key in class.key_names() {
                if let Some(v) = inst.get(key).and_then(KeyValue::from_value) {
                    path.keys.push(KeyBinding {
                        name: key.to_owned(),
                        value: v,
                    });
                }
            }
        }
        path
    }

    /// The instance as the client asked to see it: class order, declared types, NULLs for unset
    /// properties, filtered by `view`. Takes the instance's properties over (no copy of a value,
    /// nor of a name the instance spells as the class does).
    pub(super) fn shape(&self, mut inst: Instance, view: View<'_>) -> Instance {
        let keep = |name: &str| {
            listed(view.property_list, name)
                && view.only_class.is_none_or(|c| c.property(name).is_some())
        };
        let Some(class) = self.repo.class(&inst.class_name) else {
            inst.properties.retain(|p| keep(&p.name));
            return inst;
        };
        let mut given = inst.properties;
        let mut properties = Vec::with_capacity(class.properties.len());
        for cp in class.properties.iter().filter(|cp| keep(&cp.name)) {
            // A property taken over is left with an empty name (no class property has one), so
            // it is taken once; nothing but its name and value moves.
            let found = given
                .iter_mut()
                .find(|p| p.name.eq_ignore_ascii_case(&cp.name))
                .map(|p| (std::mem::take(&mut p.name), p.value.take()));
            properties.push(declared(found, cp, view.include_class_origin));
        }
        Instance {
            class_name: class.name.clone(),
            properties,
            path: inst.path.take(),
        }
    }

    pub(super) fn get_instance(&self, ns: &str, p: &Params<'_>) -> Result<IReturn, CimError> {
        let path = p
            .instance_name("InstanceName")?
            .ok_or_else(|| CimError::invalid_parameter("InstanceName is required"))?;
        let plist = p.property_list()?;
        let view = View {
            only_class: None,
            property_list: plist.as_deref(),
            include_class_origin: p.bool("IncludeClassOrigin", false)?,
        };
        // LocalOnly and IncludeQualifiers are deprecated for instances (DSP0200) and ignored, but
        // must still be well-formed.
        p.bool("LocalOnly", false)?;
        p.bool("IncludeQualifiers", false)?;
        let inst = self.find_instance(ns, path)?;
        Ok(IReturn::Instance(self.shape(inst, view)))
    }

    pub(super) fn delete_instance(&self, ns: &str, p: &Params<'_>) -> Result<IReturn, CimError> {
        let path = p
            .instance_name("InstanceName")?
            .ok_or_else(|| CimError::invalid_parameter("InstanceName is required"))?;
        let inst = self.find_instance(ns, path)?;
        let real = inst.path.as_ref().unwrap_or(path);
        self.provider.delete_instance(ns, real)?;
        Ok(IReturn::Nothing)
    }

    /// CreateInstance: the class must be known; the provider decides whether it can make one.
    pub(super) fn create_instance(&self, ns: &str, p: &Params<'_>) -> Result<IReturn, CimError> {
        let inst = match p.get("NewInstance")? {
            Some(RawValue::Instance(inst)) => inst,
            Some(_) => {
                return Err(CimError::invalid_parameter(
                    "NewInstance must be an INSTANCE",
                ))
            }
            None => return Err(CimError::invalid_parameter("NewInstance is required")),
        };
        self.known_class(&inst.class_name)?;
        let mut path = self.provider.create_instance(ns, inst)?;
        path.host = None;
        path.namespace = Some(ns.to_owned());
        Ok(IReturn::InstanceNames(vec![path]))
    }

    pub(super) fn modify_instance(&self, ns: &str, p: &Params<'_>) -> Result<IReturn, CimError> {
        let (path, modified) = match p.get("ModifiedInstance")? {
            Some(RawValue::NamedInstance(path, inst)) => (path, inst),
            Some(_) => {
                return Err(CimError::invalid_parameter(
                    "ModifiedInstance must be a VALUE.NAMEDINSTANCE",
                ))
            }
            None => return Err(CimError::invalid_parameter("ModifiedInstance is required")),
        };
        p.bool("IncludeQualifiers", true)?;
        let list = p.property_list()?;
        let inst = self.find_instance(ns, path)?;
        let real = inst.path.as_ref().unwrap_or(path);
        self.provider
            .modify_instance(ns, real, modified, list.as_deref())?;
        Ok(IReturn::Nothing)
    }
}

/// Class property `cp` as an instance shows it: the value of `found` (the name and value of the
/// instance's property of that name, if any) as the class declares it, the name as the class
/// spells it, the class origin if asked for.
fn declared(
    found: Option<(String, Option<Value>)>,
    cp: &ClassProperty,
    class_origin: bool,
) -> Property {
    let (name, value) = match found {
        Some((name, value)) if name == cp.name => (name, value),
        Some((_, value)) => (cp.name.clone(), value),
        None => (cp.name.clone(), None),
    };
    let (ty, is_array, value) = match value {
        Some(v) => conform(v, cp.ty, cp.is_array),
        None => (cp.ty, cp.is_array, None),
    };
    Property {
        name,
        ty,
        is_array,
        value,
        class_origin: class_origin.then(|| cp.class_origin.clone()),
        reference_class: cp.reference_class.clone(),
    }
}

/// A provider value as the class declares it: a scalar or array whose element type differs from the
/// declaration is converted through its text when that is exact (e.g. a `Uint32(5)` for a `uint16`
/// property); otherwise it keeps its own type, so nothing is ever silently mangled. Embedded
/// instances keep their own type (`Instance`).
fn conform(v: Value, ty: CimType, is_array: bool) -> (CimType, bool, Option<Value>) {
    let (vty, varr) = v.cim_type();
    if vty == ty
        || vty == CimType::Instance
        || varr != is_array
        || matches!(ty, CimType::Reference | CimType::Instance)
    {
        return (vty, varr, Some(v));
    }
    let convert = |x: &Value| x.to_cim_text().and_then(|t| Value::parse(ty, &t));
    let converted = match &v {
        Value::Array(_, items) => items
            .iter()
            .map(convert)
            .collect::<Option<Vec<_>>>()
            .map(|i| Value::Array(ty, i)),
        scalar => convert(scalar),
    };
    match converted {
        Some(c) => (ty, is_array, Some(c)),
        None => (vty, varr, Some(v)),
    }
}
