//! Why a request was refused. One enum of reasons shared by every layer, so
//! the reason a client branches on is decided where the rule lives; the
//! server maps each reason's [`Class`] to a gRPC status in one place.

use std::fmt;

/// The broad class of a rejection: what the caller can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The input is malformed or breaks a format rule: fix the input.
    InvalidArgument,
    /// A size or rate limit: send less, or later.
    ResourceExhausted,
    /// The caller or signer could not be authenticated.
    Unauthenticated,
    /// Authenticated, but not allowed to do this.
    PermissionDenied,
    /// The input is well-formed but the state does not allow it (freshness, ordering).
    FailedPrecondition,
    /// The thing would be created twice.
    AlreadyExists,
    /// The thing asked for does not exist.
    NotFound,
    /// Retry later.
    Unavailable,
    /// The operation was cut short (a watch that fell behind); resume.
    Aborted,
}

macro_rules! reasons {
    ($($variant:ident => $code:literal, $class:ident;)*) => {
        /// Machine-readable reason codes of docs/api.md (the `ErrorInfo.reason`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason { $($variant,)* }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The code as it appears on the wire, e.g. `NONCE_REUSED`.
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$variant => $code,)* }
            }

            /// The class that decides the gRPC status code.
            pub fn class(self) -> Class {
                match self { $(Reason::$variant => Class::$class,)* }
            }
        }
    };
}

reasons! {
    MalformedCose => "MALFORMED_COSE", InvalidArgument;
    MalformedCbor => "MALFORMED_CBOR", InvalidArgument;
    MalformedJson => "MALFORMED_JSON", InvalidArgument;
    MalformedMessage => "MALFORMED_MESSAGE", InvalidArgument;
    ClaimMissing => "CLAIM_MISSING", InvalidArgument;
    ClaimInvalid => "CLAIM_INVALID", InvalidArgument;
    FieldInvalid => "FIELD_INVALID", InvalidArgument;
    AlgNotAllowed => "ALG_NOT_ALLOWED", InvalidArgument;
    UnknownPayloadType => "UNKNOWN_PAYLOAD_TYPE", InvalidArgument;
    ProfileMismatch => "PROFILE_MISMATCH", InvalidArgument;
    TooLarge => "TOO_LARGE", ResourceExhausted;
    RateLimited => "RATE_LIMITED", ResourceExhausted;
    NoCredentials => "NO_CREDENTIALS", Unauthenticated;
    SignatureInvalid => "SIGNATURE_INVALID", Unauthenticated;
    UnknownDevice => "UNKNOWN_DEVICE", Unauthenticated;
    UnknownStation => "UNKNOWN_STATION", Unauthenticated;
    RoleForbidden => "ROLE_FORBIDDEN", PermissionDenied;
    TenantForbidden => "TENANT_FORBIDDEN", PermissionDenied;
    StationNotAuthorized => "STATION_NOT_AUTHORIZED", PermissionDenied;
    StationRevoked => "STATION_REVOKED", PermissionDenied;
    ThresholdNotMet => "THRESHOLD_NOT_MET", PermissionDenied;
    NonceUnknown => "NONCE_UNKNOWN", FailedPrecondition;
    NonceExpired => "NONCE_EXPIRED", FailedPrecondition;
    NonceReused => "NONCE_REUSED", FailedPrecondition;
    Replayed => "REPLAYED", FailedPrecondition;
    ClockSkew => "CLOCK_SKEW", FailedPrecondition;
    SequenceRegressed => "SEQUENCE_REGRESSED", FailedPrecondition;
    VersionNotIncreasing => "VERSION_NOT_INCREASING", FailedPrecondition;
    SerialEnrolled => "SERIAL_ENROLLED", AlreadyExists;
    KeyInUse => "KEY_IN_USE", AlreadyExists;
    StationExists => "STATION_EXISTS", AlreadyExists;
    DeviceNotFound => "DEVICE_NOT_FOUND", NotFound;
    RecordNotFound => "RECORD_NOT_FOUND", NotFound;
    BaselineNotFound => "BASELINE_NOT_FOUND", NotFound;
    StationNotFound => "STATION_NOT_FOUND", NotFound;
    EvidenceNotFound => "EVIDENCE_NOT_FOUND", NotFound;
    CursorExpired => "CURSOR_EXPIRED", FailedPrecondition;
    BackupUnsupported => "BACKUP_UNSUPPORTED", FailedPrecondition;
    WatchLagged => "WATCH_LAGGED", Aborted;
    StoreUnavailable => "STORE_UNAVAILABLE", Unavailable;
    ShuttingDown => "SHUTTING_DOWN", Unavailable;
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: a reason code for machines and a message for humans
/// that names the field or claim at fault. Messages never carry key material
/// or another unit's data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

/// Shorthand for building a [`Rejection`] with a formatted message.
#[macro_export]
macro_rules! reject {
    ($reason:ident, $($arg:tt)*) => {
        $crate::error::Rejection::new($crate::error::Reason::$reason, format!($($arg)*))
    };
}
