//! The node agent (`podcreds agent`).
