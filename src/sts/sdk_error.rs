//! How the AWS SDK's errors become [`StsError`]s: AWS's error documents through the SDK, Ceph
//! RGW's S3-style ones read here, and transport failures by their kind.

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use super::{StsError, StsErrorKind};

/// Code and message of an S3-style error document (`<Error><Code>..</Code>..</Error>` at the
/// root, as Ceph RGW answers STS calls), which the SDK's parser, expecting AWS's
/// `<ErrorResponse>` wrapper, leaves without a code.
fn s3_style_error(body: &[u8]) -> Option<(String, Option<String>)> {
    // Only the start of the document matters; a remote answer is never read whole.
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let element = |name: &str| {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let end = start + text[start..].find(&format!("</{name}>"))?;
        let value = text[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&");
        (!value.trim().is_empty()).then_some(value)
    };
    let root = text
        .trim_start_matches('\u{feff}')
        .split("?>")
        .last()
        .unwrap_or_default()
        .trim_start();
    if !root.starts_with("<Error>") {
        return None;
    }
    Some((element("Code")?, element("Message")))
}

pub(super) fn classify_sdk_error<E>(err: SdkError<E, HttpResponse>) -> StsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let meta = service.err();
            let (code, message) = match meta.code() {
                Some(code) => (Some(code.to_string()), meta.message().map(str::to_string)),
                None => match service.raw().body().bytes().and_then(s3_style_error) {
                    Some((code, message)) => (Some(code), message),
                    None => (None, None),
                },
            };
            let kind = code
                .as_deref()
                .map(StsErrorKind::from_code)
                .unwrap_or(StsErrorKind::Unavailable);
            let error = StsError::new(
                kind,
                code.as_deref(),
                message.as_deref().unwrap_or("no message"),
            );
            if service.raw().status().is_server_error() {
                error.at_endpoint()
            } else {
                error
            }
        }
        SdkError::TimeoutError(_) => StsError::new(
            StsErrorKind::Unavailable,
            Some("Timeout"),
            "STS did not answer in time",
        )
        .at_endpoint(),
        SdkError::DispatchFailure(d) => {
            let what = if d.is_timeout() {
                "timed out connecting to STS"
            } else if d.is_io() {
                "could not connect to STS"
            } else {
                "could not send the request to STS"
            };
            StsError::new(StsErrorKind::Unavailable, Some("DispatchFailure"), what).at_endpoint()
        }
        SdkError::ResponseError(_) => StsError::new(
            StsErrorKind::Unavailable,
            Some("MalformedResponse"),
            "STS sent an answer that could not be read",
        )
        .at_endpoint(),
        SdkError::ConstructionFailure(_) => StsError::new(
            StsErrorKind::InvalidRequest,
            Some("ConstructionFailure"),
            "the STS request could not be built",
        ),
        _ => StsError::new(
            StsErrorKind::Unavailable,
            None,
            "unexpected STS client error",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_style_error_documents_are_read() {
        let ceph = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message></Message><RequestId>tx1-default</RequestId><HostId>h</HostId></Error>"#;
        assert_eq!(
            s3_style_error(ceph),
            Some(("AccessDenied".to_string(), None))
        );
        let with_message =
            b"<Error><Code>InvalidArgument</Code><Message>a &lt;b&gt; &amp; c</Message></Error>";
        assert_eq!(
            s3_style_error(with_message),
            Some(("InvalidArgument".to_string(), Some("a <b> & c".to_string())))
        );
        // AWS's wrapped documents are the SDK's business; garbage is nobody's.
        let aws = b"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>";
        assert_eq!(s3_style_error(aws), None);
        assert_eq!(s3_style_error(b"<Error><Code></Code></Error>"), None);
        assert_eq!(s3_style_error(b"\xff\xfe<html>"), None);
        assert_eq!(s3_style_error(b"<Error><Code>unterminated"), None);
    }
}
