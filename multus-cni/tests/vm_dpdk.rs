//! VM tests (tests/vm/run.sh) of the `dpdk` delegate on the emulated igb's VFs behind the emulated Intel IOMMU:
//! bind a VF to vfio-pci through the `multus` binary and give it back; device-info through the binary started as
//! `dpdk`; failures (vfio-pci not loaded; `/dev/vfio/<group>` never appearing, after the VF was really moved to
//! vfio-pci) leave the VF on igbvf under its name; and `dpdk-testpmd` (the host's dpdk-dev, hugepages reserved by
//! guest.sh) drives the bound VF with its igb VF driver. Kernel state is read back with sysfs and `ip`.

#[allow(dead_code)]
mod vm_common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vm_common::{
    clean_command, igb_pf, link_name, multus_bin, netdev_of, plugin_link, read_attr, require_vm,
    run, run_cni, run_ok, show, vfinfo, Cni, Netns, NumVfs, CNI_PATH,
};

/// VF 0 of the igb PF, with 2 VFs enabled, its netdev renamed to `name` and up (so that DEL has a name, a MAC and
/// an up flag to give back).
struct Vf {
    _vfs: NumVfs,
    pf_pci: String,
    pci: String,
    name: String,
    mac: String,
    group: String,
}

impl Vf {
    fn setup(name: &str) -> Vf {
        let pf = igb_pf();
        let dev = fs::canonicalize(format!("/sys/class/net/{pf}/device")).expect("PF device dir");
        let pf_pci = dev.file_name().expect("bdf").to_string_lossy().into_owned();
        let vfs = NumVfs::set(&dev, 2);
        let virtfn = dev.join("virtfn0");
        let pci = fs::canonicalize(&virtfn)
            .expect("virtfn0")
            .file_name()
            .expect("bdf")
            .to_string_lossy()
            .into_owned();
        let kname = netdev_of(&pci, Duration::from_secs(20)).expect("VF 0 netdev did not appear");
        run_ok("ip", &["link", "set", "dev", &kname, "name", name]);
        run_ok("ip", &["link", "set", "dev", name, "up"]);
        let mac = read_attr(format!("/sys/class/net/{name}/address"));
        let group = link_name(format!("/sys/bus/pci/devices/{pci}/iommu_group"))
            .expect("VF has an IOMMU group");
        println!("PF {pf} ({pf_pci}); VF 0 = {pci}, netdev {kname} renamed {name}, MAC {mac}, IOMMU group {group}");
        Vf {
            _vfs: vfs,
            pf_pci,
            pci,
            name: name.into(),
            mac,
            group,
        }
    }

    fn dev(&self) -> PathBuf {
        PathBuf::from("/sys/bus/pci/devices").join(&self.pci)
    }

    fn driver(&self) -> Option<String> {
        link_name(self.dev().join("driver"))
    }

    /// On vfio-pci, its group device there, no netdev, no override left.
    fn assert_on_vfio(&self) {
        assert_eq!(
            self.driver().as_deref(),
            Some("vfio-pci"),
            "{} driver",
            self.pci
        );
        let node = PathBuf::from("/dev/vfio").join(&self.group);
        let meta = fs::metadata(&node).unwrap_or_else(|e| panic!("{}: {e}", node.display()));
        assert!(
            meta.file_type().is_char_device(),
            "{} is a character device",
            node.display()
        );
        assert_eq!(
            netdev_of(&self.pci, Duration::ZERO),
            None,
            "no netdev while on vfio-pci"
        );
        assert!(!Path::new("/sys/class/net").join(&self.name).exists());
        assert_eq!(
            read_attr(self.dev().join("driver_override")),
            "(null)",
            "override cleared"
        );
        println!(
            "{} on vfio-pci: {} ({}), driver_override (null)",
            self.pci,
            node.display(),
            run_ok("ls", &["-l", &node.to_string_lossy()]).trim()
        );
    }

