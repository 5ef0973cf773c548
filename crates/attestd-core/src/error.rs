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
    ($($(#[$doc:meta])* $variant:ident => $code:literal, $class:ident;)*) => {
        /// Machine-readable reason codes of docs/api.md (the `ErrorInfo.reason`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason { $($(#[$doc])* $variant,)* }

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
    /// Evidence is not a valid COSE_Sign1 (structure, tag, headers).
    MalformedCose => "MALFORMED_COSE", InvalidArgument;
    /// Evidence CBOR is not well-formed or breaks the decoder's bounds.
    MalformedCbor => "MALFORMED_CBOR", InvalidArgument;
    /// A record or baseline payload is not the strict JSON expected.
    MalformedJson => "MALFORMED_JSON", InvalidArgument;
    /// The request body is not the method's protobuf message.
    MalformedMessage => "MALFORMED_MESSAGE", InvalidArgument;
    /// A required EAT claim is absent.
    ClaimMissing => "CLAIM_MISSING", InvalidArgument;
    /// An EAT claim has the wrong type or value.
    ClaimInvalid => "CLAIM_INVALID", InvalidArgument;
    /// A request or payload field is invalid; the message names it.
    FieldInvalid => "FIELD_INVALID", InvalidArgument;
    /// The COSE `alg` (protected header only) is not one attestd accepts.
    AlgNotAllowed => "ALG_NOT_ALLOWED", InvalidArgument;
    /// A DSSE `payload_type` the called method does not take.
    UnknownPayloadType => "UNKNOWN_PAYLOAD_TYPE", InvalidArgument;
    /// The evidence's `eat_profile` is not attestd's profile.
    ProfileMismatch => "PROFILE_MISMATCH", InvalidArgument;
    /// A request, evidence or envelope above its size bound.
    TooLarge => "TOO_LARGE", ResourceExhausted;
    /// A device call above the per-peer or per-serial rate, or a full table.
    RateLimited => "RATE_LIMITED", ResourceExhausted;
    /// No, malformed or unknown token; a certificate not mapped to a principal.
    NoCredentials => "NO_CREDENTIALS", Unauthenticated;
    /// Evidence or a record does not verify with the enrolled or registered key.
    SignatureInvalid => "SIGNATURE_INVALID", Unauthenticated;
    /// Evidence for a serial that is not enrolled.
    UnknownDevice => "UNKNOWN_DEVICE", Unauthenticated;
    /// A record names a station that is not registered.
    UnknownStation => "UNKNOWN_STATION", Unauthenticated;
    /// The caller's role may not call the method, or the method is unknown.
    RoleForbidden => "ROLE_FORBIDDEN", PermissionDenied;
    /// A hospital-it principal names another tenant.
    TenantForbidden => "TENANT_FORBIDDEN", PermissionDenied;
    /// The station may not submit this record (another station's, another kind or model).
    StationNotAuthorized => "STATION_NOT_AUTHORIZED", PermissionDenied;
    /// A record from a revoked station (not the appraisal code of the same name).
    StationRevoked => "STATION_REVOKED", PermissionDenied;
    /// Fewer valid release signatures than the threshold, or no release keys.
    ThresholdNotMet => "THRESHOLD_NOT_MET", PermissionDenied;
    /// The nonce was not issued for this serial, was evicted, or was lost in a restart.
    NonceUnknown => "NONCE_UNKNOWN", FailedPrecondition;
    /// The challenge is older than `nonce_lifetime_ms`.
    NonceExpired => "NONCE_EXPIRED", FailedPrecondition;
    /// The nonce was already used.
    NonceReused => "NONCE_REUSED", FailedPrecondition;
    /// The same evidence again, or deferred evidence that is not newer than what was accepted.
    Replayed => "REPLAYED", FailedPrecondition;
    /// An `iat` or `performed_at` too far ahead of the server's clock.
    ClockSkew => "CLOCK_SKEW", FailedPrecondition;
    /// A station record whose sequence is not above the station's last accepted one.
    SequenceRegressed => "SEQUENCE_REGRESSED", FailedPrecondition;
    /// A baseline version not above the model's latest.
    VersionNotIncreasing => "VERSION_NOT_INCREASING", FailedPrecondition;
    /// A provisioning record would change an enrolled unit's identity without a valid `supersedes`.
    SerialEnrolled => "SERIAL_ENROLLED", AlreadyExists;
    /// The device key is already enrolled for another unit.
    KeyInUse => "KEY_IN_USE", AlreadyExists;
    /// A station id that is already registered.
    StationExists => "STATION_EXISTS", AlreadyExists;
    /// No such unit (or one outside the caller's tenant).
    DeviceNotFound => "DEVICE_NOT_FOUND", NotFound;
    /// No such record.
    RecordNotFound => "RECORD_NOT_FOUND", NotFound;
    /// No such baseline, or no active one.
    BaselineNotFound => "BASELINE_NOT_FOUND", NotFound;
    /// No such station.
    StationNotFound => "STATION_NOT_FOUND", NotFound;
    /// No such evidence.
    EvidenceNotFound => "EVIDENCE_NOT_FOUND", NotFound;
    /// A change-feed cursor older than the retained feed.
    CursorExpired => "CURSOR_EXPIRED", FailedPrecondition;
    /// A backup of a store backed up with its own tools, or without an audit key.
    BackupUnsupported => "BACKUP_UNSUPPORTED", FailedPrecondition;
    /// A `WatchFleet` reader fell behind; it resumes from its cursor.
    WatchLagged => "WATCH_LAGGED", Aborted;
    /// Storage failed, or the unit changed concurrently too often.
    StoreUnavailable => "STORE_UNAVAILABLE", Unavailable;
    /// The server is stopping.
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
    /// The machine-readable code.
    pub reason: Reason,
    /// The human-readable message, naming the field or claim at fault.
    pub message: String,
}

impl Rejection {
    /// A rejection with `reason` and `message`.
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
