//! What the two modes of the meta-plugin once did differently, now one flow: each behaviour through the
//! built binary in both modes, as root in real network namespaces. The pod gets eth0 from the reference
//! bridge ("podnet"), net1 from the user's macvlan config and net2 from a "flaky" plugin (a script whose
//! first DEL of a container fails) — as `delegates` in the kubeconfig-less mode, as clusterNetwork + NADs
//! against the HTTPS API stand-in in the Kubernetes mode.

mod support;

use multus_testsupport::api_server::{KubeconfigAuth, TestApiServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use support::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Delegates,
    Kubernetes,
}

const MODES: [Mode; 2] = [Mode::Delegates, Mode::Kubernetes];

/// The flaky plugin: ADD records its CNI_ARGS and answers an empty result; the first DEL of each container
/// fails (code 11), the next ones succeed.
const FLAKY: &str = r#"#!/bin/sh
d=$(dirname "$0")
cat >/dev/null
case "$CNI_COMMAND" in
ADD) echo "$CNI_ARGS" > "$d/args-$CNI_CONTAINERID"; echo '{"cniVersion":"1.0.0"}' ;;
DEL) if [ -e "$d/del-$CNI_CONTAINERID" ]; then exit 0; fi
     touch "$d/del-$CNI_CONTAINERID"
     echo '{"cniVersion":"1.0.0","code":11,"msg":"flaky: the first DEL fails"}'; exit 1 ;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}' ;;
esac
"#;

struct Node {
    mode: Mode,
    api: TestApiServer,
    ns: Netns,
    _master: HostLink,
    _bridge: HostLink,
    dir: tempfile::TempDir,
    conf: Value,
    cid: String,
    pod: String,
}

static N: AtomicU32 = AtomicU32::new(0);

fn node(mode: Mode, extra: Value) -> Node {
    require_root();
    reference_dir();
    let api = TestApiServer::start().unwrap();
    let ns = Netns::new("md");
    let master = HostLink::veth("mdm");
    let bridge = HostLink::bridge_name("mdbr");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("flaky"), FLAKY).unwrap();
    sh(&["chmod", "755", &bin.join("flaky").display().to_string()]);
    let octet = (std::process::id() % 100 + 100 + N.fetch_add(1, Ordering::SeqCst)) % 250;
    let ipam = dir.path().join("ipam");
    let podnet = json!({"cniVersion":"1.0.0","name":"podnet","type":"bridge","bridge":bridge.0,
        "ipam":{"type":"host-local","subnet":format!("10.{octet}.9.0/24"),"dataDir":ipam}});
    let macvlan = json!({"cniVersion":"1.0.0","name":"macvlan-conf","type":"macvlan","master":master.0,
        "ipam":{"type":"host-local","subnet":format!("10.{octet}.10.0/24"),"dataDir":ipam}});
    let flaky = json!({"cniVersion":"1.0.0","name":"flaky-conf","type":"flaky"});
    let mut conf = json!({
        "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "binDir": format!("{}:/usr/lib/cni", bin.display()), "cniDir": dir.path().join("cache"),
        "deviceInfoDir": dir.path().join("devinfo"), "logLevel": "debug",
    });
    let pod = unique("pod-");
    match mode {
        Mode::Delegates => conf["delegates"] = json!([podnet, macvlan, flaky]),
        Mode::Kubernetes => {
            let conf_dir = dir.path().join("net.d");
            std::fs::create_dir_all(&conf_dir).unwrap();
            std::fs::write(conf_dir.join("10-podnet.conf"), podnet.to_string()).unwrap();
            api.add_nad("default", "macvlan-conf", &macvlan.to_string(), &[]);
            api.add_nad("default", "flaky-conf", &flaky.to_string(), &[]);
            let ann = [("k8s.v1.cni.cncf.io/networks", "macvlan-conf,flaky-conf")];
            api.add_pod("default", &pod, &format!("uid-{pod}"), &ann);
            let kc = api
                .write_kubeconfig(&dir.path().join("kube"), KubeconfigAuth::Token)
                .unwrap();
            conf["kubeconfig"] = json!(kc);
            conf["clusterNetwork"] = json!("podnet");
            conf["confDir"] = json!(conf_dir);
            conf["apiRetryTimeout"] = json!(1);
        }
    }
    for (k, v) in extra.as_object().unwrap() {
        conf[k] = v.clone();
    }
    Node {
        mode,
        api,
        ns,
        _master: master,
        _bridge: bridge,
        dir,
        conf,
        cid: unique("md"),
        pod,
    }
}

