//! Project automation: `cargo xtask <command>`.
//!
//! - `testenv`: build (or reuse) the Kubernetes, etcd, helm and MinIO binaries and the Python peers.
//! - `test`: the one test command (format, clippy, unit tests, drift checks, end-to-end suite).
//! - `demo`: run podcreds end to end on a local control plane.
//! - `bench`: measure time to Ready, memory and restart cost against the real control plane.
//! - `image`: the operator's OCI image archive, without a Docker daemon or a registry.
//! - `release`: static binaries for x86_64 and aarch64, the multi-arch image index, the chart as
//!   an OCI artifact, CRDs, SBOM and checksums, pushed to any OCI registry.
//! - `crds`: regenerate the CRD manifests and the chart's CRD templates from the Rust types.

mod bench;
mod demo;
mod image;
mod release;
mod sbom;
mod testenv;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "podcreds project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build or reuse the test binaries (kube-apiserver, kube-controller-manager, kube-scheduler,
    /// kubelet, kubectl, etcd, helm, the MinIO server) and the Python venv (moto, awscli, boto3),
    /// install the test node's Debian packages when missing, and print where they are.
    Testenv,
    /// Build the operator's OCI image archive (what the Dockerfile describes) from the static
    /// binary, without a Docker daemon or a registry; load it with `ctr images import`.
    Image {
        /// Where to write the archive (default target/image/podcreds.oci.tar).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Image name (default: the chart's image.repository and appVersion).
        #[arg(long)]
        name: Option<String>,
    },
    /// Format check, clippy, unit tests, drift checks, then the end-to-end suite.
    Test {
        /// Only run end-to-end tests whose name contains this filter.
        #[arg(long)]
        e2e_filter: Option<String>,
        /// Skip the static checks (fmt, clippy) while iterating.
        #[arg(long)]
        no_lint: bool,
    },
    /// Start a local control plane, the STS emulator and the operator; apply the quickstart
    /// example and show the credentials working.
    Demo {
        /// Keep everything running until Ctrl-C.
        #[arg(long)]
        keep: bool,
    },
    /// Scale benchmark against the real control plane (not part of `test`).
    Bench(bench::Args),
    /// Build a release (static binaries, a multi-arch image index, the chart, CRDs, an SBOM,
    /// checksums) and push the image and the chart to an OCI registry.
    Release(release::Args),
    /// Regenerate the CRD manifests (crds/ and the chart's templates/crds/) from the Rust types.
    Crds,
}

/// The workspace root (xtask lives one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The benchmark's own process runs the floors' client and the STS emulator: as a debug build it
/// would slow the floors down and flatter the operator, so `cargo xtask bench` runs itself again
/// as a release build (`--debug-client` keeps the debug build, for working on the benchmark).
fn rerun_bench_as_release() -> anyhow::Result<()> {
    let status = Command::new("cargo")
        .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
        .args(std::env::args_os().skip(1))
        .current_dir(repo_root())
        .status()?;
    if !status.success() {
        bail!("the release benchmark failed ({status})");
    }
    Ok(())
}

/// A cargo build profile of the operator.
#[derive(Clone, Copy, Debug)]
pub enum Profile {
    Debug,
    Release,
}

/// Builds the operator binary and returns its path.
pub fn build_operator(profile: Profile) -> anyhow::Result<PathBuf> {
    let (flags, dir): (&[&str], &str) = match profile {
        Profile::Debug => (&[], "debug"),
        Profile::Release => (&["--release"], "release"),
    };
    let mut args = vec!["build"];
    args.extend(flags);
    args.extend(["--quiet", "--bin", "podcreds"]);
    run("cargo", &args, &[])?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    Ok(target.join(dir).join("podcreds"))
}

