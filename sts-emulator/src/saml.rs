//! `AssumeRoleWithSAML`: SAML providers registered from IdP metadata (as `create-saml-provider`
//! does), and the checks AWS makes of a SAML Response: the signature (by Debian's `xmlsec1`, with
//! the provider's certificates only), the issuer, audience, recipient, expiry, the 5-minute
//! redemption window and the Role attribute naming the requested role and provider.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use crate::state::SamlProvider;
use crate::state::SessionTag;

const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const SAMLP_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const MD_NS: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const DS_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const AWS_SAML_ENDPOINT: &str = "https://signin.aws.amazon.com/saml";
const ATTRIBUTE_PREFIX: &str = "https://aws.amazon.com/SAML/Attributes/";
/// How long after its IssueInstant AWS redeems an assertion.
pub const REDEMPTION_WINDOW_SECONDS: i64 = 300;

/// `POST /_emulator/saml-providers`: what `create-saml-provider` / `update-saml-provider` send.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderUpload {
    pub arn: String,
    pub metadata: String,
}

/// Reads IdP metadata: the entity ID and every signing certificate.
pub fn provider_from_metadata(arn: &str, metadata: &str) -> Result<SamlProvider, String> {
    let doc = roxmltree::Document::parse(metadata).map_err(|e| format!("metadata: {e}"))?;
    let root = doc.root_element();
    if !root.has_tag_name((MD_NS, "EntityDescriptor")) {
        return Err("metadata: the root is not an md:EntityDescriptor".into());
    }
    let entity_id = root
        .attribute("entityID")
        .filter(|e| !e.is_empty())
        .ok_or("metadata: no entityID")?
        .to_string();
    let idp = root
        .children()
        .find(|n| n.has_tag_name((MD_NS, "IDPSSODescriptor")))
        .ok_or("metadata: no IDPSSODescriptor")?;
    let mut certificates = Vec::new();
    for key in idp
        .children()
        .filter(|n| n.has_tag_name((MD_NS, "KeyDescriptor")))
        .filter(|n| n.attribute("use").is_none_or(|u| u == "signing"))
    {
        for cert in key
            .descendants()
            .filter(|n| n.has_tag_name((DS_NS, "X509Certificate")))
        {
            let body: String = cert
                .text()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            BASE64
                .decode(&body)
                .map_err(|_| "metadata: an X509Certificate is not base64")?;
            let lines: Vec<String> = body
                .as_bytes()
                .chunks(64)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            certificates.push(format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            ));
        }
    }
    if certificates.is_empty() {
        return Err("metadata: no signing certificate".into());
    }
    Ok(SamlProvider {
        arn: arn.to_string(),
        entity_id,
        certificates,
    })
}

/// Why an assertion was refused: an AWS error code and message.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Refused {
    Refused {
        code: "InvalidIdentityToken",
        message: message.into(),
    }
}

fn expired(message: impl Into<String>) -> Refused {
    Refused {
        code: "ExpiredTokenException",
        message: message.into(),
    }
}

/// What a verified assertion says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    pub issuer: String,
    pub subject: String,
    pub subject_type: String,
    pub audience: String,
    /// `(role ARN, provider ARN)` pairs of the Role attribute.
    pub roles: Vec<(String, String)>,
    pub session_name: Option<String>,
    pub session_duration: Option<u64>,
    pub tags: Vec<SessionTag>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
}

/// The Response document, decoded; and the same document without its `ds:KeyInfo` elements, so
/// that only the registered certificates can verify it (KeyInfo is outside what is signed).
pub fn decode(encoded: &str) -> Result<(String, String), Refused> {
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|_| invalid("Invalid base64 SAML response"))?;
    let xml = String::from_utf8(bytes).map_err(|_| invalid("Invalid SAML response"))?;
    let doc = roxmltree::Document::parse(&xml).map_err(|_| invalid("Invalid SAML response"))?;
    let mut ranges: Vec<std::ops::Range<usize>> = doc
        .descendants()
        .filter(|n| n.has_tag_name((DS_NS, "KeyInfo")))
        .map(|n| n.range())
        .collect();
    ranges.sort_by_key(|r| std::cmp::Reverse(r.start));
    let mut stripped = xml.clone();
    for range in ranges {
        stripped.replace_range(range, "");
    }
    Ok((xml, stripped))
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    ns: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|n| n.has_tag_name((ns, name)))
}

fn time(value: Option<&str>, what: &str) -> Result<Timestamp, Refused> {
    value
        .and_then(|v| v.parse::<Timestamp>().ok())
        .ok_or_else(|| invalid(format!("{what} is missing or not a dateTime")))
}

