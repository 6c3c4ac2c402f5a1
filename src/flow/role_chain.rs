//! The role chain flow: after the binding's first exchange (whichever it is), one `AssumeRole`
//! per `roleChain` hop, each signed with the credentials of the one before. The Secret receives the
//! last hop's credentials; what every hop answered travels with them ([`ChainRecord`]).
//!
//! Intermediate credentials only sign the next call, so they are asked for the least STS grants
//! (900 s) and never leave this flow. STS caps chained sessions at one hour: the resolved
//! spec already asks the last hop for at most 3600 s, and the record says when that shortened
//! `durationSeconds`.

use std::sync::Arc;

use super::deps::FlowDeps;
use super::error::HopError;
use super::seam::ExchangeRequest;
use crate::credentials::{ChainRecord, HopRecord, IssuedCredentials, Signer};
use crate::spec::ResolvedHop;
use crate::sts::{AssumeRoleRequest, SessionScope, StsErrorKind};
use crate::text;

/// Highest `PackedPolicySize` percentage kept (STS refuses anything over 100 anyway).
const MAX_PACKED_PERCENT: i32 = 1000;

pub struct RoleChain {
    pub deps: Arc<FlowDeps>,
}

impl RoleChain {
    pub const NAME: &'static str = "RoleChain";
}

/// What an `AccessDenied` of hop `index` most likely lacks, given what the chain sent: session
/// tags (set on this hop, or inherited as transitive tags) need `sts:TagSession`, a source
/// identity (set on the first hop, then carried down the chain) `sts:SetSourceIdentity`, and an
/// external ID must match the trust policy's `sts:ExternalId`.
pub fn access_denied_hint(hops: &[ResolvedHop], index: usize) -> String {
    let Some(hop) = hops.get(index) else {
        return String::new();
    };
    let earlier = &hops[..index];
    let mut actions = Vec::new();
    if !hop.tags.is_empty() || earlier.iter().any(|h| !h.transitive_tag_keys.is_empty()) {
        actions.push("sts:TagSession (session tags were sent or inherited)");
    }
    if hop.source_identity.is_some() || earlier.iter().any(|h| h.source_identity.is_some()) {
        actions.push("sts:SetSourceIdentity (the chain carries a source identity)");
    }
    let mut hint = String::new();
    if !actions.is_empty() {
        hint = format!(
            "; the trust policy of {} must allow {}",
            hop.role_arn,
            actions.join(" and ")
        );
    }
    if hop.external_id.is_some() {
        hint.push_str("; the externalId must match the trust policy's sts:ExternalId");
    }
    hint
}

