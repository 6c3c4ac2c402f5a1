use clap::Parser;

/// jemalloc hands memory freed after a burst back and fragments less than glibc's allocator:
/// 68.5 against 85.1 MiB RSS at 10,000 bindings (docs/performance.md). Built without the
/// `jemalloc` feature the operator uses glibc's allocator, which heap profilers can follow.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use podcreds::cli::{
    BundleOutput, CaArgs, Cli, Command, IamCommand, OidcCommand, RolesAnywhereCommand, SamlKeyArgs,
};
use podcreds::key_command::{self, key_secret};
use podcreds::keyring::{self, KeyRing, KeySecret};
use podcreds::saml::metadata::idp_metadata;

async fn saml_keys(args: &SamlKeyArgs) -> anyhow::Result<KeySecret> {
    Ok(key_secret(&args.namespace, &args.saml_key_secret, &keyring::SAML).await?)
}

async fn ca_keys(args: &CaArgs) -> anyhow::Result<KeySecret> {
    Ok(key_secret(
        &args.namespace,
        &args.ca_secret,
        &keyring::ROLES_ANYWHERE_CA,
    )
    .await?)
}

fn metadata(args: &SamlKeyArgs, ring: &KeyRing) -> String {
    idp_metadata(&args.saml_entity_id, &ring.announced_certificates())
}

/// Runs the command; a failure is one line per cause (each said once), never a backtrace: the
/// errors say what to fix, and `RUST_BACKTRACE` is for panics.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_chain(error.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `error` and its causes, separated by ": ", leaving out a cause whose text the message before
/// it already contains (errors that print their source themselves).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => podcreds::operator::run(*args).await?,
        Command::Agent(args) => podcreds::agent::run::run(*args).await?,
        Command::Crd { kind } => match kind.as_deref() {
            None => print!("{}", podcreds::crd_yaml()?),
            Some("AWSRoleBinding") => print!("{}", podcreds::binding_crd_yaml()?),
            Some("AWSCredentialSource") => print!("{}", podcreds::credential_source_crd_yaml()?),
            Some(other) => {
                anyhow::bail!("unknown kind {other:?}: AWSRoleBinding or AWSCredentialSource")
            }
        },
        Command::Version => println!("podcreds {}", env!("CARGO_PKG_VERSION")),
        Command::SamlMetadata(args) => {
            let ring = saml_keys(&args).await?.ensure().await?;
            print!("{}", metadata(&args, &ring));
        }
        Command::SamlKey { step } => {
            let (args, step) = step.parts();
            let ring = key_command::rotate(&saml_keys(args).await?, step).await?;
            let upload = "re-upload the metadata to IAM (aws iam update-saml-provider)";
            let next = key_command::after_step(&keyring::SAML, step, upload);
            eprintln!("{}", key_command::step_summary(&ring, &next));
            print!("{}", metadata(args, &ring));
        }
        Command::Rolesanywhere(RolesAnywhereCommand::TrustAnchor(args)) => {
            let ring = ca_keys(&args.ca).await?.ensure().await?;
            eprintln!(
                "{}",
                key_command::trust_anchor_guide(&ring, args.ca.trust_anchor_arn.as_deref())
            );
            match args.output {
                BundleOutput::Pem => print!("{}", key_command::trust_anchor_bundle(&ring)),
                BundleOutput::SourceJson => {
                    println!("{}", key_command::trust_anchor_source(&ring))
                }
            }
        }
        Command::RolesanywhereCa { step } => {
            let (args, step) = step.parts();
            let ring = key_command::rotate(&ca_keys(args).await?, step).await?;
            let upload = "update the trust anchor with the bundle below (`podcreds rolesanywhere trust-anchor` prints the command)";
            let next = key_command::after_step(&keyring::ROLES_ANYWHERE_CA, step, upload);
            eprintln!("{}", key_command::step_summary(&ring, &next));
            print!("{}", key_command::trust_anchor_bundle(&ring));
        }
        Command::Iam(IamCommand::TrustPolicy(args)) => {
            print!("{}", podcreds::iam_command::trust_policy(args).await?)
        }
        Command::Oidc(OidcCommand::Export(args)) => {
            print!("{}", podcreds::iam_command::oidc_export(args).await?)
        }
        Command::Refresh(args) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            print!("{}", podcreds::refresh_command::refresh(args).await?)
        }
    }
    Ok(())
}
