//! Publishing a release to an OCI registry: what `cargo xtask release` does after building, and
//! what the release test does against the registry of its run ([`crate::registry`]), so that the
//! test exercises the very steps a release takes.
//!
//! - the image: the OCI archive of an image index (one manifest per architecture, written by
//!   [`crate::oci::write_index_archive`]) is unpacked and pushed whole with `crane push`, the
//!   same as pushing the archive to a registry of one's own (air-gapped installs);
//! - the chart: packaged with `helm package` at the release's version, its `image.repository`
//!   pointing at the registry the image was pushed to, then pushed with `helm push` as an OCI
//!   artifact (`oci://<registry>/charts/podcreds`);
//! - `SHA256SUMS` over the release's files.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Error;

/// The image repository of a registry prefix (`ghcr.io/podcreds` → `ghcr.io/podcreds/podcreds`).
pub fn image_repository(registry: &str) -> String {
    format!("{}/podcreds", registry.trim_end_matches('/'))
}

/// The chart repository of a registry prefix, as `helm push` and `helm install` name it
/// (`ghcr.io/podcreds` → `oci://ghcr.io/podcreds/charts`; the chart is `.../charts/podcreds`).
pub fn chart_repository(registry: &str) -> String {
    format!("oci://{}/charts", registry.trim_end_matches('/'))
}

/// Programs the steps run, and the environment helm runs with (its config, cache and registry
/// login files).
#[derive(Clone, Debug)]
pub struct Tools {
    pub helm: PathBuf,
    pub crane: PathBuf,
    pub helm_env: Vec<(String, String)>,
}

/// One release to publish.
#[derive(Clone, Debug)]
pub struct Publish<'a> {
    /// The image index archive.
    pub image_archive: &'a Path,
    /// The chart's source directory (`charts/podcreds`).
    pub chart_source: &'a Path,
    /// Registry and path prefix: `ghcr.io/podcreds`, `127.0.0.1:5000/podcreds`.
    pub registry: &'a str,
    /// The release's version: the image tag, the chart's version and appVersion.
    pub version: &'a str,
    /// The registry speaks plain HTTP (a local test registry).
    pub plain_http: bool,
    /// Where the packaged chart goes.
    pub out_dir: &'a Path,
}

/// What was pushed, by digest.
#[derive(Clone, Debug)]
pub struct Published {
    /// `<registry>/podcreds:<version>`.
    pub image: String,
    /// The image index's digest (`sha256:...`).
    pub image_digest: String,
    /// `oci://<registry>/charts/podcreds`.
    pub chart: String,
    /// The chart artifact's digest (`sha256:...`).
    pub chart_digest: String,
    /// The packaged chart.
    pub chart_archive: PathBuf,
}