/// Runs a command in the repository root, streaming its output; fails if it fails.
pub fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(repo_root());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{program}`"))?;
    if !status.success() {
        bail!("`{program} {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

/// The static release build of the operator (what the Dockerfile builds), checked static.
pub fn build_static() -> anyhow::Result<()> {
    run(
        "cargo",
        &[
            "build",
            "--release",
            "--locked",
            "--bin",
            "podcreds",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--target-dir",
            "target/static",
        ],
        &[("RUSTFLAGS", "-C target-feature=+crt-static")],
    )?;
    testenv::check_static(&repo_root().join(image::STATIC_BINARY))
}

/// Where the static pod client (`testenv/pod-client`) is built.
pub const POD_CLIENT: &str = "target/static/x86_64-unknown-linux-gnu/release/pod-client";

/// The static AWS client the test node's pods run.
pub fn build_pod_client() -> anyhow::Result<()> {
    run(
        "cargo",
        &[
            "build",
            "--release",
            "--locked",
            "-p",
            "podcreds-pod-client",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--target-dir",
            "target/static",
        ],
        &[("RUSTFLAGS", "-C target-feature=+crt-static")],
    )?;
    testenv::check_static(&repo_root().join(POD_CLIENT))
}

/// Where `cargo xtask test` builds the release (this platform only) that the release test pushes
/// to the registry of its run.
const RELEASE_E2E_DIR: &str = "target/release-e2e";

/// actionlint over `.github/workflows/` (built from its wrapper module when missing).
fn lint_workflows() -> anyhow::Result<()> {
    let actionlint = testenv::ensure_actionlint()?;
    let workflows: Vec<PathBuf> = std::fs::read_dir(repo_root().join(".github/workflows"))
        .context("no .github/workflows")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    if workflows.is_empty() {
        bail!(".github/workflows holds no workflow to lint");
    }
    let mut args: Vec<String> = vec!["-no-color".into()];
    // actionlint lints the `run:` scripts with shellcheck, and skips them without it.
    if which("shellcheck").is_none() {
        println!(
            "  installing Debian's shellcheck (actionlint lints the workflows' scripts with it)"
        );
        run(
            "apt-get",
            &["install", "-y", "--no-install-recommends", "shellcheck"],
            &[("DEBIAN_FRONTEND", "noninteractive")],
        )
        .context("actionlint needs shellcheck: install Debian's shellcheck")?;
    }
    args.extend(workflows.iter().map(|p| p.to_string_lossy().into_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&actionlint.to_string_lossy(), &refs, &[])?;
    println!("  actionlint: {} workflow(s) clean", workflows.len());
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

struct Step {
    name: &'static str,
    outcome: Result<(), String>,
    elapsed: Duration,
}

fn step(steps: &mut Vec<Step>, name: &'static str, f: impl FnOnce() -> anyhow::Result<()>) -> bool {
    println!("\n==> {name}");
    let started = Instant::now();
    let outcome = f().map_err(|e| format!("{e:#}"));
    let ok = outcome.is_ok();
    steps.push(Step {
        name,
        outcome,
        elapsed: started.elapsed(),
    });
    ok
}

fn test(e2e_filter: Option<String>, no_lint: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut steps = Vec::new();
    let mut ok = true;
    if !no_lint {
        ok &= step(&mut steps, "format check (cargo fmt --check)", || {
            run("cargo", &["fmt", "--all", "--", "--check"], &[])
        });
        ok &= step(&mut steps, "clippy -D warnings", || {
            run(
                "cargo",
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
                &[],
            )
        });
        ok &= step(&mut steps, "workflow lint (actionlint)", lint_workflows);
    }
    ok &= step(
        &mut steps,
        "unit tests and drift checks (CRD, chart CRDs)",
        || run("cargo", &["test", "--workspace", "--lib", "--bins"], &[]),
    );
    let env_ready = step(
        &mut steps,
        "test environment (build or reuse binaries and venv)",
        testenv::ensure,
    );
    ok &= env_ready;
    if env_ready {
        ok &= step(
            &mut steps,
            "static builds (operator, its image, pod client, a release for this platform)",
            || {
                image::build(None, None)?;
                build_pod_client()?;
                let dir = repo_root().join(RELEASE_E2E_DIR);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)?;
                }
                release::build(
                    release::DEFAULT_REGISTRY,
                    &[release::AMD64],
                    release::workspace_version(),
                    &dir,
                )
                .map(|_| ())
            },
        );
        ok &= step(
            &mut steps,
            "end-to-end suite (real control plane, STS emulator, moto, AWS CLI, boto3, helm)",
            || {
                let mut args = vec!["test", "-p", "podcreds", "--test", "e2e", "--"];
                if let Some(f) = e2e_filter.as_deref() {
                    args.push(f);
                }
                args.extend(["--test-threads", "2"]);
                let bin = testenv::bin_dir();
                let venv = testenv::venv_dir();
                // The suite enters a network namespace of its own; this one must end unchanged.
                let links_before = podcreds_testenv::netns::links()?;
                let suite = run(
                    "cargo",
                    &args,
                    &[
                        ("PODCREDS_TESTENV_BIN", &bin.to_string_lossy()),
                        ("PODCREDS_TESTENV_VENV", &venv.to_string_lossy()),
                        (
                            "PODCREDS_POD_CLIENT",
                            &repo_root().join(POD_CLIENT).to_string_lossy(),
                        ),
                        (
                            "PODCREDS_OPERATOR_IMAGE",
                            &repo_root().join(image::DEFAULT_ARCHIVE).to_string_lossy(),
                        ),
                        (
                            "PODCREDS_RELEASE_DIR",
                            &repo_root().join(RELEASE_E2E_DIR).to_string_lossy(),
                        ),
                    ],
                );
                let added: Vec<String> = podcreds_testenv::netns::links()?
                    .into_iter()
                    .filter(|l| !links_before.contains(l))
                    .collect();
                if !added.is_empty() {
                    bail!(
                        "interfaces appeared in this machine's network namespace during the suite: {}",
                        added.join(", ")
                    );
                }
                suite
            },
        );
    } else {
        println!(
            "\nnot running the static build and the end-to-end suite: the test environment is not ready"
        );
    }

    println!("\n==> summary ({:.0?} in all)", started.elapsed());
    let mut passed = 0;
    let mut failed = 0;
    for s in &steps {
        match &s.outcome {
            Ok(()) => {
                passed += 1;
                println!("  ok    {:<80} {:>6.1?}", s.name, s.elapsed);
            }
            Err(e) => {
                failed += 1;
                println!("  FAIL  {:<80} {:>6.1?}\n        {e}", s.name, s.elapsed);
            }
        }
    }
    println!("xtask: {passed} passed, {failed} failed");
    if no_lint {
        println!("  (--no-lint: the format check and clippy did not run; CI runs them)");
    }
    if let Some(filter) = &e2e_filter {
        println!(
            "  (--e2e-filter {filter:?}: only the end-to-end tests whose names contain it ran)"
        );
    }
    if !ok || failed > 0 {
        bail!("{failed} step(s) failed");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Testenv => {
            testenv::ensure()?;
            testenv::print_locations();
            Ok(())
        }
        Cmd::Test {
            e2e_filter,
            no_lint,
        } => test(e2e_filter, no_lint),
        Cmd::Image { output, name } => image::build(output, name).map(|_| ()),
        Cmd::Release(args) => release::release(args),
        Cmd::Demo { keep } => demo::run(keep),
        Cmd::Bench(args) => {
            if cfg!(debug_assertions) && !args.debug_client {
                return rerun_bench_as_release();
            }
            bench::run(args)
        }
        Cmd::Crds => {
            // From the Rust types: crds/ for `kubectl apply` and GitOps tools, and the chart's
            // templates (behind crds.enabled, kept on uninstall with crds.keep).
            let templates = repo_root().join("charts/podcreds/templates/crds");
            std::fs::create_dir_all(&templates)?;
            for (file, crd) in podcreds::crds() {
                std::fs::write(
                    repo_root().join("crds").join(file),
                    podcreds::crd_file(&crd)?,
                )?;
                println!("wrote crds/{file}");
                std::fs::write(templates.join(file), podcreds::chart_crd_template(&crd)?)?;
                println!("wrote charts/podcreds/templates/crds/{file}");
            }
            Ok(())
        }
    }
}
