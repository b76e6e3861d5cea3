//! Putting a VF back: its PF-side settings ([`restore_plan`]: only those ADD changed, and only where they
//! differ now), its netdev in the host (`multus_core::netlink::netdev::restore`), waiting for the netdev to
//! come home after its pod's netns died; and CHECK's view of the same settings ([`drifted`]).

use super::{pf_index, SriovEnv};
use crate::alloc::USERSPACE_DRIVERS;
use crate::cache::VfRecord;
use crate::config::VfChange;
use crate::netdev;
use crate::sysfs::Sysfs;
use crate::vf_netlink::{apply_changes, read_vf_state, VfSettings};
use multus_core::cni::CniError;
use multus_core::netlink::link;
use multus_core::netlink::netdev as saved;
use multus_core::netlink::Netlink;
use std::time::Duration;

/// The changes that put the settings `changes` touched back to `original`, given the `current` ones: one per
/// such setting that differs now, in the reverse order of `changes`. Empty when all are back.
pub fn restore_plan(
    current: &VfSettings,
    original: &VfSettings,
    changes: &[VfChange],
) -> Vec<VfChange> {
    let mut out: Vec<VfChange> = Vec::new();
    for c in changes.iter().rev() {
        let undo = match c {
            VfChange::Mac { .. } => (current.mac != original.mac).then_some(VfChange::Mac {
                from: current.mac,
                to: original.mac,
            }),
            VfChange::Vlan { .. } => (current.vlan != original.vlan).then_some(VfChange::Vlan {
                from: current.vlan,
                to: original.vlan,
            }),
            VfChange::SpoofChk { .. } => {
                (current.spoofchk != original.spoofchk).then_some(VfChange::SpoofChk {
                    from: current.spoofchk,
                    to: original.spoofchk,
                })
            }
            VfChange::Trust { .. } => {
                (current.trust != original.trust).then_some(VfChange::Trust {
                    from: current.trust,
                    to: original.trust,
                })
            }
            VfChange::LinkState { .. } => {
                (current.link_state != original.link_state).then_some(VfChange::LinkState {
                    from: current.link_state,
                    to: original.link_state,
                })
            }
            VfChange::TxRate { .. } => {
                let (from, to) = (
                    (current.min_tx_rate, current.max_tx_rate),
                    (original.min_tx_rate, original.max_tx_rate),
                );
                (from != to).then_some(VfChange::TxRate { from, to })
            }
        };
        if let Some(u) = undo {
            if !out
                .iter()
                .any(|o| std::mem::discriminant(o) == std::mem::discriminant(&u))
            {
                out.push(u);
            }
        }
    }
    out
}

/// The settings of `changes` whose value now is not the one ADD set: (setting, now, wanted), for CHECK.
pub fn drifted(current: &VfSettings, changes: &[VfChange]) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    for c in changes {
        let (name, now, want) = match *c {
            VfChange::Mac { to, .. } => ("mac", current.mac.to_string(), to.to_string()),
            VfChange::Vlan { to, .. } => ("vlan", format!("{:?}", current.vlan), format!("{to:?}")),
            VfChange::SpoofChk { to, .. } => {
                ("spoofchk", current.spoofchk.to_string(), to.to_string())
            }
            VfChange::Trust { to, .. } => ("trust", current.trust.to_string(), to.to_string()),
            VfChange::LinkState { to, .. } => (
                "link_state",
                current.link_state.as_str().to_string(),
                to.as_str().to_string(),
            ),
            VfChange::TxRate { to, .. } => (
                "min_tx_rate/max_tx_rate",
                format!("{:?}", (current.min_tx_rate, current.max_tx_rate)),
                format!("{to:?}"),
            ),
        };
        if now != want {
            out.push((name, now, want));
        }
    }
    out
}

/// Puts a VF's PF-side settings back ([`restore_plan`]); a VF that no longer exists (SR-IOV turned off since)
/// has nothing to put back.
pub async fn restore_settings(
    env: &SriovEnv,
    nl: &Netlink,
    rec: &VfRecord,
) -> Result<(), CniError> {
    if rec.changes.is_empty() {
        return Ok(());
    }
    if !env.sysfs.pci_exists(rec.vf) || env.sysfs.physfn(rec.vf).ok() != Some(rec.pf) {
        tracing::info!("VF {} is gone: no settings to put back", rec.vf);
        return Ok(());
    }
    let pf_index = pf_index(env, nl, rec).await?;
    let current = read_vf_state(nl, pf_index, rec.vf_index).await?;
    let plan = restore_plan(&current, &rec.original, &rec.changes);
    apply_changes(nl, pf_index, rec.vf_index, &plan).await
}

