//! The subscription state: filters, listener destinations and subscriptions, kept in memory and
//! in a small JSON file in the data directory (`indications.json`).
//!
//! Invariants: every change is written (temporary file, fsync, rename, fsync of the directory)
//! before it is acknowledged, and undone in memory if it cannot be; the counts never pass
//! [`INDICATION_FILTERS_MAX`], [`INDICATION_DESTINATIONS_MAX`] and
//! [`INDICATION_SUBSCRIPTIONS_MAX`] (the predefined filters not counted); a subscription names an
//! existing filter and destination, and neither can be deleted while one does; names are unique
//! per class; the predefined filters are always there, first, and never written to the file.

use std::path::{Path, PathBuf};

use cairn_cim::{CimError, CimStatus};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::limits::{
    INDICATIONS_FILE_BYTES_MAX, INDICATION_DESTINATIONS_MAX, INDICATION_FILTERS_MAX,
    INDICATION_SUBSCRIPTIONS_MAX,
};

/// SubscriptionState: Enabled.
pub const SUBSCRIPTION_ENABLED: u16 = 2;
/// SubscriptionState: Disabled.
pub const SUBSCRIPTION_DISABLED: u16 = 4;

/// The four keys of a filter or destination (CIM_IndicationFilter, CIM_ListenerDestinationCIMXML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    pub system_creation_class_name: String,
    pub system_name: String,
    pub creation_class_name: String,
    pub name: String,
}

/// One CIM_IndicationFilter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterRec {
    pub keys: Keys,
    pub query: String,
    pub query_language: String,
    pub source_namespaces: Vec<String>,
    pub element_name: Option<String>,
    /// One of the array's predefined filters ([`super::predefined`]): never written to the file,
    /// never deleted.
    #[serde(skip)]
    pub predefined: bool,
}

/// One CIM_ListenerDestinationCIMXML.

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationRec {
    pub keys: Keys,
    /// The listener's URL (`http://host:port/path` or `https://...`).
    pub destination: String,
    pub persistence_type: Option<u16>,
    pub element_name: Option<String>,
}

/// One CIM_IndicationSubscription: the Name keys of its filter and destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRec {
    pub filter: String,
    pub handler: String,
    pub state: u16,
    pub on_fatal_error_policy: Option<u16>,
    pub start_unix_secs: u64,
}

/// Everything the file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub filters: Vec<FilterRec>,
    pub destinations: Vec<DestinationRec>,
    pub subscriptions: Vec<SubscriptionRec>,
}

/// The state and its file.
#[derive(Debug)]
pub struct Store {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

fn file_error(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::IndicationsFile, path.display().to_string(), e)
}

fn read(path: &Path) -> Result<State, Error> {
    let bytes = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => return Err(file_error(path, e)),
        Ok(m) if m.len() > INDICATIONS_FILE_BYTES_MAX => {
            return Err(Error::new(
                ErrorKind::IndicationsFile,
                format!(
                    "{}: larger than {INDICATIONS_FILE_BYTES_MAX} bytes",
                    path.display()
                ),
            ))
        }
        Ok(_) => std::fs::read(path).map_err(|e| file_error(path, e))?,
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|e| file_error(path, e))?;
    let too_many = client_filters(&state) > INDICATION_FILTERS_MAX
        || state.destinations.len() > INDICATION_DESTINATIONS_MAX
        || state.subscriptions.len() > INDICATION_SUBSCRIPTIONS_MAX;
    if too_many {
        return Err(Error::new(
            ErrorKind::IndicationsFile,
            format!("{}: more entries than the limits allow", path.display()),
        ));
    }
    Ok(state)
}

/// The filters clients made.
fn client_filters(state: &State) -> usize {
    state.filters.iter().filter(|f| !f.predefined).count()
}

fn limit(what: &str, max: usize) -> CimError {
    CimError::new(
        CimStatus::ServerLimitsExceeded,
        format!("At most {max} {what}"),
    )
}

impl Store {
    /// Loads the state from `path` (missing = empty), with the `predefined` filters first (a
    /// client filter of the same name is dropped). A damaged file is moved aside to
    /// `<path>.damaged` and the state starts empty; the error is returned for the log.
    pub fn load(path: Option<PathBuf>, predefined: Vec<FilterRec>) -> (Store, Option<Error>) {
        let (mut state, error) = match path.as_deref().map(read) {
            None => (State::default(), None),
            Some(Ok(s)) => (s, None),
            Some(Err(e)) => {
                if let Some(p) = path.as_deref() {
                    let _ = std::fs::rename(p, p.with_extension("json.damaged"));
                }
                (State::default(), Some(e))
            }
        };
        let mut filters = predefined;
        let taken = |f: &FilterRec| filters.iter().any(|p| p.keys.name == f.keys.name);
        let clients: Vec<FilterRec> = state.filters.drain(..).filter(|f| !taken(f)).collect();
        filters.extend(clients);
        state.filters = filters;
        let store = Store {
            path,
            state: Mutex::new(state),
        };
        (store, error)
    }

