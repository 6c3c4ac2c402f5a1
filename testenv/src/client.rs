//! Kubeconfigs, clients and the small API helpers the suite, the benchmark and the demo share.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::{Error, pki};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// A kubeconfig for `server` authenticating with a client certificate or a bearer token.
pub fn kubeconfig_yaml(server: &str, ca_pem: &str, user: &UserAuth) -> String {
    let user_block = match user {
        UserAuth::Certificate(ck) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&ck.cert_pem),
            b64(&ck.key_pem)
        ),
        UserAuth::Token(t) => format!("    token: {t}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testenv\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: testenv\n  context:\n    cluster: testenv\n    user: user\ncurrent-context: testenv\nusers:\n- name: user\n  user:\n{user_block}",
        b64(ca_pem)
    )
}

/// Creates ServiceAccount `namespace/name`.
pub async fn create_service_account(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(), Error> {
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), namespace);
    let sa = k8s_openapi::api::core::v1::ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &sa).await?;
    Ok(())
}

/// Name and resourceVersion of every Secret in `namespace`: two of these differ exactly where
/// something wrote a Secret in between.
pub async fn secret_versions(
    client: &Client,
    namespace: &str,
) -> Result<BTreeMap<String, String>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|s| {
            (
                s.metadata.name.unwrap_or_default(),
                s.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect())
}

/// A Secret's data as text, key by key.
pub fn decode_secret(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .as_ref()
        .map(|d| {
            d.iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// How a kubeconfig's user authenticates.
pub enum UserAuth {
    Certificate(pki::CertAndKey),
    Token(String),
}

/// A kube client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, Error> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| Error::KubeConfig(e.to_string()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::KubeConfig(e.to_string()))?;
    Ok(Client::try_from(config)?)
}
