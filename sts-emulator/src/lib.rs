//! An AWS STS emulator for podcreds' tests and demo.
//!
//! It speaks the STS Query API on loopback and checks what real STS checks: web identity tokens
//! against the issuer's JWKS (signature, `iss`, `aud`, `exp`/`nbf`) and the role's trust rule
//! (`sub`), STS parameter limits, and SigV4 signatures of calls made with the credentials it
//! issued. A control API under `/_emulator/` configures roles, injects faults and reports calls.
#![forbid(unsafe_code)]

pub mod oidc;
pub mod saml;
pub mod sigv4;
pub mod state;
pub mod trust_policy;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use state::{CallRecord, Counters, Faults, Role, SessionTag, User};
use state::{Injected, Session, SessionKind, State};
pub use trust_policy::{TrustPolicyError, role_from_trust_policy};

const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// AWS's answer when it cannot fetch the issuer's keys.
const IDP_UNREACHABLE: &str = "Couldn't retrieve verification key from your identity provider, please reference AssumeRoleWithWebIdentity documentation for requirements";

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
        }
    }
}

struct Inner {
    state: Mutex<State>,
    keys: Arc<oidc::IssuerKeys>,
    dialect: Dialect,
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
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

/// Snapshot returned by `GET /_emulator/calls`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallLog {
    pub counters: Counters,
    pub calls: Vec<CallRecord>,
}

impl Emulator {
    /// Binds `config.listen` and serves until [`Emulator::shutdown`].
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let keys = oidc::IssuerKeys::new(&config.issuer, config.issuer_ca_pem.as_deref())?;
        let mut state = State::default();
        for role in config.roles {
            state.roles.insert(role.arn.clone(), role);
        }
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            keys,
            dialect: config.dialect,
        });
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(tokio::sync::Notify::new());
        let app = Router::new()
            .route("/", post(sts_action).get(sts_action))
            .route("/_emulator/roles", post(put_role).get(list_roles))
            .route(
                "/_emulator/saml-providers",
                post(put_saml_provider).get(list_saml_providers),
            )
            .route("/_emulator/users", post(put_user))
            .route("/_emulator/faults", post(put_faults).get(get_faults))
            .route("/_emulator/calls", get(get_calls))
            .route("/_emulator/reset", post(reset_calls))
            .route("/_emulator/healthz", get(|| async { "ok" }))
            .with_state(inner.clone());
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

    pub fn add_role(&self, role: Role) {
        self.inner.state().roles.insert(role.arn.clone(), role);
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
        let (key, session, _) = issue(
            &mut state,
            self.inner.dialect,
            role_arn,
            "seeded-session",
            3600,
            Carried::default(),
        )
        .ok()?;
        Some((key, session.secret_access_key, session.session_token))
    }

    pub fn set_faults(&self, faults: Faults) {
        self.inner.state().set_faults(faults);
    }

    pub fn calls(&self) -> CallLog {
        let s = self.inner.state();
        CallLog {
            counters: s.counters.clone(),
            calls: s.calls.clone(),
        }
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

#[derive(Debug)]
struct StsFailure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl StsFailure {
    fn sender(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }
    fn denied(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "AccessDenied",
            message: message.into(),
        }
    }
}

fn request_id() -> String {
    let mut rng = rand::rng();
    let a: u32 = rng.random();
    let b: u16 = rng.random();
    let c: u64 = rng.random();
    format!("{a:08x}-{b:04x}-4000-8000-{:012x}", c & 0xffff_ffff_ffff)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn error_response(f: &StsFailure, dialect: Dialect) -> Response {
    if dialect == Dialect::CephRgw {
        return ceph_error_response(f);
    }
    let kind = if f.status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        f.code,
        xml_escape(&f.message),
        request_id()
    );
    (f.status, [("content-type", "text/xml")], body).into_response()
}

/// RGW's error document: S3's `<Error>` root, its own codes for what AWS calls otherwise, and
/// (as RGW sends for most STS failures) an empty message.
fn ceph_error_response(f: &StsFailure) -> Response {
    let (status, code) = match f.code {
        // RGW refuses tokens it cannot verify while authenticating the request.
        "AccessDenied" | "InvalidIdentityToken" | "ExpiredTokenException" | "IDPRejectedClaim" => {
            (StatusCode::FORBIDDEN, "AccessDenied")
        }
        "ValidationError" | "MalformedPolicyDocument" => {
            (StatusCode::BAD_REQUEST, "InvalidArgument")
        }
        "Throttling" => (StatusCode::SERVICE_UNAVAILABLE, "SlowDown"),
        "InternalFailure" => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        other => (f.status, other),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message></Message><RequestId>tx{}-default</RequestId><HostId>emulator-default-default</HostId></Error>",
        random_string(24, b"0123456789abcdef"),
    );
    (status, [("content-type", "application/xml")], body).into_response()
}

