//! Attacks a namespace tenant (or a compromised operator) could try, run against the real control
//! plane, each shown to fail: docs/security.md's threat model lists them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::json;

use crate::support::helm::{
    helm, helm_install, refusal_of, service_account_token, with_admission_policy,
};
use crate::support::network::{ConnectProxy, TlsFront, trust_bundle};
use crate::support::{Env, OperatorOptions, wait_for};

const READY: Duration = Duration::from_secs(60);

/// A fresh namespace `<prefix>-…` created with `annotations` (set at creation, so the apiserver's
/// admission sees them at once).
async fn annotated_namespace(
    env: &Env,
    prefix: &str,
    annotations: &[(&str, &str)],
) -> anyhow::Result<String> {
    let api: Api<Namespace> = Api::all(env.client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let created = api.create(&PostParams::default(), &ns).await?;
    created.metadata.name.context("namespace without a name")
}

fn binding(name: &str, spec: serde_json::Value) -> anyhow::Result<podcreds::api::AWSRoleBinding> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "podcreds.dev/v1alpha1",
        "kind": "AWSRoleBinding",
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

/// One row of `tests/data/allowlist-cases.json`, the table the unit tests of
/// `src/allowlist.rs` read too.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AllowlistCase {
    annotation: String,
    role_arn: String,
    allowed: bool,
    why: String,
}

/// The admission policy's CEL and the operator's Rust (`podcreds::allowlist`) give every case of
/// the shared table the same, expected answer: a `*` never reaches into another path segment.
pub async fn role_allowlist_is_path_aware_in_cel_and_rust(env: &Env) -> anyhow::Result<()> {
    with_admission_policy(env, "vaproles", role_allowlist_checks).await
}

