//! Which `CIM_AlertIndication`s a change of state raises, and what each carries.
//!
//! | condition (state seen before → now) | OwningEntity, MessageID | AlertType | PerceivedSeverity | ProbableCause |
//! |---|---|---|---|---|
//! | a pool's RemainingManagedSpace falls to or below TotalManagedSpace × LowSpaceWarningThreshold / 100 | SNIA, DRM28 | 5 Device Alert | 4 Minor | 52 Threshold Crossed |
//! | a pool's RemainingManagedSpace falls to 0 (out of space: writes fail) | SNIA, DRM29 | 5 Device Alert | 5 Major | 33 Out of Memory |
//! | it goes back above the threshold (or the threshold is lowered past it) | SNIA, DRM30 | 5 Device Alert | 2 Information | 52 Threshold Crossed |
//! | a pool's OperationalStatus gains 6 Error: Lost Communication (13) | CAIRN, CRN1 | 2 Communications Alert | 6 Critical | 7 Communications Subsystem Failure |
//! | … or a failure of the pool itself (engine) | CAIRN, CRN1 | 5 Device Alert | 6 Critical | 16 Equipment Malfunction |
//! | the pool is OK again | CAIRN, CRN2 | as its failure | 2 Information | as its failure |
//! | a job reaches JobState 10 Exception | CAIRN, CRN3 | 4 Processing Error | 5 Major | 1 Other (ProbableCauseDescription = ErrorDescription) |
//!
//! DRM28, DRM29 and DRM30 are the SNIA messages "capacity in use nearing available limit",
//! "capacity in use exceeded available limit" and "capacity condition cleared" of thin
//! provisioned pools (MessageArguments "Pool", the PoolID); the CRN messages are Cairn's own
//! (MessageArguments: the PoolID, or the job's InstanceID).
//!
//! Invariants: an alert is raised by a transition only, never by a state seen again, so each
//! crossing raises one alert: space goes by level (enough, low, out), a rise raises the new
//! level's alert (DRM28 or DRM29, even when the low level was skipped between two readings), a
//! return to enough raises DRM30, a fall from out to low raises none; the space levels are not
//! judged while either state is failed (a pool out of reach reports no space, which is not
//! "space available again"); a threshold of 0 raises no low-space alert (out of space still
//! raises DRM29). A pool first seen (at start-up, or a pool that appears) is judged against a
//! reached pool with its space free, so a condition already true then raises its alert once.

use cairn_cim::{CimDateTime, CimType, Instance, Value};

use crate::model::{JOB_CLASS, POOL_CLASS, SYSTEM_CLASS};

/// OperationalStatus Error.
const STATUS_ERROR: u64 = 6;
/// OperationalStatus Lost Communication.
const STATUS_LOST_COMMUNICATION: u64 = 13;
/// JobState Exception.
const JOB_EXCEPTION: u64 = 10;

/// One alert to send about an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Alert {
    pub owning_entity: &'static str,
    pub message_id: &'static str,
    pub alert_type: u16,
    pub severity: u16,
    pub probable_cause: u16,
    pub message: String,
    pub arguments: Vec<String>,
    pub cause_description: Option<String>,
}

fn u64_of(i: &Instance, name: &str) -> Option<u64> {
    i.get(name).and_then(Value::as_u64)
}

fn text_of<'a>(i: &'a Instance, name: &str) -> &'a str {
    i.get(name).and_then(Value::as_str).unwrap_or_default()
}

fn has_status(i: &Instance, status: u64) -> bool {
    match i.get("OperationalStatus") {
        Some(Value::Array(_, v)) => v.iter().any(|s| s.as_u64() == Some(status)),
        _ => false,
    }
}

/// Whether pool `i` is at or below its LowSpaceWarningThreshold.
fn low_on_space(i: &Instance) -> bool {
    let threshold = u64_of(i, "LowSpaceWarningThreshold").unwrap_or(0);
    let total = u64_of(i, "TotalManagedSpace").unwrap_or(0);
    let free = u64_of(i, "RemainingManagedSpace").unwrap_or(0);
    threshold > 0
        && total > 0
        && u128::from(free) * 100 <= u128::from(total) * u128::from(threshold)
}

/// How short of space pool `i` is: 0 enough, 1 at or below its LowSpaceWarningThreshold, 2 out
/// of space (RemainingManagedSpace 0 of a non-zero TotalManagedSpace). A primordial pool is
/// never short: its space is all given to the concrete pools (RemainingManagedSpace 0 always).
fn space_level(i: &Instance) -> u8 {
    let total = u64_of(i, "TotalManagedSpace").unwrap_or(0);
    let free = u64_of(i, "RemainingManagedSpace").unwrap_or(0);
    if i.get("Primordial") == Some(&Value::Boolean(true)) {
        0
    } else if total > 0 && free == 0 {
        2
    } else {
        u8::from(low_on_space(i))
    }
}

