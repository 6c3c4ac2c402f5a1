//! The requests of the STS actions podcreds calls. What every action shares is written once:
//! where the call goes ([`StsTarget`]) and what the issued session may do ([`SessionScope`]).
//! Tokens, assertions and keys are held as secrets, so `Debug` never shows them.

use secrecy::SecretString;

use crate::credentials::{IssuedCredentials, LongTermKeys, Signer};
use crate::rolesanywhere::WorkloadCertificate;

/// Where an STS call goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsTarget {
    pub region: String,
    /// `None`: the AWS regional endpoint of `region`.
    pub endpoint: Option<String>,
}

impl StsTarget {
    /// The region a call to this target is signed for. An AWS STS endpoint accepts only its own
    /// region in a SigV4 scope, so a regional endpoint (`sts.<region>.amazonaws.com`, FIPS,
    /// dual-stack, VPC endpoint names) signs for its region, and the global one
    /// (`sts.amazonaws.com`) for us-east-1: a fail-over list may hold endpoints of several
    /// regions. Any other endpoint signs for the binding's region.
    pub fn signing_region(&self) -> String {
        self.endpoint
            .as_deref()
            .and_then(aws_endpoint_region)
            .unwrap_or_else(|| self.region.clone())
    }
}

/// The region of an AWS STS endpoint URL, judged by its host name.
fn aws_endpoint_region(endpoint: &str) -> Option<String> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let aws = ["amazonaws.com", "amazonaws.com.cn", "api.aws"]
        .iter()
        .any(|suffix| host.ends_with(&format!(".{suffix}")));
    if !aws {
        return None;
    }
    if host == "sts.amazonaws.com" {
        return Some("us-east-1".to_string());
    }
    let labels: Vec<&str> = host.split('.').collect();
    labels.windows(2).find_map(|pair| {
        let looks_like_region = |r: &str| {
            let parts: Vec<&str> = r.split('-').collect();
            parts.len() >= 3
                && parts.iter().all(|p| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
                && parts
                    .last()
                    .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
        };
        (matches!(pair[0], "sts" | "sts-fips") && looks_like_region(pair[1]))
            .then(|| pair[1].to_string())
    })
}

/// How long the issued session lasts and what its session policies leave of the role's (or
/// user's) permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionScope {
    pub duration_seconds: i32,
    /// Inline session policy (JSON).
    pub policy: Option<String>,
    /// Managed session policy ARNs.
    pub policy_arns: Vec<String>,
}

/// One `AssumeRoleWithWebIdentity` call (unsigned: the token is the proof).
#[derive(Debug)]
pub struct WebIdentityRequest {
    pub role_arn: String,
    pub session_name: String,
    pub web_identity_token: SecretString,
    pub scope: SessionScope,
    pub target: StsTarget,
}

/// One `AssumeRoleWithSAML` call (unsigned: the assertion is the proof).
#[derive(Debug)]
pub struct SamlRequest {
    pub role_arn: String,
    /// The IAM SAML provider.
    pub principal_arn: String,
    /// The base64 SAML Response.
    pub saml_assertion: SecretString,
    pub scope: SessionScope,
    pub target: StsTarget,
}

/// One `AssumeRole` call, signed by `signer` alone (never anything from the environment).
#[derive(Debug)]
pub struct AssumeRoleRequest {
    pub signer: Signer,
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
    pub scope: SessionScope,
    pub target: StsTarget,
}

/// One `GetFederationToken` call, signed with an IAM user's long-term keys.
#[derive(Debug)]
pub struct FederationTokenRequest {
    pub keys: LongTermKeys,
    /// The federated user's name (2-32 characters).
    pub name: String,
    /// Session tags (`GetFederationToken` takes no transitive keys: it cannot chain).
    pub tags: Vec<(String, String)>,
    pub scope: SessionScope,
    pub target: StsTarget,
}

/// One `GetSessionToken` call (without MFA), signed with an IAM user's long-term keys.
#[derive(Debug)]
pub struct SessionTokenRequest {
    pub keys: LongTermKeys,
    pub duration_seconds: i32,
    pub target: StsTarget,
}