fn run(program: &Path, args: &[&str], env: &[(String, String)]) -> Result<String, Error> {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .map_err(|e| Error::MissingTool(format!("cannot run {}: {e}", program.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(Error::Command(format!(
            "{} {} failed ({}):\n{stdout}{stderr}",
            program.display(),
            args.join(" "),
            output.status
        )));
    }
    // helm prints its push results on stderr.
    Ok(format!("{stdout}{stderr}"))
}

/// Packages the chart at `source` as `<out_dir>/podcreds-<version>.tgz`, version and appVersion
/// `version`, its default `image.repository` the release's.
pub fn package_chart(
    tools: &Tools,
    source: &Path,
    image_repository: &str,
    version: &str,
    out_dir: &Path,
) -> Result<PathBuf, Error> {
    let work = tempfile::Builder::new()
        .prefix("podcreds-chart-")
        .tempdir()?;
    let chart = work.path().join("podcreds");
    copy_dir(source, &chart)?;
    let values_path = chart.join("values.yaml");
    let values = std::fs::read_to_string(&values_path)?;
    let mut replaced = 0;
    let values: String = values
        .lines()
        .map(|line| {
            if line.starts_with("  repository: ") && replaced == 0 {
                replaced += 1;
                format!("  repository: {image_repository}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    if replaced != 1 {
        return Err(Error::Command(format!(
            "{} has no image.repository line to point at {image_repository}",
            values_path.display()
        )));
    }
    std::fs::write(&values_path, values + "\n")?;
    std::fs::create_dir_all(out_dir)?;
    let chart_arg = chart.to_string_lossy().into_owned();
    let out_arg = out_dir.to_string_lossy().into_owned();
    run(
        &tools.helm,
        &[
            "package",
            &chart_arg,
            "--version",
            version,
            "--app-version",
            version,
            "--destination",
            &out_arg,
        ],
        &tools.helm_env,
    )?;
    let archive = out_dir.join(format!("podcreds-{version}.tgz"));
    if !archive.is_file() {
        return Err(Error::Command(format!(
            "helm package wrote no {}",
            archive.display()
        )));
    }
    Ok(archive)
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Pushes the image index in `archive` as `reference` (`<registry>/podcreds:<version>`) with
/// `crane push`; returns its digest.
pub fn push_image(
    tools: &Tools,
    archive: &Path,
    reference: &str,
    plain_http: bool,
) -> Result<String, Error> {
    let work = tempfile::Builder::new()
        .prefix("podcreds-layout-")
        .tempdir()?;
    let layout = work.path().join("layout");
    std::fs::create_dir_all(&layout)?;
    let tar = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(&layout)
        .output()?;
    if !tar.status.success() {
        return Err(Error::Image(format!(
            "cannot unpack {}: {}",
            archive.display(),
            String::from_utf8_lossy(&tar.stderr).trim()
        )));
    }
    let refs = work.path().join("image-refs");
    let layout_arg = layout.to_string_lossy().into_owned();
    let refs_arg = refs.to_string_lossy().into_owned();
    let mut args = vec!["push", &layout_arg, reference, "--image-refs", &refs_arg];
    if plain_http {
        args.push("--insecure");
    }
    run(&tools.crane, &args, &[])?;
    // `<reference without tag>@sha256:...`
    let pushed = std::fs::read_to_string(&refs)?;
    pushed
        .trim()
        .rsplit_once('@')
        .map(|(_, digest)| digest.to_string())
        .ok_or_else(|| Error::Command(format!("crane push reported no digest: {pushed:?}")))
}

/// Pushes the packaged chart to `oci_repository` (`oci://<registry>/charts`) with `helm push`;
/// returns its digest.
pub fn push_chart(
    tools: &Tools,
    chart_archive: &Path,
    oci_repository: &str,
    plain_http: bool,
) -> Result<String, Error> {
    let archive = chart_archive.to_string_lossy().into_owned();
    let mut args = vec!["push", &archive, oci_repository];
    if plain_http {
        args.push("--plain-http");
    }
    let output = run(&tools.helm, &args, &tools.helm_env)?;
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Digest: "))
        .map(|d| d.trim().to_string())
        .ok_or_else(|| Error::Command(format!("helm push printed no digest:\n{output}")))
}

/// Packages the chart and pushes the image and the chart.
pub fn publish(tools: &Tools, release: &Publish<'_>) -> Result<Published, Error> {
    let repository = image_repository(release.registry);
    let image = format!("{repository}:{}", release.version);
    let chart_archive = package_chart(
        tools,
        release.chart_source,
        &repository,
        release.version,
        release.out_dir,
    )?;
    let image_digest = push_image(tools, release.image_archive, &image, release.plain_http)?;
    let charts = chart_repository(release.registry);
    let chart_digest = push_chart(tools, &chart_archive, &charts, release.plain_http)?;
    Ok(Published {
        image,
        image_digest,
        chart: format!("{charts}/podcreds"),
        chart_digest,
        chart_archive,
    })
}

/// Writes `SHA256SUMS` in `dir` over `files` (names in `dir`), in the format `sha256sum -c`
/// checks.
pub fn write_checksums(dir: &Path, files: &[String]) -> Result<PathBuf, Error> {
    let mut sums = String::new();
    for file in files {
        let bytes = std::fs::read(dir.join(file))?;
        sums.push_str(&format!(
            "{}  {file}\n",
            hex::encode(Sha256::digest(&bytes))
        ));
    }
    let path = dir.join("SHA256SUMS");
    std::fs::write(&path, sums)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_a_registry_prefix() {
        assert_eq!(
            image_repository("ghcr.io/podcreds"),
            "ghcr.io/podcreds/podcreds"
        );
        assert_eq!(
            chart_repository("127.0.0.1:5000/podcreds/"),
            "oci://127.0.0.1:5000/podcreds/charts"
        );
    }

    #[test]
    fn checksums_are_what_sha256sum_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), b"hello\n").expect("write");
        let sums = write_checksums(dir.path(), &["a".into()]).expect("sums");
        assert_eq!(
            std::fs::read_to_string(sums).expect("read"),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  a\n"
        );
        let check = Command::new("sha256sum")
            .args(["-c", "SHA256SUMS"])
            .current_dir(dir.path())
            .output()
            .expect("sha256sum");
        assert!(check.status.success(), "{check:?}");
    }
}
