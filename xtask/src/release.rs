//! `cargo xtask release --registry <host[:port]/path>`: everything a release is, against any OCI
//! registry, without a Docker daemon.
//!
//! 1. static binaries of the one `podcreds` program (operator and CLI) for each platform
//!    (`x86_64-unknown-linux-gnu`, `aarch64-unknown-linux-gnu` cross-compiled with Debian's
//!    `gcc-aarch64-linux-gnu`), each checked static;
//! 2. the image of each, as `cargo xtask image` builds it from the `Dockerfile`, under one OCI
//!    image index, written as an OCI archive (`podcreds-<version>.oci.tar`, also the air-gapped
//!    artifact);
//! 3. the CRDs (`podcreds-<version>.crds.yaml`), an SPDX SBOM (`podcreds-<version>.spdx.json`,
//!    see `sbom.rs`);
//! 4. unless `--no-push`: the image index pushed with `crane` as `<registry>/podcreds:<version>`,
//!    the chart packaged with that image repository and pushed with `helm push` to
//!    `oci://<registry>/charts/podcreds` (`podcreds_testenv::release`, the same steps the release
//!    test runs against a registry of its own), their digests in `podcreds-<version>.digests`;
//! 5. `SHA256SUMS` over every file.
//!
//! Signing (cosign, keyless) and provenance need an OIDC identity of the CI run: the workflow
//! (`.github/workflows/release.yaml`) does them after this command, by digest.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use podcreds_testenv::release::{self as publish, Publish, Tools};

use crate::{image, repo_root, run, testenv};

/// A platform the release is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform {
    /// OCI architecture (`amd64`, `arm64`).
    pub arch: &'static str,
    /// Rust target triple.
    pub rust_target: &'static str,
}

pub const AMD64: Platform = Platform {
    arch: "amd64",
    rust_target: "x86_64-unknown-linux-gnu",
};

pub const ARM64: Platform = Platform {
    arch: "arm64",
    rust_target: "aarch64-unknown-linux-gnu",
};

/// The registry the project publishes to (README: install from `oci://ghcr.io/podcreds/charts/podcreds`).
pub const DEFAULT_REGISTRY: &str = "ghcr.io/podcreds";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Registry and path prefix: the image goes to `<registry>/podcreds:<version>`, the chart to
    /// `oci://<registry>/charts/podcreds`.
    #[arg(long, default_value = DEFAULT_REGISTRY)]
    pub registry: String,
    /// Platforms, comma-separated (`amd64`, `arm64`).
    #[arg(long, value_delimiter = ',', default_value = "amd64,arm64")]
    pub platforms: Vec<String>,
    /// The version to release; it must be the workspace's (Cargo.toml), which the binary reports.
    #[arg(long)]
    pub version: Option<String>,
    /// Output directory (default target/release-dist/<version>).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The registry speaks plain HTTP (a local registry).
    #[arg(long)]
    pub plain_http: bool,
    /// Build and package only; push nothing.
    #[arg(long)]
    pub no_push: bool,
}

/// The workspace's version, which the binary reports (`podcreds version`).
pub fn workspace_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn platform(name: &str) -> anyhow::Result<Platform> {
    match name.trim() {
        "amd64" | "linux/amd64" | "x86_64" => Ok(AMD64),
        "arm64" | "linux/arm64" | "aarch64" => Ok(ARM64),
        other => bail!("unknown platform {other:?}: amd64 or arm64"),
    }
}

/// Where the static build of `platform` leaves the binary.
pub fn static_binary(platform: Platform) -> PathBuf {
    repo_root()
        .join("target/static")
        .join(platform.rust_target)
        .join("release/podcreds")
}

