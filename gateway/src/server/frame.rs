//! Kafka's framing: a 4-byte big-endian size, then that many bytes.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("connection closed in the middle of a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("frame size {0} is not positive")]
    BadSize(i32),
    #[error("frame of {size} bytes exceeds the {limit}-byte request limit")]
    TooLarge { size: usize, limit: usize },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. Never allocates more than `limit` bytes for a claimed size.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
) -> Result<Bytes, FrameError> {
    let size = read_frame_size(r, limit).await?;
    read_frame_body(r, size).await
}

/// Reads a frame's size prefix and checks it against `limit`: the connection reserves that many
/// bytes of its in-flight budget before the body is read.
pub async fn read_frame_size<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
) -> Result<usize, FrameError> {
    let mut size = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut size[got..]).await? {
            0 if got == 0 => return Err(FrameError::Closed),
            0 => return Err(FrameError::Truncated { got, want: 4 }),
            n => got += n,
        }
    }
    let size = i32::from_be_bytes(size);
    if size <= 0 {
        return Err(FrameError::BadSize(size));
    }
    let size = size as usize;
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    Ok(size)
}

/// Reads a frame body of `size` bytes.
pub async fn read_frame_body<R: AsyncRead + Unpin>(
    r: &mut R,
    size: usize,
) -> Result<Bytes, FrameError> {
    let mut buf = BytesMut::zeroed(size);
    let mut got = 0;
    while got < size {
        match r.read(&mut buf[got..]).await? {
            0 => return Err(FrameError::Truncated { got, want: size }),
            n => got += n,
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_sizes_and_truncation() {
        let mut ok: &[u8] = &[0, 0, 0, 2, 7, 8, 0, 0, 0, 1, 9];
        assert_eq!(&read_frame(&mut ok, 10).await.unwrap()[..], &[7, 8]);
        assert_eq!(&read_frame(&mut ok, 10).await.unwrap()[..], &[9]);
        assert!(matches!(
            read_frame(&mut ok, 10).await,
            Err(FrameError::Closed)
        ));
        let mut short: &[u8] = &[0, 0, 0, 5, 1];
        assert!(matches!(
            read_frame(&mut short, 10).await,
            Err(FrameError::Truncated { got: 1, want: 5 })
        ));
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut huge, 10).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 10).await,
            Err(FrameError::BadSize(-1))
        ));
    }
}
