//! The crate's error types: `CimError` (a CIM status code plus description, sent to clients as
//! `<ERROR CODE=.. DESCRIPTION=..>`) and `DecodeError` (a request that is not acceptable CIM-XML,
//! answered at the HTTP level).
//!
//! Invariant: a `CimStatus` is always one of the DSP0200 codes 1..=29.

use std::fmt;

/// CIM status codes (DSP0200 table of CIM_ERR_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CimStatus {
    Failed = 1,
    AccessDenied = 2,
    InvalidNamespace = 3,
    InvalidParameter = 4,
    InvalidClass = 5,
    NotFound = 6,
    NotSupported = 7,
    ClassHasChildren = 8,
    ClassHasInstances = 9,
    InvalidSuperclass = 10,
    AlreadyExists = 11,
    NoSuchProperty = 12,
    TypeMismatch = 13,
    QueryLanguageNotSupported = 14,
    InvalidQuery = 15,
    MethodNotAvailable = 16,
    MethodNotFound = 17,
    NamespaceNotEmpty = 20,
    InvalidEnumerationContext = 21,
    InvalidOperationTimeout = 22,
    PullHasBeenAbandoned = 23,
    PullCannotBeAbandoned = 24,
    FilteredEnumerationNotSupported = 25,
    ContinuationOnErrorNotSupported = 26,
    ServerLimitsExceeded = 27,
    ServerIsShuttingDown = 28,
    QueryFeatureNotSupported = 29,
}

/// Every status, in code order (for reading `ERROR CODE` back).
const ALL_STATUSES: [CimStatus; 27] = [
    CimStatus::Failed,
    CimStatus::AccessDenied,
    CimStatus::InvalidNamespace,
    CimStatus::InvalidParameter,
    CimStatus::InvalidClass,
    CimStatus::NotFound,
    CimStatus::NotSupported,
    CimStatus::ClassHasChildren,
    CimStatus::ClassHasInstances,
    CimStatus::InvalidSuperclass,
    CimStatus::AlreadyExists,
    CimStatus::NoSuchProperty,
    CimStatus::TypeMismatch,
    CimStatus::QueryLanguageNotSupported,
    CimStatus::InvalidQuery,
    CimStatus::MethodNotAvailable,
    CimStatus::MethodNotFound,
    CimStatus::NamespaceNotEmpty,
    CimStatus::InvalidEnumerationContext,
    CimStatus::InvalidOperationTimeout,
    CimStatus::PullHasBeenAbandoned,
    CimStatus::PullCannotBeAbandoned,
    CimStatus::FilteredEnumerationNotSupported,
    CimStatus::ContinuationOnErrorNotSupported,
    CimStatus::ServerLimitsExceeded,
    CimStatus::ServerIsShuttingDown,
    CimStatus::QueryFeatureNotSupported,
];

impl CimStatus {
    /// The status with numeric code `code`, if DSP0200 defines one.
    pub fn from_code(code: u32) -> Option<CimStatus> {
        ALL_STATUSES.into_iter().find(|s| s.code() == code)
    }

