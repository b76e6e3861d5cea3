//! Embedding multus-core with plugin binaries: attach the networks of a local file to a network namespace,
//! print the results, and detach them again. Uses the binaries in `/usr/lib/cni` (Debian's
//! containernetworking-plugins).
//!
//! ```text
//! ip netns add demo
//! cargo run -p multus-examples --example attach_local -- /var/run/netns/demo networks.json
//! ```
//! where `networks.json` is a JSON list of network configs (single or conflist); the first gets `eth0`,
//! the others `net1`, `net2`, ...

use multus_core::cni::NetworkConfig;
use multus_core::delegate::Registry;
use multus_core::pipeline::{self, Attachment, Attachments, Pod};
use std::path::PathBuf;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(netns), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: attach_local <netns path> <networks.json>");
        std::process::exit(2);
    };
    let list: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&file)?)?;
    let attachments = list
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let ifname = if i == 0 {
                "eth0".to_string()
            } else {
                format!("net{i}")
            };
            NetworkConfig::from_value(v).map(|net| Attachment::new(net, &ifname))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let attachments = Attachments::new(attachments)?;

    let mut registry = Registry::new();
    registry.set_bin_dirs(vec![PathBuf::from("/usr/lib/cni")]);
    let pod = Pod::new(
        "example-container",
        Some(PathBuf::from(netns)),
        Arc::new(registry),
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let attached = rt.block_on(pipeline::add(&pod, &attachments))?;
    for a in &attached {
        if let Some(r) = &a.result {
            let name = &a.attachment.name;
            println!(
                "{name} ({}): {}",
                a.attachment.ifname,
                r.to_value(&r.cni_version)?
            );
        }
    }
    rt.block_on(pipeline::del(&pod, &attached))?;
    println!("detached again");
    Ok(())
}