/// Puts the VF's netdev in the host back as it was (name, MAC, MTU, up/down), when it is in the host.
/// Returns whether it was there.
pub async fn restore_host_netdev(
    env: &SriovEnv,
    nl: &Netlink,
    rec: &VfRecord,
) -> Result<bool, CniError> {
    let Some(orig) = &rec.netdev else {
        return Ok(false);
    };
    let names = env.sysfs.netdevs(rec.vf)?;
    let [name] = names.as_slice() else {
        return Ok(false);
    };
    let Some(l) = link::by_name(nl, name).await? else {
        return Ok(false);
    };
    saved::restore(nl, l.index, orig)
        .await
        .map_err(|e| e.context(format_args!("sriov: VF {}", rec.vf)))?;
    Ok(true)
}

/// [`restore_settings`], then [`restore_host_netdev`].
pub async fn restore(env: &SriovEnv, nl: &Netlink, rec: &VfRecord) -> Result<(), CniError> {
    restore_settings(env, nl, rec).await?;
    restore_host_netdev(env, nl, rec).await.map(|_| ())
}

/// Waits (up to `timeout`) until the VF's netdev is in the host again, when it had one and its driver is a
/// kernel one. Fails with code 11 when it does not come back: its netns may still be alive somewhere.
pub async fn wait_home(env: &SriovEnv, rec: &VfRecord, timeout: Duration) -> Result<(), CniError> {
    if rec.netdev.is_none() || !env.sysfs.pci_exists(rec.vf) {
        return Ok(());
    }
    let kernel_driver = |s: &Sysfs| {
        s.driver(rec.vf)
            .ok()
            .flatten()
            .is_some_and(|d| !USERSPACE_DRIVERS.contains(&d.as_str()))
    };
    if !kernel_driver(&env.sysfs) {
        return Ok(());
    }
    let back = netdev::wait_for(timeout, || {
        (!env.sysfs.netdevs(rec.vf).unwrap_or_default().is_empty()).then_some(())
    })
    .await;
    match back {
        Some(()) => Ok(()),
        None => Err(CniError::try_again_later(format!(
            "sriov: VF {}'s netdev is not back in the host {timeout:?} after its netns {} went away",
            rec.vf, rec.netns
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LinkState, VlanConf};
    use multus_core::netlink::MacAddr;

    fn s() -> VfSettings {
        VfSettings {
            mac: MacAddr::default(),
            vlan: VlanConf::default(),
            spoofchk: true,
            trust: false,
            link_state: LinkState::Auto,
            min_tx_rate: 0,
            max_tx_rate: 0,
        }
    }

    #[test]
    fn restore_plan_only_what_differs_now() {
        let orig = s();
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let vlan = VlanConf {
            id: 10,
            ..Default::default()
        };
        let changes = vec![
            VfChange::Mac {
                from: orig.mac,
                to: mac,
            },
            VfChange::Vlan {
                from: orig.vlan,
                to: vlan,
            },
            VfChange::SpoofChk {
                from: true,
                to: false,
            },
            VfChange::TxRate {
                from: (0, 0),
                to: (0, 100),
            },
        ];
        // All applied: all undone, in reverse order, from the current values.
        let cur = VfSettings {
            mac,
            vlan,
            spoofchk: false,
            max_tx_rate: 100,
            ..orig
        };
        assert_eq!(
            restore_plan(&cur, &orig, &changes),
            vec![
                VfChange::TxRate {
                    from: (0, 100),
                    to: (0, 0)
                },
                VfChange::SpoofChk {
                    from: false,
                    to: true
                },
                VfChange::Vlan {
                    from: vlan,
                    to: orig.vlan
                },
                VfChange::Mac {
                    from: mac,
                    to: orig.mac
                },
            ]
        );
        // Half applied (the rate failed): only the applied ones; a setting ADD never touched (trust, changed by
        // someone else) is left alone.
        let cur = VfSettings {
            mac,
            vlan,
            trust: true,
            ..orig
        };
        assert_eq!(
            restore_plan(&cur, &orig, &changes),
            vec![
                VfChange::Vlan {
                    from: vlan,
                    to: orig.vlan
                },
                VfChange::Mac {
                    from: mac,
                    to: orig.mac
                },
            ]
        );
        assert!(restore_plan(&orig, &orig, &changes).is_empty());
        assert!(restore_plan(&cur, &orig, &[]).is_empty());
    }

    #[test]
    fn drift_names_the_setting() {
        let orig = s();
        let changes = vec![
            VfChange::SpoofChk {
                from: true,
                to: false,
            },
            VfChange::TxRate {
                from: (0, 0),
                to: (0, 100),
            },
        ];
        let applied = VfSettings {
            spoofchk: false,
            max_tx_rate: 100,
            ..orig
        };
        assert!(drifted(&applied, &changes).is_empty());
        let d = drifted(
            &VfSettings {
                max_tx_rate: 50,
                ..applied
            },
            &changes,
        );
        assert_eq!(
            d,
            vec![(
                "min_tx_rate/max_tx_rate",
                "(0, 50)".to_string(),
                "(0, 100)".to_string()
            )]
        );
    }
}
