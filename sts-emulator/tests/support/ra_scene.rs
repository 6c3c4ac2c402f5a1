//! The scene of the Roles Anywhere action tests: an emulator with one trust anchor, one profile
//! and one role trusting Roles Anywhere for that anchor, and how tests call and judge it.

use serde_json::json;
use sts_emulator::{Profile, TrustAnchor, role_from_trust_policy};

use super::world;
use super::x509::{self, Ca, Holder, Signing, host, profile_arn, request, send, trust_anchor_arn};

/// An emulator with one trust anchor (a root CA), one profile and one role trusting Roles
/// Anywhere for that anchor.
pub struct Scene {
    pub sts: sts_emulator::Emulator,
    pub ca: Ca,
    pub anchor: String,
    pub profile: String,
    pub role: String,
}

/// The trust policy AWS's guide shows: the service, the three actions, the anchor as source.
pub fn trust_policy(anchor: &str, conditions: serde_json::Value) -> serde_json::Value {
    let mut condition = json!({"ArnEquals": {"aws:SourceArn": anchor}});
    if let (Some(base), Some(extra)) = (condition.as_object_mut(), conditions.as_object()) {
        base.extend(extra.clone());
    }
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "rolesanywhere.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        "Condition": condition,
    }]})
}

pub fn add_role(sts: &sts_emulator::Emulator, arn: &str, policy: serde_json::Value) {
    let role = role_from_trust_policy(arn, &policy, "unused.example").expect("policy");
    sts.add_role(role);
}

pub async fn scene() -> Scene {
    let (_issuer, sts) = world(&[]).await;
    let ca = Ca::root("Test Root CA");
    let anchor = trust_anchor_arn("ta-one");
    sts.add_trust_anchor(TrustAnchor::new(&anchor, &ca.pem()))
        .expect("anchor");
    let role = super::role_arn("ra-app");
    add_role(&sts, &role, trust_policy(&anchor, json!({})));
    let profile = profile_arn("profile-one");
    sts.add_profile(Profile::new(&profile, &[&role]))
        .expect("profile");
    Scene {
        sts,
        ca,
        anchor,
        profile,
        role,
    }
}

impl Scene {
    pub async fn create(&self, holder: &Holder, body: &str) -> x509::Answer {
        self.create_with(holder, body, &Signing::default(), |_| {})
            .await
    }

    pub async fn create_with(
        &self,
        holder: &Holder,
        body: &str,
        signing: &Signing<'_>,
        tamper: impl FnOnce(&mut x509::Request),
    ) -> x509::Answer {
        let mut req = request(
            &host(&self.sts),
            holder,
            (&self.anchor, &self.profile, &self.role),
            body,
            signing,
        );
        tamper(&mut req);
        send(&self.sts, req).await
    }

    pub fn last_call(&self) -> sts_emulator::CallRecord {
        self.sts
            .calls()
            .calls
            .into_iter()
            .rev()
            .find(|c| c.action == "CreateSession")
            .expect("a CreateSession call")
    }
}

pub fn expect_refused(answer: &x509::Answer, code: &str, status: u16, words: &str) {
    assert_eq!(answer.code(), code, "{answer:?}");
    assert_eq!(answer.status, status, "{answer:?}");
    assert!(
        answer.message().contains(words),
        "expected {words:?} in {:?}",
        answer.message()
    );
}
