//! Pull operations (DSP0200 §5.3.2). An enumeration of instances or paths (Open*Enumerate*)
//! keeps a cursor, not its result: the concrete classes still to go and the provider's position
//! in the current one ([`crate::Provider::enumerate_page`]), and each Open*/Pull* computes its
//! batch from the state of that moment; an association query (Open*Associator*/Reference*, whose
//! result is the neighbours of one object) keeps a cursor too: the association classes still to
//! go and the provider's position in the current one
//! ([`crate::Provider::associations_page`]). CloseEnumeration drops the context.
//!
//! Invariants: at most `ENUMERATION_CONTEXTS_OPEN_MAX` contexts exist, so what they hold is
//! bounded by a cursor each (an association query's also remembers the few objects reached
//! through association classes read whole, see `AssocCursor`); a context expires OperationTimeout after its last use and is then gone
//! (CIM_ERR_INVALID_ENUMERATION_CONTEXT); a context is only usable from the namespace that opened
//! it and for its own kind (instances or paths), by one pull at a time; a finished context, or
//! one whose pull failed, is removed at once. A batch never repeats an object of an earlier one;
//! an object deleted before its batch is skipped. Time is passed in, so expiry is testable.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::assoc::{AssocCursor, AssocResult};
use super::instances::View;
use super::params::Params;
use super::Core;
use crate::error::{CimError, CimStatus};
use crate::instance::Instance;
use crate::limits::{
    ENUMERATION_CONTEXTS_OPEN_MAX, OPERATION_TIMEOUT_SECONDS_DEFAULT,
    OPERATION_TIMEOUT_SECONDS_MAX, PULL_OBJECT_COUNT_MAX, PULL_PAGES_PER_BATCH_MAX,
};
use crate::path::{namespace_eq, InstancePath};
use crate::provider::Page;
use crate::xml::encode::IReturn;

/// Objects of one batch.
#[derive(Debug)]
pub(crate) enum PullItems {
    Instances(VecDeque<Instance>),
    Paths(VecDeque<InstancePath>),
}

impl From<AssocResult> for PullItems {
    fn from(r: AssocResult) -> PullItems {
        match r {
            AssocResult::Instances(v) => PullItems::Instances(v.into()),
            AssocResult::Paths(v) => PullItems::Paths(v.into()),
        }
    }
}

impl PullItems {
    /// Adds `more` (of the same kind) after these objects.
    pub(super) fn extend(&mut self, more: PullItems) {
        match (self, more) {
            (PullItems::Instances(v), PullItems::Instances(m)) => v.extend(m),
            (PullItems::Paths(v), PullItems::Paths(m)) => v.extend(m),
            _ => unreachable!("one enumeration yields one kind of object"),
        }
    }

