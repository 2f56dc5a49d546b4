//! Pull operations (DSP0200 §5.3.2): Open* compute the whole result, return the first
//! MaxObjectCount objects and park the rest in an enumeration context; Pull* page through it;
//! CloseEnumeration drops it.
//!
//! Invariants: at most `ENUMERATION_CONTEXTS_OPEN_MAX` contexts exist; a context expires
//! OperationTimeout after its last use and is then gone (CIM_ERR_INVALID_ENUMERATION_CONTEXT); a
//! context is only usable from the namespace that opened it and for its own kind (instances or
//! paths); a finished context is removed at once. Time is passed in, so expiry is testable.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::assoc::AssocResult;
use super::instances::View;
use super::params::Params;
use super::Core;
use crate::error::{CimError, CimStatus};
use crate::instance::Instance;
use crate::limits::{
    ENUMERATION_CONTEXTS_OPEN_MAX, ENUMERATION_CONTEXT_OBJECT_COUNT_MAX,
    OPERATION_TIMEOUT_SECONDS_DEFAULT, OPERATION_TIMEOUT_SECONDS_MAX, PULL_OBJECT_COUNT_MAX,
};
use crate::path::{namespace_eq, InstancePath};
use crate::xml::encode::IReturn;

/// The remaining objects of one enumeration.
#[derive(Debug)]
pub(crate) enum PullItems {
    Instances(VecDeque<Instance>),
    Paths(VecDeque<InstancePath>),
}

impl PullItems {
    fn len(&self) -> usize {
        match self {
            PullItems::Instances(v) => v.len(),
            PullItems::Paths(v) => v.len(),
        }
    }

    /// Takes up to `n` objects off the front.
    fn take(&mut self, n: usize) -> PullItems {
        match self {
            PullItems::Instances(v) => PullItems::Instances(v.drain(..n.min(v.len())).collect()),
            PullItems::Paths(v) => PullItems::Paths(v.drain(..n.min(v.len())).collect()),
        }
    }

    fn into_return(self, end_of_sequence: bool, context: Option<String>) -> IReturn {
        match self {
            PullItems::Instances(v) => IReturn::PulledInstances {
                instances: v.into(),
                end_of_sequence,
                context,
            },
            PullItems::Paths(v) => IReturn::PulledPaths {
                paths: v.into(),
                end_of_sequence,
                context,
            },
        }
    }
}

#[derive(Debug)]
struct Context {
    namespace: String,
    items: PullItems,
    timeout: Duration,
    expires: Instant,
}

/// The open enumeration contexts.
#[derive(Debug, Default)]
pub(crate) struct PullContexts {
    open: HashMap<String, Context>,
}

impl PullContexts {
    /// Number of open (not yet expired at `now`) contexts.
    #[cfg(test)]
    pub fn open_count(&mut self, now: Instant) -> usize {
        self.purge(now);
        self.open.len()
    }

    fn purge(&mut self, now: Instant) {
        self.open.retain(|_, c| c.expires > now);
    }

    /// Answers an Open*: the first `max` objects, and a context for the rest if any remain.
    pub fn open(
        &mut self,
        ns: &str,
        mut items: PullItems,
        max: u32,
        timeout: Duration,
        now: Instant,
    ) -> Result<IReturn, CimError> {
        if items.len() > ENUMERATION_CONTEXT_OBJECT_COUNT_MAX {
            return Err(CimError::new(
                CimStatus::ServerLimitsExceeded,
                "Result too large for one enumeration",
            ));
        }
        let first = items.take(max as usize);
        if items.len() == 0 {
            return Ok(first.into_return(true, None));
        }
        self.purge(now);
        if self.open.len() >= ENUMERATION_CONTEXTS_OPEN_MAX {
            return Err(CimError::new(
                CimStatus::ServerLimitsExceeded,
                "Too many open enumeration contexts",
            ));
        }
        let id = format!("urn:cairn:enum:{:032x}", rand::random::<u128>());
        self.open.insert(
            id.clone(),
            Context {
                namespace: ns.to_owned(),
                items,
                timeout,
                expires: now + timeout,
            },
        );
        Ok(first.into_return(false, Some(id)))
    }

    fn context(&mut self, id: &str, ns: &str, now: Instant) -> Result<&mut Context, CimError> {
        self.purge(now);
        match self.open.get_mut(id) {
            Some(c) if namespace_eq(&c.namespace, ns) => Ok(c),
            _ => Err(CimError::new(
                CimStatus::InvalidEnumerationContext,
                "No such enumeration context (closed, finished or expired)",
            )),
        }
    }

