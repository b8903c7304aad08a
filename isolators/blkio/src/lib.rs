//! berth's built-in blkio isolator (being written).
