use super::*;

fn pod(spec: serde_json::Value, status: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": spec,
        "status": status,
    }))
    .expect("pod")
}

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("time")
}

fn issued() -> IssuedMeta {
    IssuedMeta {
        issued_at: t(0),
        expiration: t(3600),
        renewal_time: t(2400),
        fingerprint: "f".into(),
        assumed_role_arn: None,
        chain: None,
        sts_endpoint: None,
    }
}

fn every_way() -> Pod {
    pod(
        serde_json::json!({
            "nodeName": "node-1",
            "volumes": [
                {"name": "creds", "secret": {"secretName": "app"}},
                {"name": "proj", "projected": {"sources": [{"secret": {"name": "app"}}]}},
                {"name": "other", "secret": {"secretName": "tls"}},
                {"name": "cfg", "configMap": {"name": "app"}},
            ],
            "containers": [
                {"name": "volume", "image": "i", "volumeMounts": [
                    {"name": "creds", "mountPath": "/creds"},
                    {"name": "cfg", "mountPath": "/cfg"},
                ]},
                {"name": "projected", "image": "i", "volumeMounts": [
                    {"name": "proj", "mountPath": "/creds"},
                ]},
                {"name": "subpath", "image": "i", "volumeMounts": [
                    {"name": "creds", "mountPath": "/aws/credentials", "subPath": "credentials"},
                ]},
                {"name": "env", "image": "i", "env": [
                    {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "app", "key": "aws_access_key_id"}}},
                    {"name": "PLAIN", "value": "x"},
                ]},
                {"name": "envfrom", "image": "i", "envFrom": [{"secretRef": {"name": "app"}}]},
                {"name": "both", "image": "i",
                    "volumeMounts": [{"name": "creds", "mountPath": "/creds"}],
                    "envFrom": [{"secretRef": {"name": "app"}}]},
                {"name": "unrelated", "image": "i", "volumeMounts": [{"name": "other", "mountPath": "/tls"}]},
                {"name": "nothing", "image": "i"},
            ],
            "initContainers": [
                {"name": "init", "image": "i", "envFrom": [{"secretRef": {"name": "app"}}]},
                {"name": "sidecar", "image": "i", "restartPolicy": "Always",
                    "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "app", "key": "k"}}}]},
            ],
        }),
        serde_json::json!({
            "phase": "Running",
            "containerStatuses": [
                {"name": "env", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                 "state": {"running": {"startedAt": "2027-01-15T08:00:00Z"}}},
                {"name": "subpath", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}},
            ],
        }),
    )
}

#[test]
fn the_cache_keeps_only_how_containers_reference_secrets() {
    let p = PodUses::of(&every_way()).expect("trimmed");
    assert_eq!(p.node.as_deref(), Some("node-1"));
    let names: Vec<&str> = p.containers.iter().map(|c| c.name.as_str()).collect();
    // The plain init container ran once and is done; containers without a Secret are not
    // kept.
    assert_eq!(
        names,
        [
            "volume",
            "projected",
            "subpath",
            "env",
            "envfrom",
            "both",
            "unrelated",
            "sidecar"
        ]
    );
    assert_eq!(p.secrets(), BTreeSet::from(["app", "tls"]));
    let env = &p.containers[3];
    assert_eq!(
        env.started_at,
        Some("2027-01-15T08:00:00Z".parse().expect("time"))
    );
    assert_eq!(
        env.uses,
        [Use::EnvKey {
            secret: "app".into(),
            key: "aws_access_key_id".into(),
            variable: "AWS_ACCESS_KEY_ID".into()
        }]
    );
    assert_eq!(p.containers[2].started_at, None);
}

#[test]
fn only_whole_volume_mounts_refresh() {
    let p = PodUses::of(&every_way()).expect("trimmed");
    let verdicts: Vec<(String, Class)> = classify(&p, "app")
        .into_iter()
        .map(|v| (v.container, v.class))
        .collect();
    let expected = [
        ("volume", Class::Refreshes),
        ("projected", Class::Refreshes),
        ("subpath", Class::ReadsOnce),
        ("env", Class::ReadsOnce),
        ("envfrom", Class::ReadsOnce),
        // A volume does not make up for what the container also captured at start.
        ("both", Class::ReadsOnce),
        ("sidecar", Class::ReadsOnce),
    ];
    let expected: Vec<(String, Class)> =
        expected.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    assert_eq!(verdicts, expected);
    let both = classify(&p, "app")
        .into_iter()
        .find(|v| v.container == "both")
        .expect("both");
    assert_eq!(
        both.captured,
        [Use::EnvFrom {
            secret: "app".into()
        }]
    );
    // Another Secret's consumers are not this one's.
    let tls: Vec<String> = classify(&p, "tls")
        .into_iter()
        .map(|v| v.container)
        .collect();
    assert_eq!(tls, ["unrelated"]);
    assert!(classify(&p, "missing").is_empty());
}

