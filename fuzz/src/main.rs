//! `fuzz`: run one target for longer than the test suite does, or replay an input.
//!
//! ```text
//! cargo run -p multus-fuzz --release -- list
//! cargo run -p multus-fuzz --release -- run <target> [seconds]     (FUZZ_SEED=n to reproduce)
//! cargo run -p multus-fuzz --release -- replay <target> <file>...
//! ```

use std::process::ExitCode;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!("usage: fuzz list | fuzz run <target> [seconds] | fuzz replay <target> <file>...");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = |name: &str| {
        let t = multus_fuzz::targets::find(name);
        if t.is_none() {
            eprintln!("no target {name:?}: `fuzz list` shows them");
        }
        t
    };
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["list"] => {
            for t in multus_fuzz::targets::TARGETS {
                println!("{:28} {}", t.name, t.about);
            }
            ExitCode::SUCCESS
        }
        ["run", name, rest @ ..] => {
            let Some(t) = target(name) else {
                return ExitCode::from(2);
            };
            let secs = rest
                .first()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(60.0);
            let seed = multus_fuzz::seed();
            match multus_fuzz::run(t, Duration::from_secs_f64(secs), seed) {
                Ok(r) => {
                    println!(
                        "{}: {} corpus files and {} generated inputs in {:.1?}, no finding (FUZZ_SEED={})",
                        r.target, r.replayed, r.cases, r.elapsed, r.seed
                    );
                    ExitCode::SUCCESS
                }
                Err(f) => {
                    eprintln!("{f}");
                    ExitCode::FAILURE
                }
            }
        }
        ["replay", name, files @ ..] if !files.is_empty() => {
            let Some(t) = target(name) else {
                return ExitCode::from(2);
            };
            let mut failed = false;
            for f in files {
                match std::fs::read(f).map(|b| multus_fuzz::check(t, &b)) {
                    Ok(Ok(())) => println!("{f}: ok"),
                    Ok(Err(why)) => {
                        failed = true;
                        println!("{f}: {why}");
                    }
                    Err(e) => {
                        failed = true;
                        println!("{f}: {e}");
                    }
                }
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => usage(),
    }
}
