// Bindings with a `roleChain` that break an STS limit, shared by the operator's unit tests
// (`src/spec.rs`) and the end-to-end test that sends each through the apiserver
// (`tests/e2e/chains.rs`): the CRD's schema and CEL rules and the operator's own checks must
// refuse the same inputs. Included with `include!`; needs `serde_json`.

/// One hostile binding: `fields` replace those of [`chain_case_base`], and each side's refusal
/// must contain its text.
// Each file that includes the table reads its own side's text only.
#[allow(dead_code)]
pub struct ChainCase {
    pub name: &'static str,
    pub fields: serde_json::Value,
    /// Part of the apiserver's refusal (schema or CEL).
    pub apiserver: &'static str,
    /// Part of the operator's refusal (`podcreds::spec::resolve`).
    pub operator: &'static str,
}

pub const CHAIN_CASE_ENTRY_ROLE: &str = "arn:aws:iam::123456789012:role/entry";
pub const CHAIN_CASE_HOP_ROLE: &str = "arn:aws:iam::123456789012:role/hop";
/// The endpoint a case may name: the unit tests allow it, and the apiserver never calls it.
pub const CHAIN_CASE_ENDPOINT: &str = "https://127.0.0.1:9000";

/// The valid binding every case starts from.
pub fn chain_case_base() -> serde_json::Value {
    serde_json::json!({"serviceAccountName": "app", "roleArn": CHAIN_CASE_ENTRY_ROLE})
}

fn one_hop(fields: serde_json::Value) -> serde_json::Value {
    let mut hop = serde_json::json!({"roleArn": CHAIN_CASE_HOP_ROLE});
    if let (Some(hop), serde_json::Value::Object(fields)) = (hop.as_object_mut(), fields) {
        hop.extend(fields);
    }
    serde_json::json!({"roleChain": [hop]})
}

fn tags(n: usize) -> serde_json::Value {
    (0..n)
        .map(|i| serde_json::json!({"key": format!("k{i}"), "value": "v"}))
        .collect()
}

