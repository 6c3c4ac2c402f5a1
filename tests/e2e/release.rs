//! A release as a user gets it: pushed to a real OCI registry (the CNCF Distribution registry,
//! started inside the run's network namespace) by the steps `cargo xtask release` takes
//! (`podcreds_testenv::release`), then installed on a real node with
//! `helm install oci://<registry>/podcreds/charts/podcreds --version X`, the kubelet pulling the
//! image from the registry (containerd pointed at it by its hosts file, nothing imported by hand),
//! and upgraded the same way to a second version whose AWSRoleBinding CRD carries one more field
//! and printer column, which the cluster serves after `helm upgrade`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, JSONSchemaProps,
};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use podcreds_testenv::Options;
use podcreds_testenv::registry::{Registry, RegistryOptions};
use podcreds_testenv::release::{Publish, Tools, publish};
use serde_json::json;

use crate::support::{Env, spec};

/// The release `cargo xtask test` builds for this platform (binary, image index, CRDs, SBOM).
const RELEASE_DIR_VARIABLE: &str = "PODCREDS_RELEASE_DIR";
const RELEASE: &str = "podcreds";
const RELEASE_NAMESPACE: &str = "podcreds-system";
/// The field (and printer column) the second version's AWSRoleBinding CRD adds.
const ADDED_FIELD: &str = "releaseNote";
const ADDED_COLUMN: &str = "Note";

fn release_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os(RELEASE_DIR_VARIABLE)
        .map(PathBuf::from)
        .with_context(|| {
            format!(
                "{RELEASE_DIR_VARIABLE} is not set: run the suite through `cargo xtask test`, which builds the release for this platform"
            )
        })?;
    ensure!(dir.is_dir(), "{} does not exist", dir.display());
    Ok(dir)
}

/// The next patch version, as a pre-release: the second version of the test.
fn next_version(version: &str) -> anyhow::Result<String> {
    let core = version.split(['-', '+']).next().unwrap_or(version);
    let parts: Vec<u64> = core
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{version} is no semantic version"))?;
    ensure!(parts.len() == 3, "{version} is no semantic version");
    Ok(format!(
        "{}.{}.{}-upgrade-test",
        parts[0],
        parts[1],
        parts[2] + 1
    ))
}

/// The AWSRoleBinding CRD with one more optional field in the spec and a printer column showing
/// it, as a later release would add them.
fn binding_crd_with_added_field() -> anyhow::Result<CustomResourceDefinition> {
    let mut crd = podcreds::crds()
        .into_iter()
        .map(|(_, crd)| crd)
        .find(|crd| crd.spec.names.kind == "AWSRoleBinding")
        .context("no AWSRoleBinding CRD")?;
    let version = crd
        .spec
        .versions
        .first_mut()
        .context("a CRD without versions")?;
    let columns = version
        .additional_printer_columns
        .get_or_insert_with(Vec::new);
    let at = columns.len().saturating_sub(1);
    columns.insert(
        at,
        CustomResourceColumnDefinition {
            name: ADDED_COLUMN.into(),
            type_: "string".into(),
            json_path: format!(".spec.{ADDED_FIELD}"),
            ..CustomResourceColumnDefinition::default()
        },
    );
    let spec_schema = version
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .and_then(|s| s.properties.as_mut())
        .and_then(|p| p.get_mut("spec"))
        .and_then(|s| s.properties.as_mut())
        .context("the CRD has no spec schema")?;
    spec_schema.insert(
        ADDED_FIELD.into(),
        JSONSchemaProps {
            type_: Some("string".into()),
            description: Some("A note added by the second release of the upgrade test.".into()),
            max_length: Some(64),
            ..JSONSchemaProps::default()
        },
    );
    Ok(crd)
}

/// A copy of the chart whose AWSRoleBinding CRD template adds [`ADDED_FIELD`].
fn chart_with_added_field(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let chart = dir.join("podcreds");
    copy_dir(&crate::support::helm::chart_dir(), &chart)?;
    let template = chart.join("templates/crds/awsrolebindings.podcreds.dev.yaml");
    ensure!(template.is_file(), "{} is missing", template.display());
    std::fs::write(
        &template,
        podcreds::chart_crd_template(&binding_crd_with_added_field()?)?,
    )?;
    Ok(chart)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The images the operator's pods run (as their spec names them: the kubelet's status names an
/// image by the first tag the node knows for its digest, and both versions share one), and the
/// image IDs (`<repository>@<digest>`) the kubelet reports for them.
async fn operator_images(env: &Env) -> anyhow::Result<Vec<(String, String)>> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), RELEASE_NAMESPACE);
    let mut images = Vec::new();
    for pod in pods.list(&Default::default()).await?.items {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let statuses = pod
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default();
        for container in pod.spec.map(|s| s.containers).unwrap_or_default() {
            let id = statuses
                .iter()
                .find(|s| s.name == container.name)
                .map(|s| s.image_id.clone())
                .unwrap_or_default();
            images.push((container.image.unwrap_or_default(), id));
        }
    }
    Ok(images)
}

