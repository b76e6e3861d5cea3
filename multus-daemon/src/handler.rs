//! One `POST /cni` request: upstream's request JSON to a [`CniEnv`] and a Multus config (the shim's config
//! with the daemon config laid over it, as upstream's server does), then the one meta-plugin flow,
//! [`Meta`], with the watch cache in front of the API and a pooled API client; the answer in upstream's
//! response JSON. Requests for one pod wait for each other ([`PodLocks`]); others run in parallel.

use crate::Daemon;
use multus_cni::meta::conf::MultusConf;
use multus_cni::meta::{Meta, PodArgs, PodSource};
use multus_cni::shim::protocol::{Request, Response};
use multus_core::cni::{CniEnv, CniError, CniResult, Command};
use multus_k8s::cache::PodCache;
use multus_k8s::client::{Client, ClientConfig};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OwnedMutexGuard;

/// What a request answers: the HTTP status and body.
pub type Answer = (u16, Vec<u8>);

/// Idle API clients (each with its kept-alive connection), reused across requests.
pub struct ClientPool {
    cfg: ClientConfig,
    idle: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for ClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPool")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl ClientPool {
    /// The most idle clients kept.
    const KEEP: usize = 16;

    /// A pool of clients of `cfg`.
    pub fn new(cfg: ClientConfig) -> Self {
        ClientPool {
            cfg,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A new client (not from the pool), e.g. for a reflector.
    pub fn fresh(&self) -> Client {
        Client::new(self.cfg.clone())
    }

    fn take(&self, timeout: Duration) -> Client {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut c = idle.unwrap_or_else(|| self.fresh());
        c.set_request_timeout(timeout);
        c
    }

    fn put(&self, c: Client) {
        if let Ok(mut v) = self.idle.lock() {
            if v.len() < Self::KEEP {
                v.push(c);
            }
        }
    }
}

/// One lock per pod (or container, without pod arguments), held while its request runs.
#[derive(Debug, Default)]
pub struct PodLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// A held pod lock; released (and forgotten when nobody waits) on drop.
pub struct PodGuard {
    guard: Option<OwnedMutexGuard<()>>,
    key: String,
    locks: Arc<PodLocks>,
}

impl PodLocks {
    /// Waits for `key`'s lock.
    pub async fn lock(self: &Arc<Self>, key: String) -> PodGuard {
        let m = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        PodGuard {
            guard: Some(m.lock_owned().await),
            key,
            locks: self.clone(),
        }
    }

    /// How many keys are held or waited for.
    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for PodGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// The Multus config of a request: the shim's, with the daemon config's keys over it (without
/// `readinessindicatorfile` when the daemon generated the config and watches that file itself), and
/// `kubeconfig` set so that the flow runs in Kubernetes mode (the API client is the daemon's).
pub fn request_config(d: &Daemon, shim_conf: &[u8]) -> Result<Vec<u8>, CniError> {
    let mut m: Map<String, Value> = match serde_json::from_slice(shim_conf) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(CniError::decoding(
                "the config of the request is not a JSON object",
            ))
        }
    };
    let auto = d.cfg.is_auto();
    if auto {
        m.remove("readinessindicatorfile");
    }
    for (k, v) in &d.cfg.raw {
        if !(auto && k == "readinessindicatorfile") {
            m.insert(k.clone(), v.clone());
        }
    }
    if !m.contains_key("kubeconfig") {
        m.insert(
            "kubeconfig".into(),
            Value::String(d.kubeconfig_label.clone()),
        );
    }
    serde_json::to_vec(&Value::Object(m)).map_err(|e| CniError::io(e.to_string()))
}

/// The result as the response carries it: CNI 1.0.0 as upstream's daemon sends it (1.1.0 kept).
fn wire_result(v: Value, version: &str) -> Result<Value, CniError> {
    if version == "1.1.0" {
        return Ok(v);
    }
    CniResult::from_value(&v)?.to_value("1.0.0")
}

fn error_answer(e: &CniError, version: &str) -> Answer {
    (400, e.to_json(version).to_string().into_bytes())
}

/// Serves one `/cni` request body; the verb (for metrics) and the answer.
pub async fn cni(d: &Arc<Daemon>, body: &[u8]) -> (String, Answer) {
    let req: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let e = CniError::decoding(format!("the request is not upstream's CNI request: {e}"));
            return ("unknown".into(), error_answer(&e, "1.0.0"));
        }
    };
    let verb = req.env.get("CNI_COMMAND").cloned().unwrap_or_default();
    let version = multus_core::skel::error_version(&req.config);
    let answer = match run(d, &req).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(command = %verb, "{e}");
            error_answer(&e, &version)
        }
    };
    (verb, answer)
}