    /// Answers a Pull*: the next `max` objects; removes the context when it is exhausted.
    pub fn pull(
        &mut self,
        id: &str,
        ns: &str,
        paths: bool,
        max: u32,
        now: Instant,
    ) -> Result<IReturn, CimError> {
        let ctx = self.context(id, ns, now)?;
        if paths != matches!(ctx.items, PullItems::Paths(_)) {
            return Err(CimError::invalid_parameter(
                "Enumeration context was opened for another kind of pull",
            ));
        }
        let batch = ctx.items.take(max as usize);
        ctx.expires = now + ctx.timeout;
        if ctx.items.len() == 0 {
            self.open.remove(id);
            return Ok(batch.into_return(true, None));
        }
        Ok(batch.into_return(false, Some(id.to_owned())))
    }

    /// Answers CloseEnumeration.
    pub fn close(&mut self, id: &str, ns: &str, now: Instant) -> Result<(), CimError> {
        self.context(id, ns, now)?;
        self.open.remove(id);
        Ok(())
    }
}

/// The Open* parameters every open shares.
struct OpenOptions {
    max: u32,
    timeout: Duration,
}

fn open_options(p: &Params<'_>) -> Result<OpenOptions, CimError> {
    if p.get("FilterQuery")?.is_some() || p.get("FilterQueryLanguage")?.is_some() {
        return Err(CimError::new(
            CimStatus::FilteredEnumerationNotSupported,
            "Filtered enumerations are not supported",
        ));
    }
    if p.bool("ContinueOnError", false)? {
        return Err(CimError::new(
            CimStatus::ContinuationOnErrorNotSupported,
            "ContinueOnError is not supported",
        ));
    }
    let timeout = match p.u32("OperationTimeout")? {
        None => OPERATION_TIMEOUT_SECONDS_DEFAULT,
        // 0 asks for no timeout; contexts are bounded, so the longest one is used.
        Some(0) => OPERATION_TIMEOUT_SECONDS_MAX,
        Some(t) if t > OPERATION_TIMEOUT_SECONDS_MAX => {
            return Err(CimError::new(
                CimStatus::InvalidOperationTimeout,
                format!("OperationTimeout above {OPERATION_TIMEOUT_SECONDS_MAX} seconds"),
            ))
        }
        Some(t) => t,
    };
    let max = p
        .u32("MaxObjectCount")?
        .unwrap_or(0)
        .min(PULL_OBJECT_COUNT_MAX);
    Ok(OpenOptions {
        max,
        timeout: Duration::from_secs(timeout.into()),
    })
}

impl Core {
    pub(super) fn open_enumerate(
        &self,
        ns: &str,
        paths: bool,
        p: &Params<'_>,
    ) -> Result<IReturn, CimError> {
        let opts = open_options(p)?;
        let items = if paths {
            PullItems::Paths(self.enumerate_paths(ns, p)?.into())
        } else {
            PullItems::Instances(self.enumerate_shaped(ns, p)?.into())
        };
        self.pulls
            .lock()
            .open(ns, items, opts.max, opts.timeout, Instant::now())
    }

    pub(super) fn open_association(
        &self,
        ns: &str,
        method: &str,
        p: &Params<'_>,
    ) -> Result<IReturn, CimError> {
        let opts = open_options(p)?;
        let lower = method.to_ascii_lowercase();
        let refs = lower.starts_with("openreference");
        let names = lower.ends_with("paths");
        let q = self.assoc_query(p, "InstanceName", refs)?;
        if q.object.keys.is_empty() {
            return Err(CimError::invalid_parameter(
                "InstanceName must name an instance",
            ));
        }
        let plist = p.property_list()?;
        let view = View {
            only_class: None,
            property_list: plist.as_deref(),
            include_class_origin: p.bool("IncludeClassOrigin", false)?,
        };
        let r = if refs {
            self.references(ns, &q, names, view)?
        } else {
            self.associators(ns, &q, names, view)?
        };
        let items = match r {
            AssocResult::Instances(v) => PullItems::Instances(v.into()),
            AssocResult::Paths(v) => PullItems::Paths(v.into()),
        };
        self.pulls
            .lock()
            .open(ns, items, opts.max, opts.timeout, Instant::now())
    }

    pub(super) fn pull(&self, ns: &str, paths: bool, p: &Params<'_>) -> Result<IReturn, CimError> {
        let id = p
            .string("EnumerationContext")?
            .ok_or_else(|| CimError::invalid_parameter("EnumerationContext is required"))?;
        let max = p
            .u32("MaxObjectCount")?
            .ok_or_else(|| CimError::invalid_parameter("MaxObjectCount is required"))?;
        self.pulls.lock().pull(
            id.trim(),
            ns,
            paths,
            max.min(PULL_OBJECT_COUNT_MAX),
            Instant::now(),
        )
    }