fn ok_xml(action: &str, result: String) -> Response {
    let body = format!(
        "<{action}Response xmlns=\"{XMLNS}\">\n  <{action}Result>\n{result}  </{action}Result>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</{action}Response>\n",
        request_id()
    );
    (StatusCode::OK, [("content-type", "text/xml")], body).into_response()
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// `arn:aws:iam::123456789012:role/path/name` -> (`aws`, `123456789012`, `name`). With the Ceph
/// dialect the account is a tenant (letters, digits, `_`), possibly empty, and the partition is
/// always `aws`.
fn split_role_arn(arn: &str, dialect: Dialect) -> Option<(&str, &str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(":iam::")?;
    let (account, path) = rest.split_once(":role/")?;
    let name = path.rsplit('/').next()?;
    let account_ok = match dialect {
        Dialect::Aws => account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()),
        Dialect::CephRgw => {
            partition == "aws"
                && account.len() <= 64
                && account
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
    };
    (!name.is_empty() && account_ok).then_some((partition, account, name))
}

fn session_name_ok(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

/// What a new session carries from the chain it belongs to.
#[derive(Default)]
struct Carried {
    transitive_tags: Vec<SessionTag>,
    source_identity: Option<String>,
}

/// Issues a session for `role_arn` (already authorised) for at most `max_seconds`.
fn issue(
    state: &mut State,
    dialect: Dialect,
    role_arn: &str,
    session_name: &str,
    requested: u64,
    carried: Carried,
) -> Result<(String, Session, u64), StsFailure> {
    let role = state.roles.get(role_arn).ok_or_else(|| {
        StsFailure::denied("Not authorized to perform sts:AssumeRoleWithWebIdentity")
    })?;
    let granted = role
        .max_session_seconds
        .map_or(requested, |max| requested.min(max));
    let (partition, account, name) = split_role_arn(role_arn, dialect)
        .ok_or_else(|| StsFailure::sender("ValidationError", "RoleArn is not a valid role ARN"))?;
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let access_key_id = format!("ASIA{}", random_string(16, UPPER));
    let role_id = format!("AROA{}", random_string(17, UPPER));
    let session = Session {
        secret_access_key: random_string(40, SECRET),
        session_token: format!("FwoGZXIvYXdzE{}", random_string(300, SECRET)),
        expiration: Timestamp::now() + SignedDuration::from_secs(granted as i64),
        assumed_role_arn: format!(
            "arn:{partition}:sts::{account}:assumed-role/{name}/{session_name}"
        ),
        assumed_role_id: format!("{role_id}:{session_name}"),
        account: account.to_string(),
        role_arn: role_arn.to_string(),
        kind: SessionKind::Role,
        transitive_tags: carried.transitive_tags,
        source_identity: carried.source_identity,
    };
    state
        .sessions
        .insert(access_key_id.clone(), session.clone());
    Ok((access_key_id, session, granted))
}

fn credentials_xml(access_key_id: &str, s: &Session) -> String {
    format!(
        "    <AssumedRoleUser>\n      <Arn>{}</Arn>\n      <AssumedRoleId>{}</AssumedRoleId>\n    </AssumedRoleUser>\n    <Credentials>\n      <AccessKeyId>{access_key_id}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n",
        xml_escape(&s.assumed_role_arn),
        xml_escape(&s.assumed_role_id),
        xml_escape(&s.secret_access_key),
        xml_escape(&s.session_token),
        rfc3339(s.expiration),
    )
}

type Params = std::collections::HashMap<String, String>;

async fn sts_action(
    AxumState(inner): AxumState<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().unwrap_or("");
    let mut params: Params = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if method == Method::POST {
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    let action = params.get("Action").cloned().unwrap_or_default();

    let (fault, latency) = inner.state().next_fault(&action);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut record = CallRecord {
        at: rfc3339(Timestamp::now()),
        action: action.clone(),
        role_arn: params.get("RoleArn").cloned(),
        subject: None,
        audience: None,
        session_name: params.get("RoleSessionName").cloned(),
        duration_seconds: params.get("DurationSeconds").and_then(|d| d.parse().ok()),
        granted_seconds: None,
        access_key_id: None,
        result: String::new(),
        ..CallRecord::default()
    };
    let injected = match fault {
        Injected::None => None,
        Injected::Down => Some(StsFailure {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "ServiceUnavailable",
            message: "Service is unavailable".into(),
        }),
        Injected::Throttle => Some(StsFailure::sender("Throttling", "Rate exceeded")),
        Injected::InternalFailure => Some(StsFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalFailure",
            message: "An internal error occurred".into(),
        }),
        Injected::IdpError => Some(StsFailure::sender("IDPCommunicationError", IDP_UNREACHABLE)),
        Injected::Code(code) => Some(StsFailure {
            status: if code == "AccessDenied" {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_REQUEST
            },
            code: known_code(&code),
            message: format!("injected {code}"),
        }),
        Injected::Malformed => {
            record.result = "Malformed".into();
            inner.state().record(record);
            let body = format!(
                "<{action}Response xmlns=\"{XMLNS}\"><{action}Result><Credentials><AccessKeyId>ASIA"
            );
            return (StatusCode::OK, [("content-type", "text/xml")], body).into_response();
        }
    };
    let outcome = match injected {
        Some(f) => Err(f),
        None => match action.as_str() {
            "AssumeRoleWithWebIdentity" => {
                assume_role_with_web_identity(&inner, &params, &mut record).await
            }
            "AssumeRoleWithSAML" => assume_role_with_saml(&inner, &params, &mut record).await,
            "GetCallerIdentity" | "AssumeRole" | "GetFederationToken" | "GetSessionToken" => {
                let request = sigv4::SignedRequest {
                    method: method.as_str(),
                    path: uri.path(),
                    query: uri.query().unwrap_or(""),
                    headers: &headers,
                    body: &body,
                };
                signed_action(&inner, &action, &request, &params, &mut record)
            }
            "" => Err(StsFailure::sender("MissingAction", "Missing Action")),
            _ => Err(StsFailure::sender(
                "InvalidAction",
                format!("Could not find operation {action}"),
            )),
        },
    };
    record.result = match &outcome {
        Ok(_) => "Ok".into(),
        Err(f) => f.code.into(),
    };
    inner.state().record(record);
    match outcome {
        Ok(r) => r,
        Err(f) => error_response(&f, inner.dialect),
    }
}

/// The injectable error codes (the failure type holds a static code, like real answers).
fn known_code(code: &str) -> &'static str {
    const CODES: [&str; 10] = [
        "AccessDenied",
        "ExpiredTokenException",
        "IDPRejectedClaim",
        "IDPCommunicationError",
        "InvalidIdentityToken",
        "MalformedPolicyDocument",
        "PackedPolicyTooLarge",
        "RegionDisabledException",
        "Throttling",
        "ValidationError",
    ];
    CODES
        .into_iter()
        .find(|c| *c == code)
        .unwrap_or("InternalFailure")
}

fn validate_common(params: &Params, dialect: Dialect) -> Result<(String, String, u64), StsFailure> {
    let role_arn = params
        .get("RoleArn")
        .cloned()
        .ok_or_else(|| StsFailure::sender("ValidationError", "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null"))?;
    if role_arn.len() < 20 || role_arn.len() > 2048 || split_role_arn(&role_arn, dialect).is_none()
    {
        return Err(StsFailure::sender(
            "ValidationError",
            "RoleArn is not a valid role ARN",
        ));
    }
    let session = params.get("RoleSessionName").cloned().unwrap_or_default();
    if !session_name_ok(&session) {
        return Err(StsFailure::sender(
            "ValidationError",
            "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and length 2..64",
        ));
    }
    let duration = match params.get("DurationSeconds") {
        None => 3600,
        Some(d) => d
            .parse::<u64>()
            .ok()
            .filter(|d| (900..=43200).contains(d))
            .ok_or_else(|| {
                StsFailure::sender(
                    "ValidationError",
                    "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200",
                )
            })?,
    };
    if let Some(policy) = params.get("Policy") {
        if policy.len() > 2048 {
            return Err(StsFailure::sender(
                "ValidationError",
                "1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to 2048",
            ));
        }
        if !serde_json::from_str::<serde_json::Value>(policy).is_ok_and(|v| v.is_object()) {
            return Err(StsFailure::sender(
                "MalformedPolicyDocument",
                "The policy is not valid JSON",
            ));
        }
    }
    if params
        .keys()
        .filter(|k| k.starts_with("PolicyArns.member.") && k.ends_with(".arn"))
        .count()
        > 10
    {
        return Err(StsFailure::sender(
            "ValidationError",
            "1 validation error detected: Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to 10",
        ));
    }
    Ok((role_arn, session, duration))
}

async fn assume_role_with_web_identity(
    inner: &Inner,
    params: &Params,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    let (role_arn, session_name, requested) = validate_common(params, inner.dialect)?;
    let token = params.get("WebIdentityToken").cloned().unwrap_or_default();
    if !(4..=20000).contains(&token.len()) {
        return Err(StsFailure::sender(
            "ValidationError",
            "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length between 4 and 20000",
        ));
    }
    let role = inner.state().roles.get(&role_arn).cloned();
    let audiences = role
        .as_ref()
        .map(Role::accepted_audiences)
        .unwrap_or_else(|| vec!["sts.amazonaws.com".into()]);
    let now = Timestamp::now().as_second() + inner.state().faults.clock_skew_seconds;
    let claims = inner
        .keys
        .verify(&token, &audiences, now)
        .await
        .map_err(|e| match e {
            oidc::TokenRejection::Expired => {
                StsFailure::sender("ExpiredTokenException", "Token is expired")
            }
            oidc::TokenRejection::Invalid(m) => StsFailure::sender("InvalidIdentityToken", m),
            oidc::TokenRejection::Unreachable(detail) => {
                tracing::warn!(%detail, "the issuer's keys could not be fetched");
                StsFailure::sender("IDPCommunicationError", IDP_UNREACHABLE)
            }
        })?;
    record.subject = Some(claims.sub.clone());
    record.audience = claims.aud.first().cloned();
    let role = role.ok_or_else(|| {
        StsFailure::denied("Not authorized to perform sts:AssumeRoleWithWebIdentity")
    })?;
    if !role.allows_subject(&claims.sub) {
        return Err(StsFailure::denied(
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        ));
    }
    let (access_key_id, session, granted) = issue(
        &mut inner.state(),
        inner.dialect,
        &role_arn,
        &session_name,
        requested,
        Carried::default(),
    )?;
    record.granted_seconds = Some(granted);
    record.access_key_id = Some(access_key_id.clone());
    let audience = claims
        .aud
        .iter()
        .find(|a| audiences.contains(a))
        .cloned()
        .unwrap_or_default();
    let provider = claims.iss.trim_start_matches("https://").to_string();
    let result = format!(
        "    <SubjectFromWebIdentityToken>{}</SubjectFromWebIdentityToken>\n    <Audience>{}</Audience>\n{}    <Provider>{}</Provider>\n",
        xml_escape(&claims.sub),
        xml_escape(&audience),
        credentials_xml(&access_key_id, &session),
        xml_escape(&provider),
    );
    Ok(ok_xml("AssumeRoleWithWebIdentity", result))
}

async fn assume_role_with_saml(
    inner: &Inner,
    params: &Params,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    let refused = |r: saml::Refused| StsFailure::sender(r.code, r.message);
    let encoded = params.get("SAMLAssertion").cloned().unwrap_or_default();
    if !(4..=100_000).contains(&encoded.len()) {
        return Err(StsFailure::sender(
            "ValidationError",
            "1 validation error detected: Value at 'SAMLAssertion' failed to satisfy constraint: Member must have length between 4 and 100000",
        ));
    }
    let principal = params.get("PrincipalArn").cloned().unwrap_or_default();
    let provider = inner
        .state()
        .saml_providers
        .get(&principal)
        .cloned()
        .ok_or_else(|| {
            StsFailure::sender("InvalidIdentityToken", "Specified provider doesn't exist")
        })?;
    let (xml, stripped) = saml::decode(&encoded).map_err(refused)?;
    let now = Timestamp::now() + SignedDuration::from_secs(inner.state().faults.clock_skew_seconds);
    // Structure and references first, so that xmlsec1 only ever judges a well-formed Response
    // whose one Assertion is the signed element.
    let claims = saml::check(&xml, &provider, now).map_err(refused)?;
    let verdict = saml::verify_signature(&stripped, &provider.certificates).await;
    match verdict {
        saml::Verdict::Valid(i) => {
            record.saml_signature = Some("Valid".into());
            record.saml_certificate_sha256 = provider
                .certificates
                .get(i)
                .map(|pem| saml::certificate_sha256(pem));
        }
        saml::Verdict::Invalid => {
            record.saml_signature = Some("Invalid".into());
            return Err(StsFailure::sender(
                "InvalidIdentityToken",
                "Response signature invalid: no certificate of the SAML provider's metadata verifies it",
            ));
        }
        saml::Verdict::Unavailable(why) => {
            return Err(StsFailure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "InternalFailure",
                message: why,
            });
        }
    }
    record.subject = Some(claims.subject.clone());
    record.audience = Some(claims.audience.clone());
    record.session_name = claims.session_name.clone();
    record.tags = claims.tags.clone();
    record.transitive_tag_keys = claims.transitive_tag_keys.clone();
    record.source_identity = claims.source_identity.clone();
    let role_arn = params.get("RoleArn").cloned().unwrap_or_default();
    if !claims
        .roles
        .iter()
        .any(|(role, p)| *role == role_arn && *p == principal)
    {
        return Err(StsFailure::denied(
            "Not authorized to perform sts:AssumeRoleWithSAML: the assertion's Role attribute does not name this role and provider",
        ));
    }
    let mut effective = params.clone();
    effective.insert(
        "RoleSessionName".into(),
        claims.session_name.clone().unwrap_or_default(),
    );
    let (role_arn, session_name, requested) = validate_common(&effective, inner.dialect)?;
    let requested = claims
        .session_duration
        .map_or(requested, |d| requested.min(d));
    let role =
        inner.state().roles.get(&role_arn).cloned().ok_or_else(|| {
            StsFailure::denied("Not authorized to perform sts:AssumeRoleWithSAML")
        })?;
    if !role.saml_providers.contains(&principal) || !role.allows_subject(&claims.subject) {
        return Err(StsFailure::denied(
            "Not authorized to perform sts:AssumeRoleWithSAML",
        ));
    }
    if claims.tags.len() > 50 || claims.transitive_tag_keys.len() > 50 {
        return Err(StsFailure::sender(
            "ValidationError",
            "at most 50 session tags and 50 transitive tag keys",
        ));
    }
    for (i, tag) in claims.tags.iter().enumerate() {
        if !(1..=128).contains(&tag.key.chars().count())
            || tag.value.chars().count() > 256
            || !tag_text_ok(&tag.key)
            || !tag_text_ok(&tag.value)
            || tag.key.to_ascii_lowercase().starts_with("aws:")
            || claims.tags[..i].iter().any(|t| same_key(&t.key, &tag.key))
        {
            return Err(StsFailure::sender(
                "InvalidIdentityToken",
                "A PrincipalTag attribute is invalid",
            ));
        }
    }
    if !claims.tags.is_empty() && !role.allow_tag_session {
        return Err(StsFailure::denied(
            "Not authorized to perform sts:TagSession",
        ));
    }
    if let Some(identity) = &claims.source_identity {
        if identity.to_ascii_lowercase().starts_with("aws:") || !session_name_ok(identity) {
            return Err(StsFailure::sender(
                "InvalidIdentityToken",
                "The SourceIdentity attribute is invalid",
            ));
        }
        if !role.allow_set_source_identity {
            return Err(StsFailure::denied(
                "Not authorized to perform sts:SetSourceIdentity",
            ));
        }
    }
    let transitive_tags: Vec<SessionTag> = claims
        .tags
        .iter()
        .filter(|t| {
            claims
                .transitive_tag_keys
                .iter()
                .any(|k| same_key(k, &t.key))
        })
        .cloned()
        .collect();
    let (access_key_id, session, granted) = issue(
        &mut inner.state(),
        inner.dialect,
        &role_arn,
        &session_name,
        requested,
        Carried {
            transitive_tags,
            source_identity: claims.source_identity.clone(),
        },
    )?;
    record.granted_seconds = Some(granted);
    record.access_key_id = Some(access_key_id.clone());
    let source_identity = claims
        .source_identity
        .as_deref()
        .map(|s| format!("    <SourceIdentity>{}</SourceIdentity>\n", xml_escape(s)))
        .unwrap_or_default();
    let result = format!(
        "    <Subject>{}</Subject>\n    <SubjectType>{}</SubjectType>\n    <Issuer>{}</Issuer>\n    <Audience>{}</Audience>\n    <NameQualifier>{}</NameQualifier>\n{}{source_identity}",
        xml_escape(&claims.subject),
        xml_escape(&claims.subject_type),
        xml_escape(&claims.issuer),
        xml_escape(&claims.audience),
        xml_escape(&principal),
        credentials_xml(&access_key_id, &session),
    );
    Ok(ok_xml("AssumeRoleWithSAML", result))
}

