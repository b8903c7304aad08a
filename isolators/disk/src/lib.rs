//! berth's built-in disk isolator (being written).
