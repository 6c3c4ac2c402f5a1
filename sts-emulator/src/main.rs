//! `sts-emulator`: serves the emulator until interrupted. Prints `listening on <url>` once ready.

use std::path::PathBuf;

use clap::Parser;
use sts_emulator::{Config, Dialect, Emulator, Role};

#[derive(Parser, Debug)]
#[command(
    name = "sts-emulator",
    about = "AWS STS emulator that validates web identity tokens and SigV4 for real"
)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// OIDC issuer whose tokens are accepted (the cluster's --service-account-issuer).
    #[arg(long)]
    issuer: String,
    /// PEM file with the CA that signed the issuer's TLS certificate.
    #[arg(long)]
    issuer_ca: Option<PathBuf>,
    /// JSON file with a list of roles: {"arn", "trustPolicy" (an IAM trust policy document), or
    /// the legacy "subjects", "audiences", "trustedRoles", ...; "maxSessionDuration" (IAM's
    /// limit, 3600 to 43200) and "lifetimeSeconds" (a test device: sessions expire after at most
    /// this many seconds; "maxSessionSeconds" is read as this too)}.
    #[arg(long)]
    roles: Option<PathBuf>,
    /// A region the emulator serves (repeat for several): SigV4 scopes naming another are
    /// refused.
    #[arg(long = "region", default_value = sts_emulator::DEFAULT_REGION)]
    regions: Vec<String>,
    /// Speak Ceph RGW's role ARNs and error documents instead of AWS's.
    #[arg(long)]
    ceph_rgw: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let args = Args::parse();
    let issuer_ca_pem = args.issuer_ca.as_ref().map(std::fs::read).transpose()?;
    let roles: Vec<Role> = match &args.roles {
        Some(path) => serde_json::from_slice(&std::fs::read(path)?)?,
        None => Vec::new(),
    };
    let emulator = Emulator::start(Config {
        listen: args.listen,
        issuer: args.issuer,
        issuer_ca_pem,
        roles,
        dialect: if args.ceph_rgw {
            Dialect::CephRgw
        } else {
            Dialect::Aws
        },
        regions: args.regions,
    })
    .await?;
    println!("listening on {}", emulator.url());
    tokio::signal::ctrl_c().await?;
    emulator.shutdown();
    Ok(())
}
