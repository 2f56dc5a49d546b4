//! CIM class definitions as served by GetClass/EnumerateClasses: qualifiers, properties, methods
//! and parameters. Loaded from the committed class repository (see `repository`).
//!
//! Invariants: a class holds its full, resolved feature set (inherited properties and methods
//! included, marked `propagated` with their `class_origin`), so no lookup ever walks superclasses.

use serde::Deserialize;

use crate::types::CimType;

/// A qualifier value as stored in the repository: its CIM type and value(s) as JSON.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Qualifier {
    #[serde(rename = "n")]
    pub name: String,
    /// CIM type name (`string`, `boolean`, `uint32`, ...).
    #[serde(rename = "t")]
    pub ty: String,
    /// JSON scalar, array of scalars, or null.
    #[serde(rename = "v")]
    pub value: serde_json::Value,
    /// Inherited from the superclass (not defined locally).
    #[serde(rename = "p", default)]
    pub propagated: bool,
    #[serde(rename = "o", default = "yes")]
    pub overridable: bool,
    #[serde(rename = "s", default = "yes")]
    pub tosubclass: bool,
    #[serde(rename = "l", default)]
    pub translatable: bool,
}

fn yes() -> bool {
    true
}

/// A property of a class.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClassProperty {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "t", deserialize_with = "de_type")]
    pub ty: CimType,
    #[serde(rename = "a", default)]
    pub is_array: bool,
    #[serde(rename = "rc", default)]
    pub reference_class: Option<String>,
    #[serde(rename = "co")]
    pub class_origin: String,
    #[serde(rename = "p", default)]
    pub propagated: bool,
    #[serde(rename = "q", default)]
    pub qualifiers: Vec<Qualifier>,
    /// Default value as JSON (null when none).
    #[serde(rename = "d", default)]
    pub default: serde_json::Value,
}

impl ClassProperty {
    /// True if the property carries qualifier `name` with value TRUE (or with a non-boolean value).
    pub fn has_qualifier(&self, name: &str) -> bool {
        has_true_qualifier(&self.qualifiers, name)
    }
}

/// A method parameter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Parameter {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "t", deserialize_with = "de_type")]
    pub ty: CimType,
    #[serde(rename = "a", default)]
    pub is_array: bool,
    #[serde(rename = "rc", default)]
    pub reference_class: Option<String>,
    #[serde(rename = "q", default)]
    pub qualifiers: Vec<Qualifier>,
}

impl Parameter {
    /// An input parameter (`IN` qualifier, TRUE by default in CIM).
    pub fn is_in(&self) -> bool {
        match self
            .qualifiers
            .iter()
            .find(|q| q.name.eq_ignore_ascii_case("In"))
        {
            Some(q) => q.value.as_bool().unwrap_or(true),
            None => true,
        }
    }
    /// An output parameter (`OUT` qualifier).
    pub fn is_out(&self) -> bool {
        has_true_qualifier(&self.qualifiers, "Out")
    }
}

/// A method of a class.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Method {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "t", deserialize_with = "de_type")]
    pub return_type: CimType,
    #[serde(rename = "co")]
    pub class_origin: String,
    #[serde(rename = "p", default)]
    pub propagated: bool,
    #[serde(rename = "q", default)]
    pub qualifiers: Vec<Qualifier>,
    #[serde(rename = "ps", default)]
    pub parameters: Vec<Parameter>,
}

impl Method {
    /// Parameter `name` (case-insensitive).
    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// A class definition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Class {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "sc", default)]
    pub superclass: Option<String>,
    #[serde(rename = "q", default)]
    pub qualifiers: Vec<Qualifier>,
    #[serde(rename = "ps", default)]
    pub properties: Vec<ClassProperty>,
    #[serde(rename = "ms", default)]
    pub methods: Vec<Method>,
}

impl Class {
    /// Property `name` (case-insensitive).
    pub fn property(&self, name: &str) -> Option<&ClassProperty> {
        self.properties
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// Method `name` (case-insensitive).
    pub fn method(&self, name: &str) -> Option<&Method> {
        self.methods
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
    }

    /// True for association classes (`Association` qualifier).
    pub fn is_association(&self) -> bool {
        has_true_qualifier(&self.qualifiers, "Association")
    }

    /// Names of the key properties.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.properties
            .iter()
            .filter(|p| p.has_qualifier("Key"))
            .map(|p| p.name.as_str())
    }
}

fn has_true_qualifier(qs: &[Qualifier], name: &str) -> bool {
    qs.iter()
        .any(|q| q.name.eq_ignore_ascii_case(name) && q.value.as_bool() != Some(false))
}

fn de_type<'de, D: serde::Deserializer<'de>>(d: D) -> Result<CimType, D::Error> {
    let s = String::deserialize(d)?;
    CimType::from_xml_name(&s)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown CIM type {s}")))
}
