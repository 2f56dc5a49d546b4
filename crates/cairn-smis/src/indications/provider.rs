//! [`IndicationProvider`]: the array model with, in `interop`, the indication service and its
//! capabilities and the filters, listener destinations and subscriptions clients create, delete
//! and modify (SNIA Indications profile). Everything else is the array model's.
//!
//! Invariants: a filter is stored only with a query [`query::Query::parse`] accepts; a
//! destination only with an http or https URL; a subscription only between an existing filter
//! and destination; instances keep the class and keys the client created them with.

use std::sync::Arc;

use cairn_cim::path::namespace_eq;
use cairn_cim::{
    CimDateTime, CimError, CimType, ClassRepository, Instance, InstancePath, KeyValue, MethodCall,
    MethodName, MethodResult, Page, ProfileRegistration, Provider, Value,
};

use super::deliver::{Deliveries, Url};
use super::query::Query;
use super::store::{
    DestinationRec, FilterRec, Keys, Store, SubscriptionRec, SUBSCRIPTION_DISABLED,
    SUBSCRIPTION_ENABLED,
};
use super::IndicationOptions;
use crate::interop::{INTEROP_NAMESPACE, SERVER_PROFILE_ID};
use crate::limits::{
    INDICATION_DESTINATIONS_MAX, INDICATION_STRING_BYTES_MAX, INDICATION_SUBSCRIPTIONS_MAX,
};
use crate::model::{key_ref, key_text, SYSTEM_CLASS};
use crate::provider::ArrayProvider;

pub const FILTER_CLASS: &str = "CIM_IndicationFilter";
pub const DESTINATION_CLASS: &str = "CIM_ListenerDestinationCIMXML";
pub const SUBSCRIPTION_CLASS: &str = "CIM_IndicationSubscription";
pub const SERVICE_CLASS: &str = "CIM_IndicationService";
pub const CAPABILITIES_CLASS: &str = "CIM_IndicationServiceCapabilities";
/// InstanceID of the Indication profile's registration.
pub const INDICATION_PROFILE_ID: &str = "CAIRN:Profile:Indication";
const SERVICE_NAME: &str = "Cairn:IndicationService";

const CLASSES: [&str; 5] = [
    FILTER_CLASS,
    DESTINATION_CLASS,
    SUBSCRIPTION_CLASS,
    SERVICE_CLASS,
    CAPABILITIES_CLASS,
];

/// The array model plus the indication classes.
pub struct IndicationProvider {
    array: Arc<ArrayProvider>,
    store: Arc<Store>,
    pub(crate) deliveries: Arc<Deliveries>,
    opts: Arc<IndicationOptions>,
    repo: Arc<ClassRepository>,
}

fn is(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn text(inst: &Instance, name: &str) -> Result<Option<String>, CimError> {
    match inst.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if s.len() <= INDICATION_STRING_BYTES_MAX => Ok(Some(s.clone())),
        Some(_) => Err(CimError::invalid_parameter(format!(
            "{name} must be a string of at most {INDICATION_STRING_BYTES_MAX} bytes"
        ))),
    }
}

fn number(inst: &Instance, name: &str) -> Result<Option<u16>, CimError> {
    match inst.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| CimError::invalid_parameter(format!("{name} must be a uint16"))),
    }
}

fn keys_path(class: &str, k: &Keys) -> InstancePath {
    InstancePath::new(class)
        .in_namespace(INTEROP_NAMESPACE)
        .with_key("SystemCreationClassName", &k.system_creation_class_name)
        .with_key("SystemName", &k.system_name)
        .with_key("CreationClassName", &k.creation_class_name)
        .with_key("Name", &k.name)
}

fn keys_instance(class: &str, k: &Keys) -> Instance {
    Instance::new(class)
        .with(
            "SystemCreationClassName",
            Value::string(&k.system_creation_class_name),
        )
        .with("SystemName", Value::string(&k.system_name))
        .with("CreationClassName", Value::string(&k.creation_class_name))
        .with("Name", Value::string(&k.name))
        .with_path(keys_path(class, k))
}

fn strings(v: &[String]) -> Value {
    Value::Array(CimType::String, v.iter().map(Value::string).collect())
}

