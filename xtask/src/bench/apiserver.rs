//! What the benchmark learns from kube-apiserver itself: the requests it served and the watch
//! events it sent during a phase (from its metrics), and on request a CPU profile (from its pprof
//! endpoint). Time to Ready is bound by the apiserver on this machine, so this is the profile
//! that explains the ratio to the floor.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

use serde::Serialize;

/// Requests of one kind (`VERB resource[/subresource]`) or watch events of one kind.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct Served {
    pub what: String,
    pub count: f64,
    /// Summed request latency; 0 for watch events.
    pub seconds: f64,
}

/// Cumulative counters, keyed by what was served.
#[derive(Debug, Default, Clone)]
pub struct Counters(BTreeMap<String, (f64, f64)>);

fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    labels
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .unwrap_or("")
}

/// Parses the apiserver's Prometheus text: request counts and latency sums per verb and
/// resource, and watch events per kind.
pub fn parse(metrics: &str) -> Counters {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in metrics.lines() {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some((metric, labels)) = head.split_once('{') else {
            continue;
        };
        let labels = labels.trim_end_matches('}');
        let key = || {
            let resource = label(labels, "resource");
            match label(labels, "subresource") {
                "" => format!("{} {resource}", label(labels, "verb")),
                sub => format!("{} {resource}/{sub}", label(labels, "verb")),
            }
        };
        match metric {
            "apiserver_request_duration_seconds_count" => out.entry(key()).or_default().0 += value,
            "apiserver_request_duration_seconds_sum" => out.entry(key()).or_default().1 += value,
            "apiserver_watch_events_total" => {
                out.entry(format!("watch events {}", label(labels, "resource")))
                    .or_default()
                    .0 += value
            }
            _ => {}
        }
    }
    Counters(out)
}

impl Counters {
    /// What was served between `before` and `self`, busiest first.
    pub fn since(&self, before: &Counters) -> Vec<Served> {
        let mut out: Vec<Served> = self
            .0
            .iter()
            .map(|(what, (count, seconds))| {
                let (c0, s0) = before.0.get(what).copied().unwrap_or_default();
                Served {
                    what: what.clone(),
                    count: count - c0,
                    seconds: seconds - s0,
                }
            })
            .filter(|s| s.count >= 1.0)
            .collect();
        out.sort_by(|a, b| {
            b.seconds
                .total_cmp(&a.seconds)
                .then(b.count.total_cmp(&a.count))
        });
        out
    }
}

pub async fn counters(client: &kube::Client) -> anyhow::Result<Counters> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client
        .request_text(request)
        .await
        .context("reading kube-apiserver /metrics")?;
    Ok(parse(&text))
}

