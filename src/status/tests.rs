use super::*;

/// Credentials kept in Secret `s` only.
const IN_SECRET_S: Holder<'static> = Holder {
    secret: Some("s"),
    endpoint: false,
};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("valid")
}

fn issued() -> IssuedMeta {
    IssuedMeta {
        issued_at: t(0),
        expiration: t(3600),
        renewal_time: t(2400),
        fingerprint: "f".into(),
        assumed_role_arn: Some("arn:aws:sts::1:assumed-role/r/s".into()),
        chain: None,
        sts_endpoint: None,
    }
}

#[test]
fn own_write_counts_until_the_cache_shows_another_version() {
    let cached = AWSRoleBindingStatus::default();
    let written = AWSRoleBindingStatus {
        observed_generation: Some(1),
        ..AWSRoleBindingStatus::default()
    };
    let write = StatusWrite {
        based_on: "10".into(),
        status: written.clone(),
    };
    // The cache still shows the version the write started from: the write is current.
    assert_eq!(
        known_status(Some("10"), Some(&cached), Some(&write)),
        Some(&written)
    );
    // The cache moved on (our write, or anyone's later one): trust it.
    assert_eq!(
        known_status(Some("11"), Some(&cached), Some(&write)),
        Some(&cached)
    );
    assert_eq!(known_status(Some("10"), None, None), None);
}

#[test]
fn source_status_says_whether_keys_are_usable_and_keeps_transition_times() {
    let ok = source_status(None, Ok(()), Some(1), t(0));
    let ready = &ok.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", REASON_KEYS_PRESENT)
    );
    let again = source_status(Some(&ok), Ok(()), Some(2), t(60));
    assert_eq!(
        again.conditions[0].last_transition_time,
        ready.last_transition_time
    );
    assert_eq!(again.observed_generation, Some(2));
    let missing = crate::source::SourceError::SecretMissing {
        name: "keys".into(),
        secret: "user-keys".into(),
    };
    let broken = source_status(Some(&ok), Err(&missing), Some(2), t(120));
    let c = &broken.conditions[0];
    assert_eq!(c.status, "False");
    assert_eq!(c.reason, "CredentialSourceSecretMissing");
    assert!(c.message.contains("user-keys"), "{}", c.message);
    assert_ne!(c.last_transition_time, ready.last_transition_time);
}

fn cond<'a>(s: &'a AWSRoleBindingStatus, type_: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == type_).expect(type_)
}

#[test]
fn valid_credentials_make_the_binding_ready() {
    let i = issued();
    let s = build_status(
        None,
        Some(3),
        &Outcome::Valid {
            issued: &i,
            holder: IN_SECRET_S,
            created_uid: None,
            just_issued: false,
        },
        t(1),
    );
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(cond(&s, "Ready").reason, "CredentialsIssued");
    assert_eq!(cond(&s, "Ready").observed_generation, Some(3));
    assert_eq!(cond(&s, "Degraded").status, "False");
    assert_eq!(s.expiration, Some(Time(t(3600))));
    assert_eq!(s.renewal_time, Some(Time(t(2400))));
    assert_eq!(s.secret_name.as_deref(), Some("s"));
    assert_eq!(s.observed_generation, Some(3));
}

#[test]
fn the_endpoint_that_issued_the_credentials_is_reported_until_they_are_gone() {
    let served_by = |endpoint: Option<&str>| IssuedMeta {
        sts_endpoint: endpoint.map(str::to_string),
        ..issued()
    };
    let valid = |i: &IssuedMeta, current: Option<&AWSRoleBindingStatus>| {
        build_status(
            current,
            Some(1),
            &Outcome::Valid {
                issued: i,
                holder: IN_SECRET_S,
                created_uid: None,
                just_issued: false,
            },
            t(1),
        )
    };
    let b = served_by(Some("https://sts-b.example"));
    let s = valid(&b, None);
    assert_eq!(s.sts_endpoint.as_deref(), Some("https://sts-b.example"));
    // A failed refresh keeps reporting the credentials still in the Secret.
    let failing = build_status(
        Some(&s),
        Some(1),
        &Outcome::RefreshFailed {
            category: "StsUnavailable",
            message: "down".into(),
            still_valid: Some(&b),
            holder: IN_SECRET_S,
        },
        t(2),
    );
    assert_eq!(
        failing.sts_endpoint.as_deref(),
        Some("https://sts-b.example")
    );
    // Issued by the AWS regional endpoint: no field.
    assert_eq!(valid(&served_by(None), Some(&s)).sts_endpoint, None);
    let revoked = build_status(
        Some(&s),
        Some(1),
        &Outcome::NotAllowed {
            category: "RoleNotAllowed",
            message: "no".into(),
            revocation: RevocationReport::Revoked { secret_name: "s" },
        },
        t(3),
    );
    assert_eq!(revoked.sts_endpoint, None);
}

