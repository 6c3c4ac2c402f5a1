//! An AWS STS emulator for podcreds' tests and demo.
//!
//! It speaks the STS Query API on loopback and checks what real STS checks: web identity tokens
//! against the issuer's JWKS (signature, `iss`, `aud`, `exp`/`nbf`) and the role's trust rule
//! (`sub`), STS parameter limits, and SigV4 signatures of calls made with the credentials it
//! issued. A control API under `/_emulator/` configures roles, injects faults and reports calls.
//! On the same listener, `POST /sessions` is IAM Roles Anywhere's `CreateSession`: X.509 SigV4
//! signatures, certificate chains to registered trust anchors, profiles and the role's trust
//! policy for `rolesanywhere.amazonaws.com` (see [`roles_anywhere`]).
//!
//! Layout: `server` routes and injects faults, `actions` holds one module per STS action,
//! `params` the parameter rules they share, `mint` issues sessions, `answer` writes the XML,
//! `control` serves `/_emulator/*`, and [`state`] keeps roles, sessions and the call log.
#![forbid(unsafe_code)]

mod actions;
mod answer;
mod control;
mod ids;
mod mint;
pub mod oidc;
mod params;
pub mod roles;
pub mod roles_anywhere;
pub mod saml;
mod server;
pub mod sigv4;
pub mod state;
pub mod trust_policy;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use actions::ecr::{DEFAULT_TOKEN_LIFETIME_SECONDS, EcrSettings, EcrToken};
pub use control::CallLog;
pub use params::PACKED_CAPACITY;
pub use roles::RoleError;
pub use roles_anywhere::{Profile, Revocation, RolesAnywhereError, TrustAnchor};
pub use state::{CallRecord, Counters, Faults, Role, SamlProvider, SessionTag, User};
pub use trust_policy::{
    Condition, Effect, Operator, Principal, SetOperator, Statement, Test, TrustPolicy,
    TrustPolicyError, role_from_trust_policy,
};

use state::State;

/// How the emulator is set up.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// The OIDC issuer whose tokens are accepted (the cluster's `--service-account-issuer`).
    pub issuer: String,
    /// PEM trust anchors for the issuer's TLS certificate.
    pub issuer_ca_pem: Option<Vec<u8>>,
    /// Roles known from the start.
    pub roles: Vec<Role>,
    /// Whose role ARNs and error documents the emulator speaks.
    pub dialect: Dialect,
    /// The regions the emulator serves: a signed call whose SigV4 credential scope names another
    /// is refused, as a regional STS endpoint refuses it (`us-east-1` alone, like the global
    /// endpoint, unless a test serves more).
    pub regions: Vec<String>,
}

/// The STS implementation the emulator imitates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dialect {
    /// AWS: role ARNs with a 12-digit account; errors in an `<ErrorResponse>` document.
    #[default]
    Aws,
    /// Ceph RGW: role ARNs `arn:aws:iam::<tenant>:role/...` whose tenant may be empty (the
    /// default tenant); errors in RGW's S3-style `<Error>` document (no `<ErrorResponse>`
    /// wrapper, usually no message), and RGW's codes where they differ from AWS's.
    CephRgw,
}

impl Config {
    /// On a free loopback port, trusting `issuer` (whose TLS certificate `ca_pem` signed), with
    /// no roles yet.
    pub fn for_issuer(issuer: &str, ca_pem: &str) -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            issuer: issuer.to_string(),
            issuer_ca_pem: Some(ca_pem.as_bytes().to_vec()),
            roles: Vec::new(),
            dialect: Dialect::Aws,
            regions: vec![DEFAULT_REGION.to_string()],
        }
    }
}

/// The region a signed call names unless the emulator serves others ([`Config::regions`]).
pub const DEFAULT_REGION: &str = "us-east-1";

/// What the server's handlers share.
pub(crate) struct Inner {
    state: Mutex<State>,
    keys: Arc<oidc::IssuerKeys>,
    dialect: Dialect,
    regions: Vec<String>,
}

