use super::*;
use crate::flow::FlowError;
use crate::flow::token::TokenError;
use crate::spec::{StsPolicy, resolve};
use crate::sts::{StsError, StsErrorKind};

fn spec() -> ResolvedSpec {
    resolve(
        &serde_json::from_value(serde_json::json!({
            "serviceAccountName": "app",
            "roleArn": "arn:aws:iam::123456789012:role/app",
        }))
        .expect("spec"),
        "ns",
        "b",
        &StsPolicy::default(),
    )
    .expect("valid")
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("time")
}

fn issued() -> IssuedMeta {
    IssuedMeta {
        issued_at: t(0),
        expiration: t(3600),
        renewal_time: t(2400),
        fingerprint: "f".into(),
        assumed_role_arn: None,
        chain: None,
        sts_endpoint: None,
    }
}

fn sts_failure(kind: StsErrorKind) -> RefreshError {
    RefreshError::Flow(FlowError::Sts(StsError::new(kind, Some("X"), "no")))
}

#[test]
fn every_result_has_its_own_label() {
    let s = spec();
    let labels: Vec<&str> = [
        Reconciled::Invalid(Invalid::from(crate::spec::SpecError::AudienceNotAllowed(
            "x".into(),
        ))),
        Reconciled::Fresh {
            spec: &s,
            issued: issued(),
        },
        Reconciled::Refreshed {
            spec: &s,
            reason: RefreshReason::RenewalDue,
            issued: issued(),
            created_uid: None,
            version: None,
        },
        Reconciled::Conflict {
            spec: &s,
            owner: None,
        },
        Reconciled::Failed {
            spec: &s,
            error: sts_failure(StsErrorKind::Throttled),
            still_valid: None,
        },
    ]
    .iter()
    .map(|r| r.result().as_str())
    .collect();
    assert_eq!(
        labels,
        vec!["invalid", "fresh", "refreshed", "conflict", "failed"]
    );
}

#[test]
fn blocked_bindings_speak_once_failures_always_and_recoveries_once() {
    let s = spec();
    let conflict = Reconciled::Conflict {
        spec: &s,
        owner: Some("Deployment/x".into()),
    };
    let ready = |reason| Previous {
        ready_reason: reason,
        degraded_reason: None,
    };
    let first = announcement(&conflict, ready(Some("CredentialsIssued"))).expect("announced");
    assert!(first.warning);
    assert_eq!(first.reason, REASON_CONFLICT);
    assert!(first.note.contains("controller: Deployment/x"));
    assert_eq!(announcement(&conflict, ready(Some(REASON_CONFLICT))), None);

    let invalid = Reconciled::Invalid(Invalid::from(crate::spec::SpecError::EndpointNotAllowed {
        field: "sts.endpoint",
        endpoint: "https://x".into(),
    }));
    assert_eq!(
        announcement(&invalid, ready(None)).map(|a| a.action),
        Some("Validate")
    );
    assert_eq!(
        announcement(&invalid, ready(Some("EndpointNotAllowed"))),
        None
    );

    let fresh = Reconciled::Fresh {
        spec: &s,
        issued: issued(),
    };
    assert_eq!(announcement(&fresh, ready(None)), None);

    let refreshed = Reconciled::Refreshed {
        spec: &s,
        reason: RefreshReason::SpecChanged,
        issued: issued(),
        created_uid: None,
        version: None,
    };
    // A first issue and a routine renewal say nothing; the end of a failure or block does.
    assert_eq!(announcement(&refreshed, ready(None)), None);
    assert_eq!(
        announcement(&refreshed, ready(Some("CredentialsIssued"))),
        None
    );
    let note = announcement(&refreshed, ready(Some("ServiceAccountNotFound"))).expect("announced");
    assert!(!note.warning);
    assert_eq!(note.reason, REASON_RECOVERED);
    assert!(
        note.note
            .ends_with("(SpecChanged; until now: ServiceAccountNotFound)"),
        "{}",
        note.note
    );
    let degraded = Previous {
        ready_reason: Some("CredentialsIssued"),
        degraded_reason: Some("StsUnavailable"),
    };
    assert!(announcement(&refreshed, degraded).is_some());

    let failed = Reconciled::Failed {
        spec: &s,
        error: RefreshError::Flow(FlowError::Token(TokenError::ServiceAccountNotFound(
            "app".into(),
        ))),
        still_valid: None,
    };
    let note = announcement(&failed, ready(Some("ServiceAccountNotFound"))).expect("announced");
    assert!(note.note.starts_with("ServiceAccountNotFound: "));
}

#[test]
fn requeues_follow_the_verdict() {
    let s = spec();
    let now = t(100);
    let fresh = Reconciled::Fresh {
        spec: &s,
        issued: issued(),
    };
    assert_eq!(
        requeue(&fresh, 0, "u", now),
        Some(plan::requeue_at(t(2400), now))
    );
    let conflict = Reconciled::Conflict {
        spec: &s,
        owner: None,
    };
    assert_eq!(
        requeue(&conflict, 0, "u", now),
        Some(plan::CONFLICT_RECHECK)
    );
    let invalid = Reconciled::Invalid(Invalid::from(crate::spec::SpecError::AudienceNotAllowed(
        "x".into(),
    )));
    assert_eq!(requeue(&invalid, 0, "u", now), None);
    // A failure while old credentials are good retries well before they expire.
    let failed = Reconciled::Failed {
        spec: &s,
        error: sts_failure(StsErrorKind::AccessDenied),
        still_valid: Some(issued()),
    };
    let delay = requeue(&failed, 1, "u", t(3000)).expect("retried");
    assert!(delay <= Duration::from_secs(150));
}

#[test]
fn status_outcomes_carry_the_category_and_the_valid_credentials() {
    let s = spec();
    let failed = Reconciled::Failed {
        spec: &s,
        error: sts_failure(StsErrorKind::Unavailable),
        still_valid: Some(issued()),
    };
    match outcome(&failed) {
        Some(Outcome::RefreshFailed {
            category,
            still_valid,
            holder,
            ..
        }) => {
            assert_eq!(category, "StsUnavailable");
            assert_eq!(still_valid, Some(&issued()));
            assert_eq!(holder.secret, Some("b"));
            assert!(!holder.endpoint);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(outcome(&Reconciled::Parked).is_none());
}
