//! `podcreds iam trust-policy` and `podcreds oidc export`: read the binding and the cluster's
//! OIDC documents, let [`crate::iam`] decide, print or write the result.

use std::path::{Path, PathBuf};

use kube::Api;
use serde::Deserialize;
use serde_json::Value;

use crate::api::AWSRoleBinding;
use crate::cli::{OidcExportArgs, PolicyOutput, TrustPolicyArgs};
use crate::iam::{self, DISCOVERY_PATH, FirstPrincipal, IamError, JWKS_PATH};
use crate::spec::{self, FirstExchange, SourceCall, SpecError, StsPolicy};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an AWSRoleBinding manifest: {source}")]
    Manifest {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("name a binding: -f <manifest> (or - for standard input), or <name> with --namespace")]
    NoBinding,
    #[error("{path} holds no podcreds.dev AWSRoleBinding (it holds {kinds})")]
    NoBindingInManifest { path: PathBuf, kinds: String },
    #[error("{path} holds no AWSRoleBinding named {name:?}")]
    NotInManifest { path: PathBuf, name: String },
    #[error("cannot reach the cluster: {0}")]
    Cluster(#[source] kube::Error),
    #[error("the cluster answered {what} with something that is not JSON: {source}")]
    NotJson {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot build the request for {0}")]
    Request(&'static str),
    #[error("the binding is invalid: {0}")]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Iam(#[from] IamError),
}

async fn client() -> Result<kube::Client, CommandError> {
    kube::Client::try_default()
        .await
        .map_err(CommandError::Cluster)
}

/// GETs `path` from the apiserver and parses it as JSON.
async fn get_json(
    client: &kube::Client,
    path: &'static str,
    what: &'static str,
) -> Result<Value, CommandError> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|_| CommandError::Request(what))?;
    let text = client
        .request_text(request)
        .await
        .map_err(CommandError::Cluster)?;
    serde_json::from_str(&text).map_err(|source| CommandError::NotJson { what, source })
}

/// The AWSRoleBinding documents of a manifest (any number of YAML documents, other kinds
/// skipped), or an error naming what the file holds instead.
fn bindings_in_manifest(path: &Path, text: &str) -> Result<Vec<AWSRoleBinding>, CommandError> {
    let mut bindings = Vec::new();
    let mut other_kinds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value =
            serde_yaml::Value::deserialize(document).map_err(|source| CommandError::Manifest {
                path: path.to_path_buf(),
                source,
            })?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(serde_yaml::Value::as_str);
        let group = value
            .get("apiVersion")
            .and_then(serde_yaml::Value::as_str)
            .and_then(|v| v.split_once('/'))
            .map(|(group, _)| group);
        if kind == Some("AWSRoleBinding") && group == Some("podcreds.dev") {
            bindings.push(serde_yaml::from_value(value).map_err(|source| {
                CommandError::Manifest {
                    path: path.to_path_buf(),
                    source,
                }
            })?);
        } else {
            other_kinds.push(kind.unwrap_or("(no kind)").to_string());
        }
    }
    if bindings.is_empty() {
        return Err(CommandError::NoBindingInManifest {
            path: path.to_path_buf(),
            kinds: if other_kinds.is_empty() {
                "nothing".into()
            } else {
                other_kinds.join(", ")
            },
        });
    }
    Ok(bindings)
}

/// The namespace of the kubeconfig's current context (`default` without one), as kubectl picks it.
fn kubeconfig_namespace() -> String {
    kube::config::Kubeconfig::read()
        .ok()
        .and_then(|config| {
            let current = config.current_context.clone()?;
            config
                .contexts
                .into_iter()
                .find(|c| c.name == current)?
                .context?
                .namespace
        })
        .unwrap_or_else(|| "default".to_string())
}

/// The bindings the arguments name, each with its namespace: every AWSRoleBinding of a manifest
/// (`-f FILE`, `-f -` for standard input; a NAME picks one of them), or one from the cluster.
async fn load_bindings(
    args: &TrustPolicyArgs,
) -> Result<Vec<(AWSRoleBinding, String)>, CommandError> {
    let bindings = match (&args.filename, &args.name) {
        (Some(path), name) => {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(path)
            }
            .map_err(|source| CommandError::ReadFile {
                path: path.clone(),
                source,
            })?;
            let mut bindings = bindings_in_manifest(path, &text)?;
            if let Some(name) = name {
                bindings.retain(|b| b.metadata.name.as_deref() == Some(name.as_str()));
                if bindings.is_empty() {
                    return Err(CommandError::NotInManifest {
                        path: path.clone(),
                        name: name.clone(),
                    });
                }
            }
            bindings
        }
        (None, Some(name)) => {
            let client = client().await?;
            let namespace = args
                .namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string());
            vec![
                Api::<AWSRoleBinding>::namespaced(client, &namespace)
                    .get(name)
                    .await
                    .map_err(CommandError::Cluster)?,
            ]
        }
        (None, None) => return Err(CommandError::NoBinding),
    };
    Ok(bindings
        .into_iter()
        .map(|binding| {
            let namespace = args
                .namespace
                .clone()
                .or_else(|| binding.metadata.namespace.clone())
                .unwrap_or_else(kubeconfig_namespace);
            (binding, namespace)
        })
        .collect())
}

