use super::*;
use proptest::prelude::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("valid timestamp")
}

fn issued(fp: &str) -> IssuedMeta {
    IssuedMeta {
        issued_at: t(0),
        expiration: t(3600),
        renewal_time: t(2400),
        chain: None,
        fingerprint: fp.into(),
        assumed_role_arn: None,
        sts_endpoint: None,
    }
}

fn owned(fp: &str, intact: bool) -> ObservedSecret {
    ObservedSecret::Owned {
        issued: Some(issued(fp)),
        intact,
    }
}

#[test]
fn missing_secret_is_refreshed() {
    assert_eq!(
        plan("f", &ObservedSecret::Missing, t(0)),
        refresh(RefreshReason::SecretMissing)
    );
}

#[test]
fn endpoint_bindings_are_planned_from_memory_and_one_exchange_serves_both() {
    let missing = ObservedSecret::Missing;
    let fresh = owned("f", true);
    // Endpoint only: nothing held (a new leader) is an exchange, held credentials a wait.
    assert_eq!(
        plan_deliveries("f", None, Some(&missing), t(0)),
        refresh(RefreshReason::EndpointEmpty)
    );
    assert_eq!(
        plan_deliveries("f", None, Some(&fresh), t(100)),
        Decision::Wait(issued("f"))
    );
    // Secret only: as before.
    assert_eq!(
        plan_deliveries("f", Some(&missing), None, t(0)),
        refresh(RefreshReason::SecretMissing)
    );
    // Both, the Secret fresh and memory empty (after a fail-over): one exchange, and the
    // Secret's credentials keep the binding Ready if it fails.
    assert_eq!(
        plan_deliveries("f", Some(&fresh), Some(&missing), t(100)),
        Decision::Refresh {
            reason: RefreshReason::EndpointEmpty,
            still_valid: Some(issued("f")),
        }
    );
    // Both fresh: wait for the earlier renewal.
    let mut later = issued("f");
    later.renewal_time = t(3000);
    let held_later = ObservedSecret::Owned {
        issued: Some(later.clone()),
        intact: true,
    };
    assert_eq!(
        plan_deliveries("f", Some(&held_later), Some(&fresh), t(100)),
        Decision::Wait(issued("f"))
    );
    assert_eq!(
        plan_deliveries("f", Some(&fresh), Some(&held_later), t(100)),
        Decision::Wait(issued("f"))
    );
    // A foreign Secret blocks the binding whatever memory holds.
    let foreign = ObservedSecret::Foreign { owner: None };
    assert_eq!(
        plan_deliveries("f", Some(&foreign), Some(&fresh), t(100)),
        Decision::Conflict { owner: None }
    );
    // A spec change reaches both.
    assert_eq!(
        plan_deliveries("g", Some(&fresh), Some(&fresh), t(100)),
        refresh(RefreshReason::SpecChanged)
    );
}

#[test]
fn foreign_secret_is_a_conflict() {
    let observed = ObservedSecret::Foreign {
        owner: Some("Deployment/x".into()),
    };
    assert_eq!(
        plan("f", &observed, t(0)),
        Decision::Conflict {
            owner: Some("Deployment/x".into())
        }
    );
}

#[test]
fn fresh_secret_waits_until_renewal() {
    assert_eq!(
        plan("f", &owned("f", true), t(100)),
        Decision::Wait(issued("f"))
    );
    assert_eq!(
        plan("f", &owned("f", true), t(2399)),
        Decision::Wait(issued("f"))
    );
}

#[test]
fn due_expired_changed_and_modified_secrets_are_refreshed() {
    assert_eq!(
        plan("f", &owned("f", true), t(2400)),
        Decision::Refresh {
            reason: RefreshReason::RenewalDue,
            still_valid: Some(issued("f")),
        }
    );
    assert_eq!(
        plan("f", &owned("f", true), t(3600)),
        refresh(RefreshReason::Expired)
    );
    assert_eq!(
        plan("g", &owned("f", true), t(10)),
        refresh(RefreshReason::SpecChanged)
    );
    assert_eq!(
        plan("f", &owned("f", false), t(10)),
        refresh(RefreshReason::SecretModified)
    );
    assert_eq!(
        plan(
            "f",
            &ObservedSecret::Owned {
                issued: None,
                intact: true
            },
            t(10)
        ),
        refresh(RefreshReason::AnnotationsUnreadable)
    );
}

