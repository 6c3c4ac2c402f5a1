//! Key rings podcreds keeps in Secrets of its own namespace, one per purpose ([`KeyProfile`]):
//! the SAML identity provider's signing key, the Roles Anywhere workload CA and the node endpoint
//! broker's CA. One custody and one three-step rotation (`add-next`, `promote`, `retire`) for
//! all: the pure ring is in [`key`],
//! the Secret's I/O in [`store`].

pub mod key;
pub mod store;

pub use key::{
    ACTIVE_CERT, ACTIVE_KEY, BROKER_CA, KeyError, KeyProfile, KeyRing, NEXT_CERT, NEXT_KEY,
    PREVIOUS_CERT, ROLES_ANYWHERE_CA, SAML, SigningKey, certificate_fingerprint,
    pem_certificate_der, pem_certificates_der,
};
pub use store::{KeyCache, KeySecret, REREAD_AFTER, StoreError};
