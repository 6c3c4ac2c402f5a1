//! How a failed STS call is classified: a low-cardinality kind (condition reason, metric label,
//! retry class) and a bounded, cleaned message.

use crate::retry::RetryClass;
use crate::text;

/// Low-cardinality classes of STS failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StsErrorKind {
    /// The role's trust policy refused the token (`AccessDenied`, `IDPRejectedClaim`).
    AccessDenied,
    /// The token itself was refused (`InvalidIdentityToken`, `ExpiredTokenException`).
    InvalidIdentityToken,
    /// STS refused the parameters (`ValidationError`, `PackedPolicyTooLarge`, `MalformedPolicyDocument`,
    /// `RegionDisabledException`).
    InvalidRequest,
    /// `Throttling`.
    Throttled,
    /// 5xx, `IDPCommunicationError`, timeouts, connection failures, unreadable answers.
    Unavailable,
}

impl StsErrorKind {
    pub fn category(self) -> &'static str {
        match self {
            StsErrorKind::AccessDenied => "StsAccessDenied",
            StsErrorKind::InvalidIdentityToken => "StsInvalidIdentityToken",
            StsErrorKind::InvalidRequest => "StsInvalidRequest",
            StsErrorKind::Throttled => "StsThrottled",
            StsErrorKind::Unavailable => "StsUnavailable",
        }
    }

    pub fn retry_class(self) -> RetryClass {
        match self {
            StsErrorKind::AccessDenied
            | StsErrorKind::InvalidIdentityToken
            | StsErrorKind::InvalidRequest => RetryClass::External,
            StsErrorKind::Throttled | StsErrorKind::Unavailable => RetryClass::Transient,
        }
    }

    /// Maps an AWS error code to its class; unknown codes count as unavailability.
    pub fn from_code(code: &str) -> StsErrorKind {
        match code {
            "AccessDenied" | "AccessDeniedException" | "IDPRejectedClaim" => {
                StsErrorKind::AccessDenied
            }
            "InvalidIdentityToken" | "ExpiredTokenException" | "ExpiredToken" => {
                StsErrorKind::InvalidIdentityToken
            }
            // `InvalidArgument` is Ceph RGW's name for a refused parameter.
            "ValidationError"
            | "PackedPolicyTooLarge"
            | "MalformedPolicyDocument"
            | "RegionDisabledException"
            | "InvalidParameterValue"
            | "InvalidArgument"
            // Roles Anywhere's REST-JSON names.
            | "ValidationException"
            | "ResourceNotFoundException" => StsErrorKind::InvalidRequest,
            // `SlowDown` is how S3-style services (Ceph RGW) throttle.
            "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "SlowDown" => {
                StsErrorKind::Throttled
            }
            _ => StsErrorKind::Unavailable,
        }
    }
}

/// A failed STS call. The message is bounded and stripped of control characters, because it
/// can come from any endpoint the admin allowed and ends up in status and Events.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("STS {}: {}{}", code.as_deref().unwrap_or("error"), message, hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
pub struct StsError {
    pub kind: StsErrorKind,
    pub code: Option<String>,
    pub message: String,
    /// What to fix, when the answer shows a common setup mistake (see `flow::setup_hints`).
    pub hint: Option<String>,
    /// The endpoint itself could not answer: no connection, a timeout, an HTTP 5xx, an answer
    /// that could not be read. Another endpoint of the same service may; a refusal (any 4xx)
    /// would be the same anywhere.
    pub endpoint_failed: bool,
}

impl StsError {
    pub fn new(kind: StsErrorKind, code: Option<&str>, message: &str) -> Self {
        Self {
            kind,
            code: code.map(|c| text::bounded(c, text::MAX_REMOTE_CODE)),
            message: text::remote(message),
            hint: None,
            endpoint_failed: false,
        }
    }

    pub fn with_hint(self, hint: Option<String>) -> Self {
        Self { hint, ..self }
    }

    /// Marks the error as the endpoint's failure (see [`StsError::endpoint_failed`]).
    pub fn at_endpoint(self) -> Self {
        Self {
            endpoint_failed: true,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_classes() {
        for (code, kind) in [
            ("AccessDenied", StsErrorKind::AccessDenied),
            ("IDPRejectedClaim", StsErrorKind::AccessDenied),
            ("InvalidIdentityToken", StsErrorKind::InvalidIdentityToken),
            ("ExpiredTokenException", StsErrorKind::InvalidIdentityToken),
            ("ValidationError", StsErrorKind::InvalidRequest),
            ("Throttling", StsErrorKind::Throttled),
            ("SlowDown", StsErrorKind::Throttled),
            ("InvalidArgument", StsErrorKind::InvalidRequest),
            ("IDPCommunicationError", StsErrorKind::Unavailable),
            ("InternalFailure", StsErrorKind::Unavailable),
        ] {
            assert_eq!(StsErrorKind::from_code(code), kind, "{code}");
        }
        assert_eq!(StsErrorKind::Throttled.retry_class(), RetryClass::Transient);
        assert_eq!(
            StsErrorKind::AccessDenied.retry_class(),
            RetryClass::External
        );
    }

    #[test]
    fn remote_messages_are_bounded_and_cleaned() {
        let e = StsError::new(
            StsErrorKind::Unavailable,
            Some("X"),
            &format!("a\nb\u{7}{}", "z".repeat(1000)),
        );
        assert!(e.message.chars().count() <= text::MAX_REMOTE_MESSAGE + 1);
        assert!(!e.message.contains('\n'));
        assert!(e.message.starts_with("a b "));
    }
}
