//! Prometheus metrics (`prometheus-client`, OpenMetrics text) and the HTTP endpoint on `metricsPort`
//! that serves them with `/healthz` (the process answers) and `/readyz` (cache synced, socket open, not
//! shutting down):
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `multus_cni_request_duration_seconds` | `verb` | latency of each CNI request, histogram |
//! | `multus_cni_requests_total` | `verb`, `code` | requests by CNI result (`0` success, else the error code) |
//! | `multus_cni_requests_in_flight` | | requests being served |
//! | `multus_api_requests_total` | `verb`, `outcome` | API requests (`GET`, `PATCH`, `POST`, `LIST`, `WATCH`...) by HTTP status or `error` |
//! | `multus_watch_cache_objects` | `resource` | objects in the watch cache |
//! | `multus_watch_cache_staleness_seconds` | `resource` | 0 while the watch is open, else since the API was last heard from |
//! | `multus_watch_restarts_total`, `multus_watch_relists_total` | `resource` | watches opened again; LISTs after 410 Gone |
//! | `multus_delegate_duration_seconds` | `type`, `verb`, `outcome` | each delegate verb (built-in or binary) |
//! | `multus_server_request_total` | `handler`, `code`, `method` | upstream's one counter, for its dashboards |

use crate::cache::{Resource, WatchCache};
use multus_core::cni::Command;
use multus_core::delegate::observe::DelegateObserver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// A label set with one `verb`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    /// The CNI verb.
    pub verb: String,
}

/// A CNI request's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The CNI verb.
    pub verb: String,
    /// `0` on success, else the CNI error code.
    pub code: String,
}

/// An API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// `GET`, `PUT`, `PATCH`, `POST`, `LIST`, `WATCH`.
    pub verb: String,
    /// The HTTP status, or `error` when none came.
    pub outcome: String,
}

/// A cached resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// `pods` or `network-attachment-definitions`.
    pub resource: String,
}

impl From<&str> for ResourceLabels {
    fn from(r: &str) -> Self {
        ResourceLabels {
            resource: r.to_string(),
        }
    }
}

/// A delegate verb.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DelegateLabels {
    /// The plugin type.
    pub r#type: String,
    /// The CNI verb.
    pub verb: String,
    /// `ok`, or the CNI error code.
    pub outcome: String,
}

/// Upstream's request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabels {
    /// The path.
    pub handler: String,
    /// The HTTP status.
    pub code: String,
    /// The HTTP method, lower case as promhttp writes it.
    pub method: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    /// See the module table.
    pub cni_duration: Histograms<VerbLabels>,
    /// See the module table.
    pub cni_results: Family<ResultLabels, Counter>,
    /// See the module table.
    pub in_flight: Gauge,
    /// See the module table.
    pub api_requests: Family<ApiLabels, Counter>,
    /// See the module table.
    pub cache_objects: Family<ResourceLabels, Gauge>,
    /// See the module table.
    pub cache_staleness: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    /// See the module table.
    pub watch_restarts: Family<ResourceLabels, Counter>,
    /// See the module table.
    pub relists: Family<ResourceLabels, Counter>,
    /// See the module table.
    pub delegate_duration: Histograms<DelegateLabels>,
    /// See the module table.
    pub server_requests: Family<HandlerLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered.
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            cni_duration: Family::new_with_constructor(latency),
            cni_results: Family::default(),
            in_flight: Gauge::default(),
            api_requests: Family::default(),
            cache_objects: Family::default(),
            cache_staleness: Family::default(),
            watch_restarts: Family::default(),
            relists: Family::default(),
            delegate_duration: Family::new_with_constructor(latency),
            server_requests: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "multus_cni_request_duration_seconds",
            "Latency of CNI requests from the shim, by verb",
            m.cni_duration.clone(),
        );
        r.register(
            "multus_cni_requests",
            "CNI requests by verb and CNI result code (0: success)",
            m.cni_results.clone(),
        );
        r.register(
            "multus_cni_requests_in_flight",
            "CNI requests being served",
            m.in_flight.clone(),
        );
        r.register(
            "multus_api_requests",
            "Kubernetes API requests by verb and HTTP status (error: no answer)",
            m.api_requests.clone(),
        );
        r.register(
            "multus_watch_cache_objects",
            "Objects in the watch cache",
            m.cache_objects.clone(),
        );
        r.register(
            "multus_watch_cache_staleness_seconds",
            "0 while the resource's watch is open, else seconds since the API was last heard from",
            m.cache_staleness.clone(),
        );
        r.register(
            "multus_watch_restarts",
            "Watches opened again",
            m.watch_restarts.clone(),
        );
        r.register(
            "multus_watch_relists",
            "LISTs after a 410 Gone",
            m.relists.clone(),
        );
        r.register(
            "multus_delegate_duration_seconds",
            "Latency of delegate verbs, by plugin type, verb and outcome",
            m.delegate_duration.clone(),
        );
        r.register(
            "multus_server_request",
            "Counter of HTTP requests (upstream's)",
            m.server_requests.clone(),
        );
        m
    }

    /// One finished CNI request.
    pub fn cni_request(&self, verb: &str, took: Duration, code: u32) {
        self.cni_duration
            .get_or_create(&VerbLabels {
                verb: verb.to_string(),
            })
            .observe(took.as_secs_f64());
        self.cni_results
            .get_or_create(&ResultLabels {
                verb: verb.to_string(),
                code: code.to_string(),
            })
            .inc();
    }

    /// One API request (the client's observer).
    pub fn api_request(&self, verb: &str, status: Option<u16>) {
        let outcome = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.api_requests
            .get_or_create(&ApiLabels {
                verb: verb.to_string(),
                outcome,
            })
            .inc();
    }

    /// The OpenMetrics text, with the cache's gauges as they are now.
    pub fn render(&self, cache: &WatchCache) -> String {
        for r in [Resource::Pods, Resource::Nads] {
            let l: ResourceLabels = r.label().into();
            let n = i64::try_from(cache.len(r)).unwrap_or(i64::MAX);
            self.cache_objects.get_or_create(&l).set(n);
            self.cache_staleness
                .get_or_create(&l)
                .set(cache.staleness(r).as_secs_f64());
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl DelegateObserver for Metrics {
    fn observed(&self, plugin_type: &str, command: Command, took: Duration, error: Option<u32>) {
        self.delegate_duration
            .get_or_create(&DelegateLabels {
                r#type: plugin_type.to_string(),
                verb: command.as_str().to_string(),
                outcome: error.map_or_else(|| "ok".to_string(), |c| c.to_string()),
            })
            .observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new();
        m.cni_request("ADD", Duration::from_millis(12), 0);
        m.api_request("PATCH", Some(200));
        m.api_request("GET", None);
        m.observed("macvlan", Command::Add, Duration::from_millis(3), None);
        let text = m.render(&WatchCache::default());
        for want in [
            "multus_cni_request_duration_seconds_bucket{le=\"0.016\",verb=\"ADD\"} 1",
            "multus_cni_requests_total{verb=\"ADD\",code=\"0\"} 1",
            "multus_api_requests_total{verb=\"GET\",outcome=\"error\"} 1",
            "multus_watch_cache_objects{resource=\"pods\"} 0",
            "multus_delegate_duration_seconds_count{type=\"macvlan\",verb=\"ADD\",outcome=\"ok\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }
}
