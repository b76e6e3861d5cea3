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
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("net.d");
    let bin = dir.path().join("bin");
    let sa = dir.path().join("sa");
    for d in [&conf, &bin, &sa] {
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
    }
}

fn install_cmd(n: &Node, extra: &[&str]) -> Command {
    install_cmd_in(n, &n.conf, extra)
}

fn install_cmd_in(n: &Node, conf_dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(multus_bin());
    c.arg("install")
        .arg("--cni-conf-dir")
        .arg(conf_dir)
        .arg("--cni-bin-dir")
        .arg(&n.bin)
        .arg("--service-account-dir")
        .arg(&n.sa)
        .args(extra)
        .env_remove("CNI_COMMAND")
        .env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
        .env("KUBERNETES_SERVICE_PORT", "443");
    c
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

    let (code, err) = run({
        let mut c = Command::new(multus_bin());
        c.args(["uninstall", "--cni-conf-dir"])
            .arg(&n.conf)
            .env_remove("CNI_COMMAND");
        c
    });
    assert_eq!(code, 0, "{err}");
    assert!(!n.conf.join("00-multus.conflist").exists());
    assert!(!n.conf.join("multus.d").exists());
    assert!(n.conf.join("10-primary.conflist").exists());
    // The binary stays, so stale runtime calls can still tear pods down.
    assert!(n.bin.join("multus").exists());
}

#[test]
fn watch_follows_the_primary_config_and_token_and_cleans_up_on_sigterm() {
    let n = node();
    let mut child = install_cmd(
        &n,
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
