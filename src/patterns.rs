//! Validation patterns shared by the CRD schema (enforced by the apiserver) and the operator's own
//! checks, so both always agree.

/// A DNS-1123 subdomain: the name rule for ServiceAccounts and Secrets.
pub const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A DNS-1123 label: the name rule for namespaces.
pub const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
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
/// An IAM SAML provider ARN in any partition: a 12-digit account and the provider's name.
pub const SAML_PROVIDER_ARN: &str =
    r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:saml-provider/[\w.-]{1,128}$";
/// An IAM Roles Anywhere trust anchor ARN in any partition.
pub const TRUST_ANCHOR_ARN: &str = r"^arn:aws(-[a-z]+)*:rolesanywhere:[a-z]{2}(-[a-z]+)+-[0-9]+:[0-9]{12}:trust-anchor/[0-9a-f-]{1,64}$";
/// An IAM Roles Anywhere profile ARN in any partition.
pub const PROFILE_ARN: &str = r"^arn:aws(-[a-z]+)*:rolesanywhere:[a-z]{2}(-[a-z]+)+-[0-9]+:[0-9]{12}:profile/[0-9a-f-]{1,64}$";
/// A managed policy ARN, customer-managed (account id) or AWS-managed (`aws`).
pub const POLICY_ARN: &str = r"^arn:aws(-[a-z]+)*:iam::([0-9]{12}|aws):policy/[\w+=,.@/-]+$";
/// The STS `RoleSessionName` rule.
/// An `allowedNamespaces` entry of an `AWSCredentialSource`: a namespace name, `*`, or a prefix
/// and `*`.
pub const NAMESPACE_PATTERN: &str = r"^(\*|[a-z0-9][-a-z0-9]{0,62}\*?)$";
pub const SESSION_NAME: &str = r"^[\w+=,.@-]{2,64}$";
/// A Go-style duration of whole hours, minutes and seconds (`90s`, `20m`, `1h30m`).
pub const DURATION: &str = r"^([0-9]+(h|m|s))+$";
/// An AWS region name.
pub const REGION: &str = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$";
/// An absolute path safe to place in a `credential_process` command line.
pub const MOUNT_PATH: &str = r"^/[A-Za-z0-9._/-]*$";
/// A token audience: no white space.
pub const AUDIENCE: &str = r"^\S+$";
/// The STS `ExternalId` rule, with its length (2 to 1224) checked apart: RE2, which CEL and the
/// apiserver use, takes no repeat count over 1000.
pub const EXTERNAL_ID: &str = r"^[\w+=,.@:/-]{2,}$";
/// The STS `SourceIdentity` rule (its character set has no `:`, so no value can start with the
/// reserved `aws:` either).
pub const SOURCE_IDENTITY: &str = r"^[\w+=,.@-]{2,64}$";
/// A session tag key: the ASCII part of what STS accepts (letters, digits, spaces and `_.:/=+@-`).
pub const TAG_KEY: &str = r"^[\w .:/=+@-]{1,128}$";
/// A session tag value: as a key, possibly empty, at most 256 characters.
pub const TAG_VALUE: &str = r"^[\w .:/=+@-]{0,256}$";

/// Most `AssumeRole` hops a binding may chain after its first exchange.
pub const MAX_CHAIN_HOPS: usize = 5;
/// Most session tags one STS call takes.
pub const MAX_SESSION_TAGS: usize = 50;
/// Most characters of one hop's inline session policy and policy ARNs together.
pub const MAX_SESSION_POLICY_CHARS: usize = 2048;
/// Longest session STS grants a role chain.
pub const MAX_CHAINED_SESSION_SECONDS: i32 = 3600;
/// Prefix of the session tag keys only podcreds sets (`kubernetes-namespace`, ...); STS compares
/// keys without regard to case, and so does every check of this prefix.
pub const RESERVED_TAG_PREFIX: &str = "kubernetes-";
/// Prefix STS reserves for its own tag keys.
pub const AWS_TAG_PREFIX: &str = "aws:";