async fn role_allowlist_checks(env: &Env) -> anyhow::Result<()> {
    let cases: Vec<AllowlistCase> =
        serde_json::from_str(include_str!("../data/allowlist-cases.json"))?;
    let mut namespaces: BTreeMap<&str, String> = BTreeMap::new();
    for case in &cases {
        if !namespaces.contains_key(case.annotation.as_str()) {
            let ns = annotated_namespace(
                env,
                "roles",
                &[(podcreds::allowlist::ANNOTATION, &case.annotation)],
            )
            .await?;
            namespaces.insert(&case.annotation, ns);
        }
    }

    // Wait until the policy is active: a namespace allowing one role refuses another.
    let probe_ns = annotated_namespace(
        env,
        "roles-probe",
        &[(
            podcreds::allowlist::ANNOTATION,
            "arn:aws:iam::123456789012:role/probe",
        )],
    )
    .await?;
    let other =
        json!({"serviceAccountName": "app", "roleArn": "arn:aws:iam::123456789012:role/other"});
    refusal_of(
        env,
        &probe_ns,
        &env.bindings(&probe_ns),
        binding("probe", other)?,
    )
    .await
    .context("the admission policy never became active")?;

    let mut wrong = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let ns = &namespaces[case.annotation.as_str()];
        let spec = json!({"serviceAccountName": "app", "roleArn": case.role_arn});
        let admitted = match env.create_binding(ns, &format!("case-{i}"), spec).await {
            Ok(_) => true,
            Err(kube::Error::Api(s))
                if (s.code == 403 || s.code == 422)
                    && s.message.contains("is not allowed in namespace") =>
            {
                false
            }
            Err(e) => bail!("case {i} ({}): unexpected answer: {e}", case.why),
        };
        let operator = podcreds::allowlist::allowed(&case.annotation, &case.role_arn);
        if admitted != case.allowed || operator != case.allowed {
            wrong.push(format!(
                "case {i}: {:?} vs {}: expected {}, admission said {admitted}, the operator {operator} ({})",
                case.annotation, case.role_arn, case.allowed, case.why
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );

    // A role chain needs every hop's role allowed, and every hop's session name in the namespace.
    let probe = "arn:aws:iam::123456789012:role/probe";
    let chained = |hop: serde_json::Value| json!({"serviceAccountName": "app", "roleArn": probe, "roleChain": [hop]});
    env.create_binding(&probe_ns, "chain-ok", chained(json!({"roleArn": probe})))
        .await
        .context("a chain through allowed roles was refused")?;
    for (name, hop, refusal) in [
        (
            "chain-role",
            json!({"roleArn": "arn:aws:iam::123456789012:role/other"}),
            "role arn:aws:iam::123456789012:role/other is not allowed in namespace",
        ),
        (
            "chain-session",
            json!({"roleArn": probe, "sessionName": "prod.payments"}),
            "every spec.roleChain[].sessionName must start with",
        ),
    ] {
        match env.create_binding(&probe_ns, name, chained(hop)).await {
            Ok(_) => bail!("{name} was admitted"),
            Err(kube::Error::Api(s)) => {
                ensure!(s.message.contains(refusal), "{name}: {}", s.message)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Creates a binding in a cluster whose tests hold `cluster_policies` exclusively: a release of
/// the admission policy uninstalled a moment ago may still be enforced briefly, so a refusal is
/// retried (up to 20 s) before it counts.
async fn create_without_policy(
    env: &Env,
    ns: &str,
    name: &str,
    spec: serde_json::Value,
) -> anyhow::Result<()> {
    let created = wait_for(Duration::from_secs(20), || {
        let spec = spec.clone();
        async move { env.create_binding(ns, name, spec).await.ok() }
    })
    .await;
    created
        .map(|_| ())
        .with_context(|| format!("binding {ns}/{name} was never admitted"))
}

fn is_refusal(result: &Result<podcreds::api::AWSRoleBinding, kube::Error>, text: &str) -> bool {
    matches!(result, Err(kube::Error::Api(s)) if (s.code == 403 || s.code == 422) && s.message.contains(text))
}

/// A binding in one namespace cannot take a session name that makes CloudTrail show another
/// namespace (`prod.payments` acting for a binding of `dev`): the admission policy refuses it.
pub async fn spoofed_session_names_are_refused_at_admission(env: &Env) -> anyhow::Result<()> {
    with_admission_policy(env, "vapsession", session_name_checks).await
}

async fn session_name_checks(env: &Env) -> anyhow::Result<()> {
    let ns = env.namespace("session").await?;
    let role = "arn:aws:iam::123456789012:role/payments";
    let with_session = |session: &str| json!({"serviceAccountName": "app", "roleArn": role, "sessionName": session});
    let refusal = refusal_of(
        env,
        &ns,
        &env.bindings(&ns),
        binding("spoofed", with_session("prod.payments"))?,
    )
    .await
    .context("a session name naming another namespace was admitted")?;
    ensure!(
        refusal.contains(&format!(
            "spec.sessionName prod.payments must start with {ns}."
        )),
        "unclear refusal: {refusal}"
    );
    // Near misses are refused too: the namespace without its dot, a longer namespace, the
    // namespace further in.
    for (i, session) in [ns.clone(), format!("{ns}x.y"), format!("x.{ns}.y")]
        .iter()
        .enumerate()
    {
        let result = env
            .create_binding(&ns, &format!("near-{i}"), with_session(session))
            .await;
        ensure!(
            is_refusal(&result, "must start with"),
            "session name {session} was not refused: {result:?}"
        );
    }
    // The namespace's own prefix, and the default, are admitted.
    env.create_binding(&ns, "own", with_session(&format!("{ns}.exporter")))
        .await
        .context("a session name with the namespace prefix was refused")?;
    env.create_binding(
        &ns,
        "default",
        json!({"serviceAccountName": "app", "roleArn": role}),
    )
    .await
    .context("a binding with the default session name was refused")?;
    Ok(())
}

/// Without the admission policy the operator refuses a spoofed session name itself, before any
/// token is requested; an admin may relax the rule; and two long binding names that differ only
/// at the end still get different default session names.
pub async fn spoofed_session_names_are_refused_by_the_operator(env: &Env) -> anyhow::Result<()> {
    let (ns, role, _operator) = env.scenario("session-op", None).await?;
    let spoofed =
        json!({"serviceAccountName": "app", "roleArn": role, "sessionName": "prod.payments"});
    create_without_policy(env, &ns, "spoofed", spoofed.clone()).await?;
    let stem = format!("reader-{}", "x".repeat(70));
    for suffix in ["a", "b"] {
        create_without_policy(
            env,
            &ns,
            &format!("{stem}{suffix}"),
            json!({"serviceAccountName": "app", "roleArn": role}),
        )
        .await?;
    }
    for suffix in ["a", "b"] {
        env.wait_ready(&ns, &format!("{stem}{suffix}"), "True", READY)
            .await?;
    }
    let refused = env
        .wait_reason(&ns, "spoofed", "SessionNameNotAllowed", READY)
        .await?;
    let message = podcreds::status::ready_condition(refused.status.as_ref())
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        message.contains(&format!("must start with \"{ns}.\"")),
        "unclear status message: {message}"
    );
    let sessions: BTreeSet<String> = env
        .issued_for(&role)
        .into_iter()
        .filter_map(|c| c.session_name)
        .collect();
    ensure!(
        !sessions.contains("prod.payments"),
        "STS saw the spoofed session name"
    );
    ensure!(
        sessions.len() == 2 && sessions.iter().all(|s| s.starts_with(&format!("{ns}."))),
        "the two long bindings should have two session names under {ns}.: {sessions:?}"
    );

    // The admin's flag relaxes the rule.
    let (relaxed_ns, relaxed_role) = env.app_namespace("session-relaxed", None).await?;
    let _relaxed = env
        .start_operator(
            &[&relaxed_ns],
            &env.emulator.url(),
            &["--allow-unprefixed-session-names"],
        )
        .await?;
    let spoofed = json!({"serviceAccountName": "app", "roleArn": relaxed_role, "sessionName": "prod.payments"});
    create_without_policy(env, &relaxed_ns, "spoofed", spoofed).await?;
    env.wait_ready(&relaxed_ns, "spoofed", "True", READY)
        .await?;
    ensure!(
        env.issued_for(&relaxed_role)
            .iter()
            .any(|c| c.session_name.as_deref() == Some("prod.payments")),
        "the relaxed operator did not use the session name asked for"
    );
    Ok(())
}

/// A loopback listener that counts the connections made to it (and answers none).
struct Trap {
    address: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Ok(Self {
            address,
            connections,
            task,
        })
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.address)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain-HTTP STS endpoint would carry the ServiceAccount token in clear. Without the admin's
/// explicit flag, the operator refuses one as its default at start, and refuses a binding naming
/// an allowed one before anything is requested or sent.
pub async fn plain_http_sts_endpoints_are_refused(env: &Env) -> anyhow::Result<()> {
    let https_only = || OperatorOptions {
        https_only: true,
        ..OperatorOptions::default()
    };
    let (ns, role) = env.app_namespace("plainhttp", None).await?;
    let without_backtrace = OperatorOptions {
        // The refusal, not a backtrace, should end the log the harness reports.
        env: vec![("RUST_BACKTRACE".into(), "0".into())],
        ..https_only()
    };
    match env
        .launch_operator(&[&ns], &env.emulator.url(), &[], without_backtrace)
        .await
    {
        Ok(_) => bail!("the operator started with a plain-HTTP default STS endpoint"),
        Err(e) => {
            let text = format!("{e:#}");
            ensure!(
                text.contains("is plain HTTP") && text.contains("--allow-insecure-sts-endpoints"),
                "unclear refusal at start: {text}"
            );
        }
    }

    let trap = Trap::start().await?;
    let allowed = format!("--allowed-sts-endpoints={}", trap.url("http"));
    let operator = env
        .launch_operator(&[&ns], &trap.url("https"), &[&allowed], https_only())
        .await?;
    ensure!(
        operator
            .log()
            .contains("allowed STS endpoint is plain HTTP"),
        "no warning at start about the unusable allowed endpoint"
    );
    env.create_binding(
        &ns,
        "clear",
        json!({"serviceAccountName": "app", "roleArn": role, "sts": {"endpoint": trap.url("http")}}),
    )
    .await?;
    let refused = env
        .wait_reason(&ns, "clear", "InsecureEndpoint", READY)
        .await?;
    let message = podcreds::status::ready_condition(refused.status.as_ref())
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ensure!(
        message.contains("is plain HTTP, which would send the ServiceAccount token in clear"),
        "unclear status message: {message}"
    );
    ensure!(
        trap.connections() == 0,
        "the operator connected to the plain-HTTP endpoint"
    );
    ensure!(env.calls_for(&role) == 0, "STS was called");
    Ok(())
}

/// The AWS SDK takes endpoints and proxies from the environment when left to its defaults
/// (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_STS`, a profile's `endpoint_url` in `AWS_CONFIG_FILE`,
/// `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`): any of them would route tokens around the admin's
/// endpoint allowlist. The operator builds its STS client from its flags alone, so with all of
/// them pointing at a trap, a binding still goes Ready through the configured endpoint, one on the
/// AWS regional endpoint fails (no network here) instead of being rerouted, one behind the admin's
/// `--sts-proxy` goes through that proxy (whatever `NO_PROXY` says), and the trap sees nothing.
///
/// `HTTPS_PROXY` is left out: the kube client reads it too when configured from a kubeconfig, as
/// here (not in a cluster), and refuses to start without its proxy feature. `ALL_PROXY` takes the
/// same path in the SDK for https targets.
pub async fn environment_cannot_reroute_sts_traffic(env: &Env) -> anyhow::Result<()> {
    let trap = Trap::start().await?;
    let config = env
        .plane
        .dir()
        .join(format!("aws-config-{}", trap.address.replace(':', "-")));
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = us-east-1\nendpoint_url = {url}\nservices = rerouted\n\n[services rerouted]\nsts =\n  endpoint_url = {url}\n",
            url = trap.url("http")
        ),
    )?;
    let poisoned = || {
        let mut vars: Vec<(String, String)> = [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_STS",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ]
        .iter()
        .map(|k| (k.to_string(), trap.url("http")))
        .collect();
        vars.push((
            "AWS_CONFIG_FILE".into(),
            config.to_string_lossy().into_owned(),
        ));
        vars.push(("AWS_PROFILE".into(), "default".into()));
        OperatorOptions {
            env: vars,
            ..OperatorOptions::default()
        }
    };

    // The configured endpoint (the emulator) is used, not the environment's.
    let (ns, role) = env.app_namespace("envroute", None).await?;
    let _operator = env
        .launch_operator(&[&ns], &env.emulator.url(), &[], poisoned())
        .await?;
    env.create_binding(
        &ns,
        "b",
        json!({"serviceAccountName": "app", "roleArn": role}),
    )
    .await?;
    env.wait_ready(&ns, "b", "True", READY).await?;
    ensure!(
        !env.issued_for(&role).is_empty(),
        "the emulator issued nothing"
    );

    // The AWS regional endpoint is used, not the environment's: it cannot be reached here.
    let (regional_ns, regional_role) = env.app_namespace("envroute-aws", None).await?;
    let regional = OperatorOptions {
        regional_endpoint: true,
        ..poisoned()
    };
    let _regional = env
        .launch_operator(&[&regional_ns], "", &[], regional)
        .await?;
    env.create_binding(
        &regional_ns,
        "b",
        json!({"serviceAccountName": "app", "roleArn": regional_role}),
    )
    .await?;
    env.wait_reason(&regional_ns, "b", "StsUnavailable", READY)
        .await?;

    // The admin's proxy is honoured, the environment's still not: with the same variables and
    // NO_PROXY=* (which would bypass any proxy read from the environment), an https endpoint is
    // reached through --sts-proxy's CONNECT tunnel.
    let (proxied_ns, proxied_role) = env.app_namespace("envroute-proxy", None).await?;
    let ca = podcreds_testenv::pki::Ca::new("podcreds e2e STS")?;
    let backend: std::net::SocketAddr = env.emulator.url().trim_start_matches("http://").parse()?;
    let front = TlsFront::start(&ca, backend).await?;
    let proxy = ConnectProxy::start(None).await?;
    let bundle = trust_bundle(env, &ca, &format!("envroute-{}", front.port))?;
    let mut proxied = poisoned();
    proxied.env.extend([
        ("NO_PROXY".to_string(), "*".to_string()),
        ("no_proxy".to_string(), "*".to_string()),
        (
            "SSL_CERT_FILE".to_string(),
            bundle.to_string_lossy().into_owned(),
        ),
    ]);
    let _proxied = env
        .launch_operator(
            &[&proxied_ns],
            &front.url(),
            &[&format!("--sts-proxy={}", proxy.url(None))],
            proxied,
        )
        .await?;
    env.create_binding(
        &proxied_ns,
        "b",
        json!({"serviceAccountName": "app", "roleArn": proxied_role}),
    )
    .await?;
    env.wait_ready(&proxied_ns, "b", "True", READY).await?;
    let through = proxy.log();
    let target = format!("127.0.0.1:{}", front.port);
    ensure!(
        !through.tunnels.is_empty() && through.tunnels.iter().all(|t| *t == target),
        "the admin's proxy was not used for {target}: {through:?}"
    );

    ensure!(
        trap.connections() == 0,
        "{} connection(s) went where the environment pointed",
        trap.connections()
    );
    ensure!(env.calls_for(&regional_role) == 0);
    Ok(())
}

/// A TokenRequest for `namespace/name` made by `client`.
async fn token_request(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    audiences: &[&str],
    expiration_seconds: i64,
) -> Result<TokenRequest, kube::Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: (!audiences.is_empty())
                .then(|| audiences.iter().map(|a| a.to_string()).collect()),
            expiration_seconds: Some(expiration_seconds),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    api.create_token_request(name, &PostParams::default(), &request)
        .await
}

/// A TokenRequest the operator's identity must not get, and the refusal expected.
struct TokenAttack<'a> {
    what: &'a str,
    namespace: &'a str,
    name: &'a str,
    audiences: &'a [&'a str],
    expiration_seconds: i64,
    refusal: &'a str,
}

/// The refusal message of a 403, or what happened instead.
fn refusal<T>(result: Result<T, kube::Error>) -> Result<String, String> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(s.message),
        Ok(_) => Err("admitted".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Even a compromised operator gets no more tokens than podcreds needs: the chart's token guard
/// refuses, to the operator's own ServiceAccount (its RBAC allows TokenRequests everywhere),
/// tokens for ServiceAccounts of system namespaces and of its own namespace, tokens with the
/// apiserver's audience (or none), and longer-lived tokens; what the operator asks for is
/// allowed, and nobody else is affected.
pub async fn a_compromised_operator_cannot_mint_other_tokens(env: &Env) -> anyhow::Result<()> {
    let (release_ns, release, _) = helm_install(
        env,
        "podcreds-tokens",
        "tok",
        &["--wait=false", "--set", "operator.allowedAudiences={minio}"],
    )
    .await?;
    let result = token_guard_checks(env, &release_ns, &release).await;
    let (ok, _, stderr) = helm(env, &["uninstall", &release, "--namespace", &release_ns]).await?;
    ensure!(ok, "helm uninstall failed: {stderr}");
    result
}

async fn token_guard_checks(env: &Env, release_ns: &str, release: &str) -> anyhow::Result<()> {
    // The chart names its ServiceAccount <release>-podcreds.
    let operator_sa = format!("{release}-podcreds");
    let token = service_account_token(env, release_ns, &operator_sa).await?;
    let kubeconfig = env.plane.token_kubeconfig(release, &token)?;
    let as_operator = podcreds_testenv::client_from_kubeconfig(&kubeconfig).await?;
    let (tenant, _) = env.app_namespace("tokens", None).await?;
    let victim = format!("victim-{}", &release[release.len() - 5..]);
    env.service_account("kube-system", &victim).await?;
    let sts = "sts.amazonaws.com";

    // Wait until the policy is active: the kube-system request is refused.
    let kube_system = wait_for(Duration::from_secs(20), || async {
        refusal(token_request(&as_operator, "kube-system", &victim, &[sts], 600).await).ok()
    })
    .await
    .context("the token guard never refused a kube-system token")?;
    ensure!(
        kube_system.contains(
            "the podcreds operator may not request tokens for ServiceAccounts in namespace kube-system"
        ),
        "unclear refusal: {kube_system}"
    );

    let api_audience = env.plane.api_url.as_str();
    let own_namespace = format!("in namespace {release_ns}");
    let wrong_audience =
        format!("only for the audiences sts.amazonaws.com, minio, not {api_audience}");
    let attacks = [
        TokenAttack {
            what: "an apiserver token for a kube-system controller",
            namespace: "kube-system",
            name: &victim,
            audiences: &[api_audience],
            expiration_seconds: 600,
            refusal: "in namespace kube-system",
        },
        TokenAttack {
            what: "a token of its own ServiceAccount",
            namespace: release_ns,
            name: &operator_sa,
            audiences: &[sts],
            expiration_seconds: 600,
            refusal: &own_namespace,
        },
        TokenAttack {
            what: "a tenant token with the apiserver's audience",
            namespace: &tenant,
            name: "app",
            audiences: &[api_audience],
            expiration_seconds: 600,
            refusal: &wrong_audience,
        },
        TokenAttack {
            // The apiserver fills in its own audience before admission.
            what: "a tenant token with the default (apiserver) audience",
            namespace: &tenant,
            name: "app",
            audiences: &[],
            expiration_seconds: 600,
            refusal: &wrong_audience,
        },
        TokenAttack {
            what: "a longer-lived tenant token",
            namespace: &tenant,
            name: "app",
            audiences: &[sts],
            expiration_seconds: 3600,
            refusal: "valid for at most 600 seconds",
        },
    ];
    for attack in attacks {
        let result = token_request(
            &as_operator,
            attack.namespace,
            attack.name,
            attack.audiences,
            attack.expiration_seconds,
        )
        .await;
        match refusal(result) {
            Ok(message) => ensure!(
                message.contains(attack.refusal),
                "{}: unclear refusal: {message}",
                attack.what
            ),
            Err(e) => bail!("{} was not refused: {e}", attack.what),
        }
    }

    // What podcreds asks for is allowed: its audiences, its lifetime, a tenant's ServiceAccount.
    for audience in [sts, "minio"] {
        token_request(&as_operator, &tenant, "app", &[audience], 600)
            .await
            .with_context(|| format!("a tenant token for {audience} was refused"))?;
    }
    // The policy binds only the operator: the admin still gets a kube-system token.
    token_request(&env.client, "kube-system", &victim, &[api_audience], 600)
        .await
        .context("the token guard refused someone other than the operator")?;

    secret_guard_checks(env, &as_operator, release_ns, &tenant, &victim).await
}

/// A Secret named `name` of `type_`, with podcreds' label if `labelled`.
fn secret_of(name: &str, type_: &str, labelled: bool, account: Option<&str>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: labelled.then(|| {
                BTreeMap::from([(
                    podcreds::secret::MANAGED_BY_LABEL.to_string(),
                    podcreds::secret::MANAGED_BY_VALUE.to_string(),
                )])
            }),
            annotations: account.map(|a| {
                BTreeMap::from([(
                    "kubernetes.io/service-account.name".to_string(),
                    a.to_string(),
                )])
            }),
            ..ObjectMeta::default()
        },
        type_: Some(type_.into()),
        ..Secret::default()
    }
}