fn own(version: &str, issued: IssuedMeta, seen: bool) -> OwnWrite {
    OwnWrite {
        version: version.into(),
        issued: Some(issued),
        seen,
    }
}

fn status_of(i: &IssuedMeta) -> StatusTimes {
    StatusTimes {
        issued_at: Some(i.issued_at),
        expiration: Some(i.expiration),
        renewal_time: Some(i.renewal_time),
    }
}

#[test]
fn a_stale_cache_never_causes_a_second_refresh() {
    let stale = owned("f", true);
    let mut written = issued("f");
    written.issued_at = t(2400);
    written.renewal_time = t(4800);
    written.expiration = t(6000);
    let ours = own("8", written.clone(), false);
    // The cache still shows the old credentials (version 7), due at 2400; we wrote new ones
    // at 2400 (version 8).
    let p = provenance(Some("7"), &stale, Some(&ours));
    assert_eq!(p, Provenance::Lagging);
    let judged = judge(stale.clone(), p, Some(&ours), &status_of(&written), t(2401));
    assert_eq!(plan("f", &judged, t(2401)), Decision::Wait(written.clone()));
    // Missing and foreign Secrets are never papered over.
    assert_eq!(
        judge(
            ObservedSecret::Missing,
            p,
            Some(&ours),
            &status_of(&written),
            t(2401)
        ),
        ObservedSecret::Missing
    );
}

#[test]
fn a_write_not_ours_is_a_modification_whatever_its_field_manager() {
    let mine = issued("f");
    let ours = own("8", mine.clone(), true);
    let status = status_of(&mine);
    // The cache shows our version: intact, whatever the managed fields say.
    let cached = owned("f", false);
    let p = provenance(Some("8"), &cached, Some(&ours));
    assert_eq!(p, Provenance::Ours);
    assert_eq!(
        judge(cached, p, Some(&ours), &status, t(10)),
        owned("f", true)
    );
    // Someone patched it afterwards with podcreds' own field manager, forging the expiration:
    // the managed fields look fine, the version is not ours.
    let mut forged = mine.clone();
    forged.expiration = t(3000);
    forged.renewal_time = t(2900);
    let cached = ObservedSecret::Owned {
        issued: Some(forged.clone()),
        intact: true,
    };
    let p = provenance(Some("9"), &cached, Some(&ours));
    assert_eq!(p, Provenance::Foreign);
    assert_eq!(
        plan("f", &judge(cached, p, Some(&ours), &status, t(10)), t(10)),
        refresh(RefreshReason::SecretModified)
    );
    // Before the cache showed our write, a Secret holding credentials as new as ours or newer
    // cannot be the cache lagging.
    let unseen = own("8", mine.clone(), false);
    let newer = owned("f", true);
    assert_eq!(
        provenance(Some("9"), &newer, Some(&unseen)),
        Provenance::Foreign
    );
}

#[test]
fn a_secret_this_process_never_wrote_must_agree_with_the_status() {
    let written = issued("f");
    let agreeing = status_of(&written);
    let p = provenance(Some("3"), &owned("f", true), None);
    assert_eq!(p, Provenance::Unknown);
    // After a restart: the Secret as the status describes it is trusted (no STS call).
    assert_eq!(
        plan(
            "f",
            &judge(owned("f", true), p, None, &agreeing, t(10)),
            t(10)
        ),
        Decision::Wait(written.clone())
    );
    // Forged annotations the status does not back are a modification.
    let mut stale_status = agreeing;
    stale_status.expiration = Some(t(1800));
    assert_eq!(
        plan(
            "f",
            &judge(owned("f", true), p, None, &stale_status, t(10)),
            t(10)
        ),
        refresh(RefreshReason::SecretModified)
    );
    // So is a hand edit the managed fields show.
    assert_eq!(
        plan(
            "f",
            &judge(owned("f", false), p, None, &agreeing, t(10)),
            t(10)
        ),
        refresh(RefreshReason::SecretModified)
    );
}

#[test]
fn implausible_annotations_are_never_intact() {
    let mut far = issued("f");
    far.expiration = Timestamp::from_second(4_070_908_800).expect("2099");
    far.renewal_time = far.expiration;
    assert!(!plausible(&far, t(10)));
    let mut future = issued("f");
    future.issued_at = t(3600);
    future.renewal_time = t(3600);
    assert!(!plausible(&future, t(10)));
    assert!(plausible(&issued("f"), t(10)));
    let forged = ObservedSecret::Owned {
        issued: Some(far.clone()),
        intact: true,
    };
    let status = status_of(&far);
    assert!(matches!(
        judge(forged, Provenance::Unknown, None, &status, t(10)),
        ObservedSecret::Owned { intact: false, .. }
    ));
}