async fn run(d: &Arc<Daemon>, req: &Request) -> Result<Answer, CniError> {
    let mut vars: HashMap<String, String> = req
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Upstream's daemon never reads CNI_PATH (plugins come from binDir): do not require one.
    vars.entry("CNI_PATH".into())
        .or_insert_with(|| multus_cni::meta::conf::DEFAULT_BIN_DIR.into());
    let env = CniEnv::from_vars(&vars)?;
    if env.command == Command::Version {
        let v = multus_core::cni::VersionInfo::reply(&req.config);
        return Ok((200, serde_json::to_vec(&v).unwrap_or_default()));
    }
    let conf = MultusConf::parse(&request_config(d, &req.config)?)?;
    let key = match PodArgs::from_env(&env) {
        Some(p) => format!("{}/{}", p.namespace, p.name),
        None => env.container_id.clone(),
    };
    let _held = d.locks.lock(key).await;
    let source = PodSource::Api {
        kubeconfig: conf.kubeconfig.clone().unwrap_or_default().into(),
        request_timeout: conf.api_request_timeout,
        client: Some(Box::new(d.pool.take(conf.api_request_timeout))),
        cache: Some(d.cache.clone() as Arc<dyn PodCache>),
    };
    let mut meta = Meta::new(&env, &conf, source);
    let out = meta.run().await;
    if let PodSource::Api {
        client: Some(c), ..
    } = meta.into_source()
    {
        d.pool.put(*c);
    }
    match out? {
        Some(v) => {
            let resp = Response {
                result: Some(wire_result(v, &conf.cni_version)?),
            };
            Ok((200, serde_json::to_vec(&resp).unwrap_or_default()))
        }
        None => Ok((200, Vec::new())),
    }
}

/// Runs `f` as one request in flight: counted for the drain at SIGTERM and in the metrics.
pub async fn in_flight<F: std::future::Future<Output = (String, Answer)>>(
    d: &Arc<Daemon>,
    handler: &str,
    f: F,
) -> Answer {
    let _token = d.begin();
    d.metrics.in_flight.inc();
    let t = Instant::now();
    let (verb, (status, body)) = f.await;
    d.metrics.in_flight.dec();
    let code = if status == 200 {
        0
    } else {
        CniError::from_json(&body).map_or(999, |e| e.code.code())
    };
    d.metrics.cni_request(&verb, t.elapsed(), code);
    d.metrics
        .server_requests
        .get_or_create(&crate::metrics::HandlerLabels {
            handler: handler.to_string(),
            code: status.to_string(),
            method: "post".into(),
        })
        .inc();
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One pod's requests wait for each other, other pods' do not; a key is forgotten once released.
    #[test]
    fn one_pods_requests_are_ordered_others_run_alongside() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let locks = Arc::new(PodLocks::default());
            let held = locks.lock("ns/a".into()).await;
            // Another pod is not held up.
            let other =
                tokio::time::timeout(Duration::from_millis(100), locks.lock("ns/b".into())).await;
            assert!(other.is_ok());
            drop(other);
            // The same pod waits until the first request is done.
            let l2 = locks.clone();
            let second = tokio::spawn(async move { l2.lock("ns/a".into()).await });
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(!second.is_finished());
            drop(held);
            let g = tokio::time::timeout(Duration::from_secs(1), second)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(locks.len(), 1);
            drop(g);
            assert!(locks.is_empty());
        });
    }

    #[test]
    fn results_go_as_cni_1_0_0_unless_1_1_0() {
        let v = serde_json::json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.2/24"}]});
        assert_eq!(
            wire_result(v.clone(), "0.3.1").unwrap()["cniVersion"],
            "1.0.0"
        );
        let v11 = serde_json::json!({"cniVersion": "1.1.0", "ips": []});
        assert_eq!(wire_result(v11, "1.1.0").unwrap()["cniVersion"], "1.1.0");
    }
}
