//! Issuing sessions: one [`mint`] for role sessions and IAM users' sessions alike.

use jiff::{SignedDuration, Timestamp};

use crate::Dialect;
use crate::answer::StsFailure;
use crate::ids;
use crate::params::split_role_arn;
use crate::state::{Session, SessionKind, SessionTag, State};

/// What a new session carries from the chain it belongs to.
#[derive(Debug, Default)]
pub(crate) struct Carried {
    /// Every session tag of the new session (sent, and inherited as transitive tags).
    pub tags: Vec<SessionTag>,
    pub transitive_tags: Vec<SessionTag>,
    pub source_identity: Option<String>,
}

/// A session about to be issued (its caller already authorised).
#[derive(Debug)]
pub(crate) struct NewSession {
    pub kind: SessionKind,
    /// The ARN the session answers to: `assumed-role/...`, `federated-user/...`, or the user's.
    pub arn: String,
    /// `AssumedRoleId` / `FederatedUserId` / the user's ID.
    pub id: String,
    pub account: String,
    /// The IAM role (or, for user sessions, the IAM user) the session belongs to.
    pub owner: String,
    pub requested: u64,
    /// The session lasts at most this long whatever was asked (a test device, see
    /// [`crate::Role::lifetime_seconds`]); the request itself was already held to IAM's limits.
    pub lifetime: Option<u64>,
    pub carried: Carried,
}

/// An issued session: its access key ID, the session, and the seconds granted.
#[derive(Debug)]
pub(crate) struct Minted {
    pub access_key_id: String,
    pub session: Session,
    pub granted: u64,
}

/// Issues `new`: fresh keys and token, recorded so that calls signed with them verify.
pub(crate) fn mint(state: &mut State, new: NewSession) -> Minted {
    let granted = new
        .lifetime
        .map_or(new.requested, |lifetime| new.requested.min(lifetime));
    let access_key_id = ids::temporary_access_key_id();
    let session = Session {
        secret_access_key: ids::secret_access_key(),
        session_token: ids::session_token(),
        expiration: Timestamp::now() + SignedDuration::from_secs(granted as i64),
        assumed_role_arn: new.arn,
        assumed_role_id: new.id,
        account: new.account,
        role_arn: new.owner,
        kind: new.kind,
        tags: new.carried.tags,
        transitive_tags: new.carried.transitive_tags,
        source_identity: new.carried.source_identity,
    };
    state
        .sessions
        .insert(access_key_id.clone(), session.clone());
    Minted {
        access_key_id,
        session,
        granted,
    }
}

/// A session of `role_arn` (a role `state` knows) named `session_name`.
pub(crate) fn role_session(
    state: &State,
    dialect: Dialect,
    role_arn: &str,
    session_name: &str,
    requested: u64,
    carried: Carried,
) -> Result<NewSession, StsFailure> {
    let role = state.roles.get(role_arn).ok_or_else(|| {
        StsFailure::denied("Not authorized to perform sts:AssumeRoleWithWebIdentity")
    })?;
    let (partition, account, name) = split_role_arn(role_arn, dialect)
        .ok_or_else(|| StsFailure::validation("RoleArn is not a valid role ARN"))?;
    Ok(NewSession {
        kind: SessionKind::Role,
        arn: format!("arn:{partition}:sts::{account}:assumed-role/{name}/{session_name}"),
        id: format!("{}:{session_name}", ids::role_id()),
        account: account.to_string(),
        owner: role_arn.to_string(),
        requested,
        lifetime: role.role.lifetime_seconds,
        carried,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::register;
    use crate::state::Role;

    #[test]
    fn role_sessions_are_named_after_role_and_session_and_honour_the_lifetime() {
        let arn = "arn:aws:iam::123456789012:role/path/app";
        let mut state = State::default();
        let role = Role {
            arn: arn.into(),
            lifetime_seconds: Some(20),
            ..Role::default()
        };
        state.roles.insert(
            arn.into(),
            register(role, "https://issuer", Dialect::Aws).expect("valid"),
        );
        let new = role_session(&state, Dialect::Aws, arn, "ns.b", 3600, Carried::default())
            .expect("known role");
        assert_eq!(new.arn, "arn:aws:sts::123456789012:assumed-role/app/ns.b");
        assert!(new.id.starts_with("AROA") && new.id.ends_with(":ns.b"));
        let minted = mint(&mut state, new);
        assert_eq!(minted.granted, 20);
        assert!(state.sessions.contains_key(&minted.access_key_id));
        assert_eq!(minted.session.role_arn, arn);
        assert!(
            role_session(
                &state,
                Dialect::Aws,
                "arn:aws:iam::123456789012:role/unknown",
                "s1",
                900,
                Carried::default()
            )
            .is_err()
        );
    }
}
