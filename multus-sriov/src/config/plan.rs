//! The pure planning of VF settings: [`VfSettings`] (a VF's settings as the PF reports them), [`VfState`]
//! (those and its netdev's name and MTU), [`VfChange`] (one
//! setting ADD changes, with the value DEL puts back) and [`plan_changes`] (exactly the settings ADD must
//! change, so that DEL restores exactly those).

use super::{LinkState, SriovConf, VlanConf};
use multus_core::netlink::MacAddr;
use serde::{Deserialize, Serialize};

/// A VF's settings as the PF reports them (`IFLA_VF_*`): the part of [`VfState`] that lives on the PF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VfSettings {
    /// The VF's admin MAC (all-zero when never set).
    pub mac: MacAddr,
    /// VLAN ID, QoS and protocol (the protocol from `IFLA_VF_VLAN_LIST`; 802.1Q when the kernel sends only the
    /// legacy `IFLA_VF_VLAN`).
    pub vlan: VlanConf,
    /// Spoof checking.
    pub spoofchk: bool,
    /// Trust.
    pub trust: bool,
    /// Administrative link state.
    pub link_state: LinkState,
    /// Minimum TX rate, Mbps (0 = none).
    pub min_tx_rate: u32,
    /// Maximum TX rate, Mbps (0 = none).
    pub max_tx_rate: u32,
}

impl VfSettings {
    /// The full [`VfState`], with the VF netdev's host name and MTU (which are not PF settings).
    pub fn into_state(self, host_ifname: impl Into<String>, mtu: u32) -> VfState {
        VfState {
            host_ifname: host_ifname.into(),
            mtu,
            settings: self,
        }
    }
}

/// A VF as read before ADD touches it: its settings on the PF, and its netdev's host name and MTU (which are
/// not PF settings, and never planned here).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VfState {
    /// The VF netdev's name on the host.
    pub host_ifname: String,
    /// The netdev's MTU.
    pub mtu: u32,
    /// Its settings on the PF: what DEL puts back.
    pub settings: VfSettings,
}

/// One VF setting ADD changes, with the value before (for DEL) and the value to set. Serialized as
/// `{"<setting>": {"from": .., "to": ..}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VfChange {
    /// Admin MAC on the PF (and the netdev's MAC).
    Mac {
        /// Original.
        from: MacAddr,
        /// New.
        to: MacAddr,
    },
    /// VLAN ID, QoS and protocol, set together.
    Vlan {
        /// Original.
        from: VlanConf,
        /// New.
        to: VlanConf,
    },
    /// Spoof checking.
    SpoofChk {
        /// Original.
        from: bool,
        /// New.
        to: bool,
    },
    /// Trust.
    Trust {
        /// Original.
        from: bool,
        /// New.
        to: bool,
    },
    /// Link state.
    LinkState {
        /// Original.
        from: LinkState,
        /// New.
        to: LinkState,
    },
    /// Min and max TX rate, set together (`IFLA_VF_RATE`), as (min, max).
    TxRate {
        /// Original.
        from: (u32, u32),
        /// New.
        to: (u32, u32),
    },
}

impl VfChange {
    /// The change that undoes this one.
    pub fn reverse(self) -> Self {
        match self {
            VfChange::Mac { from, to } => VfChange::Mac { from: to, to: from },
            VfChange::Vlan { from, to } => VfChange::Vlan { from: to, to: from },
            VfChange::SpoofChk { from, to } => VfChange::SpoofChk { from: to, to: from },
            VfChange::Trust { from, to } => VfChange::Trust { from: to, to: from },
            VfChange::LinkState { from, to } => VfChange::LinkState { from: to, to: from },
            VfChange::TxRate { from, to } => VfChange::TxRate { from: to, to: from },
        }
    }
}