#[test]
fn pods_without_secrets_and_finished_pods_are_not_kept() {
    let plain = pod(
        serde_json::json!({"containers": [{"name": "c", "image": "i"}]}),
        serde_json::json!({"phase": "Running"}),
    );
    assert_eq!(PodUses::of(&plain), None);
    let mut done = every_way();
    if let Some(s) = done.status.as_mut() {
        s.phase = Some("Succeeded".into());
    }
    assert_eq!(PodUses::of(&done), None);
    let empty_sub_path = pod(
        serde_json::json!({
            "volumes": [{"name": "creds", "secret": {"secretName": "app"}}],
            "containers": [{"name": "c", "image": "i", "volumeMounts": [
                {"name": "creds", "mountPath": "/creds", "subPath": ""}]}],
        }),
        serde_json::json!({}),
    );
    let p = PodUses::of(&empty_sub_path).expect("trimmed");
    assert_eq!(classify(&p, "app")[0].class, Class::Refreshes);
}

fn set(issued: i64, expires: i64) -> CredentialSet {
    CredentialSet {
        issued_at: t(issued),
        expiration: t(expires),
    }
}

#[test]
fn a_container_captured_the_set_it_started_under() {
    let only = [CredentialSet::from(&issued())];
    assert_eq!(captured(None, &only), Captured::NotYet);
    assert_eq!(
        captured(Some(t(60)), &only),
        Captured::Current { expires: t(3600) }
    );
    // Started before the only set known here was written: what it holds is not known.
    let unknown = Captured::Earlier {
        replaced_at: t(0),
        expires: None,
    };
    assert_eq!(captured(Some(t(-60)), &only), unknown);
    // So shortly after that the kubelet may still have shown one before, none known: the
    // one it started next to.
    assert_eq!(
        captured(Some(t(5)), &only),
        Captured::Current { expires: t(3600) }
    );
    assert_eq!(unknown.deadline(), Some(t(0)));
    assert_eq!(captured(None, &only).deadline(), None);

    // Sets this process saw written (in any order): the one before the current is known.
    let sets = [set(2400, 6000), set(0, 3600), set(-2400, 1200)];
    assert_eq!(
        captured(Some(t(100)), &sets),
        Captured::Earlier {
            replaced_at: t(2400),
            expires: Some(t(3600))
        }
    );
    // Within the skew of a set: the earlier one counts.
    assert_eq!(captured(Some(t(2405)), &sets).deadline(), Some(t(3600)));
    assert_eq!(
        captured(Some(t(2500)), &sets),
        Captured::Current { expires: t(6000) }
    );
    assert!(
        captured(Some(t(100)), &sets)
            .describe()
            .contains("expire at 2027-01-15T09:00:00Z")
    );
}

fn uses(name: &str, uses: Vec<Use>, started: Option<i64>) -> PodUses {
    PodUses {
        namespace: "ns".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        node: None,
        terminating: false,
        containers: vec![ContainerUses {
            name: "c".into(),
            started_at: started.map(t),
            uses,
        }],
    }
}

#[test]
fn the_status_counts_pods_per_class_and_names_the_first_stale_ones() {
    let mount = |s: &str| Use::Mount { secret: s.into() };
    let env_from = |s: &str| Use::EnvFrom { secret: s.into() };
    let mut pods = vec![
        uses("vol-a", vec![mount("app")], Some(10)),
        uses("vol-b", vec![mount("app")], Some(10)),
        uses("other-secret", vec![env_from("db")], Some(10)),
    ];
    for i in (0..7).rev() {
        pods.push(uses(&format!("env-{i}"), vec![env_from("app")], Some(20)));
    }
    let mut elsewhere = uses("elsewhere", vec![env_from("app")], Some(20));
    elsewhere.namespace = "other".into();
    pods.push(elsewhere);
    let c = consumers(&pods, "ns", "app");
    assert_eq!(c.refreshing, 2);
    assert_eq!(c.stale.len(), 7);
    let s = status(&c);
    assert_eq!(s.refreshing, 2);
    assert_eq!(s.will_go_stale, 7);
    assert_eq!(s.stale_pods, ["env-0", "env-1", "env-2", "env-3", "env-4"]);
    assert_eq!(
        c.stale[0].deadline(&[CredentialSet::from(&issued())]),
        Some(t(3600))
    );
    assert_eq!(
        status(&consumers(&pods, "ns", "none")),
        ConsumersStatus::default()
    );
}

