//! Helpers shared by the VM tests (`tests/vm_*.rs`). They run only inside the VM test bed (`tests/vm/run.sh`):
//! a real 6.12 kernel with an emulated igb SR-IOV NIC, an IOMMU, ipvlan, macvlan, dummy and 8021q.
//! Kernel state is read back with `ip -j` and sysfs, never through the code under test.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use multus_sriov::config::{LinkState, VlanConf, VlanProto};
use multus_sriov::vf_netlink::VfSettings;
use serde_json::Value;

/// Where the reference CNI plugins (delegates) live, on the host and so in the guest.
pub const CNI_PATH: &str = "/usr/lib/cni";

/// Panics unless this runs inside the VM test bed. Never a silent skip: a VM test outside the VM is a mistake.
pub fn require_vm() {
    if std::env::var("MULTUS_IN_VM").as_deref() != Ok("1") {
        panic!(
            "this is a VM test: it needs the VM test bed's kernel (igb SR-IOV NIC, IOMMU, ipvlan) and must be run \
             with `tests/vm/run.sh` (which sets MULTUS_IN_VM=1 in the guest), not directly"
        );
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "VM tests run as root in the guest"
    );
}

/// Runs a command, returns its output whatever the exit status.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} {args:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed with {}: stdout {:?} stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -j <args>` parsed.
pub fn ip_json(args: &[&str]) -> Value {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let text = run_ok("ip", &all);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("ip {all:?} printed invalid JSON ({e}): {text}"))
}

