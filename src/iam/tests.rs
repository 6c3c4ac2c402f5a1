use super::*;
use crate::api::{AWSRoleBindingSpec, RoleChainHop, SessionTag};
use crate::spec::{StsPolicy, resolve};

fn spec(chain: Vec<RoleChainHop>, tags: bool) -> ResolvedSpec {
    let spec: AWSRoleBindingSpec = serde_json::from_value(json!({
        "serviceAccountName": "app",
        "roleArn": "arn:aws:iam::111122223333:role/app",
    }))
    .unwrap();
    let spec = AWSRoleBindingSpec {
        role_chain: chain,
        kubernetes_session_tags: tags,
        ..spec
    };
    let policy = StsPolicy {
        cluster_name: Some("prod".into()),
        ..StsPolicy::default()
    };
    resolve(&spec, "team-a", "reader", &policy).unwrap()
}

#[test]
fn web_identity_trusts_exactly_the_service_account_and_audience() {
    let first = FirstPrincipal::Oidc {
        issuer: "https://oidc.example.com/clusters/prod/".into(),
    };
    let policies = trust_policies(&spec(vec![], false), "team-a", &first).unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(
        policies[0].document,
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/clusters/prod"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        "oidc.example.com/clusters/prod:sub": "system:serviceaccount:team-a:app",
                        "oidc.example.com/clusters/prod:aud": "sts.amazonaws.com",
                    },
                    // A tenant of another namespace holding a token of this account (or
                    // calling STS directly) cannot name a session after this namespace.
                    "StringLike": {"sts:RoleSessionName": "team-a.*"},
                }
            }]
        })
    );
}

#[test]
fn saml_pins_the_subject_and_the_audience() {
    let provider_arn = "arn:aws:iam::111122223333:saml-provider/podcreds".to_string();
    let policies = trust_policies(
        &spec(vec![], false),
        "team-a",
        &FirstPrincipal::Saml {
            provider_arn: provider_arn.clone(),
        },
    )
    .unwrap();
    let statement = &policies[0].document["Statement"][0];
    assert_eq!(statement["Principal"]["Federated"], json!(provider_arn));
    assert_eq!(
        statement["Condition"]["StringEquals"]["SAML:sub"],
        json!("system:serviceaccount:team-a:app")
    );
    assert_eq!(statement["Action"], json!("sts:AssumeRoleWithSAML"));
    assert_eq!(
        statement["Condition"]["StringEquals"]["SAML:aud"],
        json!(AWS_SAML_AUDIENCE)
    );
    // Tags and a source identity in the assertion need their permissions too.
    let mut tagged = spec(vec![], false);
    tagged.first = FirstExchange::Saml(crate::spec::ResolvedSaml {
        role_arn: "arn:aws:iam::111122223333:role/app".into(),
        provider_arn: provider_arn.clone(),
        source_identity: Some("alice".into()),
        tags: vec![("team".into(), "a".into())],
        transitive_tag_keys: vec![],
    });
    let policies =
        trust_policies(&tagged, "team-a", &FirstPrincipal::Saml { provider_arn }).unwrap();
    assert_eq!(
        policies[0].document["Statement"][0]["Action"],
        json!([
            "sts:AssumeRoleWithSAML",
            "sts:TagSession",
            "sts:SetSourceIdentity"
        ])
    );
    // A hop after it inherits the transitive tags and the source identity.
    let mut chained = tagged.clone();
    chained.role_chain = spec(
        vec![RoleChainHop {
            role_arn: "arn:aws:iam::111122223333:role/next".into(),
            ..RoleChainHop::default()
        }],
        false,
    )
    .role_chain;
    if let FirstExchange::Saml(saml) = &mut chained.first {
        saml.transitive_tag_keys = vec!["team".into()];
    }
    let policies = trust_policies(
        &chained,
        "team-a",
        &FirstPrincipal::Saml {
            provider_arn: "arn:aws:iam::111122223333:saml-provider/podcreds".into(),
        },
    )
    .unwrap();
    assert_eq!(
        policies[1].document["Statement"][0]["Action"],
        json!(["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"])
    );
}