#[test]
fn a_stale_pod_is_warned_once_per_credential_set() {
    let i = issued();
    let c = consumers(
        &[uses(
            "env",
            vec![Use::EnvFrom {
                secret: "app".into(),
            }],
            Some(20),
        )],
        "ns",
        "app",
    );
    let pod = &c.stale[0];
    assert!(warning_due(pod, &i, None));
    assert!(!warning_due(pod, &i, Some(i.expiration)));
    // A new set: the pod still holds the old one.
    assert!(warning_due(pod, &i, Some(t(100))));
    let note = stale_note(pod, "app", &[CredentialSet::from(&i)]);
    assert!(
        note.contains("container c read envFrom (every key) of Secret app"),
        "{note}"
    );
    assert!(note.contains("expire at 2027-01-15T09:00:00Z"), "{note}");
    // Not started yet, or going away: nothing to warn about.
    let waiting = consumers(
        &[uses(
            "env",
            vec![Use::EnvFrom {
                secret: "app".into(),
            }],
            None,
        )],
        "ns",
        "app",
    );
    assert!(!warning_due(&waiting.stale[0], &i, None));
    let mut leaving = pod.clone();
    leaving.terminating = true;
    assert!(!warning_due(&leaving, &i, None));
}

#[test]
fn stale_pods_are_evicted_lead_time_before_what_they_hold_expires_once_a_newer_set_exists() {
    let lead = SignedDuration::from_mins(5);
    let env_from = vec![Use::EnvFrom {
        secret: "app".into(),
    }];
    let pods = [
        uses("old", env_from.clone(), Some(100)),
        uses("new", env_from.clone(), Some(2500)),
        uses("waiting", env_from, None),
    ];
    let c = consumers(&pods, "ns", "app");
    let [new, old, waiting] = [&c.stale[0], &c.stale[1], &c.stale[2]];
    let first = [set(0, 3600)];
    let renewed = [set(0, 3600), set(2400, 6000)];
    // Holding the set the Secret holds: a restart would capture the same.
    assert_eq!(restart(old, &first, lead, None, t(3500)), Restart::Nothing);
    // A newer set is written: lead time before the old one expires.
    assert_eq!(
        restart(old, &renewed, lead, None, t(2400)),
        Restart::At(t(3300))
    );
    assert_eq!(restart(old, &renewed, lead, None, t(3300)), Restart::Now);
    // Late (the operator was down): at once.
    assert_eq!(restart(old, &renewed, lead, None, t(4000)), Restart::Now);
    // Once per set: evicted for this deadline already.
    assert_eq!(
        restart(old, &renewed, lead, Some(t(3600)), t(3400)),
        Restart::Nothing
    );
    // A lead time longer than the renewal margin: as soon as the newer set is there.
    assert_eq!(
        restart(old, &renewed, SignedDuration::from_hours(2), None, t(2400)),
        Restart::Now
    );
    assert_eq!(
        restart(new, &renewed, lead, None, t(3400)),
        Restart::Nothing
    );
    assert_eq!(
        restart(waiting, &renewed, lead, None, t(3400)),
        Restart::Nothing
    );
    let mut leaving = old.clone();
    leaving.terminating = true;
    assert_eq!(
        restart(&leaving, &renewed, lead, None, t(3400)),
        Restart::Nothing
    );
    // What this process never saw written: at once.
    let unknown = uses(
        "unknown",
        vec![Use::SubPath {
            secret: "app".into(),
            path: "credentials".into(),
        }],
        Some(-100),
    );
    let unknown = &consumers(&[unknown], "ns", "app").stale[0];
    assert_eq!(restart(unknown, &first, lead, None, t(10)), Restart::Now);
}
