//! multus-dpdk (being written)
