//! A binding's `sts`: which STS service, region and endpoint.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::patterns;

/// The kind of STS service behind the endpoint: `AWS` (the default), `MinIO` or `CephRGW`. It
/// selects which `roleArn` form is accepted; `MinIO` and `CephRGW` need an endpoint that is not
/// AWS (`sts.endpoint`, or the operator's `--sts-endpoint`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StsProvider {
    /// AWS STS, or a service that takes AWS role ARNs (a 12-digit account).
    #[default]
    #[serde(rename = "AWS")]
    Aws,
    /// MinIO: role ARNs `arn:minio:iam:[region]::role/<id>`.
    #[serde(rename = "MinIO")]
    MinIo,
    /// Ceph RGW: role ARNs `arn:aws:iam::[tenant]:role/[path/]name`.
    #[serde(rename = "CephRGW")]
    CephRgw,
}

/// STS settings of one binding.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.provider) || self.provider == 'AWS' || !has(self.endpoint) || !isURL(self.endpoint) || !(url(self.endpoint).getHostname().endsWith('.amazonaws.com') || url(self.endpoint).getHostname().endsWith('.amazonaws.com.cn'))"
).message("an STS-compatible provider (MinIO, CephRGW) cannot name an AWS endpoint").field_path(".provider"))]
#[serde(rename_all = "camelCase")]
pub struct StsSettings {
    /// The kind of STS service behind the endpoint (see [`StsProvider`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<StsProvider>,

    /// AWS region for the STS call and the generated `config` (for example `eu-west-1`).
    /// Regional STS endpoints are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), regex(pattern = patterns::REGION))]
    pub region: Option<String>,

    /// STS endpoint URL, for STS-compatible services such as MinIO or Ceph RGW. Honoured only
    /// when the cluster admin allowed it in the operator's configuration: the ServiceAccount
    /// token is sent there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = kube::core::Rule::new("isURL(self) && url(self).getScheme() in ['https', 'http']").message("endpoint must be an http(s) URL"))]
    pub endpoint: Option<String>,
}
