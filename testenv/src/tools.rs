//! Where the test binaries and the Python peers live: a cache outside the repository, keyed by
//! the pinned versions in `testenv/go/*/go.mod` and `testenv/python/requirements.txt`.

use std::path::{Path, PathBuf};

use crate::Error;

const KUBERNETES_GO_MOD: &str = include_str!("../go/kubernetes/go.mod");
const ETCD_GO_MOD: &str = include_str!("../go/etcd/go.mod");
const HELM_GO_MOD: &str = include_str!("../go/helm/go.mod");
const MINIO_GO_MOD: &str = include_str!("../go/minio/go.mod");
const EXTERNAL_SECRETS_GO_MOD: &str = include_str!("../go/external-secrets/go.mod");
const ROLESANYWHERE_GO_MOD: &str = include_str!("../go/rolesanywhere/go.mod");
const SDK_GO_V2_GO_MOD: &str = include_str!("../go/sdk-go-v2/go.mod");
const REGISTRY_GO_MOD: &str = include_str!("../go/registry/go.mod");
const ACTIONLINT_GO_MOD: &str = include_str!("../go/actionlint/go.mod");
const CRANE_GO_MOD: &str = include_str!("../go/crane/go.mod");
const PYTHON_REQUIREMENTS: &str = include_str!("../python/requirements.txt");

/// The version a wrapper module requires of `module` (its `require` line).
fn required_version(go_mod: &str, module: &str) -> String {
    go_mod
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("require ").or(Some(l)))
        .filter_map(|l| l.strip_prefix(module))
        .filter_map(|rest| rest.split_whitespace().next())
        .find(|v| v.starts_with('v'))
        .unwrap_or("unknown")
        .to_string()
}

/// Pinned versions of the binaries the test environment builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    pub kubernetes: String,
    pub etcd: String,
    pub helm: String,
}

impl Versions {
    pub fn pinned() -> Self {
        Self {
            kubernetes: required_version(KUBERNETES_GO_MOD, "k8s.io/kubernetes "),
            etcd: required_version(ETCD_GO_MOD, "go.etcd.io/etcd/server/v3 "),
            helm: required_version(HELM_GO_MOD, "helm.sh/helm/v3 "),
        }
    }

    /// Directory name of this set of versions in the cache.
    pub fn key(&self) -> String {
        format!(
            "k8s-{}_etcd-{}_helm-{}",
            self.kubernetes, self.etcd, self.helm
        )
    }
}

/// `$XDG_CACHE_HOME/podcreds/testenv` or `~/.cache/podcreds/testenv`.
pub fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("podcreds").join("testenv")
}

/// The binaries a control plane (and its node) needs.
pub const BINARIES: [&str; 7] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kubectl",
    "helm",
];

/// Directory holding the built binaries (`PODCREDS_TESTENV_BIN` overrides it).
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("PODCREDS_TESTENV_BIN").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => cache_root().join(Versions::pinned().key()).join("bin"),
    }
}

/// The pinned MinIO server version (a pseudo-version: MinIO publishes no module tags).
pub fn minio_version() -> String {
    required_version(MINIO_GO_MOD, "github.com/minio/minio ")
}

/// Directory holding the MinIO server, apart from the Kubernetes binaries so that changing one
/// pin never rebuilds the other (`PODCREDS_TESTENV_MINIO_DIR` overrides it).
pub fn minio_dir() -> PathBuf {
    match std::env::var_os("PODCREDS_TESTENV_MINIO_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => cache_root().join(format!("minio-{}", minio_version())),
    }
}

/// The MinIO server, or an error that says how to build it.
pub fn minio_binary() -> Result<PathBuf, Error> {
    let path = minio_dir().join("minio");
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingTool(format!(
            "{} not found; run `cargo xtask testenv` to build the MinIO server (a cold build takes several minutes)",
            path.display()
        )))
    }
}

/// The Go module of AWS's IAM Roles Anywhere credential helper (`aws_signing_helper`).
pub const ROLESANYWHERE_HELPER_MODULE: &str = "github.com/aws/rolesanywhere-credential-helper";

/// The pinned version of AWS's Roles Anywhere credential helper.
pub fn rolesanywhere_helper_version() -> String {
    required_version(
        ROLESANYWHERE_GO_MOD,
        &format!("{ROLESANYWHERE_HELPER_MODULE} "),
    )
}

