//! podcreds as a SAML 2.0 identity provider for STS `AssumeRoleWithSAML`: the signed Response for
//! one exchange ([`assertion`]) and the IdP metadata IAM is given ([`metadata`]). The signing keys
//! are a [`crate::keyring`] of profile [`crate::keyring::SAML`].
//!
//! Everything signed is written directly in exclusive-canonical form (XML-DSig with
//! `http://www.w3.org/2001/10/xml-exc-c14n#`): no white space between elements, each namespace
//! declared on the element that uses it first, attributes in canonical order, text and attribute
//! values escaped as canonicalisation would. So the bytes digested and signed are the bytes sent,
//! and no canonicaliser is needed.

pub mod assertion;
pub mod metadata;
pub mod xml;

/// Audience and Recipient of every assertion: AWS's SAML endpoint.
pub const AWS_SAML_ENDPOINT: &str = "https://signin.aws.amazon.com/saml";
/// Default IdP entity ID (Issuer), when the operator is not given one.
pub const DEFAULT_ENTITY_ID: &str = "urn:podcreds:saml-idp";
/// Default name of the Secret holding the signing keys, in the operator's namespace.
pub const DEFAULT_KEY_SECRET: &str = "podcreds-saml-signing-key";
/// How long a minted assertion may be redeemed (its `NotOnOrAfter`, ahead of issue).
pub const ASSERTION_LIFETIME_SECONDS: i64 = 300;

/// The operator's SAML identity provider settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamlSettings {
    /// The IdP entity ID: the assertions' Issuer and the metadata's `entityID`.
    pub entity_id: String,
    /// The IAM SAML provider ARN for bindings whose `spec.saml` names none.
    pub default_provider_arn: Option<String>,
    /// Namespace of the key Secret (the operator's own); `None` disables SAML.
    pub key_namespace: Option<String>,
    /// Name of the key Secret.
    pub key_secret: String,
}

impl Default for SamlSettings {
    fn default() -> Self {
        Self {
            entity_id: DEFAULT_ENTITY_ID.into(),
            default_provider_arn: None,
            key_namespace: None,
            key_secret: DEFAULT_KEY_SECRET.into(),
        }
    }
}