/// Checks that every operator pod runs `image`, pulled from the registry as `image_id`.
async fn ensure_pulled(env: &Env, image: &str, image_id: &str) -> anyhow::Result<()> {
    let running = operator_images(env).await?;
    ensure!(!running.is_empty(), "no operator pod runs");
    for (running_image, running_id) in &running {
        ensure!(
            running_image == image,
            "an operator pod runs {running_image}, not {image}"
        );
        ensure!(
            running_id == image_id,
            "the kubelet reports image {running_id}, not {image_id} as pushed"
        );
    }
    Ok(())
}

/// A binding with [`ADDED_FIELD`] set, created as raw JSON (the Rust type has no such field).
async fn create_with_added_field(
    env: &Env,
    ns: &str,
    name: &str,
    role: &str,
) -> anyhow::Result<DynamicObject> {
    let resource = ApiResource::erase::<podcreds::api::AWSRoleBinding>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), ns, &resource);
    let mut body = spec(role);
    body[ADDED_FIELD] = json!("from the second release");
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "podcreds.dev/v1alpha1",
        "kind": "AWSRoleBinding",
        "metadata": {"name": name},
        "spec": body,
    }))?;
    api.create(&PostParams::default(), &object).await?;
    Ok(api.get(name).await?)
}

async fn kubectl(env: &Env, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(podcreds_testenv::tools::binary("kubectl")?)
        .args(args)
        .env("KUBECONFIG", &env.plane.kubeconfig)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub async fn a_release_installs_and_upgrades_from_a_registry(_env: &Env) -> anyhow::Result<()> {
    let dist = release_dir()?;
    let first_version = env!("CARGO_PKG_VERSION");
    let archive = dist.join(format!("podcreds-{first_version}.oci.tar"));
    ensure!(
        archive.is_file(),
        "{} is missing: `cargo xtask test` builds it",
        archive.display()
    );
    let second_version = next_version(first_version)?;

    // A control plane with a node and a pod network, and no podcreds CRD: the chart installs it.
    let env = Env::start_without_crds(Options {
        node: true,
        pod_network: true,
        ..Options::default()
    })
    .await
    .context("starting a control plane with a node and a pod network")?;
    let node = env.plane.node().context("no node")?;
    let registry = Registry::start(env.plane.dir(), RegistryOptions::default()).await?;
    crate::register_log(registry.dir().join("registry.log"));
    node.trust_plain_http_registry(registry.host())?;
    let prefix = format!("{}/podcreds", registry.host());

    let helm_home = env.plane.dir().join("helm-home");
    let tools = Tools {
        helm: podcreds_testenv::tools::binary("helm")?,
        crane: podcreds_testenv::tools::CRANE.binary()?,
        helm_env: [
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ]
        .iter()
        .map(|(k, d)| {
            (
                k.to_string(),
                helm_home.join(d).to_string_lossy().into_owned(),
            )
        })
        .collect(),
    };
    let work = env.plane.dir().join("release");
    let chart_source = crate::support::helm::chart_dir();
    let first = publish(
        &tools,
        &Publish {
            image_archive: &archive,
            chart_source: &chart_source,
            registry: &prefix,
            version: first_version,
            plain_http: true,
            out_dir: &work.join("first"),
        },
    )?;

    // What the registry serves: an OCI image index with this platform's image, and the chart.
    let index = registry
        .manifest("podcreds/podcreds", first_version)
        .await?;
    ensure!(
        index["mediaType"] == "application/vnd.oci.image.index.v1+json",
        "the registry serves no image index for {}: {index}",
        first.image
    );
    let platforms: Vec<&str> = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["platform"]["architecture"].as_str())
        .collect();
    ensure!(platforms == ["amd64"], "platforms {platforms:?}");
    ensure!(
        registry
            .tags("podcreds/charts/podcreds")
            .await?
            .contains(&first_version.to_string()),
        "the chart is not in the registry"
    );
    ensure!(
        !node
            .images()?
            .iter()
            .any(|i| i.starts_with(&prefix) || i.contains("podcreds/podcreds")),
        "the node holds a podcreds image before anything was installed"
    );

    // helm install from the registry, nothing about the image given: the chart's default is the
    // registry's repository, and the kubelet pulls it.
    crate::support::node::restricted_namespace(&env, RELEASE_NAMESPACE).await?;
    let network_values = crate::support::node::chart_network_values(&env).await?;
    let install = |verb: &'static str, version: String| {
        let mut args: Vec<String> = [
            verb,
            RELEASE,
            first.chart.as_str(),
            "--version",
            version.as_str(),
            "--plain-http",
            "--namespace",
            RELEASE_NAMESPACE,
            "--set",
            "operator.allowInsecureStsEndpoints=true",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for value in &network_values {
            args.extend(["--set-string".to_string(), value.clone()]);
        }
        args
    };
    let args = install("install", first_version.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = crate::support::helm::helm(&env, &args).await?;
    ensure!(ok, "helm install {} failed:\n{out}\n{err}", first.chart);
    crate::support::node::wait_rolled_out(&env, RELEASE_NAMESPACE, "podcreds", 2).await?;
    let repository = format!("{prefix}/podcreds");
    ensure_pulled(
        &env,
        &format!("{repository}:{first_version}"),
        &format!("{repository}@{}", first.image_digest),
    )
    .await?;

    // The chart owns the CRDs, kept on uninstall.
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    let binding_crd = crds.get("awsrolebindings.podcreds.dev").await?;
    let metadata = &binding_crd.metadata;
    ensure!(
        metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("meta.helm.sh/release-name"))
            .is_some_and(|r| r == RELEASE)
            && metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("helm.sh/resource-policy"))
                .is_some_and(|p| p == "keep"),
        "the CRD is not the release's, kept on uninstall: {:?}",
        metadata.annotations
    );

    let (app_ns, role) = env.app_namespace("release-app", None).await?;
    env.create_ready(&app_ns, "first", spec(&role), Duration::from_secs(90))
        .await?;
    // The first version does not know the field: the apiserver drops it.
    let before = create_with_added_field(&env, &app_ns, "before", &role).await?;
    ensure!(
        before.data["spec"].get(ADDED_FIELD).is_none(),
        "the first version's CRD kept {ADDED_FIELD}: {}",
        before.data
    );

    // The second version: its CRD template adds the field and a printer column; the same image
    // under the new tag.
    let second_chart = chart_with_added_field(&work.join("second-chart"))?;
    let second = publish(
        &tools,
        &Publish {
            image_archive: &archive,
            chart_source: &second_chart,
            registry: &prefix,
            version: &second_version,
            plain_http: true,
            out_dir: &work.join("second"),
        },
    )?;
    let args = install("upgrade", second_version.clone());
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The user's values, the new chart's defaults (README, Upgrading).
    args.push("--reset-then-reuse-values");
    let (ok, out, err) = crate::support::helm::helm(&env, &args).await?;
    ensure!(ok, "helm upgrade to {second_version} failed:\n{out}\n{err}");
    crate::support::node::wait_rolled_out(&env, RELEASE_NAMESPACE, "podcreds", 2).await?;
    ensure_pulled(
        &env,
        &format!("{repository}:{second_version}"),
        &format!("{repository}@{}", second.image_digest),
    )
    .await?;

    // The upgraded CRD serves the field and shows the column.
    let after = create_with_added_field(&env, &app_ns, "after", &role).await?;
    ensure!(
        after.data["spec"][ADDED_FIELD] == "from the second release",
        "after helm upgrade the field is not served: {}",
        after.data
    );
    let upgraded = crds.get("awsrolebindings.podcreds.dev").await?;
    let columns: Vec<String> = upgraded
        .spec
        .versions
        .iter()
        .flat_map(|v| v.additional_printer_columns.clone().unwrap_or_default())
        .map(|c| c.name)
        .collect();
    ensure!(
        columns.iter().any(|c| c == ADDED_COLUMN),
        "the upgraded CRD has no {ADDED_COLUMN} column: {columns:?}"
    );
    let table = kubectl(&env, &["get", "awsrolebindings", "-n", &app_ns, "after"]).await?;
    ensure!(
        table.lines().next().is_some_and(|h| h.contains("NOTE"))
            && table.contains("from the second release"),
        "kubectl get does not show the new column:\n{table}"
    );
    // The upgraded operator serves bindings, those with the new field too.
    env.wait_ready(&app_ns, "after", "True", Duration::from_secs(90))
        .await?;
    env.create_ready(&app_ns, "second", spec(&role), Duration::from_secs(90))
        .await?;

    // Uninstall: the operator goes, the CRDs, the bindings and their Secrets stay.
    let (ok, out, err) = crate::support::helm::helm(
        &env,
        &["uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE],
    )
    .await?;
    ensure!(ok, "helm uninstall failed:\n{out}\n{err}");
    crate::support::node::ensure_crds_kept(&env).await?;
    for name in ["first", "second", "after"] {
        env.bindings(&app_ns)
            .get_opt(name)
            .await?
            .with_context(|| format!("binding {name} is gone after helm uninstall"))?;
        env.secret_data(&app_ns, name)
            .await
            .with_context(|| format!("Secret {name} is gone after helm uninstall"))?;
    }
    println!(
        "  release: {} ({}) and {} pushed to {}, installed with helm install {} --version {first_version}, upgraded to {second_version} (image pulled by the kubelet each time, {ADDED_FIELD} served after the upgrade), uninstall kept CRDs, bindings and Secrets",
        first.image,
        first.image_digest,
        second.image,
        registry.host(),
        first.chart
    );
    Ok(())
}

/// The tests of this module, in the order the suite runs them.
pub const TESTS: &[(&str, crate::TestFn)] = tests![release:
    a_release_installs_and_upgrades_from_a_registry,
];
