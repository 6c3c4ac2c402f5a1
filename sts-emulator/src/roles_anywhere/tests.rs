use http::HeaderMap;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use serde_json::json;

use super::attributes::{principal_tags, serial_hex, source_identity};
use super::signing::{self, SigningError};
use super::*;
use crate::sigv4::SignedRequest;
use crate::trust_policy::{Caller, Decision, RequestContext, TrustPolicy};

const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta";

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(cn: &str, change: impl FnOnce(&mut CertificateParams)) -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    change(&mut params);
    let pem = params.self_signed(&key).expect("ca").pem();
    Ca { params, key, pem }
}

/// An end-entity certificate (DER) of `ca`.
fn leaf(ca: &Ca, change: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.serial_number = Some(SerialNumber::from(0x1f71c5u64));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    change(&mut params);
    params
        .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
        .expect("leaf")
        .der()
        .to_vec()
}

fn der_len(len: usize) -> Vec<u8> {
    if len < 128 {
        vec![len as u8]
    } else {
        vec![0x81, len as u8]
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend(content);
    out
}

#[test]
fn certificate_fields_become_the_documented_principal_tags() {
    let ca = ca("Roles Anywhere", |p| {
        let dn = &mut p.distinguished_name;
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::OrganizationName, "Amazon");
        dn.push(DnType::OrganizationalUnitName, "IAM");
        dn.push(DnType::StateOrProvinceName, "Washington");
        dn.push(DnType::LocalityName, "Seattle");
    });
    // DNS, a second DNS, URI and a directory name (CN=Alice), written by hand: rcgen has no
    // directoryName subject alternative names.
    let dir_name = {
        let cn = [tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0c, b"Alice")].concat();
        tlv(0x30, &tlv(0x31, &tlv(0x30, &cn)))
    };
    let names = [
        tlv(0x82, b"example.com"),
        tlv(0x82, b"second.example.com"),
        tlv(0x86, b"spiffe://example.com/workload/alice"),
        tlv(0xa4, &dir_name),
    ]
    .concat();
    let san = CustomExtension::from_oid_content(&[2, 5, 29, 17], tlv(0x30, &names));
    let der = leaf(&ca, |p| {
        p.distinguished_name.push(DnType::CommonName, "Alice");
        // rcgen keeps one value per attribute type: the second OU under its bare OID.
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "Security");
        p.distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 11]), "Engineering");
        p.custom_extensions.push(san);
    });
    let cert = parse_der(&der).expect("parse");
    let tags: Vec<(String, String)> = principal_tags(&cert)
        .expect("mapped")
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    let expected = [
        ("x509Subject/CN", "Alice"),
        ("x509Subject/OU", "Security/Engineering"),
        ("x509Issuer/CN", "Roles Anywhere"),
        ("x509Issuer/C", "US"),
        ("x509Issuer/O", "Amazon"),
        ("x509Issuer/OU", "IAM"),
        ("x509Issuer/ST", "Washington"),
        ("x509Issuer/L", "Seattle"),
        ("x509SAN/DNS", "example.com"),
        ("x509SAN/URI", "spiffe://example.com/workload/alice"),
        ("x509SAN/Name/CN", "Alice"),
    ];
    assert_eq!(
        tags,
        expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(source_identity(&cert).as_deref(), Ok("CN=Alice"));
    assert_eq!(serial_hex(&cert), "1f71c5");
}

#[test]
fn source_identities_follow_the_documented_prefix_rules() {
    let ca = ca("CA", |_| {});
    let with_cn = |cn: &str| {
        let der = leaf(&ca, |p| p.distinguished_name.push(DnType::CommonName, cn));
        source_identity(&parse_der(&der).expect("parse"))
    };
    assert_eq!(
        with_cn(&"a".repeat(61)),
        Ok(format!("CN={}", "a".repeat(61)))
    );
    assert_eq!(with_cn(&"b".repeat(62)), Ok("b".repeat(62)));
    assert_eq!(with_cn(&"c".repeat(64)), Ok("c".repeat(64)));
    assert!(with_cn(&"d".repeat(65)).is_err());
    assert!(with_cn("ns:app").is_err());
    assert!(with_cn("with space").is_err());
    // No CN: ID= and the serial in hex, left-padded to an even length.
    for (serial, expected) in [(291u64, "ID=0123"), (17767, "ID=4567")] {
        let der = leaf(&ca, |p| {
            p.serial_number = Some(SerialNumber::from(serial));
            p.distinguished_name.push(DnType::OrganizationName, "Org");
        });
        assert_eq!(
            source_identity(&parse_der(&der).expect("parse")).as_deref(),
            Ok(expected)
        );
    }
}

