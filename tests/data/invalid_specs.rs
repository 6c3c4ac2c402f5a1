// Bindings a tenant may write that are wrong in one field, shared by the operator's unit tests
// (`src/spec/tests/invalid_specs.rs`) and the end-to-end test that sends each through the
// apiserver (`lifecycle::invalid_specs_are_rejected_by_the_apiserver`): the CRD's schema and CEL
// rules and the operator's own checks must refuse the same inputs, each saying which field.
// Included with `include!`; needs `serde_json`.

/// One invalid binding spec, and part of each side's refusal.
// Each file that includes the table reads its own side's text only.
#[allow(dead_code)]
pub struct InvalidSpec {
    pub name: &'static str,
    pub spec: serde_json::Value,
    /// Part of the apiserver's refusal (schema or CEL).
    pub apiserver: &'static str,
    /// Part of the operator's refusal: `podcreds::spec::resolve`'s error, or the error reading
    /// the spec at all (a field missing or of the wrong type).
    pub operator: &'static str,
}

pub const INVALID_SPEC_ROLE: &str = "arn:aws:iam::123456789012:role/ok";

/// A valid spec of ServiceAccount `a` plus `fields`.
fn invalid_spec_with(fields: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({"serviceAccountName": "a", "roleArn": INVALID_SPEC_ROLE});
    if let (Some(base), serde_json::Value::Object(fields)) = (spec.as_object_mut(), fields) {
        base.extend(fields);
    }
    spec
}

