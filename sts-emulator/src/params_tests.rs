use super::*;

fn tag(key: &str, value: &str) -> SessionTag {
    SessionTag {
        key: key.into(),
        value: value.into(),
    }
}

#[test]
fn role_arns_split_into_partition_account_and_name() {
    assert_eq!(
        split_role_arn("arn:aws-cn:iam::123456789012:role/path/app", Dialect::Aws),
        Some(("aws-cn", "123456789012", "app"))
    );
    assert_eq!(
        split_role_arn("arn:aws:iam::123:role/x", Dialect::Aws),
        None
    );
    assert_eq!(split_role_arn("arn:aws:iam:::role/x", Dialect::Aws), None);
}

#[test]
fn ceph_role_arns_name_a_tenant_or_none() {
    assert_eq!(
        split_role_arn("arn:aws:iam:::role/app/S3Access", Dialect::CephRgw),
        Some(("aws", "", "S3Access"))
    );
    assert_eq!(
        split_role_arn("arn:aws:iam::tenant_1:role/r", Dialect::CephRgw),
        Some(("aws", "tenant_1", "r"))
    );
    for bad in [
        "arn:aws-cn:iam:::role/r",
        "arn:aws:iam::ten-ant:role/r",
        "arn:aws:iam:::role/",
        "arn:minio:iam:::role/r",
    ] {
        assert_eq!(split_role_arn(bad, Dialect::CephRgw), None, "{bad}");
    }
}

#[test]
fn parameters_are_checked_like_sts() {
    let mut p = Params::new();
    p.insert("RoleArn".into(), "arn:aws:iam::123456789012:role/r".into());
    p.insert("RoleSessionName".into(), "ns.binding".into());
    assert_eq!(
        validate_common(&p, Dialect::Aws).expect("valid").duration,
        3600
    );
    p.insert("DurationSeconds".into(), "600".into());
    assert_eq!(
        validate_common(&p, Dialect::Aws).expect_err("short").code,
        "ValidationError"
    );
    p.insert("DurationSeconds".into(), "900".into());
    p.insert("RoleSessionName".into(), "x".into());
    assert_eq!(
        validate_common(&p, Dialect::Aws).expect_err("session").code,
        "ValidationError"
    );
    p.insert("RoleSessionName".into(), "ok".into());
    p.insert("Policy".into(), "[".into());
    assert_eq!(
        validate_common(&p, Dialect::Aws).expect_err("policy").code,
        "MalformedPolicyDocument"
    );
}

#[test]
fn session_policies_are_read_in_order_and_counted_together() {
    let mut p = Params::new();
    let inline = r#"{"Version":"2012-10-17"}"#;
    p.insert("Policy".into(), inline.into());
    for n in [2, 1, 10] {
        p.insert(format!("PolicyArns.member.{n}.arn"), format!("arn:p{n}"));
    }
    let policies = check_session_policies(&p).expect("valid");
    assert_eq!(policy_arns(&p), ["arn:p1", "arn:p2", "arn:p10"]);
    assert_eq!(policies.chars, inline.len() + 6 + 6 + 7);
    p.insert(
        "Policy".into(),
        format!("{{\"a\":\"{}\"}}", "x".repeat(2048)),
    );
    assert_eq!(
        check_session_policies(&p).expect_err("too long").code,
        "ValidationError"
    );
    for n in 1..=11 {
        p.insert(format!("PolicyArns.member.{n}.arn"), "arn:p".into());
    }
    assert_eq!(policy_arns(&p).len(), 11);
    assert_eq!(packed_percent(0), 0);
    assert_eq!(packed_percent(1), 1);
    assert_eq!(packed_percent(PACKED_CAPACITY), 100);
}

#[test]
fn tags_and_transitive_keys_are_read_in_order() {
    let mut p = Params::new();
    p.insert("Tags.member.1.Key".into(), "team".into());
    p.insert("Tags.member.1.Value".into(), "a".into());
    p.insert("Tags.member.2.Key".into(), "stage".into());
    p.insert("TransitiveTagKeys.member.1".into(), "team".into());
    // A gap ends the list, as in STS's member numbering.
    p.insert("Tags.member.4.Key".into(), "ignored".into());
    let (tags, transitive) = sent_tags(&p);
    assert_eq!(tags, [tag("team", "a"), tag("stage", "")]);
    assert_eq!(transitive, ["team"]);
}

#[test]
fn tag_rules_are_those_of_sts() {
    assert_eq!(check_tags(&[tag("team", "a b")], &[], &[]), Ok(()));
    let many: Vec<SessionTag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
    assert_eq!(check_tags(&many, &[], &[]), Err(TagProblem::TooMany));
    let keys: Vec<String> = (0..51).map(|i| format!("k{i}")).collect();
    assert_eq!(check_tags(&[], &keys, &[]), Err(TagProblem::TooMany));
    assert_eq!(check_tags(&[tag("", "v")], &[], &[]), Err(TagProblem::Text));
    assert_eq!(
        check_tags(&[tag(&"k".repeat(129), "v")], &[], &[]),
        Err(TagProblem::Text)
    );
    assert_eq!(
        check_tags(&[tag("k", &"v".repeat(257))], &[], &[]),
        Err(TagProblem::Text)
    );
    assert_eq!(
        check_tags(&[tag("k!", "v")], &[], &[]),
        Err(TagProblem::Text)
    );
    assert_eq!(
        check_tags(&[tag("AWS:x", "v")], &[], &[]),
        Err(TagProblem::Reserved)
    );
    assert_eq!(
        check_tags(&[tag("Team", "a"), tag("team", "b")], &[], &[]),
        Err(TagProblem::Duplicate)
    );
    assert_eq!(
        check_tags(&[tag("TEAM", "b")], &[], &[tag("team", "a")]),
        Err(TagProblem::Inherited("TEAM".into()))
    );
    assert_eq!(
        check_transitive_keys(&[tag("team", "a")], &["Team".into()]),
        Ok(())
    );
    assert_eq!(
        check_transitive_keys(&[tag("team", "a")], &["stage".into()]),
        Err(TagProblem::TransitiveUntagged("stage".into()))
    );
    assert_eq!(
        transitive_of(&[tag("team", "a"), tag("x", "y")], &["TEAM".into()]),
        [tag("team", "a")]
    );
}

#[test]
fn source_identities_and_external_ids_follow_sts_patterns() {
    assert_eq!(check_source_identity("alice"), Ok(()));
    assert_eq!(
        check_source_identity("aws:alice"),
        Err(IdentityProblem::Reserved)
    );
    assert_eq!(check_source_identity("a"), Err(IdentityProblem::Pattern));
    assert_eq!(check_source_identity("a/b"), Err(IdentityProblem::Pattern));
    assert!(external_id_ok("ext:1/a"));
    assert!(!external_id_ok("e"));
    assert!(!external_id_ok("ext id"));
}
