//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

pub const REFERENCE: &str = "/usr/lib/cni/host-local";

/// The CNI error code an error gets (through the one mapping, `ErrorCode::from`).
pub fn code_of(e: &multus_ipam::IpamError) -> u32 {
    multus_core::cni::ErrorCode::from(e).code()
}

/// Panics with instructions when the reference plugin is missing (never skips silently).
pub fn require_reference() {
    assert!(
        Path::new(REFERENCE).exists(),
        "{REFERENCE} is missing: apt-get install -y containernetworking-plugins"
    );
}

/// The reference host-local as a runtime runs it (`CNI_*` variables, config on stdin).
fn reference_command(cmd: &str, container_id: &str, ifname: &str, cni_args: &str) -> Command {
    require_reference();
    let mut c = Command::new(REFERENCE);
    c.env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_ARGS", cni_args)
        .stdin(Stdio::piped());
    c
}

/// Starts `cmd` and gives it `conf` on stdin.
fn spawn_with_stdin(cmd: &mut Command, conf: &str) -> std::process::Child {
    let mut child = cmd.spawn().expect("spawn reference host-local");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    child
}

/// Runs the reference host-local; returns (success, stdout JSON).
pub fn reference(
    cmd: &str,
    container_id: &str,
    ifname: &str,
    conf: &str,
    cni_args: &str,
) -> (bool, Value) {
    let mut c = reference_command(cmd, container_id, ifname, cni_args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = spawn_with_stdin(&mut c, conf);
    let out = child.wait_with_output().unwrap();
    let v = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "reference output {:?}: {e}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    (out.status.success(), v)
}

/// Runs the reference host-local's ADD and kills it the moment it writes its reservation file: after
/// `O_CREAT|O_EXCL` created the file and before a byte is in it, where a `delegateTimeout` kill of the
/// delegate's process group can land. A seccomp filter installed before `exec` kills the process
/// (`SECCOMP_RET_KILL_PROCESS`) on the first `write` of exactly the reservation's length
/// (`<containerID>\r\n<ifname>`, which the caller makes unlike any other write of the plugin on an
/// IPv4 network). Returns how the process ended.
pub fn reference_add_killed_before_write(
    container_id: &str,
    ifname: &str,
    conf: &str,
) -> std::process::ExitStatus {
    use std::os::unix::process::CommandExt;
    let len = (container_id.len() + 2 + ifname.len()) as u32;
    // Longer than the text of an IPv4 address (the last_reserved_ip write), and than an eventfd's 8.
    assert!(len > 15, "use a longer container ID");
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // seccomp_data: nr at 0, arch at 4, args[2] (the byte count of write) at 32 (low) and 36.
    let filter = [
        ins(LD_W_ABS, 0, 0, 4),
        ins(JEQ_K, 0, 7, ARCH),
        ins(LD_W_ABS, 0, 0, 0),
        ins(JEQ_K, 0, 5, libc::SYS_write as u32),
        ins(LD_W_ABS, 0, 0, 32),
        ins(JEQ_K, 0, 3, len),
        ins(LD_W_ABS, 0, 0, 36),
        ins(JEQ_K, 0, 1, 0),
        ins(RET_K, 0, 0, 0x8000_0000), // SECCOMP_RET_KILL_PROCESS
        ins(RET_K, 0, 0, 0x7fff_0000), // SECCOMP_RET_ALLOW
    ];
    let mut cmd = reference_command("ADD", container_id, ifname, "");
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: between fork and exec only two prctl system calls, on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, &prog as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn_with_stdin(&mut cmd, conf).wait().unwrap()
}

/// Rewrites a file in place (same inode, no entry of its directory created or removed).
pub fn rewrite_in_place(path: &Path, content: &str) {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(path).unwrap().ino();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(content.as_bytes()).unwrap();
    drop(f);
    assert_eq!(std::fs::metadata(path).unwrap().ino(), ino);
}

/// The addresses (without prefix) of a reference ADD result.
pub fn result_ips(v: &Value) -> Vec<String> {
    v["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("no ips in {v}"))
        .iter()
        .map(|i| {
            let a = i["address"].as_str().unwrap();
            a.split('/').next().unwrap().to_string()
        })
        .collect()
}

/// Name -> (content, mode) of every entry of a directory (directories get content `<dir>`).
pub fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        let content = if md.is_dir() {
            b"<dir>".to_vec()
        } else {
            std::fs::read(e.path()).unwrap()
        };
        m.insert(
            e.file_name().to_string_lossy().into_owned(),
            (content, md.permissions().mode() & 0o7777),
        );
    }
    m
}

/// The reservation files (names that are addresses) of a network directory: ip -> content.
pub fn reservations(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    snapshot(dir)
        .into_iter()
        .filter(|(n, _)| n.parse::<std::net::IpAddr>().is_ok())
        .map(|(n, (c, _))| (n, c))
        .collect()
}

/// A host-local network configuration.
pub fn conf(name: &str, data_dir: &Path, ipam_extra: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"{name}","type":"bridge","ipam":{{"type":"host-local","dataDir":"{}"{ipam_extra}}}}}"#,
        data_dir.display()
    )
}

/// Whether the network's lock can be taken right now (it must be free when nobody runs).
pub fn lock_is_free(net_dir: &Path) -> bool {
    let f = std::fs::File::open(net_dir.join("lock")).unwrap();
    match f.try_lock() {
        Ok(()) => {
            f.unlock().unwrap();
            true
        }
        Err(_) => false,
    }
}