fn signed_action(
    inner: &Inner,
    action: &str,
    request: &sigv4::SignedRequest<'_>,
    params: &Params,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    let auth = sigv4::parse_authorization(request.headers).map_err(|e| match e {
        sigv4::SignatureError::Missing => StsFailure {
            status: StatusCode::FORBIDDEN,
            code: "MissingAuthenticationToken",
            message: e.to_string(),
        },
        _ => StsFailure {
            status: StatusCode::FORBIDDEN,
            code: "IncompleteSignature",
            message: e.to_string(),
        },
    })?;
    record.access_key_id = Some(auth.access_key_id.clone());
    let now = Timestamp::now();
    let token = request
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    let invalid_token = || StsFailure {
        status: StatusCode::FORBIDDEN,
        code: "InvalidClientTokenId",
        message: "The security token included in the request is invalid.".into(),
    };
    let user = inner.state().users.get(&auth.access_key_id).cloned();
    let session = match user {
        // Long-term keys sign without a session token.
        Some(user) => {
            if token.is_some() {
                return Err(invalid_token());
            }
            Session {
                secret_access_key: user.secret_access_key.clone(),
                session_token: String::new(),
                expiration: Timestamp::MAX,
                assumed_role_arn: user.arn.clone(),
                assumed_role_id: user_id(&user.arn),
                account: user.account().to_string(),
                role_arn: user.arn.clone(),
                kind: SessionKind::LongTerm,
                transitive_tags: Vec::new(),
                source_identity: None,
            }
        }
        None => {
            let session = inner
                .state()
                .sessions
                .get(&auth.access_key_id)
                .cloned()
                .ok_or_else(invalid_token)?;
            if session.expiration <= now {
                return Err(StsFailure {
                    status: StatusCode::FORBIDDEN,
                    code: "ExpiredToken",
                    message: "The security token included in the request is expired".into(),
                });
            }
            if token != Some(session.session_token.as_str()) {
                return Err(invalid_token());
            }
            session
        }
    };
    sigv4::verify(request, &auth, &session.secret_access_key, now).map_err(|e| StsFailure {
        status: StatusCode::FORBIDDEN,
        code: "SignatureDoesNotMatch",
        message: e.to_string(),
    })?;
    record.subject = Some(session.assumed_role_arn.clone());
    match action {
        "GetCallerIdentity" => Ok(ok_xml(
            "GetCallerIdentity",
            format!(
                "    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n",
                xml_escape(&session.assumed_role_arn),
                xml_escape(&session.assumed_role_id),
                session.account
            ),
        )),
        "GetFederationToken" => get_federation_token(inner, params, &session, record),
        "GetSessionToken" => get_session_token(inner, params, &session, record),
        _ => assume_role(inner, params, &session, record),
    }
}

