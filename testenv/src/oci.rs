//! OCI image archives written directly (no Docker daemon, no registry, no base image to pull): one
//! uncompressed layer from a list of files, a config, a manifest and an index naming the image,
//! packed as an `oci-archive` that `ctr images import` (and `podman load`) accept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Error;

/// Where a file of the image comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file on this machine, copied in.
    File(PathBuf),
    /// Literal contents.
    Bytes(Vec<u8>),
}

/// One entry of the image's single layer.
#[derive(Clone, Debug)]
pub enum Entry {
    File {
        path: String,
        source: Source,
        mode: u32,
    },
    Dir {
        path: String,
        mode: u32,
    },
}

/// An image: its name, the files of its one layer and its run configuration.
#[derive(Clone, Debug, Default)]
pub struct Image {
    /// Full reference the runtime will know it by, for example `ghcr.io/podcreds/podcreds:0.1.0`.
    pub name: String,
    pub entries: Vec<Entry>,
    /// `uid:gid`; empty means root.
    pub user: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The OCI architecture of its binaries (`amd64`, `arm64`); empty means `amd64`.
    pub architecture: String,
}

/// A manifest written into a layout: its digest (`sha256:...`), size and platform.
struct Written {
    digest: String,
    size: usize,
    architecture: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn run_tar(args: &[&str], dir: &Path) -> Result<(), Error> {
    let output = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| Error::MissingTool(format!("cannot run tar (GNU tar is needed): {e}")))?;
    if !output.status.success() {
        return Err(Error::Image(format!(
            "tar {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// Reproducible tar flags: sorted, no timestamps, root-owned.
const TAR_FLAGS: [&str; 5] = [
    "--sort=name",
    "--mtime=@0",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
];

fn relative(path: &str) -> Result<&str, Error> {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(Error::Image(format!("bad path in image: {path:?}")));
    }
    Ok(rel)
}

impl Image {
    fn architecture(&self) -> &str {
        if self.architecture.is_empty() {
            "amd64"
        } else {
            &self.architecture
        }
    }

    /// Writes the image as an OCI archive at `out`; returns the manifest digest (`sha256:...`).
    pub fn write_archive(&self, out: &Path) -> Result<String, Error> {
        let work = tempfile::Builder::new().prefix("podcreds-oci-").tempdir()?;
        let layout = work.path().join("layout");
        let manifest = self.write_blobs(&layout)?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest.digest,
                "size": manifest.size,
                "platform": {"architecture": manifest.architecture, "os": "linux"},
                // containerd names the imported image after this annotation.
                "annotations": {
                    "io.containerd.image.name": self.name,
                    "org.opencontainers.image.ref.name": self.name,
                },
            }],
        });
        write_layout(&layout, &index, out)?;
        Ok(manifest.digest)
    }

