//! What a signing certificate becomes in the session, by the Roles Anywhere user guide (trust
//! model page, with a profile's default attribute mapping):
//!
//! - principal tags `x509Subject/<RDN>` and `x509Issuer/<RDN>` for the RDNs of the subject and
//!   the issuer (`C`, `CN`, `L`, `O`, `OU`, `ST`: the ones the guide maps), several values of one
//!   RDN joined with `/` in certificate order; `x509SAN/DNS` and `x509SAN/URI` for the first DNS
//!   name and URI of the subject alternative names, and `x509SAN/Name/<RDN>` for the RDNs of the
//!   first directory name. A value STS would not take as a session tag fails the request
//!   ("Some attributes failed to be mapped into session tags", as AWS answers);
//! - the source identity `CN=<subject CN>` when the CN has at most 61 characters, the bare CN
//!   when it has 62 to 64, `ID=<serial in hex, left-padded to an even length>` without a CN
//!   ("Source identity rules"), which STS's own rules (`[\w+=,.@-]`, 2 to 64 characters) must
//!   then accept;
//! - the role session name: the hex-encoded serial number of the certificate, unless the
//!   request names one and its profile accepts that.

use x509_parser::oid_registry::{
    OID_X509_COMMON_NAME, OID_X509_COUNTRY_NAME, OID_X509_LOCALITY_NAME,
    OID_X509_ORGANIZATION_NAME, OID_X509_ORGANIZATIONAL_UNIT, OID_X509_STATE_OR_PROVINCE_NAME,
};
use x509_parser::prelude::*;

use crate::params::{check_source_identity, tag_text_ok};
use crate::state::SessionTag;

/// The RDNs Roles Anywhere maps, with the names its tags use.
fn rdn_name(oid: &x509_parser::der_parser::Oid<'_>) -> Option<&'static str> {
    [
        (OID_X509_COUNTRY_NAME, "C"),
        (OID_X509_COMMON_NAME, "CN"),
        (OID_X509_LOCALITY_NAME, "L"),
        (OID_X509_ORGANIZATION_NAME, "O"),
        (OID_X509_ORGANIZATIONAL_UNIT, "OU"),
        (OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
    ]
    .into_iter()
    .find(|(o, _)| o == oid)
    .map(|(_, name)| name)
}

/// The mapped RDNs of `name`, in first-appearance order, several values joined by `/`; an RDN
/// whose value is not a string goes to `unreadable`.
fn rdns(name: &X509Name<'_>, unreadable: &mut Vec<String>) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for attribute in name.iter_attributes() {
        let Some(key) = rdn_name(attribute.attr_type()) else {
            continue;
        };
        let Ok(value) = attribute.as_str() else {
            unreadable.push(key.to_string());
            continue;
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, joined)) => {
                joined.push('/');
                joined.push_str(value);
            }
            None => out.push((key, value.to_string())),
        }
    }
    out
}

/// The attributes that could not become session tags, by certificate field.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Unmapped {
    pub issuer: Vec<String>,
    pub subject: Vec<String>,
    pub san: Vec<String>,
}

impl Unmapped {
    fn is_empty(&self) -> bool {
        self.issuer.is_empty() && self.subject.is_empty() && self.san.is_empty()
    }

    /// AWS's words (as its answers quote them).
    pub fn message(&self, role_arn: &str) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                " ".to_string()
            } else {
                format!(" {} ", v.join(", "))
            }
        };
        format!(
            "Unable to assume role for {role_arn}. Some attributes failed to be mapped into session tags. Issuer: [{}]; Subject: [{}]; SAN: [{}]",
            list(&self.issuer),
            list(&self.subject),
            list(&self.san),
        )
    }
}

/// Whether STS takes `key` = `value` as a session tag.
fn tag_ok(key: &str, value: &str) -> bool {
    (1..=128).contains(&key.chars().count())
        && value.chars().count() <= 256
        && tag_text_ok(key)
        && tag_text_ok(value)
}

/// The principal tags of `cert`, or what could not be mapped.
pub(crate) fn principal_tags(cert: &X509Certificate<'_>) -> Result<Vec<SessionTag>, Unmapped> {
    let mut unmapped = Unmapped::default();
    let mut tags = Vec::new();
    let mut add = |field: &str, specifier: String, value: String, failed: &mut Vec<String>| {
        let key = format!("{field}/{specifier}");
        if tag_ok(&key, &value) {
            tags.push(SessionTag { key, value });
        } else {
            failed.push(specifier);
        }
    };
    let mut unreadable = Vec::new();
    for (rdn, value) in rdns(cert.subject(), &mut unreadable) {
        add("x509Subject", rdn.to_string(), value, &mut unmapped.subject);
    }
    unmapped.subject.append(&mut unreadable);
    for (rdn, value) in rdns(cert.issuer(), &mut unreadable) {
        add("x509Issuer", rdn.to_string(), value, &mut unmapped.issuer);
    }
    unmapped.issuer.append(&mut unreadable);
    match cert.subject_alternative_name() {
        Ok(Some(san)) => {
            let names = &san.value.general_names;
            if let Some(dns) = names.iter().find_map(|n| match n {
                GeneralName::DNSName(d) => Some(*d),
                _ => None,
            }) {
                add("x509SAN", "DNS".into(), dns.to_string(), &mut unmapped.san);
            }
            if let Some(uri) = names.iter().find_map(|n| match n {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            }) {
                add("x509SAN", "URI".into(), uri.to_string(), &mut unmapped.san);
            }
            if let Some(dir) = names.iter().find_map(|n| match n {
                GeneralName::DirectoryName(d) => Some(d),
                _ => None,
            }) {
                for (rdn, value) in rdns(dir, &mut unreadable) {
                    add("x509SAN", format!("Name/{rdn}"), value, &mut unmapped.san);
                }
                unmapped
                    .san
                    .extend(unreadable.drain(..).map(|r| format!("Name/{r}")));
            }
        }
        Ok(None) => {}
        Err(_) => unmapped.san.push("*".into()),
    }
    if unmapped.is_empty() {
        Ok(tags)
    } else {
        Err(unmapped)
    }
}

/// The serial number of `cert` in lower-case hex, left-padded with a zero to an even length.
pub(crate) fn serial_hex(cert: &X509Certificate<'_>) -> String {
    let hex = cert.serial.to_str_radix(16);
    if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    }
}

/// The subject's common name (several joined by `/`, as its tag), if it has one.
fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    let mut ignored = Vec::new();
    rdns(cert.subject(), &mut ignored)
        .into_iter()
        .find(|(k, _)| *k == "CN")
        .map(|(_, v)| v)
}

/// The source identity of a session of `cert`, or why STS would not take it.
pub(crate) fn source_identity(cert: &X509Certificate<'_>) -> Result<String, String> {
    let identity = match common_name(cert) {
        None => format!("ID={}", serial_hex(cert)),
        Some(cn) if cn.chars().count() <= 61 => format!("CN={cn}"),
        Some(cn) if cn.chars().count() <= 64 => cn,
        Some(cn) => {
            return Err(format!(
                "the subject CN has {} characters, more than a source identity holds (64)",
                cn.chars().count()
            ));
        }
    };
    check_source_identity(&identity).map_err(|_| {
        format!(
            "the source identity {identity:?} derived from the certificate is not one STS accepts: 2 to 64 characters of [\\w+=,.@-], not starting with aws:"
        )
    })?;
    Ok(identity)
}
