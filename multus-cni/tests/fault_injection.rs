//! SIGKILL of the meta-plugin at many points of ADD and of DEL, then the runtime's DEL and a second DEL
//! (issue 16): nothing may be left, neither links in the pod or on the host, nor host-local reservations,
//! nor cache records or temp files. Through the built binary as root, kubeconfig-less, with an external
//! delegate (the reference `bridge`, through a wrapper) and a built-in one (`macvlan`), each with
//! host-local (the built-in one, or the reference through a wrapper).
//!
//! Two ways to choose the moment:
//! - scripted: a wrapper around the reference plugin kills `multus` (its parent) before or after running
//!   the real plugin, or hangs until `delegateTimeout`, for a chosen plugin, verb and network;
//! - swept: `multus` is killed after k/N of the time a whole ADD (or DEL) takes, k = 0..=N.
//!
//! Before a DEL, every plugin process left running by the killed `multus` is waited for (a runtime cannot
//! undo what an orphan does after its DEL; that is not what this test is about).

mod support;

use multus_core::plugins::sublink::temp_name_for;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// The wrapper: runs the real plugin, unless `$CTL/rule` (`<type> <command> <network> <action>`) names
/// this call, in which case it kills its parent (`multus`) before or after the real plugin, or hangs.
const WRAPPER: &str = r#"#!/bin/sh
CTL=@CTL@; REAL=@REAL@; ME=@TYPE@
touch "$CTL/started.$$"
conf=$(cat)
act=""
set -- $(cat "$CTL/rule" 2>/dev/null)
if [ "$1" = "$ME" ] && [ "$2" = "$CNI_COMMAND" ] && printf '%s' "$conf" | grep -q "\"$3\""; then act=$4; fi
parent_is_multus() { [ "$(cat /proc/$PPID/comm 2>/dev/null)" = multus ]; }
case "$act" in
  kill-before) parent_is_multus && kill -9 $PPID; exit 1 ;;
  hang) exec sleep 600 ;;
esac
out=$(printf '%s' "$conf" | "$REAL"); rc=$?
[ "$act" = kill-after ] && parent_is_multus && kill -9 $PPID
printf '%s' "$out"
exit $rc
"#;

struct Bed {
    ns: Netns,
    master: HostLink,
    bridge: HostLink,
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Bed {
        let ns = Netns::new("fi");
        let master = HostLink::veth("fim");
        let bridge = HostLink::bridge_name("fibr");
        let dir = tempfile::tempdir().unwrap();
        for t in ["bridge", "host-local"] {
            let script = WRAPPER
                .replace("@CTL@", &dir.path().display().to_string())
                .replace("@REAL@", &reference_dir().join(t).display().to_string())
                .replace("@TYPE@", t);
            let p = dir.path().join("bin").join(t);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, script).unwrap();
            sh(&["chmod", "755", &p.display().to_string()]);
        }
        Bed {
            ns,
            master,
            bridge,
            dir,
        }
    }

    fn ctl(&self) -> &Path {
        self.dir.path()
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn ipam(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// eth0 from the wrapped reference bridge, net1 from the built-in macvlan; both with host-local (the
    /// reference's through the wrapper with `wrapped_ipam`, else the built-in one for the macvlan).
    fn conf(&self, wrapped_ipam: bool) -> Value {
        let octet = std::process::id() % 100 + 100;
        let ipam = |net: u32| json!({"type": "host-local", "subnet": format!("10.{octet}.{net}.0/24"), "dataDir": self.ipam()});
        json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
            "binDir": self.ctl().join("bin"), "cniDir": self.cache(), "delegateTimeout": 2,
            // The wrapped bridge binary is what the faults are injected into: not the built-in bridge.
            "preferNodeBinary": if wrapped_ipam { json!(["bridge", "host-local"]) } else { json!(["bridge"]) },
            "delegates": [
                {"cniVersion": "1.0.0", "name": "brnet", "type": "bridge", "bridge": self.bridge.0, "ipam": ipam(1)},
                {"cniVersion": "1.0.0", "name": "mvnet", "type": "macvlan", "master": self.master.0, "ipam": ipam(2)}]})
    }

    fn rule(&self, rule: &str) {
        std::fs::write(self.ctl().join("rule"), rule).unwrap();
    }

    fn spawn(&self, cmd: &str, cid: &str, conf: &Value) -> Child {
        let ns = self.ns.path().display().to_string();
        let vars = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", ns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ];
        let mut child = plugin_command(&multus_bin(), &vars)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        child
    }

    /// Runs a verb to its end.
    fn run(&self, cmd: &str, cid: &str, conf: &Value) -> Run {
        let ns = self.ns.path().display().to_string();
        let vars = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", ns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ];
        run_plugin_within(
            &multus_bin(),
            &vars,
            conf.to_string().as_bytes(),
            Duration::from_secs(60),
        )
    }

    /// Waits until every wrapper process started so far has exited (bounded).
    fn wait_for_orphans(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let alive: Vec<String> = std::fs::read_dir(self.ctl())
                .unwrap()
                .flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_prefix("started.").map(str::to_string)
                })
                .filter(|pid| Path::new("/proc").join(pid).exists())
                .collect();
            if alive.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "plugin processes still running: {alive:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What is left of attachment `cid`, in words; empty when nothing.
    fn leftovers(&self, cid: &str) -> Vec<String> {
        let mut left = Vec::new();
        let pod = self.ns.link_names();
        if pod != ["lo"] {
            left.push(format!("pod links {pod:?}"));
        }
        if host_link_exists(&self.bridge.0) {
            let on_bridge = sh(&["ip", "-j", "link", "show", "master", &self.bridge.0]);
            if !matches!(on_bridge.trim(), "" | "[]") {
                left.push(format!("veths on the bridge: {on_bridge}"));
            }
        }
        let host: Vec<Value> =
            serde_json::from_str(&sh(&["ip", "-j", "-d", "link", "show"])).unwrap_or_default();
        let master_idx = host
            .iter()
            .find(|l| l["ifname"] == self.master.0.as_str())
            .and_then(|l| l["ifindex"].as_u64());
        for l in &host {
            let kind = l["linkinfo"]["info_kind"].as_str().unwrap_or_default();
            let on_master =
                l["link_index"].as_u64().is_some() && l["link_index"].as_u64() == master_idx;
            if kind == "macvlan" && (on_master || l["link"] == self.master.0.as_str()) {
                left.push(format!("host macvlan {}", l["ifname"]));
            }
        }
        for ifname in ["eth0", "net1"] {
            let tmp = temp_name_for(cid, ifname);
            if host_link_exists(&tmp) {
                left.push(format!("host temp link {tmp}"));
            }
        }
        let ips = reservations(&self.ipam());
        if !ips.is_empty() {
            left.push(format!("reservations {ips:?}"));
        }
        let files: Vec<String> = std::fs::read_dir(self.cache())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !files.is_empty() {
            left.push(format!("cniDir files {files:?}"));
        }
        left
    }

    /// The runtime's DEL, twice, after the orphans are gone: both succeed and nothing is left.
    fn del_twice_and_check(&self, cid: &str, conf: &Value, what: &str) {
        self.rule("");
        self.wait_for_orphans();
        for n in ["first", "second"] {
            let r = self.run("DEL", cid, conf);
            assert_eq!(r.status, 0, "{what}: {n} DEL failed: {}", r.stdout);
        }
        let left = self.leftovers(cid);
        assert!(left.is_empty(), "{what}: left {left:?}");
    }
}

