//! Running a CNI plugin binary as a runtime does, and reading what it left.

use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The reference plugins' directory (Debian's containernetworking-plugins).
pub fn reference_dir() -> PathBuf {
    let p = PathBuf::from("/usr/lib/cni");
    assert!(
        p.join("bridge").exists(),
        "the reference CNI plugins are missing: apt-get install containernetworking-plugins (the test command does)"
    );
    p
}

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts success and returns the JSON body (Null when empty).
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.status, 0,
            "expected success, got {}: {}\nstderr: {}",
            self.status, self.stdout, self.stderr
        );
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts a CNI error (exit 1, JSON with `code` and `msg`) and returns it.
    pub fn err(&self) -> Value {
        assert_eq!(
            self.status, 1,
            "expected exit 1, got {}: {}\nstderr: {}",
            self.status, self.stdout, self.stderr
        );
        let v = self.json();
        assert!(v["code"].is_u64(), "no code: {v}");
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "no msg: {v}"
        );
        v
    }
}

/// The command that runs `bin` with exactly these CNI variables (others cleared), its stdio piped.
pub fn plugin_command(bin: &Path, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    for k in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `bin` with exactly these CNI variables (others cleared) and `stdin`.
pub fn run_plugin(bin: &Path, vars: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut child = plugin_command(bin, vars)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin);
    }
    let out = child.wait_with_output().expect("wait");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// As [`run_plugin`], for input that once hung a plugin: panics (after killing it) when it has not finished
/// within `limit`, a generous bound that only tells "finished" from "hung". Stdin is written and the output
/// read by threads, so a plugin that stops reading cannot block the test either.
pub fn run_plugin_within(
    bin: &Path,
    vars: &[(&str, &str)],
    stdin: &[u8],
    limit: std::time::Duration,
) -> Run {
    let mut child = plugin_command(bin, vars)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let input = child.stdin.take().map(|mut i| {
        let data = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = i.write_all(&data);
        })
    });
    let reader = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(child.stdout.take().map(|o| Box::new(o) as _));
    let err = reader(child.stderr.take().map(|e| Box::new(e) as _));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not finish within {limit:?}: hung", bin.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    if let Some(t) = input {
        let _ = t.join();
    }
    Run {
        status: status.code().unwrap_or(-1),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The reservations in a host-local store directory (files named after IPs).
pub fn reservations(data_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(data_dir) {
        for net in rd.flatten() {
            if let Ok(files) = std::fs::read_dir(net.path()) {
                for f in files.flatten() {
                    let n = f.file_name().to_string_lossy().into_owned();
                    if n.parse::<std::net::IpAddr>().is_ok() {
                        out.push(n);
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// A map of env for quick building.
pub fn env_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