    /// A copy of the state.
    pub fn state(&self) -> State {
        self.state.lock().clone()
    }

    /// Applies `change` to the state and writes the file; on any error the state is left as it
    /// was.
    fn change(
        &self,
        change: impl FnOnce(&mut State) -> Result<(), CimError>,
    ) -> Result<(), CimError> {
        let mut st = self.state.lock();
        let mut next = st.clone();
        change(&mut next)?;
        if let Some(p) = &self.path {
            let mut saved = next.clone();
            saved.filters.retain(|f| !f.predefined);
            crate::jobs::write_file(p, &saved)
                .map_err(|e| CimError::failed(format!("Cannot write {}: {e}", p.display())))?;
        }
        *st = next;
        Ok(())
    }

    pub fn add_filter(&self, f: FilterRec) -> Result<(), CimError> {
        self.change(|s| {
            if s.filters.iter().any(|x| x.keys.name == f.keys.name) {
                return Err(CimError::new(
                    CimStatus::AlreadyExists,
                    format!("Filter {}", f.keys.name),
                ));
            }
            if client_filters(s) >= INDICATION_FILTERS_MAX {
                return Err(limit("indication filters", INDICATION_FILTERS_MAX));
            }
            s.filters.push(f);
            Ok(())
        })
    }

    pub fn add_destination(&self, d: DestinationRec) -> Result<(), CimError> {
        self.change(|s| {
            if s.destinations.iter().any(|x| x.keys.name == d.keys.name) {
                return Err(CimError::new(
                    CimStatus::AlreadyExists,
                    format!("Destination {}", d.keys.name),
                ));
            }
            if s.destinations.len() >= INDICATION_DESTINATIONS_MAX {
                return Err(limit("listener destinations", INDICATION_DESTINATIONS_MAX));
            }
            s.destinations.push(d);
            Ok(())
        })
    }

    pub fn add_subscription(&self, sub: SubscriptionRec) -> Result<(), CimError> {
        self.change(|s| {
            if !s.filters.iter().any(|f| f.keys.name == sub.filter) {
                return Err(CimError::invalid_parameter(format!(
                    "No filter {}",
                    sub.filter
                )));
            }
            if !s.destinations.iter().any(|d| d.keys.name == sub.handler) {
                return Err(CimError::invalid_parameter(format!(
                    "No destination {}",
                    sub.handler
                )));
            }
            if s.subscriptions
                .iter()
                .any(|x| x.filter == sub.filter && x.handler == sub.handler)
            {
                return Err(CimError::new(CimStatus::AlreadyExists, "Subscription"));
            }
            if s.subscriptions.len() >= INDICATION_SUBSCRIPTIONS_MAX {
                return Err(limit(
                    "indication subscriptions",
                    INDICATION_SUBSCRIPTIONS_MAX,
                ));
            }
            s.subscriptions.push(sub);
            Ok(())
        })
    }

    /// Removes filter `name`; refused while a subscription uses it, and for a predefined filter
    /// (CIM_ERR_ACCESS_DENIED).
    pub fn remove_filter(&self, name: &str) -> Result<(), CimError> {
        self.change(|s| {
            if s.filters
                .iter()
                .any(|f| f.predefined && f.keys.name == name)
            {
                return Err(CimError::new(
                    CimStatus::AccessDenied,
                    format!("Filter {name} is predefined"),
                ));
            }
            if s.subscriptions.iter().any(|x| x.filter == name) {
                return Err(CimError::failed(format!(
                    "Filter {name} is used by a subscription"
                )));
            }
            let before = s.filters.len();
            s.filters.retain(|f| f.keys.name != name);
            found(before != s.filters.len(), name)
        })
    }

    /// Removes destination `name`; refused while a subscription uses it.
    pub fn remove_destination(&self, name: &str) -> Result<(), CimError> {
        self.change(|s| {
            if s.subscriptions.iter().any(|x| x.handler == name) {
                return Err(CimError::failed(format!(
                    "Destination {name} is used by a subscription"
                )));
            }
            let before = s.destinations.len();
            s.destinations.retain(|d| d.keys.name != name);
            found(before != s.destinations.len(), name)
        })
    }

    /// Removes the subscriptions of `filter` (or every filter when `None`) to `handler`.
    pub fn remove_subscriptions(
        &self,
        filter: Option<&str>,
        handler: &str,
    ) -> Result<(), CimError> {
        self.change(|s| {
            let before = s.subscriptions.len();
            s.subscriptions
                .retain(|x| !(x.handler == handler && filter.is_none_or(|f| x.filter == f)));
            found(before != s.subscriptions.len() || filter.is_none(), handler)
        })
    }

