//! ECR's `GetAuthorizationToken` on the emulator: only a live session (or an IAM user's keys)
//! that signed for service `ecr` gets a token; the tokens still valid are listed for a test
//! registry and can be withdrawn.

mod support;

use std::time::SystemTime;

use base64::Engine;
use serde_json::{Value, json};
use sts_emulator::{EcrSettings, User, role_from_trust_policy};
use support::{ACCOUNT, Credentials, Scope, ecr_call, role_arn, world};

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).expect("JSON answer")
}

fn code(answer: &support::Answer) -> String {
    json_of(&answer.body)["__type"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_live_session_gets_a_token_the_registry_can_check() {
    let (issuer, sts) = world(&["us-east-1", "eu-west-1"]).await;
    let provider = issuer.provider();
    let document = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": issuer.provider_arn()},
         "Action": "sts:AssumeRoleWithWebIdentity"}]});
    let role = role_from_trust_policy(&role_arn("puller"), &document, &provider).expect("read");
    sts.add_role(role);
    let session = Credentials::seeded(&sts, &role_arn("puller"));
    let scope = Scope {
        region: "eu-west-1",
        service: "ecr",
        time: SystemTime::now(),
    };

    let answer = ecr_call(&sts, "{}", &session, &scope, |_| {}).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let data = &json_of(&answer.body)["authorizationData"][0];
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data["authorizationToken"].as_str().expect("token"))
        .expect("base64");
    let decoded = String::from_utf8(decoded).expect("utf-8");
    let password = decoded.strip_prefix("AWS:").expect("user AWS");
    assert_eq!(
        data["proxyEndpoint"],
        format!("https://{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com")
    );
    let expires = data["expiresAt"].as_f64().expect("epoch seconds") as i64;
    let lifetime = expires - jiff::Timestamp::now().as_second();
    assert!(
        (12 * 3600 - 60..=12 * 3600).contains(&lifetime),
        "{lifetime}"
    );
    let tokens = sts.ecr_tokens();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].password, password);
    assert_eq!(tokens[0].principal, role_arn("puller"));
    assert_eq!(sts.count("GetAuthorizationToken"), 1);

    // Registry IDs name the proxy endpoints; the token is one.
    let other = "210987654321";
    let answer = ecr_call(
        &sts,
        &json!({"registryIds": [ACCOUNT, other]}).to_string(),
        &session,
        &scope,
        |_| {},
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let data = json_of(&answer.body)["authorizationData"].clone();
    assert_eq!(
        data[1]["proxyEndpoint"],
        format!("https://{other}.dkr.ecr.eu-west-1.amazonaws.com")
    );
    assert_eq!(data[0]["authorizationToken"], data[1]["authorizationToken"]);
    let answer = ecr_call(
        &sts,
        &json!({"registryIds": ["not-an-account"]}).to_string(),
        &session,
        &scope,
        |_| {},
    )
    .await;
    assert_eq!(code(&answer), "InvalidParameterException");

    // Withdrawn tokens are no longer listed; a shorter lifetime applies to new ones.
    sts.expire_ecr_tokens();
    assert!(sts.ecr_tokens().is_empty());
    sts.set_ecr(EcrSettings {
        token_lifetime_seconds: 120,
        proxy_endpoint: Some("https://registry.test:5000".into()),
    });
    let answer = ecr_call(&sts, "{}", &session, &scope, |_| {}).await;
    let data = &json_of(&answer.body)["authorizationData"][0];
    assert_eq!(data["proxyEndpoint"], "https://registry.test:5000");
    let lifetime = data["expiresAt"].as_f64().unwrap() as i64 - jiff::Timestamp::now().as_second();
    assert!((60..=120).contains(&lifetime), "{lifetime}");
    assert_eq!(sts.ecr_tokens().len(), 1);

    // An IAM user's long-term keys may ask too.
    sts.add_user(User {
        arn: format!("arn:aws:iam::{ACCOUNT}:user/ci"),
        access_key_id: "AKIAECRUSER000000001".into(),
        secret_access_key: "user-secret".into(),
        lifetime_seconds: None,
    });
    let keys = Credentials::long_term("AKIAECRUSER000000001", "user-secret");
    let answer = ecr_call(&sts, "{}", &keys, &scope, |_| {}).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn only_live_credentials_signing_for_ecr_get_a_token() {
    let (issuer, sts) = world(&[]).await;
    let provider = issuer.provider();
    let document = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": issuer.provider_arn()},
         "Action": "sts:AssumeRoleWithWebIdentity"}]});
    let role = role_from_trust_policy(&role_arn("puller"), &document, &provider).expect("read");
    sts.add_role(role);
    let session = Credentials::seeded(&sts, &role_arn("puller"));
    let ecr = Scope {
        service: "ecr",
        ..Scope::default()
    };

    // Scoped to STS, not ECR.
    let answer = ecr_call(&sts, "{}", &session, &Scope::default(), |_| {}).await;
    assert_eq!(answer.status, 400);
    assert_eq!(code(&answer), "InvalidSignatureException");
    // A region the emulator does not serve.
    let far = Scope {
        region: "ap-south-2",
        service: "ecr",
        time: SystemTime::now(),
    };
    let answer = ecr_call(&sts, "{}", &session, &far, |_| {}).await;
    assert_eq!(code(&answer), "InvalidSignatureException");
    // Credentials the emulator never issued.
    let forged = Credentials {
        access_key_id: "ASIAFORGED0000000000".into(),
        ..session.clone()
    };
    let answer = ecr_call(&sts, "{}", &forged, &ecr, |_| {}).await;
    assert_eq!(code(&answer), "UnrecognizedClientException");
    // The right key ID with the wrong secret.
    let wrong = Credentials {
        secret_access_key: "not-the-secret".into(),
        ..session.clone()
    };
    let answer = ecr_call(&sts, "{}", &wrong, &ecr, |_| {}).await;
    assert_eq!(code(&answer), "InvalidSignatureException");
    // A session token that is not the session's.
    let answer = ecr_call(&sts, "{}", &session, &ecr, |headers| {
        for (k, v) in headers.iter_mut() {
            if k == "x-amz-security-token" {
                *v = "other".into();
            }
        }
    })
    .await;
    assert_eq!(code(&answer), "UnrecognizedClientException");
    // Unsigned.
    let answer = ecr_call(&sts, "{}", &session, &ecr, |headers| {
        headers.retain(|(k, _)| k != "authorization")
    })
    .await;
    assert_eq!(code(&answer), "MissingAuthenticationToken");
    assert!(sts.ecr_tokens().is_empty());
    // And the genuine call works.
    let answer = ecr_call(&sts, "{}", &session, &ecr, |_| {}).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(sts.ecr_tokens().len(), 1);
}