/// Checks everything but the signature (see [`verify_signature`]) of `xml` for `provider` at
/// `now`, and reads the claims of its one Assertion.
pub fn check(xml: &str, provider: &SamlProvider, now: Timestamp) -> Result<Claims, Refused> {
    let doc = roxmltree::Document::parse(xml).map_err(|_| invalid("Invalid SAML response"))?;
    let root = doc.root_element();
    if !root.has_tag_name((SAMLP_NS, "Response")) {
        return Err(invalid("The root element is not a samlp:Response"));
    }
    let assertions: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name((SAML_NS, "Assertion")))
        .collect();
    let [assertion] = assertions.as_slice() else {
        return Err(invalid("The response must hold exactly one Assertion"));
    };
    let assertion = *assertion;
    if assertion.parent() != Some(root) {
        return Err(invalid("The Assertion is not a child of the Response"));
    }
    let id = assertion.attribute("ID").unwrap_or_default();
    // The signature must be the Assertion's own and reference it: no other element's signature
    // can vouch for these claims.
    let signature = child(assertion, DS_NS, "Signature")
        .ok_or_else(|| invalid("The Assertion is not signed"))?;
    let reference = signature
        .descendants()
        .find(|n| n.has_tag_name((DS_NS, "Reference")))
        .and_then(|r| r.attribute("URI"));
    if id.is_empty() || reference != Some(&format!("#{id}")) {
        return Err(invalid("The signature does not reference the Assertion"));
    }
    let issuer = child(assertion, SAML_NS, "Issuer")
        .and_then(|n| n.text())
        .unwrap_or_default();
    if issuer != provider.entity_id {
        return Err(invalid(format!(
            "Issuer {issuer:?} does not match the SAML provider's metadata"
        )));
    }
    let issued = time(assertion.attribute("IssueInstant"), "IssueInstant")?;
    if now.as_second() - issued.as_second() > REDEMPTION_WINDOW_SECONDS {
        return Err(expired("The assertion was issued more than 5 minutes ago"));
    }
    let subject = child(assertion, SAML_NS, "Subject")
        .ok_or_else(|| invalid("The Assertion has no Subject"))?;
    let name_id =
        child(subject, SAML_NS, "NameID").ok_or_else(|| invalid("The Subject has no NameID"))?;
    let confirmations: Vec<_> = subject
        .children()
        .filter(|n| n.has_tag_name((SAML_NS, "SubjectConfirmation")))
        .collect();
    let [confirmation] = confirmations.as_slice() else {
        return Err(invalid(
            "The Subject must have exactly one SubjectConfirmation",
        ));
    };
    let data = child(*confirmation, SAML_NS, "SubjectConfirmationData")
        .ok_or_else(|| invalid("The SubjectConfirmation has no data"))?;
    if data.attribute("Recipient") != Some(AWS_SAML_ENDPOINT) {
        return Err(invalid(format!("Recipient must be {AWS_SAML_ENDPOINT}")));
    }
    if time(data.attribute("NotOnOrAfter"), "NotOnOrAfter")? <= now {
        return Err(expired("The assertion has expired (NotOnOrAfter)"));
    }
    let conditions = child(assertion, SAML_NS, "Conditions")
        .ok_or_else(|| invalid("The Assertion has no Conditions"))?;
    if let Some(not_after) = conditions.attribute("NotOnOrAfter")
        && time(Some(not_after), "Conditions NotOnOrAfter")? <= now
    {
        return Err(expired("The assertion has expired (Conditions)"));
    }
    if let Some(not_before) = conditions.attribute("NotBefore")
        && time(Some(not_before), "NotBefore")? > now
    {
        return Err(invalid("The assertion is not valid yet (NotBefore)"));
    }
    let audiences: Vec<&str> = conditions
        .descendants()
        .filter(|n| n.has_tag_name((SAML_NS, "Audience")))
        .filter_map(|n| n.text())
        .collect();
    let audience = audiences
        .iter()
        .find(|a| **a == AWS_SAML_ENDPOINT || **a == "urn:amazon:webservices")
        .ok_or_else(|| invalid("The audience is not https://signin.aws.amazon.com/saml"))?;

    let mut claims = Claims {
        issuer: issuer.to_string(),
        subject: name_id.text().unwrap_or_default().to_string(),
        subject_type: name_id
            .attribute("Format")
            .map(|f| f.rsplit(':').next().unwrap_or(f).to_string())
            .unwrap_or_else(|| "unspecified".into()),
        audience: audience.to_string(),
        ..Claims::default()
    };
    for attribute in assertion
        .descendants()
        .filter(|n| n.has_tag_name((SAML_NS, "Attribute")))
    {
        let Some(name) = attribute
            .attribute("Name")
            .and_then(|n| n.strip_prefix(ATTRIBUTE_PREFIX))
        else {
            continue;
        };
        let values: Vec<String> = attribute
            .children()
            .filter(|n| n.has_tag_name((SAML_NS, "AttributeValue")))
            .map(|n| n.text().unwrap_or_default().to_string())
            .collect();
        match name {
            "Role" => {
                for value in values {
                    let (a, b) = value
                        .split_once(',')
                        .ok_or_else(|| invalid("A Role value is not role_arn,provider_arn"))?;
                    let (role, provider) = if a.contains(":saml-provider/") {
                        (b, a)
                    } else {
                        (a, b)
                    };
                    claims
                        .roles
                        .push((role.trim().to_string(), provider.trim().to_string()));
                }
            }
            "RoleSessionName" => claims.session_name = values.into_iter().next(),
            "SessionDuration" => {
                claims.session_duration = Some(
                    values
                        .first()
                        .and_then(|v| v.parse().ok())
                        .filter(|d| (900..=43200).contains(d))
                        .ok_or_else(|| invalid("SessionDuration must be 900 to 43200"))?,
                );
            }
            "TransitiveTagKeys" => claims.transitive_tag_keys = values,
            "SourceIdentity" => claims.source_identity = values.into_iter().next(),
            other => {
                if let Some(key) = other.strip_prefix("PrincipalTag:") {
                    claims.tags.push(SessionTag {
                        key: key.to_string(),
                        value: values.into_iter().next().unwrap_or_default(),
                    });
                }
            }
        }
    }
    if claims.session_name.is_none() {
        return Err(invalid("The RoleSessionName attribute is missing"));
    }
    Ok(claims)
}