#[test]
fn credentials_of_a_binding_no_longer_allowed_are_revoked_after_the_grace_period() {
    assert!(revokes("RoleNotAllowed"));
    assert!(revokes("CredentialSourceNotAllowed"));
    assert!(revokes("CredentialSourceNotFound"));
    // A spec the operator cannot act on is no reason to take working credentials away.
    assert!(!revokes("InvalidSpec"));
    assert!(!revokes("EndpointNotAllowed"));
    assert!(!revokes("CredentialSourceSecretMissing"));
    let no_grace = Duration::ZERO;
    let hour = Duration::from_secs(3600);
    assert_eq!(revocation(true, None, no_grace, t(0)), Revocation::Now);
    assert_eq!(revocation(false, None, no_grace, t(0)), Revocation::Nothing);
    // With a grace period: removed that long after the binding stopped being allowed.
    assert_eq!(revocation(true, None, hour, t(0)), Revocation::At(t(3600)));
    assert_eq!(
        revocation(true, Some(t(0)), hour, t(1800)),
        Revocation::At(t(3600))
    );
    assert_eq!(revocation(true, Some(t(0)), hour, t(3600)), Revocation::Now);
    assert_eq!(
        revocation(false, Some(t(0)), hour, t(3600)),
        Revocation::Nothing
    );
}

#[test]
fn another_operator_writing_after_this_one_is_an_overlap() {
    let me = "default/ops/podcreds-leader";
    let other = "default/team-b/podcreds-leader";
    assert_eq!(
        overlapping_writer(Provenance::Foreign, Some(other), me),
        Some(other)
    );
    // A hand edit keeps the name of the operator that wrote last: this one.
    assert_eq!(overlapping_writer(Provenance::Foreign, Some(me), me), None);
    assert_eq!(overlapping_writer(Provenance::Foreign, None, me), None);
    // Written by another operator before this one wrote (a previous leader): no news.
    assert_eq!(
        overlapping_writer(Provenance::Unknown, Some(other), me),
        None
    );
    assert_eq!(overlapping_writer(Provenance::Ours, Some(other), me), None);
}

#[test]
fn repairs_of_a_secret_someone_keeps_writing_slow_down() {
    assert_eq!(repair_wait(None, t(0)), None);
    let first = count_repair(None, t(0));
    assert_eq!(first.count, 1);
    // The first repair was at once; the second waits 5 s, the third 10 s, ...
    assert_eq!(
        repair_wait(Some(&first), t(1)),
        Some(Duration::from_secs(4) + REQUEUE_SLACK)
    );
    assert_eq!(repair_wait(Some(&first), t(5)), None);
    let second = count_repair(Some(&first), t(5));
    assert_eq!(
        repair_wait(Some(&second), t(5)),
        Some(Duration::from_secs(10) + REQUEUE_SLACK)
    );
    let mut many = second;
    for i in 0..20 {
        many = count_repair(Some(&many), t(10 + i));
    }
    assert_eq!(
        repair_wait(Some(&many), t(29)),
        Some(REPAIR_BACKOFF_CAP + REQUEUE_SLACK)
    );
    // Ten quiet minutes and the run is forgotten.
    assert_eq!(repair_wait(Some(&many), t(29 + 600)), None);
    assert_eq!(count_repair(Some(&many), t(29 + 600)).count, 1);
}

#[test]
fn default_renewal_is_two_thirds_minus_jitter() {
    assert_eq!(renewal_time(t(0), t(3600), None, 0.0), t(2400));
    // Full jitter moves it 10% of the lifetime earlier.
    assert_eq!(renewal_time(t(0), t(3600), None, 1.0), t(2040));
}

