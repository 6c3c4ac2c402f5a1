use super::*;

#[test]
fn flags_parse_into_settings() {
    let cli = Cli::try_parse_from([
        "podcreds",
        "run",
        "--sts-endpoint",
        "http://127.0.0.1:9000",
        "--allowed-audiences",
        "minio,other",
        "--namespaces",
        "a,b",
        "--log-format",
        "text",
    ])
    .expect("parses");
    let Command::Run(args) = cli.command else {
        panic!("expected run")
    };
    let s = args.settings();
    assert_eq!(
        s.sts_policy.default_endpoint(),
        Some("http://127.0.0.1:9000")
    );
    assert_eq!(s.sts_policy.default_endpoints, ["http://127.0.0.1:9000"]);
    assert!(s.sts_network.proxy.is_none());
    assert_eq!(
        s.sts_network.endpoint_cooldown,
        crate::failover::DEFAULT_COOLDOWN
    );
    assert_eq!(s.sts_policy.allowed_audiences, vec!["minio", "other"]);
    assert_eq!(s.namespaces, vec!["a", "b"]);
    assert_eq!(s.token_expiration_seconds, 600);
    assert_eq!(args.log_format, LogFormat::Text);
    assert!(!s.sts_policy.allow_unprefixed_session_names);
    assert!(!s.sts_policy.allow_insecure_endpoints);
    // Credentials of bindings no longer allowed them go at once by default.
    assert_eq!(s.revocation_grace, std::time::Duration::ZERO);
    let cli =
        Cli::try_parse_from(["podcreds", "run", "--revocation-grace-period=15m"]).expect("parses");
    let Command::Run(args) = cli.command else {
        panic!("expected run")
    };
    assert_eq!(
        args.settings().revocation_grace,
        std::time::Duration::from_secs(900)
    );
}

#[test]
fn session_names_are_relaxed_only_on_request() {
    let cli = Cli::try_parse_from(["podcreds", "run", "--allow-unprefixed-session-names"])
        .expect("parses");
    let Command::Run(args) = cli.command else {
        panic!("expected run")
    };
    assert!(args.settings().sts_policy.allow_unprefixed_session_names);
}

#[test]
fn plain_http_is_allowed_only_on_request() {
    let cli = Cli::try_parse_from([
        "podcreds",
        "run",
        "--sts-endpoint=http://127.0.0.1:9000",
        "--allow-insecure-sts-endpoints",
    ])
    .expect("parses");
    let Command::Run(args) = cli.command else {
        panic!("expected run")
    };
    let settings = args.settings();
    assert!(settings.sts_policy.allow_insecure_endpoints);
    assert!(settings.sts_policy.check().is_ok());
}

#[test]
fn saml_needs_the_operators_namespace_and_is_off_by_default() {
    let parse = |args: &[&str]| {
        let Command::Run(run) = Cli::try_parse_from(args).ok()?.command else {
            return None;
        };
        Some(run.settings())
    };
    let off = parse(&["podcreds", "run", "--namespace=ops"]).expect("parses");
    assert_eq!(off.saml.key_namespace, None);
    assert!(parse(&["podcreds", "run", "--saml-enabled"]).is_none());
    let on = parse(&[
        "podcreds",
        "run",
        "--saml-enabled",
        "--namespace=ops",
        "--saml-provider-arn=arn:aws:iam::123456789012:saml-provider/p",
    ])
    .expect("parses");
    assert_eq!(on.saml.key_namespace.as_deref(), Some("ops"));
    assert_eq!(on.saml.entity_id, crate::saml::DEFAULT_ENTITY_ID);
    assert_eq!(
        on.sts_policy.default_saml_provider_arn.as_deref(),
        Some("arn:aws:iam::123456789012:saml-provider/p")
    );
}

#[test]
fn out_of_range_flags_are_rejected() {
    assert!(Cli::try_parse_from(["podcreds", "run", "--token-expiration-seconds", "60"]).is_err());
    assert!(Cli::try_parse_from(["podcreds", "run", "--concurrency", "0"]).is_err());
}

