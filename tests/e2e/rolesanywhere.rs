//! IAM Roles Anywhere against AWS's own client: the STS emulator's `CreateSession` must accept
//! what `aws_signing_helper` (AWS's credential helper, built from its Go module by `cargo xtask
//! testenv`) signs, with RSA and ECDSA keys and through an intermediate, and give credentials the
//! AWS CLI uses; and it must refuse a one-byte tamper of what the helper sent, a certificate of
//! another CA, an expired one and a revoked one. The emulator is the oracle the operator's Roles
//! Anywhere flow is tested against, so AWS's code checks the oracle here.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use rcgen::date_time_ymd;
use serde_json::json;
use sts_emulator::{Config, Emulator, Profile, TrustAnchor, role_from_trust_policy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::rolesanywhere::{ANCHOR, Ca, PROFILE, Workload};
use crate::support::{ACCOUNT, Env, aws_caller_identity};

/// Runs AWS's helper: its credential JSON, or what it printed when it failed.
async fn credential_process(
    helper: &Path,
    workload: &Workload,
    role: &str,
    endpoint: &str,
) -> Result<serde_json::Value, String> {
    let mut cmd = tokio::process::Command::new(helper);
    podcreds_testenv::tools::clean_aws_env(cmd.as_std_mut());
    let out = cmd
        .args(workload.helper_args(role, endpoint))
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", helper.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("not JSON ({e}): {out:?}"))
}

/// The trust policy AWS's guide shows, pinned to the trust anchor and the workloads' CNs.
fn role(sts: &Emulator, name: &str, cns: &[&str]) -> anyhow::Result<String> {
    let arn = format!("arn:aws:iam::{ACCOUNT}:role/{name}");
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "rolesanywhere.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        "Condition": {
            "ArnEquals": {"aws:SourceArn": ANCHOR},
            "StringEquals": {"aws:PrincipalTag/x509Subject/CN": cns},
        },
    }]});
    sts.try_add_role(role_from_trust_policy(&arn, &policy, "unused")?)?;
    Ok(arn)
}

/// An emulator of the test's own (its call log is the test's alone) with the trust anchor of
/// `ca`.
async fn rolesanywhere_emulator(env: &Env, ca: &Ca) -> anyhow::Result<Emulator> {
    let sts = Emulator::start(Config::for_issuer(&env.plane.api_url, &env.plane.ca_pem)).await?;
    sts.add_trust_anchor(TrustAnchor::new(ANCHOR, &ca.pem))?;
    Ok(sts)
}

/// A proxy between the helper and the emulator that forwards each request, with one byte of its
/// body flipped (the first digit, so the body stays JSON) when `tamper` is set. The helper sends
/// its body chunked (its SDK's length handler is among the signing handlers it replaces), so the
/// byte is one of the first chunk's data, never of the framing.
async fn proxy(upstream: SocketAddr, tamper: bool) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(mut request) = read_request(&mut client).await else {
                    return;
                };
                if tamper {
                    request.flip_a_body_digit();
                }
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                if server.write_all(&request.bytes).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    Ok(url)
}

/// One HTTP/1.1 request as it arrived, and where its body's data lies in it.
struct RawRequest {
    bytes: Vec<u8>,
    body: std::ops::Range<usize>,
}