#[test]
fn transition_time_only_moves_when_status_flips() {
    let i = issued();
    let first = build_status(
        None,
        Some(1),
        &Outcome::Valid {
            issued: &i,
            holder: IN_SECRET_S,
            created_uid: None,
            just_issued: false,
        },
        t(1),
    );
    let again = build_status(
        Some(&first),
        Some(1),
        &Outcome::Valid {
            issued: &i,
            holder: IN_SECRET_S,
            created_uid: None,
            just_issued: false,
        },
        t(50),
    );
    assert_eq!(
        first, again,
        "an unchanged outcome must not change the status"
    );
    let failed = build_status(
        Some(&again),
        Some(1),
        &Outcome::RefreshFailed {
            category: "StsUnavailable",
            message: "down".into(),
            still_valid: Some(&i),
            holder: IN_SECRET_S,
        },
        t(60),
    );
    assert_eq!(cond(&failed, "Ready").status, "True");
    assert_eq!(cond(&failed, "Ready").last_transition_time, Time(t(1)));
    assert_eq!(cond(&failed, "Degraded").status, "True");
    assert_eq!(cond(&failed, "Degraded").reason, "StsUnavailable");
    assert_eq!(cond(&failed, "Degraded").last_transition_time, Time(t(60)));

    // The same credentials seen again (the failed refresh was forced before they were due):
    // still degraded. Credentials issued after the failure: no longer.
    let looked_again = build_status(
        Some(&failed),
        Some(1),
        &Outcome::Valid {
            issued: &i,
            holder: IN_SECRET_S,
            created_uid: None,
            just_issued: false,
        },
        t(61),
    );
    assert_eq!(cond(&looked_again, "Degraded").status, "True");
    let newer = IssuedMeta {
        issued_at: t(70),
        ..issued()
    };
    let refreshed = build_status(
        Some(&looked_again),
        Some(1),
        &Outcome::Valid {
            issued: &newer,
            holder: IN_SECRET_S,
            created_uid: None,
            just_issued: false,
        },
        t(70),
    );
    assert_eq!(cond(&refreshed, "Degraded").status, "False");

    // Issued and refused within one second (both kept to the second): credentials found in
    // place are not newer than the failure; credentials this pass issued are.
    let same_second = IssuedMeta {
        issued_at: t(60),
        ..issued()
    };
    let valid = |just_issued| Outcome::Valid {
        issued: &same_second,
        holder: IN_SECRET_S,
        created_uid: None,
        just_issued,
    };
    let found = build_status(Some(&failed), Some(1), &valid(false), t(60));
    assert_eq!(cond(&found, "Degraded").status, "True");
    let issued_now = build_status(Some(&failed), Some(1), &valid(true), t(60));
    assert_eq!(cond(&issued_now, "Degraded").status, "False");
}

#[test]
fn failure_without_valid_credentials_is_not_ready() {
    let s = build_status(
        None,
        Some(1),
        &Outcome::RefreshFailed {
            category: "StsAccessDenied",
            message: "not authorized".into(),
            still_valid: None,
            holder: IN_SECRET_S,
        },
        t(0),
    );
    assert_eq!(cond(&s, "Ready").status, "False");
    assert_eq!(cond(&s, "Ready").reason, "StsAccessDenied");
}

#[test]
fn blocked_bindings_say_why() {
    let s = build_status(
        None,
        Some(2),
        &Outcome::Blocked {
            category: "SecretConflict",
            message: "taken".into(),
        },
        t(0),
    );
    assert_eq!(cond(&s, "Ready").reason, "SecretConflict");
    assert!(s.conditions.iter().all(|c| c.type_ != "Degraded"));
}

#[test]
fn only_a_secret_podcreds_created_is_recorded_as_its_own() {
    let meta = IssuedMeta {
        issued_at: t(0),
        expiration: t(3600),
        renewal_time: t(2400),
        fingerprint: "f".into(),
        assumed_role_arn: None,
        chain: None,
        sts_endpoint: None,
    };
    let valid = |name, created| Outcome::Valid {
        issued: &meta,
        holder: Holder {
            secret: Some(name),
            endpoint: false,
        },
        created_uid: created,
        just_issued: false,
    };
    let created = build_status(None, Some(1), &valid("s", Some("uid-s")), t(0));
    assert_eq!(created.secret_uid.as_deref(), Some("uid-s"));
    // Refreshed in place: the record stays.
    let refreshed = build_status(Some(&created), Some(1), &valid("s", None), t(10));
    assert_eq!(refreshed.secret_uid.as_deref(), Some("uid-s"));
    // Moved to a Secret that already existed: nothing of it is podcreds' to delete.
    let moved = build_status(Some(&refreshed), Some(2), &valid("t", None), t(20));
    assert_eq!(moved.secret_name.as_deref(), Some("t"));
    assert_eq!(moved.secret_uid, None);
    // Endpoint only: no Secret is recorded, and Ready says where the credentials are.
    let endpoint = Outcome::Valid {
        issued: &meta,
        holder: Holder {
            secret: None,
            endpoint: true,
        },
        created_uid: None,
        just_issued: false,
    };
    let served = build_status(Some(&created), Some(3), &endpoint, t(30));
    assert_eq!(served.secret_name, None);
    assert_eq!(served.secret_uid, None);
    let ready = served
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
        .expect("Ready");
    assert!(
        ready
            .message
            .starts_with("the node endpoint serves credentials valid until"),
        "{}",
        ready.message
    );
}

