//! multus-core (being written)
