//! Bad input to the built binary: every case must exit 1 with a CNI error as JSON on stdout, carrying the
//! spec's code and a message that names what is wrong. No case may panic or print anything else.

mod support;

use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use support::*;

/// Script delegates standing for misbehaving plugins.
fn fake_plugins(dir: &Path) {
    let scripts = [
        ("garbage", "#!/bin/sh\necho 'this is not json'\n"),
        ("garbage-fail", "#!/bin/sh\necho 'oops'\nexit 1\n"),
        ("dies", "#!/bin/sh\necho 'dying' >&2\nexit 3\n"),
        ("killed", "#!/bin/sh\nkill -9 $$\n"),
        ("hangs", "#!/bin/sh\nexec sleep 30\n"),
        ("busy", "#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"try later\"}'\nexit 1\n"),
        ("badresult", "#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"300.1.1.1/24\"}]}'\n"),
        ("badversion", "#!/bin/sh\necho '{\"cniVersion\":\"7.0.0\"}'\n"),
    ];
    for (name, body) in scripts {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(dir.join("notexec"), "#!/bin/sh\n").unwrap();
}

struct Case {
    what: &'static str,
    vars: Vec<(&'static str, String)>,
    stdin: Vec<u8>,
    code: u64,
    word: &'static str,
}

fn add_vars() -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", "ADD".into()),
        ("CNI_CONTAINERID", "c0ffee".into()),
        ("CNI_NETNS", "/proc/self/ns/net".into()),
        ("CNI_IFNAME", "eth0".into()),
        ("CNI_PATH", "/nonexistent".into()),
    ]
}

