//! Zig-zag varints as Kafka's record format uses them.

use bytes::{Buf, BufMut};

use super::RecordError;

pub fn get_varlong(buf: &mut &[u8]) -> Result<i64, RecordError> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err(RecordError::Truncated("varint"));
        }
        let b = buf.get_u8();
        if shift == 63 && b > 1 {
            return Err(RecordError::Invalid("varint longer than 64 bits".into()));
        }
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(RecordError::Invalid("varint longer than 10 bytes".into()))
}

pub fn get_varint(buf: &mut &[u8]) -> Result<i32, RecordError> {
    let v = get_varlong(buf)?;
    i32::try_from(v).map_err(|_| RecordError::Invalid(format!("varint {v} out of 32-bit range")))
}

pub fn put_varlong(buf: &mut impl BufMut, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        buf.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    buf.put_u8(raw as u8);
}

pub fn varlong_len(v: i64) -> usize {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while raw >= 0x80 {
        raw >>= 7;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edge_values() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v), "{v}");
            let mut s = out.as_slice();
            assert_eq!(get_varlong(&mut s).unwrap(), v);
            assert!(s.is_empty());
        }
    }

    #[test]
    fn rejects_truncated_and_overlong() {
        assert!(get_varlong(&mut [0x80u8].as_slice()).is_err());
        assert!(get_varlong(&mut [0xffu8; 11].as_slice()).is_err());
        let mut out = Vec::new();
        put_varlong(&mut out, i64::from(i32::MAX) + 1);
        assert!(get_varint(&mut out.as_slice()).is_err());
    }
}
