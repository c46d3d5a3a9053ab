//! Digests as text: files, mappings and SQL are named and checked by their SHA-256 in hex.

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