/// A stable user ID for an IAM user ARN (`AIDA...`).
fn user_id(user_arn: &str) -> String {
    let digest = user_arn.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("AIDA{digest:016X}")
}

fn credentials_only_xml(access_key_id: &str, s: &Session) -> String {
    format!(
        "    <Credentials>\n      <AccessKeyId>{access_key_id}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n",
        xml_escape(&s.secret_access_key),
        xml_escape(&s.session_token),
        rfc3339(s.expiration),
    )
}

/// `DurationSeconds` of `GetFederationToken` / `GetSessionToken`: 900 to 129,600, default 43,200.
fn user_session_duration(params: &Params) -> Result<u64, StsFailure> {
    match params.get("DurationSeconds") {
        None => Ok(43_200),
        Some(d) => d
            .parse::<u64>()
            .ok()
            .filter(|d| (900..=129_600).contains(d))
            .ok_or_else(|| {
                StsFailure::sender(
                    "ValidationError",
                    "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 129600",
                )
            }),
    }
}

/// A new session of `kind` for the IAM user whose long-term keys signed the call.
fn issue_user_session(
    inner: &Inner,
    caller: &Session,
    kind: SessionKind,
    arn: String,
    id: String,
    requested: u64,
) -> (String, Session, u64) {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = inner.state();
    let max = state
        .users
        .values()
        .find(|u| u.arn == caller.role_arn)
        .and_then(|u| u.max_session_seconds);
    let granted = max.map_or(requested, |max| requested.min(max));
    let access_key_id = format!("ASIA{}", random_string(16, UPPER));
    let session = Session {
        secret_access_key: random_string(40, SECRET),
        session_token: format!("FwoGZXIvYXdzE{}", random_string(300, SECRET)),
        expiration: Timestamp::now() + SignedDuration::from_secs(granted as i64),
        assumed_role_arn: arn,
        assumed_role_id: id,
        account: caller.account.clone(),
        role_arn: caller.role_arn.clone(),
        kind,
        transitive_tags: Vec::new(),
        source_identity: None,
    };
    state
        .sessions
        .insert(access_key_id.clone(), session.clone());
    (access_key_id, session, granted)
}