/// The state a pool first seen is judged from: reached, with no space figure (so enough space).
fn fresh_pool(now: &Instance) -> Instance {
    Instance::new(POOL_CLASS)
        .with("PoolID", Value::string(text_of(now, "PoolID")))
        .with("OperationalStatus", crate::model::u16s(&[2]))
}

/// The alerts the change of an object from `before` (`None`: first seen) to `now` raises.
pub(crate) fn raised(before: Option<&Instance>, now: &Instance) -> Vec<Alert> {
    let class = now.class_name.as_str();
    if class.eq_ignore_ascii_case(JOB_CLASS) {
        job(before, now).into_iter().collect()
    } else if class.eq_ignore_ascii_case(POOL_CLASS) {
        match before {
            Some(b) => pool(b, now),
            None => pool(&fresh_pool(now), now),
        }
    } else {
        Vec::new()
    }
}

fn job(before: Option<&Instance>, now: &Instance) -> Option<Alert> {
    let exception = |i: &Instance| u64_of(i, "JobState") == Some(JOB_EXCEPTION);
    if !exception(now) || before.is_some_and(exception) {
        return None;
    }
    let why = match text_of(now, "ErrorDescription") {
        "" => "The job ended in Exception",
        d => d,
    };
    let id = text_of(now, "InstanceID");
    Some(Alert {
        owning_entity: "CAIRN",
        message_id: "CRN3",
        alert_type: 4,
        severity: 5,
        probable_cause: 1,
        message: format!("Job {id} ended in Exception: {why}"),
        arguments: vec![id.to_owned()],
        cause_description: Some(why.to_owned()),
    })
}

fn pool(before: &Instance, now: &Instance) -> Vec<Alert> {
    let id = text_of(now, "PoolID").to_owned();
    let failed = |i: &Instance| has_status(i, STATUS_ERROR);
    let lost = |i: &Instance| has_status(i, STATUS_LOST_COMMUNICATION);
    // The kind of failure (Communications, Communications Subsystem Failure, or Device,
    // Equipment Malfunction) of the failed state among the two.
    let kind = |i: &Instance| if lost(i) { (2, 7) } else { (5, 16) };
    let health = |severity, message_id, message: String, (alert_type, cause)| Alert {
        owning_entity: "CAIRN",
        message_id,
        alert_type,
        severity,
        probable_cause: cause,
        message,
        arguments: vec![id.clone()],
        cause_description: None,
    };
    let space = |severity, message_id, message: String, cause: u16, description: &str| Alert {
        owning_entity: "SNIA",
        message_id,
        alert_type: 5,
        severity,
        probable_cause: cause,
        message,
        arguments: vec!["Pool".to_owned(), id.clone()],
        cause_description: Some(description.to_owned()),
    };
    const LOW: &str =
        "Pool at low space warning threshold: RemainingManagedSpace/TotalManagedSpace";
    match (failed(before), failed(now)) {
        (false, true) => {
            let what = if lost(now) {
                "cannot be reached"
            } else {
                "has failed"
            };
            vec![health(6, "CRN1", format!("Pool {id} {what}"), kind(now))]
        }
        (true, false) => vec![health(
            2,
            "CRN2",
            format!("Pool {id} is available again"),
            kind(before),
        )],
        (true, true) => Vec::new(),
        (false, false) => match (space_level(before), space_level(now)) {
            (0, 1) => vec![space(
                4,
                "DRM28",
                format!("Thin provisioned Pool with identifier {id} capacity in use nearing available limit"),
                52,
                LOW,
            )],
            (0 | 1, 2) => vec![space(
                5,
                "DRM29",
                format!("Thin provisioned Pool with identifier {id} capacity in use exceeded available limit"),
                33,
                "No remaining space in storage pool",
            )],
            (1 | 2, 0) => vec![space(
                2,
                "DRM30",
                format!("Thin provisioned Pool with identifier {id} capacity condition cleared"),
                52,
                LOW,
            )],
            _ => Vec::new(),
        },
    }
}

impl Alert {
    /// The CIM_AlertIndication of this alert about `element` (the array system `system_name`),
    /// without its IndicationIdentifier.
    pub(crate) fn indication(&self, element: &Instance, system_name: &str) -> Instance {
        let now = Value::DateTime(CimDateTime::from_unix_seconds(crate::jobs::now_unix_secs()));
        let element_path = element
            .path
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let arguments = Value::Array(
            CimType::String,
            self.arguments.iter().map(Value::string).collect(),
        );
        let mut ind = Instance::new("CIM_AlertIndication")
            .with("IndicationTime", now.clone())
            .with("EventTime", now)
            .with("AlertingManagedElement", Value::string(element_path))
            .with("AlertingElementFormat", Value::Uint16(2))
            .with("AlertType", Value::Uint16(self.alert_type))
            .with("PerceivedSeverity", Value::Uint16(self.severity))
            .with("ProbableCause", Value::Uint16(self.probable_cause))
            .with("Description", Value::string(&self.message))
            .with("Message", Value::string(&self.message))
            .with("MessageID", Value::string(self.message_id))
            .with("MessageArguments", arguments)
            .with("OwningEntity", Value::string(self.owning_entity))
            .with("SystemCreationClassName", Value::string(SYSTEM_CLASS))
            .with("SystemName", Value::string(system_name))
            .with("ProviderName", Value::string("Cairn"));
        if let Some(d) = &self.cause_description {
            ind.set("ProbableCauseDescription", Some(Value::string(d)));
        }
        ind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::u16s;

    fn pool_state(status: &[u16], total: u64, free: u64, threshold: u16) -> Instance {
        Instance::new(POOL_CLASS)
            .with("PoolID", Value::string("p"))
            .with("OperationalStatus", u16s(status))
            .with("TotalManagedSpace", Value::Uint64(total))
            .with("RemainingManagedSpace", Value::Uint64(free))
            .with("LowSpaceWarningThreshold", Value::Uint16(threshold))
    }

    fn ids(before: &Instance, now: &Instance) -> Vec<&'static str> {
        raised(Some(before), now)
            .iter()
            .map(|a| a.message_id)
            .collect()
    }

