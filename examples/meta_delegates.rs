//! Embedding the meta-plugin: the Multus flow in this process on a kubeconfig-less config (upstream's
//! `delegates`): eth0 from a bridge, net1 from a macvlan, both with host-local, both built in or reference
//! binaries as the config says. ADD, CHECK, DEL, each as a runtime would run `multus`.
//!
//! ```text
//! ip netns add demo
//! cargo run -p multus-examples --example meta_delegates -- /var/run/netns/demo eth0
//! ```
//! (the second argument is the host link net1's macvlan sits on).

use multus_cni::meta::{conf::MultusConf, Meta, PodSource};
use multus_core::cni::{CniArgs, CniEnv, CniError, Command};
use std::path::Path;

/// The Multus config: eth0 from the reference bridge, net1 a built-in macvlan on `master`.
pub fn config(master: &str, state: &Path, bridge: &str) -> Result<MultusConf, CniError> {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "multus-example", "type": "multus",
        "cniDir": state.join("multus"), "binDir": "/usr/lib/cni",
        "delegates": [
            { "name": "pod-net", "type": "bridge", "bridge": bridge,
              "ipam": { "type": "host-local", "subnet": "10.98.0.0/24", "dataDir": state.join("ipam") } },
            { "name": "macvlan-net", "type": "macvlan", "master": master,
              "ipam": { "type": "host-local", "subnet": "10.97.0.0/24", "dataDir": state.join("ipam") } }
        ]
    });
    MultusConf::parse(conf.to_string().as_bytes())
}

/// Runs one verb of the meta-plugin for container `example` in `netns`.
pub async fn verb(
    command: Command,
    netns: &Path,
    conf: &MultusConf,
) -> Result<Option<serde_json::Value>, CniError> {
    let env = CniEnv {
        command,
        container_id: "example".into(),
        netns: Some(netns.to_path_buf()),
        ifname: "eth0".into(),
        args: CniArgs::default(),
        path: vec!["/usr/lib/cni".into()],
    };
    Meta::new(&env, conf, PodSource::None).run().await
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(netns), Some(master)) = (args.next(), args.next()) else {
        eprintln!("usage: meta_delegates <netns path> <master link>");
        std::process::exit(2);
    };
    let state = std::env::temp_dir().join("multus-example-meta");
    let conf = config(&master, &state, "mexample0")?;
    let netns = Path::new(&netns);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(verb(Command::Add, netns, &conf))?;
    println!("ADD: {}", result.unwrap_or_default());
    rt.block_on(verb(Command::Check, netns, &conf))?;
    println!("CHECK: ok");
    rt.block_on(verb(Command::Del, netns, &conf))?;
    println!("DEL: ok");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use multus_testsupport::{reservations, HostLink, Netns};

    #[test]
    fn the_meta_plugin_runs_in_process() {
        let ns = Netns::new("exmeta");
        let master = HostLink::veth("exmm");
        let bridge = HostLink::bridge_name("exbr");
        let state = tempfile::tempdir().unwrap();
        let conf = config(&master.0, state.path(), &bridge.0).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt
            .block_on(verb(Command::Add, &ns.path(), &conf))
            .unwrap()
            .unwrap();
        // The answer is the default network's (eth0 from the bridge); net1 is there too.
        assert!(
            r["ips"][0]["address"]
                .as_str()
                .unwrap()
                .starts_with("10.98.0."),
            "{r}"
        );
        assert!(ns.addrs("net1")[0].starts_with("10.97.0."));
        assert_eq!(reservations(&state.path().join("ipam")).len(), 2);
        rt.block_on(verb(Command::Check, &ns.path(), &conf))
            .unwrap();
        rt.block_on(verb(Command::Del, &ns.path(), &conf)).unwrap();
        let names = ns.link_names();
        assert!(
            !names.contains(&"net1".into()) && !names.contains(&"eth0".into()),
            "{names:?}"
        );
        assert!(reservations(&state.path().join("ipam")).is_empty());
        assert_eq!(
            std::fs::read_dir(state.path().join("multus"))
                .unwrap()
                .count(),
            0
        );
    }
}