/// Directory holding `aws_signing_helper`, keyed by its version like MinIO's
/// (`PODCREDS_TESTENV_ROLESANYWHERE_DIR` overrides it).
pub fn rolesanywhere_dir() -> PathBuf {
    match std::env::var_os("PODCREDS_TESTENV_ROLESANYWHERE_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => cache_root().join(format!("rolesanywhere-{}", rolesanywhere_helper_version())),
    }
}

/// AWS's `aws_signing_helper`, the independent client of the emulator's Roles Anywhere
/// `CreateSession`, or an error that says how to build it.
pub fn aws_signing_helper() -> Result<PathBuf, Error> {
    let path = rolesanywhere_dir().join("aws_signing_helper");
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingTool(format!(
            "{} not found; run `cargo xtask testenv` to build AWS's Roles Anywhere credential helper (a cold build takes a few minutes)",
            path.display()
        )))
    }
}

/// The pinned AWS SDK for Go v2 (its `config` module: the default credential chain).
pub fn sdk_go_v2_version() -> String {
    required_version(SDK_GO_V2_GO_MOD, "github.com/aws/aws-sdk-go-v2/config ")
}

/// Directory holding `sdk-go-v2-client`, the node endpoint's second client, keyed by the SDK's
/// version (`PODCREDS_TESTENV_SDK_GO_DIR` overrides it).
pub fn sdk_go_v2_dir() -> PathBuf {
    match std::env::var_os("PODCREDS_TESTENV_SDK_GO_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => cache_root().join(format!("sdk-go-v2-{}", sdk_go_v2_version())),
    }
}

/// The AWS SDK for Go v2 client (`testenv/go/sdk-go-v2`), or an error that says how to build it.
pub fn sdk_go_v2_client() -> Result<PathBuf, Error> {
    let path = sdk_go_v2_dir().join("sdk-go-v2-client");
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingTool(format!(
            "{} not found; run `cargo xtask testenv` to build the AWS SDK for Go v2 client (about a minute cold)",
            path.display()
        )))
    }
}

/// The Go module of external-secrets, the benchmark's peer operator.
pub const EXTERNAL_SECRETS_MODULE: &str = "github.com/external-secrets/external-secrets";

/// The pinned external-secrets version.
pub fn external_secrets_version() -> String {
    required_version(
        EXTERNAL_SECRETS_GO_MOD,
        &format!("{EXTERNAL_SECRETS_MODULE} "),
    )
}

/// Directory holding the external-secrets controller and its CRDs, keyed by version. Only
/// `cargo xtask bench --peer eso` builds it; the test suite never needs it
/// (`PODCREDS_TESTENV_ESO_DIR` overrides it).
pub fn external_secrets_dir() -> PathBuf {
    match std::env::var_os("PODCREDS_TESTENV_ESO_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => cache_root().join(format!("external-secrets-{}", external_secrets_version())),
    }
}

/// A Go tool the test environment builds from its own wrapper module in `testenv/go/<name>`,
/// cached in a directory of its own keyed by its pinned version (so changing one pin rebuilds
/// nothing else).
#[derive(Clone, Copy, Debug)]
pub struct GoTool {
    /// The binary's name, also the cache directory's prefix.
    pub name: &'static str,
    /// The module whose `require` line pins the version.
    pub module: &'static str,
    /// The package `go build` builds.
    pub package: &'static str,
    go_mod: &'static str,
    /// The environment variable that overrides the directory.
    pub dir_variable: &'static str,
    /// What it is for, in the error that says how to build it.
    pub purpose: &'static str,
}

impl GoTool {
    /// The pinned version.
    pub fn version(&self) -> String {
        required_version(self.go_mod, &format!("{} ", self.module))
    }

    /// `<cache>/<name>-<version>`, or the directory its variable names.
    pub fn dir(&self) -> PathBuf {
        match std::env::var_os(self.dir_variable).filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => cache_root().join(format!("{}-{}", self.name, self.version())),
        }
    }

    /// The built binary, or an error that says how to build it.
    pub fn binary(&self) -> Result<PathBuf, Error> {
        let path = self.dir().join(self.name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::MissingTool(format!(
                "{} not found; run `cargo xtask testenv` to build it ({})",
                path.display(),
                self.purpose
            )))
        }
    }
}

