//! `logFile` rotation with many plugin processes writing one file (each CNI call is its own process): no
//! line lost, split or interleaved, and a full file rotated once, however many processes found it full.
//!
//! The writers are this test binary run again (`child_writer`, which does nothing unless
//! `MULTUS_LOG_CHILD` is set), each a process of its own with the logging a meta-plugin call sets up.
//!
//! The cost per call: `cargo test --release -p multus-cni --test log_rotation -- --ignored --nocapture`.

use multus_cni::logging::{self, LogOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const PAD: usize = 90;

/// One writer process: `MULTUS_LOG_CHILD=<log file>`, `LOG_ID`, `LOG_LINES`, `LOG_MAX` (bytes),
/// `LOG_COMPRESS`.
#[test]
fn child_writer() {
    let Ok(path) = std::env::var("MULTUS_LOG_CHILD") else {
        return;
    };
    let env = |k: &str| std::env::var(k).unwrap();
    let id: usize = env("LOG_ID").parse().unwrap();
    let lines: usize = env("LOG_LINES").parse().unwrap();
    let opts = LogOptions {
        max_size_bytes: env("LOG_MAX").parse().unwrap(),
        max_age_days: 0,
        max_backups: 0,
        compress: env("LOG_COMPRESS") == "true",
    };
    logging::init_with_options("verbose", Some(Path::new(&path)), false, &opts);
    let pad = "x".repeat(PAD);
    for n in 0..lines {
        tracing::info!("p{id:02} n{n:05} {pad}");
    }
}

fn read_all(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let text = if name.ends_with(".gz") {
            let out = Command::new("gzip")
                .arg("-dc")
                .arg(e.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{name} is not gzip");
            String::from_utf8(out.stdout).unwrap()
        } else {
            std::fs::read_to_string(e.path()).unwrap()
        };
        files.insert(name, text);
    }
    files
}

fn run_writers(dir: &Path, procs: usize, lines: usize, max: u64, compress: bool) -> PathBuf {
    let path = dir.join("multus.log");
    let me = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..procs)
        .map(|id| {
            Command::new(&me)
                .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
                .env("MULTUS_LOG_CHILD", &path)
                .env("LOG_ID", id.to_string())
                .env("LOG_LINES", lines.to_string())
                .env("LOG_MAX", max.to_string())
                .env("LOG_COMPRESS", compress.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    path
}

fn check(dir: &Path, procs: usize, lines: usize, max: u64) -> usize {
    let files = read_all(dir);
    let mut seen: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let line_len = "2026-01-01T00:00:00Z [verbose] p00 n00000 ".len() + PAD;
    for (name, text) in &files {
        let mut last: BTreeMap<usize, usize> = BTreeMap::new();
        for l in text.lines() {
            // Whole, never two lines run together nor one cut in two.
            assert_eq!(l.len(), line_len, "{name}: {l:?}");
            let rest = l.split_once(" [verbose] p").unwrap().1;
            let id: usize = rest[..2].parse().unwrap();
            let n: usize = rest[4..9].parse().unwrap();
            assert!(rest.ends_with(&"x".repeat(PAD)), "{name}: {l:?}");
            if let Some(prev) = last.insert(id, n) {
                assert!(n > prev, "{name}: p{id} n{n} after n{prev}");
            }
            seen.entry(id).or_default().push(n);
        }
        let size = text.len() as u64;
        assert!(size <= max, "{name} is {size} bytes, over {max}");
        if name != "multus.log" {
            // Rotated only when the next line would not fit: never a second time by another process
            // that had found the same file full.
            assert!(
                size + line_len as u64 + 1 > max,
                "{name} was rotated at {size} bytes of {max}"
            );
        }
    }
    assert_eq!(seen.len(), procs);
    for (id, mut ns) in seen {
        ns.sort();
        assert_eq!(ns, (0..lines).collect::<Vec<_>>(), "lines of p{id}");
    }
    files.len() - 1
}

#[test]
fn many_processes_one_file_nothing_lost_rotated_once() {
    let d = tempfile::tempdir().unwrap();
    let (procs, lines, max) = (6, 1500, 32 * 1024);
    run_writers(d.path(), procs, lines, max, false);
    let rotated = check(d.path(), procs, lines, max);
    // ~1.2 MB in 32 KiB files.
    assert!(rotated >= 30, "{rotated} rotations");
}

#[test]
fn many_processes_with_compression() {
    let d = tempfile::tempdir().unwrap();
    let (procs, lines, max) = (4, 800, 16 * 1024);
    run_writers(d.path(), procs, lines, max, true);
    let rotated = check(d.path(), procs, lines, max);
    assert!(rotated >= 20, "{rotated} rotations");
    for e in std::fs::read_dir(d.path()).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(
            n == "multus.log" || n.ends_with(".gz") || n.starts_with('.'),
            "{n}"
        );
    }
}