    /// Back on igbvf with its netdev under its name, MAC and up flag.
    fn assert_back(&self) {
        assert_eq!(
            self.driver().as_deref(),
            Some("igbvf"),
            "{} driver",
            self.pci
        );
        let n = netdev_of(&self.pci, Duration::from_secs(10)).expect("netdev back");
        assert_eq!(n, self.name, "netdev name");
        assert_eq!(
            read_attr(format!("/sys/class/net/{n}/address")),
            self.mac,
            "MAC"
        );
        let flags = u32::from_str_radix(
            read_attr(format!("/sys/class/net/{n}/flags")).trim_start_matches("0x"),
            16,
        )
        .expect("flags");
        assert_eq!(flags & 1, 1, "up again");
        assert_eq!(
            read_attr(self.dev().join("driver_override")),
            "(null)",
            "override cleared"
        );
        show(&["link", "show", &n]);
    }
}

/// The binary started as `dpdk` (a symlink in `dir`), as a runtime would run a standalone plugin.
fn dpdk_bin(dir: &Path) -> PathBuf {
    plugin_link(dir, "dpdk")
}

/// Runs one CNI command of `exe` with `conf` on stdin; with `hide_dev_vfio`, in a mount namespace whose
/// `/dev/vfio` is an empty tmpfs (so a group device the kernel creates is never seen there).
fn cni(exe: &Path, command: &str, cid: &str, ns: &Netns, conf: &Value, hide_dev_vfio: bool) -> Cni {
    let mut cmd = if hide_dev_vfio {
        let mut c = clean_command("unshare");
        c.args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs none /dev/vfio && exec \"$0\"",
        ])
        .arg(exe);
        c
    } else {
        clean_command(exe)
    };
    cmd.env("MULTUS_LOG_LEVEL", "info");
    run_cni(cmd, command, cid, ns.path(), "net1", conf)
}

/// A kubeconfig-less multus config with one `dpdk` delegate (CNI 1.1.0, so the result carries `pciID`).
fn multus_conf(vf: &Vf, state: &Path) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": "multus-vm",
        "type": "multus",
        "binDir": CNI_PATH,
        "delegates": [{"cniVersion": "1.1.0", "name": "dpdk-net", "type": "dpdk", "deviceID": vf.pci,
            "dataDir": state}],
    })
}

fn err_msg(c: &Cni) -> String {
    assert_eq!(c.code, Some(1), "expected a CNI error: {c:?}");
    let v: Value = serde_json::from_str(&c.stdout)
        .unwrap_or_else(|e| panic!("error is not JSON ({e}): {c:?}"));
    v["msg"].as_str().unwrap_or_default().to_string()
}