/// What STS answered to an `AssumeRole` call.
#[derive(Clone, Debug)]
pub struct AssumedRole {
    pub credentials: IssuedCredentials,
    /// How much of the packed size limit the session policies and tags use, in percent.
    pub packed_policy_size: Option<i32>,
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;

    fn scope() -> SessionScope {
        SessionScope {
            duration_seconds: 900,
            policy: None,
            policy_arns: vec![],
        }
    }

    fn target() -> StsTarget {
        StsTarget {
            region: "us-east-1".into(),
            endpoint: None,
        }
    }

    #[test]
    fn aws_endpoints_sign_for_their_own_region() {
        let target = |endpoint: Option<&str>| StsTarget {
            region: "eu-west-1".into(),
            endpoint: endpoint.map(str::to_string),
        };
        for (endpoint, region) in [
            (None, "eu-west-1"),
            (
                Some("https://sts.eu-central-1.amazonaws.com"),
                "eu-central-1",
            ),
            (
                Some("https://STS.eu-central-1.amazonaws.com:443/"),
                "eu-central-1",
            ),
            (Some("https://sts.amazonaws.com"), "us-east-1"),
            (
                Some("https://sts-fips.us-gov-west-1.amazonaws.com"),
                "us-gov-west-1",
            ),
            (
                Some("https://sts.cn-north-1.amazonaws.com.cn"),
                "cn-north-1",
            ),
            (Some("https://sts.ap-southeast-2.api.aws"), "ap-southeast-2"),
            (
                Some("https://vpce-0abc-1234.sts.us-east-2.vpce.amazonaws.com"),
                "us-east-2",
            ),
            // Not AWS: the binding's region, whatever the host name says.
            (Some("https://sts.us-east-2.example.com"), "eu-west-1"),
            (Some("http://127.0.0.1:9000"), "eu-west-1"),
            (Some("https://minio.storage.svc:9000"), "eu-west-1"),
            // An AWS host that names no region (a custom domain of a VPC endpoint, say).
            (Some("https://sts.internal.amazonaws.com"), "eu-west-1"),
        ] {
            assert_eq!(target(endpoint).signing_region(), region, "{endpoint:?}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let creds = IssuedCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: SecretString::from("very-secret-key".to_string()),
            session_token: SecretString::from("very-secret-token".to_string()),
            expiration: Timestamp::now(),
            assumed_role_arn: None,
            chain: None,
            sts_endpoint: None,
        };
        let shown = format!("{creds:?}");
        assert!(!shown.contains("very-secret-key"));
        assert!(!shown.contains("very-secret-token"));
        let web = WebIdentityRequest {
            role_arn: "arn".into(),
            session_name: "s".into(),
            web_identity_token: SecretString::from("eyJ-token".to_string()),
            scope: scope(),
            target: target(),
        };
        assert!(!format!("{web:?}").contains("eyJ-token"));
        let saml = SamlRequest {
            role_arn: "arn".into(),
            principal_arn: "provider".into(),
            saml_assertion: SecretString::from("PHNhbWxwOlJlc3BvbnNl".to_string()),
            scope: scope(),
            target: target(),
        };
        assert!(!format!("{saml:?}").contains("PHNhbWxw"));
        let keys = LongTermKeys {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: SecretString::from("long-term-secret".to_string()),
        };
        let chained = AssumeRoleRequest {
            signer: Signer::LongTerm(keys.clone()),
            role_arn: "arn".into(),
            session_name: "s".into(),
            external_id: None,
            tags: vec![],
            transitive_tag_keys: vec![],
            source_identity: None,
            scope: scope(),
            target: target(),
        };
        assert!(!format!("{chained:?}").contains("long-term-secret"));
        let session = AssumeRoleRequest {
            signer: Signer::Session(creds),
            ..chained
        };
        assert!(!format!("{session:?}").contains("very-secret"));
    }
}

/// One IAM Roles Anywhere `CreateSession` call, signed with `certificate`'s key. It takes no
/// session policy; the session's tags and source identity come from the certificate.
#[derive(Debug)]
pub struct RolesAnywhereRequest {
    pub certificate: WorkloadCertificate,
    pub trust_anchor_arn: String,
    pub profile_arn: String,
    pub role_arn: String,
    pub duration_seconds: i32,
    /// The trust anchor's region.
    pub region: String,
    /// `None`: `https://rolesanywhere.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
}
