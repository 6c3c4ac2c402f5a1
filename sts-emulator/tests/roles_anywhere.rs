//! IAM Roles Anywhere `CreateSession` over HTTP, signed as AWS's helper signs: the sessions it
//! issues and what they can do afterwards, then each refusal of the signature and of the
//! certificate path to the trust anchor (revocations included).

mod support;

use serde_json::json;
use sts_emulator::{Revocation, TrustAnchor};
use support::ra_scene::{add_role, expect_refused, scene};
use support::x509::{self, Ca, ECDSA, RSA, Signing, host, request, send, trust_anchor_arn};
use support::{Credentials, role_arn, signed_call};

#[tokio::test]
async fn rsa_and_ecdsa_certificates_get_sessions_that_work_as_role_sessions() {
    let s = scene().await;
    let intermediate = s.ca.intermediate("Test Issuing CA", |_| {});
    let rsa = s.ca.issue(RSA, "workload-rsa", 0x1f71c5, |_| {});
    let ecdsa = intermediate
        .issue(ECDSA, "workload-ec", 291, |_| {})
        .with_chain(&[&intermediate]);
    for (holder, serial_hex, cn) in [
        (&rsa, "1f71c5", "workload-rsa"),
        (&ecdsa, "0123", "workload-ec"),
    ] {
        let answer = s.create(holder, r#"{"durationSeconds":3600}"#).await;
        assert_eq!(answer.status, 201, "{answer:?}");
        let set = answer.set();
        // The session is named after the serial (hex) and carries the CN as source identity.
        let arn = format!(
            "arn:aws:sts::{}:assumed-role/ra-app/{serial_hex}",
            support::ACCOUNT
        );
        assert_eq!(set["assumedRoleUser"]["arn"], arn.as_str());
        assert_eq!(set["sourceIdentity"], format!("CN={cn}").as_str());
        assert_eq!(set["roleArn"], s.role.as_str());
        assert!(
            set["assumedRoleUser"]["assumedRoleId"]
                .as_str()
                .is_some_and(|id| id.starts_with("AROA"))
        );
        assert!(set["packedPolicySize"].as_u64().is_some());
        assert!(answer.json["subjectArn"].as_str().is_some_and(|a| {
            a.starts_with("arn:aws:rolesanywhere:us-east-1:123456789012:subject/")
        }));
        let expiration: jiff::Timestamp = set["credentials"]["expiration"]
            .as_str()
            .and_then(|e| e.parse().ok())
            .expect("an RFC 3339 expiration");
        let left = expiration.duration_since(jiff::Timestamp::now()).as_secs();
        assert!((3590..=3600).contains(&left), "{set}");

        // The credentials are a role session: GetCallerIdentity, and AssumeRole is chaining.
        let credentials = answer.credentials();
        let me = signed_call(
            &s.sts,
            &[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
            &credentials,
        )
        .await;
        assert_eq!(me.text("Arn").as_deref(), Some(arn.as_str()), "{me:?}");
        let call = s.last_call();
        assert_eq!(call.result, "Ok");
        assert_eq!(call.subject.as_deref(), Some(format!("CN={cn}").as_str()));
        assert_eq!(call.trust_anchor_arn.as_deref(), Some(s.anchor.as_str()));
        assert_eq!(call.profile_arn.as_deref(), Some(s.profile.as_str()));
        assert_eq!(call.certificate_serial.as_deref(), Some(serial_hex));
        assert_eq!(call.granted_seconds, Some(3600));
        assert!(
            call.tags
                .iter()
                .any(|t| t.key == "x509Subject/CN" && t.value == cn)
        );
        assert!(call.tags.iter().any(|t| t.key == "x509Issuer/CN"));
    }

    // A chain after it is role chaining: one hour at most, and the source identity stays.
    let next = role_arn("next");
    add_role(
        &s.sts,
        &next,
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": s.role},
            "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
        }]}),
    );
    let first = s.create(&rsa, "").await.credentials();
    let hop = |duration: &'static str, credentials: Credentials| {
        let sts = s.sts.clone();
        let next = next.clone();
        async move {
            signed_call(
                &sts,
                &[
                    ("Action", "AssumeRole"),
                    ("Version", "2011-06-15"),
                    ("RoleArn", &next),
                    ("RoleSessionName", "hop"),
                    ("DurationSeconds", duration),
                ],
                &credentials,
            )
            .await
        }
    };
    let long = hop("7200", first.clone()).await;
    assert_eq!(long.code(), "ValidationError", "{long:?}");
    assert!(long.message().contains("role chaining"), "{long:?}");
    let ok = hop("3600", first).await;
    assert_eq!(ok.code(), "Ok", "{ok:?}");
    assert_eq!(
        ok.text("SourceIdentity").as_deref(),
        Some("CN=workload-rsa")
    );
}

