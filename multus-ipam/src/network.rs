//! The library API: one network's addresses on a node, without CNI.

use std::net::IpAddr;
use std::path::Path;

use crate::allocator;
use crate::config::IpamConfig;
use crate::gc::{self, Attachment};
use crate::index::{IndexMode, IndexStats};
use crate::range::RangeSpec;
use crate::range_set::{validate_sets, RangeSet};
use crate::result::{Dns, IpConfig, IpamResult};
use crate::store::{DiskStore, Durability, Reservation, Store};
use crate::{IpamError, Result};

/// The host-local addresses of one network, in `<data_dir>/<name>`.
///
/// Every operation takes the directory's lock for its whole duration, so several processes
/// (this library, the `host-local` plugin of this project, the reference plugin) can share the
/// directory. A `Network` keeps an index of the directory between operations and between
/// processes (see [`DiskStore`] and [`crate::index`]).
#[derive(Debug)]
pub struct Network {
    sets: Vec<RangeSet>,
    store: DiskStore,
}

impl Network {
    /// Opens a network's store with already validated range sets (creates the directory).
    pub fn open(data_dir: &Path, name: &str, sets: Vec<RangeSet>) -> Result<Network> {
        if sets.is_empty() {
            return Err(IpamError::InvalidConfig("no IP ranges specified".into()));
        }
        for i in 0..sets.len() {
            for j in i + 1..sets.len() {
                if sets[i].overlaps(&sets[j]) {
                    return Err(IpamError::InvalidConfig(format!(
                        "range set {i} overlaps with {j}"
                    )));
                }
            }
        }
        Ok(Network {
            sets,
            store: DiskStore::open(data_dir, name)?,
        })
    }

    /// Opens a network from range specifications, validated as the reference does.
    pub fn from_specs(data_dir: &Path, name: &str, specs: &[Vec<RangeSpec>]) -> Result<Network> {
        let sets = validate_sets(specs, None)?;
        Network::open(data_dir, name, sets)
    }

    /// Opens the network a parsed configuration names.
    pub fn from_config(cfg: &IpamConfig) -> Result<Network> {
        Network::open(&cfg.data_dir, &cfg.name, cfg.range_sets.clone())
    }

    /// Sets the durability of later writes (default: like the reference, no fsync).
    pub fn set_durability(&mut self, d: Durability) {
        self.store.set_durability(d);
    }

    /// Sets how the store's index is kept across processes (default [`IndexMode::Journal`]).
    pub fn set_index_mode(&mut self, mode: IndexMode) {
        self.store.set_index_mode(mode);
    }

    /// Overrides the store's journal limit (see [`DiskStore::set_journal_limit`]). For measurements.
    #[doc(hidden)]
    pub fn set_journal_limit(&mut self, bytes: Option<u64>) {
        self.store.set_journal_limit(bytes);
    }

    /// What the store's index has done so far (cumulative over this handle's operations).
    pub fn index_stats(&self) -> IndexStats {
        self.store.index_stats()
    }

    /// The range sets.
    pub fn range_sets(&self) -> &[RangeSet] {
        &self.sets
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    /// Allocates one address per range set for (container ID, ifname); `requested` addresses
    /// must each fall in a range set (one per set) and be free. All or nothing.
    pub fn allocate(
        &mut self,
        container_id: &str,
        ifname: &str,
        requested: &[IpAddr],
    ) -> Result<Vec<IpConfig>> {
        let mut s = self.store.lock()?;
        allocator::allocate(&mut s, &self.sets, container_id, ifname, requested)
    }

    /// Releases what (container ID, ifname) holds; returns the released addresses. Idempotent.
    pub fn release(&mut self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let mut s = self.store.lock()?;
        allocator::release(&mut s, container_id, ifname, self.sets.len())
    }

    /// Every reservation, ordered by address.
    pub fn list(&mut self) -> Result<Vec<Reservation>> {
        self.store.lock()?.reservations()
    }

    /// The addresses (container ID, ifname) holds (CNI CHECK); an error if none.
    pub fn check(&mut self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let mut s = self.store.lock()?;
        let held = allocator::held(&mut s, container_id, ifname, self.sets.len())?;
        let mut ips = held.exact;
        ips.extend(held.legacy);
        if ips.is_empty() {
            return Err(IpamError::NotFound(container_id.to_string()));
        }
        Ok(ips)
    }

    /// Releases every reservation not held by one of `valid`; returns what was released.
    pub fn gc(&mut self, valid: &[Attachment]) -> Result<Vec<Reservation>> {
        let mut s = self.store.lock()?;
        gc::gc(&mut s, valid)
    }

    /// CNI STATUS: `Unavailable` (code 50) if the store cannot be written or a range set has no
    /// free address (an ADD would fail).
    pub fn status(&mut self) -> Result<()> {
        let mut s = self
            .store
            .lock()
            .map_err(|e| IpamError::Unavailable(e.to_string()))?;
        s.check_writable()
            .map_err(|e| IpamError::Unavailable(e.to_string()))?;
        for (i, set) in self.sets.iter().enumerate() {
            let free = allocator::has_free(&mut s, set)
                .map_err(|e| IpamError::Unavailable(e.to_string()))?;
            if !free {
                return Err(IpamError::Unavailable(format!(
                    "no IP addresses available in range set {i}: {set}"
                )));
            }
        }
        Ok(())
    }
}

/// CNI ADD of host-local: parse effects aside, allocate for the configuration and build the
/// result (reads `resolvConf` first, so a missing file fails before anything is reserved).
pub fn add(cfg: &IpamConfig, container_id: &str, ifname: &str) -> Result<IpamResult> {
    let dns = read_dns(cfg)?;
    let mut net = Network::from_config(cfg)?;
    let ips = net.allocate(container_id, ifname, &cfg.requested_ips)?;
    Ok(IpamResult {
        ips,
        routes: cfg.routes.clone(),
        dns,
    })
}

/// CNI DEL of host-local.
pub fn del(cfg: &IpamConfig, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
    Network::from_config(cfg)?.release(container_id, ifname)
}

/// CNI CHECK of host-local.
pub fn check(cfg: &IpamConfig, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
    Network::from_config(cfg)?.check(container_id, ifname)
}

/// CNI GC of host-local.
pub fn gc_config(cfg: &IpamConfig, valid: &[Attachment]) -> Result<Vec<Reservation>> {
    Network::from_config(cfg)?.gc(valid)
}

/// CNI STATUS of host-local.
pub fn status(cfg: &IpamConfig) -> Result<()> {
    Network::from_config(cfg)
        .map_err(|e| match e {
            IpamError::Io { .. } => IpamError::Unavailable(e.to_string()),
            e => e,
        })?
        .status()
}

fn read_dns(cfg: &IpamConfig) -> Result<Dns> {
    match &cfg.resolv_conf {
        None => Ok(Dns::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| IpamError::io("read", p, e))?;
            Ok(Dns::from_resolv_conf(&text))
        }
    }
}
