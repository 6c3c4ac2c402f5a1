//! TokenReview (`authentication.k8s.io/v1`) for the broker, with a short cache: an
//! authenticated token's review is reused for at most [`REVIEW_TTL`], keyed by a SHA-256 of the
//! audience and the token (the token itself is never kept). Refusals are not cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use super::authorize::Reviewed;

/// How long an authenticated token's review is reused: a deleted pod's token, or a pod moved
/// away, is refused at most this long after.
pub const REVIEW_TTL: Duration = Duration::from_secs(30);
/// Most reviews kept; past it the cache starts over (tokens are cheap to review again).
const MAX_CACHED: usize = 16_384;

/// What a review said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Authenticated(Reviewed),
    /// The apiserver's reason (signature, audience, expiry, deleted pod...).
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
#[error("TokenReview failed: {0}")]
pub struct ReviewError(pub String);

pub struct Reviewer {
    api: Api<TokenReview>,
    cache: Mutex<HashMap<[u8; 32], (Instant, Reviewed)>>,
}

fn key(audience: &str, token: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(audience.as_bytes());
    hash.update([0]);
    hash.update(token.as_bytes());
    hash.finalize().into()
}

impl Reviewer {
    pub fn new(client: kube::Client) -> Self {
        Self {
            api: Api::all(client),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Reviewed> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < REVIEW_TTL)
            .map(|(_, r)| r.clone())
    }

    fn remember(&self, key: [u8; 32], reviewed: &Reviewed) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < REVIEW_TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), reviewed.clone()));
    }

    /// Reviews `token` for `audience`.
    pub async fn review(&self, token: &str, audience: &str) -> Result<Verdict, ReviewError> {
        let key = key(audience, token);
        if let Some(reviewed) = self.cached(&key) {
            return Ok(Verdict::Authenticated(reviewed));
        }
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![audience.to_string()]),
            },
            ..TokenReview::default()
        };
        let answer = self
            .api
            .create(&PostParams::default(), &request)
            .await
            .map_err(|e| {
                ReviewError(match e {
                    kube::Error::Api(status) => crate::text::remote(&status.message),
                    other => crate::text::remote(&other.to_string()),
                })
            })?;
        let verdict = verdict(answer.status.unwrap_or_default(), audience);
        if let Verdict::Authenticated(reviewed) = &verdict {
            self.remember(key, reviewed);
        }
        Ok(verdict)
    }
}

/// Reads a TokenReview's status: authenticated for `audience`, or why not.
fn verdict(
    status: k8s_openapi::api::authentication::v1::TokenReviewStatus,
    audience: &str,
) -> Verdict {
    if status.authenticated != Some(true) {
        return Verdict::Refused(crate::text::remote(
            status
                .error
                .as_deref()
                .unwrap_or("the token is not authenticated"),
        ));
    }
    // The apiserver answers the audiences the token was checked for; an empty list would mean
    // it ignored ours.
    if !status
        .audiences
        .as_ref()
        .is_some_and(|a| a.iter().any(|x| x == audience))
    {
        return Verdict::Refused(format!("the token is not valid for audience {audience}"));
    }
    let user = status.user.unwrap_or_default();
    Verdict::Authenticated(Reviewed {
        username: user.username.unwrap_or_default(),
        extra: user.extra.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};

    #[test]
    fn only_an_authenticated_answer_for_our_audience_counts() {
        let ok = TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(vec!["podcreds.dev/endpoint".into()]),
            user: Some(UserInfo {
                username: Some("system:serviceaccount:a:b".into()),
                ..UserInfo::default()
            }),
            ..TokenReviewStatus::default()
        };
        assert!(matches!(
            verdict(ok.clone(), "podcreds.dev/endpoint"),
            Verdict::Authenticated(r) if r.username == "system:serviceaccount:a:b"
        ));
        assert!(matches!(
            verdict(ok.clone(), "other"),
            Verdict::Refused(m) if m.contains("audience other")
        ));
        let refused = TokenReviewStatus {
            authenticated: Some(false),
            error: Some("token audiences [\"x\"] is invalid for the target audiences".into()),
            ..TokenReviewStatus::default()
        };
        assert!(matches!(
            verdict(refused, "podcreds.dev/endpoint"),
            Verdict::Refused(m) if m.contains("invalid for the target audiences")
        ));
        assert!(matches!(
            verdict(TokenReviewStatus::default(), "a"),
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn the_cache_key_depends_on_audience_and_token_and_holds_neither() {
        assert_ne!(key("a", "t"), key("b", "t"));
        assert_ne!(key("a", "t"), key("a", "u"));
        assert_ne!(key("ab", "c"), key("a", "bc"));
    }
}