#[tokio::test]
async fn tampered_and_missigned_requests_are_refused() {
    let s = scene().await;
    let holder = s.ca.issue(RSA, "workload", 77, |_| {});
    let body = r#"{"durationSeconds":3600}"#;
    let denied =
        |a: &x509::Answer, words: &str| expect_refused(a, "AccessDeniedException", 403, words);

    // One byte of the body, of a signed header, of the query: the signature no longer holds.
    let a = s
        .create_with(&holder, body, &Signing::default(), |r| {
            r.body = r.body.replace("3600", "3601")
        })
        .await;
    denied(&a, "Invalid signature");
    let a = s
        .create_with(&holder, body, &Signing::default(), |r| {
            for (k, v) in &mut r.headers {
                if k == "content-type" {
                    *v = "application/jsoN".into();
                }
            }
        })
        .await;
    denied(&a, "Invalid signature");
    let other_role = role_arn("ra-other");
    let a = s
        .create_with(&holder, body, &Signing::default(), |r| {
            r.query = x509::query(&[
                ("profileArn", &s.profile),
                ("roleArn", &other_role),
                ("trustAnchorArn", &s.anchor),
            ])
        })
        .await;
    denied(&a, "Invalid signature");
    // Signed by another key than the certificate's.
    let impostor = s.ca.issue(RSA, "workload", 77, |_| {});
    let a = s
        .create_with(&holder, body, &Signing::default(), |r| {
            let cert =
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &impostor.cert);
            for (k, v) in &mut r.headers {
                if k == "x-amz-x509" {
                    *v = cert.clone();
                }
            }
        })
        .await;
    denied(&a, "Invalid signature");

    // The scope: service, a served region, the day of X-Amz-Date, the certificate's serial.
    let wrong = |signing: Signing<'static>| signing;
    let cases: Vec<(Signing<'static>, &str)> = vec![
        (
            wrong(Signing {
                service: "sts",
                ..Signing::default()
            }),
            "scoped to correct service",
        ),
        (
            wrong(Signing {
                region: "eu-west-3",
                ..Signing::default()
            }),
            "valid region",
        ),
        (
            wrong(Signing {
                serial: Some("12345".into()),
                ..Signing::default()
            }),
            "serial number",
        ),
        (
            wrong(Signing {
                algorithm: Some("AWS4-X509-ECDSA-SHA256"),
                ..Signing::default()
            }),
            "does not fit",
        ),
        (
            wrong(Signing {
                time: jiff::Timestamp::now() - jiff::SignedDuration::from_mins(20),
                ..Signing::default()
            }),
            "Signature expired",
        ),
        (
            wrong(Signing {
                unsigned: &["x-amz-x509"],
                ..Signing::default()
            }),
            "X-Amz-X509 must be among the signed headers",
        ),
        (
            wrong(Signing {
                algorithm: Some("AWS4-HMAC-SHA256"),
                ..Signing::default()
            }),
            "unsupported algorithm",
        ),
    ];
    for (signing, words) in cases {
        let a = s.create_with(&holder, body, &signing, |_| {}).await;
        denied(&a, words);
    }
    let a = s
        .create_with(&holder, body, &Signing::default(), |r| {
            for (k, v) in &mut r.headers {
                if k == "authorization" {
                    *v = v.replacen("/20", "/19", 1);
                }
            }
        })
        .await;
    denied(&a, "Date in Credential scope");
    let a = s
        .create_with(&holder, body, &Signing::default(), |r| {
            r.headers.retain(|(k, _)| k != "authorization")
        })
        .await;
    denied(&a, "Missing Authentication Token");

    // An intermediate sent but left out of the signature.
    let intermediate = s.ca.intermediate("Issuing", |_| {});
    let chained = intermediate
        .issue(ECDSA, "w", 5, |_| {})
        .with_chain(&[&intermediate]);
    let a = s
        .create_with(
            &chained,
            body,
            &Signing {
                unsigned: &["x-amz-x509-chain"],
                ..Signing::default()
            },
            |_| {},
        )
        .await;
    denied(&a, "X-Amz-X509-Chain must be among the signed headers");
    assert!(s.sts.calls().calls.iter().all(|c| c.result != "Ok"));
}