/// A kill from inside a delegate (before or after the real plugin ran), or a delegate that hangs until
/// `delegateTimeout`, at every delegate step of ADD and DEL.
#[test]
fn killed_by_a_delegate_at_every_step() {
    let bed = Bed::new();
    let conf = bed.conf(true);
    let mut n = 0;
    for verb in ["ADD", "DEL"] {
        for (plugin, net) in [("bridge", "brnet"), ("host-local", "mvnet")] {
            for act in ["kill-before", "kill-after", "hang"] {
                n += 1;
                let cid = format!("fis{n}");
                let what = format!("{verb} killed by {plugin} of {net} ({act})");
                if verb == "DEL" {
                    bed.rule("");
                    bed.run("ADD", &cid, &conf).ok();
                }
                bed.rule(&format!("{plugin} {verb} {net} {act}"));
                let r = bed.run(verb, &cid, &conf);
                match act {
                    // Killed: no answer at all (the runtime sees a signal).
                    "kill-before" | "kill-after" => assert_eq!(r.status, -1, "{what}: {r:?}"),
                    // The hung plugin was killed at delegateTimeout: a CNI error (ADD rolled back).
                    _ => assert_eq!(r.err()["code"], 102, "{what}"),
                }
                bed.del_twice_and_check(&cid, &conf, &what);
            }
        }
    }
}

/// `multus` killed after k/N of the time a whole ADD, then a whole DEL, takes (built-in host-local for
/// the macvlan, the wrapped reference one for the bridge).
#[test]
fn killed_at_swept_moments_of_add_and_del() {
    const STEPS: u32 = 16;
    let bed = Bed::new();
    let conf = bed.conf(false);
    bed.rule("");
    // Calibration: how long a whole ADD and DEL take now.
    let t0 = Instant::now();
    bed.run("ADD", "ficalib", &conf).ok();
    let add = t0.elapsed();
    let t0 = Instant::now();
    bed.run("DEL", "ficalib", &conf).ok();
    let del = t0.elapsed();
    let mut states = std::collections::BTreeSet::new();
    for (verb, whole) in [("ADD", add), ("DEL", del)] {
        for k in 0..=STEPS {
            let cid = format!("fiw{}{k}", &verb[..1]);
            if verb == "DEL" {
                bed.run("ADD", &cid, &conf).ok();
            }
            let mut child = bed.spawn(verb, &cid, &conf);
            std::thread::sleep(whole * k / STEPS);
            let _ = child.kill();
            let _ = child.wait();
            bed.wait_for_orphans();
            // What the kill left, before the DEL: for the record of which points were hit.
            states.insert(bed.leftovers(&cid).len());
            bed.del_twice_and_check(&cid, &conf, &format!("{verb} killed at {k}/{STEPS}"));
        }
    }
    eprintln!("ADD {add:?}, DEL {del:?}; kinds of leftovers seen before DEL: {states:?}");
    assert!(
        states.len() >= 2,
        "the sweep hit one point only: {states:?}"
    );
}