/// The Rust target and the C cross compiler (aws-lc is C) for aarch64, installed when missing.
fn ensure_cross_toolchain(platform: Platform) -> anyhow::Result<Vec<(String, String)>> {
    if platform == AMD64 {
        return Ok(Vec::new());
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("cannot run rustup")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == platform.rust_target)
    {
        println!("  rustup target add {}", platform.rust_target);
        run("rustup", &["target", "add", platform.rust_target], &[])?;
    }
    let gcc = "/usr/bin/aarch64-linux-gnu-gcc";
    let libc = "/usr/aarch64-linux-gnu/lib/libc.a";
    if !Path::new(gcc).is_file() || !Path::new(libc).is_file() {
        println!("  installing gcc-aarch64-linux-gnu and libc6-dev-arm64-cross with apt-get");
        run(
            "apt-get",
            &[
                "install",
                "-y",
                "--no-install-recommends",
                "gcc-aarch64-linux-gnu",
                "libc6-dev-arm64-cross",
            ],
            &[("DEBIAN_FRONTEND", "noninteractive")],
        )
        .context("the aarch64 build needs Debian's gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (as root)")?;
    }
    Ok(vec![
        (
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER".into(),
            "aarch64-linux-gnu-gcc".into(),
        ),
        (
            "CC_aarch64_unknown_linux_gnu".into(),
            "aarch64-linux-gnu-gcc".into(),
        ),
        (
            "AR_aarch64_unknown_linux_gnu".into(),
            "aarch64-linux-gnu-ar".into(),
        ),
    ])
}

/// The static binary for `platform` (as the Dockerfile builds it), checked static.
pub fn build_binary(platform: Platform) -> anyhow::Result<PathBuf> {
    if platform == AMD64 {
        crate::build_static()?;
        return Ok(static_binary(platform));
    }
    let env = ensure_cross_toolchain(platform)?;
    let mut envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    envs.push(("RUSTFLAGS", "-C target-feature=+crt-static"));
    run(
        "cargo",
        &[
            "build",
            "--release",
            "--locked",
            "--bin",
            "podcreds",
            "--target",
            platform.rust_target,
            "--target-dir",
            "target/static",
        ],
        &envs,
    )?;
    let binary = static_binary(platform);
    testenv::check_static(&binary)?;
    check_machine(&binary, "AArch64")?;
    Ok(binary)
}

/// Fails unless `binary` is an ELF file for `machine` (as `readelf -h` names it).
fn check_machine(binary: &Path, machine: &str) -> anyhow::Result<()> {
    let output = Command::new("readelf").arg("-h").arg(binary).output()?;
    let header = String::from_utf8_lossy(&output.stdout);
    ensure!(
        header
            .lines()
            .any(|l| l.trim().starts_with("Machine:") && l.contains(machine)),
        "{} is not an {machine} binary:\n{header}",
        binary.display()
    );
    Ok(())
}

/// What `build` wrote, by file name in the output directory.
pub struct Built {
    pub image_archive: PathBuf,
    pub image_digest: String,
    pub files: Vec<String>,
}

/// Builds binaries, the image index archive (named `<registry>/podcreds:<version>`), the CRDs
/// and the SBOM into `dir`.
pub fn build(
    registry: &str,
    platforms: &[Platform],
    version: &str,
    dir: &Path,
) -> anyhow::Result<Built> {
    std::fs::create_dir_all(dir)?;
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile"))?;
    let name = format!("{}:{version}", publish::image_repository(registry));
    let mut files = Vec::new();
    let mut images = Vec::new();
    for platform in platforms {
        println!("\n==> podcreds for linux/{}", platform.arch);
        let binary = build_binary(*platform)?;
        let file = format!("podcreds-{version}-linux-{}", platform.arch);
        std::fs::copy(&binary, dir.join(&file))?;
        files.push(file);
        let mut image = image::operator_image(&dockerfile, &binary, &name)?;
        image.architecture = platform.arch.to_string();
        images.push(image);
    }
    let archive_file = format!("podcreds-{version}.oci.tar");
    let image_archive = dir.join(&archive_file);
    let image_digest = podcreds_testenv::oci::write_index_archive(&images, &name, &image_archive)?;
    println!("  {archive_file}: {name}, index {image_digest}");
    files.push(archive_file);

    let crds = format!("podcreds-{version}.crds.yaml");
    std::fs::write(dir.join(&crds), podcreds::crd_yaml()?)?;
    files.push(crds);

    let targets: Vec<&str> = platforms.iter().map(|p| p.rust_target).collect();
    let created = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let sbom = format!("podcreds-{version}.spdx.json");
    std::fs::write(
        dir.join(&sbom),
        serde_json::to_string_pretty(&crate::sbom::spdx(version, &targets, &created)?)?,
    )?;
    files.push(sbom);
    Ok(Built {
        image_archive,
        image_digest,
        files,
    })
}

