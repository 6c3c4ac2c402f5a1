//! One signed SAML Response for `AssumeRoleWithSAML`: an Assertion about one ServiceAccount,
//! signed (enveloped XML-DSig, RSA-SHA256, exclusive canonicalisation) with the active key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::xml::{element, text_element};
use super::{ASSERTION_LIFETIME_SECONDS, AWS_SAML_ENDPOINT};
use crate::keyring::{KeyError, SigningKey};

const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const SAMLP_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const DS_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const UNSPECIFIED_CONTEXT: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified";
const ATTRIBUTE_PREFIX: &str = "https://aws.amazon.com/SAML/Attributes/";

/// What one assertion says.
#[derive(Clone, Debug)]
pub struct AssertionClaims<'a> {
    /// The IdP entity ID.
    pub issuer: &'a str,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub subject: &'a str,
    pub role_arn: &'a str,
    pub provider_arn: &'a str,
    pub session_name: &'a str,
    pub session_duration_seconds: i32,
    pub source_identity: Option<&'a str>,
    pub tags: &'a [(String, String)],
    pub transitive_tag_keys: &'a [String],
}

/// The subject (NameID, `SAML:sub`) of a ServiceAccount.
pub fn subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// A fresh XML ID (an NCName): `_` and 32 random hex digits.
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("_{}", hex::encode(bytes))
}