#[test]
fn sessions_under_45_minutes_renew_15_minutes_before_expiry() {
    // One hour (a chained session): two thirds is earlier, 20 minutes before expiry.
    assert_eq!(renewal_time(t(0), t(3600), None, 0.0), t(2400));
    // 30 minutes: 15 minutes before expiry, still moved earlier by the jitter.
    assert_eq!(renewal_time(t(0), t(1800), None, 0.0), t(900));
    assert_eq!(renewal_time(t(0), t(1800), None, 1.0), t(720));
    // 20 minutes: the margin would leave only 5 minutes of use; a third of the lifetime.
    assert_eq!(renewal_time(t(0), t(1200), None, 0.0), t(400));
    // 15 minutes or less: two thirds, as before.
    assert_eq!(renewal_time(t(0), t(900), None, 0.0), t(600));
    assert_eq!(renewal_time(t(0), t(12), None, 0.0), t(8));
}

#[test]
fn explicit_renew_before_is_used_when_it_fits() {
    let r = renewal_time(t(0), t(3600), Some(Duration::from_secs(900)), 0.5);
    assert_eq!(r, t(2700));
}

#[test]
fn shortened_sts_expiry_is_honoured() {
    // Asked for an hour with renewBefore 20m, STS granted 15 minutes: fall back to 2/3.
    let r = renewal_time(t(0), t(900), Some(Duration::from_secs(1200)), 0.0);
    assert_eq!(r, t(600));
    // Very short grants (the emulator in tests) still renew before expiry.
    let r = renewal_time(t(0), t(6), None, 0.99);
    assert!(r > t(0) && r < t(6));
}

#[test]
fn jitter_is_deterministic_and_in_range() {
    let a = jitter_from("uid-1/2026-01-01T00:00:00Z");
    assert_eq!(a, jitter_from("uid-1/2026-01-01T00:00:00Z"));
    assert_ne!(a, jitter_from("uid-2/2026-01-01T00:00:00Z"));
    assert!((0.0..1.0).contains(&a));
}

#[test]
fn jitter_spreads_renewals() {
    // 1000 bindings issued together land in many different seconds of the jitter window.
    let mut seconds = std::collections::BTreeSet::new();
    for i in 0..1000 {
        let r = renewal_time(t(0), t(3600), None, jitter_from(&format!("uid-{i}")));
        seconds.insert(r.as_second());
    }
    assert!(
        seconds.len() > 250,
        "only {} distinct seconds",
        seconds.len()
    );
}

#[test]
fn only_due_credentials_count_as_still_valid() {
    // Expired, modified or issued for another spec: a failed refresh has nothing to fall back on.
    for (fp, observed, now) in [
        ("f", owned("f", true), t(3600)),
        ("f", owned("f", false), t(2500)),
        ("g", owned("f", true), t(2500)),
        ("f", ObservedSecret::Missing, t(2500)),
    ] {
        match plan(fp, &observed, now) {
            Decision::Refresh { still_valid, .. } => assert_eq!(still_valid, None),
            other => panic!("expected a refresh, got {other:?}"),
        }
    }
}

#[test]
fn a_binding_or_namespace_being_deleted_is_left_alone() {
    assert!(!going_away(false, false));
    assert!(going_away(true, false));
    assert!(going_away(false, true));
}

#[test]
fn a_cache_miss_is_believed_unless_we_just_wrote_or_report_a_conflict() {
    assert!(trust_cache_miss(false, false));
    assert!(!trust_cache_miss(true, false));
    assert!(!trust_cache_miss(false, true));
    assert!(!trust_cache_miss(true, true));
}

#[test]
fn blocked_bindings_are_announced_once_per_reason() {
    assert!(announce_blocked(None, "InvalidSpec"));
    assert!(announce_blocked(
        Some("CredentialsIssued"),
        "SecretConflict"
    ));
    assert!(!announce_blocked(Some("SecretConflict"), "SecretConflict"));
    assert!(announce_blocked(Some("InvalidSpec"), "SecretConflict"));
}

#[test]
fn requeue_lands_just_after_the_renewal_time() {
    assert_eq!(
        requeue_at(t(100), t(40)),
        Duration::from_secs(60) + REQUEUE_SLACK
    );
    // A renewal time in the past means now (plus the slack).
    assert_eq!(requeue_at(t(10), t(40)), REQUEUE_SLACK);
}

