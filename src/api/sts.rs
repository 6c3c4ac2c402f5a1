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
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.provider) || self.provider == 'AWS' || !has(self.endpoints) || self.endpoints.all(e, !isURL(e) || !(url(e).getHostname().endsWith('.amazonaws.com') || url(e).getHostname().endsWith('.amazonaws.com.cn')))"
).message("an STS-compatible provider (MinIO, CephRGW) cannot name an AWS endpoint").field_path(".provider"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.endpoint) || !has(self.endpoints)"
).message("set sts.endpoint (one endpoint) or sts.endpoints (an ordered fail-over list), not both").field_path(".endpoints"))]
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

    /// STS endpoint URLs in order of preference, instead of `endpoint`: each exchange (and each
    /// `roleChain` hop) goes to the first one that answers, moving on to the next when one cannot
    /// be reached, times out or answers with a server error. List endpoints of one service (AWS
    /// regional endpoints, replicas of one MinIO cluster): credentials from one must work at the
    /// others. Each must be allowed by the cluster admin, like `endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4), inner(length(max = 2048)), extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(validation = kube::core::Rule::new("self.all(e, isURL(e) && url(e).getScheme() in ['https', 'http'])").message("every endpoint must be an http(s) URL"))]
    pub endpoints: Option<Vec<String>>,
}