pub fn invalid_specs() -> Vec<InvalidSpec> {
    let case = |name, spec, apiserver, operator| InvalidSpec {
        name,
        spec,
        apiserver,
        operator,
    };
    use serde_json::json;
    vec![
        case(
            "no-sa",
            json!({"roleArn": INVALID_SPEC_ROLE}),
            "serviceAccountName: Required value",
            "serviceAccountName",
        ),
        case(
            "no-role",
            json!({"serviceAccountName": "a"}),
            "roleArn is required",
            "roleArn",
        ),
        case(
            "bad-arn",
            json!({"serviceAccountName": "a", "roleArn": "arn:aws:iam::123:role/x"}),
            "spec.roleArn",
            "roleArn",
        ),
        case(
            "user-arn",
            json!({"serviceAccountName": "a", "roleArn": "arn:aws:iam::123456789012:user/u"}),
            "spec.roleArn",
            "roleArn",
        ),
        case(
            "sa-ns",
            json!({"serviceAccountName": "other:sa", "roleArn": INVALID_SPEC_ROLE}),
            "spec.serviceAccountName",
            "serviceAccountName",
        ),
        case(
            "short",
            invalid_spec_with(json!({"durationSeconds": 60})),
            "spec.durationSeconds",
            "durationSeconds",
        ),
        case(
            "long",
            invalid_spec_with(json!({"durationSeconds": 50000})),
            "spec.durationSeconds",
            "durationSeconds",
        ),
        case(
            "renew-bad",
            invalid_spec_with(json!({"renewBefore": "soon"})),
            "spec.renewBefore",
            "renewBefore",
        ),
        case(
            "renew-long",
            invalid_spec_with(json!({"durationSeconds": 900, "renewBefore": "1h"})),
            "renewBefore must be shorter than durationSeconds",
            "renewBefore",
        ),
        case(
            "renew-tiny",
            invalid_spec_with(json!({"renewBefore": "10s"})),
            "renewBefore must be at least 60s",
            "renewBefore",
        ),
        case(
            "session",
            invalid_spec_with(json!({"sessionName": "has space"})),
            "spec.sessionName",
            "sessionName",
        ),
        case(
            "session-long",
            invalid_spec_with(json!({"sessionName": "x".repeat(65)})),
            "spec.sessionName",
            "sessionName",
        ),
        case(
            "policy",
            invalid_spec_with(json!({"sessionPolicy": "[1]"})),
            "sessionPolicy must be a JSON object",
            "sessionPolicy",
        ),
        case(
            "policy-big",
            invalid_spec_with(
                json!({"sessionPolicy": format!("{{\"a\":\"{}\"}}", "x".repeat(2100))}),
            ),
            "spec.sessionPolicy",
            "sessionPolicy",
        ),
        case(
            "arns",
            invalid_spec_with(json!({"policyArns": vec!["arn:aws:iam::aws:policy/P"; 11]})),
            "spec.policyArns",
            "policyArns",
        ),
        case(
            "arn-kind",
            invalid_spec_with(json!({"policyArns": ["arn:aws:iam::aws:role/P"]})),
            "every policyArns entry must be an IAM policy ARN",
            "policyArns",
        ),
        case(
            "endpoint",
            invalid_spec_with(json!({"sts": {"endpoint": "ftp://x"}})),
            "endpoint must be an http(s) URL",
            "sts.endpoint",
        ),
        case(
            "region",
            invalid_spec_with(json!({"sts": {"region": "Mars"}})),
            "spec.sts.region",
            "sts.region",
        ),
        case(
            "mount",
            invalid_spec_with(json!({"mountPath": "/x;rm -rf /"})),
            "spec.mountPath",
            "mountPath",
        ),
        case(
            "mount-dots",
            invalid_spec_with(json!({"mountPath": "/a/../b"})),
            "mountPath must not contain '..'",
            "mountPath",
        ),
        case(
            "secret",
            invalid_spec_with(json!({"secretName": "UPPER"})),
            "spec.secretName",
            "secretName",
        ),
        case(
            "unicode",
            json!({"serviceAccountName": "ünïcode", "roleArn": INVALID_SPEC_ROLE}),
            "spec.serviceAccountName",
            "serviceAccountName",
        ),
        case(
            "provider-unknown",
            invalid_spec_with(json!({"sts": {"provider": "Garage"}})),
            "spec.sts.provider",
            "Garage",
        ),
        case(
            "provider-aws-endpoint",
            json!({"serviceAccountName": "a", "roleArn": "arn:minio:iam:::role/x", "sts": {"provider": "MinIO", "endpoint": "https://sts.us-east-1.amazonaws.com"}}),
            "cannot name an AWS endpoint",
            "sts.provider",
        ),
        // A fail-over list: one of endpoint and endpoints, 1 to 4 distinct http(s) URLs, no AWS
        // endpoint for an STS-compatible provider.
        case(
            "endpoints-and-endpoint",
            invalid_spec_with(json!({"sts": {"endpoint": "https://sts-a.example", "endpoints": ["https://sts-b.example"]}})),
            "set sts.endpoint (one endpoint) or sts.endpoints",
            "sts.endpoints",
        ),
        case(
            "endpoints-empty",
            invalid_spec_with(json!({"sts": {"endpoints": []}})),
            "spec.sts.endpoints",
            "sts.endpoints",
        ),
        case(
            "endpoints-many",
            invalid_spec_with(json!({"sts": {"endpoints": ["https://a", "https://b", "https://c", "https://d", "https://e"]}})),
            "spec.sts.endpoints",
            "sts.endpoints",
        ),
        case(
            "endpoints-twice",
            invalid_spec_with(json!({"sts": {"endpoints": ["https://sts-a.example", "https://sts-b.example", "https://sts-a.example"]}})),
            "Duplicate value",
            "twice",
        ),
        case(
            "endpoints-ftp",
            invalid_spec_with(json!({"sts": {"endpoints": ["ftp://x"]}})),
            "every endpoint must be an http(s) URL",
            "must be an http(s) URL",
        ),
        case(
            "provider-aws-endpoints",
            json!({"serviceAccountName": "a", "roleArn": "arn:minio:iam:::role/x", "sts": {"provider": "MinIO", "endpoints": ["https://sts.us-east-1.amazonaws.com"]}}),
            "cannot name an AWS endpoint",
            "sts.provider",
        ),
        case(
            "ra-and-saml",
            invalid_spec_with(json!({
                "rolesAnywhere": {
                    "trustAnchorArn": "arn:aws:rolesanywhere:eu-west-1:123456789012:trust-anchor/6b1c5a52-0f0e-4c44-9a55-3c1f6f3f5d2e",
                    "profileArn": "arn:aws:rolesanywhere:eu-west-1:123456789012:profile/0b8b6d1c-5d8e-4ab0-a1b7-8c3e7d9f2a41",
                },
                "saml": {},
            })),
            "rolesAnywhere",
            "rolesAnywhere",
        ),
        case(
            "ra-anchor",
            invalid_spec_with(json!({"rolesAnywhere": {"trustAnchorArn": "arn:aws:iam::123456789012:role/x"}})),
            "spec.rolesAnywhere.trustAnchorArn",
            "rolesAnywhere.trustAnchorArn",
        ),
    ]
}
