//! What podcreds keeps in memory of each Secret it manages: one small record, read from the
//! Secret's metadata once, when the watch delivers it, instead of a copy of the metadata. At
//! thousands of bindings the copies were the largest part of the operator's heap (podcreds'
//! annotations as a map of strings, the owner reference, the object reference keys).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{
    ANNOTATION_WRITTEN_BY, ANNOTATIONS, IssuedMeta, MAX_ANNOTATION_VALUE, ObservedSecret,
    controller_of, intact, issued_from,
};

/// Everything a reconciliation decides on about a Secret, and nothing a tenant who may edit the
/// Secret could make large: podcreds' own annotations longer than any it writes are not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRecord {
    resource_version: Option<Box<str>>,
    being_deleted: bool,
    controller: Option<Controller>,
    intact: bool,
    issued: Option<IssuedMeta>,
    written_by: Option<Box<str>>,
}

/// The Secret's controller owner reference: who it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Controller {
    uid: Box<str>,
    /// `<kind>/<name>`, as a conflict reports it.
    owner: Box<str>,
}

impl SecretRecord {
    /// Reads the record of a Secret from its metadata (a watch event or a metadata read).
    pub fn read(meta: &ObjectMeta) -> Self {
        let annotations: BTreeMap<String, String> = meta
            .annotations
            .iter()
            .flatten()
            .filter(|(k, v)| ANNOTATIONS.contains(&k.as_str()) && v.len() <= MAX_ANNOTATION_VALUE)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Self {
            resource_version: meta.resource_version.as_deref().map(Box::from),
            being_deleted: meta.deletion_timestamp.is_some(),
            controller: controller_of(meta).map(|o| Controller {
                uid: o.uid.as_str().into(),
                owner: crate::text::cut(&format!("{}/{}", o.kind, o.name), MAX_ANNOTATION_VALUE)
                    .into(),
            }),
            intact: intact(meta),
            issued: issued_from(&annotations),
            written_by: annotations
                .get(ANNOTATION_WRITTEN_BY)
                .map(|w| w.as_str().into()),
        }
    }

    /// The Secret's resourceVersion as read (the precondition of the next write).
    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    /// Which operator wrote the credentials, as the Secret says (never trusted).
    pub fn written_by(&self) -> Option<&str> {
        self.written_by.as_deref()
    }

    /// Classifies the Secret for the binding `binding_uid`.
    pub fn observe(&self, binding_uid: &str) -> ObservedSecret {
        if self.being_deleted {
            // Being deleted: treat as gone; the apply after it recreates the Secret.
            return ObservedSecret::Missing;
        }
        match &self.controller {
            Some(c) if &*c.uid == binding_uid => ObservedSecret::Owned {
                issued: self.issued.clone(),
                intact: self.intact,
            },
            Some(c) => ObservedSecret::Foreign {
                owner: Some(c.owner.to_string()),
            },
            None => ObservedSecret::Foreign { owner: None },
        }
    }

    /// Bytes of string data the record holds beyond its own size: what a tenant's edits could
    /// at most grow.
    #[cfg(test)]
    pub fn retained_bytes(&self) -> usize {
        let issued = self.issued.as_ref().map_or(0, |i| {
            i.fingerprint.len()
                + i.assumed_role_arn.as_ref().map_or(0, String::len)
                + i.sts_endpoint.as_ref().map_or(0, String::len)
                + i.chain
                    .as_ref()
                    .map_or(0, |c| serde_json::to_string(c).map_or(0, |s| s.len()))
        });
        self.resource_version.as_ref().map_or(0, |v| v.len())
            + self
                .controller
                .as_ref()
                .map_or(0, |c| c.uid.len() + c.owner.len())
            + self.written_by.as_ref().map_or(0, |w| w.len())
            + issued
    }
}
