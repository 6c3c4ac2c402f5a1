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

#[cfg(test)]
mod tests {
    use super::*;

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
