//! The release's software bill of materials, SPDX 2.3 JSON, from what Cargo knows: every crate in
//! the `podcreds` binary's normal dependency graph for the release's targets (`cargo metadata
//! --filter-platform`, build scripts' and tests' dependencies left out), each with its version,
//! declared licence, `pkg:cargo` purl and the checksum `Cargo.lock` pins, plus the one file the
//! image adds that is not ours: Debian's CA bundle (`ca-certificates`, at the version installed
//! here). It is not a scan of the image: it says what the build used, as Cargo resolved it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::repo_root;

/// One package of the document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Package {
    id: String,
    name: String,
    version: String,
    license: Option<String>,
    source: Option<String>,
}

fn spdx_id(name: &str, version: &str) -> String {
    let clean: String = format!("{name}-{version}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-Package-{clean}")
}

/// `MIT/Apache-2.0` (an old Cargo form) as the SPDX expression it means.
fn license_expression(license: &str) -> String {
    license
        .split('/')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Checksums Cargo.lock pins, by `name@version`.
fn lock_checksums(lock: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let (mut name, mut version) = (String::new(), String::new());
    for line in lock.lines() {
        let value = |l: &str, key: &str| {
            l.strip_prefix(key)
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        if line == "[[package]]" {
            name.clear();
            version.clear();
        } else if let Some(v) = value(line, "name = ") {
            name = v;
        } else if let Some(v) = value(line, "version = ") {
            version = v;
        } else if let Some(v) = value(line, "checksum = ") {
            out.insert(format!("{name}@{version}"), v);
        }
    }
    out
}

/// The crates of the binary: `podcreds` itself, every other one, and the dependency edges (by
/// package id).
struct Graph {
    root: Package,
    deps: Vec<Package>,
    edges: Vec<(String, String)>,
}

/// The packages the `podcreds` binary is built from for `targets`, found in the resolve graph of
/// `cargo metadata` by following normal dependencies from `podcreds`.
fn packages(targets: &[&str]) -> anyhow::Result<Graph> {
    let mut all: BTreeMap<String, Package> = BTreeMap::new();
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    let mut root = None;
    for target in targets {
        let output = Command::new("cargo")
            .args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", target])
            .current_dir(repo_root())
            .output()
            .context("cannot run cargo metadata")?;
        if !output.status.success() {
            bail!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let metadata: Value = serde_json::from_slice(&output.stdout)?;
        let by_id: BTreeMap<&str, &Value> = metadata["packages"]
            .as_array()
            .context("packages")?
            .iter()
            .filter_map(|p| Some((p["id"].as_str()?, p)))
            .collect();
        let nodes: BTreeMap<&str, &Value> = metadata["resolve"]["nodes"]
            .as_array()
            .context("resolve.nodes")?
            .iter()
            .filter_map(|n| Some((n["id"].as_str()?, n)))
            .collect();
        let start = by_id
            .iter()
            .find(|(_, p)| p["name"] == "podcreds" && p["source"].is_null())
            .map(|(id, _)| *id)
            .context("no podcreds package in cargo metadata")?;
        let mut queue = vec![start];
        let mut seen = BTreeSet::new();
        while let Some(id) = queue.pop() {
            if !seen.insert(id) {
                continue;
            }
            let p = by_id.get(id).context("a resolved id without a package")?;
            let package = Package {
                id: id.to_string(),
                name: p["name"].as_str().unwrap_or_default().to_string(),
                version: p["version"].as_str().unwrap_or_default().to_string(),
                license: p["license"].as_str().map(license_expression),
                source: p["source"].as_str().map(str::to_string),
            };
            if id == start {
                root = Some(package.clone());
            }
            all.insert(id.to_string(), package);
            for dep in nodes
                .get(id)
                .and_then(|n| n["deps"].as_array())
                .into_iter()
                .flatten()
            {
                let normal = dep["dep_kinds"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()));
                if let (true, Some(to)) = (normal, dep["pkg"].as_str()) {
                    edges.insert((id.to_string(), to.to_string()));
                    queue.push(to);
                }
            }
        }
    }
    let root = root.context("podcreds not found")?;
    let deps = all.into_values().filter(|p| p.id != root.id).collect();
    Ok(Graph {
        root,
        deps,
        edges: edges.into_iter().collect(),
    })
}

fn ca_certificates_version() -> anyhow::Result<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "ca-certificates"])
        .output()
        .context("cannot run dpkg-query (the image's CA bundle comes from Debian)")?;
    if !output.status.success() || output.stdout.is_empty() {
        bail!("Debian's ca-certificates is not installed: the image's CA bundle comes from it");
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The SPDX document of release `version` built for `targets`, created at `created` (RFC 3339).
pub fn spdx(version: &str, targets: &[&str], created: &str) -> anyhow::Result<Value> {
    let Graph { root, deps, edges } = packages(targets)?;
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock"))?;
    let checksums = lock_checksums(&lock);
    let ids: BTreeMap<&str, String> = std::iter::once(&root)
        .chain(&deps)
        .map(|p| (p.id.as_str(), spdx_id(&p.name, &p.version)))
        .collect();
    let package = |p: &Package, download: String| {
        let mut doc = json!({
            "name": p.name,
            "SPDXID": spdx_id(&p.name, &p.version),
            "versionInfo": p.version,
            "downloadLocation": download,
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": p.license.clone().unwrap_or_else(|| "NOASSERTION".into()),
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:cargo/{}@{}", p.name, p.version),
            }],
        });
        if let Some(sum) = checksums.get(&format!("{}@{}", p.name, p.version)) {
            doc["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": sum}]);
        }
        doc
    };
    let mut packages = vec![package(
        &root,
        format!("git+https://github.com/podcreds/podcreds@v{version}"),
    )];
    for p in &deps {
        let download = match &p.source {
            Some(s) if s.starts_with("registry+https://github.com/rust-lang/crates.io-index") => {
                format!(
                    "https://crates.io/api/v1/crates/{}/{}/download",
                    p.name, p.version
                )
            }
            _ => "NOASSERTION".to_string(),
        };
        packages.push(package(p, download));
    }
    let ca_version = ca_certificates_version()?;
    let ca_id = "SPDXRef-Package-deb-ca-certificates".to_string();
    packages.push(json!({
        "name": "ca-certificates",
        "SPDXID": ca_id,
        "versionInfo": ca_version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "comment": "/etc/ssl/certs/ca-certificates.crt in the image, from Debian's package",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:deb/debian/ca-certificates@{ca_version}?arch=all"),
        }],
    }));
    let root_id = spdx_id(&root.name, &root.version);
    let mut relationships = vec![
        json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": root_id}),
        json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": ca_id}),
    ];
    for (from, to) in &edges {
        if let (Some(from), Some(to)) = (ids.get(from.as_str()), ids.get(to.as_str())) {
            relationships.push(json!({"spdxElementId": from, "relationshipType": "DEPENDS_ON", "relatedSpdxElement": to}));
        }
    }
    use sha2::{Digest, Sha256};
    let namespace_hash = hex::encode(&Sha256::digest(lock.as_bytes())[..8]);
    Ok(json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("podcreds-{version}"),
        "documentNamespace": format!("https://github.com/podcreds/podcreds/releases/v{version}/sbom-{namespace_hash}"),
        "creationInfo": {
            "created": created,
            "creators": ["Tool: podcreds cargo xtask release (cargo metadata and Cargo.lock)"],
            "comment": format!("Crates of the podcreds binary's normal dependency graph for {} as Cargo resolves it, and the image's CA bundle; not a scan of the image.", targets.join(", ")),
        },
        "packages": packages,
        "relationships": relationships,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sbom_lists_what_the_binary_is_built_from() {
        let doc = spdx(
            "0.0.0-test",
            &["x86_64-unknown-linux-gnu"],
            "2026-01-01T00:00:00Z",
        )
        .expect("sbom");
        let names: Vec<&str> = doc["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names[0], "podcreds");
        for expected in ["kube", "aws-sdk-sts", "tokio", "rustls", "ca-certificates"] {
            assert!(names.contains(&expected), "{expected} missing: {names:?}");
        }
        // Test-only and tooling crates are not in the binary.
        for absent in [
            "proptest",
            "tempfile",
            "sts-emulator",
            "podcreds-testenv",
            "clap_derive_test",
        ] {
            assert!(!names.contains(&absent), "{absent} listed");
        }
        let kube = doc["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| p["name"] == "kube")
            .expect("kube");
        assert_eq!(kube["checksums"][0]["algorithm"], "SHA256");
        assert!(
            kube["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|l| l.starts_with("pkg:cargo/kube@"))
        );
        let ids: BTreeSet<&str> = doc["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .filter_map(|p| p["SPDXID"].as_str())
            .collect();
        for r in doc["relationships"].as_array().expect("relationships") {
            for side in ["spdxElementId", "relatedSpdxElement"] {
                let id = r[side].as_str().expect("id");
                assert!(id == "SPDXRef-DOCUMENT" || ids.contains(id), "{r}");
            }
        }
    }

    #[test]
    fn old_style_licences_become_expressions() {
        assert_eq!(license_expression("MIT/Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(license_expression("Apache-2.0 OR MIT"), "Apache-2.0 OR MIT");
    }
}
