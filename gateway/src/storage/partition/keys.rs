//! The SMQ keys that tie each stored record to its Kafka offset (the runs a read follows are the
//! ledger's: `PartitionLedger::runs_from`).

/// The SMQ key of a record holding Kafka offset `offset` (its first, for a batch), published
/// with `nonce` (see [`crate::ledger::LedgerEntry::nonce`]): unique within the partition. SMQ
/// delivers a record to a subscriber only after the previous record with the same key was
/// acknowledged, and ignores acknowledgements of empty keys (waiting 30 s instead), so Kafka's
/// own keys (often repeated or null) must not be used here; they are inside the stored value.
pub(super) fn smq_key(offset: i64, nonce: u64) -> Vec<u8> {
    if nonce == 0 {
        offset.to_string().into_bytes()
    } else {
        format!("{offset}.{nonce:016x}").into_bytes()
    }
}

/// A fresh publish nonce (never 0, which means "not checked").
pub(super) fn new_nonce() -> u64 {
    rand::random::<u64>().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_publish_nonce() {
        assert_eq!(smq_key(12, 0), b"12");
        assert_eq!(smq_key(12, 0xab), b"12.00000000000000ab");
        assert_ne!(new_nonce(), 0);
    }
}
