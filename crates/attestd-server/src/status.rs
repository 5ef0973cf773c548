//! The one place where domain errors become gRPC statuses: the status code
//! follows the reason's class, and a `google.rpc.ErrorInfo` detail carries
//! the reason (domain `attestd`) so clients branch without parsing text.

use attestd_core::{Class, Reason, Rejection};
use attestd_store::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// ErrorInfo domain of every attestd error.
pub const DOMAIN: &str = "attestd";

/// The gRPC status code of an error class.
pub fn code_for(class: Class) -> Code {
    match class {
        Class::InvalidArgument => Code::InvalidArgument,
        Class::ResourceExhausted => Code::ResourceExhausted,
        Class::Unauthenticated => Code::Unauthenticated,
        Class::PermissionDenied => Code::PermissionDenied,
        Class::FailedPrecondition => Code::FailedPrecondition,
        Class::AlreadyExists => Code::AlreadyExists,
        Class::NotFound => Code::NotFound,
        Class::Unavailable => Code::Unavailable,
        Class::Aborted => Code::Aborted,
    }
}

/// Builds the status for a rejection.
pub fn to_status(r: &Rejection) -> Status {
    Status::with_error_details(
        code_for(r.reason.class()),
        r.message.clone(),
        ErrorDetails::with_error_info(r.reason.as_str(), DOMAIN, std::collections::HashMap::new()),
    )
}

/// The rejection a store error stands for. The caller is told only that
/// storage is unavailable; the cause (the store's message with its whole
/// error chain) goes to the log here, inside the call's span (request id,
/// method, principal), once per failed call.
pub fn store_rejection(e: StoreError) -> Rejection {
    match e {
        StoreError::Rejected(r) => r,
        StoreError::Conflict => Rejection::new(
            Reason::StoreUnavailable,
            "the unit changed concurrently too often; retry",
        ),
        StoreError::Unavailable(cause) | StoreError::Incompatible(cause) => {
            tracing::warn!(error = %cause, "storage failed; the call is answered STORE_UNAVAILABLE");
            Rejection::new(
                Reason::StoreUnavailable,
                "storage is unavailable; retry later",
            )
        }
    }
}

/// Reads the attestd reason of a status, if it carries one.
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_details_error_info()
        .filter(|i| i.domain == DOMAIN)
        .map(|i| i.reason)
}
