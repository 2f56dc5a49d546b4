//! Plain EnumerateInstances and EnumerateInstanceNames, answered batch by batch: the enumeration
//! keeps the same cursor a pull enumeration keeps ([`super::pull`]), and each batch of at most
//! `STREAM_BATCH_OBJECT_COUNT` objects is computed from the state of the moment it is asked for
//! and encoded at once, so what the answer holds in memory at any time is one batch, whatever
//! the number of instances.
//!
//! Invariants: the first batch is computed before anything is sent, so an error there is an
//! ordinary `ERROR` answer; an answer of one batch is sent whole; a longer one is a
//! [`CimStream`] whose parts concatenate to exactly the bytes of the whole answer, unless a
//! later batch fails, in which case the stream ends with that error and nothing after it (the
//! HTTP layer turns it into the DSP0200 trailers or a broken-off answer, never into a complete
//! one). As in a pull, no object is returned twice and one deleted before its batch is not
//! returned.

use std::sync::Arc;

use super::params::Params;
use super::pull::{EnumCursor, Unpaged};
use super::Core;
use crate::error::CimError;
use crate::limits::STREAM_BATCH_OBJECT_COUNT;
use crate::request::IntrinsicCall;
use crate::xml::encode::{imethod_response_head, imethod_response_tail, ireturn_part, IReturn};

/// The intrinsic operations answered batch by batch, and whether each returns paths only.
const STREAMED: [(&str, bool); 2] = [
    ("EnumerateInstances", false),
    ("EnumerateInstanceNames", true),
];

/// Whether intrinsic operation `method` is answered batch by batch (and returns paths only).
pub(crate) fn streamed(method: &str) -> Option<bool> {
    STREAMED
        .iter()
        .find(|(m, _)| m.eq_ignore_ascii_case(method))
        .map(|(_, names)| *names)
}

/// What a streamed operation answers.
pub(crate) enum Enumerated {
    /// The whole result (it fit in one batch).
    Whole(IReturn),
    /// The answer in parts.
    Stream(CimStream),
}

/// An answer sent in parts: each item is the next bytes of the response body, or the error
/// that ended it midway (the last item then). Computing an item computes one batch.
pub struct CimStream {
    core: Arc<Core>,
    namespace: String,
    cursor: EnumCursor,
    /// The message head and the first batch, not yet taken.
    first: Option<Vec<u8>>,
    done: bool,
}

impl std::fmt::Debug for CimStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CimStream")
            .field("namespace", &self.namespace)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Iterator for CimStream {
    type Item = Result<Vec<u8>, CimError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        if self.done {
            return None;
        }
        if self.cursor.is_done() {
            self.done = true;
            return Some(Ok(imethod_response_tail()));
        }
        let batch = self.core.cursor_batch(
            &self.namespace,
            &mut self.cursor,
            STREAM_BATCH_OBJECT_COUNT,
            Unpaged::Whole,
        );
        match batch {
            Ok(items) => Some(Ok(ireturn_part(&items.into_plain()))),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl CimStream {
    /// The whole body, or the error that ended it (for callers that want one buffer).
    pub fn collect_body(self) -> Result<Vec<u8>, CimError> {
        let mut body = Vec::new();
        for part in self {
            body.extend_from_slice(&part?);
        }
        Ok(body)
    }
}

impl Core {
    /// The whole result of EnumerateInstances (or EnumerateInstanceNames, `names`), every batch
    /// of it together.
    pub(super) fn enumerate_all(
        &self,
        ns: &str,
        names: bool,
        p: &Params<'_>,
    ) -> Result<IReturn, CimError> {
        let mut cursor = self.enum_cursor(ns, names, p)?;
        let mut all = self.cursor_batch(ns, &mut cursor, usize::MAX, Unpaged::Whole)?;
        while !cursor.is_done() {
            all.extend(self.cursor_batch(ns, &mut cursor, usize::MAX, Unpaged::Whole)?);
        }
        Ok(all.into_plain())
    }

    /// Starts the streamed answer to `call` (an operation [`streamed`] names, `names` as it
    /// says): the first batch now, the rest as the stream is read.
    pub(crate) fn enumerate_streamed(
        self: &Arc<Self>,
        call: &IntrinsicCall,
        names: bool,
        message_id: &str,
    ) -> Result<Enumerated, CimError> {
        let ns = self.namespace(&call.namespace)?;
        let p = Params(&call.params);
        let mut cursor = self.enum_cursor(&ns, names, &p)?;
        let first = self
            .cursor_batch(&ns, &mut cursor, STREAM_BATCH_OBJECT_COUNT, Unpaged::Whole)?
            .into_plain();
        if cursor.is_done() {
            return Ok(Enumerated::Whole(first));
        }
        let mut head = imethod_response_head(message_id, &call.method);
        head.extend_from_slice(&ireturn_part(&first));
        Ok(Enumerated::Stream(CimStream {
            core: self.clone(),
            namespace: ns,
            cursor,
            first: Some(head),
            done: false,
        }))
    }
}