/// SHA-256 of a PEM certificate's DER, hex (how tests name the key that signed).
pub fn certificate_sha256(pem: &str) -> String {
    use sha2::{Digest, Sha256};
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.trim().chars())
        .collect();
    let der = BASE64.decode(body).unwrap_or_default();
    hex::encode(Sha256::digest(der))
}

/// The `xmlsec1` program (`STS_EMULATOR_XMLSEC1`, or `xmlsec1` on the PATH).
pub fn xmlsec1() -> PathBuf {
    std::env::var_os("STS_EMULATOR_XMLSEC1")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("xmlsec1"))
}

/// How `xmlsec1 --verify` judged a document.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Verified with the certificate at this index.
    Valid(usize),
    /// No certificate verifies it.
    Invalid,
    /// `xmlsec1` could not be run.
    Unavailable(String),
}

/// Verifies the Assertion's signature of `stripped` (no KeyInfo) with each of `certificates`
/// (PEM) in turn, by running Debian's `xmlsec1`.
pub async fn verify_signature(stripped: &str, certificates: &[String]) -> Verdict {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return Verdict::Unavailable(e.to_string()),
    };
    let doc = dir.path().join("response.xml");
    if let Err(e) = std::fs::write(&doc, stripped) {
        return Verdict::Unavailable(e.to_string());
    }
    for (i, pem) in certificates.iter().enumerate() {
        let cert = dir.path().join(format!("cert-{i}.pem"));
        if let Err(e) = std::fs::write(&cert, pem) {
            return Verdict::Unavailable(e.to_string());
        }
        let output = tokio::process::Command::new(xmlsec1())
            .arg("--verify")
            .arg("--pubkey-cert-pem")
            .arg(&cert)
            .arg("--id-attr:ID")
            .arg(format!("{SAML_NS}:Assertion"))
            .arg(&doc)
            .output()
            .await;
        match output {
            Ok(out) if out.status.success() => return Verdict::Valid(i),
            Ok(_) => {}
            Err(e) => {
                return Verdict::Unavailable(format!("cannot run {}: {e}", xmlsec1().display()));
            }
        }
    }
    Verdict::Invalid
}

#[cfg(test)]
mod tests {
    use super::*;

    const METADATA: &str = r#"<?xml version="1.0"?><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="urn:idp"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>
    AAEC
    </ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:KeyDescriptor use="encryption"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>AAAA</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor></md:IDPSSODescriptor></md:EntityDescriptor>"#;

