//! One SMI-S session with the daemon: each call is encoded with the client half of the CIM-XML
//! codec, posted, and its response decoded and checked (message id, method name, CIM errors).
//! Enumerations use the pull operations, the way pywbem does by default.
//!
//! Invariants: a CIM error or a method return value other than the ones the caller accepts
//! becomes one error line naming the code and its meaning; an enumeration follows its context
//! until EndOfSequence, at most `PULL_ROUNDS_MAX` rounds.

use std::cell::Cell;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cairn_cim::client::{
    decode_response, encode_request, IntrinsicReply, MethodReply, Operation, Reply, Returned,
};
use cairn_cim::{Instance, InstancePath, Value};

use super::transport::{Transport, REQUEST_TIMEOUT};

/// The implementation namespace of the array.
pub const NAMESPACE: &str = "root/cairn";
/// Objects asked for per Open/Pull round.
const PULL_OBJECT_COUNT: u32 = 500;
/// Most Pull rounds of one enumeration (2 million objects).
const PULL_ROUNDS_MAX: usize = 4096;

pub struct Session {
    transport: Transport,
    next_id: Cell<u64>,
}

impl Session {
    pub fn new(transport: Transport) -> Session {
        Session {
            transport,
            next_id: Cell::new(1),
        }
    }

    fn call(&self, op: &Operation, timeout: Duration) -> Result<Reply> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let req = encode_request(&id.to_string(), NAMESPACE, op);
        let body = self.transport.post(&req, timeout)?;
        let response = decode_response(&body)
            .with_context(|| format!("The daemon's answer to {} is not CIM-XML", op.method()))?;
        if response.message_id != id.to_string()
            || !response.method.eq_ignore_ascii_case(op.method())
        {
            bail!("The daemon answered another request than {}", op.method());
        }
        response.reply.map_err(|e| {
            anyhow!(
                "{} failed: {} ({}): {}",
                op.method(),
                e.status.name(),
                e.status.code(),
                e.description
            )
        })
    }

    fn intrinsic(&self, op: &Operation) -> Result<IntrinsicReply> {
        match self.call(op, REQUEST_TIMEOUT)? {
            Reply::Intrinsic(r) => Ok(r),
            Reply::Method(_) => bail!("{} answered as a method", op.method()),
        }
    }

    /// Every instance of `class_name` (subclasses included), with paths.
    pub fn enumerate(&self, class_name: &str) -> Result<Vec<Instance>> {
        let mut reply = self.intrinsic(&Operation::OpenEnumerateInstances {
            class_name: class_name.to_owned(),
            max_object_count: PULL_OBJECT_COUNT,
        })?;
        let mut out = Vec::new();
        for _ in 0..PULL_ROUNDS_MAX {
            match reply.returned {
                Returned::Instances(v) => out.extend(v),
                Returned::Nothing => {}
                other => bail!("Enumerating {class_name} returned {other:?}"),
            }
            if reply.end_of_sequence != Some(false) {
                return Ok(out);
            }
            let context = reply
                .enumeration_context
                .ok_or_else(|| anyhow!("The daemon gave no EnumerationContext"))?;
            reply = self.intrinsic(&Operation::PullInstancesWithPath {
                context,
                max_object_count: PULL_OBJECT_COUNT,
            })?;
        }
        bail!("Enumerating {class_name} did not end after {PULL_ROUNDS_MAX} rounds")
    }

    /// The instance at `path`.
    pub fn get(&self, path: &InstancePath) -> Result<Instance> {
        match self
            .intrinsic(&Operation::GetInstance { path: path.clone() })?
            .returned
        {
            Returned::Instances(mut v) if v.len() == 1 => {
                let mut inst = v.remove(0);
                inst.path.get_or_insert_with(|| path.clone());
                Ok(inst)
            }
            other => bail!("GetInstance returned {other:?}"),
        }
    }

    /// Sets `properties` of the instance at `path`.
    pub fn modify(&self, path: &InstancePath, properties: &[(&str, Value)]) -> Result<()> {
        let mut instance = Instance::new(path.class_name.clone());
        for (name, value) in properties {
            instance = instance.with(name, value.clone());
        }
        self.intrinsic(&Operation::ModifyInstance {
            instance,
            path: path.clone(),
            property_list: properties.iter().map(|(n, _)| (*n).to_owned()).collect(),
        })?;
        Ok(())
    }

    /// Invokes `method` on `target`; a return value outside `accepted` is an error naming it.
    pub fn invoke(
        &self,
        target: &InstancePath,
        method: &str,
        params: Vec<(String, Value)>,
        accepted: &[u32],
    ) -> Result<(u32, MethodReply)> {
        self.invoke_within(REQUEST_TIMEOUT, target, method, params, accepted)
    }

    /// [`Session::invoke`] for a method that may run longer than a request usually takes.
    pub fn invoke_within(
        &self,
        timeout: Duration,
        target: &InstancePath,
        method: &str,
        params: Vec<(String, Value)>,
        accepted: &[u32],
    ) -> Result<(u32, MethodReply)> {
        let op = Operation::InvokeMethod {
            target: target.clone(),
            method: method.to_owned(),
            params,
        };
        let reply = match self.call(&op, timeout)? {
            Reply::Method(m) => m,
            Reply::Intrinsic(_) => bail!("{method} answered as an intrinsic operation"),
        };
        let code = reply
            .return_value
            .as_ref()
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok())
            .ok_or_else(|| anyhow!("{method} returned no numeric return value"))?;
        if !accepted.contains(&code) {
            bail!(
                "{method} returned {code} ({})",
                return_meaning(method, code)
            );
        }
        Ok((code, reply))
    }
}

/// What a method return value means (DMTF's value maps for the methods the CLI calls).
pub fn return_meaning(method: &str, code: u32) -> &'static str {
    match (code, method) {
        (0, _) => "Completed with No Error",
        (1, _) => "Not Supported",
        (2, "RequestStateChange") => "Unknown or Unspecified Error",
        (2, _) => "Unknown",
        (3, _) => "Timeout",
        (4, _) => "Failed",
        (5, _) => "Invalid Parameter",
        (6, _) => "In Use",
        (4096, _) => "Method Parameters Checked - Job Started",
        (4097, "RequestStateChange") => "Invalid State Transition",
        (4097, "CreateOrModifyElementFromStoragePool") => "Size Not Supported",
        _ => "Vendor Specific or Reserved",
    }
}