#[test]
fn trust_anchors_must_be_cas_and_arns_roles_anywhere_ones() {
    let good = ca("CA", |_| {});
    assert!(register_trust_anchor(TrustAnchor::new(ANCHOR, &good.pem)).is_ok());
    let refused = |pem: &str| register_trust_anchor(TrustAnchor::new(ANCHOR, pem)).is_err();
    assert!(refused(&ca("No CA", |p| p.is_ca = IsCa::ExplicitNoCa).pem));
    assert!(refused(
        &ca("No signing", |p| p.key_usages =
            vec![KeyUsagePurpose::DigitalSignature])
        .pem
    ));
    assert!(refused(&ca("No usage", |p| p.key_usages.clear()).pem));
    assert!(refused("not PEM at all"));
    for arn in [
        "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p",
        "arn:aws:rolesanywhere:us-east-1:1234:trust-anchor/ta",
        "arn:aws:iam::123456789012:trust-anchor/ta",
        "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/",
    ] {
        assert!(
            register_trust_anchor(TrustAnchor::new(arn, &good.pem)).is_err(),
            "{arn}"
        );
    }
    let profile = |duration| Profile {
        duration_seconds: Some(duration),
        ..Profile::new(
            "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p",
            &["arn:aws:iam::123456789012:role/r"],
        )
    };
    assert!(check_profile(&profile(900)).is_ok());
    assert!(check_profile(&profile(43_201)).is_err());
    assert!(check_profile(&Profile::new(ANCHOR, &["arn:aws:iam::123456789012:role/r"])).is_err());
}

#[test]
fn revoked_serials_are_read_as_openssl_prints_them() {
    assert_eq!(serial_from_hex("1F:71:C5"), Some(vec![0x1f, 0x71, 0xc5]));
    assert_eq!(serial_from_hex("0x00123"), Some(vec![0x01, 0x23]));
    assert_eq!(serial_from_hex("00"), Some(Vec::new()));
    assert_eq!(serial_from_hex("xyz"), None);
    assert_eq!(serial_from_hex(""), None);
}

