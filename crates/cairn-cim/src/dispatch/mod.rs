//! Operation dispatch: runs one decoded request against the class repository and the provider.
//!
//! Invariants: the namespace is checked before anything else (CIM_ERR_INVALID_NAMESPACE); every
//! instance leaving the dispatcher has a full path (namespace set) and properties shaped by its class
//! (declared types, class order, NULLs for unset properties); ModifyInstance reaches the provider
//! only for an instance that exists, with its concrete path; operations other than those listed in
//! `intrinsic` answer CIM_ERR_NOT_SUPPORTED.

mod assoc;
mod classes;
mod coerce;
mod instances;
mod method;
mod params;
mod pull;
mod stream;

pub(crate) use pull::PullContexts;
pub use stream::CimStream;
pub(crate) use stream::{streamed, Enumerated};

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::CimError;
use crate::path::namespace_eq;
use crate::provider::{MethodName, Provider};
use crate::repository::ClassRepository;
use crate::request::IntrinsicCall;
use crate::xml::encode::{ClassOptions, IReturn, NO_CLASS_OPTIONS};

use params::Params;

/// Everything the operations need: repository, provider, the provider's methods, open enumeration
/// contexts.
pub(crate) struct Core {
    pub repo: Arc<ClassRepository>,
    pub provider: Arc<dyn Provider>,
    /// Position in `provider.methods()` by (class, method) in lowercase.
    pub methods: HashMap<(String, String), usize>,
    pub pulls: Mutex<PullContexts>,
}

impl Core {
    /// The dispatcher of `provider` over `repo`. Each method the provider lists must be declared by
    /// its class in the repository.
    pub fn new(repo: Arc<ClassRepository>, provider: Arc<dyn Provider>) -> Core {
        let mut methods = HashMap::new();
        for (i, m) in provider.methods().into_iter().enumerate() {
            let declared = repo
                .class(m.class)
                .is_some_and(|c| c.method(m.method).is_some());
            assert!(
                declared,
                "{}.{} is not in the repository",
                m.class, m.method
            );
            methods.insert(MethodName::key(m.class, m.method), i);
        }
        Core {
            repo,
            provider,
            methods,
            pulls: Mutex::new(PullContexts::default()),
        }
    }

    /// The provider's spelling of namespace `ns`, or CIM_ERR_INVALID_NAMESPACE.
    pub fn namespace(&self, ns: &str) -> Result<String, CimError> {
        self.provider
            .namespaces()
            .into_iter()
            .find(|n| namespace_eq(n, ns))
            .ok_or_else(|| CimError::invalid_namespace(ns))
    }

    /// Runs an intrinsic operation; returns the result and how to write classes in it.
    pub fn intrinsic(&self, call: &IntrinsicCall) -> Result<(IReturn, ClassOptions), CimError> {
        let ns = self.namespace(&call.namespace)?;
        let p = Params(&call.params);
        let m = call.method.as_str();
        let is = |name: &str| m.eq_ignore_ascii_case(name);
        let plain = |r: Result<IReturn, CimError>| r.map(|r| (r, NO_CLASS_OPTIONS));
        if is("GetClass") {
            self.get_class(&p)
        } else if is("EnumerateClasses") {
            self.enumerate_classes(&p)
        } else if is("EnumerateClassNames") {
            plain(self.enumerate_class_names(&p))
        } else if is("GetInstance") {
            plain(self.get_instance(&ns, &p))
        } else if let Some(names) = streamed(m) {
            plain(self.enumerate_all(&ns, names, &p))
        } else if is("DeleteInstance") {
            plain(self.delete_instance(&ns, &p))
        } else if is("CreateInstance") {
            plain(self.create_instance(&ns, &p))
        } else if is("ModifyInstance") {
            plain(self.modify_instance(&ns, &p))
        } else if is("Associators")
            || is("AssociatorNames")
            || is("References")
            || is("ReferenceNames")
        {
            self.association_op(&ns, m, &p)
        } else if is("OpenEnumerateInstances") || is("OpenEnumerateInstancePaths") {
            plain(self.open_enumerate(&ns, is("OpenEnumerateInstancePaths"), &p))
        } else if is("OpenAssociatorInstances")
            || is("OpenAssociatorInstancePaths")
            || is("OpenReferenceInstances")
            || is("OpenReferenceInstancePaths")
        {
            plain(self.open_association(&ns, m, &p))
        } else if is("PullInstancesWithPath") || is("PullInstancePaths") {
            plain(self.pull(&ns, is("PullInstancePaths"), &p))
        } else if is("CloseEnumeration") {
            plain(self.close_enumeration(&ns, &p))
        } else {
            // Get/SetProperty, ExecQuery,
            // qualifier and class changes, OpenQueryInstances, PullInstances, EnumerationCount, ...
            Err(CimError::not_supported(format!("Operation {m}")))
        }
    }
}
