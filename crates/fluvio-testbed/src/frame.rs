//! Frames on the wire: `i32` size, then a request (header + body) or a
//! response (correlation id + body). Decoding never panics the server: the
//! schema crates' decoders run behind `catch_unwind`.

use std::io::{Cursor, Error as IoError, ErrorKind};
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{BufMut, Bytes, BytesMut};
use fluvio_protocol::api::RequestHeader;
use fluvio_protocol::{Decoder, Encoder, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Sends encoded frames to a connection's writer task.
pub(crate) type FrameSender = mpsc::UnboundedSender<Bytes>;

/// Reads one frame's payload; `None` at a clean end of stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Option<Bytes>, IoError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let size = i32::from_be_bytes(size);
    let len = usize::try_from(size)
        .ok()
        .filter(|len| *len <= max_bytes)
        .ok_or_else(|| {
            IoError::new(
                ErrorKind::InvalidData,
                format!("frame size {size} outside 0..={max_bytes}"),
            )
        })?;
    let mut payload = BytesMut::zeroed(len);
    reader.read_exact(&mut payload).await?;
    Ok(Some(payload.freeze()))
}

/// Splits a request payload into its header and body.
pub(crate) fn split_header(payload: &Bytes) -> Result<(RequestHeader, Bytes), IoError> {
    let mut cursor = Cursor::new(payload.as_ref());
    let header = guarded(|| RequestHeader::decode_from(&mut cursor, 0))?;
    let used = cursor.position() as usize;
    Ok((header, payload.slice(used..)))
}

/// Decodes a request body at `version`.
pub(crate) fn decode<T: Decoder>(body: &[u8], version: Version) -> Result<T, IoError> {
    guarded(|| T::decode_from(&mut Cursor::new(body), version))
}

/// Runs a decoder, turning a panic into an error.
pub(crate) fn guarded<T>(decode: impl FnOnce() -> Result<T, IoError>) -> Result<T, IoError> {
    catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|_| {
        Err(IoError::new(
            ErrorKind::InvalidData,
            "the decoder panicked on this frame",
        ))
    })
}

/// Encodes a whole response frame.
pub(crate) fn response<T: Encoder>(correlation_id: i32, body: &T, version: Version) -> Result<Bytes, IoError> {
    let body_len = body.write_size(version);
    let size = i32::try_from(4 + body_len)
        .map_err(|_| IoError::new(ErrorKind::InvalidData, format!("response of {body_len} bytes")))?;
    let mut out = BytesMut::with_capacity(4 + 4 + body_len);
    out.put_i32(size);
    out.put_i32(correlation_id);
    body.encode(&mut out, version)?;
    Ok(out.freeze())
}

/// Writes every frame sent on the returned channel until the connection is
/// cancelled or a write fails (then cancels the connection). The task ends
/// with the socket shut down.
pub(crate) fn spawn_writer<W>(mut writer: W, stop: CancellationToken) -> (FrameSender, JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let task = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                _ = stop.cancelled() => break,
                frame = rx.recv() => frame,
            };
            let Some(frame) = frame else { break };
            // A client that stops reading must not keep a stopping server waiting.
            let written = tokio::select! {
                _ = stop.cancelled() => break,
                written = writer.write_all(&frame) => written,
            };
            if let Err(e) = written {
                tracing::debug!(error = %e, "writing a frame failed; closing the connection");
                break;
            }
        }
        stop.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), writer.shutdown()).await;
    });
    (tx, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_and_negative_frames_are_refused() {
        let mut negative: &[u8] = &(-1i32).to_be_bytes();
        assert!(read_frame(&mut negative, 100).await.is_err());
        let mut big: &[u8] = &101i32.to_be_bytes();
        assert!(read_frame(&mut big, 100).await.is_err());
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 100).await.expect("clean end").is_none());
    }

    #[test]
    fn garbage_headers_are_errors_not_panics() {
        assert!(split_header(&Bytes::from_static(&[0, 1, 0])).is_err());
    }
}
