//! Validation patterns shared by the CRD schema (enforced by the apiserver) and the operator's own
//! checks, so both always agree.

/// A DNS-1123 subdomain: the name rule for ServiceAccounts and Secrets.
pub const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// An AWS IAM role ARN in any partition (`aws`, `aws-cn`, `aws-us-gov`, `aws-iso-b`, ...): a
/// 12-digit account, an optional path and a role name of at most 64 characters. The rule for
/// `sts.provider: AWS` (the default).
pub const ROLE_ARN: &str =
    r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$";
/// A MinIO role ARN, as MinIO prints it at start: partition `minio`, the server's region (empty
/// unless MinIO is configured with one), no account, and a role ID (for OpenID, a URL-safe base64
/// hash of the client ID). The rule for `sts.provider: MinIO`.
pub const MINIO_ROLE_ARN: &str = r"^arn:minio:iam:([A-Za-z][\w-]{0,62})?::role/[\w./-]{1,128}$";
/// A Ceph RGW role ARN: partition `aws`, and in place of the account the tenant (empty for the
/// default tenant) or an RGW account ID, then an optional path and the role name. The rule for
/// `sts.provider: CephRGW`.
pub const CEPH_ROLE_ARN: &str = r"^arn:aws:iam::(\w{1,64})?:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$";
/// A managed policy ARN, customer-managed (account id) or AWS-managed (`aws`).
pub const POLICY_ARN: &str = r"^arn:aws(-[a-z]+)*:iam::([0-9]{12}|aws):policy/[\w+=,.@/-]+$";
/// The STS `RoleSessionName` rule.
pub const SESSION_NAME: &str = r"^[\w+=,.@-]{2,64}$";
/// A Go-style duration of whole hours, minutes and seconds (`90s`, `20m`, `1h30m`).
pub const DURATION: &str = r"^([0-9]+(h|m|s))+$";
/// An AWS region name.
pub const REGION: &str = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$";
/// An absolute path safe to place in a `credential_process` command line.
pub const MOUNT_PATH: &str = r"^/[A-Za-z0-9._/-]*$";
/// A token audience: no white space.
pub const AUDIENCE: &str = r"^\S+$";

/// A regex as a CEL string literal: CEL string literals need the backslashes doubled.
fn cel_literal(pattern: &str) -> String {
    format!("'{}'", pattern.replace('\\', "\\\\"))
}

/// The CEL rule that checks every `policyArns` entry against [`POLICY_ARN`].
pub fn policy_arns_cel_rule() -> String {
    format!("self.all(a, a.matches({}))", cel_literal(POLICY_ARN))
}

/// The spec-level CEL rule that checks `roleArn` against the pattern of the binding's
/// `sts.provider`: [`ROLE_ARN`] unless the binding names MinIO or Ceph RGW. `spec.rs` applies the
/// same choice, so the apiserver and the operator never disagree.
pub fn role_arn_cel_rule() -> String {
    format!(
        "(has(self.sts) && has(self.sts.provider) && self.sts.provider == 'MinIO') ? self.roleArn.matches({minio}) \
         : (has(self.sts) && has(self.sts.provider) && self.sts.provider == 'CephRGW') ? self.roleArn.matches({ceph}) \
         : self.roleArn.matches({aws})",
        minio = cel_literal(MINIO_ROLE_ARN),
        ceph = cel_literal(CEPH_ROLE_ARN),
        aws = cel_literal(ROLE_ARN),
    )
}
