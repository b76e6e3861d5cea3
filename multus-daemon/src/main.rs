//! `multus-daemon`: the thick Multus plugin's per-node daemon (see the library, [`multus_daemon`]).
//! Arguments as upstream's: `-config FILE` (default `/etc/cni/net.d/multus.d/daemon-config.json`),
//! `-version`; ours: `-check` (only parse the config and say what is wrong).

use multus_daemon::run::{parse_args, Args};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match parse_args(&args) {
        Ok(Args::Run(path)) => multus_daemon::run(&path),
        Ok(Args::Check(path)) => match multus_daemon::config::DaemonConfig::load(&path) {
            Ok(_) => 0,
            Err(e) => {
                eprintln!("multus-daemon: {e}");
                1
            }
        },
        Ok(Args::Version) => {
            println!("multus-daemon: {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Err(e) => {
            eprintln!("multus-daemon: {e}");
            2
        }
    };
    std::process::exit(code);
}
