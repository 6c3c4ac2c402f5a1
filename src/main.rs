use clap::Parser;
use podcreds::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => podcreds::operator::run(*args).await?,
        Command::Crd => print!("{}", podcreds::crd_yaml()?),
        Command::Version => println!("podcreds {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