    #[test]
    fn metadata_gives_the_entity_and_its_signing_certificates() {
        let p = provider_from_metadata("arn:aws:iam::123456789012:saml-provider/p", METADATA)
            .expect("read");
        assert_eq!(p.entity_id, "urn:idp");
        assert_eq!(
            p.certificates,
            ["-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n"]
        );
        assert!(provider_from_metadata("x", "<a/>").is_err());
    }

    fn response(issued: &str, expires: &str, issuer: &str, extra: &str) -> String {
        format!(
            r##"<samlp:Response xmlns:samlp="{SAMLP_NS}" xmlns:saml="{SAML_NS}"><saml:Assertion ID="_a" IssueInstant="{issued}"><saml:Issuer>{issuer}</saml:Issuer><ds:Signature xmlns:ds="{DS_NS}"><ds:SignedInfo><ds:Reference URI="#_a"></ds:Reference></ds:SignedInfo><ds:KeyInfo>x</ds:KeyInfo></ds:Signature><saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">system:serviceaccount:a:b</saml:NameID><saml:SubjectConfirmation><saml:SubjectConfirmationData NotOnOrAfter="{expires}" Recipient="{AWS_SAML_ENDPOINT}"></saml:SubjectConfirmationData></saml:SubjectConfirmation></saml:Subject><saml:Conditions><saml:AudienceRestriction><saml:Audience>{AWS_SAML_ENDPOINT}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AttributeStatement><saml:Attribute Name="{ATTRIBUTE_PREFIX}Role"><saml:AttributeValue>arn:aws:iam::123456789012:saml-provider/p,arn:aws:iam::123456789012:role/r</saml:AttributeValue></saml:Attribute><saml:Attribute Name="{ATTRIBUTE_PREFIX}RoleSessionName"><saml:AttributeValue>a.b</saml:AttributeValue></saml:Attribute>{extra}</saml:AttributeStatement></saml:Assertion></samlp:Response>"##
        )
    }

    #[test]
    fn claims_are_read_and_every_rule_enforced() {
        let provider = SamlProvider {
            arn: "arn:aws:iam::123456789012:saml-provider/p".into(),
            entity_id: "urn:idp".into(),
            certificates: vec![],
        };
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().expect("time");
        let tag = format!(
            r#"<saml:Attribute Name="{ATTRIBUTE_PREFIX}PrincipalTag:team"><saml:AttributeValue>x</saml:AttributeValue></saml:Attribute>"#
        );
        let ok = response(
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:05:00Z",
            "urn:idp",
            &tag,
        );
        let claims = check(&ok, &provider, now).expect("valid");
        assert_eq!(claims.subject, "system:serviceaccount:a:b");
        assert_eq!(claims.subject_type, "persistent");
        assert_eq!(
            claims.roles,
            [(
                "arn:aws:iam::123456789012:role/r".to_string(),
                "arn:aws:iam::123456789012:saml-provider/p".to_string()
            )]
        );
        assert_eq!(claims.tags[0].key, "team");
        let (_, stripped) = decode(&BASE64.encode(&ok)).expect("decoded");
        assert!(!stripped.contains("KeyInfo") && stripped.contains("<ds:SignedInfo>"));

        let code =
            |xml: &str, at: Timestamp| check(xml, &provider, at).map(|_| ()).map_err(|r| r.code);
        let wrong_issuer = response(
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:05:00Z",
            "urn:other",
            "",
        );
        assert_eq!(code(&wrong_issuer, now), Err("InvalidIdentityToken"));
        let late: Timestamp = "2026-01-01T00:05:00Z".parse().expect("time");
        assert_eq!(code(&ok, late), Err("ExpiredTokenException"));
        let long_lived = response(
            "2026-01-01T00:00:00Z",
            "2026-01-01T01:00:00Z",
            "urn:idp",
            "",
        );
        let after_window: Timestamp = "2026-01-01T00:05:01Z".parse().expect("time");
        assert_eq!(
            code(&long_lived, after_window),
            Err("ExpiredTokenException")
        );
        let recipient = ok.replace(
            &format!("Recipient=\"{AWS_SAML_ENDPOINT}\""),
            "Recipient=\"https://evil\"",
        );
        assert_eq!(code(&recipient, now), Err("InvalidIdentityToken"));
        let audience = ok.replace(
            &format!("<saml:Audience>{AWS_SAML_ENDPOINT}"),
            "<saml:Audience>urn:evil",
        );
        assert_eq!(code(&audience, now), Err("InvalidIdentityToken"));
        let unreferenced = ok.replace("URI=\"#_a\"", "URI=\"#_b\"");
        assert_eq!(code(&unreferenced, now), Err("InvalidIdentityToken"));
    }
}