/// Prints `ip <args>` so the suite's output shows the kernel state it asserted on.
pub fn show(args: &[&str]) {
    let out = run("ip", args);
    println!(
        "$ ip {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads a sysfs attribute, trimmed.
pub fn read_attr(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Basename of the target of a sysfs symlink (e.g. `device/driver` -> `igb`).
pub fn link_name(path: impl AsRef<Path>) -> Option<String> {
    fs::read_link(path.as_ref())
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// The igb physical function: the netdev whose driver is igb and whose device reports `sriov_totalvfs` > 0.
/// It is brought up (macvlan/ipvlan on it need no carrier, but an up master is the realistic case).
pub fn igb_pf() -> String {
    let mut found = Vec::new();
    for entry in fs::read_dir("/sys/class/net").expect("read /sys/class/net") {
        let name = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let dev = PathBuf::from("/sys/class/net").join(&name).join("device");
        if link_name(dev.join("driver")).as_deref() != Some("igb") {
            continue;
        }
        let total = fs::read_to_string(dev.join("sriov_totalvfs")).unwrap_or_default();
        if total.trim().parse::<u32>().unwrap_or(0) > 0 {
            found.push(name);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "expected exactly one igb PF with SR-IOV in the guest, found {found:?}; links: {}",
        run_ok("ip", &["-br", "link"])
    );
    let pf = found.remove(0);
    run_ok("ip", &["link", "set", &pf, "up"]);
    pf
}

/// Polls `cond` every 50 ms until it is true or `timeout` passes; returns whether it became true.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The network namespaces of the VM tests (exact names: `Netns::named`).
pub use multus_testsupport::Netns;

/// How the tests reach the plugins: through the `multus` binary (the default, and what the suite is for), or, while
/// developing, straight to the reference plugin named by the delegate's `type` (`MULTUS_VM_PLUGIN=direct`).
pub enum Plugin {
    /// The multus meta-plugin at this path, given a multus config wrapping the delegate.
    Multus(PathBuf),
    /// The reference plugin `/usr/lib/cni/<type>`, given the delegate config itself.
    Direct,
}

impl Plugin {
    /// From the environment: `MULTUS_VM_PLUGIN` (`direct`, or a path to a multus-compatible binary), else
    /// `MULTUS_BIN` (set by run.sh), else `<workspace>/target/release/multus`.
    pub fn from_env() -> Self {
        let p = match std::env::var("MULTUS_VM_PLUGIN") {
            Ok(v) if v == "direct" => {
                println!("NOTE: MULTUS_VM_PLUGIN=direct: calling the reference plugins directly, not multus");
                return Plugin::Direct;
            }
            Ok(v) if !v.is_empty() => PathBuf::from(v),
            _ => match std::env::var("MULTUS_BIN") {
                Ok(v) if !v.is_empty() => PathBuf::from(v),
                _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/multus"),
            },
        };
        assert!(
            p.is_file(),
            "multus binary {} not found (run.sh builds it)",
            p.display()
        );
        println!("plugin under test: {}", p.display());
        Plugin::Multus(p)
    }

    /// The config sent on stdin: the delegate wrapped in a kubeconfig-less multus config, or the delegate alone.
    pub fn config(&self, delegate: &Value) -> Value {
        match self {
            Plugin::Multus(_) => serde_json::json!({
                "cniVersion": "1.0.0",
                "name": "multus-vm",
                "type": "multus",
                "binDir": CNI_PATH,
                "delegates": [delegate],
            }),
            Plugin::Direct => delegate.clone(),
        }
    }

    fn exe(&self, delegate: &Value) -> PathBuf {
        match self {
            Plugin::Multus(p) => p.clone(),
            Plugin::Direct => {
                Path::new(CNI_PATH).join(delegate["type"].as_str().expect("delegate type"))
            }
        }
    }

    /// Runs one CNI command. `prev_result` is added to the config (as a runtime does for CHECK).
    pub fn cni(
        &self,
        command: &str,
        container_id: &str,
        ns: &Netns,
        delegate: &Value,
        prev: Option<&Value>,
    ) -> Cni {
        let mut conf = self.config(delegate);
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        let exe = self.exe(delegate);
        let netns = ns.path();
        run_cni(
            clean_command(&exe),
            command,
            container_id,
            netns,
            "eth0",
            &conf,
        )
    }
}

/// `exe` with a clean environment (`PATH` only), to which [`run_cni`] adds the `CNI_*` variables.
pub fn clean_command(exe: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(exe);
    c.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    c
}

/// Runs one CNI command as a runtime does: `cmd` (a plugin, or a wrapper running one; see [`clean_command`])
/// with the `CNI_*` variables and `conf` on stdin. Prints what it returned, for the suite's output.
pub fn run_cni(
    mut cmd: Command,
    command: &str,
    container_id: &str,
    netns: impl AsRef<std::ffi::OsStr>,
    ifname: &str,
    conf: &Value,
) -> Cni {
    let start = Instant::now();
    let mut child = cmd
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", CNI_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf.to_string().as_bytes())
        .expect("write config");
    let out = child.wait_with_output().expect("wait for plugin");
    let cni = Cni {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    println!(
        "{:?} {command} {container_id} -> exit {:?} in {:?}\n  stdout {}",
        cmd.get_program(),
        cni.code,
        start.elapsed(),
        cni.stdout.trim()
    );
    if !cni.stderr.trim().is_empty() {
        println!("  stderr {}", cni.stderr.trim());
    }
    cni
}

/// The multus binary under test: `MULTUS_BIN` (set by run.sh), else `<workspace>/target/release/multus`.
pub fn multus_bin() -> PathBuf {
    let multus = match std::env::var("MULTUS_BIN") {
        Ok(v) if !v.is_empty() => PathBuf::from(v),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/multus"),
    };
    assert!(
        multus.is_file(),
        "multus binary {} not found (run.sh builds it)",
        multus.display()
    );
    multus
}

/// `<dir>/<plugin>` -> the multus binary, so that it runs as the standalone plugin `plugin`.
pub fn plugin_link(dir: &Path, plugin: &str) -> PathBuf {
    let link = dir.join(plugin);
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(multus_bin(), &link)
        .unwrap_or_else(|e| panic!("symlink {plugin} -> multus: {e}"));
    link
}

/// Writes a PF's `sriov_numvfs`; puts it back to 0 on drop, so a failed assertion leaves no VFs for the next
/// test.
pub struct NumVfs(PathBuf);

impl NumVfs {
    /// Sets `n` VFs on the PF whose sysfs device directory is `dev` (from 0, as the kernel requires).
    pub fn set(dev: &Path, n: u32) -> Self {
        let attr = dev.join("sriov_numvfs");
        if read_attr(&attr) != "0" {
            fs::write(&attr, "0").expect("reset sriov_numvfs");
        }
        fs::write(&attr, n.to_string())
            .unwrap_or_else(|e| panic!("write {n} to {}: {e}", attr.display()));
        NumVfs(attr)
    }
}

impl Drop for NumVfs {
    fn drop(&mut self) {
        let _ = fs::write(&self.0, "0");
    }
}

/// What one CNI invocation returned.
#[derive(Debug)]
pub struct Cni {
    /// Exit code (None if killed by a signal).
    pub code: Option<i32>,
    /// Stdout (the result or error JSON).
    pub stdout: String,
    /// Stderr (logs).
    pub stderr: String,
}

impl Cni {
    /// Stdout as JSON: Null when empty, a JSON string when it is not JSON.
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.stdout).unwrap_or(Value::String(self.stdout.clone()))
        }
    }

    /// Asserts exit 0 and returns the stdout parsed as JSON (or Null when empty).
    pub fn ok(&self, what: &str) -> Value {
        assert_eq!(self.code, Some(0), "{what} failed: {self:?}");
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.stdout)
                .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}): {self:?}"))
        }
    }
}

/// The first address (`a.b.c.d/len`) of a CNI 1.0 result.
pub fn result_ip(result: &Value) -> String {
    assert!(
        !result.is_null(),
        "ADD exited 0 but printed no CNI result on stdout"
    );
    assert_eq!(result["cniVersion"], "1.0.0", "result version: {result}");
    result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no ips[0].address in result {result}"))
        .to_string()
}