#[test]
fn issued_credentials_are_recorded_in_whole_seconds() {
    let at: Timestamp = "2027-01-15T08:00:00.750Z".parse().expect("time");
    let exp: Timestamp = "2027-01-15T09:00:00.250Z".parse().expect("time");
    let credentials = crate::credentials::IssuedCredentials {
        access_key_id: "ASIA1".into(),
        secret_access_key: secrecy::SecretString::from("s".to_string()),
        session_token: secrecy::SecretString::from("t".to_string()),
        expiration: exp,
        assumed_role_arn: Some("arn".into()),
        chain: None,
        sts_endpoint: Some("https://sts.eu-west-1.amazonaws.com".into()),
    };
    let meta = super::issued("uid-1", at, None, "fp", &credentials);
    assert_eq!(meta.issued_at.subsec_nanosecond(), 0);
    assert_eq!(meta.expiration.subsec_nanosecond(), 0);
    assert_eq!(meta.renewal_time.subsec_nanosecond(), 0);
    assert!(meta.issued_at < meta.renewal_time && meta.renewal_time < meta.expiration);
    // What the exchange reported is kept for the status.
    assert_eq!(meta.assumed_role_arn.as_deref(), Some("arn"));
    assert_eq!(
        meta.sts_endpoint.as_deref(),
        Some("https://sts.eu-west-1.amazonaws.com")
    );
    // Deterministic: a restarted operator computes the same renewal time.
    assert_eq!(meta, super::issued("uid-1", at, None, "fp", &credentials));
}

#[test]
fn a_failed_binding_waits_for_its_retry_unless_its_spec_changed() {
    let hold = Hold {
        until: t(100),
        fingerprint: "f".into(),
    };
    assert_eq!(
        backing_off(Some(&hold), "f", t(40)),
        Some(Duration::from_secs(60) + REQUEUE_SLACK)
    );
    assert_eq!(backing_off(Some(&hold), "g", t(40)), None);
    assert_eq!(backing_off(Some(&hold), "f", t(100)), None);
    assert_eq!(backing_off(None, "f", t(40)), None);
}

#[test]
fn failures_back_off_and_keep_valid_credentials_in_reach() {
    let now = t(3000);
    let valid = issued("f");
    // Transient: grows with the attempt, capped at a quarter of the remaining 600 s.
    let first = retry_after_failure(RetryClass::Transient, 1, None, "u", now).expect("retry");
    let later = retry_after_failure(RetryClass::Transient, 12, None, "u", now).expect("retry");
    assert!(first < later);
    let capped =
        retry_after_failure(RetryClass::Transient, 12, Some(&valid), "u", now).expect("retry");
    assert!(capped <= Duration::from_secs(150));
    // A wrong binding waits for a change.
    assert_eq!(
        retry_after_failure(RetryClass::Permanent, 1, None, "u", now),
        None
    );
    // Apiserver errors always come back.
    assert!(retry_after_api_error(100, "u") <= crate::retry::BACKOFF_CAP);
}

#[test]
fn a_refresh_request_is_pending_until_the_status_records_it() {
    assert_eq!(pending_refresh_request(None, None), None);
    assert_eq!(pending_refresh_request(Some("a"), None), Some("a"));
    assert_eq!(pending_refresh_request(Some("a"), Some("a")), None);
    assert_eq!(pending_refresh_request(Some("b"), Some("a")), Some("b"));
    // A value longer than the cache keeps is compared as the cache keeps it.
    let long = "x".repeat(MAX_REFRESH_REQUEST_LEN + 10);
    let kept = &long[..MAX_REFRESH_REQUEST_LEN];
    assert_eq!(pending_refresh_request(Some(&long), Some(kept)), None);
}

#[test]
fn a_refresh_request_exchanges_good_credentials_but_never_a_foreign_secret() {
    let good = issued("f");
    assert_eq!(
        honour_refresh_request(Decision::Wait(good.clone()), true),
        Decision::Refresh {
            reason: RefreshReason::Requested,
            still_valid: Some(good.clone()),
        }
    );
    assert_eq!(
        honour_refresh_request(Decision::Wait(good.clone()), false),
        Decision::Wait(good.clone())
    );
    let conflict = Decision::Conflict { owner: None };
    assert_eq!(honour_refresh_request(conflict.clone(), true), conflict);
    let due = refresh(RefreshReason::SpecChanged);
    assert_eq!(honour_refresh_request(due.clone(), true), due);
}

#[test]
fn forced_exchanges_of_one_binding_are_spaced() {
    assert_eq!(refresh_request_wait(None, t(0)), None);
    assert_eq!(
        refresh_request_wait(Some(t(0)), t(4)),
        Some(Duration::from_secs(6) + REQUEUE_SLACK)
    );
    assert_eq!(refresh_request_wait(Some(t(0)), t(10)), None);
}