/// The Name key of `target`, a reference (named `what`) to a filter or destination of `class`.
fn target_name<'a>(target: &'a InstancePath, what: &str, class: &str) -> Result<&'a str, CimError> {
    if !is(&target.class_name, class) {
        return Err(CimError::invalid_parameter(format!(
            "{what} must refer to a {class}"
        )));
    }
    key_text(target, "Name")
        .ok_or_else(|| CimError::invalid_parameter(format!("{what} has no Name key")))
}

/// The Name key of the filter or destination that key `name` of `path` refers to.
fn ref_name<'a>(path: &'a InstancePath, name: &str, class: &str) -> Result<&'a str, CimError> {
    let target = key_ref(path, name)
        .ok_or_else(|| CimError::invalid_parameter(format!("{name} must be a reference")))?;
    target_name(target, name, class)
}

/// The Name key of the filter or destination that property `name` of `inst` refers to.
fn ref_prop<'a>(inst: &'a Instance, name: &str, class: &str) -> Result<&'a str, CimError> {
    match inst.get(name) {
        Some(Value::Reference(target)) => target_name(target, name, class),
        _ => Err(CimError::invalid_parameter(format!(
            "{name} must be a reference"
        ))),
    }
}

impl IndicationProvider {
    pub(crate) fn new(
        array: Arc<ArrayProvider>,
        store: Arc<Store>,
        deliveries: Arc<Deliveries>,
        opts: Arc<IndicationOptions>,
    ) -> IndicationProvider {
        IndicationProvider {
            array,
            store,
            deliveries,
            opts,
            repo: ClassRepository::shared(),
        }
    }