#[test]
fn role_chains_report_every_hop_the_clamp_and_the_packed_size() {
    use crate::credentials::{ChainRecord, HopRecord};
    let mut chained = issued();
    chained.chain = Some(ChainRecord {
        clamped_from: Some(7200),
        hops: vec![
            HopRecord {
                assumed_role_arn: Some("arn:aws:sts::1:assumed-role/a/s".into()),
                expiration: t(900),
                packed_policy_size: Some(95),
            },
            HopRecord {
                assumed_role_arn: Some("arn:aws:sts::1:assumed-role/b/s".into()),
                expiration: t(3600),
                packed_policy_size: Some(12),
            },
        ],
    });
    let valid = |i| Outcome::Valid {
        issued: i,
        holder: IN_SECRET_S,
        created_uid: None,
        just_issued: false,
    };
    let s = build_status(None, Some(1), &valid(&chained), t(1));
    assert_eq!(s.chain.len(), 2);
    assert_eq!(s.chain[0].packed_policy_size_percent, Some(95));
    assert_eq!(s.chain[1].expiration, Some(Time(t(3600))));
    let clamped = cond(&s, CONDITION_SESSION_CLAMPED);
    assert_eq!(
        (clamped.status.as_str(), clamped.reason.as_str()),
        ("True", "RoleChainingLimit")
    );
    assert!(clamped.message.contains("7200"), "{}", clamped.message);
    let packed = cond(&s, CONDITION_PACKED_POLICY);
    assert_eq!(packed.status, "True");
    assert!(
        packed.message.contains("roleChain[0] uses 95%"),
        "{}",
        packed.message
    );
    // Within limits: both conditions False; the same outcome changes nothing.
    let mut fits = chained.clone();
    if let Some(c) = fits.chain.as_mut() {
        c.clamped_from = None;
        c.hops[0].packed_policy_size = Some(90);
    }
    let s = build_status(Some(&s), Some(1), &valid(&fits), t(2));
    assert_eq!(cond(&s, CONDITION_SESSION_CLAMPED).status, "False");
    assert_eq!(cond(&s, CONDITION_PACKED_POLICY).status, "False");
    assert_eq!(build_status(Some(&s), Some(1), &valid(&fits), t(3)), s);
    // The chain removed from the spec: its report goes.
    let plain = issued();
    let s = build_status(Some(&s), Some(2), &valid(&plain), t(4));
    assert!(s.chain.is_empty());
    assert_eq!(s.conditions.len(), 2, "{:?}", s.conditions);
}

#[test]
fn a_binding_no_longer_allowed_reports_its_revocation() {
    let i = issued();
    let valid = Outcome::Valid {
        issued: &i,
        holder: Holder {
            secret: Some("b"),
            endpoint: false,
        },
        created_uid: None,
        just_issued: false,
    };
    let ready = build_status(None, Some(1), &valid, t(0));
    let not_allowed = |revocation| Outcome::NotAllowed {
        category: "RoleNotAllowed",
        message: "role r is not allowed".into(),
        revocation,
    };
    // Scheduled: since when is the condition's transition time, kept while it waits.
    let scheduled = not_allowed(RevocationReport::Scheduled {
        at: t(3600),
        secret_name: "b",
    });
    let s = build_status(Some(&ready), Some(1), &scheduled, t(10));
    assert_eq!(cond(&s, CONDITION_READY).reason, "RoleNotAllowed");
    let c = cond(&s, CONDITION_REVOKED);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", REASON_REVOCATION_SCHEDULED)
    );
    assert_eq!(revoked_since(Some(&s)), Some(t(10)));
    let s = build_status(Some(&s), Some(1), &scheduled, t(20));
    assert_eq!(revoked_since(Some(&s)), Some(t(10)));
    // Revoked: the status no longer claims credentials.
    let revoked = not_allowed(RevocationReport::Revoked { secret_name: "b" });
    let s = build_status(Some(&s), Some(1), &revoked, t(3600));
    let c = cond(&s, CONDITION_REVOKED);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "RoleNotAllowed")
    );
    assert_eq!(s.expiration, None);
    assert_eq!(revoked_since(Some(&s)), Some(t(3600)));
    // Still not allowed, nothing left to remove: unchanged.
    let nothing = not_allowed(RevocationReport::Nothing);
    assert_eq!(build_status(Some(&s), Some(1), &nothing, t(4000)), s);
    // Allowed again with fresh credentials: the condition goes.
    let s = build_status(Some(&s), Some(2), &valid, t(5000));
    assert!(s.conditions.iter().all(|c| c.type_ != CONDITION_REVOKED));
    assert_eq!(revoked_since(Some(&s)), None);
}
