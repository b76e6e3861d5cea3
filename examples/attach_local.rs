//! Embedding multus-core: attach the networks of a local file to a network namespace, print the results,
//! and detach them again. Uses plugin binaries from `/usr/lib/cni` (Debian's containernetworking-plugins).
//!
//! ```text
//! ip netns add demo
//! cargo run -p multus-examples --example attach_local -- /var/run/netns/demo networks.json
//! ```
//! where `networks.json` is a JSON list of network configs (single or conflist); the first gets `eth0`,
//! the others `net1`, `net2`, ...

use multus_core::cni::{Command, NetworkConfig};
use multus_core::delegate::{Context, Registry};
use multus_core::pipeline::{self, Attachment};
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

    let mut registry = Registry::new();
    registry.set_bin_dirs(vec![PathBuf::from("/usr/lib/cni")]);
    let ctx = Context::new(
        Command::Add,
        "example-container",
        Some(PathBuf::from(netns)),
        "eth0",
        Arc::new(registry),
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(pipeline::add(&ctx, &attachments))?;
    for (a, r) in attachments.iter().zip(&results) {
        println!("{} ({}): {}", a.name, a.ifname, r.to_value(&r.cni_version)?);
    }
    let prev: Vec<_> = results.into_iter().map(Some).collect();
    rt.block_on(pipeline::del(
        &ctx.with_command(Command::Del),
        &attachments,
        &prev,
    ))?;
    println!("detached again");
    Ok(())
}
