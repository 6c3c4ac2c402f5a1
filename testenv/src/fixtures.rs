//! Binding specs the end-to-end tests and the benchmark share.

use serde_json::{Value, json};

/// One role chain hop as large as the CRD allows (ARN, external ID, session policy and `tags`
/// tags at their longest), transitive or not.
fn large_hop(prefix: &str, tags: usize, transitive: bool) -> Value {
    let keys: Vec<String> = (0..tags)
        .map(|i| format!("{prefix}{i:0>width$}", width = 128 - prefix.len()))
        .collect();
    let tag_list: Vec<Value> = keys
        .iter()
        .map(|k| json!({"key": k, "value": "v".repeat(256)}))
        .collect();
    let mut hop = json!({
        "roleArn": format!("arn:aws:iam::123456789012:role/{}/{prefix}", "p".repeat(1900)),
        "externalId": "x".repeat(1224),
        "sessionPolicy": format!("{{\"Version\":\"2012-10-17\",\"Sid\":\"{}\"}}", "s".repeat(2000)),
        "tags": tag_list,
    });
    if transitive {
        hop["transitiveTagKeys"] = json!(keys);
    }
    hop
}

/// A binding spec of ServiceAccount `app` for `role` with five large hops and SAML tags, with
/// `tags` tags each: with 11 (all transitive) just under the operator's cached-size bound; with
/// 50 (transitive on the last hop only, as the apiserver's CEL cost limit allows) about as large
/// as the CRD admits.
pub fn large_binding_spec(role: &str, tags: usize) -> Value {
    let all_transitive = tags <= 11;
    let chain: Vec<Value> = (0..5)
        .map(|h| large_hop(&format!("h{h}k"), tags, all_transitive || h == 4))
        .collect();
    let saml = large_hop("samlk", tags, true);
    json!({
        "serviceAccountName": "app",
        "roleArn": role,
        "roleChain": chain,
        "saml": {
            "providerArn": format!("arn:aws:iam::123456789012:saml-provider/{}", "s".repeat(128)),
            "tags": saml["tags"],
            "transitiveTagKeys": saml["transitiveTagKeys"],
        },
    })
}
