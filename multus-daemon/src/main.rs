//! `multus-daemon`: the thick Multus plugin's per-node daemon (see the library, [`multus_daemon`]).
//! Arguments as upstream's: `-config FILE` (default `/etc/cni/net.d/multus.d/daemon-config.json`),
//! `-version`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match multus_daemon::run::config_arg(&args) {
        Ok(Some(path)) => multus_daemon::run(&path),
        Ok(None) => {
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