fn instant(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// The `<saml:Attribute>` elements, in the order AWS documents them.
fn attributes(claims: &AssertionClaims<'_>) -> String {
    let one = |name: &str, values: &[&str]| {
        let values: String = values
            .iter()
            .map(|v| text_element("saml:AttributeValue", &[], v))
            .collect();
        element(
            "saml:Attribute",
            &[("Name", &format!("{ATTRIBUTE_PREFIX}{name}"))],
            &values,
        )
    };
    let mut out = one(
        "Role",
        &[&format!("{},{}", claims.role_arn, claims.provider_arn)],
    );
    out.push_str(&one("RoleSessionName", &[claims.session_name]));
    out.push_str(&one(
        "SessionDuration",
        &[&claims.session_duration_seconds.to_string()],
    ));
    for (key, value) in claims.tags {
        out.push_str(&one(&format!("PrincipalTag:{key}"), &[value]));
    }
    if !claims.transitive_tag_keys.is_empty() {
        let keys: Vec<&str> = claims
            .transitive_tag_keys
            .iter()
            .map(String::as_str)
            .collect();
        out.push_str(&one("TransitiveTagKeys", &keys));
    }
    if let Some(identity) = claims.source_identity {
        out.push_str(&one("SourceIdentity", &[identity]));
    }
    out
}

/// The Assertion in canonical form, split where the Signature goes (after the Issuer).
fn assertion_parts(claims: &AssertionClaims<'_>, id: &str, now: Timestamp) -> (String, String) {
    let issued = instant(now);
    let not_before = instant(now - SignedDuration::from_secs(60));
    let expires = instant(now + SignedDuration::from_secs(ASSERTION_LIFETIME_SECONDS));
    let head = format!(
        "<saml:Assertion xmlns:saml=\"{SAML_NS}\" ID=\"{id}\" IssueInstant=\"{issued}\" Version=\"2.0\">{}",
        text_element("saml:Issuer", &[], claims.issuer)
    );
    let subject = element(
        "saml:Subject",
        &[],
        &format!(
            "{}{}",
            text_element("saml:NameID", &[("Format", PERSISTENT)], claims.subject),
            element(
                "saml:SubjectConfirmation",
                &[("Method", BEARER)],
                &element(
                    "saml:SubjectConfirmationData",
                    &[("NotOnOrAfter", &expires), ("Recipient", AWS_SAML_ENDPOINT)],
                    "",
                ),
            )
        ),
    );
    let conditions = element(
        "saml:Conditions",
        &[("NotBefore", &not_before), ("NotOnOrAfter", &expires)],
        &element(
            "saml:AudienceRestriction",
            &[],
            &text_element("saml:Audience", &[], AWS_SAML_ENDPOINT),
        ),
    );
    let authn = element(
        "saml:AuthnStatement",
        &[("AuthnInstant", &issued), ("SessionIndex", id)],
        &element(
            "saml:AuthnContext",
            &[],
            &text_element("saml:AuthnContextClassRef", &[], UNSPECIFIED_CONTEXT),
        ),
    );
    let statement = element("saml:AttributeStatement", &[], &attributes(claims));
    (
        head,
        format!("{subject}{conditions}{authn}{statement}</saml:Assertion>"),
    )
}

/// The canonical `<ds:SignedInfo>` referencing `#id` with the digest of the assertion.
fn signed_info(id: &str, digest: &[u8]) -> String {
    let algorithm = |name: &str, uri: &str| element(name, &[("Algorithm", uri)], "");
    let transforms = element(
        "ds:Transforms",
        &[],
        &format!(
            "{}{}",
            algorithm("ds:Transform", ENVELOPED),
            algorithm("ds:Transform", EXC_C14N)
        ),
    );
    let reference = element(
        "ds:Reference",
        &[("URI", &format!("#{id}"))],
        &format!(
            "{transforms}{}{}",
            algorithm("ds:DigestMethod", SHA256),
            text_element("ds:DigestValue", &[], &BASE64.encode(digest))
        ),
    );
    format!(
        "<ds:SignedInfo xmlns:ds=\"{DS_NS}\">{}{}{reference}</ds:SignedInfo>",
        algorithm("ds:CanonicalizationMethod", EXC_C14N),
        algorithm("ds:SignatureMethod", RSA_SHA256),
    )
}

/// The signed Response XML for `claims`, issued `now`.
pub fn signed_response(
    claims: &AssertionClaims<'_>,
    key: &SigningKey,
    now: Timestamp,
) -> Result<String, KeyError> {
    let assertion_id = new_id();
    let (head, rest) = assertion_parts(claims, &assertion_id, now);
    let digest = Sha256::digest(format!("{head}{rest}").as_bytes());
    let info = signed_info(&assertion_id, &digest);
    let signature_value = BASE64.encode(key.sign(info.as_bytes())?);
    let signature = format!(
        "<ds:Signature xmlns:ds=\"{DS_NS}\">{info}{}{}</ds:Signature>",
        text_element("ds:SignatureValue", &[], &signature_value),
        element(
            "ds:KeyInfo",
            &[],
            &element(
                "ds:X509Data",
                &[],
                &text_element(
                    "ds:X509Certificate",
                    &[],
                    &BASE64.encode(key.certificate_der())
                ),
            ),
        ),
    );
    let issued = instant(now);
    Ok(format!(
        "<samlp:Response xmlns:samlp=\"{SAMLP_NS}\" xmlns:saml=\"{SAML_NS}\" Destination=\"{AWS_SAML_ENDPOINT}\" ID=\"{}\" IssueInstant=\"{issued}\" Version=\"2.0\">{}{}{head}{signature}{rest}</samlp:Response>",
        new_id(),
        text_element("saml:Issuer", &[], claims.issuer),
        element(
            "samlp:Status",
            &[],
            &element("samlp:StatusCode", &[("Value", SUCCESS)], "")
        ),
    ))
}

/// The `SAMLAssertion` parameter: the base64 of the signed Response. Held as a secret: whoever
/// has it can redeem it until it expires.
pub fn encoded_response(
    claims: &AssertionClaims<'_>,
    key: &SigningKey,
    now: Timestamp,
) -> Result<SecretString, KeyError> {
    Ok(SecretString::from(
        BASE64.encode(signed_response(claims, key, now)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{KeyRing, SAML};

    fn claims<'a>(tags: &'a [(String, String)], keys: &'a [String]) -> AssertionClaims<'a> {
        AssertionClaims {
            issuer: "urn:podcreds:test",
            subject: "system:serviceaccount:ns:app",
            role_arn: "arn:aws:iam::123456789012:role/r",
            provider_arn: "arn:aws:iam::123456789012:saml-provider/p",
            session_name: "ns.b",
            session_duration_seconds: 3600,
            source_identity: Some("alice"),
            tags,
            transitive_tag_keys: keys,
        }
    }

    #[test]
    fn the_assertion_names_the_role_pair_and_the_aws_endpoint() {
        let tags = vec![("team".to_string(), "a b".to_string())];
        let keys = vec!["team".to_string()];
        let c = claims(&tags, &keys);
        let now = Timestamp::from_second(1_800_000_000).expect("time");
        let (head, rest) = assertion_parts(&c, "_1", now);
        let whole = format!("{head}{rest}");
        assert!(whole.starts_with("<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_1\" IssueInstant=\"2027-01-15T08:00:00Z\" Version=\"2.0\"><saml:Issuer>urn:podcreds:test</saml:Issuer><saml:Subject>"), "{whole}");
        assert!(whole.contains("<saml:NameID Format=\"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent\">system:serviceaccount:ns:app</saml:NameID>"));
        assert!(whole.contains("<saml:SubjectConfirmationData NotOnOrAfter=\"2027-01-15T08:05:00Z\" Recipient=\"https://signin.aws.amazon.com/saml\"></saml:SubjectConfirmationData>"));
        assert!(
            whole.contains("<saml:Audience>https://signin.aws.amazon.com/saml</saml:Audience>")
        );
        assert!(whole.contains("<saml:AttributeValue>arn:aws:iam::123456789012:role/r,arn:aws:iam::123456789012:saml-provider/p</saml:AttributeValue>"));
        assert!(whole.contains("<saml:Attribute Name=\"https://aws.amazon.com/SAML/Attributes/PrincipalTag:team\"><saml:AttributeValue>a b</saml:AttributeValue></saml:Attribute>"));
        assert!(
            whole.contains("TransitiveTagKeys\"><saml:AttributeValue>team</saml:AttributeValue>")
        );
        assert!(
            whole.contains("SourceIdentity\"><saml:AttributeValue>alice</saml:AttributeValue>")
        );
        // Canonical form: nothing between elements, no empty-element tags.
        assert!(!whole.contains("> <") && !whole.contains(">\n") && !whole.contains("/>"));
    }

    #[test]
    fn hostile_values_cannot_change_the_document() {
        let tags = vec![(
            "k".to_string(),
            "</saml:AttributeValue><x a=\"1\">&'".to_string(),
        )];
        let mut c = claims(&tags, &[]);
        c.issuer = "urn:<evil>&\"'";
        c.session_name = "a\"b<c>";
        let (head, rest) = assertion_parts(&c, "_1", Timestamp::now());
        let whole = format!("{head}{rest}");
        assert!(whole.contains("<saml:Issuer>urn:&lt;evil&gt;&amp;\"'</saml:Issuer>"));
        assert!(whole.contains(
            "<saml:AttributeValue>&lt;/saml:AttributeValue&gt;&lt;x a=\"1\"&gt;&amp;'</saml:AttributeValue>"
        ));
        assert!(whole.contains("<saml:AttributeValue>a\"b&lt;c&gt;</saml:AttributeValue>"));
        assert_eq!(whole.matches("<saml:AttributeValue>").count(), 5);
    }

    #[test]
    fn the_signature_covers_the_assertion_as_sent() {
        let ring = KeyRing::generate(&SAML, 2026).expect("key");
        let c = claims(&[], &[]);
        let response = signed_response(&c, &ring.active, Timestamp::now()).expect("signed");
        // Removing the enveloped Signature gives back exactly the bytes digested.
        let start = response.find("<saml:Assertion").expect("assertion");
        let end = response.find("</saml:Assertion>").expect("end") + "</saml:Assertion>".len();
        let assertion = &response[start..end];
        let sig_start = assertion.find("<ds:Signature ").expect("signature");
        let sig_end = assertion.find("</ds:Signature>").expect("end") + "</ds:Signature>".len();
        let unsigned = format!("{}{}", &assertion[..sig_start], &assertion[sig_end..]);
        let digest = BASE64.encode(Sha256::digest(unsigned.as_bytes()));
        assert!(response.contains(&format!("<ds:DigestValue>{digest}</ds:DigestValue>")));
        let info_start = response.find("<ds:SignedInfo").expect("info");
        let info_end = response.find("</ds:SignedInfo>").expect("end") + "</ds:SignedInfo>".len();
        let info = &response[info_start..info_end];
        let value = &response[response.find("<ds:SignatureValue>").expect("value") + 19
            ..response.find("</ds:SignatureValue>").expect("end")];
        assert_eq!(
            BASE64.encode(ring.active.sign(info.as_bytes()).expect("sign")),
            value,
            "PKCS#1 v1.5 signatures are deterministic"
        );
    }
}
