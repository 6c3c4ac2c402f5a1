//! `cargo xtask testenv`: build what is missing into the cache, reuse what is there.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use podcreds_testenv::tools::{self, Versions};

use crate::repo_root;

pub fn bin_dir() -> PathBuf {
    tools::bin_dir()
}

pub fn venv_dir() -> PathBuf {
    tools::venv_dir()
}

/// `-X <variable>=<version>` stamped into a program that reports the version it was built as: the
/// variable, and the pinned version.
type VersionStamp = (&'static str, fn() -> String);

/// One Go build: `packages` from the wrapper module in `testenv/go/<module_dir>`, into `out_dir`.
struct GoBuild {
    module_dir: &'static str,
    binaries: &'static [(&'static str, &'static str)],
    stamp_kubernetes_version: bool,
    stamp_version: Option<VersionStamp>,
    /// Built with cgo (CGO_ENABLED=1); every other test binary is built without.
    cgo: bool,
    /// Only the end-to-end suite needs it (not the demo).
    suite_only: bool,
    out_dir: fn() -> PathBuf,
}

const BUILDS: [GoBuild; 8] = [
    GoBuild {
        module_dir: "kubernetes",
        binaries: &[
            ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
            (
                "kube-controller-manager",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
            ),
            ("kubectl", "k8s.io/kubernetes/cmd/kubectl"),
            // The test node (`podcreds_testenv::node`) and the chart's pods on it.
            ("kubelet", "k8s.io/kubernetes/cmd/kubelet"),
            ("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
        ],
        stamp_kubernetes_version: true,
        stamp_version: None,
        cgo: false,
        suite_only: false,
        out_dir: bin_dir,
    },
    GoBuild {
        module_dir: "etcd",
        binaries: &[("etcd", "go.etcd.io/etcd/server/v3")],
        stamp_kubernetes_version: false,
        stamp_version: None,
        cgo: false,
        suite_only: false,
        out_dir: bin_dir,
    },
    GoBuild {
        module_dir: "helm",
        binaries: &[("helm", "helm.sh/helm/v3/cmd/helm")],
        stamp_kubernetes_version: false,
        stamp_version: None,
        cgo: false,
        suite_only: false,
        out_dir: bin_dir,
    },
    // MinIO, a real STS-compatible peer for the end-to-end suite (not the demo); cached under
    // its own version.
    GoBuild {
        module_dir: "minio",
        binaries: &[("minio", "github.com/minio/minio")],
        stamp_kubernetes_version: false,
        stamp_version: None,
        cgo: false,
        suite_only: true,
        out_dir: tools::minio_dir,
    },
    // AWS's Roles Anywhere credential helper, the independent client of the emulator's
    // CreateSession (end-to-end suite only); cached under its own version. Its PKCS#11 signer
    // is a cgo package, so this one build needs cgo (and a C compiler).
    GoBuild {
        module_dir: "rolesanywhere",
        binaries: &[("aws_signing_helper", tools::ROLESANYWHERE_HELPER_MODULE)],
        stamp_kubernetes_version: false,
        stamp_version: Some((
            "github.com/aws/rolesanywhere-credential-helper/cmd.Version",
            tools::rolesanywhere_helper_version,
        )),
        cgo: true,
        suite_only: true,
        out_dir: tools::rolesanywhere_dir,
    },
    // The AWS SDK for Go v2 behind a small client (testenv/go/sdk-go-v2/main.go): the node
    // endpoint's second, independent container-credentials client. Static; about a minute cold.
    GoBuild {
        module_dir: "sdk-go-v2",
        binaries: &[("sdk-go-v2-client", "podcreds.dev/testenv/sdkgov2")],
        stamp_kubernetes_version: false,
        stamp_version: None,
        cgo: false,
        suite_only: true,
        out_dir: tools::sdk_go_v2_dir,
    },
    // The release test: the CNCF Distribution registry it pushes the release to and the node
    // pulls from, and crane, which pushes the image index (`cargo xtask release` too).
    GoBuild {
        module_dir: "registry",
        binaries: &[("registry", tools::REGISTRY.package)],
        stamp_kubernetes_version: false,
        stamp_version: None,
        cgo: false,
        suite_only: true,
        out_dir: registry_dir,
    },
    CRANE_BUILD,
];

fn registry_dir() -> PathBuf {
    tools::REGISTRY.dir()
}

fn crane_dir() -> PathBuf {
    tools::CRANE.dir()
}

fn actionlint_dir() -> PathBuf {
    tools::ACTIONLINT.dir()
}

const CRANE_BUILD: GoBuild = GoBuild {
    module_dir: "crane",
    binaries: &[("crane", tools::CRANE.package)],
    stamp_kubernetes_version: false,
    stamp_version: None,
    cgo: false,
    suite_only: true,
    out_dir: crane_dir,
};

/// actionlint lints the workflows in the lint phase, before the rest of the environment.
const ACTIONLINT_BUILD: GoBuild = GoBuild {
    module_dir: "actionlint",
    binaries: &[("actionlint", tools::ACTIONLINT.package)],
    stamp_kubernetes_version: false,
    stamp_version: None,
    cgo: false,
    suite_only: true,
    out_dir: actionlint_dir,
};

/// actionlint, built by the lint phase of `cargo xtask test` when missing.
pub fn ensure_actionlint() -> anyhow::Result<PathBuf> {
    ensure_build(&ACTIONLINT_BUILD)?;
    Ok(tools::ACTIONLINT.binary()?)
}

/// helm (built with the Kubernetes binaries' cache), for `cargo xtask release`.
pub fn ensure_helm() -> anyhow::Result<PathBuf> {
    for build in BUILDS.iter().filter(|b| b.module_dir == "helm") {
        ensure_build(build)?;
    }
    Ok(tools::binary("helm")?)
}

/// crane, for `cargo xtask release`.
pub fn ensure_crane() -> anyhow::Result<PathBuf> {
    ensure_build(&CRANE_BUILD)?;
    Ok(tools::CRANE.binary()?)
}

/// `-X` flags that make `/version` report the real release (Helm checks `kubeVersion`).
fn version_ldflags(version: &str) -> String {
    let trimmed = version.trim_start_matches('v');
    let mut parts = trimmed.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("0");
    let mut flags = String::from("-s -w");
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        flags.push_str(&format!(
            " -X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
        ));
    }
    flags
}

/// Runs `cmd`, printing a progress line every 60 packages `go build -v` reports, at most 3 tries
/// (module downloads from the proxy fail now and then).
fn go_build_with_retries(
    module: &Path,
    args: &[String],
    what: &str,
    cgo: bool,
) -> anyhow::Result<()> {
    for attempt in 1..=3 {
        let started = Instant::now();
        let mut child = Command::new("go")
            .args(args)
            .current_dir(module)
            .env("CGO_ENABLED", if cgo { "1" } else { "0" })
            .env("GOFLAGS", "-buildvcs=false -mod=mod")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run `go`: install the Go toolchain (1.26+)")?;
        let mut packages = 0usize;
        let mut errors = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(' ') || line.starts_with('#') {
                    errors.push(line);
                } else {
                    packages += 1;
                    if packages.is_multiple_of(60) {
                        println!(
                            "    {what}: {packages} packages compiled ({:.0?})",
                            started.elapsed()
                        );
                    }
                }
            }
        }
        let status = child.wait()?;
        if status.success() {
            println!("    {what}: built in {:.0?}", started.elapsed());
            return Ok(());
        }
        let tail: Vec<&String> = errors.iter().rev().take(15).collect();
        eprintln!(
            "    {what}: attempt {attempt} failed ({status}):\n{}",
            tail.into_iter()
                .rev()
                .map(|l| format!("      {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        if attempt < 3 {
            std::thread::sleep(Duration::from_secs(5 * attempt));
        }
    }
    bail!("building {what} failed three times; see the errors above")
}

/// The external-secrets controller, the benchmark's peer: built only by `cargo xtask bench
/// --peer eso`, never by `cargo xtask test` (a cold build takes over 12 minutes and 2.7 GB of
/// memory on 2 cores).
const EXTERNAL_SECRETS_BUILD: GoBuild = GoBuild {
    module_dir: "external-secrets",
    binaries: &[("external-secrets", tools::EXTERNAL_SECRETS_MODULE)],
    stamp_kubernetes_version: false,
    stamp_version: None,
    cgo: false,
    suite_only: true,
    out_dir: tools::external_secrets_dir,
};

fn ensure_binaries(with_suite_peers: bool) -> anyhow::Result<()> {
    for build in BUILDS.iter().filter(|b| with_suite_peers || !b.suite_only) {
        ensure_build(build)?;
    }
    Ok(())
}

/// Builds the binaries of `build` that are missing from its output directory.
fn ensure_build(build: &GoBuild) -> anyhow::Result<()> {
    let versions = Versions::pinned();
    let bin = (build.out_dir)();
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    let missing: Vec<&(&str, &str)> = build
        .binaries
        .iter()
        .filter(|(name, _)| !bin.join(name).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|(n, _)| *n).collect();
    println!(
        "  building {} from testenv/go/{} (a cold build downloads hundreds of MB of modules and takes many minutes on 2 cores; later builds reuse the Go cache)",
        names.join(", "),
        build.module_dir
    );
    let module = repo_root().join("testenv/go").join(build.module_dir);
    let mut ldflags = if build.stamp_kubernetes_version {
        version_ldflags(&versions.kubernetes)
    } else {
        "-s -w".to_string()
    };
    if let Some((variable, version)) = build.stamp_version {
        ldflags.push_str(&format!(" -X {variable}={}", version()));
    }
    // Build into a staging directory, then move: an interrupted build never leaves a
    // half-written binary that a later run would trust.
    let staging = bin.join(".staging");
    std::fs::create_dir_all(&staging)?;
    let mut args = vec![
        "build".to_string(),
        "-v".to_string(),
        "-trimpath".to_string(),
        "-ldflags".to_string(),
        ldflags,
        "-o".to_string(),
    ];
    if missing.len() == 1 {
        args.push(staging.join(missing[0].0).to_string_lossy().into_owned());
    } else {
        args.push(format!("{}/", staging.display()));
    }
    args.extend(missing.iter().map(|(_, pkg)| pkg.to_string()));
    go_build_with_retries(&module, &args, &names.join(", "), build.cgo)?;
    for (name, _) in &missing {
        std::fs::rename(staging.join(name), bin.join(name))
            .with_context(|| format!("{name} was not produced by the build"))?;
    }
    Ok(())
}

/// The external-secrets controller and its CRDs (`deploy/crds/bundle.yaml` of the same
/// version), built or copied into their cache directory when missing.
pub struct ExternalSecrets {
    pub binary: PathBuf,
    pub crds: PathBuf,
    pub version: String,
}

pub fn ensure_external_secrets() -> anyhow::Result<ExternalSecrets> {
    let version = tools::external_secrets_version();
    println!("  peer: external-secrets {version}");
    ensure_build(&EXTERNAL_SECRETS_BUILD)?;
    let dir = tools::external_secrets_dir();
    let crds = dir.join("crds.yaml");
    if !crds.is_file() {
        // The module source is in the Go module cache after the build; ask Go where.
        let module = repo_root().join("testenv/go/external-secrets");
        let output = Command::new("go")
            .args(["mod", "download", "-json"])
            .arg(format!("{}@{version}", tools::EXTERNAL_SECRETS_MODULE))
            .current_dir(&module)
            .env("GOFLAGS", "-mod=mod")
            .output()
            .context("cannot run `go`: install the Go toolchain (1.26+)")?;
        if !output.status.success() {
            bail!(
                "go mod download of external-secrets failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let info: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let source = info["Dir"]
            .as_str()
            .context("go mod download reported no Dir")?;
        let bundle = Path::new(source).join("deploy/crds/bundle.yaml");
        // Read and write rather than copy: the module cache's files are read-only.
        let text = std::fs::read_to_string(&bundle)
            .with_context(|| format!("cannot read {}", bundle.display()))?;
        std::fs::write(&crds, text)?;
    }
    Ok(ExternalSecrets {
        binary: dir.join("external-secrets"),
        crds,
        version,
    })
}

fn ensure_venv() -> anyhow::Result<()> {
    let venv = venv_dir();
    let marker = venv.join(".complete");
    if marker.is_file() {
        return Ok(());
    }
    println!(
        "  creating Python venv {} (moto, awscli, boto3, signxml)",
        venv.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv)?;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .with_context(|| format!("cannot run {python}: install Python 3 with the venv module"))?;
    if !status.success() {
        bail!("`{python} -m venv` failed ({status}); on Debian install python3-venv");
    }
    let pip = venv.join("bin/pip");
    let requirements = tools::requirements_file(&repo_root());
    for attempt in 1..=3 {
        let status = Command::new(&pip)
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements)
            .status()?;
        if status.success() {
            std::fs::write(&marker, "ok\n")?;
            return Ok(());
        }
        eprintln!("  pip install attempt {attempt} failed ({status})");
        std::thread::sleep(Duration::from_secs(5 * attempt));
    }
    bail!("installing {} failed three times", requirements.display())
}

/// Builds or reuses everything the end-to-end suite needs.
pub fn ensure() -> anyhow::Result<()> {
    ensure_parts(true)
}

/// Builds or reuses what the demo needs: everything but the suite's peers (MinIO, AWS's Roles
/// Anywhere helper).
pub fn ensure_for_demo() -> anyhow::Result<()> {
    ensure_parts(false)
}

/// Installs the Debian packages the test node runs on (containerd, runc, the CNI plugins,
/// busybox-static for the pause and pod images) and `xmlsec1` (the STS emulator's SAML signature
/// check) with apt-get when a program is missing.
fn ensure_node_packages() -> anyhow::Result<()> {
    let mut packages: Vec<&str> = podcreds_testenv::node::HOST_PROGRAMS
        .iter()
        .chain(podcreds_testenv::node::SAML_PROGRAMS.iter())
        .filter(|(path, _)| !Path::new(path).is_file())
        .map(|(_, package)| *package)
        .collect();
    packages.dedup();
    if packages.is_empty() {
        return Ok(());
    }
    println!(
        "  installing {} from Debian with apt-get (the test node runs pods with them)",
        packages.join(", ")
    );
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&packages);
    let status = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get: install containerd, runc, containernetworking-plugins, busybox-static and xmlsec1 yourself")?;
    if !status.success() {
        bail!(
            "`apt-get {}` failed ({status}); the test node needs these packages (as root)",
            args.join(" ")
        );
    }
    Ok(())
}

fn ensure_parts(with_suite_peers: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    println!(
        "  test environment: {}, minio-{}, rolesanywhere-{}, sdk-go-v2-{}, registry-{}, crane-{}",
        Versions::pinned().key(),
        tools::minio_version(),
        tools::rolesanywhere_helper_version(),
        tools::sdk_go_v2_version(),
        tools::REGISTRY.version(),
        tools::CRANE.version()
    );
    ensure_binaries(with_suite_peers)?;
    // The demo runs the chart on the test node too.
    ensure_node_packages()?;
    ensure_venv()?;
    // Prove the binaries run (a truncated file or a wrong architecture fails here, loudly).
    let version = Command::new(bin_dir().join("kube-apiserver"))
        .arg("--version")
        .output()?;
    if !version.status.success() {
        bail!(
            "kube-apiserver --version failed; delete {} and run again",
            bin_dir().display()
        );
    }
    println!(
        "  ready in {:.0?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&version.stdout).trim()
    );
    Ok(())
}

pub fn print_locations() {
    println!("binaries: {}", bin_dir().display());
    for name in tools::BINARIES {
        println!("  {}", bin_dir().join(name).display());
    }
    println!("  {}", tools::minio_dir().join("minio").display());
    for tool in [tools::REGISTRY, tools::CRANE, tools::ACTIONLINT] {
        println!("  {}", tool.dir().join(tool.name).display());
    }
    println!(
        "  {}",
        tools::rolesanywhere_dir()
            .join("aws_signing_helper")
            .display()
    );
    println!(
        "  {}",
        tools::sdk_go_v2_dir().join("sdk-go-v2-client").display()
    );
    println!(
        "  {} (benchmark peer, built only by `cargo xtask bench --peer eso`)",
        tools::external_secrets_dir()
            .join("external-secrets")
            .display()
    );
    println!("python venv: {}", venv_dir().display());
    println!(
        "(override with PODCREDS_TESTENV_BIN / PODCREDS_TESTENV_MINIO_DIR / PODCREDS_TESTENV_ROLESANYWHERE_DIR / PODCREDS_TESTENV_SDK_GO_DIR / PODCREDS_TESTENV_ESO_DIR / PODCREDS_TESTENV_VENV)"
    );
}

/// Fails unless `binary` is statically linked (no program interpreter, no needed libraries).
pub fn check_static(binary: &Path) -> anyhow::Result<()> {
    let output = Command::new("readelf")
        .args(["-d", "-l"])
        .arg(binary)
        .output()
        .context("cannot run readelf (binutils)")?;
    // A readelf that failed (no such file, not an ELF binary) printed nothing to judge by.
    if !output.status.success() {
        bail!(
            "readelf could not read {}: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Requesting program interpreter") || text.contains("(NEEDED)") {
        bail!("{} is dynamically linked", binary.display());
    }
    let size = std::fs::metadata(binary)?.len();
    println!(
        "  {} is static ({:.1} MiB)",
        binary.display(),
        size as f64 / 1048576.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_readelf_cannot_read_is_not_called_static() {
        let dir = tempfile::tempdir().expect("temp dir");
        let not_elf = dir.path().join("script");
        std::fs::write(&not_elf, "#!/bin/sh\n").expect("written");
        let err = check_static(&not_elf).expect_err("not an ELF binary");
        assert!(err.to_string().contains("readelf could not read"), "{err}");
        assert!(check_static(&dir.path().join("missing")).is_err());
    }
}
