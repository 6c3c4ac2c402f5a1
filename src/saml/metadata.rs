//! The IdP metadata document for `aws iam create-saml-provider` / `update-saml-provider`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::xml::{attribute, text};

/// Where the metadata says browsers sign in. podcreds signs no browser in (it mints assertions
/// for its own STS calls), but the metadata schema requires one; `.invalid` never resolves.
pub const SSO_LOCATION: &str = "https://podcreds.invalid/saml/sso";

/// The metadata of IdP `entity_id` announcing every certificate in `certificates` (DER) as a
/// signing key. Line breaks and indentation are for people: nothing here is signed.
pub fn idp_metadata(entity_id: &str, certificates: &[&[u8]]) -> String {
    let keys: String = certificates
        .iter()
        .map(|der| {
            format!(
                "    <md:KeyDescriptor use=\"signing\">\n      <ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">\n        <ds:X509Data>\n          <ds:X509Certificate>{}</ds:X509Certificate>\n        </ds:X509Data>\n      </ds:KeyInfo>\n    </md:KeyDescriptor>\n",
                text(&BASE64.encode(der))
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{}\">\n  <md:IDPSSODescriptor WantAuthnRequestsSigned=\"false\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\n{keys}    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>\n    <md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{SSO_LOCATION}\"/>\n  </md:IDPSSODescriptor>\n</md:EntityDescriptor>\n",
        attribute(entity_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_lists_every_certificate_for_signing() {
        let doc = idp_metadata("urn:x&\"y", &[b"one", b"two"]);
        assert!(doc.contains("entityID=\"urn:x&amp;&quot;y\""));
        assert_eq!(doc.matches("<md:KeyDescriptor use=\"signing\">").count(), 2);
        assert!(doc.contains(&format!(
            "<ds:X509Certificate>{}</ds:X509Certificate>",
            BASE64.encode(b"two")
        )));
    }
}