impl Node {
    fn run(&self, command: &str, conf: &Value) -> Run {
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID=uid-{}",
            self.pod, self.cid, self.pod
        );
        let netns = self.ns.path().display().to_string();
        let mut vars = vec![
            ("CNI_COMMAND", command),
            ("CNI_PATH", "/usr/lib/cni"),
            ("CNI_ARGS", args.as_str()),
        ];
        if command != "GC" && command != "STATUS" {
            vars.extend([
                ("CNI_CONTAINERID", self.cid.as_str()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", netns.as_str()),
            ]);
        }
        run_plugin(&multus_bin(), &vars, conf.to_string().as_bytes())
    }

    fn cache_file(&self) -> PathBuf {
        self.dir
            .path()
            .join("cache")
            .join(format!("{}@eth0.json", self.cid))
    }

    fn reservations(&self) -> Vec<String> {
        reservations(&self.dir.path().join("ipam"))
    }

    fn gc_conf(&self, valid: Value) -> Value {
        let mut gc = self.conf.clone();
        gc["cniVersion"] = json!("1.1.0");
        gc["cni.dev/valid-attachments"] = valid;
        gc
    }

    /// Attached: eth0, net1, net2 (the flaky plugin makes no link), two IPs reserved, a cache entry.
    fn add(&self) {
        self.run("ADD", &self.conf).ok();
        let mut names = self.ns.link_names();
        names.sort();
        assert_eq!(names, ["eth0", "lo", "net1"], "{:?}", self.mode);
        assert_eq!(self.reservations().len(), 2, "{:?}", self.mode);
        assert!(self.cache_file().exists(), "{:?}", self.mode);
    }

    fn assert_clean(&self) {
        self.assert_clean_but(0);
    }

    /// Clean, but for `others` reservations that belong to other pods.
    fn assert_clean_but(&self, others: usize) {
        assert_eq!(self.ns.link_names(), ["lo"], "{:?}: links left", self.mode);
        assert!(
            self.reservations().len() == others,
            "{:?}: IPs left: {:?}",
            self.mode,
            self.reservations()
        );
        assert!(!self.cache_file().exists(), "{:?}: cache left", self.mode);
    }
}

/// `retryDeleteOnError` is read by every DEL and by GC: the flaky plugin's failed first DEL is retried
/// within the same invocation. Without it the DEL fails, the cache stays, and the next DEL finishes.
#[test]
fn retry_delete_on_error_in_del_and_gc() {
    for mode in MODES {
        let n = node(mode, json!({"retryDeleteOnError": true}));
        n.add();
        n.run("DEL", &n.conf).ok();
        n.assert_clean();

        let n = node(mode, json!({"retryDeleteOnError": true}));
        n.add();
        n.run("GC", &n.gc_conf(json!([]))).ok();
        n.assert_clean();

        let n = node(mode, json!({}));
        n.add();
        let e = n.run("DEL", &n.conf).err();
        assert_eq!(e["code"], 11, "{mode:?}: {e}");
        assert!(
            n.cache_file().exists(),
            "{mode:?}: a failed DEL keeps the cache"
        );
        n.run("DEL", &n.conf).ok();
        n.assert_clean();
    }
}

/// GC removes the device information files of the attachments it undoes, as DEL does.
#[test]
fn gc_removes_device_info_files() {
    for mode in MODES {
        let n = node(
            mode,
            json!({"retryDeleteOnError": true, "runtimeConfig": {"deviceID": "0000:00:1f.6"}}),
        );
        n.add();
        let cached: Value =
            serde_json::from_slice(&std::fs::read(n.cache_file()).unwrap()).unwrap();
        let file = cached["record"]["attachments"][0]["runtimeConfig"]["CNIDeviceInfoFile"]
            .as_str()
            .unwrap_or_else(|| panic!("{mode:?}: no device info file assigned: {cached}"))
            .to_string();
        assert!(file.starts_with(&n.dir.path().join("devinfo/cni").display().to_string()));
        // What a device plugin or the delegate would have written there.
        std::fs::create_dir_all(Path::new(&file).parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:00:1f.6"}}"#,
        )
        .unwrap();
        n.run("GC", &n.gc_conf(json!([]))).ok();
        n.assert_clean();
        assert!(!Path::new(&file).exists(), "{mode:?}: {file} left");
    }
}

