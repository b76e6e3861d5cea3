//! Embedding the crates alone, no plugin binary anywhere: a macvlan interface with a host-local address,
//! attached to a network namespace by the built-in delegates in this process, checked, and detached.
//!
//! ```text
//! ip netns add demo
//! cargo run -p multus-examples --example attach_macvlan -- /var/run/netns/demo eth0
//! ```
//! (the second argument is the host link the macvlan sits on).

use multus_core::cni::{CniError, NetworkConfig};
use multus_core::delegate::Registry;
use multus_core::pipeline::{self, Attached, Attachment, Attachments, Pod};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Attaches `net1` (macvlan on `master`, host-local in 10.99.0.0/24 with its store in `data_dir`) to the
/// netns, CHECKs it, calls `inspect` while it is there, then DELs it. Returns what ADD attached.
pub async fn attach_check_detach(
    netns: &Path,
    master: &str,
    data_dir: &Path,
    inspect: impl FnOnce(&[Attached]),
) -> Result<Vec<Attached>, CniError> {
    // The registry: the built-in delegates, and no directory to look for binaries in.
    let mut registry = Registry::new();
    registry.register("macvlan", Arc::new(multus_core::plugins::Macvlan));
    registry.register(
        "host-local",
        Arc::new(multus_ipam::cni::HostLocal::default()),
    );
    let net = NetworkConfig::from_value(serde_json::json!({
        "cniVersion": "1.0.0", "name": "example-macvlan", "type": "macvlan",
        "master": master, "mode": "bridge",
        "ipam": { "type": "host-local", "subnet": "10.99.0.0/24", "dataDir": data_dir }
    }))?;
    let attachments = Attachments::new(vec![Attachment::new(net, "net1")])?;
    let pod = Pod::new(
        "example-container",
        Some(netns.to_path_buf()),
        Arc::new(registry),
    );
    let attached = pipeline::add(&pod, &attachments).await?;
    pipeline::check(&pod, &attached).await?;
    inspect(&attached);
    pipeline::del(&pod, &attached).await?;
    Ok(attached)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(netns), Some(master)) = (args.next(), args.next()) else {
        eprintln!("usage: attach_macvlan <netns path> <master link>");
        std::process::exit(2);
    };
    let data_dir = std::env::temp_dir().join("multus-example-ipam");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(attach_check_detach(
        &PathBuf::from(netns),
        &master,
        &data_dir,
        |attached| {
            for a in attached {
                if let Some(r) = &a.result {
                    let v = r.to_value(&r.cni_version).unwrap_or_default();
                    println!("attached {}: {v}", a.attachment.ifname);
                }
            }
        },
    ))?;
    println!("checked and detached again");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use multus_testsupport::{reservations, HostLink, Netns};

    #[test]
    fn attaches_checks_and_detaches_in_process() {
        let ns = Netns::new("exmac");
        let master = HostLink::veth("exm");
        let store = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut seen = Vec::new();
        let attached = rt
            .block_on(attach_check_detach(
                &ns.path(),
                &master.0,
                store.path(),
                |_| {
                    seen = ns.addrs("net1");
                    assert_eq!(reservations(store.path()).len(), 1);
                },
            ))
            .unwrap();
        let ip = attached[0].result.as_ref().unwrap().ips[0].address;
        assert_eq!(seen, vec![ip.to_string()]);
        assert!(ip.to_string().starts_with("10.99.0."), "{ip}");
        assert!(!ns.link_names().contains(&"net1".to_string()));
        assert!(reservations(store.path()).is_empty());
    }
}
