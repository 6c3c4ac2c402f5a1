//! Pods and images for the test node: the static pod clients (the Rust SDK client and others)
//! as images without a base, and the restricted pods that run them.

use std::path::PathBuf;

use crate::Error;
use crate::oci::{self, Image};

/// The name of the image [`pod_client_image`] builds.
pub const POD_CLIENT_IMAGE: &str = "localhost/podcreds-testenv/pod-client:1";

/// A restricted pod (non-root, read-only root, no capabilities, RuntimeDefault seccomp, no
/// ServiceAccount token) running the pod client every `interval_ms` against `sts_endpoint`, its AWS
/// config taken from `secret` mounted at `mount_path` as a workload would. Callers add where and
/// as whom it runs.
pub fn pod_client_pod(
    name: &str,
    secret: &str,
    mount_path: &str,
    sts_endpoint: &str,
    interval_ms: u64,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "app",
                "image": POD_CLIENT_IMAGE,
                "imagePullPolicy": "Never",
                "args": [sts_endpoint, interval_ms.to_string()],
                "env": [{"name": "AWS_CONFIG_FILE", "value": format!("{mount_path}/config")}],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "aws", "mountPath": mount_path, "readOnly": true}],
            }],
            "volumes": [{"name": "aws", "secret": {"secretName": secret}}],
        },
    })
}

/// A restricted pod of ServiceAccount `service_account` (non-root, read-only root, no
/// capabilities, RuntimeDefault seccomp) whose AWS SDK takes its credentials from podcreds' node
/// endpoint for `binding`: a projected token with the endpoint's audience and the two variables
/// SDKs read, nothing else from podcreds. `image` is the pod client's or the Go SDK client's
/// (both take `<sts-endpoint> <interval-ms>`). Callers add where it runs.
pub fn endpoint_client_pod(
    name: &str,
    service_account: &str,
    image: &str,
    binding: &str,
    sts_endpoint: &str,
    interval_ms: u64,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": service_account,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "app",
                "image": image,
                "imagePullPolicy": "Never",
                "args": [sts_endpoint, interval_ms.to_string()],
                "env": [
                    {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                     "value": format!("http://169.254.170.23/v1/credentials/{binding}")},
                    {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                     "value": "/var/run/secrets/podcreds/token"},
                    {"name": "AWS_REGION", "value": "eu-west-1"},
                ],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "podcreds", "mountPath": "/var/run/secrets/podcreds", "readOnly": true}],
            }],
            "volumes": [{"name": "podcreds", "projected": {"sources": [{"serviceAccountToken": {
                "audience": "podcreds.dev/endpoint",
                "expirationSeconds": 3600,
                "path": "token",
            }}]}}],
        },
    })
}

/// The image of the static pod client (`testenv/pod-client`, at `binary`): the client, busybox
/// `cat` (the Secret's `credential_process` runs it) and nothing else, as user 65532.
pub fn pod_client_image(binary: PathBuf) -> Result<Image, Error> {
    Ok(Image {
        name: POD_CLIENT_IMAGE.into(),
        entries: vec![
            oci::Entry::File {
                path: "/pod-client".into(),
                source: oci::Source::File(binary),
                mode: 0o755,
            },
            oci::busybox_applet("cat")?,
        ],
        user: "65532:65532".into(),
        entrypoint: vec!["/pod-client".into()],
        ..Image::default()
    })
}

/// An image holding one static program at `/<name>` and nothing else, run as user 65532.
pub fn static_program_image(image: &str, name: &str, binary: PathBuf) -> Image {
    Image {
        name: image.into(),
        entries: vec![oci::Entry::File {
            path: format!("/{name}"),
            source: oci::Source::File(binary),
            mode: 0o755,
        }],
        user: "65532:65532".into(),
        entrypoint: vec![format!("/{name}")],
        ..Image::default()
    }
}