/// DEL with nothing cached (a lost cache) undoes what the config and the pod say now, in both modes; in
/// the Kubernetes mode with the pod gone too, the default network at least.
#[test]
fn del_without_a_cache_entry_undoes_what_the_config_says() {
    for mode in MODES {
        let n = node(mode, json!({"retryDeleteOnError": true}));
        n.add();
        std::fs::remove_file(n.cache_file()).unwrap();
        n.run("DEL", &n.conf).ok();
        n.assert_clean();
    }
    let n = node(Mode::Kubernetes, json!({"retryDeleteOnError": true}));
    n.add();
    std::fs::remove_file(n.cache_file()).unwrap();
    n.api.delete_pod("default", &n.pod);
    n.run("DEL", &n.conf).ok();
    let left = n.reservations();
    assert_eq!(
        left.len(),
        1,
        "only net1's IP (unknowable without the pod) may stay: {left:?}"
    );
    assert!(left[0].contains(".10."), "{left:?}");
}

/// ADD waits for `readinessindicatorfile` first in both modes: within `readinessTimeout` it fails with code
/// 11 having done nothing (no delegate, no cache, no API request); once the file is there, ADD works.
#[test]
fn add_waits_for_the_readiness_indicator_first() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let n = node(
            mode,
            json!({"readinessindicatorfile": ready, "readinessTimeout": 1}),
        );
        n.api.clear_log();
        let t = Instant::now();
        let e = n.run("ADD", &n.conf).err();
        assert_eq!(e["code"], 11, "{mode:?}: {e}");
        assert!(e["msg"].as_str().unwrap().contains("readiness"), "{e}");
        assert!(t.elapsed() >= Duration::from_secs(1));
        assert_eq!(n.ns.link_names(), ["lo"]);
        assert!(n.reservations().is_empty() && !n.cache_file().exists());
        assert!(
            n.api.requests().is_empty(),
            "{mode:?}: {:?}",
            n.api.requests()
        );
        std::fs::write(&ready, b"").unwrap();
        n.add();
        let mut conf = n.conf.clone();
        conf["retryDeleteOnError"] = json!(true);
        n.run("DEL", &conf).ok();
        n.assert_clean();
    }
}

/// Removal (`multus uninstall` leaves a retiring config while pods made with Multus remain): a new pod gets
/// the primary network alone and is not cached; the old pod's DEL undoes everything from its cache; the
/// last such DEL removes the retiring config; the new pod is then deleted by the primary config alone.
#[test]
fn retiring_config_passes_new_pods_to_the_primary_and_steps_aside() {
    for mode in MODES {
        let old = node(mode, json!({"retryDeleteOnError": true}));
        old.add();
        let conf_file = old.dir.path().join("00-multus.conf");
        let primary = match mode {
            Mode::Delegates => old.conf["delegates"][0].clone(),
            Mode::Kubernetes => serde_json::from_slice(
                &std::fs::read(old.dir.path().join("net.d/10-podnet.conf")).unwrap(),
            )
            .unwrap(),
        };
        let retiring = json!({
            "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
            "binDir": old.conf["binDir"], "cniDir": old.conf["cniDir"], "logLevel": "debug",
            "retryDeleteOnError": true,
            "delegates": [primary.clone()], "retiring": {"configFile": conf_file},
        });
        std::fs::write(&conf_file, retiring.to_string()).unwrap();

        // A new pod: eth0 alone, its IP reserved under the primary's name, nothing cached.
        let new_ns = Netns::new("mdn");
        let new_cid = unique("mdn");
        let vars = |cmd: &'static str, cid: &str, ns: &Netns| -> Vec<(String, String)> {
            vec![
                ("CNI_COMMAND".into(), cmd.into()),
                ("CNI_CONTAINERID".into(), cid.into()),
                ("CNI_IFNAME".into(), "eth0".into()),
                ("CNI_NETNS".into(), ns.path().display().to_string()),
                ("CNI_PATH".into(), "/usr/lib/cni".into()),
            ]
        };
        let run = |bin: &Path, cmd: &'static str, cid: &str, ns: &Netns, conf: &Value| {
            let v = vars(cmd, cid, ns);
            let v: Vec<(&str, &str)> = v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            run_plugin(bin, &v, conf.to_string().as_bytes())
        };
        run(&multus_bin(), "ADD", &new_cid, &new_ns, &retiring).ok();
        assert_eq!(new_ns.link_names().len(), 2, "{mode:?}: lo and eth0");
        assert_eq!(old.reservations().len(), 3);
        assert!(std::fs::read_dir(old.dir.path().join("cache"))
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains(&new_cid)));
        run(&multus_bin(), "CHECK", &new_cid, &new_ns, &retiring).ok();

        // The old pod's DEL through the retiring config: all of it undone, and the config steps aside.
        old.run("DEL", &retiring).ok();
        old.assert_clean_but(1);
        assert!(!conf_file.exists(), "{mode:?}: the retiring config stays");

        // The runtime now runs the primary alone for the new pod's DEL.
        let mut direct = primary.clone();
        direct["cniVersion"] = json!("1.0.0");
        run(
            Path::new("/usr/lib/cni/bridge"),
            "DEL",
            &new_cid,
            &new_ns,
            &direct,
        )
        .ok();
        assert!(
            old.reservations().is_empty(),
            "{mode:?}: {:?}",
            old.reservations()
        );
    }
}