/// Who the binding's first exchange speaks for, from the flags or the cluster's issuer.
async fn first_principal(args: &TrustPolicyArgs) -> Result<FirstPrincipal, CommandError> {
    Ok(match (&args.saml_provider_arn, &args.issuer) {
        (Some(provider_arn), _) => FirstPrincipal::Saml {
            provider_arn: provider_arn.clone(),
        },
        (None, Some(issuer)) => FirstPrincipal::Oidc {
            issuer: issuer.clone(),
        },
        (None, None) => {
            let discovery = get_json(
                &client().await?,
                "/.well-known/openid-configuration",
                "the OIDC discovery document",
            )
            .await?;
            let issuer = discovery
                .get("issuer")
                .and_then(Value::as_str)
                .ok_or(IamError::DiscoveryMalformed)?;
            FirstPrincipal::Oidc {
                issuer: issuer.to_string(),
            }
        }
    })
}

/// What one binding needs of IAM: the trust policy of every role it passes through, or nothing.
enum Needs {
    Policies(Vec<iam::TrustPolicy>),
    /// The binding assumes no role: why no trust policy is involved.
    Nothing(IamError),
}

async fn needs_of(
    args: &TrustPolicyArgs,
    binding: &AWSRoleBinding,
    namespace: &str,
) -> Result<Needs, CommandError> {
    let name = binding.metadata.name.clone().unwrap_or_default();
    // The operator's allowlists are its own business: here whatever the binding names counts.
    let policy = StsPolicy {
        default_audience: args.audience.clone(),
        allowed_audiences: binding.spec.audience.iter().cloned().collect(),
        allowed_endpoints: binding
            .spec
            .sts
            .as_ref()
            .map(|s| {
                s.endpoint
                    .iter()
                    .chain(s.endpoints.iter().flatten())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
        cluster_name: args.cluster_name.clone(),
        default_saml_provider_arn: args.saml_provider_arn.clone(),
        default_trust_anchor_arn: args.trust_anchor_arn.clone(),
        default_profile_arn: args.profile_arn.clone(),
        allow_unprefixed_session_names: true,
        allow_insecure_endpoints: true,
        ..StsPolicy::default()
    };
    let resolved = spec::resolve(&binding.spec, namespace, &name, &policy)?;
    let first = match &resolved.first {
        FirstExchange::WebIdentity { .. } => first_principal(args).await?,
        // A binding with spec.saml names its provider (or takes --saml-provider-arn's).
        FirstExchange::Saml(saml) => FirstPrincipal::Saml {
            provider_arn: saml.provider_arn.clone(),
        },
        FirstExchange::RolesAnywhere(ra) => FirstPrincipal::RolesAnywhere {
            trust_anchor_arn: ra.trust_anchor_arn.clone(),
        },
        FirstExchange::CredentialSource(source) => {
            let assumes_a_role = match &source.call {
                SourceCall::AssumeRole { .. } => true,
                // The IAM user's own session signs the first hop of a chain after it.
                SourceCall::GetSessionToken => !resolved.role_chain.is_empty(),
                SourceCall::GetFederationToken { .. } => false,
            };
            if !assumes_a_role {
                return Ok(Needs::Nothing(IamError::NoRole));
            }
            FirstPrincipal::IamUser {
                user_arn: args
                    .user_arn
                    .clone()
                    .ok_or_else(|| IamError::UserArnNeeded(source.name.clone()))?,
            }
        }
    };
    Ok(Needs::Policies(iam::trust_policies(
        &resolved, namespace, &first,
    )?))
}

/// Prints the trust policy of every role the named bindings pass through.
pub async fn trust_policy(args: TrustPolicyArgs) -> Result<String, CommandError> {
    let mut json_list = Vec::new();
    let mut text = String::new();
    for (binding, namespace) in load_bindings(&args).await? {
        let name = binding.metadata.name.clone().unwrap_or_default();
        let policies = match needs_of(&args, &binding, &namespace).await? {
            Needs::Policies(policies) => policies,
            Needs::Nothing(why) => {
                text.push_str(&format!("# {namespace}/{name}: nothing to do: {why}\n"));
                continue;
            }
        };
        for p in &policies {
            json_list.push(serde_json::json!({
                "binding": format!("{namespace}/{name}"),
                "roleArn": p.role_arn,
                "assumedBy": p.assumed_by,
                "trustPolicy": p.document,
            }));
            let role_name = p.role_arn.rsplit('/').next().unwrap_or(&p.role_arn);
            text.push_str(&format!(
                "# {} ({}, for {namespace}/{name}); apply with:\n#   aws iam update-assume-role-policy --role-name {role_name} --policy-document file://{role_name}-trust.json\n{:#}\n",
                p.role_arn, p.assumed_by, p.document
            ));
        }
    }
    Ok(match args.output {
        PolicyOutput::Json => format!("{:#}\n", Value::Array(json_list)),
        PolicyOutput::Text => text,
    })
}

fn write(path: &Path, value: &Value) -> Result<(), CommandError> {
    let fail = |source| CommandError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    std::fs::write(path, format!("{value:#}\n")).map_err(fail)
}

/// Writes the cluster's discovery document and JWKS under `args.out`, as they must be served at
/// the issuer URL, and returns what to do next.
pub async fn oidc_export(args: OidcExportArgs) -> Result<String, CommandError> {
    let client = client().await?;
    let discovery = get_json(
        &client,
        "/.well-known/openid-configuration",
        "the OIDC discovery document",
    )
    .await?;
    let jwks = get_json(&client, "/openid/v1/jwks", "the JWKS").await?;
    let documents = iam::prepare_oidc_documents(discovery, jwks, args.issuer.as_deref())?;
    let discovery_path = args.out.join(DISCOVERY_PATH);
    let jwks_path = args.out.join(JWKS_PATH);
    write(&discovery_path, &documents.discovery)?;
    write(&jwks_path, &documents.jwks)?;
    let issuer = documents.issuer.trim_end_matches('/');
    Ok(format!(
        "wrote {discovery} and {jwks}\n\
         next:\n\
         1. serve {out} at {issuer}/ over https (for example a public-read S3 bucket or any static host),\n\
         \x20  so that {issuer}/{DISCOVERY_PATH} and {issuer}/{JWKS_PATH} return these files;\n\
         2. aws iam create-open-id-connect-provider --url {issuer} --client-id-list {audience}\n\
         3. re-run this command whenever the cluster's ServiceAccount signing keys change.\n",
        discovery = discovery_path.display(),
        jwks = jwks_path.display(),
        out = args.out.display(),
        audience = args.audience,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_yield_every_binding_and_skip_other_kinds() {
        let path = Path::new("quickstart.yaml");
        let text = include_str!("../examples/quickstart.yaml");
        let bindings = bindings_in_manifest(path, text).expect("the quickstart holds a binding");
        assert_eq!(bindings.len(), 1);
        assert_eq!(bindings[0].metadata.name.as_deref(), Some("reports-reader"));

        let two = "---\napiVersion: podcreds.dev/v1alpha1\nkind: AWSRoleBinding\nmetadata: {name: a}\nspec: {serviceAccountName: s, roleArn: 'arn:aws:iam::123456789012:role/a'}\n---\n---\napiVersion: podcreds.dev/v1alpha1\nkind: AWSRoleBinding\nmetadata: {name: b}\nspec: {serviceAccountName: s, roleArn: 'arn:aws:iam::123456789012:role/b'}\n";
        let names: Vec<_> = bindings_in_manifest(path, two)
            .expect("two bindings")
            .into_iter()
            .filter_map(|b| b.metadata.name)
            .collect();
        assert_eq!(names, ["a", "b"]);

        // A Pod is not read as a binding, even with a binding-shaped spec.
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {serviceAccountName: s, roleArn: x}\n";
        match bindings_in_manifest(path, pod) {
            Err(CommandError::NoBindingInManifest { kinds, .. }) => assert_eq!(kinds, "Pod"),
            other => panic!("unexpected {other:?}"),
        }
        // Another group's AWSRoleBinding is not podcreds'.
        let foreign = "apiVersion: example.com/v1\nkind: AWSRoleBinding\nmetadata: {name: f}\n";
        assert!(bindings_in_manifest(path, foreign).is_err());
    }
}