/// `ip -n <ns> -d -j link show <ifname>`'s single entry.
pub fn link_in(ns: &Netns, ifname: &str) -> Value {
    let v = ip_json(&["-n", &ns.name, "-d", "link", "show", ifname]);
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(1),
        "one link {ifname} in {}: {v}",
        ns.name
    );
    v[0].clone()
}

/// Whether `ifname` exists in `ns`.
pub fn link_exists(ns: &Netns, ifname: &str) -> bool {
    run("ip", &["-n", &ns.name, "link", "show", ifname])
        .status
        .success()
}

/// The `a.b.c.d/len` IPv4 addresses on `ifname` in `ns`.
pub fn addrs_in(ns: &Netns, ifname: &str) -> Vec<String> {
    let v = ip_json(&["-n", &ns.name, "-4", "addr", "show", ifname]);
    v[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or(""), i["prefixlen"]))
                .collect()
        })
        .unwrap_or_default()
}

/// The IPs reserved in a host-local store (`<dataDir>/<network>/<ip>` files; `lock` and `last_reserved_ip.*` are
/// bookkeeping).
pub fn reserved_ips(data_dir: &Path, network: &str) -> Vec<String> {
    let dir = data_dir.join(network);
    let Ok(rd) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut ips: Vec<String> = rd
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
        .collect();
    ips.sort();
    ips
}

/// VF `vf`'s entry in `ip -j -d link show <pf>` (its `vfinfo_list`).
pub fn vf_entry(pf: &str, vf: u64) -> Value {
    let link = ip_json(&["-d", "link", "show", pf]);
    let e = link[0]["vfinfo_list"]
        .as_array()
        .unwrap_or_else(|| panic!("no vfinfo_list for {pf}: {link}"))
        .iter()
        .find(|e| e["vf"].as_u64() == Some(vf))
        .unwrap_or_else(|| panic!("VF {vf} not in vfinfo_list: {link}"))
        .clone();
    println!("ip vfinfo_list[vf {vf}] of {pf} = {e}");
    e
}

/// VF `vf`'s settings as `ip -j -d link show <pf>` prints them, independent of the code under test.
pub fn ip_vf(pf: &str, vf: u64) -> VfSettings {
    let e = &vf_entry(pf, vf);
    let mac = e["address"]
        .as_str()
        .or(e["mac"].as_str())
        .unwrap_or_else(|| panic!("no address in {e}"))
        .parse()
        .expect("MAC");
    let vl: &Value = match e["vlan_list"].as_array() {
        Some(l) if !l.is_empty() => &l[0],
        _ => e,
    };
    let proto = match vl["protocol"].as_str() {
        None | Some("802.1Q") => VlanProto::Dot1Q,
        Some("802.1ad") => VlanProto::Dot1Ad,
        Some(p) => panic!("unknown VLAN protocol {p} in {e}"),
    };
    let link_state = match e["link_state"].as_str() {
        None | Some("auto") => LinkState::Auto,
        Some("enable") => LinkState::Enable,
        Some("disable") => LinkState::Disable,
        Some(s) => panic!("unknown link_state {s} in {e}"),
    };
    // iproute2 prints `"rate": {"max_tx": .., "min_tx": ..}`.
    let rate = |k: &str| e["rate"][k].as_u64().unwrap_or(0) as u32;
    VfSettings {
        mac,
        vlan: VlanConf {
            id: vl["vlan"].as_u64().unwrap_or(0) as u16,
            qos: vl["qos"].as_u64().unwrap_or(0) as u8,
            proto,
        },
        spoofchk: e["spoofchk"].as_bool().expect("spoofchk"),
        trust: e["trust"].as_bool().expect("trust"),
        link_state,
        min_tx_rate: rate("min_tx"),
        max_tx_rate: rate("max_tx"),
    }
}

/// The part of VF `vf`'s entry the DPDK tests compare: MAC, VLAN, spoofchk, trust (with the kernel's
/// defaults where `ip` prints none).
pub fn vfinfo(pf: &str, vf: u64) -> (String, u64, bool, bool) {
    let e = vf_entry(pf, vf);
    let mac = e["address"]
        .as_str()
        .or(e["mac"].as_str())
        .unwrap_or_default();
    let vlan = e["vlan_list"][0]["vlan"]
        .as_u64()
        .or(e["vlan"].as_u64())
        .unwrap_or(0);
    (
        mac.to_string(),
        vlan,
        e["spoofchk"].as_bool().unwrap_or(true),
        e["trust"].as_bool().unwrap_or(false),
    )
}

/// The netdev of a PCI function (its `net/` entry), waiting up to `timeout`.
pub fn netdev_of(pci: &str, timeout: Duration) -> Option<String> {
    let dir = PathBuf::from("/sys/bus/pci/devices").join(pci).join("net");
    let mut found = None;
    wait_for(timeout, || {
        found = fs::read_dir(&dir)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned());
        found.is_some()
    });
    found
}