    /// Sets the SubscriptionState of the subscriptions of `filter` (every filter when `None`) to
    /// `handler`.
    pub fn set_state(
        &self,
        filter: Option<&str>,
        handler: &str,
        state: u16,
    ) -> Result<(), CimError> {
        self.change(|s| {
            let mut any = false;
            for x in s.subscriptions.iter_mut() {
                if x.handler == handler && filter.is_none_or(|f| x.filter == f) {
                    x.state = state;
                    any = true;
                }
            }
            found(any || filter.is_none(), handler)
        })
    }
}

fn found(yes: bool, what: &str) -> Result<(), CimError> {
    if yes {
        Ok(())
    } else {
        Err(CimError::not_found(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(name: &str) -> Keys {
        Keys {
            system_creation_class_name: "CIM_ComputerSystem".into(),
            system_name: "s".into(),
            creation_class_name: "CIM_IndicationFilter".into(),
            name: name.into(),
        }
    }

    fn filter(name: &str) -> FilterRec {
        FilterRec {
            keys: keys(name),
            query: "SELECT * FROM CIM_InstCreation".into(),
            query_language: "WQL".into(),
            source_namespaces: vec!["root/cairn".into()],
            element_name: None,
            predefined: false,
        }
    }

    fn sub(f: &str, h: &str) -> SubscriptionRec {
        SubscriptionRec {
            filter: f.into(),
            handler: h.into(),
            state: SUBSCRIPTION_ENABLED,
            on_fatal_error_policy: None,
            start_unix_secs: 0,
        }
    }

    #[test]
    fn the_state_survives_a_reload_and_references_are_kept_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("indications.json");
        let (store, err) = Store::load(Some(path.clone()), Vec::new());
        assert!(err.is_none());
        store.add_filter(filter("f")).expect("filter");
        store
            .add_destination(DestinationRec {
                keys: keys("d"),
                destination: "http://127.0.0.1:1/".into(),
                persistence_type: Some(2),
                element_name: None,
            })
            .expect("destination");
        let missing = store
            .add_subscription(sub("g", "d"))
            .expect_err("no such filter");
        assert_eq!(missing.status, CimStatus::InvalidParameter);
        store.add_subscription(sub("f", "d")).expect("subscription");
        let dup = store
            .add_subscription(sub("f", "d"))
            .expect_err("duplicate");
        assert_eq!(dup.status, CimStatus::AlreadyExists);
        assert_eq!(
            store.remove_filter("f").expect_err("in use").status,
            CimStatus::Failed
        );
        let saved = store.state();
        drop(store);
        let (store, err) = Store::load(Some(path), Vec::new());
        assert!(err.is_none());
        assert_eq!(store.state(), saved);
        store.remove_subscriptions(Some("f"), "d").expect("remove");
        store.remove_filter("f").expect("remove filter");
        assert_eq!(
            store.remove_filter("f").expect_err("gone").status,
            CimStatus::NotFound
        );
    }

    #[test]
    fn predefined_filters_stay_out_of_the_file_the_count_and_deletion() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("indications.json");
        let fixed = || {
            let mut f = filter("SNIA:Array:x");
            f.predefined = true;
            vec![f]
        };
        let (store, _) = Store::load(Some(path.clone()), fixed());
        for i in 0..INDICATION_FILTERS_MAX {
            store.add_filter(filter(&format!("f{i}"))).expect("filter");
        }
        assert_eq!(
            store
                .remove_filter("SNIA:Array:x")
                .expect_err("fixed")
                .status,
            CimStatus::AccessDenied
        );
        let clash = store.add_filter(filter("SNIA:Array:x")).expect_err("taken");
        assert_eq!(clash.status, CimStatus::AlreadyExists);
        let text = std::fs::read_to_string(&path).expect("file");
        assert!(!text.contains("SNIA:Array:x"), "{text}");
        drop(store);
        let (store, err) = Store::load(Some(path), fixed());
        assert!(err.is_none());
        let st = store.state();
        assert_eq!(st.filters.len(), INDICATION_FILTERS_MAX + 1);
        assert!(st.filters[0].predefined);
    }

    #[test]
    fn past_the_limit_creation_is_refused() {
        let (store, _) = Store::load(None, Vec::new());
        for i in 0..INDICATION_FILTERS_MAX {
            store.add_filter(filter(&format!("f{i}"))).expect("filter");
        }
        let err = store.add_filter(filter("one more")).expect_err("limit");
        assert_eq!(err.status, CimStatus::ServerLimitsExceeded);
        assert_eq!(store.state().filters.len(), INDICATION_FILTERS_MAX);
    }
}