#[test]
fn vm_dpdk_bind_and_restore() {
    require_vm();
    let vf = Vf::setup("dpdkvf0");
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let ns = Netns::named("dpdk1");
    let multus = multus_bin();
    let conf = multus_conf(&vf, &state);

    // Through the multus meta-plugin.
    let r = cni(&multus, "ADD", "c1", &ns, &conf, false).ok("ADD");
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["interfaces"][0]["pciID"], vf.pci.as_str(), "result: {r}");
    assert_eq!(r["interfaces"][0]["name"], "net1");
    assert!(r.get("ips").is_none(), "no IPs: {r}");
    vf.assert_on_vfio();
    assert_eq!(
        run_ok("ip", &["-n", &ns.name, "-br", "link"])
            .lines()
            .count(),
        1,
        "only lo in the pod: no netdev entered it"
    );
    let rec: Value =
        serde_json::from_slice(&fs::read(state.join("c1@net1.json")).expect("state record"))
            .expect("record JSON");
    println!("state record: {rec}");
    assert_eq!(rec["record"]["original"]["driver"], "igbvf");
    assert_eq!(rec["record"]["original"]["netdev"], vf.name.as_str());
    // `multus devices` on the real sysfs: the VF on vfio-pci, held by this attachment, named from pci-ids.
    let out = run_ok(
        &multus.to_string_lossy(),
        &["devices", "--dpdk-data-dir", &state.to_string_lossy()],
    );
    println!("$ multus devices\n{out}");
    let devs: Value = serde_json::from_str(&run_ok(
        &multus.to_string_lossy(),
        &[
            "devices",
            "--json",
            "--dpdk-data-dir",
            &state.to_string_lossy(),
        ],
    ))
    .expect("devices JSON");
    let row = devs
        .as_array()
        .and_then(|a| a.iter().find(|r| r["pci"] == vf.pci.as_str()))
        .unwrap_or_else(|| panic!("{} not listed: {devs}", vf.pci));
    assert_eq!(row["kind"], "VF");
    assert_eq!(row["driver"], "vfio-pci");
    assert_eq!(row["pf"], vf.pf_pci.as_str());
    assert_eq!(row["name"], "82576 Virtual Function");
    assert_eq!(row["iommuGroup"].to_string(), vf.group);
    assert_eq!(row["heldBy"]["via"], "dpdk");
    assert_eq!(row["heldBy"]["containerID"], "c1");
    let mut check = conf.clone();
    check["prevResult"] = r.clone();
    cni(&multus, "CHECK", "c1", &ns, &check, false).ok("CHECK");
    cni(&multus, "DEL", "c1", &ns, &conf, false).ok("DEL");
    vf.assert_back();
    assert!(!state.join("c1@net1.json").exists());
    cni(&multus, "DEL", "c1", &ns, &conf, false).ok("second DEL");
    vf.assert_back();

    // Standalone as `dpdk`, with the device-info file Multus would ask for.
    let dpdk = dpdk_bin(tmp.path());
    let info = tmp.path().join("devinfo/cni/dpdk-net-c2_net1");
    let conf = json!({"cniVersion": "1.1.0", "name": "dpdk-net", "type": "dpdk", "deviceID": vf.pci,
        "dataDir": state, "runtimeConfig": {"CNIDeviceInfoFile": info}});
    let r = cni(&dpdk, "ADD", "c2", &ns, &conf, false).ok("standalone ADD");
    assert_eq!(r["interfaces"][0]["pciID"], vf.pci.as_str());
    vf.assert_on_vfio();
    let text = fs::read_to_string(&info).expect("device-info file");
    println!("device-info file {}: {text}", info.display());
    let v: Value = serde_json::from_str(&text).expect("device-info JSON");
    assert_eq!(
        v,
        json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": vf.pci, "pf-pci-address": vf.pf_pci,
            "vfio-device": format!("/dev/vfio/{}", vf.group)}})
    );
    cni(&dpdk, "DEL", "c2", &ns, &conf, false).ok("standalone DEL");
    assert!(!info.exists(), "DEL removes the device-info file");
    vf.assert_back();
}

/// Reloads vfio-pci on drop (a failed assertion must not leave the next test without it).
struct VfioPciUnloaded;

impl VfioPciUnloaded {
    fn unload() -> Self {
        run_ok("modprobe", &["-r", "vfio-pci"]);
        assert!(
            !Path::new("/sys/bus/pci/drivers/vfio-pci").exists(),
            "vfio-pci unloaded"
        );
        VfioPciUnloaded
    }
}

impl Drop for VfioPciUnloaded {
    fn drop(&mut self) {
        let _ = run("modprobe", &["vfio-pci"]);
    }
}