    /// The numeric code sent in `ERROR CODE`.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The symbolic DSP0200 name, e.g. `CIM_ERR_NOT_FOUND`.
    pub fn name(self) -> &'static str {
        match self {
            CimStatus::Failed => "CIM_ERR_FAILED",
            CimStatus::AccessDenied => "CIM_ERR_ACCESS_DENIED",
            CimStatus::InvalidNamespace => "CIM_ERR_INVALID_NAMESPACE",
            CimStatus::InvalidParameter => "CIM_ERR_INVALID_PARAMETER",
            CimStatus::InvalidClass => "CIM_ERR_INVALID_CLASS",
            CimStatus::NotFound => "CIM_ERR_NOT_FOUND",
            CimStatus::NotSupported => "CIM_ERR_NOT_SUPPORTED",
            CimStatus::ClassHasChildren => "CIM_ERR_CLASS_HAS_CHILDREN",
            CimStatus::ClassHasInstances => "CIM_ERR_CLASS_HAS_INSTANCES",
            CimStatus::InvalidSuperclass => "CIM_ERR_INVALID_SUPERCLASS",
            CimStatus::AlreadyExists => "CIM_ERR_ALREADY_EXISTS",
            CimStatus::NoSuchProperty => "CIM_ERR_NO_SUCH_PROPERTY",
            CimStatus::TypeMismatch => "CIM_ERR_TYPE_MISMATCH",
            CimStatus::QueryLanguageNotSupported => "CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED",
            CimStatus::InvalidQuery => "CIM_ERR_INVALID_QUERY",
            CimStatus::MethodNotAvailable => "CIM_ERR_METHOD_NOT_AVAILABLE",
            CimStatus::MethodNotFound => "CIM_ERR_METHOD_NOT_FOUND",
            CimStatus::NamespaceNotEmpty => "CIM_ERR_NAMESPACE_NOT_EMPTY",
            CimStatus::InvalidEnumerationContext => "CIM_ERR_INVALID_ENUMERATION_CONTEXT",
            CimStatus::InvalidOperationTimeout => "CIM_ERR_INVALID_OPERATION_TIMEOUT",
            CimStatus::PullHasBeenAbandoned => "CIM_ERR_PULL_HAS_BEEN_ABANDONED",
            CimStatus::PullCannotBeAbandoned => "CIM_ERR_PULL_CANNOT_BE_ABANDONED",
            CimStatus::FilteredEnumerationNotSupported => {
                "CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED"
            }
            CimStatus::ContinuationOnErrorNotSupported => {
                "CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED"
            }
            CimStatus::ServerLimitsExceeded => "CIM_ERR_SERVER_LIMITS_EXCEEDED",
            CimStatus::ServerIsShuttingDown => "CIM_ERR_SERVER_IS_SHUTTING_DOWN",
            CimStatus::QueryFeatureNotSupported => "CIM_ERR_QUERY_FEATURE_NOT_SUPPORTED",
        }
    }
}

/// A CIM error answered to the client inside an HTTP 200 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", status.name())]
pub struct CimError {
    pub status: CimStatus,
    pub description: String,
}

impl CimError {
    pub fn new(status: CimStatus, description: impl Into<String>) -> CimError {
        CimError {
            status,
            description: description.into(),
        }
    }
    pub fn not_supported(what: impl fmt::Display) -> CimError {
        CimError::new(CimStatus::NotSupported, format!("{what} is not supported"))
    }
    pub fn invalid_parameter(what: impl fmt::Display) -> CimError {
        CimError::new(CimStatus::InvalidParameter, what.to_string())
    }
    pub fn invalid_class(class_name: &str) -> CimError {
        CimError::new(CimStatus::InvalidClass, format!("No class {class_name}"))
    }
    pub fn invalid_namespace(namespace: &str) -> CimError {
        CimError::new(
            CimStatus::InvalidNamespace,
            format!("No namespace {namespace}"),
        )
    }
    pub fn not_found(what: impl fmt::Display) -> CimError {
        CimError::new(CimStatus::NotFound, format!("No instance {what}"))
    }
    pub fn failed(what: impl fmt::Display) -> CimError {
        CimError::new(CimStatus::Failed, what.to_string())
    }
}

/// Why a request body could not be decoded (answered with an HTTP status and a `CIMError` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// Not well-formed XML (or uses entities/DTDs, which Cairn never expands).
    NotWellFormed,
    /// Well-formed, but not a valid CIM-XML request (or over a decoder limit).
    NotValid,
    /// CIM element CIMVERSION is not 2.x.
    UnsupportedCimVersion,
    /// CIM element DTDVERSION is not 2.x.
    UnsupportedDtdVersion,
    /// MESSAGE PROTOCOLVERSION is not 1.x.
    UnsupportedProtocolVersion,
    /// A MULTIREQ.
    MultipleRequests,
}

/// A request body that is not acceptable CIM-XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub detail: String,
}

impl DecodeError {
    pub(crate) fn not_valid(detail: impl Into<String>) -> DecodeError {
        DecodeError {
            kind: DecodeErrorKind::NotValid,
            detail: detail.into(),
        }
    }
    pub(crate) fn not_well_formed(detail: impl Into<String>) -> DecodeError {
        DecodeError {
            kind: DecodeErrorKind::NotWellFormed,
            detail: detail.into(),
        }
    }
}
