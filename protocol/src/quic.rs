//! QUIC message bus (being written).