pub fn release(args: Args) -> anyhow::Result<()> {
    let version = args
        .version
        .clone()
        .unwrap_or_else(|| workspace_version().to_string());
    ensure!(
        version == workspace_version(),
        "--version {version} is not the workspace's version {} (Cargo.toml), which the binary reports: bump [workspace.package] version first",
        workspace_version()
    );
    let platforms = args
        .platforms
        .iter()
        .map(|p| platform(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!platforms.is_empty(), "no platform to build");
    let registry = args.registry.trim_end_matches('/').to_string();
    // Relative to where the command was run; the steps run tools in other directories.
    let dir = match &args.output {
        Some(dir) => std::path::absolute(dir)?,
        None => repo_root().join("target/release-dist").join(&version),
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let mut built = build(&registry, &platforms, &version, &dir)?;

    let helm = testenv::ensure_helm()?;
    let crane = testenv::ensure_crane()?;
    let tools = Tools {
        helm,
        crane,
        helm_env: Vec::new(),
    };
    let chart_source = repo_root().join("charts/podcreds");
    if args.no_push {
        let chart = publish::package_chart(
            &tools,
            &chart_source,
            &publish::image_repository(&registry),
            &version,
            &dir,
        )?;
        built.files.push(file_name(&chart)?);
        println!("\n==> --no-push: nothing pushed");
    } else {
        println!("\n==> pushing to {registry}");
        let published = publish::publish(
            &tools,
            &Publish {
                image_archive: &built.image_archive,
                chart_source: &chart_source,
                registry: &registry,
                version: &version,
                plain_http: args.plain_http,
                out_dir: &dir,
            },
        )?;
        ensure!(
            published.image_digest == built.image_digest,
            "the registry holds {} for {}, not the index written ({})",
            published.image_digest,
            published.image,
            built.image_digest
        );
        built.files.push(file_name(&published.chart_archive)?);
        let digests = format!("podcreds-{version}.digests");
        let image_repository = publish::image_repository(&registry);
        let chart_ref = published.chart.trim_start_matches("oci://").to_string();
        std::fs::write(
            dir.join(&digests),
            format!(
                "{image_repository}@{}\n{chart_ref}@{}\n",
                published.image_digest, published.chart_digest
            ),
        )?;
        built.files.push(digests);
        println!(
            "  image {} ({})\n  chart {} --version {version} ({})",
            published.image, published.image_digest, published.chart, published.chart_digest
        );
    }
    publish::write_checksums(&dir, &built.files)?;
    println!("\n==> release {version} in {}", dir.display());
    for file in built
        .files
        .iter()
        .chain(std::iter::once(&"SHA256SUMS".to_string()))
    {
        let size = std::fs::metadata(dir.join(file))?.len();
        println!("  {file:<44} {:>8.1} MiB", size as f64 / 1048576.0);
    }
    Ok(())
}

fn file_name(path: &Path) -> anyhow::Result<String> {
    Ok(path
        .file_name()
        .context("no file name")?
        .to_string_lossy()
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_by_name() {
        assert_eq!(platform("amd64").unwrap(), AMD64);
        assert_eq!(platform("linux/arm64").unwrap(), ARM64);
        assert!(platform("riscv64").is_err());
    }
}
