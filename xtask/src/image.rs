//! `cargo xtask image`: the operator's OCI image without a Docker daemon or a registry. The
//! `Dockerfile` stays the definition of the image: its final stage is read here and every
//! instruction reproduced (the static binary the test step builds, the base image's files, user,
//! labels, entrypoint and command), and an instruction this builder cannot reproduce is an error,
//! so the two cannot drift apart silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use podcreds_testenv::oci::{Entry, Image, Source};

use crate::repo_root;

/// The base image the Dockerfile names, reproduced from this machine's files.
const DISTROLESS_STATIC: &str = "gcr.io/distroless/static-debian12:nonroot";
/// Where the test step's static build leaves the binary.
pub const STATIC_BINARY: &str = "target/static/x86_64-unknown-linux-gnu/release/podcreds";
/// Where `cargo xtask image` writes the archive unless told otherwise.
pub const DEFAULT_ARCHIVE: &str = "target/image/podcreds.oci.tar";
/// The CA bundle distroless ships, taken from Debian's ca-certificates.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The final stage of a Dockerfile, as far as this builder understands it.
#[derive(Debug, Default, PartialEq)]
pub struct FinalStage {
    pub base: String,
    /// (source in the build stage, destination in the image)
    pub copies: Vec<(String, String)>,
    pub user: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// Joins continuation lines and drops comments and the parser directive.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.starts_with('#') || trimmed.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

fn json_words(value: &str, instruction: &str) -> anyhow::Result<Vec<String>> {
    serde_json::from_str(value)
        .with_context(|| format!("{instruction} must use the JSON (exec) form, not {value:?}"))
}

/// `LABEL k="v" k2=v2`, values quoted or not.
fn labels(value: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .with_context(|| format!("LABEL without key=value: {rest:?}"))?;
        let (val, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .context("LABEL value with no closing quote")?;
            (quoted[..end].to_string(), &quoted[end + 1..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.push((key.trim().to_string(), val));
        rest = after.trim_start();
    }
    Ok(out)
}

pub fn parse_final_stage(dockerfile: &str) -> anyhow::Result<FinalStage> {
    let all = instructions(dockerfile);
    let start = all
        .iter()
        .rposition(|i| i.to_uppercase().starts_with("FROM "))
        .context("the Dockerfile has no FROM")?;
    let mut stage = FinalStage::default();
    for instruction in &all[start..] {
        let (keyword, value) = instruction.split_once(' ').unwrap_or((instruction, ""));
        let value = value.trim();
        match keyword.to_uppercase().as_str() {
            "FROM" => stage.base = value.to_string(),
            "COPY" => {
                let words: Vec<&str> = value.split_whitespace().collect();
                match words.as_slice() {
                    [from, src, dst] if from.starts_with("--from=") => {
                        stage.copies.push((src.to_string(), dst.to_string()))
                    }
                    _ => bail!(
                        "COPY {value:?}: only `COPY --from=<stage> <file> <dest>` is reproduced"
                    ),
                }
            }
            "USER" => stage.user = value.to_string(),
            "ENTRYPOINT" => stage.entrypoint = json_words(value, "ENTRYPOINT")?,
            "CMD" => stage.cmd = json_words(value, "CMD")?,
            "LABEL" => stage.labels.extend(labels(value)?),
            other => bail!(
                "Dockerfile instruction {other} in the final stage is not reproduced by `cargo xtask image` (xtask/src/image.rs): teach it there"
            ),
        }
    }
    if stage.base != DISTROLESS_STATIC {
        bail!(
            "the Dockerfile's final stage is FROM {}; `cargo xtask image` reproduces only {DISTROLESS_STATIC}",
            stage.base
        );
    }
    Ok(stage)
}

/// What distroless/static:nonroot provides besides the binary: CA certificates, the users,
/// `nsswitch.conf` (glibc's resolver reads it), a writable /tmp, and its environment.
fn distroless_static_files() -> anyhow::Result<(Vec<Entry>, Vec<String>)> {
    if !Path::new(CA_BUNDLE).is_file() {
        bail!("{CA_BUNDLE} not found: install Debian's ca-certificates");
    }
    let text = |path: &str, contents: &str| Entry::File {
        path: path.into(),
        source: Source::Bytes(contents.as_bytes().to_vec()),
        mode: 0o644,
    };
    let entries = vec![
        Entry::File {
            path: CA_BUNDLE.into(),
            source: Source::File(PathBuf::from(CA_BUNDLE)),
            mode: 0o644,
        },
        text(
            "/etc/passwd",
            "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
        ),
        text(
            "/etc/group",
            "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n",
        ),
        text("/etc/nsswitch.conf", "hosts: files dns\n"),
        Entry::Dir {
            path: "/tmp".into(),
            mode: 0o1777,
        },
    ];
    let env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        format!("SSL_CERT_FILE={CA_BUNDLE}"),
    ];
    Ok((entries, env))
}

/// The operator image the Dockerfile describes, from the static binary at `binary`.
pub fn operator_image(dockerfile: &str, binary: &Path, name: &str) -> anyhow::Result<Image> {
    let stage = parse_final_stage(dockerfile)?;
    let (mut entries, env) = distroless_static_files()?;
    for (source, dest) in &stage.copies {
        if source != "/podcreds" {
            bail!("COPY of {source}: only the operator binary (/podcreds) is reproduced");
        }
        entries.push(Entry::File {
            path: dest.clone(),
            source: Source::File(binary.to_path_buf()),
            mode: 0o755,
        });
    }
    Ok(Image {
        name: name.into(),
        entries,
        user: stage.user,
        entrypoint: stage.entrypoint,
        cmd: stage.cmd,
        env,
        labels: stage.labels,
        architecture: String::new(),
    })
}

/// The image name the chart uses by default: `<image.repository>:<appVersion>`.
pub fn default_name() -> anyhow::Result<String> {
    let chart = std::fs::read_to_string(repo_root().join("charts/podcreds/Chart.yaml"))?;
    let values = std::fs::read_to_string(repo_root().join("charts/podcreds/values.yaml"))?;
    let app_version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .context("Chart.yaml has no appVersion")?;
    let repository = values
        .lines()
        .skip_while(|l| !l.starts_with("image:"))
        .find_map(|l| l.trim().strip_prefix("repository:"))
        .map(|v| v.trim().to_string())
        .context("values.yaml has no image.repository")?;
    Ok(format!("{repository}:{app_version}"))
}

/// Builds the static binary and writes the image archive; returns (archive, image name).
pub fn build(output: Option<PathBuf>, name: Option<String>) -> anyhow::Result<(PathBuf, String)> {
    crate::build_static()?;
    let binary = repo_root().join(STATIC_BINARY);
    let name = match name {
        Some(n) => n,
        None => default_name()?,
    };
    let output = output.unwrap_or_else(|| repo_root().join(DEFAULT_ARCHIVE));
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile"))?;
    let image = operator_image(&dockerfile, &binary, &name)?;
    let digest = image.write_archive(&output)?;
    let size = std::fs::metadata(&output)?.len();
    println!(
        "  {} ({:.1} MiB): {name}, manifest {digest}",
        output.display(),
        size as f64 / 1048576.0
    );
    println!(
        "  load it without a registry: `ctr -n k8s.io images import {0}` on each node (containerd), `podman load -i {0}`, or `kind load image-archive {0}`",
        output.display()
    );
    Ok((output, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dockerfile_is_what_the_image_builder_reproduces() {
        let stage = parse_final_stage(include_str!("../../Dockerfile")).expect("Dockerfile");
        assert_eq!(stage.base, DISTROLESS_STATIC);
        assert_eq!(
            stage.copies,
            vec![("/podcreds".to_string(), "/podcreds".to_string())]
        );
        assert_eq!(stage.user, "65532:65532");
        assert_eq!(stage.entrypoint, vec!["/podcreds"]);
        assert_eq!(stage.cmd, vec!["run"]);
        assert_eq!(
            stage
                .labels
                .get("org.opencontainers.image.title")
                .map(String::as_str),
            Some("podcreds")
        );
        let image = operator_image(
            include_str!("../../Dockerfile"),
            Path::new("/bin/true"),
            "localhost/podcreds:test",
        )
        .expect("image");
        assert_eq!(image.user, stage.user);
        assert_eq!(image.labels, stage.labels);
        assert!(
            image
                .entries
                .iter()
                .any(|e| matches!(e, Entry::File { path, .. } if path == "/podcreds"))
        );
    }

    #[test]
    fn instructions_it_cannot_reproduce_are_refused() {
        let base = format!("FROM x AS build\nRUN make\nFROM {DISTROLESS_STATIC}\n");
        assert!(parse_final_stage(&format!("{base}RUN echo hi\n")).is_err());
        assert!(parse_final_stage(&format!("{base}ENTRYPOINT /podcreds run\n")).is_err());
        assert!(parse_final_stage("FROM debian\nUSER 1\n").is_err());
        let stage = parse_final_stage(&format!(
            "{base}LABEL a=\"b c\" d=e \\\n  f=\"g\"\nUSER 1:1\n"
        ))
        .expect("parses");
        assert_eq!(stage.labels.get("a").map(String::as_str), Some("b c"));
        assert_eq!(stage.labels.get("f").map(String::as_str), Some("g"));
    }
}
