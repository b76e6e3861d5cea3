//! multus-ipam (being written)