    /// The objects as a plain enumeration returns them: VALUE.NAMEDINSTANCE or INSTANCENAME.
    pub(super) fn into_plain(self) -> IReturn {
        match self {
            PullItems::Instances(v) => IReturn::NamedInstances(v.into()),
            PullItems::Paths(v) => IReturn::InstanceNames(v.into()),
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

/// Where an enumeration of a class and its subclasses stands, and how its client sees instances.
#[derive(Debug)]
pub(crate) struct EnumCursor {
    /// The concrete classes still to enumerate, the current one first.
    classes: VecDeque<String>,
    /// The provider's position in the current class (`None`: its start).
    position: Option<String>,
    paths: bool,
    /// DeepInheritance=FALSE: only the properties this class declares.
    only_class: Option<String>,
    property_list: Option<Vec<String>>,
    include_class_origin: bool,
}

impl EnumCursor {
    /// True once every class is enumerated.
    pub(super) fn is_done(&self) -> bool {
        self.classes.is_empty()
    }
}

/// How a batch reads a concrete class the provider does not page itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unpaged {
    /// In the order of its paths' text, those after the cursor: a pull, which later requests
    /// continue from the cursor.
    Sorted,
    /// Whole, in the provider's order, as one page: an answer streamed in one response, which
    /// nothing continues (such classes hold few instances; the paged ones hold the volumes).
    Whole,
}

/// What a context holds between pulls: where its enumeration stands, never its objects.
#[derive(Debug)]
pub(crate) enum Source {
    /// The instances (or paths) of a class and its subclasses.
    Cursor(EnumCursor),
    /// An association query about one object.
    Assoc(Box<AssocCursor>),
}

#[derive(Debug)]
struct Context {
    namespace: String,
    paths: bool,
    /// `None` while a pull computes its batch.
    source: Option<Source>,
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

    /// Opens a context for what remains of an enumeration after its first batch; its id.
    fn insert(
        &mut self,
        ns: &str,
        source: Source,
        paths: bool,
        timeout: Duration,
        now: Instant,
    ) -> Result<String, CimError> {
        self.purge(now);
        if self.open.len() >= ENUMERATION_CONTEXTS_OPEN_MAX {
            return Err(CimError::new(
                CimStatus::ServerLimitsExceeded,
                "Too many open enumeration contexts",
            ));
        }
        let id = format!("urn:cairn:enum:{:032x}", rand::random::<u128>());
        let context = Context {
            namespace: ns.to_owned(),
            paths,
            source: Some(source),
            timeout,
            expires: now + timeout,
        };
        self.open.insert(id.clone(), context);
        Ok(id)
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

    /// Takes what context `id` holds for a Pull* of kind `paths`; the context stays open (and
    /// counted) but busy until [`PullContexts::checkin`].
    fn checkout(
        &mut self,
        id: &str,
        ns: &str,
        paths: bool,
        now: Instant,
    ) -> Result<Source, CimError> {
        let ctx = self.context(id, ns, now)?;
        if paths != ctx.paths {
            return Err(CimError::invalid_parameter(
                "Enumeration context was opened for another kind of pull",
            ));
        }
        let source = ctx.source.take().ok_or_else(|| {
            CimError::new(
                CimStatus::InvalidEnumerationContext,
                "Enumeration context is in use by another pull",
            )
        })?;
        ctx.expires = now + ctx.timeout;
        Ok(source)
    }

    /// Gives context `id` back what remains after a pull, or removes it (finished or failed).
    /// A context closed meanwhile stays closed.
    fn checkin(&mut self, id: &str, rest: Option<Source>, now: Instant) {
        match (rest, self.open.get_mut(id)) {
            (Some(rest), Some(ctx)) => {
                ctx.source = Some(rest);
                ctx.expires = now + ctx.timeout;
            }
            _ => {
                self.open.remove(id);
            }
        }
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
    /// The next batch of at most `max` objects of `source`, and what remains after it.
    fn next_batch(
        &self,
        ns: &str,
        source: Source,
        max: u32,
    ) -> Result<(PullItems, Option<Source>), CimError> {
        match source {
            Source::Assoc(mut c) => {
                let batch = self.assoc_batch(ns, c.as_mut(), max as usize)?;
                Ok((batch.into(), (!c.is_done()).then_some(Source::Assoc(c))))
            }
            Source::Cursor(mut c) => {
                let batch = self.cursor_batch(ns, &mut c, max as usize, Unpaged::Sorted)?;
                Ok((batch, (!c.classes.is_empty()).then_some(Source::Cursor(c))))
            }
        }
    }

    /// Up to `max` objects from where `c` stands, computed now (more only for a class read
    /// whole, see [`Unpaged`]); moves `c` past them.
    pub(super) fn cursor_batch(
        &self,
        ns: &str,
        c: &mut EnumCursor,
        max: usize,
        unpaged: Unpaged,
    ) -> Result<PullItems, CimError> {
        let mut found = Vec::new();
        for _ in 0..PULL_PAGES_PER_BATCH_MAX {
            let Some(class) = c.classes.front() else {
                break;
            };
            if found.len() >= max {
                break;
            }
            let page = self.page(ns, class, c.position.as_deref(), max - found.len(), unpaged)?;
            found.extend(page.instances.into_iter().map(|i| self.complete(ns, i)));
            match page.next {
                Some(next) => c.position = Some(next),
                None => {
                    c.classes.pop_front();
                    c.position = None;
                }
            }
        }
        if c.paths {
            return Ok(PullItems::Paths(
                found.into_iter().filter_map(|i| i.path).collect(),
            ));
        }
        let only_class = match &c.only_class {
            Some(name) => Some(self.known_class(name)?),
            None => None,
        };
        let view = View {
            only_class,
            property_list: c.property_list.as_deref(),
            include_class_origin: c.include_class_origin,
        };
        Ok(PullItems::Instances(
            found.into_iter().map(|i| self.shape(i, view)).collect(),
        ))
    }

    /// One page of concrete class `class`: the provider's, or, if it has no pages of its own,
    /// its instances as `unpaged` says.
    fn page(
        &self,
        ns: &str,
        class: &str,
        cursor: Option<&str>,
        max: usize,
        unpaged: Unpaged,
    ) -> Result<Page, CimError> {
        if let Some(page) = self.provider.enumerate_page(ns, class, cursor, max)? {
            return Ok(page);
        }
        if unpaged == Unpaged::Whole {
            return Ok(Page {
                instances: self.provider.enumerate_instances(ns, class)?,
                next: None,
            });
        }
        let mut keyed: Vec<(String, Instance)> = self
            .provider
            .enumerate_instances(ns, class)?
            .into_iter()
            .map(|i| self.complete(ns, i))
            .map(|i| {
                (
                    i.path.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                    i,
                )
            })
            .filter(|(k, _)| cursor.is_none_or(|c| k.as_str() > c))
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        keyed.dedup_by(|a, b| a.0 == b.0);
        let more = keyed.len() > max;
        keyed.truncate(max);
        let next = if more {
            keyed.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(Page {
            instances: keyed.into_iter().map(|(_, i)| i).collect(),
            next,
        })
    }

    /// The first batch of `source` and, if more remains, a context for it.
    fn open_source(
        &self,
        ns: &str,
        source: Source,
        paths: bool,
        opts: &OpenOptions,
    ) -> Result<IReturn, CimError> {
        let (first, rest) = self.next_batch(ns, source, opts.max)?;
        let Some(rest) = rest else {
            return Ok(first.into_return(true, None));
        };
        let id = self
            .pulls
            .lock()
            .insert(ns, rest, paths, opts.timeout, Instant::now())?;
        Ok(first.into_return(false, Some(id)))
    }

    /// The cursor of an enumeration of the instances (or paths) of a class and its subclasses.
    pub(super) fn enum_cursor(
        &self,
        ns: &str,
        paths: bool,
        p: &Params<'_>,
    ) -> Result<EnumCursor, CimError> {
        let name = p
            .class_name("ClassName")?
            .ok_or_else(|| CimError::invalid_parameter("ClassName is required"))?;
        let class = self.known_class(name)?;
        let deep = p.bool("DeepInheritance", true)?;
        p.bool("LocalOnly", false)?;
        p.bool("IncludeQualifiers", false)?;
        let classes = self
            .provider
            .class_names(ns)
            .into_iter()
            .filter(|cn| self.repo.is_subclass_of(cn, name))
            .collect();
        Ok(EnumCursor {
            classes,
            position: None,
            paths,
            only_class: (!deep && !paths).then(|| class.name.clone()),
            property_list: if paths { None } else { p.property_list()? },
            include_class_origin: !paths && p.bool("IncludeClassOrigin", false)?,
        })
    }

    pub(super) fn open_enumerate(
        &self,
        ns: &str,
        paths: bool,
        p: &Params<'_>,
    ) -> Result<IReturn, CimError> {
        let opts = open_options(p)?;
        let cursor = self.enum_cursor(ns, paths, p)?;
        self.open_source(ns, Source::Cursor(cursor), paths, &opts)
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
        let cursor = self.assoc_cursor(ns, q, refs, names, view);
        self.open_source(ns, Source::Assoc(Box::new(cursor)), names, &opts)
    }

    pub(super) fn pull(&self, ns: &str, paths: bool, p: &Params<'_>) -> Result<IReturn, CimError> {
        let id = p
            .string("EnumerationContext")?
            .ok_or_else(|| CimError::invalid_parameter("EnumerationContext is required"))?;
        let id = id.trim();
        let max = p
            .u32("MaxObjectCount")?
            .ok_or_else(|| CimError::invalid_parameter("MaxObjectCount is required"))?
            .min(PULL_OBJECT_COUNT_MAX);
        let source = self.pulls.lock().checkout(id, ns, paths, Instant::now())?;
        // The batch is computed without the contexts locked: other enumerations go on meanwhile.
        let result = self.next_batch(ns, source, max);
        let (batch, rest) = match result {
            Ok(r) => r,
            Err(e) => {
                self.pulls.lock().checkin(id, None, Instant::now());
                return Err(e);
            }
        };
        let end = rest.is_none();
        self.pulls.lock().checkin(id, rest, Instant::now());
        Ok(batch.into_return(end, (!end).then(|| id.to_owned())))
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

    type Batch = (usize, bool, Option<String>);

    /// A cursor over `n` classes; the tests take whole classes as their objects, so what they
    /// check is the context table (open, pull, expiry, close), not what a batch holds.
    fn cursor(n: usize) -> EnumCursor {
        EnumCursor {
            classes: (0..n).map(|i| format!("C{i}")).collect(),
            position: None,
            paths: true,
            only_class: None,
            property_list: None,
            include_class_origin: false,
        }
    }

    /// The first `max` classes of `c` as a batch, and the cursor past them if any remain.
    fn take(mut c: EnumCursor, max: usize) -> (usize, Option<EnumCursor>) {
        let k = max.min(c.classes.len());
        c.classes.drain(..k);
        (k, (!c.is_done()).then_some(c))
    }

    /// What an Open* over `n` objects answers: the first `max`, a context for the rest.
    fn open(
        c: &mut PullContexts,
        ns: &str,
        n: usize,
        max: usize,
        t: Duration,
        now: Instant,
    ) -> Result<Batch, CimError> {
        let (first, rest) = take(cursor(n), max);
        Ok(match rest {
            None => (first, true, None),
            Some(rest) => {
                let id = c.insert(ns, Source::Cursor(rest), true, t, now)?;
                (first, false, Some(id))
            }
        })
    }

    /// What a Pull* answers.
    fn pull(
        c: &mut PullContexts,
        id: &str,
        ns: &str,
        paths: bool,
        max: usize,
        now: Instant,
    ) -> Result<Batch, CimError> {
        let Source::Cursor(cur) = c.checkout(id, ns, paths, now)? else {
            panic!("not a class enumeration");
        };
        let (batch, rest) = take(cur, max);
        let end = rest.is_none();
        c.checkin(id, rest.map(Source::Cursor), now);
        Ok((batch, end, (!end).then(|| id.to_owned())))
    }

    #[test]
    fn pages_through_and_removes_finished_context() {
        let mut c = PullContexts::default();
        let now = Instant::now();
        let t = Duration::from_secs(30);
        let (n, eos, ctx) = open(&mut c, "root/cairn", 5, 2, t, now).expect("open");
        assert_eq!((n, eos), (2, false));
        let id = ctx.expect("context");
        let (n, eos, _) = pull(&mut c, &id, "root/cairn", true, 2, now).expect("pull");
        assert_eq!((n, eos), (2, false));
        let (n, eos, ctx) = pull(&mut c, &id, "ROOT/cairn", true, 2, now).expect("pull");
        assert_eq!((n, eos, ctx), (1, true, None));
        assert_eq!(c.open_count(now), 0);
        let e = pull(&mut c, &id, "root/cairn", true, 2, now).expect_err("gone");
        assert_eq!(e.status, CimStatus::InvalidEnumerationContext);
    }

    #[test]
    fn small_results_need_no_context() {
        let mut c = PullContexts::default();
        let now = Instant::now();
        let t = Duration::from_secs(1);
        assert_eq!(
            open(&mut c, "ns", 3, 3, t, now).expect("open"),
            (3, true, None)
        );
        assert_eq!(
            open(&mut c, "ns", 0, 0, t, now).expect("open"),
            (0, true, None)
        );
        assert_eq!(c.open_count(now), 0);
    }

    #[test]
    fn contexts_expire_and_pulls_extend_them() {
        let mut c = PullContexts::default();
        let now = Instant::now();
        let t = Duration::from_secs(10);
        let id = open(&mut c, "ns", 10, 1, t, now)
            .expect("open")
            .2
            .expect("ctx");
        // A pull at 9 s extends the deadline to 19 s.
        pull(&mut c, &id, "ns", true, 1, now + Duration::from_secs(9)).expect("alive");
        pull(&mut c, &id, "ns", true, 1, now + Duration::from_secs(18)).expect("still alive");
        let e =
            pull(&mut c, &id, "ns", true, 1, now + Duration::from_secs(29)).expect_err("expired");
        assert_eq!(e.status, CimStatus::InvalidEnumerationContext);
    }

    #[test]
    fn wrong_namespace_kind_and_close() {
        let mut c = PullContexts::default();
        let now = Instant::now();
        let t = Duration::from_secs(10);
        let id = open(&mut c, "ns", 10, 1, t, now)
            .expect("open")
            .2
            .expect("ctx");
        assert_eq!(
            pull(&mut c, &id, "other", true, 1, now)
                .expect_err("ns")
                .status,
            CimStatus::InvalidEnumerationContext
        );
        assert_eq!(
            pull(&mut c, &id, "ns", false, 1, now)
                .expect_err("kind")
                .status,
            CimStatus::InvalidParameter
        );
        c.close(&id, "ns", now).expect("close");
        assert_eq!(
            c.close(&id, "ns", now).expect_err("closed").status,
            CimStatus::InvalidEnumerationContext
        );
    }

    #[test]
    fn a_context_serves_one_pull_at_a_time_and_close_wins() {
        let mut c = PullContexts::default();
        let now = Instant::now();
        let t = Duration::from_secs(10);
        let id = open(&mut c, "ns", 10, 1, t, now)
            .expect("open")
            .2
            .expect("ctx");
        let held = c.checkout(&id, "ns", true, now).expect("checkout");
        let e = c.checkout(&id, "ns", true, now).expect_err("busy");
        assert_eq!(e.status, CimStatus::InvalidEnumerationContext);
        assert_eq!(c.open_count(now), 1, "a busy context still counts");
        c.close(&id, "ns", now).expect("close while busy");
        c.checkin(&id, Some(held), now);
        assert_eq!(c.open_count(now), 0, "a closed context stays closed");
    }

    #[test]
    fn open_contexts_are_bounded() {
        let mut c = PullContexts::default();
        let now = Instant::now();
        let t = Duration::from_secs(10);
        for _ in 0..ENUMERATION_CONTEXTS_OPEN_MAX {
            open(&mut c, "ns", 2, 1, t, now).expect("open");
        }
        let e = open(&mut c, "ns", 2, 1, t, now).expect_err("limit");
        assert_eq!(e.status, CimStatus::ServerLimitsExceeded);
        // Once the others expire there is room again.
        open(&mut c, "ns", 2, 1, t, now + Duration::from_secs(11)).expect("room after expiry");
    }
}