impl Inner {
    pub(crate) fn add_role(&self, role: Role) -> Result<(), RoleError> {
        let registered = roles::register(role, self.keys.issuer(), self.dialect)?;
        self.state()
            .roles
            .insert(registered.role.arn.clone(), registered);
        Ok(())
    }

    pub(crate) fn add_trust_anchor(&self, anchor: TrustAnchor) -> Result<(), RolesAnywhereError> {
        let mut registered = roles_anywhere::register_trust_anchor(anchor)?;
        let mut state = self.state();
        // Replacing an anchor (update-trust-anchor) keeps what was revoked under it.
        if let Some(old) = state.trust_anchors.get(&registered.anchor.arn) {
            registered.revoked_serials = old.revoked_serials.clone();
            registered.crl_entries = old.crl_entries.clone();
        }
        state
            .trust_anchors
            .insert(registered.anchor.arn.clone(), registered);
        Ok(())
    }

    pub(crate) fn add_profile(&self, profile: Profile) -> Result<(), RolesAnywhereError> {
        roles_anywhere::check_profile(&profile)?;
        self.state().profiles.insert(profile.arn.clone(), profile);
        Ok(())
    }

    pub(crate) fn revoke(&self, revocation: &Revocation) -> Result<(), RolesAnywhereError> {
        let mut state = self.state();
        let anchor = state
            .trust_anchors
            .get_mut(&revocation.trust_anchor_arn)
            .ok_or_else(|| {
                RolesAnywhereError::UnknownTrustAnchor(revocation.trust_anchor_arn.clone())
            })?;
        anchor.revoke(revocation)
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// A running emulator; dropping the handle does not stop it, [`Emulator::shutdown`] does.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Arc<tokio::sync::Notify>,
}

impl Emulator {
    /// Binds `config.listen` and serves until [`Emulator::shutdown`].
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let keys = oidc::IssuerKeys::new(&config.issuer, config.issuer_ca_pem.as_deref())?;
        let mut state = State::default();
        for role in config.roles {
            let registered = roles::register(role, keys.issuer(), config.dialect)?;
            state.roles.insert(registered.role.arn.clone(), registered);
        }
        let regions = if config.regions.is_empty() {
            vec![DEFAULT_REGION.to_string()]
        } else {
            config.regions
        };
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            keys,
            dialect: config.dialect,
            regions,
        });
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(tokio::sync::Notify::new());
        let app = server::router(inner.clone());
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.notified().await })
                .await;
        });
        Ok(Self { inner, addr, stop })
    }

    /// The STS endpoint URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers (or replaces) `role`, as `iam create-role` / `update-assume-role-policy` /
    /// `update-role` would.
    ///
    /// # Panics
    ///
    /// If IAM would refuse the role (see [`Emulator::try_add_role`]): a test that registers such
    /// a role is wrong about IAM.
    pub fn add_role(&self, role: Role) {
        let arn = role.arn.clone();
        if let Err(e) = self.try_add_role(role) {
            panic!("the emulator refuses role {arn}: {e}");
        }
    }

    /// Registers (or replaces) `role`; refused if IAM would refuse it (an invalid ARN, a
    /// `MaxSessionDuration` outside 3,600..=43,200, a wildcard in a principal ARN) or if its
    /// trust policy holds what the emulator does not understand.
    pub fn try_add_role(&self, role: Role) -> Result<(), RoleError> {
        self.inner.add_role(role)
    }

    /// Registers (or replaces) an IAM SAML provider from IdP metadata, as
    /// `create-saml-provider` / `update-saml-provider` do.
    pub fn add_saml_provider(&self, arn: &str, metadata: &str) -> Result<(), String> {
        let provider = saml::provider_from_metadata(arn, metadata)?;
        self.inner
            .state()
            .saml_providers
            .insert(arn.to_string(), provider);
        Ok(())
    }

    /// Registers (or replaces) an IAM Roles Anywhere trust anchor, as `create-trust-anchor` /
    /// `update-trust-anchor` with a `CERTIFICATE_BUNDLE` source: refused if a certificate of
    /// the bundle is not a CA Roles Anywhere accepts (v3, `CA:true`, `keyCertSign`, SHA-256 or
    /// stronger). What was revoked under an anchor stays revoked when it is replaced.
    pub fn add_trust_anchor(&self, anchor: TrustAnchor) -> Result<(), RolesAnywhereError> {
        self.inner.add_trust_anchor(anchor)
    }

    /// Registers (or replaces) an IAM Roles Anywhere profile, as `create-profile` /
    /// `update-profile`.
    pub fn add_profile(&self, profile: Profile) -> Result<(), RolesAnywhereError> {
        self.inner.add_profile(profile)
    }

    /// Revokes certificates under a trust anchor: serial numbers (hex), or the entries of an
    /// X.509 CRL signed by one of its CAs, as `import-crl`.
    pub fn revoke(&self, revocation: &Revocation) -> Result<(), RolesAnywhereError> {
        self.inner.revoke(revocation)
    }

    /// Revokes the certificate with serial number `serial_hex` under `trust_anchor_arn`.
    pub fn revoke_serial(
        &self,
        trust_anchor_arn: &str,
        serial_hex: &str,
    ) -> Result<(), RolesAnywhereError> {
        self.revoke(&Revocation {
            trust_anchor_arn: trust_anchor_arn.to_string(),
            serials: vec![serial_hex.to_string()],
            crl_pem: None,
        })
    }

    /// Registers an IAM user's long-term keys (a user may hold several: call once per key).
    pub fn add_user(&self, user: User) {
        self.inner
            .state()
            .users
            .insert(user.access_key_id.clone(), user);
    }

    /// Deletes an access key: calls signed with it are refused from now on, as after
    /// `iam delete-access-key`.
    pub fn remove_access_key(&self, access_key_id: &str) {
        self.inner.state().users.remove(access_key_id);
    }

    /// Credentials of a new session of `role_arn` (a known role), as if a web identity exchange
    /// had just issued them: (access key ID, secret access key, session token). For tests that
    /// start in the middle of a role chain.
    pub fn session_for(&self, role_arn: &str) -> Option<(String, String, String)> {
        let mut state = self.inner.state();
        let new = mint::role_session(
            &state,
            self.inner.dialect,
            role_arn,
            "seeded-session",
            3600,
            mint::Carried::default(),
        )
        .ok()?;
        let minted = mint::mint(&mut state, new);
        Some((
            minted.access_key_id,
            minted.session.secret_access_key,
            minted.session.session_token,
        ))
    }

    /// ECR's settings from now on (token lifetime, `proxyEndpoint`).
    pub fn set_ecr(&self, settings: EcrSettings) {
        self.inner.state().ecr = settings;
    }

    /// The ECR tokens still valid (the registry's passwords for the user `AWS`).
    pub fn ecr_tokens(&self) -> Vec<EcrToken> {
        control::valid_ecr_tokens(&self.inner.state())
    }

    /// Withdraws every ECR token issued so far, as if they had expired.
    pub fn expire_ecr_tokens(&self) {
        self.inner.state().ecr_tokens.clear();
    }

    pub fn set_faults(&self, faults: Faults) {
        self.inner.state().set_faults(faults);
    }

    pub fn calls(&self) -> CallLog {
        CallLog::of(&self.inner.state())
    }

    /// Calls of `action` that got this far (all results).
    pub fn count(&self, action: &str) -> u64 {
        self.inner
            .state()
            .counters
            .by_action
            .get(action)
            .copied()
            .unwrap_or(0)
    }

    pub fn shutdown(&self) {
        self.stop.notify_one();
    }
}
