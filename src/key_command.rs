//! The key commands: one rotation (`add-next`, `promote`, `retire`) for both key rings podcreds
//! keeps (`podcreds saml-key`, `podcreds rolesanywhere-ca`), and what the admin uploads to AWS
//! after each step: the SAML metadata, or the Roles Anywhere trust anchor's CA bundle
//! (`podcreds rolesanywhere trust-anchor`).

use crate::keyring::{KeyProfile, KeyRing, KeySecret, StoreError};

/// One step of a key rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationStep {
    /// A next key, announced (the admin uploads it), not signing yet.
    AddNext,
    /// The next key signs from now on; the old certificate stays announced.
    Promote,
    /// The previous certificate is no longer announced (the admin uploads once more).
    Retire,
}

/// The key Secret `namespace/name` of `profile`, through the kubeconfig's cluster.
pub async fn key_secret(
    namespace: &str,
    name: &str,
    profile: &'static KeyProfile,
) -> Result<KeySecret, kube::Error> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = kube::Client::try_default().await?;
    Ok(KeySecret::new(client, namespace, name, profile))
}

/// Applies `step` to the ring in `secret`.
pub async fn rotate(secret: &KeySecret, step: RotationStep) -> Result<KeyRing, StoreError> {
    match step {
        RotationStep::AddNext => secret.update(|r, y| r.add_next(y)).await,
        RotationStep::Promote => secret.update(|r, _| r.promote()).await,
        RotationStep::Retire => secret.update(|r, _| r.retire()).await,
    }
}

/// What the admin does after `step` on a ring of `profile`, whose upload is `upload`.
pub fn after_step(profile: &KeyProfile, step: RotationStep, upload: &str) -> String {
    let command = profile.command;
    match step {
        RotationStep::AddNext => format!("{upload}, then run `{command} promote`"),
        RotationStep::Promote => format!(
            "the operator signs with the new key within a minute; once nothing signed with the old one is in flight, run `{command} retire`"
        ),
        RotationStep::Retire => upload.to_string(),
    }
}

/// One line for the admin after a step: the signing key and how many certificates AWS must know.
pub fn step_summary(ring: &KeyRing, next: &str) -> String {
    format!(
        "done; signing certificate sha256 {}; {} certificate(s) announced; next: {next}",
        ring.active.fingerprint(),
        ring.announced_certificates().len()
    )
}

/// The trust anchor's CA bundle: every certificate of the ring AWS must trust, PEM.
pub fn trust_anchor_bundle(ring: &KeyRing) -> String {
    use base64::Engine;
    ring.announced_certificates()
        .iter()
        .map(|der| {
            let body = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .filter_map(|c| std::str::from_utf8(c).ok())
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            )
        })
        .collect()
}

/// The `--source` document of `aws rolesanywhere create-trust-anchor` / `update-trust-anchor`
/// for the ring's bundle.
pub fn trust_anchor_source(ring: &KeyRing) -> serde_json::Value {
    serde_json::json!({
        "sourceType": "CERTIFICATE_BUNDLE",
        "sourceData": { "x509CertificateData": trust_anchor_bundle(ring) },
    })
}

/// How to create the trust anchor, or update `trust_anchor_arn`'s, with the bundle.
pub fn trust_anchor_guide(ring: &KeyRing, trust_anchor_arn: Option<&str>) -> String {
    let fingerprints: Vec<String> = ring
        .announced_certificates()
        .iter()
        .map(|der| crate::keyring::certificate_fingerprint(der))
        .collect();
    let update = match trust_anchor_arn {
        Some(arn) => format!(
            "aws rolesanywhere update-trust-anchor --region {} --trust-anchor-id {} --source file://source.json",
            arn.split(':').nth(3).unwrap_or_default(),
            arn.rsplit('/').next().unwrap_or(arn)
        ),
        None => {
            "aws rolesanywhere update-trust-anchor --trust-anchor-id <id> --source file://source.json"
                .to_string()
        }
    };
    format!(
        "podcreds' workload CA: {} certificate(s) in the bundle (sha256 {}; signing: {})\n\
         save the source document:  podcreds rolesanywhere trust-anchor -o source-json > source.json\n\
         create the trust anchor:   aws rolesanywhere create-trust-anchor --name podcreds --enabled --source file://source.json\n\
         or update it (after every `podcreds rolesanywhere-ca` step): {update}",
        fingerprints.len(),
        fingerprints.join(", "),
        ring.active.fingerprint(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{ROLES_ANYWHERE_CA, pem_certificates_der};

    #[test]
    fn the_bundle_holds_every_announced_certificate() {
        let mut ring = KeyRing::generate(&ROLES_ANYWHERE_CA, 2026).unwrap();
        assert_eq!(pem_certificates_der(&trust_anchor_bundle(&ring)).len(), 1);
        ring.add_next(2026).unwrap();
        let bundle = trust_anchor_bundle(&ring);
        let ders = pem_certificates_der(&bundle);
        assert_eq!(ders.len(), 2);
        assert_eq!(ders[0], ring.active.certificate_der());
        // Lines of 64 characters, as PEM readers expect.
        assert!(
            bundle
                .lines()
                .all(|l| l.len() <= 64 || l.starts_with("-----"))
        );
        let source = trust_anchor_source(&ring);
        assert_eq!(source["sourceType"], "CERTIFICATE_BUNDLE");
        assert_eq!(source["sourceData"]["x509CertificateData"], bundle.as_str());
        let guide = trust_anchor_guide(
            &ring,
            Some("arn:aws:rolesanywhere:eu-west-1:111122223333:trust-anchor/abc"),
        );
        assert!(
            guide.contains("--region eu-west-1 --trust-anchor-id abc"),
            "{guide}"
        );
        assert!(guide.contains("2 certificate(s)"));
    }
}
