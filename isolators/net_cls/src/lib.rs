//! berth's built-in net_cls isolator (being written).