pub fn chain_cases() -> Vec<ChainCase> {
    use serde_json::json;
    let hop = CHAIN_CASE_HOP_ROLE;
    let case = |name, fields, apiserver, operator| ChainCase {
        name,
        fields,
        apiserver,
        operator,
    };
    vec![
        case(
            "external-id-short",
            one_hop(json!({"externalId": "x"})),
            "roleChain[0].externalId",
            "roleChain[0].externalId",
        ),
        case(
            "external-id-long",
            one_hop(json!({"externalId": "e".repeat(1225)})),
            "roleChain[0].externalId",
            "roleChain[0].externalId",
        ),
        case(
            "external-id-chars",
            one_hop(json!({"externalId": "ext id!"})),
            "roleChain[0].externalId",
            "roleChain[0].externalId",
        ),
        case(
            "hop-session-name",
            one_hop(json!({"sessionName": "has space"})),
            "roleChain[0].sessionName",
            "roleChain[0].sessionName",
        ),
        case(
            "hop-session-name-long",
            one_hop(json!({"sessionName": "s".repeat(65)})),
            "roleChain[0].sessionName",
            "roleChain[0].sessionName",
        ),
        case(
            "hop-role-arn",
            json!({"roleChain": [{"roleArn": "arn:aws:iam::123:role/x"}]}),
            "roleChain[0].roleArn",
            "roleChain[0].roleArn",
        ),
        case(
            "source-identity-short",
            one_hop(json!({"sourceIdentity": "a"})),
            "roleChain[0].sourceIdentity",
            "roleChain[0].sourceIdentity",
        ),
        case(
            "source-identity-aws-prefix",
            one_hop(json!({"sourceIdentity": "aws:admin"})),
            "roleChain[0].sourceIdentity",
            "must not start with aws:",
        ),
        case(
            "source-identity-long",
            one_hop(json!({"sourceIdentity": "i".repeat(65)})),
            "roleChain[0].sourceIdentity",
            "roleChain[0].sourceIdentity",
        ),
        case(
            "source-identity-on-a-later-hop",
            json!({"roleChain": [{"roleArn": hop}, {"roleArn": hop, "sourceIdentity": "alice"}]}),
            "only the first roleChain hop may set sourceIdentity",
            "roleChain[1].sourceIdentity",
        ),
        case(
            "too-many-tags",
            one_hop(json!({"tags": tags(51)})),
            "roleChain[0].tags",
            "roleChain[0].tags",
        ),
        case(
            "tag-key-long",
            one_hop(json!({"tags": [{"key": "k".repeat(129), "value": "v"}]})),
            "roleChain[0].tags",
            "roleChain[0].tags",
        ),
        case(
            "tag-value-long",
            one_hop(json!({"tags": [{"key": "k", "value": "v".repeat(257)}]})),
            "roleChain[0].tags",
            "roleChain[0].tags",
        ),
        case(
            "tag-key-characters",
            one_hop(json!({"tags": [{"key": "a;b", "value": "v"}]})),
            "roleChain[0].tags",
            "roleChain[0].tags",
        ),
        case(
            "tag-keys-equal-but-for-case",
            one_hop(json!({"tags": [{"key": "Team", "value": "a"}, {"key": "team", "value": "b"}]})),
            "keys unique regardless of case",
            "appears twice",
        ),
        case(
            "tag-key-aws-prefix",
            one_hop(json!({"tags": [{"key": "AWS:PrincipalTag", "value": "v"}]})),
            "not starting with aws: or kubernetes-",
            "are reserved",
        ),
        case(
            "tag-key-forging-kubernetes-namespace",
            one_hop(json!({"tags": [{"key": "Kubernetes-Namespace", "value": "kube-system"}]})),
            "not starting with aws: or kubernetes-",
            "are reserved",
        ),
        case(
            "transitive-key-without-its-tag",
            one_hop(json!({"tags": [{"key": "team", "value": "a"}], "transitiveTagKeys": ["project"]})),
            "roleChain[0].transitiveTagKeys",
            "roleChain[0].transitiveTagKeys",
        ),
        case(
            "overriding-an-inherited-transitive-tag",
            json!({"roleChain": [
                {"roleArn": hop, "tags": [{"key": "team", "value": "a"}], "transitiveTagKeys": ["team"]},
                {"roleArn": hop, "tags": [{"key": "TEAM", "value": "admins"}]},
            ]}),
            "an earlier hop made transitive",
            "made transitive by an earlier hop",
        ),
        case(
            "policy-and-arns-over-2048",
            one_hop(json!({
                "sessionPolicy": format!("{{\"Version\":\"2012-10-17\",\"Sid\":\"{}\"}}", "p".repeat(1800)),
                "policyArns": (0..8)
                    .map(|i| format!("arn:aws:iam::123456789012:policy/scope-down-{i}"))
                    .collect::<Vec<_>>(),
            })),
            "sessionPolicy and policyArns together",
            "sessionPolicy and policyArns together",
        ),
        case(
            "eleven-policy-arns",
            one_hop(json!({"policyArns": vec!["arn:aws:iam::aws:policy/ReadOnlyAccess"; 11]})),
            "roleChain[0].policyArns",
            "roleChain[0].policyArns",
        ),
        case(
            "hop-policy-not-an-object",
            one_hop(json!({"sessionPolicy": "[1]"})),
            "sessionPolicy must be a JSON object",
            "roleChain[0].sessionPolicy",
        ),
        case(
            "six-hops",
            json!({"roleChain": vec![json!({"roleArn": hop}); 6]}),
            "must have at most 5 items",
            "at most 5 hops",
        ),
        case(
            "kubernetes-tags-without-a-chain",
            json!({"kubernetesSessionTags": true}),
            "kubernetesSessionTags needs an exchange that carries session tags",
            "kubernetesSessionTags",
        ),
        case(
            "kubernetes-tags-leave-no-room",
            json!({"kubernetesSessionTags": true, "roleChain": [{"roleArn": hop, "tags": tags(47)}]}),
            "at most 46 tags",
            "at most 46 tags",
        ),
        case(
            "chain-on-minio",
            json!({
                "roleArn": "arn:minio:iam:::role/MHR2BeH2-q1dHO2yx5U9Mf-tP9Q",
                "sts": {"provider": "MinIO", "endpoint": CHAIN_CASE_ENDPOINT},
                "roleChain": [{"roleArn": hop}],
            }),
            "roleChain needs sts.provider AWS",
            "needs sts.provider AWS",
        ),
        case(
            "renew-before-an-hour",
            json!({"durationSeconds": 7200, "renewBefore": "1h", "roleChain": [{"roleArn": hop}]}),
            "renewBefore must be shorter than one hour",
            "shorter than one hour",
        ),
    ]
}