#[test]
fn vm_dpdk_failures_leave_the_vf_on_igbvf() {
    require_vm();
    let vf = Vf::setup("dpdkvf0");
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let ns = Netns::named("dpdk2");
    let multus = multus_bin();
    let conf = multus_conf(&vf, &state);

    // vfio-pci not loaded: refused before anything changes.
    {
        let _unloaded = VfioPciUnloaded::unload();
        let msg = err_msg(&cni(&multus, "ADD", "c1", &ns, &conf, false));
        assert!(
            msg.contains("vfio-pci driver is not available") && msg.contains("modprobe vfio-pci"),
            "{msg}"
        );
        vf.assert_back();
        cni(&multus, "DEL", "c1", &ns, &conf, false).ok("DEL after a failed ADD");
    }
    assert!(
        Path::new("/sys/bus/pci/drivers/vfio-pci").exists(),
        "vfio-pci reloaded"
    );

    // Half-way: the VF really goes to vfio-pci, but this plugin never sees /dev/vfio/<group> (a private empty
    // /dev/vfio): after the bounded wait it binds igbvf again and renames the new netdev back.
    let start = Instant::now();
    let msg = err_msg(&cni(&multus, "ADD", "c2", &ns, &conf, true));
    println!("half-way failure after {:?}: {msg}", start.elapsed());
    assert!(
        msg.contains(&format!(
            "{} is bound to vfio-pci but /dev/vfio/{} did not appear",
            vf.pci, vf.group
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("rolled back: {} is bound to igbvf again", vf.pci)),
        "{msg}"
    );
    vf.assert_back();
    assert!(
        !state.join("c2@net1.json").exists(),
        "no record left after a rollback"
    );
    cni(&multus, "DEL", "c2", &ns, &conf, false).ok("DEL after a rolled-back ADD");
    vf.assert_back();
    // And the VF still binds normally afterwards.
    cni(&multus, "ADD", "c3", &ns, &conf, false).ok("ADD");
    vf.assert_on_vfio();
    cni(&multus, "DEL", "c3", &ns, &conf, false).ok("DEL");
    vf.assert_back();
}

#[test]
fn vm_dpdk_vf_settings_on_the_pf() {
    require_vm();
    let vf = Vf::setup("dpdkvf0");
    let pf = igb_pf();
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let ns = Netns::named("dpdk4");
    let multus = multus_bin();
    let mut conf = multus_conf(&vf, &state);
    for (k, v) in [
        ("mac", json!("02:11:22:33:44:55")),
        ("vlan", json!(100)),
        ("spoofchk", json!("off")),
        ("trust", json!("on")),
    ] {
        conf["delegates"][0][k] = v;
    }
    let before = vfinfo(&pf, 0);
    cni(&multus, "ADD", "c1", &ns, &conf, false).ok("ADD");
    vf.assert_on_vfio();
    assert_eq!(
        vfinfo(&pf, 0),
        ("02:11:22:33:44:55".to_string(), 100, false, true),
        "VF settings on the PF"
    );
    let alloc = state.join("sriov/pci").join(&vf.pci);
    assert!(alloc.exists(), "allocation record {}", alloc.display());
    cni(&multus, "DEL", "c1", &ns, &conf, false).ok("DEL");
    vf.assert_back();
    assert_eq!(vfinfo(&pf, 0), before, "VF settings put back");
    assert!(!alloc.exists(), "VF freed");
    cni(&multus, "DEL", "c1", &ns, &conf, false).ok("second DEL");
}

/// Runs `dpdk-testpmd` on the VF until it forwards ("Press enter to exit"), then stops it through stdin; returns
/// its output. Killed after `timeout`.
fn testpmd(pci: &str, timeout: Duration) -> String {
    let start = Instant::now();
    // Line-buffered stdout (stdbuf): testpmd prints "Press enter to exit" and then waits on stdin without
    // flushing, so through a pipe that line would never arrive.
    let mut child = Command::new("stdbuf")
        // 2048 mbufs: the default pool (~155k mbufs, ~340 MB) does not fit in the guest's 64 hugepages. No link
        // check: the emulated VF's link status goes through the PF mailbox, slowly under emulation.
        .args([
            "-oL",
            "dpdk-testpmd",
            "-l",
            "0-1",
            "-n",
            "1",
            "-a",
            pci,
            "--",
            "--auto-start",
            "--total-num-mbufs=2048",
            "--disable-link-check",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dpdk-testpmd (dpdk-dev on the host)");
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let tx2 = tx.clone();
    let t1 = std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let t2 = std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(format!("(stderr) {l}"));
        }
    });
    let mut text = String::new();
    let mut forwarding = false;
    while let Some(left) = timeout.checked_sub(start.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                println!("testpmd [{:>5.1}s] {l}", start.elapsed().as_secs_f64());
                text.push_str(&l);
                text.push('\n');
                if l.contains("Press enter to exit") {
                    forwarding = true;
                    // Let it forward for a moment, then stop it as a user would.
                    std::thread::sleep(Duration::from_secs(2));
                    let _ = child.stdin.as_mut().expect("stdin").write_all(b"\n");
                }
            }
            Err(_) => break,
        }
    }
    if !forwarding || start.elapsed() >= timeout {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait testpmd");
    let _ = (t1.join(), t2.join());
    for l in rx.try_iter() {
        text.push_str(&l);
        text.push('\n');
    }
    println!("dpdk-testpmd exited {status} after {:?}", start.elapsed());
    assert!(
        forwarding,
        "dpdk-testpmd did not start forwarding within {timeout:?}"
    );
    text
}

