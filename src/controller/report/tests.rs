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
            pull_secret: None,
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
        pull_secret: None,
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

#[test]
fn the_pull_secret_status_follows_what_was_written_and_revoked() {
    let s = spec();
    let kind = |r: &Reconciled<'_>| match pull_report(r) {
        PullReport::Keep => "keep",
        PullReport::Clear => "clear",
        PullReport::Written(_) => "written",
    };
    // A binding without imagePullSecret says nothing of one, even if its status did.
    assert_eq!(
        kind(&Reconciled::Fresh {
            spec: &s,
            issued: issued()
        }),
        "clear"
    );
    let mut pulling = s.clone();
    pulling.image_pull_secret = Some(crate::spec::ResolvedPullSecret {
        secret_name: "b-ecr".into(),
        registries: Vec::new(),
        add_to_service_account: false,
        endpoint: None,
    });
    assert_eq!(
        kind(&Reconciled::Fresh {
            spec: &pulling,
            issued: issued()
        }),
        "keep"
    );
    let written = crate::api::ImagePullSecretStatus {
        secret_name: "b-ecr".into(),
        ..Default::default()
    };
    assert_eq!(
        kind(&Reconciled::Refreshed {
            spec: &pulling,
            reason: RefreshReason::RenewalDue,
            issued: issued(),
            created_uid: None,
            version: None,
            pull_secret: Some(written),
        }),
        "written"
    );
    let not_allowed = |revoked| Reconciled::NotAllowed {
        error: Invalid::from(crate::spec::SpecError::AudienceNotAllowed("x".into())),
        secret_name: "b".into(),
        revoked,
    };
    // Revoked with the credentials once the grace period is over, not before.
    assert_eq!(kind(&not_allowed(Revoked::Done)), "clear");
    assert_eq!(kind(&not_allowed(Revoked::Nothing)), "clear");
    assert_eq!(kind(&not_allowed(Revoked::Scheduled(t(10)))), "keep");
    // A failure changes nothing.
    assert_eq!(kind(&Reconciled::Parked), "keep");
}

#[test]
fn a_pull_secret_written_again_keeps_the_uid_podcreds_created() {
    let created = crate::api::ImagePullSecretStatus {
        secret_name: "b-ecr".into(),
        secret_uid: Some("u1".into()),
        ..Default::default()
    };
    let again = crate::api::ImagePullSecretStatus {
        secret_name: "b-ecr".into(),
        ..Default::default()
    };
    let kept = status::pull_secret_status(Some(&created), PullReport::Written(&again));
    assert_eq!(kept.and_then(|s| s.secret_uid).as_deref(), Some("u1"));
    // Another name is another Secret: its UID is not the old one's.
    let renamed = crate::api::ImagePullSecretStatus {
        secret_name: "other".into(),
        ..Default::default()
    };
    let moved = status::pull_secret_status(Some(&created), PullReport::Written(&renamed));
    assert_eq!(moved.and_then(|s| s.secret_uid), None);
    assert_eq!(
        status::pull_secret_status(Some(&created), PullReport::Keep),
        Some(created.clone())
    );
    assert_eq!(
        status::pull_secret_status(Some(&created), PullReport::Clear),
        None
    );
}
