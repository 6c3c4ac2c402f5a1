use clap::Parser;

/// jemalloc hands memory freed after a burst back and fragments less than glibc's allocator:
/// 68.5 against 85.1 MiB RSS at 10,000 bindings (docs/performance.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use podcreds::cli::{Cli, Command, IamCommand, OidcCommand, SamlKeyArgs, SamlKeyStep};
use podcreds::keyring::KeySecret;
use podcreds::keyring::{self, KeyRing};
use podcreds::saml::metadata::idp_metadata;

async fn key_secret(args: &SamlKeyArgs) -> anyhow::Result<KeySecret> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = kube::Client::try_default().await?;
    Ok(KeySecret::new(
        client,
        &args.namespace,
        &args.saml_key_secret,
        &keyring::SAML,
    ))
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
            let ring = key_secret(&args).await?.ensure().await?;
            print!("{}", metadata(&args, &ring));
        }
        Command::SamlKey { step } => {
            let (args, ring, next) = match step {
                SamlKeyStep::AddNext(args) => {
                    let ring = key_secret(&args)
                        .await?
                        .update(|r, y| r.add_next(y))
                        .await?;
                    (
                        args,
                        ring,
                        "re-upload the metadata to IAM (aws iam update-saml-provider), then run `podcreds saml-key promote`",
                    )
                }
                SamlKeyStep::Promote(args) => {
                    let ring = key_secret(&args).await?.update(|r, _| r.promote()).await?;
                    (
                        args,
                        ring,
                        "the operator signs with the new key within a minute; once no older assertion is in flight, run `podcreds saml-key retire`",
                    )
                }
                SamlKeyStep::Retire(args) => {
                    let ring = key_secret(&args).await?.update(|r, _| r.retire()).await?;
                    (
                        args,
                        ring,
                        "re-upload the metadata to IAM (aws iam update-saml-provider)",
                    )
                }
            };
            eprintln!(
                "done; signing certificate sha256 {}; {} certificate(s) announced; next: {next}",
                ring.active.fingerprint(),
                ring.announced_certificates().len()
            );
            print!("{}", metadata(&args, &ring));
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