#[test]
fn an_installation_is_named_and_its_replicas_write_as_one() {
    let parse = |args: &[&str]| {
        let Command::Run(run) = Cli::try_parse_from(args).ok()?.command else {
            return None;
        };
        Some(run.settings())
    };
    let default = parse(&["podcreds", "run"]).expect("parses");
    assert_eq!(default.installation, "default");
    assert!(parse(&["podcreds", "run", "--installation=a/b"]).is_none());
    let replica = |pod: &str| {
        parse(&[
            "podcreds",
            "run",
            "--installation=blue",
            "--leader-election",
            "--leader-election-namespace=ops",
            &format!("--instance={pod}"),
        ])
        .expect("parses")
    };
    assert_eq!(replica("pod-1").installation, "blue");
    assert_eq!(replica("pod-1").writer, "blue/ops/podcreds-leader");
    assert_eq!(replica("pod-1").writer, replica("pod-2").writer);
}

#[test]
fn several_admission_policies_are_checked() {
    let cli = Cli::try_parse_from([
        "podcreds",
        "run",
        "--admission-policy-name=a,b",
        "--admission-policy-name",
        "c",
    ])
    .expect("parses");
    let Command::Run(args) = cli.command else {
        panic!("expected run")
    };
    assert_eq!(args.admission_policy_names, vec!["a", "b", "c"]);
}

#[test]
fn an_ordered_endpoint_list_replaces_the_single_default() {
    let parse = |args: &[&str]| {
        let Command::Run(run) = Cli::try_parse_from(args).ok()?.command else {
            return None;
        };
        Some(run.settings())
    };
    let listed = parse(&[
        "podcreds",
        "run",
        "--sts-endpoints=https://sts.eu-west-1.amazonaws.com,https://sts.eu-central-1.amazonaws.com",
        "--sts-endpoint-cooldown=2m",
    ])
    .expect("parses");
    assert_eq!(
        listed.sts_policy.default_endpoints,
        [
            "https://sts.eu-west-1.amazonaws.com",
            "https://sts.eu-central-1.amazonaws.com"
        ]
    );
    assert_eq!(
        listed.sts_network.endpoint_cooldown,
        std::time::Duration::from_secs(120)
    );
    // --sts-endpoint is the one-endpoint form; both at once is a mistake.
    assert!(
        parse(&[
            "podcreds",
            "run",
            "--sts-endpoint=https://a.example",
            "--sts-endpoints=https://b.example",
        ])
        .is_none()
    );
    let none = parse(&["podcreds", "run"]).expect("parses");
    assert!(none.sts_policy.default_endpoints.is_empty());
}

#[test]
fn the_proxy_flag_keeps_its_credentials_out_of_sight() {
    let cli = Cli::try_parse_from([
        "podcreds",
        "run",
        "--sts-proxy=http://user:hunter2@proxy.corp:3128",
        "--sts-no-proxy=minio.storage.svc,,10.0.0.0/8",
    ])
    .expect("parses");
    let Command::Run(args) = cli.command else {
        panic!("expected run")
    };
    assert!(!format!("{args:?}").contains("hunter2"));
    let settings = args.settings();
    assert!(!format!("{settings:?}").contains("hunter2"));
    assert_eq!(
        settings.sts_network.no_proxy,
        ["minio.storage.svc", "10.0.0.0/8"]
    );
    let proxy = settings.sts_network.proxy().expect("valid").expect("set");
    assert_eq!(proxy.shown(), "http://proxy.corp:3128");
    assert!(proxy.authenticated());
}

#[test]
fn agent_service_accounts_are_namespace_and_name_as_the_apiserver_allows() {
    assert_eq!(
        parse_service_account("podcreds-node/podcreds-agent"),
        Ok(("podcreds-node".into(), "podcreds-agent".into()))
    );
    for bad in [
        "podcreds-agent",
        "-ns/a",
        "ns/-a",
        "a.b/agent",
        "ns/",
        "/a",
        "NS/a",
    ] {
        assert!(parse_service_account(bad).is_err(), "{bad} accepted");
    }
}