/// `GetFederationToken`: only with an IAM user's long-term keys, as AWS.
fn get_federation_token(
    inner: &Inner,
    params: &Params,
    caller: &Session,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    if caller.kind != SessionKind::LongTerm {
        return Err(StsFailure::denied(
            "Cannot call GetFederationToken with session credentials",
        ));
    }
    let name = params.get("Name").cloned().unwrap_or_default();
    record.session_name = Some(name.clone());
    if !((2..=32).contains(&name.len()) && session_name_ok(&name)) {
        return Err(StsFailure::sender(
            "ValidationError",
            "1 validation error detected: Value at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and length 2..32",
        ));
    }
    let requested = user_session_duration(params)?;
    record.duration_seconds = Some(requested);
    let policy_chars = check_session_policies(params)?;
    let (access_key_id, session, granted) = issue_user_session(
        inner,
        caller,
        SessionKind::Federated,
        format!("arn:aws:sts::{}:federated-user/{name}", caller.account),
        format!("{}:{name}", caller.account),
        requested,
    );
    record.granted_seconds = Some(granted);
    record.issued_access_key_id = Some(access_key_id.clone());
    let packed = u32::try_from((policy_chars * 100).div_ceil(PACKED_CAPACITY)).unwrap_or(u32::MAX);
    record.packed_policy_size = Some(packed);
    let result = format!(
        "{}    <FederatedUser>\n      <Arn>{}</Arn>\n      <FederatedUserId>{}</FederatedUserId>\n    </FederatedUser>\n    <PackedPolicySize>{packed}</PackedPolicySize>\n",
        credentials_only_xml(&access_key_id, &session),
        xml_escape(&session.assumed_role_arn),
        xml_escape(&session.assumed_role_id),
    );
    Ok(ok_xml("GetFederationToken", result))
}