/// The example canonical request of AWS's "signing process" page, rebuilt by the emulator.
#[test]
fn canonical_requests_are_built_as_the_signing_process_page_shows() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "host",
        "rolesanywhere.us-east-1.amazonaws.com".parse().expect("h"),
    );
    headers.insert("content-type", "  application/json  ".parse().expect("h"));
    headers.insert("x-amz-date", "20211103T120000Z".parse().expect("h"));
    headers.insert("x-amz-x509", "MIIB  x".parse().expect("h"));
    let request = SignedRequest {
        method: "POST",
        path: "/sessions",
        query: "roleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&profileArn=p",
        headers: &headers,
        body: b"",
    };
    let signed: Vec<String> = ["content-type", "host", "x-amz-date", "x-amz-x509"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let canonical = signing::canonical_request(
        &request,
        &signed,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    assert_eq!(
        canonical,
        "POST\n/sessions\nprofileArn=p&roleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr\ncontent-type:application/json\nhost:rolesanywhere.us-east-1.amazonaws.com\nx-amz-date:20211103T120000Z\nx-amz-x509:MIIB x\n\ncontent-type;host;x-amz-date;x-amz-x509\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let to_sign = signing::string_to_sign(
        "AWS4-X509-RSA-SHA256",
        "20211103T120000Z",
        "20211103/us-east-1/rolesanywhere/aws4_request",
        &canonical,
    );
    assert!(to_sign.starts_with(
        "AWS4-X509-RSA-SHA256\n20211103T120000Z\n20211103/us-east-1/rolesanywhere/aws4_request\n"
    ));
}

#[test]
fn authorization_headers_must_be_x509_ones() {
    let parse = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().expect("value"));
        signing::parse_authorization(&headers)
    };
    let good = parse(
        "AWS4-X509-ECDSA-SHA256 Credential=291/20260101/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host;x-amz-date;x-amz-x509, Signature=0aff",
    )
    .expect("parsed");
    assert_eq!(good.serial, "291");
    assert_eq!(good.signature, vec![0x0a, 0xff]);
    assert_eq!(good.signed_headers, ["host", "x-amz-date", "x-amz-x509"]);
    for bad in [
        "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-X509-RSA-SHA256 Credential=0x1f/20260101/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-X509-RSA-SHA256 Credential=1/2026011/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-X509-RSA-SHA256 Credential=1/20260101/us-east-1/rolesanywhere/aws4_request, SignedHeaders=host, Signature=zz",
        "AWS4-X509-RSA-SHA256 Credential=1/20260101/us-east-1/rolesanywhere, SignedHeaders=host, Signature=00",
        "AWS4-X509-RSA-SHA256",
    ] {
        assert!(
            matches!(parse(bad), Err(SigningError::Malformed(_))),
            "{bad}"
        );
    }
    assert_eq!(
        signing::parse_authorization(&HeaderMap::new()),
        Err(SigningError::Missing)
    );
    // More than five intermediates.
    let mut headers = HeaderMap::new();
    headers.insert("x-amz-x509", "AAAA".parse().expect("h"));
    headers.insert(
        "x-amz-x509-chain",
        ["AAAA"; 6].join(",").parse().expect("h"),
    );
    assert!(signing::presented_certificates(&headers).is_err());
}

#[test]
fn trust_policies_name_the_service_and_compare_arns_by_part() {
    let policy = TrustPolicy::from_json(&json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "rolesanywhere.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        "Condition": {
            "ArnLike": {"aws:SourceArn": "arn:aws:rolesanywhere:*:123456789012:trust-anchor/*"},
            "StringEquals": {"aws:PrincipalTag/x509Subject/CN": "alice"},
        },
    }]}))
    .expect("understood");
    let service = Caller::Service {
        service: "rolesanywhere.amazonaws.com",
    };
    let mut request = RequestContext::default();
    request
        .set("aws:SourceArn", ANCHOR)
        .set("aws:PrincipalTag/x509Subject/CN", "alice");
    assert_eq!(
        policy.decide("sts:AssumeRole", &service, &request),
        Decision::Allowed
    );
    let other = Caller::Service {
        service: "ec2.amazonaws.com",
    };
    assert_eq!(
        policy.decide("sts:AssumeRole", &other, &request),
        Decision::ImplicitDeny
    );
    // A wildcard never reaches across a `:`: the account part must still match.
    let mut elsewhere = request.clone();
    elsewhere.set(
        "aws:SourceArn",
        "arn:aws:rolesanywhere:us-east-1:210987654321:trust-anchor/ta",
    );
    assert_eq!(
        policy.decide("sts:AssumeRole", &service, &elsewhere),
        Decision::ImplicitDeny
    );
    assert!(crate::trust_policy::arn_matches(
        "arn:aws:rolesanywhere:us-*-1:*:trust-anchor/t?",
        ANCHOR
    ));
    assert!(!crate::trust_policy::arn_matches(
        "arn:aws:rolesanywhere:*",
        ANCHOR
    ));
    let negated = TrustPolicy::from_json(&json!({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole",
        "Condition": {"ArnNotEquals": {"aws:SourceArn": ANCHOR}},
    }]}))
    .expect("understood");
    assert_eq!(
        negated.decide("sts:AssumeRole", &service, &request),
        Decision::ImplicitDeny
    );
    assert_eq!(
        negated.decide("sts:AssumeRole", &service, &RequestContext::default()),
        Decision::Allowed
    );
}
