//! Delivery: one bounded queue and one task per listener destination, each posting CIM-XML
//! `ExportIndication` requests (DSP0200) over HTTP or HTTPS, one at a time, in order.
//!
//! Invariants: [`Deliveries::send`] never waits (a full queue drops the indication and counts
//! it; its SequenceNumber is used up, so the listener sees the gap); a failed delivery is tried
//! again DeliveryRetryAttempts times, DeliveryRetryInterval apart, then dropped and counted;
//! after SubscriptionRemovalTimeInterval of failures with no success in between, the
//! SubscriptionRemovalAction applies to the destination's subscriptions; each attempt is bounded
//! by [`INDICATION_DELIVERY_TIMEOUT`]; an https listener's certificate must be in the trust list
//! unless its URL is listed as accepted unchecked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cairn_cim::client::{decode_export_response, encode_export_indication, EXPORT_INDICATION};
use cairn_cim::{Instance, Value};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::store::{Store, SUBSCRIPTION_DISABLED};
use super::{IndicationOptions, REMOVAL_ACTION_DISABLE, REMOVAL_ACTION_REMOVE};
use crate::error::Error;
use crate::limits::{
    INDICATION_DELIVERY_TIMEOUT, INDICATION_DESTINATION_QUEUED_MAX, INDICATION_RESPONSE_BYTES_MAX,
};
use crate::trust;

/// A listener URL: `http[s]://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    /// Parses a CIM_ListenerDestinationCIMXML.Destination.
    pub fn parse(text: &str) -> Result<Url, String> {
        let bad = || format!("Destination {text:?} is not an http or https URL");
        let (https, rest) = if let Some(r) = strip_prefix_ci(text, "https://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(text, "http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(bad)?;
            (&v6[..end], v6[end + 1..].strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None if https => 5989,
            None => 5988,
        };
        let clean = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic());
        if !clean(host) || !path.chars().all(|c| c.is_ascii_graphic()) {
            return Err(bad());
        }
        Ok(Url {
            https,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// One destination's queue and sequence.
struct Queue {
    tx: mpsc::Sender<Instance>,
    /// The next SequenceNumber; taken under this lock together with the enqueue, so numbers
    /// leave in order.
    next: Mutex<i64>,
    context: String,
}

/// All destinations' queues.
pub struct Deliveries {
    shared: Arc<Shared>,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    runtime: tokio::runtime::Handle,
    /// Distinguishes this run's sequences from the previous ones (DSP1054 SequenceContext).
    run_id: String,
}

/// What the delivery tasks share.
struct Shared {
    store: Arc<Store>,
    opts: Arc<IndicationOptions>,
    dropped: AtomicU64,
    checked: tokio_rustls::TlsConnector,
    unchecked: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries")
            .field("queues", &self.queues.lock().len())
            .finish()
    }
}

impl Deliveries {
    pub(crate) fn new(
        store: Arc<Store>,
        opts: Arc<IndicationOptions>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Deliveries, Error> {
        let checked = trust::connector(opts.trusted_certs.clone(), false)?;
        let unchecked = trust::connector(Vec::new(), true)?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(Deliveries {
            shared: Arc::new(Shared {
                store,
                opts,
                dropped: AtomicU64::new(0),
                checked,
                unchecked,
            }),
            queues: Mutex::new(HashMap::new()),
            runtime,
            run_id: format!("{started:x}"),
        })
    }

    /// Indications dropped so far (full queue or retries exhausted).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Queues `indication` for destination `name`, with that destination's SequenceContext and
    /// next SequenceNumber. Never waits.
    pub fn send(&self, name: &str, mut indication: Instance) {
        let q = self.queue(name);
        let mut next = q.next.lock();
        indication.set("SequenceContext", Some(Value::string(&q.context)));
        indication.set("SequenceNumber", Some(Value::Sint64(*next)));
        *next = next.wrapping_add(1).max(0);
        if q.tx.try_send(indication).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("indication queue of destination {name} is full: indication dropped");
        }
    }

    /// Ends the queue of a deleted destination (what it still holds is dropped).
    pub fn forget(&self, name: &str) {
        self.queues.lock().remove(name);
    }

    fn queue(&self, name: &str) -> Arc<Queue> {
        let mut queues = self.queues.lock();
        if let Some(q) = queues.get(name) {
            return q.clone();
        }
        let (tx, rx) = mpsc::channel(INDICATION_DESTINATION_QUEUED_MAX);
        let q = Arc::new(Queue {
            tx,
            next: Mutex::new(0),
            context: format!("CAIRN:{}:{}", self.run_id, name),
        });
        queues.insert(name.to_owned(), q.clone());
        self.runtime
            .spawn(run(self.shared.clone(), name.to_owned(), rx));
        q
    }
}

/// The task of one destination: delivers its queue in order until the queue is dropped.
async fn run(shared: Arc<Shared>, name: String, mut rx: mpsc::Receiver<Instance>) {
    let mut failing_since: Option<Instant> = None;
    let mut message_id: u64 = 0;
    while let Some(indication) = rx.recv().await {
        message_id += 1;
        let body = Bytes::from(encode_export_indication(
            &message_id.to_string(),
            &indication,
        ));
        if !deliver(&shared, &name, &body, &mut failing_since).await {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("indication for destination {name} dropped after its retries");
        }
    }
}

/// Tries one indication up to 1 + DeliveryRetryAttempts times; true once the listener took it.
async fn deliver(
    shared: &Shared,
    name: &str,
    body: &Bytes,
    failing_since: &mut Option<Instant>,
) -> bool {
    let opts = &shared.opts;
    for attempt in 0..=opts.retry_attempts {
        if attempt > 0 {
            tokio::time::sleep(opts.retry_interval).await;
        }
        let Some(url) = shared.destination(name) else {
            return true;
        };
        let outcome = tokio::time::timeout(INDICATION_DELIVERY_TIMEOUT, shared.post(&url, body))
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()));
        match outcome {
            Ok(()) => {
                *failing_since = None;
                return true;
            }
            Err(e) => {
                tracing::debug!("delivery to {name} failed (attempt {}): {e}", attempt + 1);
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= opts.removal_interval {
                    shared.remove_subscriptions(name);
                    *failing_since = None;
                }
            }
        }
    }
    false
}

