use clap::Parser;

/// jemalloc hands memory freed after a burst back and fragments less than glibc's allocator:
/// 68.5 against 85.1 MiB RSS at 10,000 bindings (docs/performance.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use podcreds::cli::{Cli, Command, IamCommand, OidcCommand};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => podcreds::operator::run(*args).await?,
        Command::Crd { kind } => match kind.as_deref() {
            None => print!("{}", podcreds::crd_yaml()?),
            Some("AWSRoleBinding") => print!("{}", podcreds::binding_crd_yaml()?),
            Some("AWSCredentialSource") => print!("{}", podcreds::credential_source_crd_yaml()?),
            Some(other) => {
                anyhow::bail!("unknown kind {other:?}: AWSRoleBinding or AWSCredentialSource")
            }
        },
        Command::Version => println!("podcreds {}", env!("CARGO_PKG_VERSION")),
        Command::Iam(IamCommand::TrustPolicy(args)) => {
            print!("{}", podcreds::iam_command::trust_policy(args).await?)
        }
        Command::Oidc(OidcCommand::Export(args)) => {
            print!("{}", podcreds::iam_command::oidc_export(args).await?)
        }
    }
    Ok(())
}