/// `GetSessionToken`: only with an IAM user's long-term keys; no user of the emulator has an MFA
/// device, so a `SerialNumber` or `TokenCode` is refused.
fn get_session_token(
    inner: &Inner,
    params: &Params,
    caller: &Session,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    if caller.kind != SessionKind::LongTerm {
        return Err(StsFailure::denied(
            "Cannot call GetSessionToken with session credentials",
        ));
    }
    if params.contains_key("SerialNumber") || params.contains_key("TokenCode") {
        return Err(StsFailure::denied(
            "MultiFactorAuthentication failed: the user has no MFA device",
        ));
    }
    let requested = user_session_duration(params)?;
    record.duration_seconds = Some(requested);
    let (access_key_id, session, granted) = issue_user_session(
        inner,
        caller,
        SessionKind::UserSession,
        caller.assumed_role_arn.clone(),
        caller.assumed_role_id.clone(),
        requested,
    );
    record.granted_seconds = Some(granted);
    record.issued_access_key_id = Some(access_key_id.clone());
    Ok(ok_xml(
        "GetSessionToken",
        credentials_only_xml(&access_key_id, &session),
    ))
}

/// Checks `Policy` and `PolicyArns` together against STS's 2,048 characters: their length.
fn check_session_policies(params: &Params) -> Result<usize, StsFailure> {
    if let Some(policy) = params.get("Policy")
        && !serde_json::from_str::<serde_json::Value>(policy).is_ok_and(|v| v.is_object())
    {
        return Err(StsFailure::sender(
            "MalformedPolicyDocument",
            "The policy is not valid JSON",
        ));
    }
    let arns = params
        .iter()
        .filter(|(k, _)| k.starts_with("PolicyArns.member.") && k.ends_with(".arn"))
        .collect::<Vec<_>>();
    if arns.len() > 10 {
        return Err(StsFailure::sender(
            "ValidationError",
            "1 validation error detected: Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to 10",
        ));
    }
    let chars = params.get("Policy").map_or(0, |p| p.chars().count())
        + arns.iter().map(|(_, v)| v.chars().count()).sum::<usize>();
    if chars > 2048 {
        return Err(StsFailure::sender(
            "ValidationError",
            "The plaintext of the inline and managed session policies exceeds 2048 characters",
        ));
    }
    Ok(chars)
}

/// Most characters of session tags and policies one session may pack, as the emulator counts
/// them (every tag key and value, inherited ones included, the inline policy and the policy ARNs).
/// AWS compresses and does not publish its limit; this one makes tag-heavy sessions overflow as
/// they do there.
pub const PACKED_CAPACITY: usize = 4096;

fn tag_text_ok(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+@-".contains(c))
}

/// The `Tags.member.N.Key/Value` and `TransitiveTagKeys.member.N` parameters, in order.
fn sent_tags(params: &Params) -> (Vec<SessionTag>, Vec<String>) {
    let mut tags = Vec::new();
    for n in 1.. {
        let Some(key) = params.get(&format!("Tags.member.{n}.Key")) else {
            break;
        };
        tags.push(SessionTag {
            key: key.clone(),
            value: params
                .get(&format!("Tags.member.{n}.Value"))
                .cloned()
                .unwrap_or_default(),
        });
    }
    let mut transitive = Vec::new();
    for n in 1.. {
        let Some(key) = params.get(&format!("TransitiveTagKeys.member.{n}")) else {
            break;
        };
        transitive.push(key.clone());
    }
    (tags, transitive)
}