#[test]
fn vm_dpdk_testpmd_drives_the_bound_vf() {
    require_vm();
    let hp = read_attr("/proc/sys/vm/nr_hugepages");
    assert!(
        hp.parse::<u32>().unwrap_or(0) >= 64,
        "guest.sh reserves 64 hugepages, found {hp}"
    );
    let vf = Vf::setup("dpdkvf0");
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let ns = Netns::named("dpdk3");
    let dpdk = dpdk_bin(tmp.path());
    // With a MAC for the VF (set on the PF): the DPDK application must see it.
    let conf = json!({"cniVersion": "1.1.0", "name": "dpdk-net", "type": "dpdk", "deviceID": vf.pci,
        "dataDir": state, "mac": "02:11:22:33:44:66"});
    cni(&dpdk, "ADD", "c1", &ns, &conf, false).ok("ADD");
    vf.assert_on_vfio();

    let out = testpmd(&vf.pci, Duration::from_secs(150));
    for want in [
        "VFIO support initialized",
        "Using IOMMU type 1",
        &format!(
            "Probe PCI driver: net_e1000_igb_vf (8086:10ca) device: {}",
            vf.pci
        ),
        "Port 0: 02:11:22:33:44:66",
        "io packet forwarding",
    ] {
        assert!(out.contains(want), "dpdk-testpmd output lacks {want:?}");
    }
    println!(
        "dpdk-testpmd probed {} with net_e1000_igb_vf through vfio-pci and forwarded",
        vf.pci
    );
    vf.assert_on_vfio();

    cni(&dpdk, "DEL", "c1", &ns, &conf, false).ok("DEL");
    vf.assert_back();
}

#[test]
fn vm_dpdk_free_vf_of_a_pf() {
    require_vm();
    let vf0 = Vf::setup("dpdkvf0");
    let pf = igb_pf();
    let vf1 = fs::canonicalize(format!("/sys/class/net/{pf}/device/virtfn1"))
        .expect("virtfn1")
        .file_name()
        .expect("bdf")
        .to_string_lossy()
        .into_owned();
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let ns = Netns::named("dpdk5");
    let multus = multus_bin();
    // No device ID: `master` names the PF, the SR-IOV allocator picks a free VF (the lowest one first).
    let mut conf = multus_conf(&vf0, &state);
    let d = conf["delegates"][0].as_object_mut().expect("delegate");
    d.remove("deviceID");
    d.insert("master".into(), json!(pf));
    let r1 = cni(&multus, "ADD", "c1", &ns, &conf, false).ok("ADD c1");
    assert_eq!(
        r1["interfaces"][0]["pciID"],
        vf0.pci.as_str(),
        "c1 gets VF 0"
    );
    vf0.assert_on_vfio();
    let r2 = cni(&multus, "ADD", "c2", &ns, &conf, false).ok("ADD c2");
    assert_eq!(r2["interfaces"][0]["pciID"], vf1.as_str(), "c2 gets VF 1");
    assert_eq!(
        link_name(format!("/sys/bus/pci/devices/{vf1}/driver")).as_deref(),
        Some("vfio-pci")
    );
    // Both VFs taken: a third attachment is refused, nothing changes.
    let msg = err_msg(&cni(&multus, "ADD", "c3", &ns, &conf, false));
    assert!(msg.contains("no free VF"), "{msg}");
    cni(&multus, "DEL", "c3", &ns, &conf, false).ok("DEL c3");
    cni(&multus, "DEL", "c2", &ns, &conf, false).ok("DEL c2");
    assert_eq!(
        link_name(format!("/sys/bus/pci/devices/{vf1}/driver")).as_deref(),
        Some("igbvf")
    );
    cni(&multus, "DEL", "c1", &ns, &conf, false).ok("DEL c1");
    vf0.assert_back();
    assert!(
        !state.join("sriov/pci").join(&vf0.pci).exists()
            && !state.join("sriov/pci").join(&vf1).exists()
    );
}
