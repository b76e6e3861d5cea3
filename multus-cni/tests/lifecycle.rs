//! A node's whole Multus lifecycle through the built binary, as root in real network namespaces, with the
//! loopback HTTPS API server stand-in as the cluster: `multus install` into a temp CNI conf dir holding the
//! primary network (reference bridge + host-local), pods with a secondary network (the user's macvlan NAD)
//! made through the config the runtime picks, `multus uninstall`, new pods on the primary network alone,
//! then the old pods deleted with the config the runtime cached for them (the Multus conflist, whose
//! kubeconfig is gone by then). The runtime is played as libcni does: the alphabetically first config in the
//! conf dir, each plugin of the list run from the bin dir with the list's name and cniVersion injected.

mod support;

use multus_core::cni::{CniArgs, CniResult, Command as Verb, NetworkConfig};
use multus_core::delegate::{chain, Context, Registry};
use multus_testsupport::api_server::TestApiServer;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// What the container runtime keeps of one pod sandbox: the config it ran ADD with and the result.
struct Sandbox {
    name: String,
    cid: String,
    ns: Option<Netns>,
    netns_path: PathBuf,
    conf_file: PathBuf,
    net: NetworkConfig,
    result: CniResult,
}

struct Node {
    dir: tempfile::TempDir,
    conf_dir: PathBuf,
    bin_dir: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Node {
    /// The config the runtime uses: the alphabetically first `.conf`/`.conflist`/`.json` (libcni's order).
    fn runtime_config(&self) -> (PathBuf, NetworkConfig) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.conf_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|x| x.to_str()),
                        Some("conf" | "conflist" | "json")
                    )
            })
            .collect();
        files.sort();
        let first = files
            .into_iter()
            .next()
            .expect("no CNI config in the conf dir");
        let net = NetworkConfig::from_slice(&std::fs::read(&first).unwrap()).unwrap();
        (first, net)
    }

    /// A runtime-side context: plugins only from the bin dir (no built-in: the runtime runs binaries).
    fn ctx(&self, verb: Verb, pod: &str, cid: &str, netns: Option<PathBuf>) -> Context {
        let mut reg = Registry::new();
        reg.set_bin_dirs(vec![self.bin_dir.clone()])
            .set_timeout(Duration::from_secs(60));
        let mut ctx = Context::new(verb, cid, netns, "eth0", Arc::new(reg));
        ctx.args = CniArgs::parse(&format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID=uid-{pod}"
        ))
        .unwrap();
        ctx.cni_path = vec![self.bin_dir.clone()];
        ctx
    }

    /// RunPodSandbox: a netns, then ADD with the config the runtime picks now.
    fn create_pod(&self, api: &TestApiServer, annotation: Option<&str>) -> Sandbox {
        let name = unique("pod-");
        let ann: Vec<(&str, &str)> = annotation
            .map(|a| vec![("k8s.v1.cni.cncf.io/networks", a)])
            .unwrap_or_default();
        api.add_pod("default", &name, &format!("uid-{name}"), &ann);
        let ns = Netns::new("lc");
        let cid = unique("lc");
        let (conf_file, net) = self.runtime_config();
        let ctx = self.ctx(Verb::Add, &name, &cid, Some(ns.path()));
        let result = self
            .rt
            .block_on(chain::add(&ctx, &net, &Map::new()))
            .unwrap_or_else(|e| panic!("ADD of {name} with {}: {e:?}", conf_file.display()));
        Sandbox {
            name,
            cid,
            netns_path: ns.path(),
            ns: Some(ns),
            conf_file,
            net,
            result,
        }
    }

    /// StopPodSandbox: DEL with the config and result the runtime cached at ADD.
    fn delete_pod(&self, s: &Sandbox) {
        let netns = s.ns.as_ref().map(|_| s.netns_path.clone());
        let ctx = self.ctx(Verb::Del, &s.name, &s.cid, netns);
        self.rt
            .block_on(chain::del(&ctx, &s.net, &Map::new(), Some(&s.result)))
            .unwrap_or_else(|e| panic!("DEL of {} with {}: {e:?}", s.name, s.conf_file.display()));
    }

    fn reservations(&self) -> Vec<String> {
        reservations(&self.dir.path().join("ipam"))
    }

    fn cache_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join("multus-cache"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn links_on_bridge(bridge: &str) -> Vec<String> {
    let v: Vec<Value> = serde_json::from_str(&sh(&["ip", "-j", "link", "show", "master", bridge]))
        .unwrap_or_default();
    v.iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

fn sorted_links(ns: &Netns) -> Vec<String> {
    let mut l = ns.link_names();
    l.sort();
    l
}

#[test]
fn install_pods_uninstall_new_pods_then_old_pods_deleted_from_the_cache() {
    require_root();
    let reference = reference_dir();
    let api = TestApiServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = dir.path().join("net.d");
    let bin_dir = dir.path().join("bin");
    let sa = dir.path().join("sa");
    for d in [&conf_dir, &bin_dir, &sa] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The node's bin dir: the reference plugins (multus is copied in by install).
    for e in std::fs::read_dir(&reference).unwrap().flatten() {
        std::os::unix::fs::symlink(e.path(), bin_dir.join(e.file_name())).unwrap();
    }
    // The service account the DaemonSet pod would have, for the test API server.
    std::fs::write(sa.join("token"), api.token()).unwrap();
    std::fs::write(sa.join("ca.crt"), api.ca_pem()).unwrap();
    let master = HostLink::veth("lcm");
    let bridge = HostLink::bridge_name("lcbr");
    let octet = std::process::id() % 200 + 20;
    let primary = json!({"cniVersion": "1.0.0", "name": "podnet", "plugins": [
        {"type": "bridge", "bridge": bridge.0, "isGateway": false,
         "ipam": {"type": "host-local", "subnet": format!("10.{octet}.9.0/24"), "dataDir": dir.path().join("ipam")}}]});
    std::fs::write(conf_dir.join("10-podnet.conflist"), primary.to_string()).unwrap();
    api.add_nad(
        "default",
        "macvlan-conf",
        &json!({"cniVersion": "0.3.0", "type": "macvlan", "master": master.0, "mode": "bridge",
                "ipam": {"type": "host-local", "subnet": "192.168.1.0/24", "rangeStart": "192.168.1.200",
                         "rangeEnd": "192.168.1.216", "routes": [{"dst": "0.0.0.0/0"}],
                         "gateway": "192.168.1.1", "dataDir": dir.path().join("ipam")}})
        .to_string(),
        &[],
    );
    let node = Node {
        conf_dir: conf_dir.clone(),
        bin_dir: bin_dir.clone(),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        dir,
    };
    let kubeconfig = conf_dir.join("multus.d/multus.kubeconfig");

    // 1. multus install, as the DaemonSet container runs it (host paths = container paths here).
    let out = std::process::Command::new(multus_bin())
        .arg("install")
        .arg("--cni-conf-dir")
        .arg(&conf_dir)
        .arg("--cni-bin-dir")
        .arg(&bin_dir)
        .arg("--service-account-dir")
        .arg(&sa)
        .arg("--multus-kubeconfig-file-host")
        .arg(&kubeconfig)
        .arg("--additional-bin-dir")
        .arg(&reference)
        .arg("--multus-cni-dir")
        .arg(node.dir.path().join("multus-cache"))
        .args(["--multus-log-level", "debug", "--once"])
        .env_remove("CNI_COMMAND")
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", api.addr().port().to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bin_dir.join("multus").is_file() && kubeconfig.is_file());
    let (first, _) = node.runtime_config();
    assert_eq!(first, conf_dir.join("00-multus.conflist"));

    // 2. Pods with the user's secondary network, through the Multus conflist the runtime now picks.
    let mut old: Vec<Sandbox> = (0..2)
        .map(|_| node.create_pod(&api, Some("macvlan-conf")))
        .collect();
    for s in &old {
        assert_eq!(s.conf_file, first);
        let ns = s.ns.as_ref().unwrap();
        assert_eq!(sorted_links(ns), ["eth0", "lo", "net1"]);
        let status = api.network_status("default", &s.name).unwrap();
        assert_eq!(status[1]["name"], "default/macvlan-conf", "{status}");
        assert_eq!(
            ns.addrs("net1")[0].trim_end_matches("/24"),
            status[1]["ips"][0].as_str().unwrap()
        );
    }
    assert_eq!(node.reservations().len(), 4, "{:?}", node.reservations());
    assert_eq!(links_on_bridge(&bridge.0).len(), 2);

    // 3. multus uninstall: the kubeconfig goes; with pods cached, the Multus config stays, retiring.
    let out = std::process::Command::new(multus_bin())
        .args(["uninstall", "--cni-conf-dir"])
        .arg(&conf_dir)
        .env_remove("CNI_COMMAND")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!kubeconfig.exists());
    let retiring: Value =
        serde_json::from_slice(&std::fs::read(conf_dir.join("00-multus.conflist")).unwrap())
            .unwrap();
    assert!(retiring["plugins"][0]["retiring"].is_object(), "{retiring}");
    assert_eq!(node.runtime_config().0, conf_dir.join("00-multus.conflist"));

    // 4. New pods (even annotated: nothing reads annotations any more) get the primary network alone
    //    through the retiring config, and are deleted cleanly.
    let new: Vec<Sandbox> = [None, Some("macvlan-conf")]
        .into_iter()
        .map(|a| node.create_pod(&api, a))
        .collect();
    for s in &new {
        assert_eq!(s.conf_file, conf_dir.join("00-multus.conflist"));
        assert_eq!(sorted_links(s.ns.as_ref().unwrap()), ["eth0", "lo"]);
    }
    assert_eq!(node.reservations().len(), 6);
    for s in &new {
        node.delete_pod(s);
        assert_eq!(sorted_links(s.ns.as_ref().unwrap()), ["lo"]);
    }
    assert_eq!(node.reservations().len(), 4);

    // 5. The old pods are deleted with the config the runtime cached for them: the runtime runs `multus`
    //    (still in the bin dir) with the old conflist, whose kubeconfig is gone; DEL works from the
    //    attachment cache. One pod's API object and netns are already gone, as after a node reboot.
    api.delete_pod("default", &old[1].name);
    old[1].ns = None;
    for s in &old {
        node.delete_pod(s);
        if let Some(ns) = &s.ns {
            assert_eq!(sorted_links(ns), ["lo"]);
        }
    }
    // A repeated DEL (runtimes retry) succeeds too.
    node.delete_pod(&old[0]);

    // Nothing is left: no IP reserved, no attachment cached, no veth on the bridge, the master untouched.
    assert!(
        node.reservations().is_empty(),
        "IPs left: {:?}",
        node.reservations()
    );
    assert!(
        node.cache_entries().is_empty(),
        "cache left: {:?}",
        node.cache_entries()
    );
    assert!(
        links_on_bridge(&bridge.0).is_empty(),
        "veths left on the bridge: {:?}",
        links_on_bridge(&bridge.0)
    );
    assert!(host_link_exists(&master.0));
}