    /// Writes the layer, config and manifest blobs into the OCI layout at `layout`.
    fn write_blobs(&self, layout: &Path) -> Result<Written, Error> {
        use std::os::unix::fs::PermissionsExt;
        let work = tempfile::Builder::new().prefix("podcreds-oci-").tempdir()?;
        let rootfs = work.path().join("rootfs");
        std::fs::create_dir_all(&rootfs)?;
        for entry in &self.entries {
            match entry {
                Entry::Dir { path, mode } => {
                    let dir = rootfs.join(relative(path)?);
                    std::fs::create_dir_all(&dir)?;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode))?;
                }
                Entry::File { path, source, mode } => {
                    let file = rootfs.join(relative(path)?);
                    if let Some(parent) = file.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    match source {
                        Source::File(from) => {
                            std::fs::copy(from, &file).map_err(|e| {
                                Error::Image(format!("cannot copy {}: {e}", from.display()))
                            })?;
                        }
                        Source::Bytes(bytes) => std::fs::write(&file, bytes)?,
                    }
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))?;
                }
            }
        }
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)?;
        let layer_tar = work.path().join("layer.tar");
        let mut args: Vec<&str> = TAR_FLAGS.to_vec();
        let layer_arg = layer_tar.to_string_lossy().into_owned();
        args.extend(["--format=gnu", "-cf", &layer_arg, "."]);
        run_tar(&args, &rootfs)?;
        let layer = std::fs::read(&layer_tar)?;
        let layer_digest = sha256_hex(&layer);
        std::fs::write(blobs.join(&layer_digest), &layer)?;

        let mut config = serde_json::json!({
            "Entrypoint": self.entrypoint,
            "Cmd": self.cmd,
            "Env": self.env,
            "Labels": self.labels,
            "WorkingDir": "/",
        });
        if !self.user.is_empty() {
            config["User"] = self.user.clone().into();
        }
        let config_doc = serde_json::to_vec(&serde_json::json!({
            "architecture": self.architecture(),
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
            "history": [{"created_by": "podcreds-testenv oci writer"}],
        }))
        .map_err(|e| Error::Image(e.to_string()))?;
        let config_digest = sha256_hex(&config_doc);
        std::fs::write(blobs.join(&config_digest), &config_doc)?;

        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{config_digest}"),
                "size": config_doc.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": format!("sha256:{layer_digest}"),
                "size": layer.len(),
            }],
        }))
        .map_err(|e| Error::Image(e.to_string()))?;
        let manifest_digest = sha256_hex(&manifest);
        std::fs::write(blobs.join(&manifest_digest), &manifest)?;
        Ok(Written {
            digest: format!("sha256:{manifest_digest}"),
            size: manifest.len(),
            architecture: self.architecture().to_string(),
        })
    }
}

/// Writes a multi-platform image, one manifest per image of `images` (one per architecture)
/// under an OCI image index, as an OCI archive at `out` whose `index.json` names the index
/// `name`. Returns the image index's digest (`sha256:...`): what a registry serves for the tag.
pub fn write_index_archive(images: &[Image], name: &str, out: &Path) -> Result<String, Error> {
    let work = tempfile::Builder::new().prefix("podcreds-oci-").tempdir()?;
    let layout = work.path().join("layout");
    let mut manifests = Vec::new();
    for image in images {
        if manifests
            .iter()
            .any(|m: &Written| m.architecture == image.architecture())
        {
            return Err(Error::Image(format!(
                "two images for {} in one index",
                image.architecture()
            )));
        }
        manifests.push(image.write_blobs(&layout)?);
    }
    if manifests.is_empty() {
        return Err(Error::Image(
            "an image index needs at least one image".into(),
        ));
    }
    let image_index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests.iter().map(|m| serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m.digest,
            "size": m.size,
            "platform": {"architecture": m.architecture, "os": "linux"},
        })).collect::<Vec<_>>(),
    }))
    .map_err(|e| Error::Image(e.to_string()))?;
    let index_digest = sha256_hex(&image_index);
    std::fs::write(
        layout.join("blobs/sha256").join(&index_digest),
        &image_index,
    )?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{index_digest}"),
            "size": image_index.len(),
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": name,
            },
        }],
    });
    write_layout(&layout, &index, out)?;
    Ok(format!("sha256:{index_digest}"))
}

/// Finishes the OCI layout at `layout` with `index` and packs it as an archive at `out`.
fn write_layout(layout: &Path, index: &serde_json::Value, out: &Path) -> Result<(), Error> {
    std::fs::write(layout.join("index.json"), index.to_string())?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let out_arg = out.to_string_lossy().into_owned();
    let mut args: Vec<&str> = TAR_FLAGS.to_vec();
    args.extend(["-cf", &out_arg, "oci-layout", "index.json", "blobs"]);
    run_tar(&args, layout)
}

