//! Validation patterns shared by the CRD schema (enforced by the apiserver) and the operator's own
//! checks, so both always agree.

/// A DNS-1123 subdomain: the name rule for ServiceAccounts and Secrets.
pub const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// An IAM role ARN in any partition (`aws`, `aws-cn`, `aws-us-gov`, `aws-iso-b`, ...), with an
/// optional path and a role name of at most 64 characters.
pub const ROLE_ARN: &str =
    r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$";
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

/// The CEL rule that checks every `policyArns` entry against [`POLICY_ARN`].
pub fn policy_arns_cel_rule() -> String {
    // CEL string literals need the regex's backslashes doubled.
    format!(
        "self.all(a, a.matches('{}'))",
        POLICY_ARN.replace('\\', "\\\\")
    )
}
