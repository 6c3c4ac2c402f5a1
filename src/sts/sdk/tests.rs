use super::*;
use crate::sts::SessionScope;

fn target(region: &str, endpoint: Option<&str>) -> StsTarget {
    StsTarget {
        region: region.into(),
        endpoint: endpoint.map(str::to_string),
    }
}

#[tokio::test]
async fn the_client_cache_stays_bounded_whatever_regions_bindings_name() {
    let sts = AwsStsClient::new(StsTimeouts::default(), None);
    for i in 0..(MAX_CLIENTS * 3) {
        sts.client_for(&target(&format!("xx-test-{i}"), None));
    }
    assert_eq!(sts.clients_held(), MAX_CLIENTS);
    // A client in use is reused, not duplicated.
    sts.client_for(&target("xx-test-1000", Some("http://127.0.0.1:1")));
    sts.client_for(&target("xx-test-1000", Some("http://127.0.0.1:1")));
    assert_eq!(sts.clients_held(), MAX_CLIENTS);
}

/// The SDK path of `AssumeRole` against the emulator, which verifies the SigV4 signature
/// made with the explicit credentials and enforces the chain rules.
#[tokio::test]
async fn assume_role_is_signed_with_the_previous_credentials() {
    use sts_emulator::{Config, Dialect, Emulator, Role};
    let entry = "arn:aws:iam::123456789012:role/entry";
    let tagged = "arn:aws:iam::123456789012:role/tagged";
    let untagged = "arn:aws:iam::123456789012:role/untagged";
    let emulator = Emulator::start(Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        issuer: "https://127.0.0.1:1".into(),
        issuer_ca_pem: None,
        roles: vec![
            Role {
                arn: entry.into(),
                ..Role::default()
            },
            Role {
                arn: tagged.into(),
                trusted_roles: vec![entry.into()],
                external_id: Some("ext-1".into()),
                allow_tag_session: true,
                allow_set_source_identity: true,
                ..Role::default()
            },
            Role {
                arn: untagged.into(),
                trusted_roles: vec![entry.into()],
                ..Role::default()
            },
        ],
        dialect: Dialect::Aws,
        regions: vec!["us-east-1".into()],
    })
    .await
    .expect("emulator");
    let seeded = || {
        let (key, secret, token) = emulator.session_for(entry).expect("known role");
        IssuedCredentials {
            access_key_id: key,
            secret_access_key: SecretString::from(secret),
            session_token: SecretString::from(token),
            expiration: Timestamp::now(),
            assumed_role_arn: None,
            chain: None,
            sts_endpoint: None,
        }
    };
    let request = |credentials, role_arn: &str| AssumeRoleRequest {
        signer: Signer::Session(credentials),
        role_arn: role_arn.into(),
        session_name: "ns.b".into(),
        external_id: Some("ext-1".into()),
        tags: vec![("team".into(), "a b".into()), ("stage".into(), "x".into())],
        transitive_tag_keys: vec!["team".into()],
        source_identity: Some("alice".into()),
        scope: SessionScope {
            duration_seconds: 3600,
            policy: Some(r#"{"Version":"2012-10-17","Statement":[]}"#.into()),
            policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
        },
        target: target("us-east-1", Some(&emulator.url())),
    };
    let sts = AwsStsClient::new(StsTimeouts::default(), None);
    let assumed = sts
        .assume_role(request(seeded(), tagged))
        .await
        .expect("assumed");
    assert_eq!(
        assumed.credentials.assumed_role_arn.as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/tagged/ns.b")
    );
    assert!(
        assumed
            .packed_policy_size
            .is_some_and(|p| p > 0 && p <= 100)
    );
    let call = emulator
        .calls()
        .calls
        .into_iter()
        .find(|c| c.action == "AssumeRole")
        .expect("logged");
    assert_eq!(call.result, "Ok");
    assert_eq!(call.source_identity.as_deref(), Some("alice"));
    assert_eq!(call.external_id.as_deref(), Some("ext-1"));
    assert_eq!(call.transitive_tag_keys, ["team"]);
    assert_eq!(
        call.tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect::<Vec<_>>(),
        [("team", "a b"), ("stage", "x")]
    );
    // A role whose trust policy lacks sts:TagSession refuses a tagged session.
    let denied = sts
        .assume_role(request(seeded(), untagged))
        .await
        .expect_err("no TagSession");
    assert_eq!(denied.kind, StsErrorKind::AccessDenied);
    assert!(denied.message.contains("sts:TagSession"), "{denied}");
    // Credentials STS never issued are refused: the signature is really checked.
    let mut forged = seeded();
    forged.secret_access_key = SecretString::from("not-the-secret".to_string());
    let refused = sts
        .assume_role(request(forged, tagged))
        .await
        .expect_err("forged");
    assert_eq!(refused.code.as_deref(), Some("SignatureDoesNotMatch"));
    emulator.shutdown();
}

fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "proxy-authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The SDK client with the admin's proxy: an https endpoint is reached through a CONNECT
/// tunnel carrying the proxy's credentials (the token never reaches the proxy); a plain-HTTP
/// endpoint and one in --sts-no-proxy are called directly; a refused tunnel is the
/// endpoint's failure (another endpoint of a list is tried).
#[tokio::test]
async fn the_sdk_client_tunnels_https_through_the_admins_proxy() {
    use super::super::proxy::tests::Recorder;
    let proxy_server = Recorder::start("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
    let direct = Recorder::start(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    let proxy = StsProxy::parse(
        &SecretString::from(format!("http://podcreds:s3cret@{}", proxy_server.address)),
        &["localhost".to_string()],
    )
    .expect("valid");
    let sts = AwsStsClient::new(StsTimeouts::default(), Some(&proxy));
    let call = |endpoint: String| {
        sts.assume_role_with_web_identity(WebIdentityRequest {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            session_name: "ns.b".into(),
            web_identity_token: SecretString::from("eyJ-the-token".to_string()),
            scope: crate::sts::SessionScope {
                duration_seconds: 900,
                policy: None,
                policy_arns: vec![],
            },
            target: target("eu-west-1", Some(&endpoint)),
        })
    };
    let refused = call("https://sts.eu-west-1.amazonaws.com".into())
        .await
        .expect_err("the proxy refused the tunnel");
    assert_eq!(refused.kind, StsErrorKind::Unavailable);
    assert!(refused.endpoint_failed, "{refused:?}");
    // The message names the proxy, never its credentials.
    assert!(
        refused.message.ends_with(&format!(
            "(through the proxy http://{})",
            proxy_server.address
        )),
        "{refused}"
    );
    assert!(!refused.to_string().contains("s3cret"), "{refused}");
    let heads = proxy_server.heads();
    assert!(!heads.is_empty());
    for head in &heads {
        assert!(
            head.starts_with("CONNECT sts.eu-west-1.amazonaws.com:443 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.lines()
                .any(|l| l.eq_ignore_ascii_case(&basic_auth("podcreds", "s3cret"))),
            "{head}"
        );
        assert!(!head.contains("eyJ-the-token"), "{head}");
    }
    let tunnels = proxy_server.connections();
    // Plain HTTP is never proxied: the request goes straight to the endpoint, in origin form.
    let failed = call(format!("http://{}", direct.address))
        .await
        .expect_err("500");
    assert!(failed.endpoint_failed, "{failed:?}");
    assert!(!failed.message.contains("proxy"), "{failed}");
    assert!(
        direct
            .heads()
            .iter()
            .all(|h| h.starts_with("POST / HTTP/1.1\r\n")),
        "{:?}",
        direct.heads()
    );
    // Nor is a host the admin exempted (the TLS handshake fails against the recorder).
    let before = direct.connections();
    call(format!("https://localhost:{}", direct.port()))
        .await
        .expect_err("no TLS there");
    assert!(direct.connections() > before);
    assert_eq!(proxy_server.connections(), tunnels);
}
