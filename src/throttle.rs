//! Client-side rate limits: STS calls always pass a token bucket (the account's STS quota is
//! shared with every other caller); Kubernetes requests only when the admin asks for one (the
//! apiserver protects itself with API priority and fairness).

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::settings::Settings;

pub struct Throttle {
    sts: DefaultDirectRateLimiter,
    /// None unless a client-side Kubernetes limit was asked for.
    kube: Option<DefaultDirectRateLimiter>,
}

fn quota(rate: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

impl Throttle {
    pub fn new(settings: &Settings) -> Self {
        Self {
            sts: RateLimiter::direct(quota(settings.sts_rate_per_second, settings.sts_burst)),
            kube: (settings.kube_rate_per_second > 0).then(|| {
                RateLimiter::direct(quota(
                    settings.kube_rate_per_second,
                    settings.kube_burst.max(settings.kube_rate_per_second),
                ))
            }),
        }
    }

    /// Waits for the STS rate limit.
    pub async fn sts(&self) {
        self.sts.until_ready().await;
    }

    /// Waits for the Kubernetes client rate limit, if one is set (watches are not counted:
    /// they are few).
    pub async fn kube(&self) {
        if let Some(limiter) = &self.kube {
            limiter.until_ready().await;
        }
    }
}
