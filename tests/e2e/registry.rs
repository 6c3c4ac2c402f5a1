//! The harness runs only what `TESTS` lists, so a test function missing from it would exist and
//! never run. The sources of the test modules are compiled in and checked against `TESTS` each
//! time the harness starts, before it runs or lists anything.

/// Every module holding tests, with its source.
const TEST_MODULES: &[(&str, &str)] = &[
    ("chains", include_str!("chains.rs")),
    ("chart", include_str!("chart.rs")),
    ("consumers", include_str!("consumers.rs")),
    ("consumers_stale", include_str!("consumers_stale.rs")),
    ("endpoint", include_str!("endpoint.rs")),
    ("faults", include_str!("faults.rs")),
    ("grants", include_str!("grants.rs")),
    ("iam", include_str!("iam.rs")),
    ("lifecycle", include_str!("lifecycle.rs")),
    ("minio", include_str!("minio.rs")),
    ("moto", include_str!("moto.rs")),
    ("network", include_str!("network.rs")),
    ("rolesanywhere", include_str!("rolesanywhere.rs")),
    ("rolesanywhere_flow", include_str!("rolesanywhere_flow.rs")),
    ("saml", include_str!("saml.rs")),
    ("node", include_str!("node.rs")),
    ("release", include_str!("release.rs")),
    ("security", include_str!("security.rs")),
    ("sources", include_str!("sources.rs")),
    ("tenant", include_str!("tenant.rs")),
];

/// Modules of the harness that hold no tests.
const HARNESS_MODULES: &[&str] = &["registry", "support"];

const MAIN: &str = include_str!("main.rs");

/// The tests a module's source defines: every top-level `pub async fn NAME(<param>: &Env)`.
fn test_functions(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let source = format!("\n{source}");
    let mut rest = source.as_str();
    while let Some(at) = rest.find("\npub async fn ") {
        rest = &rest[at + "\npub async fn ".len()..];
        let Some((name, after)) = rest.split_once('(') else {
            break;
        };
        let Some((params, _)) = after.split_once(')') else {
            break;
        };
        let params: String = params.chars().filter(|c| !c.is_whitespace()).collect();
        let takes_only_env = params
            .trim_end_matches(',')
            .split_once(':')
            .is_some_and(|(param, ty)| !param.contains(',') && ty == "&Env");
        if takes_only_env {
            found.push(name.trim().to_string());
        }
    }
    found
}

/// The modules `main.rs` declares (`mod NAME;`).
fn declared_modules(main: &str) -> Vec<&str> {
    main.lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .collect()
}

/// What is wrong with `registered` (the names in `TESTS`, `module::function`): tests that are
/// defined but not registered, registered twice or registered but not defined, and modules the
/// check does not read. Empty when every test runs exactly once.
pub fn problems(registered: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let defined: Vec<String> = TEST_MODULES
        .iter()
        .flat_map(|(module, source)| {
            test_functions(source)
                .into_iter()
                .map(move |name| format!("{module}::{name}"))
        })
        .collect();
    for test in &defined {
        if !registered.contains(&test.as_str()) {
            problems.push(format!("{test} is defined but not registered in TESTS"));
        }
    }
    for (i, test) in registered.iter().enumerate() {
        if registered[..i].contains(test) {
            problems.push(format!("{test} is registered twice"));
        } else if !defined.iter().any(|d| d == test) {
            problems.push(format!(
                "{test} is registered but is no `pub async fn NAME(env: &Env)` of a checked module"
            ));
        }
    }
    for module in declared_modules(MAIN) {
        if !HARNESS_MODULES.contains(&module) && !TEST_MODULES.iter().any(|(m, _)| *m == module) {
            problems.push(format!(
                "module {module} is not checked: add it to TEST_MODULES in tests/e2e/registry.rs"
            ));
        }
    }
    problems
}
