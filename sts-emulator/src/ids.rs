//! Random and derived identifiers: request IDs, access keys, secrets, session tokens, user IDs.

use rand::Rng;

/// The alphabet of AWS key IDs (`ASIA...`, `AROA...`).
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// The alphabet of secret access keys and session tokens.
const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// A request ID shaped like AWS's (a version 4 UUID).
pub(crate) fn request_id() -> String {
    let mut rng = rand::rng();
    let a: u32 = rng.random();
    let b: u16 = rng.random();
    let c: u64 = rng.random();
    format!("{a:08x}-{b:04x}-4000-8000-{:012x}", c & 0xffff_ffff_ffff)
}

/// A temporary access key ID (`ASIA...`).
pub(crate) fn temporary_access_key_id() -> String {
    format!("ASIA{}", random_string(16, UPPER))
}

/// A role ID (`AROA...`).
pub(crate) fn role_id() -> String {
    format!("AROA{}", random_string(17, UPPER))
}

pub(crate) fn secret_access_key() -> String {
    random_string(40, SECRET)
}

pub(crate) fn session_token() -> String {
    format!("FwoGZXIvYXdzE{}", random_string(300, SECRET))
}

/// A stable user ID for an IAM user ARN (`AIDA...`).
pub(crate) fn user_id(user_arn: &str) -> String {
    let digest = user_arn.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("AIDA{digest:016X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_have_aws_shapes() {
        assert!(temporary_access_key_id().starts_with("ASIA"));
        assert_eq!(temporary_access_key_id().len(), 20);
        assert_eq!(role_id().len(), 21);
        assert_eq!(secret_access_key().len(), 40);
        assert_eq!(request_id().len(), 36);
        assert_eq!(
            user_id("arn:aws:iam::123456789012:user/u"),
            user_id("arn:aws:iam::123456789012:user/u")
        );
        assert_ne!(
            user_id("arn:aws:iam::123456789012:user/u"),
            user_id("arn:aws:iam::123456789012:user/v")
        );
    }
}