fn with(
    mut vars: Vec<(&'static str, String)>,
    k: &'static str,
    v: Option<&str>,
) -> Vec<(&'static str, String)> {
    vars.retain(|(key, _)| *key != k);
    if let Some(v) = v {
        vars.push((k, v.to_string()));
    }
    vars
}

fn conf_with(bin: &Path, cache: &Path, delegates: Value) -> Vec<u8> {
    json!({"cniVersion": "1.0.0", "name": "m", "type": "multus", "binDir": bin, "cniDir": cache,
           "delegateTimeout": 1, "delegates": delegates})
    .to_string()
    .into_bytes()
}

#[test]
fn bad_inputs_get_cni_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&bin).unwrap();
    fake_plugins(&bin);
    let good = conf_with(&bin, &cache, json!([{"type": "garbage"}]));
    let one = |t: &str| conf_with(&bin, &cache, json!([{"type": t}]));
    let file = dir.path().join("plainfile");
    std::fs::write(&file, "x").unwrap();

    let mut cases = vec![
        Case { what: "empty CNI_COMMAND", vars: with(add_vars(), "CNI_COMMAND", Some("")), stdin: good.clone(), code: 4, word: "CNI_COMMAND" },
        Case { what: "unknown CNI_COMMAND", vars: with(add_vars(), "CNI_COMMAND", Some("ATTACH")), stdin: good.clone(), code: 4, word: "ATTACH" },
        Case { what: "lower-case verb", vars: with(add_vars(), "CNI_COMMAND", Some("add")), stdin: good.clone(), code: 4, word: "CNI_COMMAND" },
        Case { what: "no container ID", vars: with(add_vars(), "CNI_CONTAINERID", None), stdin: good.clone(), code: 4, word: "CNI_CONTAINERID" },
        Case { what: "container ID with /", vars: with(add_vars(), "CNI_CONTAINERID", Some("a/b")), stdin: good.clone(), code: 4, word: "CNI_CONTAINERID" },
        Case { what: "container ID starting with -", vars: with(add_vars(), "CNI_CONTAINERID", Some("-abc")), stdin: good.clone(), code: 4, word: "CNI_CONTAINERID" },
        Case { what: "container ID with space", vars: with(add_vars(), "CNI_CONTAINERID", Some("a b")), stdin: good.clone(), code: 4, word: "CNI_CONTAINERID" },
        Case { what: "no netns on ADD", vars: with(add_vars(), "CNI_NETNS", None), stdin: good.clone(), code: 4, word: "CNI_NETNS" },
        Case { what: "no ifname", vars: with(add_vars(), "CNI_IFNAME", None), stdin: good.clone(), code: 4, word: "CNI_IFNAME" },
        Case { what: "ifname of 16 bytes", vars: with(add_vars(), "CNI_IFNAME", Some("abcdefghijklmnop")), stdin: good.clone(), code: 4, word: "15 bytes" },
        Case { what: "ifname .", vars: with(add_vars(), "CNI_IFNAME", Some(".")), stdin: good.clone(), code: 4, word: "interface name" },
        Case { what: "ifname ..", vars: with(add_vars(), "CNI_IFNAME", Some("..")), stdin: good.clone(), code: 4, word: "interface name" },
        Case { what: "ifname with :", vars: with(add_vars(), "CNI_IFNAME", Some("eth0:1")), stdin: good.clone(), code: 4, word: "interface name" },
        Case { what: "ifname with /", vars: with(add_vars(), "CNI_IFNAME", Some("a/b")), stdin: good.clone(), code: 4, word: "interface name" },
        Case { what: "ifname with space", vars: with(add_vars(), "CNI_IFNAME", Some("a b")), stdin: good.clone(), code: 4, word: "interface name" },
        Case { what: "no CNI_PATH", vars: with(add_vars(), "CNI_PATH", None), stdin: good.clone(), code: 4, word: "CNI_PATH" },
        Case { what: "CNI_ARGS without =", vars: with(add_vars(), "CNI_ARGS", Some("IgnoreUnknown")), stdin: good.clone(), code: 4, word: "CNI_ARGS" },
        Case { what: "empty stdin", vars: add_vars(), stdin: b"".to_vec(), code: 6, word: "JSON" },
        Case { what: "truncated JSON", vars: add_vars(), stdin: b"{\"cniVersion\": \"1.0".to_vec(), code: 6, word: "JSON" },
        Case { what: "JSON array", vars: add_vars(), stdin: b"[1,2]".to_vec(), code: 6, word: "object" },
        Case { what: "cniVersion 0.5.0", vars: add_vars(), stdin: br#"{"cniVersion":"0.5.0","delegates":[{"type":"x"}]}"#.to_vec(), code: 1, word: "0.5.0" },
        Case { what: "cniVersion not x.y.z", vars: add_vars(), stdin: br#"{"cniVersion":"one","delegates":[{"type":"x"}]}"#.to_vec(), code: 1, word: "cniVersion" },
        Case { what: "cniVersion a number", vars: add_vars(), stdin: br#"{"cniVersion":1,"delegates":[{"type":"x"}]}"#.to_vec(), code: 7, word: "cniVersion" },
        Case { what: "no delegates", vars: add_vars(), stdin: br#"{"cniVersion":"1.0.0","name":"m"}"#.to_vec(), code: 7, word: "delegates" },
        Case { what: "delegates not a list", vars: add_vars(), stdin: br#"{"cniVersion":"1.0.0","delegates":{"type":"x"}}"#.to_vec(), code: 7, word: "delegates" },
        Case { what: "delegate without type", vars: add_vars(), stdin: conf_with(&bin, &cache, json!([{"name": "x"}])), code: 7, word: "type" },
        Case { what: "delegate type is a path", vars: add_vars(), stdin: one("../bin/garbage"), code: 7, word: "../bin/garbage" },
        Case { what: "unknown delegate type", vars: add_vars(), stdin: one("nosuchplugin"), code: 7, word: "nosuchplugin" },
        Case { what: "plugin not executable", vars: add_vars(), stdin: one("notexec"), code: 7, word: "notexec" },
        Case { what: "delegate with bad cniVersion", vars: add_vars(), stdin: conf_with(&bin, &cache, json!([{"type": "x", "cniVersion": "9.9.9"}])), code: 1, word: "delegates[0]" },
        Case { what: "conflist without plugins", vars: add_vars(), stdin: conf_with(&bin, &cache, json!([{"name": "l", "cniVersion": "1.0.0", "plugins": []}])), code: 7, word: "plugins" },
        Case { what: "binDir not a string", vars: add_vars(), stdin: br#"{"cniVersion":"1.0.0","binDir":["/x"],"delegates":[{"type":"x"}]}"#.to_vec(), code: 7, word: "binDir" },
        Case { what: "logLevel not a string", vars: add_vars(), stdin: br#"{"cniVersion":"1.0.0","logLevel":5,"delegates":[{"type":"x"}]}"#.to_vec(), code: 7, word: "logLevel" },
        Case { what: "netns does not exist", vars: with(add_vars(), "CNI_NETNS", Some("/var/run/netns/does-not-exist")), stdin: good.clone(), code: 3, word: "does-not-exist" },
        Case { what: "netns is a plain file", vars: with(add_vars(), "CNI_NETNS", Some(file.to_str().unwrap())), stdin: good.clone(), code: 3, word: "not a network namespace" },
        Case { what: "delegate prints garbage", vars: add_vars(), stdin: one("garbage"), code: 101, word: "garbage" },
        Case { what: "delegate prints garbage and fails", vars: add_vars(), stdin: one("garbage-fail"), code: 100, word: "garbage-fail" },
        Case { what: "delegate dies", vars: add_vars(), stdin: one("dies"), code: 100, word: "status 3" },
        Case { what: "delegate killed", vars: add_vars(), stdin: one("killed"), code: 100, word: "signal 9" },
        Case { what: "delegate hangs", vars: add_vars(), stdin: one("hangs"), code: 102, word: "hangs" },
        Case { what: "delegate says try again", vars: add_vars(), stdin: one("busy"), code: 11, word: "try later" },
        Case { what: "delegate result with a bad address", vars: add_vars(), stdin: one("badresult"), code: 101, word: "badresult" },
        Case { what: "delegate result of unknown version", vars: add_vars(), stdin: one("badversion"), code: 101, word: "badversion" },
        Case { what: "two delegates, same ifname impossible; bad GC list", vars: vec![("CNI_COMMAND", "GC".into())],
               stdin: br#"{"cniVersion":"1.1.0","delegates":[{"type":"x"}],"cni.dev/valid-attachments":"all"}"#.to_vec(), code: 6, word: "valid-attachments" },
        Case { what: "CHECK with nothing cached", vars: with(add_vars(), "CNI_COMMAND", Some("CHECK")), stdin: good.clone(), code: 7, word: "CHECK" },
        Case { what: "kubeconfig mode, the kubeconfig file does not exist", vars: add_vars(),
               stdin: br#"{"cniVersion":"1.0.0","kubeconfig":"/nonexistent/multus.kubeconfig","clusterNetwork":"x"}"#.to_vec(), code: 7, word: "/nonexistent/multus.kubeconfig" },
        Case { what: "kubeconfig mode without a default network", vars: add_vars(),
               stdin: br#"{"cniVersion":"1.0.0","kubeconfig":"/etc/k"}"#.to_vec(), code: 7, word: "clusterNetwork" },
    ];
    cases.retain(|c| !c.what.is_empty());
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for c in &cases {
        let vars: Vec<(&str, &str)> = c.vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = run_plugin(&multus_bin(), &vars, &c.stdin);
        let ok = r.status == 1
            && serde_json::from_str::<Value>(&r.stdout).is_ok_and(|v| {
                v["code"].as_u64() == Some(c.code)
                    && v["msg"].as_str().is_some_and(|m| m.contains(c.word))
            })
            && !r.stderr.contains("panicked");
        if !ok {
            failures.push(format!(
                "{}: want code {} naming {:?}; got exit {} stdout {} stderr {}",
                c.what,
                c.code,
                c.word,
                r.status,
                r.stdout.trim(),
                r.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // None of them left a cache entry behind.
    let left: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn without_a_cni_environment_it_prints_usage() {
    let r = run_plugin(&multus_bin(), &[], b"");
    assert_eq!(r.status, 2);
    assert!(
        r.stdout.contains("Usage") || r.stderr.contains("Usage"),
        "{r:?}"
    );
    let r = run_plugin(&multus_bin(), &[], b"");
    assert!(!r.stdout.contains("\"code\""));
}