/// A regex as a CEL string literal: CEL string literals need the backslashes doubled.
fn cel_literal(pattern: &str) -> String {
    format!("'{}'", pattern.replace('\\', "\\\\"))
}

/// The CEL rule that checks every `policyArns` entry against [`POLICY_ARN`].
pub fn policy_arns_cel_rule() -> String {
    format!("self.all(a, a.matches({}))", cel_literal(POLICY_ARN))
}

/// The CEL rule on a hop's `tags`: every key and value of the STS form, no key in a reserved
/// namespace (`aws:`, or `kubernetes-`, which only podcreds sets), keys unique without regard to
/// case (as STS compares them).
pub fn session_tags_cel_rule() -> String {
    format!(
        "self.all(t, t.key.matches({key}) && t.value.matches({value}) \
         && !t.key.lowerAscii().startsWith('{aws}') && !t.key.lowerAscii().startsWith('{reserved}') \
         && self.exists_one(u, u.key.lowerAscii() == t.key.lowerAscii()))",
        key = cel_literal(TAG_KEY),
        value = cel_literal(TAG_VALUE),
        aws = AWS_TAG_PREFIX,
        reserved = RESERVED_TAG_PREFIX,
    )
}

/// The CEL rule on the `roleChain` list that lets only the first hop set `sourceIdentity` (it
/// then persists down the chain). Written out per index: CEL has no indexed loops, and the list
/// holds at most [`MAX_CHAIN_HOPS`] hops.
pub fn chain_source_identity_cel_rule() -> String {
    (1..MAX_CHAIN_HOPS)
        .map(|later| format!("(size(self) <= {later} || !has(self[{later}].sourceIdentity))"))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// The CEL rule on the `roleChain` list that keeps every hop from setting a tag an earlier hop
/// made transitive (STS refuses to override an inherited transitive tag).
pub fn chain_transitive_tags_cel_rule() -> String {
    let mut clauses = Vec::new();
    for later in 1..MAX_CHAIN_HOPS {
        for earlier in 0..later {
            clauses.push(format!(
                "(size(self) <= {later} || !has(self[{earlier}].transitiveTagKeys) || !has(self[{later}].tags) \
                 || !self[{later}].tags.exists(t, self[{earlier}].transitiveTagKeys.exists(k, k.lowerAscii() == t.key.lowerAscii())))"
            ));
        }
    }
    clauses.join(" && ")
}

/// The spec-level CEL rule that checks `roleArn` against the pattern of the binding's
/// `sts.provider`: [`ROLE_ARN`] unless the binding names MinIO or Ceph RGW. `spec.rs` applies the
/// same choice, so the apiserver and the operator never disagree.
pub fn role_arn_cel_rule() -> String {
    format!(
        "!has(self.roleArn) || ((has(self.sts) && has(self.sts.provider) && self.sts.provider == 'MinIO') ? self.roleArn.matches({minio}) \
         : (has(self.sts) && has(self.sts.provider) && self.sts.provider == 'CephRGW') ? self.roleArn.matches({ceph}) \
         : self.roleArn.matches({aws}))",
        minio = cel_literal(MINIO_ROLE_ARN),
        ceph = cel_literal(CEPH_ROLE_ARN),
        aws = cel_literal(ROLE_ARN),
    )
}

/// A container registry host as image references name it: a lower-case DNS name or IPv4
/// address, with an optional port (`123456789012.dkr.ecr.eu-west-1.amazonaws.com`,
/// `registry.test:5000`).
pub const REGISTRY_HOST: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]{1,5})?$";
/// An Amazon ECR private registry host; the second group is its region.
pub const ECR_REGISTRY: &str =
    r"^([0-9]{12})\.dkr\.ecr(?:-fips)?\.([a-z]{2}(?:-[a-z]+)+-[0-9]+)\.amazonaws\.com(?:\.cn)?$";
/// Most registries one binding's image-pull Secret names.
pub const MAX_PULL_REGISTRIES: usize = 10;