impl RoleChain {
    /// Runs every `roleChain` hop of `request`'s binding, the first signed with `first` (the
    /// credentials of the binding's first exchange).
    pub async fn hops_after(
        &self,
        request: ExchangeRequest<'_>,
        first: IssuedCredentials,
    ) -> Result<IssuedCredentials, HopError> {
        let spec = request.spec;
        let mut current = first;
        let mut records = Vec::with_capacity(spec.role_chain.len());
        for (index, hop) in spec.role_chain.iter().enumerate() {
            // Every hop fails over on its own: the previous credentials sign it at whichever
            // endpoint answers (STS credentials are good at every endpoint of the service).
            let served = self
                .deps
                .sts_exchange(Self::NAME, spec, |target| {
                    self.deps.sts.assume_role(AssumeRoleRequest {
                        signer: Signer::Session(current.clone()),
                        role_arn: hop.role_arn.clone(),
                        session_name: hop.session_name.clone(),
                        external_id: hop.external_id.clone(),
                        tags: hop.tags.clone(),
                        transitive_tag_keys: hop.transitive_tag_keys.clone(),
                        source_identity: hop.source_identity.clone(),
                        scope: SessionScope {
                            duration_seconds: hop.duration_seconds,
                            policy: hop.session_policy.clone(),
                            policy_arns: hop.policy_arns.clone(),
                        },
                        target,
                    })
                })
                .await
                .map_err(|error| {
                    let hint = if error.kind == StsErrorKind::AccessDenied {
                        access_denied_hint(&spec.role_chain, index)
                    } else {
                        String::new()
                    };
                    HopError {
                        index,
                        role_arn: hop.role_arn.clone(),
                        error,
                        hint,
                    }
                })?;
            let assumed = served.answer;
            records.push(HopRecord {
                assumed_role_arn: assumed
                    .credentials
                    .assumed_role_arn
                    .as_deref()
                    .map(text::identifier),
                expiration: assumed.credentials.expiration,
                packed_policy_size: assumed
                    .packed_policy_size
                    .map(|p| p.clamp(0, MAX_PACKED_PERCENT)),
            });
            current = IssuedCredentials {
                sts_endpoint: served.endpoint,
                ..assumed.credentials
            };
        }
        current.chain = Some(ChainRecord {
            clamped_from: spec
                .chained_duration_clamped()
                .then_some(spec.duration_seconds),
            hops: records,
        });
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::deps::tests::{A, B, binding, deps};
    use crate::flow::error::FlowError;
    use crate::retry::RetryClass;
    use crate::sts::StsError;

    fn hop(tags: bool, transitive: bool, source_identity: bool, external_id: bool) -> ResolvedHop {
        ResolvedHop {
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            external_id: external_id.then(|| "ext-1".to_string()),
            session_name: "ns.b".into(),
            source_identity: source_identity.then(|| "alice".to_string()),
            tags: if tags {
                vec![("team".into(), "a".into())]
            } else {
                vec![]
            },
            transitive_tag_keys: if transitive {
                vec!["team".into()]
            } else {
                vec![]
            },
            session_policy: None,
            policy_arns: vec![],
            duration_seconds: 900,
        }
    }

    /// STS whose endpoint A cannot answer `AssumeRole`; B issues a session per hop.
    struct HopsFailAtA {
        tried: std::sync::Mutex<Vec<(String, String)>>,
    }

    impl crate::sts::StsClient for HopsFailAtA {
        fn assume_role_with_web_identity(
            &self,
            _request: crate::sts::WebIdentityRequest,
        ) -> futures::future::BoxFuture<'_, Result<IssuedCredentials, StsError>> {
            Box::pin(async { Err(crate::sts::unsupported("AssumeRoleWithWebIdentity")) })
        }

        fn assume_role(
            &self,
            request: AssumeRoleRequest,
        ) -> futures::future::BoxFuture<'_, Result<crate::sts::AssumedRole, StsError>> {
            let endpoint = request.target.endpoint.clone().unwrap_or_default();
            if let Ok(mut tried) = self.tried.lock() {
                tried.push((request.role_arn.clone(), endpoint.clone()));
            }
            Box::pin(async move {
                if endpoint == A {
                    return Err(StsError::new(
                        StsErrorKind::Unavailable,
                        Some("ServiceUnavailable"),
                        "HTTP 503",
                    )
                    .at_endpoint());
                }
                let Signer::Session(previous) = request.signer else {
                    panic!("a hop is signed with the previous session");
                };
                Ok(crate::sts::AssumedRole {
                    credentials: IssuedCredentials {
                        access_key_id: format!("{}-next", previous.access_key_id),
                        assumed_role_arn: Some(format!("{}/assumed", request.role_arn)),
                        ..previous
                    },
                    packed_policy_size: Some(1),
                })
            })
        }
    }

    #[tokio::test]
    async fn every_hop_fails_over_on_its_own() {
        let sts = std::sync::Arc::new(HopsFailAtA {
            tried: std::sync::Mutex::new(Vec::new()),
        });
        // No cool-down: each hop starts at A again, so each one has to fail over.
        let chain = RoleChain {
            deps: Arc::new(deps(sts.clone(), std::time::Duration::ZERO)),
        };
        let spec = binding(&[A, B], 2);
        let first = IssuedCredentials {
            access_key_id: "ASIAFIRST".into(),
            secret_access_key: secrecy::SecretString::from("s".to_string()),
            session_token: secrecy::SecretString::from("t".to_string()),
            expiration: jiff::Timestamp::now(),
            assumed_role_arn: None,
            chain: None,
            sts_endpoint: Some(A.into()),
        };
        let last = chain
            .hops_after(
                ExchangeRequest {
                    namespace: "ns",
                    binding: "b",
                    spec: &spec,
                },
                first,
            )
            .await
            .expect("B served both hops");
        assert_eq!(last.access_key_id, "ASIAFIRST-next-next");
        assert_eq!(last.sts_endpoint.as_deref(), Some(B));
        assert_eq!(last.chain.as_ref().map(|c| c.hops.len()), Some(2));
        let hop = |i: usize| format!("arn:aws:iam::123456789012:role/hop{i}");
        assert_eq!(
            *sts.tried.lock().expect("lock"),
            [
                (hop(0), A.to_string()),
                (hop(0), B.to_string()),
                (hop(1), A.to_string()),
                (hop(1), B.to_string()),
            ]
        );
    }

    #[test]
    fn access_denied_names_the_permission_the_chain_needed() {
        let plain = [hop(false, false, false, false)];
        assert_eq!(access_denied_hint(&plain, 0), "");
        let tagged = [hop(true, false, false, false)];
        let hint = access_denied_hint(&tagged, 0);
        assert!(hint.contains("must allow sts:TagSession"), "{hint}");
        assert!(!hint.contains("SetSourceIdentity"), "{hint}");
        // Inherited transitive tags and a source identity set upstream count for later hops.
        let chain = [hop(true, true, true, false), hop(false, false, false, true)];
        let hint = access_denied_hint(&chain, 1);
        assert!(hint.contains("sts:TagSession"), "{hint}");
        assert!(hint.contains("sts:SetSourceIdentity"), "{hint}");
        assert!(hint.contains("externalId must match"), "{hint}");
        assert_eq!(access_denied_hint(&chain, 7), "");
    }

    #[test]
    fn refused_hops_map_to_reasons_and_retry_classes() {
        for (code, category, class) in [
            ("AccessDenied", "StsAccessDenied", RetryClass::External),
            (
                "PackedPolicyTooLarge",
                "StsInvalidRequest",
                RetryClass::External,
            ),
            (
                "MalformedPolicyDocument",
                "StsInvalidRequest",
                RetryClass::External,
            ),
            (
                "RegionDisabledException",
                "StsInvalidRequest",
                RetryClass::External,
            ),
            ("ValidationError", "StsInvalidRequest", RetryClass::External),
            (
                "ExpiredTokenException",
                "StsExpiredToken",
                RetryClass::Transient,
            ),
            ("Throttling", "StsThrottled", RetryClass::Transient),
        ] {
            let e = HopError {
                index: 0,
                role_arn: "arn:aws:iam::123456789012:role/r".into(),
                error: StsError::new(StsErrorKind::from_code(code), Some(code), "m"),
                hint: String::new(),
            };
            assert_eq!((e.category(), e.retry_class()), (category, class), "{code}");
            assert_eq!(FlowError::from(e).category(), category, "{code}");
        }
    }

    #[test]
    fn expired_signing_credentials_are_retried_soon() {
        let expired = HopError {
            index: 1,
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            error: StsError::new(
                StsErrorKind::from_code("ExpiredToken"),
                Some("ExpiredToken"),
                "expired",
            ),
            hint: String::new(),
        };
        assert_eq!(expired.category(), "StsExpiredToken");
        assert_eq!(expired.retry_class(), RetryClass::Transient);
        let denied = HopError {
            error: StsError::new(StsErrorKind::AccessDenied, Some("AccessDenied"), "no"),
            hint: "; the trust policy of x must allow sts:TagSession".into(),
            ..expired
        };
        assert_eq!(denied.category(), "StsAccessDenied");
        assert_eq!(denied.retry_class(), RetryClass::External);
        assert!(
            denied
                .to_string()
                .starts_with("roleChain[1] (arn:aws:iam::123456789012:role/r): STS AccessDenied: no; the trust policy"),
            "{denied}"
        );
    }
}
