//! The `Provider` trait: what the operation dispatcher asks of the component that owns the
//! instances (a product's model, e.g. cairn-smis's array model inside its interop model).
//!
//! The dispatcher owns CIM semantics (class hierarchy, subclass matching, association traversal,
//! property filtering, paging); a provider only answers for the concrete classes it names.
//! Invariants: object-safe; every method is called with a namespace that `namespaces()` listed
//! (compared case-insensitively) and class names that `class_names()` listed for it.

use crate::error::CimError;
use crate::instance::Instance;
use crate::path::InstancePath;
use crate::types::Value;

/// SNIA in `RegisteredOrganization`'s value map (CIM_RegisteredProfile).
pub const ORGANIZATION_SNIA: u16 = 11;

/// A provider of instances and methods.
pub trait Provider: Send + Sync {
    /// The namespaces served (e.g. `interop`, `root/cairn`). Any other namespace answers
    /// CIM_ERR_INVALID_NAMESPACE.
    fn namespaces(&self) -> Vec<String>;

    /// The concrete classes that have instances in `namespace` (e.g. `Cairn_StorageVolume`). Each must
    /// be in the class repository. The dispatcher enumerates only these when a client asks for a
    /// class or any of its superclasses.
    fn class_names(&self, namespace: &str) -> Vec<String>;

    /// All instances of concrete class `class_name` in `namespace`, each with its `path` set (with
    /// or without namespace; the dispatcher fills the namespace and, if `path` is `None`, builds it
    /// from the class's key properties).
    fn enumerate_instances(
        &self,
        namespace: &str,
        class_name: &str,
    ) -> Result<Vec<Instance>, CimError>;

    /// One page of the instances of concrete class `class_name` in `namespace`, for an
    /// enumeration that produces its answer batch by batch (the pull operations): at most `max`
    /// instances after `cursor` (`None`: from the start), in an order of the provider's choosing
    /// that stays fixed while the enumeration runs, and the cursor to continue from, `None` when
    /// there is no more. `cursor` is one this provider returned for the same class. A page is
    /// computed from the state at the time it is asked for: an instance deleted before its page
    /// is not returned, one created behind the cursor is not, and no instance is returned twice.
    /// Return `Ok(None)` to let the dispatcher page through `enumerate_instances` in path order
    /// (the default does; fine for classes with few instances).
    fn enumerate_page(
        &self,
        namespace: &str,
        class_name: &str,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<Option<Page>, CimError> {
        let _ = (namespace, class_name, cursor, max);
        Ok(None)
    }

    /// Fast path for one instance by path. `path.class_name` is a concrete class listed by
    /// `class_names` (the dispatcher has resolved superclass names); `path.namespace` is set. Return
    /// `Ok(None)` to let the dispatcher search `enumerate_instances` (the default does), or
    /// CIM_ERR_NOT_FOUND when the instance surely does not exist.
    fn get_instance(
        &self,
        namespace: &str,
        path: &InstancePath,
    ) -> Result<Option<Instance>, CimError> {
        let _ = (namespace, path);
        Ok(None)
    }

    /// Fast path for association traversal: the instances of association class `assoc_class` (listed
    /// by `class_names`) that may refer to `object` (a client's path: its class may be a superclass,
    /// its namespace may be unset). Return `Ok(None)` to let the dispatcher scan
    /// `enumerate_instances` (the default does). A superset is fine: the dispatcher still checks every
    /// reference, role and class filter.
    fn associations_referring_to(
        &self,
        namespace: &str,
        assoc_class: &str,
        object: &InstancePath,
    ) -> Result<Option<Vec<Instance>>, CimError> {
        let _ = (namespace, assoc_class, object);
        Ok(None)
    }

    /// One page of the instances of association class `assoc_class` that may refer to `object`
    /// (as for [`Provider::associations_referring_to`]), for an association query that produces
    /// its answer batch by batch: about `max` of them after `cursor` (`None`: from the start), and
    /// the cursor to continue from, `None` after the last page. `cursor` is one this provider
    /// returned for the same class and object. A page is computed from the state at the time it
    /// is asked for; no instance that refers to `object` is returned on two pages, and an object
    /// at the other end of such an instance on one page is at the other end of none on another
    /// (the dispatcher de-duplicates within a page only). Return `Ok(None)` to let the dispatcher
    /// take the class whole from `associations_referring_to` (the default does; fine where an
    /// object has few associations of the class).
    fn associations_page(
        &self,
        namespace: &str,
        assoc_class: &str,
        object: &InstancePath,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<Option<Page>, CimError> {
        let _ = (namespace, assoc_class, object, cursor, max);
        Ok(None)
    }

    /// Deletes the instance at `path` (concrete class, as returned by this provider). The default
    /// refuses with CIM_ERR_NOT_SUPPORTED.
    fn delete_instance(&self, namespace: &str, path: &InstancePath) -> Result<(), CimError> {
        let _ = namespace;
        Err(CimError::not_supported(format!(
            "DeleteInstance of {}",
            path.class_name
        )))
    }

    /// Creates an instance of `instance.class_name` (a class of the repository; the client's
    /// properties as sent) and returns its path. The default refuses with CIM_ERR_NOT_SUPPORTED.
    fn create_instance(
        &self,
        namespace: &str,
        instance: &Instance,
    ) -> Result<InstancePath, CimError> {
        let _ = namespace;
        Err(CimError::not_supported(format!(
            "CreateInstance of {}",
            instance.class_name
        )))
    }

    /// Sets properties of the instance at `path` (concrete class, as returned by this provider) to
    /// their values in `modified`: those named in `property_list`, or all of `modified`'s when it
    /// is `None`. The default refuses with CIM_ERR_NOT_SUPPORTED.
    fn modify_instance(
        &self,
        namespace: &str,
        path: &InstancePath,
        modified: &Instance,
        property_list: Option<&[String]>,
    ) -> Result<(), CimError> {
        let _ = (namespace, modified, property_list);
        Err(CimError::not_supported(format!(
            "ModifyInstance of {}",
            path.class_name
        )))
    }

    /// The profiles this provider implements, for an interop model wrapping it, which serves a
    /// registered profile per entry with its conformance and reference associations in the
    /// interop namespace (as cairn-smis's `InteropProvider` does). Default: none.
    fn registered_profiles(&self) -> Vec<ProfileRegistration> {
        Vec::new()
    }

    /// Invokes extrinsic method `call.method` (spelled as in the class repository). Input parameters
    /// are already typed against the method's declaration; unknown methods never reach the provider.
    /// The dispatcher calls it only for methods not in [`Provider::methods`].
    fn invoke_method(&self, call: &MethodCall<'_>) -> Result<MethodResult, CimError>;

    /// The extrinsic methods this provider implements. The dispatcher matches each call against
    /// the repository and this list once (when the server is made, and per call by a hash look-up)
    /// and hands a listed method to [`Provider::invoke_resolved`] with its position here, so the
    /// provider never matches method names again. Default: none.
    fn methods(&self) -> Vec<MethodName> {
        Vec::new()
    }

    /// Invokes `methods()[implementation]`, the method `call` names. The default hands the call
    /// to [`Provider::invoke_method`].
    fn invoke_resolved(
        &self,
        call: &MethodCall<'_>,
        implementation: usize,
    ) -> Result<MethodResult, CimError> {
        let _ = implementation;
        self.invoke_method(call)
    }
}

/// One page of an enumeration ([`Provider::enumerate_page`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// The instances, each with its `path` set as for `enumerate_instances`.
    pub instances: Vec<Instance>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<String>,
}

/// An extrinsic method a provider implements: the concrete class and the method, spelled as in
/// the class repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodName {
    pub class: &'static str,
    pub method: &'static str,
}

impl MethodName {
    /// The key the dispatcher finds the method by (both names in lowercase).
    pub(crate) fn key(class: &str, method: &str) -> (String, String) {
        (class.to_ascii_lowercase(), method.to_ascii_lowercase())
    }
}

/// One registered profile (DSP1033 / SMI-S profile registration).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRegistration {
    /// InstanceID of its `Cairn_RegisteredProfile` (unique, e.g. `CAIRN:Profile:Array`).
    pub instance_id: String,
    /// RegisteredName, e.g. `Array`, `Block Services`.
    pub name: String,
    /// RegisteredVersion, numeric (`1.6.1`).
    pub version: String,
    /// RegisteredOrganization (11 = SNIA, 2 = DMTF).
    pub organization: u16,
    /// Central elements: each gets a `Cairn_ElementConformsToProfile` (full paths, with namespace).
    pub conforming_elements: Vec<InstancePath>,
    /// InstanceIDs of the autonomous profiles this one is a component of: each gets a
    /// `Cairn_ReferencedProfile` with Antecedent = that profile, Dependent = this one (SNIA direction).
    pub component_of: Vec<String>,
}

