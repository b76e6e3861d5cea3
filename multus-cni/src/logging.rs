//! Logging through `tracing`: to stderr and/or `logFile`, at `logLevel`, never to stdout (stdout carries the
//! CNI result).

use std::path::Path;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Maps Multus' `logLevel` names (`panic`, `error`, `warning`, `info`/`verbose`, `debug`) to a filter.
pub fn level(name: &str) -> LevelFilter {
    match name.to_ascii_lowercase().as_str() {
        "debug" => LevelFilter::DEBUG,
        "verbose" | "info" => LevelFilter::INFO,
        "warning" | "warn" => LevelFilter::WARN,
        "panic" | "error" | "" => LevelFilter::ERROR,
        _ => LevelFilter::ERROR,
    }
}

/// Installs the global subscriber once. A log file that cannot be opened falls back to stderr alone (and
/// says so there): logging must never make a CNI operation fail.
pub fn init(level_name: &str, log_file: Option<&Path>, to_stderr: bool) {
    let lvl = level(level_name);
    let file = log_file.and_then(|p| {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "multus: cannot open logFile {}: {e}; logging to stderr",
                    p.display()
                );
                None
            }
        }
    });
    let builder = tracing_subscriber::fmt()
        .with_max_level(lvl)
        .with_ansi(false)
        .with_target(false);
    let _ = match (file, to_stderr) {
        (Some(f), true) => builder
            .with_writer(std::sync::Mutex::new(f).and(std::io::stderr))
            .try_init(),
        (Some(f), false) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
        (None, _) => builder.with_writer(std::io::stderr).try_init(),
    };
}