fn same_key(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

/// `AssumeRole` with the credentials of `caller` (whose signature was verified): role chaining,
/// with what STS enforces for it.
fn assume_role(
    inner: &Inner,
    params: &Params,
    caller: &Session,
    record: &mut CallRecord,
) -> Result<Response, StsFailure> {
    let (role_arn, session_name, requested) = validate_common(params, inner.dialect)?;
    if caller.kind == SessionKind::Federated {
        return Err(StsFailure::denied(format!(
            "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn} (federated user sessions cannot call AssumeRole)",
            caller.assumed_role_arn
        )));
    }
    // A role session's AssumeRole chains roles; an IAM user's (keys or GetSessionToken) does not.
    let chaining = caller.kind == SessionKind::Role;
    if chaining && requested > 3600 {
        return Err(StsFailure::sender(
            "ValidationError",
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        ));
    }
    let policy_chars = params.get("Policy").map_or(0, |p| p.chars().count())
        + params
            .iter()
            .filter(|(k, _)| k.starts_with("PolicyArns.member.") && k.ends_with(".arn"))
            .map(|(_, v)| v.chars().count())
            .sum::<usize>();
    if policy_chars > 2048 {
        return Err(StsFailure::sender(
            "ValidationError",
            "The plaintext of the inline and managed session policies exceeds 2048 characters",
        ));
    }
    let external_id = params.get("ExternalId").cloned();
    record.external_id = external_id.clone();
    if let Some(id) = &external_id
        && !((2..=1224).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c)))
    {
        return Err(StsFailure::sender(
            "ValidationError",
            "1 validation error detected: Value at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:/-]* and length 2..1224",
        ));
    }
    let sent_identity = params.get("SourceIdentity").cloned();
    if let Some(identity) = &sent_identity {
        if identity.to_ascii_lowercase().starts_with("aws:") {
            return Err(StsFailure::sender(
                "ValidationError",
                "SourceIdentity cannot start with the reserved prefix aws:",
            ));
        }
        if !session_name_ok(identity) {
            return Err(StsFailure::sender(
                "ValidationError",
                "1 validation error detected: Value at 'sourceIdentity' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and length 2..64",
            ));
        }
        if caller
            .source_identity
            .as_ref()
            .is_some_and(|set| set != identity)
        {
            return Err(StsFailure::denied(
                "The source identity of a role session cannot be changed once set",
            ));
        }
    }
    let source_identity = caller.source_identity.clone().or(sent_identity);
    record.source_identity = source_identity.clone();

    let (tags, transitive_keys) = sent_tags(params);
    record.tags = tags.clone();
    record.transitive_tag_keys = transitive_keys.clone();
    record.inherited_tags = caller.transitive_tags.clone();
    if tags.len() > 50 || transitive_keys.len() > 50 {
        return Err(StsFailure::sender(
            "ValidationError",
            "1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50",
        ));
    }
    for (i, tag) in tags.iter().enumerate() {
        if !(1..=128).contains(&tag.key.chars().count())
            || tag.value.chars().count() > 256
            || !tag_text_ok(&tag.key)
            || !tag_text_ok(&tag.value)
        {
            return Err(StsFailure::sender(
                "ValidationError",
                "1 validation error detected: Value at 'tags' failed to satisfy constraint: keys of 1 to 128 and values of at most 256 characters of [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]",
            ));
        }
        if tag.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(StsFailure::sender(
                "ValidationError",
                "Tag keys cannot start with the reserved prefix aws:",
            ));
        }
        if tags[..i].iter().any(|t| same_key(&t.key, &tag.key)) {
            return Err(StsFailure::sender(
                "ValidationError",
                "Duplicate tag keys found. Please note that Tag keys are case insensitive.",
            ));
        }
        if caller
            .transitive_tags
            .iter()
            .any(|t| same_key(&t.key, &tag.key))
        {
            return Err(StsFailure::sender(
                "ValidationError",
                format!(
                    "Cannot override the transitive session tag {} inherited from the calling session",
                    tag.key
                ),
            ));
        }
    }
    for key in &transitive_keys {
        if !tags.iter().any(|t| same_key(&t.key, key)) {
            return Err(StsFailure::sender(
                "ValidationError",
                format!("Transitive tag key {key} is not among the session tags"),
            ));
        }
    }

    let role = inner
        .state()
        .roles
        .get(&role_arn)
        .cloned()
        .filter(|r| {
            if chaining {
                r.trusts_role(&caller.role_arn)
            } else {
                r.trusts_user(&caller.role_arn)
            }
        })
        .ok_or_else(|| {
            StsFailure::denied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.assumed_role_arn
            ))
        })?;
    if let Some(required) = &role.external_id
        && external_id.as_ref() != Some(required)
    {
        return Err(StsFailure::denied(format!(
            "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
            caller.assumed_role_arn
        )));
    }
    let carries_tags = !tags.is_empty() || !caller.transitive_tags.is_empty();
    if carries_tags && !role.allow_tag_session {
        return Err(StsFailure::denied(format!(
            "User: {} is not authorized to perform: sts:TagSession on resource: {role_arn}",
            caller.assumed_role_arn
        )));
    }
    if source_identity.is_some() && !role.allow_set_source_identity {
        return Err(StsFailure::denied(format!(
            "User: {} is not authorized to perform: sts:SetSourceIdentity on resource: {role_arn}",
            caller.assumed_role_arn
        )));
    }

    let packed_chars = tags
        .iter()
        .chain(&caller.transitive_tags)
        .map(|t| t.key.chars().count() + t.value.chars().count())
        .sum::<usize>()
        + policy_chars;
    let packed = u32::try_from((packed_chars * 100).div_ceil(PACKED_CAPACITY)).unwrap_or(u32::MAX);
    if packed > 100 {
        return Err(StsFailure::sender(
            "PackedPolicyTooLarge",
            format!("Packed size of session tags and policies is {packed}% of the limit"),
        ));
    }
    let mut transitive_tags = caller.transitive_tags.clone();
    transitive_tags.extend(
        tags.iter()
            .filter(|t| transitive_keys.iter().any(|k| same_key(k, &t.key)))
            .cloned(),
    );
    let (access_key_id, new_session, granted) = issue(
        &mut inner.state(),
        inner.dialect,
        &role_arn,
        &session_name,
        requested,
        Carried {
            transitive_tags,
            source_identity: source_identity.clone(),
        },
    )?;
    record.granted_seconds = Some(granted);
    record.issued_access_key_id = Some(access_key_id.clone());
    record.packed_policy_size = Some(packed);
    let mut result = credentials_xml(&access_key_id, &new_session);
    result.push_str(&format!(
        "    <PackedPolicySize>{packed}</PackedPolicySize>\n"
    ));
    if let Some(identity) = &source_identity {
        result.push_str(&format!(
            "    <SourceIdentity>{}</SourceIdentity>\n",
            xml_escape(identity)
        ));
    }
    Ok(ok_xml("AssumeRole", result))
}