#[test]
fn chain_hops_trust_the_role_before_with_what_the_chain_sends() {
    let chain = vec![
        RoleChainHop {
            role_arn: "arn:aws:iam::444455556666:role/hub".into(),
            source_identity: Some("team-a.alice".into()),
            ..Default::default()
        },
        RoleChainHop {
            role_arn: "arn:aws-cn:iam::777788889999:role/leaf".into(),
            external_id: Some("ext-42".into()),
            tags: vec![SessionTag {
                key: "team".into(),
                value: "a".into(),
            }],
            ..Default::default()
        },
    ];
    let first = FirstPrincipal::Oidc {
        issuer: "https://oidc.example.com".into(),
    };
    let policies = trust_policies(&spec(chain, true), "team-a", &first).unwrap();
    let roles: Vec<_> = policies.iter().map(|p| p.role_arn.as_str()).collect();
    assert_eq!(
        roles,
        [
            "arn:aws:iam::111122223333:role/app",
            "arn:aws:iam::444455556666:role/hub",
            "arn:aws-cn:iam::777788889999:role/leaf"
        ]
    );
    let hub = &policies[1].document["Statement"][0];
    assert_eq!(
        hub["Principal"]["AWS"],
        json!("arn:aws:iam::111122223333:role/app")
    );
    // Kubernetes session tags go on the first hop, with the source identity.
    assert_eq!(
        hub["Action"],
        json!(["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"])
    );
    // Only this binding's session of the entry role may assume it, and only with the
    // binding's own Kubernetes tags: a tenant with another session of a shared entry role
    // cannot claim another namespace.
    assert_eq!(
        hub["Condition"],
        json!({
            "StringLike": {"aws:userid": "*:team-a.reader"},
            "StringEquals": {
                "aws:RequestTag/kubernetes-namespace": "team-a",
                "aws:RequestTag/kubernetes-service-account": "app",
                "aws:RequestTag/kubernetes-binding-name": "reader",
                "aws:RequestTag/kubernetes-cluster-name": "prod",
            },
            "ForAllValues:StringEquals": {"aws:TagKeys": [
                "kubernetes-namespace",
                "kubernetes-service-account",
                "kubernetes-binding-name",
                "kubernetes-cluster-name",
            ]},
        })
    );
    let leaf = &policies[2].document["Statement"][0];
    assert_eq!(
        leaf["Principal"]["AWS"],
        json!("arn:aws:iam::444455556666:role/hub")
    );
    // Inherited transitive tags and the persisting source identity still need both.
    assert_eq!(
        leaf["Action"],
        json!(["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"])
    );
    // The leaf pins the hub's session, its external ID, the tag it sends, and the Kubernetes
    // tags the caller inherited.
    assert_eq!(
        leaf["Condition"],
        json!({
            "StringLike": {"aws:userid": "*:team-a.reader"},
            "StringEquals": {
                "sts:ExternalId": "ext-42",
                "aws:PrincipalTag/kubernetes-namespace": "team-a",
                "aws:PrincipalTag/kubernetes-service-account": "app",
                "aws:PrincipalTag/kubernetes-binding-name": "reader",
                "aws:PrincipalTag/kubernetes-cluster-name": "prod",
            },
            "ForAllValues:StringEquals": {"aws:TagKeys": ["team"]},
        })
    );
}

#[test]
fn keys_of_a_credential_source_are_trusted_by_user_and_gft_needs_no_role() {
    let user_arn = "arn:aws:iam::111122223333:user/podcreds-source".to_string();
    let policies = trust_policies(
        &spec(vec![], false),
        "team-a",
        &FirstPrincipal::IamUser {
            user_arn: user_arn.clone(),
        },
    )
    .unwrap();
    // The source's keys serve every allowed namespace: a session name of this one only.
    assert_eq!(
        policies[0].document["Statement"][0],
        json!({
            "Effect": "Allow",
            "Principal": {"AWS": user_arn},
            "Action": "sts:AssumeRole",
            "Condition": {"StringLike": {"sts:RoleSessionName": "team-a.*"}},
        })
    );
    let no_role = ResolvedSpec {
        role_arn: None,
        ..spec(vec![], false)
    };
    assert_eq!(
        trust_policies(&no_role, "team-a", &FirstPrincipal::IamUser { user_arn }),
        Err(IamError::NoRole)
    );
}

