//! CIM instances: a class name, typed properties and an optional instance path.
//!
//! Invariants: property names are unique case-insensitively within an instance (`set` replaces);
//! a property's `ty`/`is_array` describe its value when it has one.

use crate::path::{InstancePath, KeyValue};
use crate::types::{CimType, Value};

/// One property of an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub ty: CimType,
    pub is_array: bool,
    /// `None` is NULL.
    pub value: Option<Value>,
    /// Class that defines the property (filled from the class repository when asked for).
    pub class_origin: Option<String>,
    /// For references: the class the reference points to (`REFERENCECLASS`).
    pub reference_class: Option<String>,
}

impl Property {
    /// A property holding `value` (type taken from the value).
    pub fn new(name: impl Into<String>, value: Value) -> Property {
        let (ty, is_array) = value.cim_type();
        Property {
            name: name.into(),
            ty,
            is_array,
            value: Some(value),
            class_origin: None,
            reference_class: None,
        }
    }

    /// A NULL property of the given type.
    pub fn null(name: impl Into<String>, ty: CimType, is_array: bool) -> Property {
        Property {
            name: name.into(),
            ty,
            is_array,
            value: None,
            class_origin: None,
            reference_class: None,
        }
    }
}

/// A CIM instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub class_name: String,
    pub properties: Vec<Property>,
    /// The instance's path; providers set it for instances they return.
    pub path: Option<InstancePath>,
}

impl Instance {
    pub fn new(class_name: impl Into<String>) -> Instance {
        Instance {
            class_name: class_name.into(),
            properties: Vec::new(),
            path: None,
        }
    }

    /// An instance with room for `properties` properties (a provider building many instances of
    /// one class knows how many it sets).
    pub fn with_capacity(class_name: impl Into<String>, properties: usize) -> Instance {
        Instance {
            class_name: class_name.into(),
            properties: Vec::with_capacity(properties),
            path: None,
        }
    }

    /// Builder: sets property `name` to `value`.
    pub fn with(mut self, name: &str, value: Value) -> Instance {
        self.set(name, Some(value));
        self
    }

    /// Builder: sets the instance path.
    pub fn with_path(mut self, path: InstancePath) -> Instance {
        self.path = Some(path);
        self
    }

    /// Sets (or with `None`, nulls) property `name`, replacing any property of that name. A NULL for a
    /// property not present yet is recorded as a NULL string (the class repository supplies the real
    /// type on output).
    pub fn set(&mut self, name: &str, value: Option<Value>) {
        match (
            self.properties
                .iter_mut()
                .find(|p| p.name.eq_ignore_ascii_case(name)),
            value,
        ) {
            (Some(p), Some(v)) => {
                (p.ty, p.is_array) = v.cim_type();
                p.value = Some(v);
            }
            (Some(p), None) => p.value = None,
            (None, Some(v)) => self.properties.push(Property::new(name, v)),
            (None, None) => self
                .properties
                .push(Property::null(name, CimType::String, false)),
        }
    }

    /// Property `name` (case-insensitive).
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The value of property `name`, if present and not NULL.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.property(name).and_then(|p| p.value.as_ref())
    }
}

/// An association instance of `class` whose two references are its keys (as for the
/// association classes of SMI-S profiles): `(role, path)` twice. Paths should carry their namespace.
pub fn association(class: &str, a: (&str, InstancePath), b: (&str, InstancePath)) -> Instance {
    let path = InstancePath::new(class)
        .with_key_value(a.0, KeyValue::Reference(Box::new(a.1.clone())))
        .with_key_value(b.0, KeyValue::Reference(Box::new(b.1.clone())));
    Instance::new(class)
        .with(a.0, Value::Reference(a.1))
        .with(b.0, Value::Reference(b.1))
        .with_path(path)
}