proptest! {
    #[test]
    fn renewal_is_always_inside_the_lifetime(
        lifetime in 1i64..200_000,
        before in proptest::option::of(0u64..300_000),
        jitter in 0.0f64..1.0,
    ) {
        let r = renewal_time(t(0), t(lifetime), before.map(Duration::from_secs), jitter);
        prop_assert!(r >= t(0));
        prop_assert!(r < t(lifetime));
        if before.is_none() {
            // Default: at most two thirds of the lifetime, at least a tenth less than the
            // earlier of two thirds and 15 minutes before expiry (a third at the least).
            let share = r.duration_since(t(0)).as_millis() as f64 / (lifetime * 1000) as f64;
            prop_assert!(share <= 2.0 / 3.0 + 1e-9);
            let target = if lifetime > 900 {
                (2.0f64 / 3.0).min((1.0 - 900.0 / lifetime as f64).max(1.0 / 3.0))
            } else {
                2.0 / 3.0
            };
            prop_assert!(share <= target + 1e-3);
            prop_assert!(share >= target - 0.1 - 1e-3);
            // SDKs that refresh with 15 minutes left never see stale credentials, unless the
            // session is so short that a third of it must be used first.
            if lifetime > 900 {
                prop_assert!(r <= t((lifetime - 900).max(lifetime / 3 + 1)));
            }
        }
    }

    #[test]
    fn still_valid_credentials_are_unexpired_and_for_this_spec(
        now in 0i64..10_000,
        intact in any::<bool>(),
        same in any::<bool>(),
    ) {
        let fp = if same { "f" } else { "g" };
        if let Decision::Refresh { still_valid: Some(v), .. } = plan(fp, &owned("f", intact), t(now)) {
            prop_assert!(t(now) < v.expiration);
            prop_assert_eq!(v.fingerprint.as_str(), fp);
            prop_assert!(intact);
        }
    }

    #[test]
    fn planner_never_waits_past_expiry(
        now in 0i64..10_000,
        intact in any::<bool>(),
        same in any::<bool>(),
    ) {
        let d = plan(if same { "f" } else { "g" }, &owned("f", intact), t(now));
        if let Decision::Wait(meta) = d {
            prop_assert!(t(now) < meta.renewal_time);
            prop_assert!(meta.renewal_time <= meta.expiration);
            prop_assert!(intact && same);
        }
    }
}

#[test]
fn a_pull_token_brings_the_refresh_forward_only_when_it_expires_first() {
    // Credentials for 36 hours renew after 24: a 12-hour ECR token needs it sooner, before
    // it expires and after most of its lifetime.
    let mut long = issued("f");
    long.expiration = t(36 * 3600);
    long.renewal_time = t(24 * 3600);
    let planned = with_pull_token(long.clone(), t(12 * 3600), "uid-1");
    assert!(planned.renewal_time < t(12 * 3600), "{planned:?}");
    assert!(planned.renewal_time >= t(6 * 3600), "{planned:?}");
    assert_eq!(planned.expiration, long.expiration);
    assert_eq!(
        with_pull_token(long.clone(), t(12 * 3600), "uid-1"),
        planned,
        "the same token always plans the same time"
    );
    // One-hour credentials renew long before a 12-hour token needs it.
    assert_eq!(
        with_pull_token(issued("f"), t(12 * 3600), "uid-1"),
        issued("f")
    );
    // A token already expired (a clock far off) never plans before the issue time.
    let past = with_pull_token(issued("f"), t(-10), "uid-1");
    assert_eq!(past.renewal_time, t(0));
}

#[test]
fn a_missing_pull_secret_turns_a_wait_into_a_refresh_that_keeps_the_credentials() {
    assert_eq!(
        needs_pull_secret(Decision::Wait(issued("f")), true),
        Decision::Refresh {
            reason: RefreshReason::PullSecretMissing,
            still_valid: Some(issued("f")),
        }
    );
    assert_eq!(
        needs_pull_secret(Decision::Wait(issued("f")), false),
        Decision::Wait(issued("f"))
    );
    // A refresh keeps its own reason; a conflict stays one.
    assert_eq!(
        needs_pull_secret(refresh(RefreshReason::SpecChanged), true),
        refresh(RefreshReason::SpecChanged)
    );
    let conflict = Decision::Conflict { owner: None };
    assert_eq!(needs_pull_secret(conflict.clone(), true), conflict);
}