/// A file of this machine that an image needs, or an error naming the Debian package.
pub fn host_file(path: &str, package: &str) -> Result<PathBuf, Error> {
    let p = PathBuf::from(path);
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::MissingTool(format!(
            "{path} not found: install Debian's {package} (`cargo xtask testenv` does)"
        )))
    }
}

/// Busybox copied under the applet name `name`: busybox picks the applet from its file name.
pub fn busybox_applet(name: &str) -> Result<Entry, Error> {
    Ok(Entry::File {
        path: format!("/bin/{name}"),
        source: Source::File(host_file("/bin/busybox", "busybox-static")?),
        mode: 0o755,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_holds_a_named_index_a_manifest_and_the_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = Image {
            name: "localhost/test:1".into(),
            entries: vec![
                Entry::Dir {
                    path: "/tmp".into(),
                    mode: 0o1777,
                },
                Entry::File {
                    path: "/etc/hello".into(),
                    source: Source::Bytes(b"hi\n".to_vec()),
                    mode: 0o644,
                },
            ],
            user: "65532:65532".into(),
            entrypoint: vec!["/hello".into()],
            ..Image::default()
        };
        let out = dir.path().join("image.tar");
        let digest = image.write_archive(&out).expect("archive");
        assert!(digest.starts_with("sha256:"));
        let listing = Command::new("tar")
            .arg("-tf")
            .arg(&out)
            .output()
            .expect("tar -t");
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains("index.json"), "{listing}");
        assert!(
            listing.contains(&format!("blobs/sha256/{}", &digest[7..])),
            "{listing}"
        );
        // The same input gives the same image.
        let again = image
            .write_archive(&dir.path().join("again.tar"))
            .expect("archive");
        assert_eq!(digest, again);
        assert!(relative("/a/../b").is_err());
    }

    #[test]
    fn an_index_archive_names_one_index_of_every_architecture() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = |architecture: &str| Image {
            name: "ignored".into(),
            entries: vec![Entry::File {
                path: "/arch".into(),
                source: Source::Bytes(architecture.as_bytes().to_vec()),
                mode: 0o644,
            }],
            architecture: architecture.into(),
            ..Image::default()
        };
        let out = dir.path().join("index.tar");
        let digest = write_index_archive(
            &[image("amd64"), image("arm64")],
            "registry.example/podcreds:1",
            &out,
        )
        .expect("index archive");
        let read = |member: &str| {
            let out = Command::new("tar")
                .arg("-xOf")
                .arg(&out)
                .arg(member)
                .output()
                .expect("tar -x");
            assert!(out.status.success(), "{member} missing");
            serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
        };
        let layout_index = read("index.json");
        let entries = layout_index["manifests"].as_array().expect("manifests");
        assert_eq!(entries.len(), 1, "{layout_index}");
        assert_eq!(entries[0]["digest"], digest.as_str());
        assert_eq!(
            entries[0]["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        assert_eq!(
            entries[0]["annotations"]["org.opencontainers.image.ref.name"],
            "registry.example/podcreds:1"
        );
        let image_index = read(&format!("blobs/sha256/{}", &digest[7..]));
        let platforms: Vec<&str> = image_index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .filter_map(|m| m["platform"]["architecture"].as_str())
            .collect();
        assert_eq!(platforms, ["amd64", "arm64"]);
        for manifest in image_index["manifests"].as_array().expect("manifests") {
            let manifest = read(&format!(
                "blobs/sha256/{}",
                &manifest["digest"].as_str().expect("digest")[7..]
            ));
            let config = read(&format!(
                "blobs/sha256/{}",
                &manifest["config"]["digest"].as_str().expect("digest")[7..]
            ));
            assert!(
                platforms.contains(&config["architecture"].as_str().expect("architecture")),
                "{config}"
            );
        }
        assert!(
            write_index_archive(
                &[image("arm64"), image("arm64")],
                "x",
                &dir.path().join("twice.tar")
            )
            .is_err(),
            "two images of one architecture"
        );
    }
}