#[test]
fn roles_anywhere_trusts_the_service_for_this_certificate_subject_and_anchor() {
    let anchor = "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/6b1c5a52-0f0e-4c44-9a55-3c1f6f3f5d2e";
    let spec: crate::api::AWSRoleBindingSpec = serde_json::from_value(json!({
        "serviceAccountName": "app",
        "roleArn": "arn:aws:iam::123456789012:role/r",
        "rolesAnywhere": {
            "trustAnchorArn": anchor,
            "profileArn": "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/0b8b6d1c-5d8e-4ab0-a1b7-8c3e7d9f2a41",
        },
        "roleChain": [{"roleArn": "arn:aws:iam::123456789012:role/hop"}],
    }))
    .unwrap();
    let resolved =
        crate::spec::resolve(&spec, "team-a", "b", &crate::spec::StsPolicy::default()).unwrap();
    let policies = trust_policies(
        &resolved,
        "team-a",
        &FirstPrincipal::RolesAnywhere {
            trust_anchor_arn: anchor.into(),
        },
    )
    .unwrap();
    let first = &policies[0].document["Statement"][0];
    assert_eq!(
        first["Principal"],
        json!({"Service": "rolesanywhere.amazonaws.com"})
    );
    assert_eq!(
        first["Action"],
        json!(["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"])
    );
    assert_eq!(
        first["Condition"],
        json!({
            "StringEquals": {
                "aws:PrincipalTag/x509Subject/CN": "team-a.app",
                "aws:PrincipalTag/x509Subject/OU": "team-a",
            },
            "ArnEquals": {"aws:SourceArn": anchor},
        })
    );
    // The session is named after a certificate serial: the hop pins the subject instead.
    let hop = &policies[1].document["Statement"][0];
    assert_eq!(
        hop["Principal"],
        json!({"AWS": "arn:aws:iam::123456789012:role/r"})
    );
    assert_eq!(
        hop["Condition"]["StringEquals"]["aws:PrincipalTag/x509Subject/CN"],
        "team-a.app"
    );
    assert!(hop["Condition"].get("StringLike").is_none(), "{hop}");
    // The source identity the certificate set travels to the hop.
    assert_eq!(
        hop["Action"],
        json!(["sts:AssumeRole", "sts:SetSourceIdentity"])
    );
}

#[test]
fn a_plain_hop_needs_only_assume_role() {
    let chain = vec![RoleChainHop {
        role_arn: "arn:aws:iam::444455556666:role/hub".into(),
        ..Default::default()
    }];
    let first = FirstPrincipal::Oidc {
        issuer: "https://oidc.example.com".into(),
    };
    let policies = trust_policies(&spec(chain, false), "team-a", &first).unwrap();
    assert_eq!(
        policies[1].document["Statement"][0]["Action"],
        json!("sts:AssumeRole")
    );
}

#[test]
fn issuers_aws_cannot_trust_are_refused_with_the_fix() {
    let first = FirstPrincipal::Oidc {
        issuer: "http://10.0.0.1:6443".into(),
    };
    let error = trust_policies(&spec(vec![], false), "team-a", &first).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("--service-account-issuer=https://"),
        "{error}"
    );
    for role in [
        "arn:aws:iam::1234:role/x",
        "arn:aws:iam::111122223333:user/x",
    ] {
        assert_eq!(
            partition_and_account(role),
            Err(IamError::NotARoleArn(role.into()))
        );
    }
}

#[test]
fn exported_discovery_points_at_the_hosted_jwks() {
    let discovery = json!({
        "issuer": "https://oidc.example.com/prod",
        "jwks_uri": "https://10.0.0.1:6443/openid/v1/jwks",
        "response_types_supported": ["id_token"],
    });
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "k1", "n": "x", "e": "AQAB"}]});
    let documents = prepare_oidc_documents(discovery.clone(), jwks.clone(), None).unwrap();
    assert_eq!(
        documents.discovery["jwks_uri"],
        json!("https://oidc.example.com/prod/openid/v1/jwks")
    );
    assert_eq!(
        documents.discovery["response_types_supported"],
        json!(["id_token"])
    );
    assert_eq!(documents.jwks, jwks);
    assert!(matches!(
        prepare_oidc_documents(
            discovery.clone(),
            jwks.clone(),
            Some("https://elsewhere.example.com")
        ),
        Err(IamError::IssuerMismatch { .. })
    ));
    assert_eq!(
        prepare_oidc_documents(discovery, json!({"keys": []}), None),
        Err(IamError::JwksMalformed)
    );
    assert!(matches!(
        prepare_oidc_documents(json!({"issuer": "http://plain"}), jwks, None),
        Err(IamError::IssuerNotHttps(_))
    ));
}
