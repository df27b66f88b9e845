//! Record sets as raw bytes: produce entries are stored as received, fetch
//! frames carry stored bytes (possibly cut inside a batch). Both use the
//! `i32` length + bytes form of `RecordSet`.

use std::io::{Error as IoError, ErrorKind};

use bytes::{Buf, BufMut, Bytes};
use fluvio_protocol::{Decoder, Encoder, Version};

/// A `RecordSet` kept as its bytes.
#[derive(Debug, Default, Clone)]
pub(crate) struct RawRecordSet(pub(crate) Bytes);

impl Encoder for RawRecordSet {
    fn write_size(&self, _version: Version) -> usize {
        4 + self.0.len()
    }

    fn encode<T: BufMut>(&self, dest: &mut T, _version: Version) -> Result<(), IoError> {
        let len =
            i32::try_from(self.0.len()).map_err(|_| IoError::new(ErrorKind::InvalidData, "record set over 2 GiB"))?;
        if dest.remaining_mut() < 4 + self.0.len() {
            return Err(IoError::new(ErrorKind::UnexpectedEof, "no room for the record set"));
        }
        dest.put_i32(len);
        dest.put_slice(&self.0);
        Ok(())
    }
}

impl Decoder for RawRecordSet {
    fn decode<T: Buf>(&mut self, src: &mut T, _version: Version) -> Result<(), IoError> {
        if src.remaining() < 4 {
            return Err(IoError::new(ErrorKind::UnexpectedEof, "no record set length"));
        }
        let len = src.get_i32();
        let len = usize::try_from(len).unwrap_or(0);
        if src.remaining() < len {
            return Err(IoError::new(
                ErrorKind::UnexpectedEof,
                format!("record set of {len} bytes, {} left in the frame", src.remaining()),
            ));
        }
        self.0 = src.copy_to_bytes(len);
        Ok(())
    }
}

/// A fetch frame's record set: stored batches written back to back, the last
/// possibly cut short, copied once, into the frame.
#[derive(Debug, Default, Clone)]
pub(crate) struct FetchedRecords(pub(crate) Vec<Bytes>);

impl FetchedRecords {
    fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }
}

impl Encoder for FetchedRecords {
    fn write_size(&self, _version: Version) -> usize {
        4 + self.len()
    }

    fn encode<T: BufMut>(&self, dest: &mut T, _version: Version) -> Result<(), IoError> {
        let len =
            i32::try_from(self.len()).map_err(|_| IoError::new(ErrorKind::InvalidData, "record set over 2 GiB"))?;
        if dest.remaining_mut() < 4 + self.len() {
            return Err(IoError::new(ErrorKind::UnexpectedEof, "no room for the record set"));
        }
        dest.put_i32(len);
        for part in &self.0 {
            dest.put_slice(part);
        }
        Ok(())
    }
}

impl Decoder for FetchedRecords {
    fn decode<T: Buf>(&mut self, src: &mut T, version: Version) -> Result<(), IoError> {
        let mut whole = RawRecordSet::default();
        whole.decode(src, version)?;
        self.0 = vec![whole.0];
        Ok(())
    }
}