/// The VF settings ADD must change to apply `conf` to a VF in state `original`: only keys the config sets, and
/// only where the value differs. DEL restores exactly these (each [`VfChange::reverse`], in reverse order).
/// Order is the order ADD applies them in: MAC, VLAN, spoof check, trust, link state, rates. The host name and
/// MTU are never VF settings here (the netdev move and rename are the ADD flow's own steps).
pub fn plan_changes(state: &VfState, conf: &SriovConf) -> Vec<VfChange> {
    let original = &state.settings;
    let mut out = Vec::new();
    if let Some(to) = conf.mac.filter(|m| *m != original.mac) {
        out.push(VfChange::Mac {
            from: original.mac,
            to,
        });
    }
    if let Some(to) = conf.vlan.filter(|v| *v != original.vlan) {
        out.push(VfChange::Vlan {
            from: original.vlan,
            to,
        });
    }
    if let Some(to) = conf.spoofchk.filter(|v| *v != original.spoofchk) {
        out.push(VfChange::SpoofChk {
            from: original.spoofchk,
            to,
        });
    }
    if let Some(to) = conf.trust.filter(|v| *v != original.trust) {
        out.push(VfChange::Trust {
            from: original.trust,
            to,
        });
    }
    if let Some(to) = conf.link_state.filter(|v| *v != original.link_state) {
        out.push(VfChange::LinkState {
            from: original.link_state,
            to,
        });
    }
    let from = (original.min_tx_rate, original.max_tx_rate);
    if let Some(to) = conf.tx_rates().filter(|r| *r != from) {
        out.push(VfChange::TxRate { from, to });
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VlanProto;
    use multus_core::cni::PluginConf;
    use serde_json::{json, Value};

    fn vf(extra: Value) -> SriovConf {
        let mut v = json!({"cniVersion": "1.0.0", "name": "n", "type": "sriov", "deviceID": "0000:03:10.1"});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        SriovConf::parse(&PluginConf::from_value(v).unwrap()).unwrap()
    }

    fn orig() -> VfState {
        VfSettings {
            mac: "02:00:00:00:00:aa".parse().unwrap(),
            vlan: VlanConf::default(),
            spoofchk: true,
            trust: false,
            link_state: LinkState::Auto,
            min_tx_rate: 0,
            max_tx_rate: 0,
        }
        .into_state("ens1f0v1", 1500)
    }

    #[test]
    fn plan_nothing_when_nothing_set_or_all_equal() {
        assert!(plan_changes(&orig(), &vf(json!({}))).is_empty());
        let same = vf(json!({
            "mac": "02:00:00:00:00:aa", "vlan": 0, "spoofchk": "on", "trust": "off",
            "link_state": "auto", "min_tx_rate": 0, "max_tx_rate": 0
        }));
        assert!(plan_changes(&orig(), &same).is_empty());
    }

    #[test]
    fn plan_lists_exactly_the_changed_settings() {
        let o = orig();
        let c = vf(json!({
            "mac": "02:00:00:00:00:bb", "vlan": 10, "vlanQoS": 2, "spoofchk": "off", "trust": "on",
            "link_state": "enable", "max_tx_rate": 500
        }));
        let plan = plan_changes(&o, &c);
        assert_eq!(
            plan,
            vec![
                VfChange::Mac {
                    from: o.settings.mac,
                    to: "02:00:00:00:00:bb".parse().unwrap()
                },
                VfChange::Vlan {
                    from: VlanConf::default(),
                    to: VlanConf {
                        id: 10,
                        qos: 2,
                        proto: VlanProto::Dot1Q
                    }
                },
                VfChange::SpoofChk {
                    from: true,
                    to: false
                },
                VfChange::Trust {
                    from: false,
                    to: true
                },
                VfChange::LinkState {
                    from: LinkState::Auto,
                    to: LinkState::Enable
                },
                VfChange::TxRate {
                    from: (0, 0),
                    to: (0, 500)
                },
            ]
        );
        // Applying the plan then its reverse gives back the original state.
        let mut s = o.clone();
        let apply = |s: &mut VfState, ch: VfChange| match ch {
            VfChange::Mac { to, .. } => s.settings.mac = to,
            VfChange::Vlan { to, .. } => s.settings.vlan = to,
            VfChange::SpoofChk { to, .. } => s.settings.spoofchk = to,
            VfChange::Trust { to, .. } => s.settings.trust = to,
            VfChange::LinkState { to, .. } => s.settings.link_state = to,
            VfChange::TxRate { to, .. } => (s.settings.min_tx_rate, s.settings.max_tx_rate) = to,
        };
        for ch in &plan {
            apply(&mut s, *ch);
        }
        assert!(plan_changes(&s, &c).is_empty(), "plan is complete");
        for ch in plan.iter().rev() {
            apply(&mut s, ch.reverse());
        }
        assert_eq!(s, o);
    }

    #[test]
    fn plan_only_differing_parts() {
        let mut o = orig();
        o.settings.vlan = VlanConf {
            id: 10,
            qos: 0,
            proto: VlanProto::Dot1Q,
        };
        o.settings.max_tx_rate = 500;
        // Same VLAN, different proto only: one VLAN change; rates: min set alone writes max 0 (sriov-cni).
        let c = vf(json!({"vlan": 10, "vlanProto": "802.1ad", "min_tx_rate": 0, "trust": "off"}));
        assert_eq!(
            plan_changes(&o, &c),
            vec![
                VfChange::Vlan {
                    from: o.settings.vlan,
                    to: VlanConf {
                        id: 10,
                        qos: 0,
                        proto: VlanProto::Dot1Ad
                    }
                },
                VfChange::TxRate {
                    from: (0, 500),
                    to: (0, 0)
                },
            ]
        );
        // Setting VLAN 0 on a VF that has VLAN 10 is a change (clears it).
        let c = vf(json!({"vlan": 0}));
        assert_eq!(
            plan_changes(&o, &c),
            vec![VfChange::Vlan {
                from: o.settings.vlan,
                to: VlanConf::default()
            }]
        );
    }
}