async fn put_role(
    AxumState(inner): AxumState<Arc<Inner>>,
    axum::Json(role): axum::Json<Role>,
) -> StatusCode {
    inner.state().roles.insert(role.arn.clone(), role);
    StatusCode::NO_CONTENT
}

async fn put_user(
    AxumState(inner): AxumState<Arc<Inner>>,
    axum::Json(user): axum::Json<state::User>,
) -> StatusCode {
    inner.state().users.insert(user.access_key_id.clone(), user);
    StatusCode::NO_CONTENT
}

async fn list_roles(AxumState(inner): AxumState<Arc<Inner>>) -> axum::Json<Vec<Role>> {
    axum::Json(inner.state().roles.values().cloned().collect())
}

async fn put_saml_provider(
    AxumState(inner): AxumState<Arc<Inner>>,
    axum::Json(upload): axum::Json<saml::ProviderUpload>,
) -> Response {
    match saml::provider_from_metadata(&upload.arn, &upload.metadata) {
        Ok(provider) => {
            inner
                .state()
                .saml_providers
                .insert(upload.arn.clone(), provider);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn list_saml_providers(
    AxumState(inner): AxumState<Arc<Inner>>,
) -> axum::Json<Vec<saml::SamlProvider>> {
    axum::Json(inner.state().saml_providers.values().cloned().collect())
}

async fn put_faults(
    AxumState(inner): AxumState<Arc<Inner>>,
    axum::Json(faults): axum::Json<Faults>,
) -> StatusCode {
    inner.state().set_faults(faults);
    StatusCode::NO_CONTENT
}

async fn get_faults(AxumState(inner): AxumState<Arc<Inner>>) -> axum::Json<Faults> {
    axum::Json(inner.state().faults.clone())
}

async fn get_calls(AxumState(inner): AxumState<Arc<Inner>>) -> axum::Json<CallLog> {
    let s = inner.state();
    axum::Json(CallLog {
        counters: s.counters.clone(),
        calls: s.calls.clone(),
    })
}

async fn reset_calls(AxumState(inner): AxumState<Arc<Inner>>) -> StatusCode {
    let mut s = inner.state();
    s.calls.clear();
    s.counters = Counters::default();
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_split_into_partition_account_and_name() {
        assert_eq!(
            split_role_arn("arn:aws-cn:iam::123456789012:role/path/app", Dialect::Aws),
            Some(("aws-cn", "123456789012", "app"))
        );
        assert_eq!(
            split_role_arn("arn:aws:iam::123:role/x", Dialect::Aws),
            None
        );
        assert_eq!(split_role_arn("arn:aws:iam:::role/x", Dialect::Aws), None);
    }

    #[test]
    fn ceph_role_arns_name_a_tenant_or_none() {
        assert_eq!(
            split_role_arn("arn:aws:iam:::role/app/S3Access", Dialect::CephRgw),
            Some(("aws", "", "S3Access"))
        );
        assert_eq!(
            split_role_arn("arn:aws:iam::tenant_1:role/r", Dialect::CephRgw),
            Some(("aws", "tenant_1", "r"))
        );
        for bad in [
            "arn:aws-cn:iam:::role/r",
            "arn:aws:iam::ten-ant:role/r",
            "arn:aws:iam:::role/",
            "arn:minio:iam:::role/r",
        ] {
            assert_eq!(split_role_arn(bad, Dialect::CephRgw), None, "{bad}");
        }
    }

    #[test]
    fn parameters_are_checked_like_sts() {
        let mut p = Params::new();
        p.insert("RoleArn".into(), "arn:aws:iam::123456789012:role/r".into());
        p.insert("RoleSessionName".into(), "ns.binding".into());
        assert!(validate_common(&p, Dialect::Aws).is_ok());
        p.insert("DurationSeconds".into(), "600".into());
        assert_eq!(
            validate_common(&p, Dialect::Aws).expect_err("short").code,
            "ValidationError"
        );
        p.insert("DurationSeconds".into(), "900".into());
        p.insert("RoleSessionName".into(), "x".into());
        assert_eq!(
            validate_common(&p, Dialect::Aws).expect_err("session").code,
            "ValidationError"
        );
        p.insert("RoleSessionName".into(), "ok".into());
        p.insert("Policy".into(), "[".into());
        assert_eq!(
            validate_common(&p, Dialect::Aws).expect_err("policy").code,
            "MalformedPolicyDocument"
        );
    }

    #[test]
    fn error_documents_escape_messages() {
        let r = error_response(
            &StsFailure::sender("ValidationError", "<bad & worse>"),
            Dialect::Aws,
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn ceph_errors_use_rgw_codes_and_statuses() {
        for (code, status) in [
            ("AccessDenied", StatusCode::FORBIDDEN),
            ("InvalidIdentityToken", StatusCode::FORBIDDEN),
            ("ValidationError", StatusCode::BAD_REQUEST),
            ("Throttling", StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let r = error_response(&StsFailure::sender(code, "m"), Dialect::CephRgw);
            assert_eq!(r.status(), status, "{code}");
        }
    }
}