/// A retiring DEL never removes a config that a re-install has written in its place.
#[test]
fn retiring_never_removes_a_reinstalled_config() {
    let n = node(Mode::Delegates, json!({}));
    let conf_file = n.dir.path().join("00-multus.conf");
    let mut retiring = n.conf.clone();
    retiring["retiring"] = json!({"configFile": conf_file});
    std::fs::write(&conf_file, n.conf.to_string()).unwrap();
    n.add();
    n.run("DEL", &retiring).err();
    assert!(n.cache_file().exists() && conf_file.exists());
    let mut r = retiring.clone();
    r["retryDeleteOnError"] = json!(true);
    n.run("DEL", &r).ok();
    n.assert_clean();
    assert!(conf_file.exists(), "a normal config was removed");
}

/// Every delegate gets Go Multus' CNI_ARGS in both modes: `IgnoreUnknown=true` and the pod's keys first, so
/// a runtime that sends no `IgnoreUnknown` cannot make a strict plugin refuse its keys.
#[test]
fn delegates_get_go_multus_cni_args() {
    for mode in MODES {
        let n = node(mode, json!({"retryDeleteOnError": true}));
        n.add();
        let args =
            std::fs::read_to_string(n.dir.path().join(format!("bin/args-{}", n.cid))).unwrap();
        let want = format!(
            "IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={cid};\
             K8S_POD_UID=uid-{pod};IgnoreUnknown=1;",
            pod = n.pod,
            cid = n.cid
        );
        assert!(args.starts_with(&want), "{mode:?}: {args}");
        n.run("DEL", &n.conf).ok();
        n.assert_clean();
    }
}

/// `preferNodeBinary`: the node's plugin binary runs instead of the built-in delegate of that type (here a
/// `macvlan` in binDir that records its call and hands over to the reference macvlan).
#[test]
fn prefer_node_binary_runs_the_nodes_plugin() {
    for (prefer, expect_called) in [
        (json!([]), false),
        (json!(["macvlan"]), true),
        (json!(["*"]), true),
    ] {
        let n = node(
            Mode::Delegates,
            json!({"retryDeleteOnError": true, "preferNodeBinary": prefer}),
        );
        let bin = n.dir.path().join("bin");
        let mark = bin.join("macvlan-called");
        std::fs::write(
            bin.join("macvlan"),
            format!(
                "#!/bin/sh\necho \"$CNI_COMMAND\" >> {}\nexec /usr/lib/cni/macvlan\n",
                mark.display()
            ),
        )
        .unwrap();
        sh(&["chmod", "755", &bin.join("macvlan").display().to_string()]);
        n.add();
        n.run("DEL", &n.conf).ok();
        n.assert_clean();
        let called = std::fs::read_to_string(&mark).unwrap_or_default();
        assert_eq!(
            called.starts_with("ADD\nDEL\n"),
            expect_called,
            "{prefer}: {called:?}"
        );
    }
}

/// A key the built-in delegate does not implement is named in a warning on ADD, never ignored in silence.
#[test]
fn keys_a_built_in_ignores_are_named() {
    let n = node(Mode::Delegates, json!({"retryDeleteOnError": true}));
    let mut conf = n.conf.clone();
    conf["delegates"][1]["bcqueuelen"] = json!(1000);
    conf["delegates"][1]["ipam"]["vendorOption"] = json!(true);
    let r = n.run("ADD", &conf);
    r.ok();
    let warned: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("does not implement"))
        .collect();
    assert_eq!(warned.len(), 2, "{}", r.stderr);
    assert!(
        warned[0].contains("built-in macvlan") && warned[0].contains("bcqueuelen"),
        "{warned:?}"
    );
    assert!(warned[0].contains("preferNodeBinary"), "{warned:?}");
    assert!(
        warned[1].contains("host-local") && warned[1].contains("vendorOption"),
        "{warned:?}"
    );
    // With the node's binary preferred, no warning: the reference plugin reads what it reads.
    n.run("DEL", &conf).ok();
    conf["preferNodeBinary"] = json!(["macvlan", "host-local"]);
    let r = n.run("ADD", &conf);
    r.ok();
    assert!(!r.stderr.contains("does not implement"), "{}", r.stderr);
    n.run("DEL", &conf).ok();
    n.assert_clean();
}