    fn ours(&self, ns: &str, class: &str) -> Option<&'static str> {
        if !namespace_eq(ns, INTEROP_NAMESPACE) {
            return None;
        }
        CLASSES.into_iter().find(|c| is(c, class))
    }

    /// The keys a client's new filter or destination gets: its own, or the array's.
    fn new_keys(&self, inst: &Instance, class: &str) -> Result<Keys, CimError> {
        let name = text(inst, "Name")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                CimError::invalid_parameter(format!("Name of a new {class} is required"))
            })?;
        Ok(Keys {
            system_creation_class_name: text(inst, "SystemCreationClassName")?
                .unwrap_or_else(|| SYSTEM_CLASS.to_owned()),
            system_name: text(inst, "SystemName")?
                .unwrap_or_else(|| self.array.opts.system_name.clone()),
            creation_class_name: class.to_owned(),
            name,
        })
    }

    fn service_path(&self) -> InstancePath {
        keys_path(SERVICE_CLASS, &self.service_keys())
    }

    fn service_keys(&self) -> Keys {
        Keys {
            system_creation_class_name: SYSTEM_CLASS.to_owned(),
            system_name: self.array.opts.system_name.clone(),
            creation_class_name: SERVICE_CLASS.to_owned(),
            name: SERVICE_NAME.to_owned(),
        }
    }

    fn service(&self) -> Instance {
        let o = &self.opts;
        let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        keys_instance(SERVICE_CLASS, &self.service_keys())
            .with("ElementName", Value::string("Cairn indication service"))
            .with("FilterCreationEnabled", Value::Boolean(true))
            .with("DeliveryRetryAttempts", Value::Uint16(o.retry_attempts))
            .with(
                "DeliveryRetryInterval",
                Value::Uint32(secs(o.retry_interval)),
            )
            .with("SubscriptionRemovalAction", Value::Uint16(o.removal_action))
            .with(
                "SubscriptionRemovalTimeInterval",
                Value::Uint32(secs(o.removal_interval)),
            )
            .with("Started", Value::Boolean(true))
            .with("EnabledState", Value::Uint16(2))
            .with(
                "OperationalStatus",
                Value::Array(CimType::Uint16, vec![Value::Uint16(2)]),
            )
    }

    fn capabilities(&self) -> Instance {
        let id = "CAIRN:IndicationServiceCapabilities";
        let max = |n: usize| Value::Uint32(u32::try_from(n).unwrap_or(u32::MAX));
        let mut c = Instance::new(CAPABILITIES_CLASS)
            .with("InstanceID", Value::string(id))
            .with(
                "ElementName",
                Value::string("Cairn indication service capabilities"),
            )
            .with("MaxListenerDestinations", max(INDICATION_DESTINATIONS_MAX))
            .with("MaxActiveSubscriptions", max(INDICATION_SUBSCRIPTIONS_MAX))
            .with("SubscriptionsPersisted", Value::Boolean(true))
            .with_path(
                InstancePath::new(CAPABILITIES_CLASS)
                    .in_namespace(INTEROP_NAMESPACE)
                    .with_key("InstanceID", id),
            );
        for p in [
            "FilterCreationEnabledIsSettable",
            "DeliveryRetryAttemptsIsSettable",
            "DeliveryRetryIntervalIsSettable",
            "SubscriptionRemovalActionIsSettable",
            "SubscriptionRemovalTimeIntervalIsSettable",
        ] {
            c.set(p, Some(Value::Boolean(false)));
        }
        c
    }

    fn instances(&self, class: &str) -> Vec<Instance> {
        let st = self.store.state();
        match class {
            FILTER_CLASS => st.filters.iter().map(filter_instance).collect(),
            DESTINATION_CLASS => st.destinations.iter().map(destination_instance).collect(),
            SUBSCRIPTION_CLASS => st
                .subscriptions
                .iter()
                .filter_map(|s| subscription_instance(&st, s))
                .collect(),
            SERVICE_CLASS => vec![self.service()],
            _ => vec![self.capabilities()],
        }
    }

    fn create_filter(&self, inst: &Instance) -> Result<InstancePath, CimError> {
        let keys = self.new_keys(inst, FILTER_CLASS)?;
        let query =
            text(inst, "Query")?.ok_or_else(|| CimError::invalid_parameter("Query is required"))?;
        let language = text(inst, "QueryLanguage")?
            .ok_or_else(|| CimError::invalid_parameter("QueryLanguage is required"))?;
        Query::parse(&query, &language, &self.repo)?;
        let mut source_namespaces = match inst.get("SourceNamespaces") {
            Some(Value::Array(_, items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if let Some(ns) = text(inst, "SourceNamespace")? {
            source_namespaces.push(ns);
        }
        let path = keys_path(FILTER_CLASS, &keys);
        self.store.add_filter(FilterRec {
            keys,
            query,
            query_language: language,
            source_namespaces,
            element_name: text(inst, "ElementName")?,
            predefined: false,
        })?;
        Ok(path)
    }

    fn create_destination(&self, inst: &Instance) -> Result<InstancePath, CimError> {
        let keys = self.new_keys(inst, DESTINATION_CLASS)?;
        let destination = text(inst, "Destination")?
            .ok_or_else(|| CimError::invalid_parameter("Destination is required"))?;
        Url::parse(&destination).map_err(CimError::invalid_parameter)?;
        if number(inst, "Protocol")?.is_some_and(|p| p != 2) {
            return Err(CimError::not_supported("Protocol other than 2 (CIM-XML)"));
        }
        let path = keys_path(DESTINATION_CLASS, &keys);
        self.store.add_destination(DestinationRec {
            keys,
            destination,
            persistence_type: number(inst, "PersistenceType")?,
            element_name: text(inst, "ElementName")?,
        })?;
        Ok(path)
    }

    fn create_subscription(&self, inst: &Instance) -> Result<InstancePath, CimError> {
        let state = number(inst, "SubscriptionState")?.unwrap_or(SUBSCRIPTION_ENABLED);
        if state != SUBSCRIPTION_ENABLED && state != SUBSCRIPTION_DISABLED {
            return Err(CimError::not_supported(
                "SubscriptionState other than 2 or 4",
            ));
        }
        let rec = SubscriptionRec {
            filter: ref_prop(inst, "Filter", FILTER_CLASS)?.to_owned(),
            handler: ref_prop(inst, "Handler", DESTINATION_CLASS)?.to_owned(),
            state,
            on_fatal_error_policy: number(inst, "OnFatalErrorPolicy")?,
            start_unix_secs: crate::jobs::now_unix_secs(),
        };
        self.store.add_subscription(rec.clone())?;
        let st = self.store.state();
        subscription_instance(&st, &rec)
            .and_then(|i| i.path)
            .ok_or_else(|| CimError::failed("Subscription vanished"))
    }

    /// The filter and handler names of a subscription path.
    fn subscription_names(path: &InstancePath) -> Result<(&str, &str), CimError> {
        Ok((
            ref_name(path, "Filter", FILTER_CLASS)?,
            ref_name(path, "Handler", DESTINATION_CLASS)?,
        ))
    }

    fn modify_subscription(
        &self,
        path: &InstancePath,
        modified: &Instance,
        property_list: Option<&[String]>,
    ) -> Result<(), CimError> {
        let (filter, handler) = Self::subscription_names(path)?;
        for p in &modified.properties {
            if property_list.is_some_and(|l| !l.iter().any(|n| is(n, &p.name))) {
                continue;
            }
            if is(&p.name, "SubscriptionState") {
                let state = number(modified, "SubscriptionState")?.unwrap_or(0);
                if state != SUBSCRIPTION_ENABLED && state != SUBSCRIPTION_DISABLED {
                    return Err(CimError::not_supported(
                        "SubscriptionState other than 2 or 4",
                    ));
                }
                self.store.set_state(Some(filter), handler, state)?;
            } else if !is(&p.name, "Filter") && !is(&p.name, "Handler") {
                let current = self.instances(SUBSCRIPTION_CLASS);
                let now = current
                    .iter()
                    .find(|i| i.path.as_ref().is_some_and(|x| x.same_keys(path)));
                if now.and_then(|i| i.get(&p.name)) != p.value.as_ref() {
                    return Err(CimError::not_supported(format!(
                        "Property {} of a subscription cannot be modified",
                        p.name
                    )));
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn filter_instance(f: &FilterRec) -> Instance {
    let mut i = keys_instance(FILTER_CLASS, &f.keys)
        .with("Query", Value::string(&f.query))
        .with("QueryLanguage", Value::string(&f.query_language))
        .with("SourceNamespaces", strings(&f.source_namespaces))
        .with("IndividualSubscriptionSupported", Value::Boolean(true));
    if let Some(ns) = f.source_namespaces.first() {
        i.set("SourceNamespace", Some(Value::string(ns)));
    }
    if let Some(e) = &f.element_name {
        i.set("ElementName", Some(Value::string(e)));
    }
    i
}

fn destination_instance(d: &DestinationRec) -> Instance {
    let mut i = keys_instance(DESTINATION_CLASS, &d.keys)
        .with("Destination", Value::string(&d.destination))
        .with("Protocol", Value::Uint16(2));
    if let Some(p) = d.persistence_type {
        i.set("PersistenceType", Some(Value::Uint16(p)));
    }
    if let Some(e) = &d.element_name {
        i.set("ElementName", Some(Value::string(e)));
    }
    i
}

fn subscription_instance(st: &super::store::State, s: &SubscriptionRec) -> Option<Instance> {
    let f = st.filters.iter().find(|f| f.keys.name == s.filter)?;
    let d = st.destinations.iter().find(|d| d.keys.name == s.handler)?;
    let fp = keys_path(FILTER_CLASS, &f.keys);
    let dp = keys_path(DESTINATION_CLASS, &d.keys);
    let path = InstancePath::new(SUBSCRIPTION_CLASS)
        .in_namespace(INTEROP_NAMESPACE)
        .with_key_value("Filter", KeyValue::Reference(Box::new(fp.clone())))
        .with_key_value("Handler", KeyValue::Reference(Box::new(dp.clone())));
    let mut i = Instance::new(SUBSCRIPTION_CLASS)
        .with("Filter", Value::Reference(fp))
        .with("Handler", Value::Reference(dp))
        .with("SubscriptionState", Value::Uint16(s.state))
        .with(
            "SubscriptionStartTime",
            Value::DateTime(CimDateTime::from_unix_seconds(s.start_unix_secs)),
        )
        .with_path(path);
    if let Some(p) = s.on_fatal_error_policy {
        i.set("OnFatalErrorPolicy", Some(Value::Uint16(p)));
    }
    Some(i)
}

impl Provider for IndicationProvider {
    fn namespaces(&self) -> Vec<String> {
        self.array.namespaces()
    }

    fn class_names(&self, namespace: &str) -> Vec<String> {
        let mut names = self.array.class_names(namespace);
        if namespace_eq(namespace, INTEROP_NAMESPACE) {
            names.extend(CLASSES.iter().map(|c| (*c).to_owned()));
        }
        names
    }

    fn enumerate_instances(
        &self,
        namespace: &str,
        class_name: &str,
    ) -> Result<Vec<Instance>, CimError> {
        match self.ours(namespace, class_name) {
            Some(c) => Ok(self.instances(c)),
            None => self.array.enumerate_instances(namespace, class_name),
        }
    }

    /// The array's pages for its classes; the indication classes are few and paged by the
    /// dispatcher.
    fn enumerate_page(
        &self,
        namespace: &str,
        class_name: &str,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<Option<Page>, CimError> {
        match self.ours(namespace, class_name) {
            Some(_) => Ok(None),
            None => self
                .array
                .enumerate_page(namespace, class_name, cursor, max),
        }
    }

    fn associations_page(
        &self,
        namespace: &str,
        assoc_class: &str,
        object: &InstancePath,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<Option<Page>, CimError> {
        match self.ours(namespace, assoc_class) {
            Some(_) => Ok(None),
            None => self
                .array
                .associations_page(namespace, assoc_class, object, cursor, max),
        }
    }

    fn get_instance(
        &self,
        namespace: &str,
        path: &InstancePath,
    ) -> Result<Option<Instance>, CimError> {
        match self.ours(namespace, &path.class_name) {
            Some(c) => Ok(Some(
                self.instances(c)
                    .into_iter()
                    .find(|i| i.path.as_ref().is_some_and(|p| p.same_keys(path)))
                    .ok_or_else(|| CimError::not_found(path))?,
            )),
            None => self.array.get_instance(namespace, path),
        }
    }

    fn associations_referring_to(
        &self,
        namespace: &str,
        assoc_class: &str,
        object: &InstancePath,
    ) -> Result<Option<Vec<Instance>>, CimError> {
        match self.ours(namespace, assoc_class) {
            Some(_) => Ok(None),
            None => self
                .array
                .associations_referring_to(namespace, assoc_class, object),
        }
    }

    fn create_instance(
        &self,
        namespace: &str,
        instance: &Instance,
    ) -> Result<InstancePath, CimError> {
        match self.ours(namespace, &instance.class_name) {
            Some(FILTER_CLASS) => self.create_filter(instance),
            Some(DESTINATION_CLASS) => self.create_destination(instance),
            Some(SUBSCRIPTION_CLASS) => self.create_subscription(instance),
            Some(c) => Err(CimError::not_supported(format!("CreateInstance of {c}"))),
            None => self.array.create_instance(namespace, instance),
        }
    }

    fn delete_instance(&self, namespace: &str, path: &InstancePath) -> Result<(), CimError> {
        let name = || key_text(path, "Name").ok_or_else(|| CimError::not_found(path));
        match self.ours(namespace, &path.class_name) {
            Some(FILTER_CLASS) => self.store.remove_filter(name()?),
            Some(DESTINATION_CLASS) => {
                let n = name()?;
                self.store.remove_destination(n)?;
                self.deliveries.forget(n);
                Ok(())
            }
            Some(SUBSCRIPTION_CLASS) => {
                let (filter, handler) = Self::subscription_names(path)?;
                self.store.remove_subscriptions(Some(filter), handler)
            }
            Some(c) => Err(CimError::not_supported(format!("DeleteInstance of {c}"))),
            None => self.array.delete_instance(namespace, path),
        }
    }

    fn modify_instance(
        &self,
        namespace: &str,
        path: &InstancePath,
        modified: &Instance,
        property_list: Option<&[String]>,
    ) -> Result<(), CimError> {
        match self.ours(namespace, &path.class_name) {
            Some(SUBSCRIPTION_CLASS) => self.modify_subscription(path, modified, property_list),
            Some(c) => Err(CimError::not_supported(format!("ModifyInstance of {c}"))),
            None => self
                .array
                .modify_instance(namespace, path, modified, property_list),
        }
    }

    fn registered_profiles(&self) -> Vec<ProfileRegistration> {
        let mut regs = self.array.registered_profiles();
        let mut r = ProfileRegistration::snia(INDICATION_PROFILE_ID, "Indication", "1.2.0");
        r.conforming_elements.push(self.service_path());
        r.component_of.push(SERVER_PROFILE_ID.to_owned());
        regs.push(r);
        regs
    }

    fn invoke_method(&self, call: &MethodCall<'_>) -> Result<MethodResult, CimError> {
        match self.ours(call.namespace, call.class_name) {
            Some(c) => Err(CimError::not_supported(format!(
                "Method {} of {c}",
                call.method
            ))),
            None => self.array.invoke_method(call),
        }
    }

    /// The array's methods, resolved once by the dispatcher (the indication classes have none).
    fn methods(&self) -> Vec<MethodName> {
        self.array.methods()
    }

    fn invoke_resolved(
        &self,
        call: &MethodCall<'_>,
        implementation: usize,
    ) -> Result<MethodResult, CimError> {
        self.array.invoke_resolved(call, implementation)
    }
}
