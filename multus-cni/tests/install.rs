//! `multus install` / `multus uninstall` through the built binary, on temp directories standing for the
//! host's /etc/cni/net.d and /opt/cni/bin.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

struct Node {
    _dir: tempfile::TempDir,
    conf: PathBuf,
    bin: PathBuf,
    sa: PathBuf,
    /// The Multus cniDir the installed config names (as host and container see it).
    cache: PathBuf,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("net.d");
    let bin = dir.path().join("bin");
    let sa = dir.path().join("sa");
    let cache = dir.path().join("cache");
    for d in [&conf, &bin, &sa, &cache] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(sa.join("token"), "token-one").unwrap();
    std::fs::write(
        sa.join("ca.crt"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        conf.join("10-primary.conflist"),
        r#"{"cniVersion":"1.0.0","name":"primary","plugins":[{"type":"bridge","bridge":"cni0"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
    )
    .unwrap();
    Node {
        _dir: dir,
        conf,
        bin,
        sa,
        cache,
    }
}

/// `multus install --once` on the node's directories.
fn install_cmd(n: &Node, extra: &[&str]) -> Command {
    install_cmd_in(n, &n.conf, extra)
}

fn install_cmd_in(n: &Node, conf_dir: &Path, extra: &[&str]) -> Command {
    let mut c = daemon_cmd(n, conf_dir, extra);
    c.arg("--once");
    c
}

/// `multus install` as the DaemonSet runs it: it keeps running.
fn daemon_cmd(n: &Node, conf_dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(multus_bin());
    c.arg("install")
        .arg("--cni-conf-dir")
        .arg(conf_dir)
        .arg("--cni-bin-dir")
        .arg(&n.bin)
        .arg("--service-account-dir")
        .arg(&n.sa)
        .arg(format!("--multus-cni-dir={}", n.cache.display()))
        .args(extra)
        .env_remove("CNI_COMMAND")
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .env("KUBERNETES_SERVICE_PORT", "443");
    c
}

fn uninstall_cmd(n: &Node, extra: &[&str]) -> Command {
    let mut c = Command::new(multus_bin());
    c.arg("uninstall")
        .arg(format!("--cni-conf-dir={}", n.conf.display()))
        .args(extra)
        .env_remove("CNI_COMMAND");
    c
}

fn sigterm(child: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

fn run(mut c: Command) -> (i32, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn install_writes_binary_kubeconfig_and_conflist_and_uninstall_removes_them() {
    let n = node();
    let (code, err) = run(install_cmd(
        &n,
        &["--namespace-isolation", "--multus-log-level", "verbose"],
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(n.bin.join("multus")).unwrap(),
        std::fs::read(multus_bin()).unwrap()
    );
    let conf = read_json(&n.conf.join("00-multus.conflist"));
    let m = &conf["plugins"][0];
    assert_eq!(m["type"], "multus");
    assert_eq!(m["kubeconfig"], "/etc/cni/net.d/multus.d/multus.kubeconfig");
    assert_eq!(m["namespaceIsolation"], true);
    assert_eq!(m["logLevel"], "verbose");
    assert_eq!(m["capabilities"]["portMappings"], true);
    assert_eq!(m["delegates"][0]["name"], "primary");
    let kc = std::fs::read_to_string(n.conf.join("multus.d/multus.kubeconfig")).unwrap();
    assert!(
        kc.contains("token: \"token-one\"") && kc.contains("server: \"https://10.96.0.1:443\""),
        "{kc}"
    );

    // Nothing cached in the config's cniDir: uninstall removes the config.
    let (code, err) = run(uninstall_cmd(&n, &[]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no attachment is cached"), "{err}");
    assert!(!n.conf.join("00-multus.conflist").exists());
    assert!(!n.conf.join("multus.d").exists());
    assert!(n.conf.join("10-primary.conflist").exists());
    // The binary stays, so stale runtime calls can still tear pods down.
    assert!(n.bin.join("multus").exists());
}

#[test]
fn watch_follows_the_primary_config_and_token_and_cleans_up_on_sigterm() {
    let n = node();
    let mut child = daemon_cmd(
        &n,
        &n.conf,
        &[
            "--watch",
            "--poll-interval",
            "0.05",
            "--cleanup-config-on-exit",
        ],
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let conflist = n.conf.join("00-multus.conflist");
    wait_for("the first config", || conflist.exists());
    // The primary network is reconfigured: the Multus config follows.
    std::fs::write(
        n.conf.join("10-primary.conflist"),
        r#"{"cniVersion":"1.0.0","name":"primary-v2","plugins":[{"type":"bridge","bridge":"cni1"}]}"#,
    )
    .unwrap();
    wait_for("the regenerated config", || {
        std::fs::read(&conflist)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|v| v["plugins"][0]["delegates"][0]["name"] == "primary-v2")
    });
    // The token rotates: the kubeconfig follows (upstream breaks here, multus-cni #852).
    std::fs::write(n.sa.join("token"), "token-two").unwrap();
    let kc = n.conf.join("multus.d/multus.kubeconfig");
    wait_for("the new token", || {
        std::fs::read_to_string(&kc).is_ok_and(|t| t.contains("token-two"))
    });
    // A primary config going to an older version swaps .conflist for .conf: only one Multus config exists.
    std::fs::write(
        n.conf.join("10-primary.conflist"),
        r#"{"cniVersion":"0.3.1","name":"p3","type":"bridge"}"#,
    )
    .unwrap();
    wait_for("the .conf", || {
        n.conf.join("00-multus.conf").exists() && !conflist.exists()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(!n.conf.join("00-multus.conf").exists() && !kc.exists());
}

/// Every bad input: a clear message, a non-zero exit, the previous Multus config untouched.
#[test]
fn bad_inputs_fail_clearly_and_keep_the_previous_config() {
    let previous = b"{\"previous\": true}\n";
    let check = |n: &Node, extra: &[&str], word: &str| {
        std::fs::write(n.conf.join("00-multus.conflist"), previous).unwrap();
        let (code, err) = run(install_cmd(n, extra));
        assert_ne!(code, 0, "{word}: {err}");
        assert!(err.contains(word), "message should name {word:?}: {err}");
        assert_eq!(
            std::fs::read(n.conf.join("00-multus.conflist")).unwrap(),
            previous,
            "{word}"
        );
        let stray: Vec<_> = std::fs::read_dir(&n.conf)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".multus-tmp"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    };
    // No primary config.
    let n = node();
    std::fs::remove_file(n.conf.join("10-primary.conflist")).unwrap();
    check(&n, &[], "no primary network config");
    // A named primary that is missing.
    let n = node();
    check(&n, &["--primary-config", "99-nope.conf"], "99-nope.conf");
    // A malformed primary config.
    let n = node();
    std::fs::write(n.conf.join("10-primary.conflist"), "{not json").unwrap();
    check(&n, &[], "malformed");
    let n = node();
    std::fs::write(
        n.conf.join("10-primary.conflist"),
        r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#,
    )
    .unwrap();
    check(&n, &[], "plugins");
    // An unreadable token.
    let n = node();
    std::fs::remove_file(n.sa.join("token")).unwrap();
    check(&n, &[], "token");
    // No API server in the environment.
    let n = node();
    let mut c = install_cmd(&n, &[]);
    c.env_remove("KUBERNETES_SERVICE_HOST");
    std::fs::write(n.conf.join("00-multus.conflist"), previous).unwrap();
    let (code, err) = run(c);
    assert_ne!(code, 0);
    assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
    assert_eq!(
        std::fs::read(n.conf.join("00-multus.conflist")).unwrap(),
        previous
    );
}

/// A full disk: the write fails, the message says so, the previous config is whole. Needs root (a tiny tmpfs).
#[test]
fn full_disk_keeps_the_previous_config() {
    require_root();
    let n = node();
    let small = n.conf.parent().unwrap().join("small");
    std::fs::create_dir_all(&small).unwrap();
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=16k",
        "tmpfs",
        small.to_str().unwrap(),
    ]);
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            sh_quiet(&["umount", self.0.to_str().unwrap()]);
        }
    }
    let _u = Unmount(small.clone());
    // A primary config of 6 KiB, a previous Multus config, and the rest of the space taken.
    let big_name = "x".repeat(6000);
    std::fs::write(
        small.join("10-primary.conf"),
        format!(r#"{{"cniVersion":"0.3.1","name":"p","type":"bridge","pad":"{big_name}"}}"#),
    )
    .unwrap();
    let previous = b"{\"previous\": true}\n";
    std::fs::write(small.join("00-multus.conf"), previous).unwrap();
    let _ = std::fs::write(small.join("filler"), vec![0u8; 8192]);
    let (code, err) = run(install_cmd_in(
        &n,
        &small,
        &["--skip-kubeconfig", "--skip-multus-binary-copy"],
    ));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("cannot write") && err.contains("No space left"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(small.join("00-multus.conf")).unwrap(),
        previous
    );
}

#[test]
fn usage_and_help() {
    let out = Command::new(multus_bin())
        .args(["install", "--help"])
        .env_remove("CNI_COMMAND")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--cni-conf-dir",
        "--namespace-isolation",
        "--watch",
        "--cleanup-config-on-exit",
        "--primary-config",
    ] {
        assert!(text.contains(flag), "{flag} missing from help");
    }
    let out = Command::new(multus_bin())
        .arg("frobnicate")
        .env_remove("CNI_COMMAND")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frobnicate"));
}

/// Upstream's own DaemonSet container arguments, verbatim: k8snetworkplumbingwg/multus-cni,
/// `deployments/multus-daemonset.yml`, container `kube-multus` (`command: ["/thin_entrypoint"]`), at tag
/// v4.2.2 and unchanged on master (95a0932, 2026-08-20). Our image runs them as `multus install <args>`.
const UPSTREAM_DAEMONSET_ARGS: [&str; 3] = [
    "--multus-conf-file=auto",
    "--multus-autoconfig-dir=/host/etc/cni/net.d",
    "--cni-conf-dir=/host/etc/cni/net.d",
];

/// `multus install <args>` as in the DaemonSet's container: in a mount namespace and a root of its own, with
/// the node's temp directories mounted where upstream's manifests mount the host's (/host/etc/cni/net.d,
/// /host/opt/cni/bin) and the service account where Kubernetes mounts it.
fn in_container(n: &Node, args: &[&str]) -> Command {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let root = n.conf.parent().unwrap().join("root");
    let binds: Vec<(PathBuf, &str)> = vec![
        ("/usr".into(), "usr"),
        ("/proc".into(), "proc"),
        ("/dev".into(), "dev"),
        (n.conf.clone(), "host/etc/cni/net.d"),
        (n.bin.clone(), "host/opt/cni/bin"),
        (n.sa.clone(), "var/run/secrets/kubernetes.io/serviceaccount"),
        (multus_bin().parent().unwrap().to_path_buf(), "multus-bin"),
    ];
    for (_, d) in &binds {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        let _ = std::os::unix::fs::symlink(target, root.join(link));
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    let mounts: Vec<(CString, CString)> = binds
        .iter()
        .map(|(src, dst)| (c(src), c(&root.join(dst))))
        .collect();
    let (root_c, slash) = (c(&root), c(Path::new("/")));
    let exe = Path::new("/multus-bin").join(multus_bin().file_name().unwrap());
    let mut cmd = Command::new(exe);
    // SAFETY: only system calls on strings made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for (src, dst) in &mounts {
                check(libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
            }
            check(libc::chroot(root_c.as_ptr()))?;
            check(libc::chdir(slash.as_ptr()))
        });
    }
    cmd.arg("install")
        .args(args)
        .env_remove("CNI_COMMAND")
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .env("KUBERNETES_SERVICE_PORT", "443");
    cmd
}

#[test]
fn upstreams_daemonset_arguments_run_our_install_and_it_keeps_running() {
    require_root();
    let n = node();
    let mut child = in_container(&n, &UPSTREAM_DAEMONSET_ARGS)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let conflist = n.conf.join("00-multus.conflist");
    wait_for("the Multus config", || conflist.exists());
    let conf = read_json(&conflist);
    assert_eq!(conf["name"], "multus-cni-network");
    assert_eq!(conf["cniVersion"], "1.0.0");
    let m = &conf["plugins"][0];
    assert_eq!(m["type"], "multus");
    assert_eq!(m["kubeconfig"], "/etc/cni/net.d/multus.d/multus.kubeconfig");
    assert_eq!(m["capabilities"], serde_json::json!({"portMappings": true}));
    assert_eq!(
        m["delegates"][0],
        read_json(&n.conf.join("10-primary.conflist"))
    );
    let kc = std::fs::read_to_string(n.conf.join("multus.d/multus.kubeconfig")).unwrap();
    assert!(kc.contains("token: \"token-one\""), "{kc}");
    assert_eq!(
        std::fs::read(n.bin.join("multus")).unwrap(),
        std::fs::read(multus_bin()).unwrap()
    );
    // Like upstream's entrypoint, it does not exit: it watches (the primary changes, the config follows).
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "install exited");
    std::fs::write(
        n.conf.join("10-primary.conflist"),
        r#"{"cniVersion":"1.0.0","name":"primary-v2","plugins":[{"type":"bridge"}]}"#,
    )
    .unwrap();
    wait_for("the regenerated config", || {
        read_json(&conflist)["plugins"][0]["delegates"][0]["name"] == "primary-v2"
    });
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    // Without --cleanup-config-on-exit (upstream's default), the config stays.
    assert!(conflist.exists());
}

#[test]
fn every_upstream_flag_in_upstreams_forms() {
    let n = node();
    let extra_dir = n.conf.parent().unwrap().join("multus-net.d");
    let bin_file = format!("--multus-bin-file={}", multus_bin().display());
    let conf_dir_flag = format!("--multus-cni-conf-dir={}", extra_dir.display());
    let auto_dir = format!("--multus-autoconfig-dir={}", n.conf.display());
    let (code, err) = run(install_cmd(
        &n,
        &[
            "--multus-conf-file=auto",
            &auto_dir,
            "--namespace-isolation=true",
            "--global-namespaces=default,foo",
            "--multus-log-level=VERBOSE",
            "--multus-log-file=/var/log/multus.log",
            "--multus-log-to-stderr=false",
            "--cleanup-config-on-exit=true",
            "--skip-multus-binary-copy=true",
            "--rename-conf-file=false",
            "--override-network-name",
            "--force-cni-version=true",
            "--cni-version=1.1.0",
            &conf_dir_flag,
            "--readiness-indicator-file=/run/primary-ready",
            "--additional-bin-dir=/opt/multus/bin",
            "--skip-config-watch=false",
            "--multus-kubeconfig-file-host=/etc/kubernetes/multus.kubeconfig",
            "--multus-master-cni-file-name=10-primary.conflist",
            &bin_file,
            "--watch",
        ],
    ));
    assert_eq!(code, 0, "{err}");
    let conf = read_json(&n.conf.join("00-multus.conflist"));
    assert_eq!(conf["name"], "primary", "--override-network-name");
    assert_eq!(conf["cniVersion"], "1.1.0");
    let m = &conf["plugins"][0];
    assert_eq!(
        m["delegates"][0]["cniVersion"], "1.1.0",
        "--force-cni-version"
    );
    assert_eq!(m["namespaceIsolation"], true);
    assert_eq!(m["globalNamespaces"], "default,foo");
    assert_eq!(m["logLevel"], "verbose");
    assert_eq!(m["logFile"], "/var/log/multus.log");
    assert_eq!(m["logToStderr"], false);
    assert_eq!(m["readinessindicatorfile"], "/run/primary-ready");
    assert_eq!(m["binDir"], "/opt/multus/bin");
    assert_eq!(m["kubeconfig"], "/etc/kubernetes/multus.kubeconfig");
    assert!(extra_dir.is_dir(), "--multus-cni-conf-dir is created");
    assert!(!n.bin.join("multus").exists(), "--skip-multus-binary-copy");
    assert!(n.conf.join("10-primary.conflist").exists());
    // Defaults as upstream's: no logToStderr key when true, no namespaceIsolation when false.
    let n = node();
    let (code, err) = run(install_cmd(
        &n,
        &["--multus-log-to-stderr", "--namespace-isolation=false"],
    ));
    assert_eq!(code, 0, "{err}");
    let m = read_json(&n.conf.join("00-multus.conflist"))["plugins"][0].clone();
    assert!(
        m.get("logToStderr").is_none() && m.get("namespaceIsolation").is_none(),
        "{m}"
    );
    assert_eq!(m.get("logLevel"), None);
    assert!(m.get("preferNodeBinary").is_none());

    // Ours: --prefer-node-binary becomes preferNodeBinary.
    let n = node();
    let (code, err) = run(install_cmd(
        &n,
        &["--prefer-node-binary=macvlan, host-local"],
    ));
    assert_eq!(code, 0, "{err}");
    let m = read_json(&n.conf.join("00-multus.conflist"))["plugins"][0].clone();
    assert_eq!(
        m["preferNodeBinary"],
        serde_json::json!(["macvlan", "host-local"])
    );

    // --rename-conf-file: the primary is moved aside once the Multus config is written.
    let n = node();
    let (code, err) = run(install_cmd(&n, &["--rename-conf-file=true"]));
    assert_eq!(code, 0, "{err}");
    assert!(n.conf.join("10-primary.conflist.old").exists());
    assert!(!n.conf.join("10-primary.conflist").exists());
    assert!(n.conf.join("00-multus.conflist").exists());
}

#[test]
fn flags_we_refuse_or_values_we_reject_say_why() {
    let n = node();
    for (args, word) in [
        (
            &["--skip-tls-verify=true"][..],
            "always verifies the API server",
        ),
        (
            &["--multus-log-level=loud"][..],
            "Log levels should be one of",
        ),
        (&["--force-cni-version"][..], "needs --cni-version"),
        (
            &["--multus-conf-file=/nonexistent/70-multus.conf"][..],
            "multus-conf-file is not found",
        ),
        (
            &["--multus-bin-file=/nonexistent/multus"][..],
            "multus-bin-file is not found",
        ),
    ] {
        let (code, err) = run(install_cmd(&n, args));
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains(word), "{args:?}: {err}");
    }
    // A boolean that is not one: clap's usage error (exit 2), naming the value.
    let (code, err) = run(install_cmd(&n, &["--namespace-isolation=maybe"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a boolean"), "{err}");
    // Upstream's conf dir flag is a flag of ours: no "did you mean" the cache dir.
    let (code, err) = run(install_cmd(&n, &["--multus-cni-conf-dir", "/tmp"]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("did you mean"), "{err}");
}

#[test]
fn a_multus_conf_file_is_copied_and_retired_under_its_own_name() {
    let n = node();
    let cm = n.conf.parent().unwrap().join("multus-conf");
    std::fs::create_dir_all(&cm).unwrap();
    // Upstream's ConfigMap example (deployments/multus-daemonset.yml, cni-conf.json), with a bridge in
    // place of flannel and our cache dir.
    let own = format!(
        r#"{{
  "name": "multus-cni-network",
  "type": "multus",
  "capabilities": {{ "portMappings": true }},
  "cniDir": "{}",
  "delegates": [ {{ "cniVersion": "0.3.1", "name": "default-cni-network", "plugins": [ {{ "type": "bridge" }} ] }} ],
  "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig"
}}
"#,
        n.cache.display()
    );
    std::fs::write(cm.join("70-multus.conf"), &own).unwrap();
    let flag = format!("--multus-conf-file={}", cm.join("70-multus.conf").display());
    let (code, err) = run(install_cmd(&n, &[&flag]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(n.conf.join("70-multus.conf")).unwrap(),
        own
    );
    assert!(n.conf.join("multus.d/multus.kubeconfig").exists());
    assert!(!n.conf.join("00-multus.conflist").exists());
    std::fs::write(n.cache.join("c1@net1.json"), "{}").unwrap();
    let (code, err) = run(uninstall_cmd(&n, &[&flag]));
    assert_eq!(code, 0, "{err}");
    let v = read_json(&n.conf.join("70-multus.conf"));
    assert_eq!(v["retiring"]["configFile"], "/etc/cni/net.d/70-multus.conf");
    assert!(v.get("kubeconfig").is_none());
    assert_eq!(v["delegates"][0]["name"], "default-cni-network");
    assert!(!n.conf.join("multus.d").exists());
}

#[test]
fn skip_config_watch_writes_once_then_waits_for_sigterm() {
    let n = node();
    let mut child = daemon_cmd(
        &n,
        &n.conf,
        &["--skip-config-watch", "--poll-interval=0.05"],
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let conflist = n.conf.join("00-multus.conflist");
    wait_for("the Multus config", || conflist.exists());
    let first = std::fs::read(&conflist).unwrap();
    std::fs::write(
        n.conf.join("10-primary.conflist"),
        r#"{"cniVersion":"1.0.0","name":"primary-v2","plugins":[{"type":"bridge"}]}"#,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert!(child.try_wait().unwrap().is_none(), "install exited");
    assert_eq!(std::fs::read(&conflist).unwrap(), first, "not watched");
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

#[test]
fn version_as_upstreams_binary_prints_it() {
    for flag in ["-version", "--version", "-v"] {
        let out = Command::new(multus_bin())
            .arg(flag)
            .env_remove("CNI_COMMAND")
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(&format!("multus: version:v{}(", env!("CARGO_PKG_VERSION")))
                && text.contains(", commit:")
                && text.contains(", date:")
                && text.ends_with('\n')
                && text.lines().count() == 1,
            "{flag}: {text}"
        );
    }
}

// ---- Removal while pods made with Multus remain (issue 14): the retiring config. ----

/// The Multus config `install` writes around the node's primary conflist, as it is left retiring.
fn retiring_conflist(n: &Node, host_conf: &str) -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "multus-cni-network",
  "plugins": [
    {{
      "type": "multus",
      "capabilities": {{
        "portMappings": true
      }},
      "cniDir": "{cache}",
      "delegates": [
        {{
          "cniVersion": "1.0.0",
          "name": "primary",
          "plugins": [
            {{
              "type": "bridge",
              "bridge": "cni0"
            }},
            {{
              "type": "portmap",
              "capabilities": {{
                "portMappings": true
              }}
            }}
          ]
        }}
      ],
      "retiring": {{
        "configFile": "{host_conf}/00-multus.conflist"
      }}
    }}
  ]
}}
"#,
        cache = n.cache.display()
    )
}

#[test]
fn uninstall_leaves_a_retiring_conflist_for_each_kind_of_cached_attachment() {
    // What Go Multus 4.2.2 cached for a pod (shared/fixtures, beside the repository), else a stand-in: only
    // the file's name matters here.
    let go_id = "3f0c2a0e5b7d4c1f9a8e6b2d1c0f9e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d";
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let go_entry: Vec<u8> = [
        manifest.join("../../shared"),
        manifest.join("../../../shared"),
    ]
    .iter()
    .map(|s| {
        s.join("fixtures/go-multus-4.2.2/delegates-mode/cniDir")
            .join(go_id)
    })
    .find_map(|p| std::fs::read(p).ok())
    .unwrap_or_else(|| br#"[{"Name":"podnet","Bytes":"e30="}]"#.to_vec());
    let kinds: [(&str, &str, &[u8]); 3] = [
        ("ours", "c1@net1.json", br#"{"kind":"multus-attachments"}"#),
        ("ours, earlier format", "c1-net1.json", br#"{"format":1}"#),
        ("Go Multus 4.x", go_id, &go_entry),
    ];
    for (kind, file, content) in kinds {
        let n = node();
        let (code, err) = run(install_cmd(&n, &[]));
        assert_eq!(code, 0, "{err}");
        let installed = std::fs::read(n.conf.join("00-multus.conflist")).unwrap();
        std::fs::create_dir_all(n.cache.join("results")).unwrap();
        std::fs::write(n.cache.join("lock"), "").unwrap();
        std::fs::write(n.cache.join(file), content).unwrap();
        let (code, err) = run(uninstall_cmd(&n, &[]));
        assert_eq!(code, 0, "{kind}: {err}");
        assert!(
            err.contains("1 attachments are cached") && err.contains("retiring"),
            "{kind}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(n.conf.join("00-multus.conflist")).unwrap(),
            retiring_conflist(&n, "/etc/cni/net.d"),
            "{kind}"
        );
        assert!(
            !n.conf.join("multus.d").exists(),
            "{kind}: the kubeconfig goes"
        );
        // Uninstalling again changes nothing.
        let (code, err) = run(uninstall_cmd(&n, &[]));
        assert_eq!(code, 0, "{kind}: {err}");
        assert_eq!(
            std::fs::read_to_string(n.conf.join("00-multus.conflist")).unwrap(),
            retiring_conflist(&n, "/etc/cni/net.d")
        );
        // Re-install (or an upgrade in place) over it: the normal config again, as first written.
        let (code, err) = run(install_cmd(&n, &[]));
        assert_eq!(code, 0, "{kind}: {err}");
        assert_eq!(
            std::fs::read(n.conf.join("00-multus.conflist")).unwrap(),
            installed,
            "{kind}"
        );
        assert!(n.conf.join("multus.d/multus.kubeconfig").exists());
    }
}

#[test]
fn uninstall_leaves_a_retiring_conf_for_a_conf_primary() {
    let n = node();
    std::fs::remove_file(n.conf.join("10-primary.conflist")).unwrap();
    std::fs::write(
        n.conf.join("10-flannel.conf"),
        r#"{"cniVersion":"0.3.1","name":"flannel","type":"bridge","capabilities":{"portMappings":true}}"#,
    )
    .unwrap();
    let (code, err) = run(install_cmd(&n, &["--multus-log-level=verbose"]));
    assert_eq!(code, 0, "{err}");
    std::fs::write(n.cache.join("c1@eth0.json"), "{}").unwrap();
    let (code, err) = run(uninstall_cmd(&n, &["--cni-conf-dir-host=/host-view/net.d"]));
    assert_eq!(code, 0, "{err}");
    let expected = format!(
        r#"{{
  "cniVersion": "0.3.1",
  "name": "multus-cni-network",
  "type": "multus",
  "capabilities": {{
    "portMappings": true
  }},
  "logLevel": "verbose",
  "cniDir": "{}",
  "delegates": [
    {{
      "cniVersion": "0.3.1",
      "name": "flannel",
      "type": "bridge",
      "capabilities": {{
        "portMappings": true
      }}
    }}
  ],
  "retiring": {{
    "configFile": "/host-view/net.d/00-multus.conf"
  }}
}}
"#,
        n.cache.display()
    );
    assert_eq!(
        std::fs::read_to_string(n.conf.join("00-multus.conf")).unwrap(),
        expected
    );
    // The meta-plugin's side (after the last cached pod is deleted) removes it only while it says retiring.
    std::fs::remove_file(n.cache.join("c1@eth0.json")).unwrap();
    assert_eq!(
        multus_cni::install::retire::step_aside(&n.conf.join("00-multus.conf"), &n.cache).unwrap(),
        multus_cni::install::retire::StepAside::Removed
    );
}

#[test]
fn uninstall_without_a_view_of_the_cache_retires_rather_than_leak() {
    let n = node();
    let (code, err) = run(install_cmd(
        &n,
        &["--multus-cni-dir=/var/lib/cni/no-such-multus-dir"],
    ));
    assert_eq!(code, 0, "{err}");
    let (code, err) = run(uninstall_cmd(&n, &[]));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not mounted in this container"), "{err}");
    let v = read_json(&n.conf.join("00-multus.conflist"));
    assert_eq!(
        v["plugins"][0]["retiring"]["configFile"],
        "/etc/cni/net.d/00-multus.conflist"
    );
    // Told where the cache is, and it is empty: removed.
    let flag = format!("--multus-cni-dir-in-container={}", n.cache.display());
    let (code, err) = run(uninstall_cmd(&n, &[&flag]));
    assert_eq!(code, 0, "{err}");
    assert!(!n.conf.join("00-multus.conflist").exists(), "{err}");
}

#[test]
fn sigterm_with_cleanup_retires_and_a_running_install_restores_its_config() {
    let n = node();
    std::fs::write(n.cache.join("c1@net1.json"), "{}").unwrap();
    let mut child = daemon_cmd(
        &n,
        &n.conf,
        &["--cleanup-config-on-exit=true", "--poll-interval=0.05"],
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let conflist = n.conf.join("00-multus.conflist");
    let kc = n.conf.join("multus.d/multus.kubeconfig");
    wait_for("the Multus config", || conflist.exists() && kc.exists());
    let installed = std::fs::read(&conflist).unwrap();
    // Another instance (the old pod of a surging rolling update) retires the config on its way out: the
    // running one writes it back, with the kubeconfig.
    let (code, err) = run(uninstall_cmd(&n, &[]));
    assert_eq!(code, 0, "{err}");
    wait_for("the config written back", || {
        std::fs::read(&conflist).ok().as_deref() == Some(&installed[..]) && kc.exists()
    });
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(&conflist).unwrap(),
        retiring_conflist(&n, "/etc/cni/net.d")
    );
    assert!(!kc.exists());
}

#[test]
fn started_as_thin_entrypoint_it_is_install() {
    let n = node();
    let link = n.conf.parent().unwrap().join("thin_entrypoint");
    std::os::unix::fs::symlink(multus_bin(), &link).unwrap();
    let (code, err) = run({
        let mut c = Command::new(&link);
        c.arg(format!("--cni-conf-dir={}", n.conf.display()))
            .arg(format!("--cni-bin-dir={}", n.bin.display()))
            .arg(format!("--service-account-dir={}", n.sa.display()))
            .args(["--multus-conf-file=auto", "--once"])
            .env_remove("CNI_COMMAND")
            .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
            .env("KUBERNETES_SERVICE_PORT", "443");
        c
    });
    assert_eq!(code, 0, "{err}");
    assert!(n.conf.join("00-multus.conflist").exists());
}
