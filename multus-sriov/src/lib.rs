//! multus-sriov (being written)