impl Shared {
    /// The destination's URL (and whether its certificate is accepted unchecked), while it
    /// exists.
    fn destination(&self, name: &str) -> Option<(Url, bool)> {
        let st = self.store.state();
        let d = st.destinations.iter().find(|d| d.keys.name == name)?;
        let url = Url::parse(&d.destination).ok()?;
        let unchecked = self
            .opts
            .accept_any_cert
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => d.destination.starts_with(prefix),
                None => *p == d.destination,
            });
        Some((url, unchecked))
    }

    fn remove_subscriptions(&self, name: &str) {
        let action = self.opts.removal_action;
        let r = match action {
            REMOVAL_ACTION_REMOVE => self.store.remove_subscriptions(None, name),
            REMOVAL_ACTION_DISABLE => self.store.set_state(None, name, SUBSCRIPTION_DISABLED),
            _ => return,
        };
        match r {
            Ok(()) => tracing::warn!(
                "destination {name} failed for SubscriptionRemovalTimeInterval: SubscriptionRemovalAction {action} applied"
            ),
            Err(e) => tracing::warn!("cannot apply SubscriptionRemovalAction to {name}: {e}"),
        }
    }

    async fn post(&self, (url, unchecked): &(Url, bool), body: &Bytes) -> Result<(), String> {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if !url.https {
            return exchange(TokioIo::new(tcp), url, body).await;
        }
        let server = ServerName::try_from(url.host.clone()).map_err(|e| e.to_string())?;
        let connector = if *unchecked {
            &self.unchecked
        } else {
            &self.checked
        };
        let tls = connector
            .connect(server, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(TokioIo::new(tls), url, body).await
    }
}

async fn exchange<S>(io: TokioIo<S>, url: &Url, body: &Bytes) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::post(url.path.as_str())
        .header(hyper::header::HOST, url.host_header())
        .header(
            hyper::header::CONTENT_TYPE,
            "application/xml; charset=\"utf-8\"",
        )
        .header("CIMProtocolVersion", "1.0")
        .header("CIMExport", "MethodRequest")
        .header("CIMExportMethod", EXPORT_INDICATION)
        .body(Full::new(body.clone()))
        .map_err(|e| e.to_string())?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), INDICATION_RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        if status != hyper::StatusCode::OK {
            return Err(format!("HTTP {status}"));
        }
        match decode_export_response(&bytes) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("listener answered {e}")),
            Err(e) => Err(format!("bad answer: {e}")),
        }
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_urls_are_parsed_and_bad_ones_refused() {
        let u = Url::parse("http://127.0.0.1:5000/cimlistener/x").expect("url");
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (false, "127.0.0.1", 5000, "/cimlistener/x")
        );
        let u = Url::parse("HTTPS://[::1]").expect("url");
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "::1", 5989, "/")
        );
        assert_eq!(u.host_header(), "[::1]:5989");
        for bad in [
            "ftp://x",
            "http://",
            "http://h:99999/",
            "http://h:1/a b",
            "localhost:5000",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
