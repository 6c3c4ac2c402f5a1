//! `podcreds iam trust-policy` and `podcreds oidc export`: read the binding and the cluster's
//! OIDC documents, let [`crate::iam`] decide, print or write the result.

use std::path::{Path, PathBuf};

use kube::Api;
use serde_json::Value;

use crate::api::AWSRoleBinding;
use crate::cli::{OidcExportArgs, PolicyOutput, TrustPolicyArgs};
use crate::iam::{self, DISCOVERY_PATH, FirstPrincipal, IamError, JWKS_PATH};
use crate::spec::{self, SpecError, StsPolicy};

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
    #[error("name a binding: -f <manifest> or <name> with --namespace")]
    NoBinding,
    #[error("the binding has no namespace: pass --namespace")]
    NoNamespace,
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

async fn load_binding(args: &TrustPolicyArgs) -> Result<(AWSRoleBinding, String), CommandError> {
    let binding = match (&args.filename, &args.name) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|source| CommandError::ReadFile {
                path: path.clone(),
                source,
            })?;
            serde_yaml::from_str::<AWSRoleBinding>(&text).map_err(|source| {
                CommandError::Manifest {
                    path: path.clone(),
                    source,
                }
            })?
        }
        (None, Some(name)) => {
            let namespace = args.namespace.as_deref().ok_or(CommandError::NoNamespace)?;
            Api::<AWSRoleBinding>::namespaced(client().await?, namespace)
                .get(name)
                .await
                .map_err(CommandError::Cluster)?
        }
        (None, None) => return Err(CommandError::NoBinding),
    };
    let namespace = args
        .namespace
        .clone()
        .or_else(|| binding.metadata.namespace.clone())
        .ok_or(CommandError::NoNamespace)?;
    Ok((binding, namespace))
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

/// Prints the trust policy of every role the binding passes through.
pub async fn trust_policy(args: TrustPolicyArgs) -> Result<String, CommandError> {
    let (binding, namespace) = load_binding(&args).await?;
    let name = binding.metadata.name.clone().unwrap_or_default();
    // The operator's allowlists are its own business: here whatever the binding names counts.
    let policy = StsPolicy {
        default_audience: args.audience.clone(),
        allowed_audiences: binding.spec.audience.iter().cloned().collect(),
        allowed_endpoints: binding
            .spec
            .sts
            .as_ref()
            .and_then(|s| s.endpoint.clone())
            .into_iter()
            .collect(),
        cluster_name: args.cluster_name.clone(),
        default_saml_provider_arn: args.saml_provider_arn.clone(),
        allow_unprefixed_session_names: true,
        allow_insecure_endpoints: true,
        ..StsPolicy::default()
    };
    let resolved = spec::resolve(&binding.spec, &namespace, &name, &policy)?;
    let first = if let Some(saml) = &resolved.saml {
        // A binding with spec.saml names its provider (or takes --saml-provider-arn's).
        FirstPrincipal::Saml {
            provider_arn: saml.provider_arn.clone(),
        }
    } else if let Some(source) = &resolved.credential_source {
        let user_arn = args
            .user_arn
            .clone()
            .ok_or_else(|| IamError::UserArnNeeded(source.name.clone()))?;
        FirstPrincipal::IamUser { user_arn }
    } else {
        first_principal(&args).await?
    };
    let policies = iam::trust_policies(&resolved, &namespace, &first)?;
    Ok(match args.output {
        PolicyOutput::Json => {
            let list: Vec<Value> = policies
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "roleArn": p.role_arn,
                        "assumedBy": p.assumed_by,
                        "trustPolicy": p.document,
                    })
                })
                .collect();
            format!("{:#}\n", Value::Array(list))
        }
        PolicyOutput::Text => {
            let mut out = String::new();
            for p in &policies {
                let role_name = p.role_arn.rsplit('/').next().unwrap_or(&p.role_arn);
                out.push_str(&format!(
                    "# {} ({}); apply with:\n#   aws iam update-assume-role-policy --role-name {role_name} --policy-document file://{role_name}-trust.json\n{:#}\n",
                    p.role_arn, p.assumed_by, p.document
                ));
            }
            out
        }
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