/// The Secrets the operator's identity may write: Opaque, labelled by podcreds, outside the
/// system namespaces and its own; and it may delete only Secrets podcreds labelled. Every check
/// is a server-side dry run: nothing is written.
async fn secret_guard_checks(
    env: &Env,
    as_operator: &kube::Client,
    release_ns: &str,
    tenant: &str,
    victim: &str,
) -> anyhow::Result<()> {
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let in_ns = |ns: &str| -> Api<Secret> { Api::namespaced(as_operator.clone(), ns) };
    let token_type = "kubernetes.io/service-account-token";
    // A long-lived token for a kube-system controller, filled in by the token controller.
    let minted = secret_of("podcreds-minted", token_type, true, Some(victim));
    let kube_system = wait_for(Duration::from_secs(20), || async {
        refusal(in_ns("kube-system").create(&dry, &minted).await).ok()
    })
    .await
    .context("the operator may create a service-account-token Secret in kube-system")?;
    ensure!(
        kube_system
            .contains("the podcreds operator may not write Secrets in namespace kube-system"),
        "unclear refusal: {kube_system}"
    );
    let creates = [
        (
            "a service-account-token Secret in a tenant namespace",
            tenant,
            secret_of("minted", token_type, true, Some("app")),
            "only Secrets of type Opaque".to_string(),
        ),
        (
            "an unlabelled Secret",
            tenant,
            secret_of("unlabelled", "Opaque", false, None),
            "only Secrets labelled app.kubernetes.io/managed-by=podcreds".to_string(),
        ),
        (
            "a Secret in its own namespace",
            release_ns,
            secret_of("own", "Opaque", true, None),
            format!("may not write Secrets in namespace {release_ns}"),
        ),
    ];
    for (what, ns, secret, expected) in creates {
        match refusal(in_ns(ns).create(&dry, &secret).await) {
            Ok(message) => ensure!(
                message.contains(&expected),
                "{what}: unclear refusal: {message}"
            ),
            Err(e) => bail!("{what} was not refused: {e}"),
        }
    }
    // Someone else's Secret: neither taken over (labelled) nor deleted.
    let theirs = secret_of("theirs", "Opaque", false, None);
    Api::<Secret>::namespaced(env.client.clone(), tenant)
        .create(&PostParams::default(), &theirs)
        .await?;
    let take_over = json!({"metadata": {"labels": {podcreds::secret::MANAGED_BY_LABEL: podcreds::secret::MANAGED_BY_VALUE}}});
    let patch = kube::api::PatchParams {
        dry_run: true,
        ..kube::api::PatchParams::default()
    };
    let message = refusal(
        in_ns(tenant)
            .patch("theirs", &patch, &kube::api::Patch::Merge(&take_over))
            .await,
    )
    .map_err(|e| anyhow::anyhow!("relabelling someone else's Secret was not refused: {e}"))?;
    ensure!(
        message.contains("only Secrets labelled"),
        "unclear refusal: {message}"
    );
    let delete = kube::api::DeleteParams {
        dry_run: true,
        ..kube::api::DeleteParams::default()
    };
    let message = refusal(in_ns(tenant).delete("theirs", &delete).await)
        .map_err(|e| anyhow::anyhow!("deleting someone else's Secret was not refused: {e}"))?;
    ensure!(
        message.contains("may delete only Secrets labelled"),
        "unclear refusal: {message}"
    );
    // Of the docker types only the one image-pull Secrets have: not the legacy dockercfg.
    let mut dockercfg = secret_of("legacy-pull", "kubernetes.io/dockercfg", true, None);
    dockercfg.data = Some(BTreeMap::from([(
        ".dockercfg".to_string(),
        k8s_openapi::ByteString(b"{}".to_vec()),
    )]));
    let message = refusal(in_ns(tenant).create(&dry, &dockercfg).await)
        .map_err(|e| anyhow::anyhow!("a kubernetes.io/dockercfg Secret was not refused: {e}"))?;
    ensure!(
        message.contains("only Secrets of type Opaque"),
        "unclear refusal: {message}"
    );
    // What podcreds writes is admitted (credentials, and ECR image-pull Secrets), and the admin
    // is unaffected.
    in_ns(tenant)
        .create(&dry, &secret_of("credentials", "Opaque", true, None))
        .await
        .context("the operator's own kind of Secret was refused")?;
    let mut pull = secret_of("image-pull", "kubernetes.io/dockerconfigjson", true, None);
    pull.data = Some(BTreeMap::from([(
        ".dockerconfigjson".to_string(),
        k8s_openapi::ByteString(br#"{"auths":{}}"#.to_vec()),
    )]));
    in_ns(tenant)
        .create(&dry, &pull)
        .await
        .context("a labelled image-pull Secret was refused")?;
    let unlabelled_pull = Secret {
        metadata: ObjectMeta {
            labels: None,
            ..pull.metadata.clone()
        },
        ..pull.clone()
    };
    let message = refusal(in_ns(tenant).create(&dry, &unlabelled_pull).await)
        .map_err(|e| anyhow::anyhow!("an unlabelled image-pull Secret was not refused: {e}"))?;
    ensure!(
        message.contains("only Secrets labelled"),
        "unclear refusal: {message}"
    );
    Api::<Secret>::namespaced(env.client.clone(), "kube-system")
        .create(&dry, &minted)
        .await
        .context("the Secret guard refused someone other than the operator")?;
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![security:
    role_allowlist_is_path_aware_in_cel_and_rust,
    spoofed_session_names_are_refused_at_admission,
    spoofed_session_names_are_refused_by_the_operator,
    plain_http_sts_endpoints_are_refused,
    environment_cannot_reroute_sts_traffic,
    a_compromised_operator_cannot_mint_other_tokens,
];