    #[test]
    fn space_alerts_come_once_per_crossing_and_not_while_failed() {
        let ok = pool_state(&[2], 100, 50, 10);
        let low = pool_state(&[2], 100, 10, 10);
        let lower = pool_state(&[2], 100, 5, 10);
        assert_eq!(ids(&ok, &low), ["DRM28"]);
        assert!(ids(&low, &lower).is_empty());
        assert_eq!(ids(&lower, &ok), ["DRM30"]);
        assert!(ids(&ok, &pool_state(&[2], 100, 10, 0)).is_empty());
        assert_eq!(ids(&ok, &pool_state(&[2], 100, 50, 50)), ["DRM28"]);
        let lost = pool_state(&[6, 13], 0, 0, 10);
        assert_eq!(ids(&low, &lost), ["CRN1"]);
        let back = raised(Some(&lost), &low);
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].message_id, back[0].alert_type), ("CRN2", 2));
        let failed = raised(Some(&ok), &pool_state(&[6], 100, 50, 10));
        assert_eq!(
            (
                failed[0].alert_type,
                failed[0].severity,
                failed[0].probable_cause
            ),
            (5, 6, 16)
        );
        let first = |i: &Instance| -> Vec<&'static str> {
            raised(None, i).iter().map(|a| a.message_id).collect()
        };
        assert_eq!(first(&low), ["DRM28"], "low when first seen");
        assert!(first(&ok).is_empty());
        assert_eq!(first(&lost), ["CRN1"], "out of reach when first seen");
    }

    #[test]
    fn out_of_space_raises_drm29_once_per_crossing() {
        let ok = pool_state(&[2], 100, 50, 10);
        let low = pool_state(&[2], 100, 10, 10);
        let full = pool_state(&[2], 100, 0, 10);
        assert_eq!(ids(&low, &full), ["DRM29"]);
        assert_eq!(
            ids(&ok, &full),
            ["DRM29"],
            "the low level skipped between readings"
        );
        assert!(ids(&full, &full).is_empty());
        assert!(ids(&full, &low).is_empty(), "still low: nothing cleared");
        assert_eq!(ids(&full, &ok), ["DRM30"]);
        let no_threshold = pool_state(&[2], 100, 0, 0);
        assert_eq!(ids(&pool_state(&[2], 100, 50, 0), &no_threshold), ["DRM29"]);
        let alert = &raised(Some(&low), &full)[0];
        assert_eq!(
            (alert.alert_type, alert.severity, alert.probable_cause),
            (5, 5, 33)
        );
        assert_eq!(alert.arguments, ["Pool", "p"]);
        assert_eq!(
            raised(None, &full)
                .iter()
                .map(|a| a.message_id)
                .collect::<Vec<_>>(),
            ["DRM29"],
            "out of space when first seen"
        );
        let lost = pool_state(&[6, 13], 0, 0, 10);
        assert!(ids(&full, &lost).iter().all(|m| *m == "CRN1"));
        let primordial = full.clone().with("Primordial", Value::Boolean(true));
        assert!(
            raised(None, &primordial).is_empty(),
            "a primordial pool has no space of its own"
        );
    }

    #[test]
    fn a_job_alerts_when_it_reaches_exception_even_first_seen_so() {
        let job = |state: u64| {
            Instance::new(JOB_CLASS)
                .with("InstanceID", Value::string("CAIRN:JOB:1"))
                .with("JobState", Value::Uint16(state as u16))
                .with(
                    "ErrorDescription",
                    Value::string("The pool is out of space"),
                )
        };
        let a = raised(Some(&job(4)), &job(10));
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].message_id, "CRN3");
        assert!(a[0].message.contains("out of space"), "{}", a[0].message);
        assert_eq!(raised(None, &job(10)).len(), 1);
        assert!(raised(Some(&job(10)), &job(10)).is_empty());
        assert!(raised(Some(&job(4)), &job(7)).is_empty());
    }
}