impl RawRequest {
    fn flip_a_body_digit(&mut self) {
        let body = &mut self.bytes[self.body.clone()];
        if let Some(digit) = body.iter_mut().find(|b| b.is_ascii_digit()) {
            *digit ^= 1;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one whole request (a `Content-Length` or a chunked body).
async fn read_request(client: &mut tokio::net::TcpStream) -> Option<RawRequest> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut more = async |bytes: &mut Vec<u8>| match client.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            bytes.extend_from_slice(&chunk[..n]);
            true
        }
    };
    let head_end = loop {
        if let Some(i) = find(&bytes, b"\r\n\r\n") {
            break i + 4;
        }
        if !more(&mut bytes).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        while !bytes[head_end..].ends_with(b"0\r\n\r\n") {
            if !more(&mut bytes).await {
                return None;
            }
        }
        let line_end = head_end + find(&bytes[head_end..], b"\r\n")?;
        let size_text = String::from_utf8_lossy(&bytes[head_end..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.trim(), 16).ok()?;
        let body = line_end + 2..line_end + 2 + size;
        return Some(RawRequest { bytes, body });
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while bytes.len() < head_end + length {
        if !more(&mut bytes).await {
            return None;
        }
    }
    let body = head_end..head_end + length;
    Some(RawRequest { bytes, body })
}

fn emulator_addr(sts: &Emulator) -> anyhow::Result<SocketAddr> {
    Ok(sts.url().trim_start_matches("http://").parse()?)
}

/// The emulator's CreateSession calls: (result, subject).
fn sessions(sts: &Emulator) -> Vec<(String, Option<String>)> {
    sts.calls()
        .calls
        .into_iter()
        .filter(|c| c.action == "CreateSession")
        .map(|c| (c.result, c.subject))
        .collect()
}

pub async fn the_emulator_accepts_aws_signing_helper_and_refuses_a_tamper(
    env: &Env,
) -> anyhow::Result<()> {
    // A missing helper fails the test (`cargo xtask testenv` builds it); nothing is skipped.
    let helper = podcreds_testenv::tools::aws_signing_helper()?;
    let dir = tempfile::tempdir()?;
    let ca = Ca::root("podcreds e2e root")?;
    let sts = rolesanywhere_emulator(env, &ca).await?;
    let role_arn = role(
        &sts,
        "rolesanywhere-e2e",
        &["e2e-rsa", "e2e-ec", "e2e-chained"],
    )?;
    sts.add_profile(Profile::new(PROFILE, &[&role_arn]))?;

    let issuing = ca.intermediate("podcreds e2e issuing")?;
    let mut chained = issuing.issue(
        dir.path(),
        &rcgen::PKCS_ECDSA_P256_SHA256,
        "e2e-chained",
        0x0c0ffe,
        |_| {},
    )?;
    let bundle = dir.path().join("intermediates.pem");
    std::fs::write(&bundle, &issuing.pem)?;
    chained.intermediates = Some(bundle);
    let workloads = [
        ca.issue(
            dir.path(),
            &rcgen::PKCS_RSA_SHA256,
            "e2e-rsa",
            0x1f71c5,
            |_| {},
        )?,
        ca.issue(
            dir.path(),
            &rcgen::PKCS_ECDSA_P256_SHA256,
            "e2e-ec",
            0x4567,
            |_| {},
        )?,
        chained,
    ];
    for workload in &workloads {
        // The helper's own output: credential_process JSON.
        let creds = credential_process(&helper, workload, &role_arn, &sts.url())
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| {
                format!("aws_signing_helper with {}", workload.certificate.display())
            })?;
        ensure!(creds["Version"] == 1, "{creds}");
        ensure!(
            creds["AccessKeyId"]
                .as_str()
                .is_some_and(|k| k.starts_with("ASIA")),
            "{creds}"
        );
        let expiration: jiff::Timestamp = creds["Expiration"]
            .as_str()
            .context("Expiration")?
            .parse()?;
        let left = expiration.duration_since(jiff::Timestamp::now()).as_secs();
        ensure!((3500..=3600).contains(&left), "expires in {left}s: {creds}");

        // The AWS CLI runs the helper as its credential_process and calls STS with the result.
        let config = dir.path().join(format!("config-{}", workload.serial_hex));
        let command = std::iter::once(helper.display().to_string())
            .chain(workload.helper_args(&role_arn, &sts.url()))
            .collect::<Vec<_>>()
            .join(" ");
        std::fs::write(
            &config,
            format!("[default]\nregion = us-east-1\ncredential_process = {command}\n"),
        )?;
        let ident = aws_caller_identity(&sts.url(), &[("AWS_CONFIG_FILE", &config)]).await?;
        let expected = format!(
            "arn:aws:sts::{ACCOUNT}:assumed-role/rolesanywhere-e2e/{}",
            workload.serial_hex
        );
        ensure!(ident["Arn"] == expected.as_str(), "AWS CLI saw {ident}");
    }
    let calls = sessions(&sts);
    ensure!(
        calls.len() == 6 && calls.iter().all(|(result, _)| result == "Ok"),
        "{calls:?}"
    );
    ensure!(
        calls
            .iter()
            .any(|(_, s)| s.as_deref() == Some("CN=e2e-chained")),
        "{calls:?}"
    );

    // Through a proxy that changes nothing the helper still succeeds; through one that flips a
    // byte of the body the emulator refuses the signature.
    let upstream = emulator_addr(&sts)?;
    let faithful = proxy(upstream, false).await?;
    credential_process(&helper, &workloads[1], &role_arn, &faithful)
        .await
        .map_err(anyhow::Error::msg)
        .context("through a proxy that changes nothing")?;
    let tampering = proxy(upstream, true).await?;
    for workload in &workloads[..2] {
        match credential_process(&helper, workload, &role_arn, &tampering).await {
            Ok(creds) => bail!("a tampered request got credentials: {creds}"),
            Err(out) => ensure!(
                out.contains("AccessDeniedException: Invalid signature"),
                "the helper printed {out}"
            ),
        }
    }
    let last = sts.calls().calls.last().cloned().context("no call")?;
    ensure!(last.result == "AccessDeniedException", "{last:?}");
    sts.shutdown();
    Ok(())
}

pub async fn aws_signing_helper_is_refused_foreign_expired_and_revoked_certificates(
    env: &Env,
) -> anyhow::Result<()> {
    let helper = podcreds_testenv::tools::aws_signing_helper()?;
    let dir = tempfile::tempdir()?;
    let ca = Ca::root("podcreds e2e root")?;
    let sts = rolesanywhere_emulator(env, &ca).await?;
    let role_arn = role(&sts, "rolesanywhere-refusals", &["e2e-refused"])?;
    sts.add_profile(Profile::new(PROFILE, &[&role_arn]))?;
    let ec = &rcgen::PKCS_ECDSA_P256_SHA256;
    let refused = |what: &'static str, words: &'static str| {
        let helper = helper.clone();
        let role_arn = role_arn.clone();
        let url = sts.url();
        move |workload: Workload| async move {
            match credential_process(&helper, &workload, &role_arn, &url).await {
                Ok(creds) => bail!("{what} got credentials: {creds}"),
                Err(out) => ensure!(
                    out.contains("AccessDeniedException") && out.contains(words),
                    "{what}: the helper printed {out}"
                ),
            }
            Ok(())
        }
    };
    let foreign = Ca::root("podcreds e2e root")?;
    refused(
        "a certificate of another CA",
        "Untrusted signing certificate",
    )(foreign.issue(dir.path(), ec, "e2e-refused", 0x11, |_| {})?)
    .await?;
    refused("an expired certificate", "expired")(ca.issue(
        dir.path(),
        ec,
        "e2e-refused",
        0x12,
        |p| p.not_after = date_time_ymd(2021, 1, 1),
    )?)
    .await?;
    let revoked = ca.issue(dir.path(), ec, "e2e-refused", 0x13, |_| {})?;
    credential_process(&helper, &revoked, &role_arn, &sts.url())
        .await
        .map_err(anyhow::Error::msg)
        .context("before its revocation")?;
    sts.revoke_serial(ANCHOR, &revoked.serial_hex)?;
    refused("a revoked certificate", "revoked")(revoked).await?;
    let results: Vec<String> = sessions(&sts).into_iter().map(|(r, _)| r).collect();
    ensure!(
        results
            == [
                "AccessDeniedException",
                "AccessDeniedException",
                "Ok",
                "AccessDeniedException"
            ],
        "{results:?}"
    );
    sts.shutdown();
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![rolesanywhere:
    the_emulator_accepts_aws_signing_helper_and_refuses_a_tamper,
    aws_signing_helper_is_refused_foreign_expired_and_revoked_certificates,
];