    pub(super) fn close_enumeration(&self, ns: &str, p: &Params<'_>) -> Result<IReturn, CimError> {
        let id = p
            .string("EnumerationContext")?
            .ok_or_else(|| CimError::invalid_parameter("EnumerationContext is required"))?;
        self.pulls.lock().close(id.trim(), ns, Instant::now())?;
        Ok(IReturn::Nothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(n: usize) -> PullItems {
        PullItems::Paths(
            (0..n)
                .map(|i| InstancePath::new("C").with_key("K", i.to_string()))
                .collect(),
        )
    }

    fn count(r: &IReturn) -> (usize, bool, Option<String>) {
        match r {
            IReturn::PulledPaths {
                paths,
                end_of_sequence,
                context,
            } => (paths.len(), *end_of_sequence, context.clone()),
            IReturn::PulledInstances {
                instances,
                end_of_sequence,
                context,
            } => (instances.len(), *end_of_sequence, context.clone()),
            _ => panic!("not a pull result"),
        }
    }

    #[test]
    fn pages_through_and_removes_finished_context() {
        let mut c = PullContexts::default();
        let now = Instant::now();
        let t = Duration::from_secs(30);
        let (n, eos, ctx) = count(&c.open("root/cairn", paths(5), 2, t, now).expect("open"));
        assert_eq!((n, eos), (2, false));
        let id = ctx.expect("context");
        let (n, eos, _) = count(&c.pull(&id, "root/cairn", true, 2, now).expect("pull"));
        assert_eq!((n, eos), (2, false));
        let (n, eos, ctx) = count(&c.pull(&id, "ROOT/cairn", true, 2, now).expect("pull"));
        assert_eq!((n, eos, ctx), (1, true, None));
        assert_eq!(c.open_count(now), 0);
        let e = c.pull(&id, "root/cairn", true, 2, now).expect_err("gone");
        assert_eq!(e.status, CimStatus::InvalidEnumerationContext);
    }

    #[test]
    fn small_results_need_no_context() {
        let mut c = PullContexts::default();
        let now = Instant::now();
        let (n, eos, ctx) = count(
            &c.open("ns", paths(3), 3, Duration::from_secs(1), now)
                .expect("open"),
        );
        assert_eq!((n, eos, ctx), (3, true, None));
        let (n, eos, ctx) = count(
            &c.open("ns", paths(0), 0, Duration::from_secs(1), now)
                .expect("open"),
        );
        assert_eq!((n, eos, ctx), (0, true, None));
        assert_eq!(c.open_count(now), 0);
    }

    #[test]
    fn contexts_expire_and_pulls_extend_them() {
        let mut c = PullContexts::default();
        let now = Instant::now();
        let t = Duration::from_secs(10);
        let id = count(&c.open("ns", paths(10), 1, t, now).expect("open"))
            .2
            .expect("ctx");
        // A pull at 9 s extends the deadline to 19 s.
        c.pull(&id, "ns", true, 1, now + Duration::from_secs(9))
            .expect("alive");
        c.pull(&id, "ns", true, 1, now + Duration::from_secs(18))
            .expect("still alive");
        let e = c
            .pull(&id, "ns", true, 1, now + Duration::from_secs(29))
            .expect_err("expired");
        assert_eq!(e.status, CimStatus::InvalidEnumerationContext);
    }

    #[test]
    fn wrong_namespace_kind_and_close() {
        let mut c = PullContexts::default();
        let now = Instant::now();
        let t = Duration::from_secs(10);
        let id = count(&c.open("ns", paths(10), 1, t, now).expect("open"))
            .2
            .expect("ctx");
        assert_eq!(
            c.pull(&id, "other", true, 1, now).expect_err("ns").status,
            CimStatus::InvalidEnumerationContext
        );
        assert_eq!(
            c.pull(&id, "ns", false, 1, now).expect_err("kind").status,
            CimStatus::InvalidParameter
        );
        c.close(&id, "ns", now).expect("close");
        assert_eq!(
            c.close(&id, "ns", now).expect_err("closed").status,
            CimStatus::InvalidEnumerationContext
        );
    }

    #[test]
    fn open_contexts_are_bounded() {
        let mut c = PullContexts::default();
        let now = Instant::now();
        let t = Duration::from_secs(10);
        for _ in 0..ENUMERATION_CONTEXTS_OPEN_MAX {
            c.open("ns", paths(2), 1, t, now).expect("open");
        }
        let e = c.open("ns", paths(2), 1, t, now).expect_err("limit");
        assert_eq!(e.status, CimStatus::ServerLimitsExceeded);
        // Once the others expire there is room again.
        c.open("ns", paths(2), 1, t, now + Duration::from_secs(11))
            .expect("room after expiry");
    }
}