impl ProfileRegistration {
    /// An SNIA profile with no central elements and no parents yet.
    pub fn snia(
        instance_id: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> ProfileRegistration {
        ProfileRegistration {
            instance_id: instance_id.into(),
            name: name.into(),
            version: version.into(),
            organization: ORGANIZATION_SNIA,
            conforming_elements: Vec::new(),
            component_of: Vec::new(),
        }
    }
}

/// One extrinsic method invocation, typed.
#[derive(Debug)]
pub struct MethodCall<'a> {
    pub namespace: &'a str,
    /// The instance the method is invoked on (its provider-side path, concrete class) or `None` for a
    /// static method invoked on `class_name`.
    pub target: Option<&'a InstancePath>,
    /// The concrete class (for an instance) or the class named by the client (static call), as
    /// spelled in the repository.
    pub class_name: &'a str,
    /// Method name as spelled in the repository.
    pub method: &'a str,
    /// Input parameters, names as in the repository, in request order; `None` is NULL.
    pub params: &'a [(String, Option<Value>)],
}

impl MethodCall<'_> {
    /// Input parameter `name` (case-insensitive), if present and not NULL.
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_ref())
    }
}

/// What a method returned: its return value and output parameters (names as declared; the
/// dispatcher writes their declared types).
#[derive(Debug, Clone, PartialEq)]
pub struct MethodResult {
    pub return_value: Value,
    pub out_params: Vec<(String, Value)>,
}

impl MethodResult {
    /// A result with the given return code (e.g. `Value::Uint32(0)`) and no output parameters.
    pub fn code(return_value: Value) -> MethodResult {
        MethodResult {
            return_value,
            out_params: Vec::new(),
        }
    }

    /// Builder: adds an output parameter.
    pub fn with_out(mut self, name: impl Into<String>, value: Value) -> MethodResult {
        self.out_params.push((name.into(), value));
        self
    }
}