/// The CNCF Distribution registry (`registry`), the OCI registry the release test pushes to and
/// the node pulls from ([`crate::registry`]).
pub const REGISTRY: GoTool = GoTool {
    name: "registry",
    module: "github.com/distribution/distribution/v3",
    package: "github.com/distribution/distribution/v3/cmd/registry",
    go_mod: REGISTRY_GO_MOD,
    dir_variable: "PODCREDS_TESTENV_REGISTRY_DIR",
    purpose: "the OCI registry of the release test",
};

/// actionlint, the linter of `.github/workflows/` (the lint phase of `cargo xtask test`).
pub const ACTIONLINT: GoTool = GoTool {
    name: "actionlint",
    module: "github.com/rhysd/actionlint",
    package: "github.com/rhysd/actionlint/cmd/actionlint",
    go_mod: ACTIONLINT_GO_MOD,
    dir_variable: "PODCREDS_TESTENV_ACTIONLINT_DIR",
    purpose: "the workflow linter",
};

/// crane (go-containerregistry), which pushes the release's image index to a registry
/// (`cargo xtask release` and the release test).
pub const CRANE: GoTool = GoTool {
    name: "crane",
    module: "github.com/google/go-containerregistry",
    package: "github.com/google/go-containerregistry/cmd/crane",
    go_mod: CRANE_GO_MOD,
    dir_variable: "PODCREDS_TESTENV_CRANE_DIR",
    purpose: "it pushes the release's image index",
};

/// Path of one binary, or an error that says how to build it.
pub fn binary(name: &str) -> Result<PathBuf, Error> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingTool(format!(
            "{} not found; run `cargo xtask testenv` to build the test binaries (a cold build takes many minutes)",
            path.display()
        )))
    }
}

/// A short hash of the Python requirements, so a changed pin builds a new venv.
pub fn requirements_key() -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(PYTHON_REQUIREMENTS.as_bytes())[..6])
}

/// The Python venv with moto, awscli and boto3 (`PODCREDS_TESTENV_VENV` overrides it).
pub fn venv_dir() -> PathBuf {
    match std::env::var_os("PODCREDS_TESTENV_VENV").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => cache_root().join(format!("venv-{}", requirements_key())),
    }
}

/// A program from the venv (`aws`, `python`, `moto_server`), or an error that says how to get it.
pub fn venv_program(name: &str) -> Result<PathBuf, Error> {
    let path = venv_dir().join("bin").join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingTool(format!(
            "{} not found; run `cargo xtask testenv` to create the Python venv",
            path.display()
        )))
    }
}

/// The requirements file the venv is built from.
pub fn requirements_file(repo_root: &Path) -> PathBuf {
    repo_root
        .join("testenv")
        .join("python")
        .join("requirements.txt")
}

/// Makes an AWS client process (AWS CLI, boto3) use nothing but what the caller gives it: none of
/// this machine's `AWS_*` settings, no shared credentials file, no instance metadata, no pager.
pub fn clean_aws_env(cmd: &mut std::process::Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_PAGER", "");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_versions_come_from_the_wrapper_modules() {
        let v = Versions::pinned();
        assert!(v.kubernetes.starts_with("v1."), "{v:?}");
        assert!(v.etcd.starts_with("v3.6."), "{v:?}");
        assert!(v.helm.starts_with("v3."), "{v:?}");
        assert!(v.key().starts_with("k8s-v1."));
        assert!(
            minio_version().starts_with("v0.0.0-2"),
            "{}",
            minio_version()
        );
        assert!(
            external_secrets_version().starts_with("v0."),
            "{}",
            external_secrets_version()
        );
        assert_eq!(rolesanywhere_helper_version(), "v1.4.0");
        assert!(rolesanywhere_dir().ends_with("rolesanywhere-v1.4.0"));
        assert_eq!(REGISTRY.version(), "v3.1.2");
        assert_eq!(ACTIONLINT.version(), "v1.7.12");
        assert_eq!(CRANE.version(), "v0.22.1");
        assert!(CRANE.dir().ends_with("crane-v0.22.1"));
    }
}