#[tokio::test]
async fn certificates_without_a_valid_path_to_the_trust_anchor_are_refused() {
    let s = scene().await;
    let untrusted = |a: &x509::Answer, words: &str| {
        expect_refused(
            a,
            "AccessDeniedException",
            403,
            "Untrusted signing certificate",
        );
        assert!(
            a.message().contains(words),
            "expected {words:?} in {:?}",
            a.message()
        );
    };
    let foreign = Ca::root("Test Root CA").issue(ECDSA, "workload", 1, |_| {});
    untrusted(&s.create(&foreign, "").await, "no chain");
    let expired = s.ca.issue(ECDSA, "workload", 2, |p| {
        p.not_after = rcgen::date_time_ymd(2021, 1, 1)
    });
    untrusted(&s.create(&expired, "").await, "expired");
    let early = s.ca.issue(ECDSA, "workload", 3, |p| {
        p.not_before = rcgen::date_time_ymd(2090, 1, 1)
    });
    untrusted(&s.create(&early, "").await, "not valid before");
    let ca_leaf = s.ca.issue(ECDSA, "workload", 4, |p| {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
    });
    untrusted(&s.create(&ca_leaf, "").await, "CA:true");
    let no_signing = s.ca.issue(ECDSA, "workload", 5, |p| {
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment]
    });
    untrusted(&s.create(&no_signing, "").await, "digitalSignature");

    // Intermediates: sent, not sent, not a CA, beyond a path length.
    let intermediate = s.ca.intermediate("Issuing", |_| {});
    let leaf = intermediate.issue(RSA, "workload", 6, |_| {});
    untrusted(&s.create(&leaf, "").await, "no chain");
    let leaf = leaf.with_chain(&[&intermediate]);
    assert_eq!(s.create(&leaf, "").await.status, 201);
    let not_ca =
        s.ca.intermediate("Not a CA", |p| p.is_ca = rcgen::IsCa::ExplicitNoCa);
    let leaf = not_ca
        .issue(RSA, "workload", 7, |_| {})
        .with_chain(&[&not_ca]);
    untrusted(&s.create(&leaf, "").await, "CA:true");
    let limited = Ca::root_with("Limited Root", |p| {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0))
    });
    let anchor2 = trust_anchor_arn("ta-limited");
    s.sts
        .add_trust_anchor(TrustAnchor::new(&anchor2, &limited.pem()))
        .expect("anchor");
    let below = limited.intermediate("Below", |_| {});
    let leaf = below
        .issue(RSA, "workload", 8, |_| {})
        .with_chain(&[&below]);
    let mut req = request(
        &host(&s.sts),
        &leaf,
        (&anchor2, &s.profile, &s.role),
        "",
        &Signing::default(),
    );
    req.body.clear();
    untrusted(&send(&s.sts, req).await, "no chain");

    // Revoked certificates, by serial or by the CA's CRL; the leaf or its intermediate.
    let revoked = s.ca.issue(ECDSA, "workload", 0xabcdef, |_| {});
    assert_eq!(s.create(&revoked, "").await.status, 201);
    s.sts.revoke_serial(&s.anchor, "AB:CD:EF").expect("revoke");
    expect_refused(
        &s.create(&revoked, "").await,
        "AccessDeniedException",
        403,
        "revoked",
    );
    let by_crl = s.ca.issue(ECDSA, "workload", 0x5151, |_| {});
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from(0x5151u64),
            revocation_time: rcgen::date_time_ymd(2024, 1, 1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&rcgen::Issuer::from_params(&s.ca.params, &s.ca.key))
    .expect("crl");
    s.sts
        .revoke(&Revocation {
            trust_anchor_arn: s.anchor.clone(),
            serials: Vec::new(),
            crl_pem: Some(crl.pem().expect("pem")),
        })
        .expect("import CRL");
    expect_refused(
        &s.create(&by_crl, "").await,
        "AccessDeniedException",
        403,
        "revoked",
    );
    // A CRL of another CA is refused at import.
    let stranger = Ca::root("Stranger");
    let foreign_crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&rcgen::Issuer::from_params(&stranger.params, &stranger.key))
    .expect("crl");
    assert!(
        s.sts
            .revoke(&Revocation {
                trust_anchor_arn: s.anchor.clone(),
                serials: Vec::new(),
                crl_pem: Some(foreign_crl.pem().expect("pem")),
            })
            .is_err()
    );
    let issuing = s.ca.intermediate("Revoked Issuing", |p| {
        p.serial_number = Some(rcgen::SerialNumber::from(0x0777u64))
    });
    let leaf = issuing
        .issue(ECDSA, "workload", 9, |_| {})
        .with_chain(&[&issuing]);
    assert_eq!(s.create(&leaf, "").await.status, 201);
    s.sts.revoke_serial(&s.anchor, "0777").expect("revoke");
    expect_refused(
        &s.create(&leaf, "").await,
        "AccessDeniedException",
        403,
        "Revoked Issuing",
    );

    // A disabled trust anchor, an unknown one.
    s.sts
        .add_trust_anchor(TrustAnchor {
            enabled: false,
            ..TrustAnchor::new(&s.anchor, &s.ca.pem())
        })
        .expect("anchor");
    let fine = s.ca.issue(ECDSA, "workload", 10, |_| {});
    expect_refused(
        &s.create(&fine, "").await,
        "AccessDeniedException",
        403,
        "disabled",
    );
    let mut req = request(
        &host(&s.sts),
        &fine,
        (&trust_anchor_arn("nope"), &s.profile, &s.role),
        "",
        &Signing::default(),
    );
    req.body.clear();
    expect_refused(
        &send(&s.sts, req).await,
        "ResourceNotFoundException",
        404,
        "not found",
    );
}