/// A CPU profile of the apiserver over the next `seconds`, written to `path` (pprof format; read
/// it with `go tool pprof -top <path>`).
pub async fn cpu_profile(client: &kube::Client, seconds: u64, path: &Path) -> anyhow::Result<()> {
    use futures::AsyncReadExt;
    let request =
        http::Request::get(format!("/debug/pprof/profile?seconds={seconds}")).body(Vec::new())?;
    let mut body = client
        .request_stream(request)
        .await
        .context("reading kube-apiserver /debug/pprof/profile")?;
    let mut bytes = Vec::new();
    body.read_to_end(&mut bytes).await?;
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Kinds of apiserver work, each with the frames that identify it on a sample's stack, in the
/// order they are tried: the first that matches takes the sample. Request handlers come before
/// what every request passes through (TLS, filters, the etcd client).
const PROFILE_SPLIT: [(&str, &[&str], &[&str]); 12] = [
    ("garbage collection", &["runtime.gcBgMarkWorker"], &[]),
    (
        "TokenRequest handler",
        &["TokenREST", "k8s.io/kubernetes/pkg/serviceaccount"],
        &[],
    ),
    (
        "binding create handler",
        &["crdHandler"],
        &["createHandler"],
    ),
    (
        "binding status patch/apply handler",
        &["crdHandler"],
        &["PatchResource", "patchResource", "UpdateResource"],
    ),
    ("other CRD handling", &["crdHandler"], &[]),
    ("Event handler", &["registry/core/event"], &[]),
    ("Secret create handler", &["createHandler"], &[]),
    (
        "watches",
        &[
            "dispatchEvent",
            "processEvent",
            "cacheWatcher",
            "serveWatch",
            "WatchServer",
            "watchCache",
            "eflector",
        ],
        &[],
    ),
    (
        "authentication (client certificates), TLS",
        &["crypto/tls", "crypto/x509"],
        &[],
    ),
    (
        "request filters",
        &[
            "filters.",
            "WithAuthentication",
            "WithAuthorization",
            "WithPriorityAndFairness",
            "WithAudit",
            "apiserver/pkg/server",
        ],
        &[],
    ),
    ("etcd client", &["etcd3", "go.etcd.io", "grpc"], &[]),
    ("metrics scrape", &["prometheus"], &[]),
];

/// Splits the CPU of a profile in `go tool pprof -raw` form by kind of work (see
/// `PROFILE_SPLIT`): seconds per kind, in that order, then "other".
pub fn split_raw_profile(raw: &str) -> Vec<(String, f64)> {
    let mut lines = raw.lines();
    let mut samples: Vec<(f64, Vec<u64>)> = Vec::new();
    // Samples: "<count> <nanoseconds>: <location ids>".
    for line in lines.by_ref() {
        if line.starts_with("Samples:") {
            break;
        }
    }
    for line in lines.by_ref() {
        if line.starts_with("Locations") {
            break;
        }
        let Some((values, ids)) = line.split_once(':') else {
            continue;
        };
        let Some(nanos) = values
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let ids = ids
            .split_whitespace()
            .filter_map(|id| id.parse().ok())
            .collect();
        samples.push((nanos / 1e9, ids));
    }
    // Locations: "<id>: 0x<addr> M=<n> <function> <file:line> s=<n>", then one indented line per
    // inlined function.
    let mut functions: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut current: Option<u64> = None;
    for line in lines {
        if !line.starts_with(' ') {
            break;
        }
        let trimmed = line.trim_start();
        match trimmed.split_once(": 0x") {
            Some((id, rest)) if id.bytes().all(|b| b.is_ascii_digit()) => {
                let id = id.parse().unwrap_or(0);
                let function = rest.split_whitespace().nth(2).unwrap_or("").to_string();
                functions.insert(id, vec![function]);
                current = Some(id);
            }
            _ => {
                if let (Some(id), Some(function)) = (current, trimmed.split_whitespace().next())
                    && let Some(list) = functions.get_mut(&id)
                {
                    list.push(function.to_string());
                }
            }
        }
    }
    let mut seconds = vec![0.0; PROFILE_SPLIT.len() + 1];
    for (value, ids) in &samples {
        let stack: Vec<&str> = ids
            .iter()
            .filter_map(|id| functions.get(id))
            .flatten()
            .map(String::as_str)
            .collect();
        let has = |frames: &[&str]| {
            frames
                .iter()
                .any(|f| stack.iter().any(|frame| frame.contains(f)))
        };
        let kind = PROFILE_SPLIT
            .iter()
            .position(|(_, all_of, one_of)| has(all_of) && (one_of.is_empty() || has(one_of)))
            .unwrap_or(PROFILE_SPLIT.len());
        seconds[kind] += value;
    }
    PROFILE_SPLIT
        .iter()
        .map(|(name, _, _)| *name)
        .chain(std::iter::once("other"))
        .map(String::from)
        .zip(seconds)
        .collect()
}

/// [`split_raw_profile`] of a pprof file (needs the Go toolchain).
pub fn split_profile(path: &Path) -> anyhow::Result<Vec<(String, f64)>> {
    let output = std::process::Command::new("go")
        .args(["tool", "pprof", "-raw"])
        .arg(path)
        .output()
        .context("cannot run `go tool pprof`")?;
    if !output.status.success() {
        anyhow::bail!(
            "go tool pprof -raw {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(split_raw_profile(&String::from_utf8_lossy(&output.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_profile_by_the_handler_on_the_stack() {
        let raw = [
            "PeriodType: cpu nanoseconds",
            "Samples:",
            "samples/count cpu/nanoseconds",
            "          2   20000000: 1 2 ",
            "          1   10000000: 3 4 5 ",
            "          1   10000000: 3 6 5 ",
            "          3   30000000: 7 ",
            "Locations",
            "     1: 0x1 M=1 runtime.scanObject runtime/mgc.go:1 s=1",
            "     2: 0x2 M=1 runtime.gcBgMarkWorker runtime/mgc.go:2 s=2",
            "     3: 0x3 M=1 encoding/json.Unmarshal json.go:1 s=1",
            "             k8s.io/apiserver/pkg/endpoints/handlers.CreateResource.createHandler.func1 create.go:1 s=1",
            "     4: 0x4 M=1 k8s.io/apiextensions-apiserver/pkg/apiserver.(*crdHandler).ServeHTTP h.go:1 s=1",
            "     5: 0x5 M=1 net/http.(*conn).serve server.go:1 s=1",
            "     6: 0x6 M=1 k8s.io/apiserver/pkg/registry/rest.BeforeCreate create.go:1 s=1",
            "     7: 0x7 M=1 syscall.Syscall syscall.go:1 s=1",
            "Mappings",
            "1: 0x0/0x0/0x0 kube-apiserver",
        ]
        .join("\n");
        let split: BTreeMap<String, f64> = split_raw_profile(&raw).into_iter().collect();
        let close = |what: &str, want: f64| (split[what] - want).abs() < 1e-9;
        assert!(close("garbage collection", 0.02), "{split:?}");
        assert!(close("binding create handler", 0.01), "{split:?}");
        assert!(close("Secret create handler", 0.01), "{split:?}");
        assert!(close("other", 0.03), "{split:?}");
        assert!(close("etcd client", 0.0), "{split:?}");
    }

    #[test]
    fn parses_requests_and_watch_events() {
        let before = parse(
            "apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"secrets\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 2\n\
             apiserver_request_duration_seconds_sum{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"secrets\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 0.5\n",
        );
        let after = parse(
            "# HELP x\n\
             apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"secrets\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 12\n\
             apiserver_request_duration_seconds_sum{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"secrets\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 1.5\n\
             apiserver_request_duration_seconds_count{group=\"\",resource=\"serviceaccounts\",subresource=\"token\",verb=\"POST\"} 10\n\
             apiserver_request_duration_seconds_sum{group=\"\",resource=\"serviceaccounts\",subresource=\"token\",verb=\"POST\"} 3\n\
             apiserver_watch_events_total{group=\"\",resource=\"secrets\",version=\"v1\"} 7\n",
        );
        assert_eq!(
            after.since(&before),
            vec![
                Served {
                    what: "POST serviceaccounts/token".into(),
                    count: 10.0,
                    seconds: 3.0
                },
                Served {
                    what: "POST secrets".into(),
                    count: 10.0,
                    seconds: 1.0
                },
                Served {
                    what: "watch events secrets".into(),
                    count: 7.0,
                    seconds: 0.0
                },
            ]
        );
    }
}
