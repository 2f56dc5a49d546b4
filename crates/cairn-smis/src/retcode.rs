//! Method return values (BRIEF §6) and the one mapping from array backend errors to them (and,
//! for the one intrinsic operation that changes the array, ModifyInstance, to CIM errors).
//!
//! Invariant: every backend error that reaches a client as a method return value or a job
//! Exception passes through [`Refusal::from`] — nowhere else decides which code a backend outcome
//! gets.

use cairn_array::ErrorKind;
use cairn_cim::{CimError, CimStatus, MethodResult, Value};

pub const COMPLETED: u32 = 0;
pub const NOT_SUPPORTED: u32 = 1;
pub const FAILED: u32 = 4;
pub const INVALID_PARAMETER: u32 = 5;
pub const IN_USE: u32 = 6;
pub const JOB_STARTED: u32 = 4096;
/// CreateOrModifyElementFromStoragePool: "Size Not Supported".
pub const SIZE_NOT_SUPPORTED: u32 = 4097;
/// CIM_ConcreteJob.RequestStateChange: "Invalid State Transition".
pub const INVALID_STATE_TRANSITION: u32 = 4097;
/// CIM_StoragePool.GetSupportedSizeRange: "Invalid Element Type".
pub const INVALID_ELEMENT_TYPE: u32 = 3;
/// CIM_StoragePool.GetSupportedSizes: "Use GetSupportedSizeRange instead".
pub const USE_SIZE_RANGE: u32 = 2;

/// A method that did not do what was asked: the return value and why (logged, and the job's
/// ErrorDescription when it happens in a job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u32,
    pub reason: String,
}

impl Refusal {
    pub fn new(code: u32, reason: impl Into<String>) -> Refusal {
        Refusal {
            code,
            reason: reason.into(),
        }
    }

    pub fn invalid(reason: impl Into<String>) -> Refusal {
        Refusal::new(INVALID_PARAMETER, reason)
    }

    pub fn not_supported(reason: impl Into<String>) -> Refusal {
        Refusal::new(NOT_SUPPORTED, reason)
    }

    /// The method result carrying only this return value.
    pub fn into_result(self) -> MethodResult {
        MethodResult::code(Value::Uint32(self.code))
    }
}

/// The return value for a backend outcome: full pool → 4, unknown element → 5, element in use → 6,
/// a name or size the engine refuses → 5, anything else → 4.
pub fn code_of(kind: ErrorKind) -> u32 {
    match kind {
        ErrorKind::NoSpace => FAILED,
        ErrorKind::NotFound => INVALID_PARAMETER,
        ErrorKind::InUse => IN_USE,
        ErrorKind::NotSupported => NOT_SUPPORTED,
        ErrorKind::AlreadyExists | ErrorKind::InvalidArgument | ErrorKind::OutOfRange => {
            INVALID_PARAMETER
        }
        _ => FAILED,
    }
}

/// The CIM error for a backend outcome of an intrinsic operation (ModifyInstance): a taken name →
/// CIM_ERR_ALREADY_EXISTS, a name or value the backend refuses → CIM_ERR_INVALID_PARAMETER, an
/// unknown volume → CIM_ERR_NOT_FOUND, anything else → CIM_ERR_FAILED.
pub fn cim_error(e: cairn_array::Error) -> CimError {
    let status = match e.kind() {
        ErrorKind::AlreadyExists => CimStatus::AlreadyExists,
        ErrorKind::InvalidArgument | ErrorKind::OutOfRange => CimStatus::InvalidParameter,
        ErrorKind::NotFound => CimStatus::NotFound,
        _ => CimStatus::Failed,
    };
    CimError::new(status, e.to_string())
}

impl From<cairn_array::Error> for Refusal {
    fn from(e: cairn_array::Error) -> Refusal {
        let reason = match e.kind() {
            ErrorKind::NoSpace => format!("The pool is out of space: {e}"),
            ErrorKind::AlreadyExists => format!("The name is already in use: {e}"),
            _ => e.to_string(),
        };
        Refusal::new(code_of(e.kind()), reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_kinds_map_to_the_brief_values() {
        assert_eq!(code_of(ErrorKind::NoSpace), 4);
        assert_eq!(code_of(ErrorKind::NotFound), 5);
        assert_eq!(code_of(ErrorKind::InUse), 6);
        assert_eq!(code_of(ErrorKind::AlreadyExists), 5);
        assert_eq!(code_of(ErrorKind::InvalidArgument), 5);
        assert_eq!(code_of(ErrorKind::OutOfRange), 5);
        assert_eq!(code_of(ErrorKind::ReadOnly), 4);
        assert_eq!(code_of(ErrorKind::Failed), 4);
        assert_eq!(code_of(ErrorKind::NotSupported), 1);
    }
}
