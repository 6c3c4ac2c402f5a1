//! Act step for a binding that is no longer allowed credentials (its role left the namespace's
//! allowlist; its credential source stopped allowing the namespace or was deleted): the
//! credentials already in its Secret are removed once the admin's grace period has passed
//! ([`crate::plan::revocation`] decides), the Secret itself is kept.

use jiff::Timestamp;
use tracing::warn;

use super::BindingKey;
use super::context::Context;
use super::observe;
use super::secret_writer::{self, SecretWriteError};
use crate::api::AWSRoleBindingStatus;
use crate::plan::{self, Revocation};
use crate::secret::ObservedSecret;
use crate::status::{CONDITION_REVOKED, revoked_since};

/// What became of the credentials in the Secret of a binding no longer allowed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// The Secret holds none (any more).
    Nothing,
    /// They are removed at this time.
    Scheduled(Timestamp),
    /// They were removed just now.
    Done,
}

#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error(transparent)]
    Observe(#[from] observe::ObserveError),
    #[error(transparent)]
    Write(#[from] SecretWriteError),
}

impl RevokeError {
    pub fn category(&self) -> &'static str {
        match self {
            RevokeError::Observe(e) => e.category(),
            RevokeError::Write(e) => e.category(),
        }
    }
}

/// Whether the status says the credentials were already removed.
fn revoked_before(status: Option<&AWSRoleBindingStatus>) -> bool {
    status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == CONDITION_REVOKED && c.status == "True")
    })
}

/// Whether the binding's Secret, as observed, holds credentials: it is the binding's, and either
/// says what credentials it holds or was not emptied by a revocation the status records.
pub fn holds_credentials(secret: &ObservedSecret, status: Option<&AWSRoleBindingStatus>) -> bool {
    match secret {
        ObservedSecret::Owned {
            issued: Some(_), ..
        } => true,
        ObservedSecret::Owned { issued: None, .. } => !revoked_before(status),
        ObservedSecret::Missing | ObservedSecret::Foreign { .. } => false,
    }
}

/// Removes, or schedules the removal of, the credentials in Secret `secret_name` of binding
/// `key`, which is not allowed them (`category`). `status` is the binding's status as far as this
/// process knows it.
pub async fn revoke(
    ctx: &Context,
    key: &BindingKey,
    secret_name: &str,
    category: &'static str,
    status: Option<&AWSRoleBindingStatus>,
) -> Result<Revoked, RevokeError> {
    let shared = &ctx.shared;
    let observation = observe::observe(ctx, key, secret_name, false, status).await?;
    let now = Timestamp::now();
    let decision = plan::revocation(
        holds_credentials(&observation.secret, status),
        revoked_since(status),
        shared.settings.revocation_grace,
        now,
    );
    match decision {
        Revocation::Nothing => Ok(Revoked::Nothing),
        Revocation::At(at) => Ok(Revoked::Scheduled(at)),
        Revocation::Now => {
            let written = secret_writer::remove_credentials(
                shared.client.clone(),
                &shared.throttle,
                &key.namespace,
                secret_name,
                observation.version.as_deref(),
            )
            .await?;
            if let Some(version) = written.version {
                shared.memory.remember_secret_write(&key.uid, version, None);
            }
            shared.metrics.revoked(category);
            warn!(
                binding = %key.name,
                namespace = %key.namespace,
                secret = %secret_name,
                category,
                "removed the credentials of a binding that is no longer allowed them"
            );
            Ok(Revoked::Done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn status_with(revoked: &str) -> AWSRoleBindingStatus {
        AWSRoleBindingStatus {
            conditions: vec![Condition {
                type_: CONDITION_REVOKED.into(),
                status: revoked.into(),
                reason: "RoleNotAllowed".into(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            }],
            ..AWSRoleBindingStatus::default()
        }
    }

    #[test]
    fn only_a_secret_of_the_binding_that_was_not_emptied_holds_credentials() {
        let emptied = ObservedSecret::Owned {
            issued: None,
            intact: true,
        };
        assert!(!holds_credentials(&emptied, Some(&status_with("True"))));
        // Unreadable annotations, no revocation on record: the keys may still be there.
        assert!(holds_credentials(&emptied, Some(&status_with("False"))));
        assert!(holds_credentials(&emptied, None));
        assert!(!holds_credentials(&ObservedSecret::Missing, None));
        assert!(!holds_credentials(
            &ObservedSecret::Foreign { owner: None },
            None
        ));
    }
}
