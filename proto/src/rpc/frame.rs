//! Frames: a length, an rkyv header, and an opaque payload.

use std::cell::RefCell;
use std::ops::Range;

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor::Failure;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::{Positional, Writer};
use rkyv::util::AlignedVec;

use super::ProtoError;
use crate::ObjectId;

/// The bytes of the `frame_len` field.
const FRAME_LEN_BYTES: usize = 4;
/// The bytes of the `frame_len` and `header_len` fields together.
const PREFIX_BYTES: usize = 8;
/// The scratch buffer that headers are validated in keeps at most this much
/// memory between frames, so one large header does not pin memory forever.
const SCRATCH_BYTES_KEPT_MAX: usize = 64 * 1024;

/// Which object a request addresses.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub enum ObjectRef {
    /// The object of this name in the request's class:
    /// [`ObjectId::from_name`]`(class, name)`.
    Name(Vec<u8>),
    /// The object with this ID.
    Id([u8; 16]),
}

impl ObjectRef {
    /// The ID of the object this refers to in `class`.
    pub fn id(&self, class: &str) -> ObjectId {
        match self {
            ObjectRef::Name(name) => ObjectId::from_name(class, name),
            ObjectRef::Id(bytes) => ObjectId(*bytes),
        }
    }
}

impl From<ObjectId> for ObjectRef {
    fn from(id: ObjectId) -> Self {
        ObjectRef::Id(id.0)
    }
}

/// The header of a request frame.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub struct RequestHeader {
    /// Chosen by the client; the response carries it back.
    pub request_id: u64,
    pub class: String,
    pub object: ObjectRef,
    pub method: String,
}

/// The header of a response frame.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub struct ResponseHeader {
    /// The `request_id` of the request this answers.
    pub request_id: u64,
    /// One of [`super::status`].
    pub status: u16,
    /// Why the request failed; empty on success.
    pub message: String,
}

/// The result of decoding the front of a receive buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded<T> {
    /// The buffer does not hold a whole frame yet.
    Incomplete,
    /// A whole frame: its header, where its payload lies in the buffer, and
    /// its total length including the `frame_len` field.
    Frame {
        header: T,
        payload: Range<usize>,
        len: usize,
    },
}

/// Appends one request frame to `out`.
///
/// Panics if the frame would exceed `u32::MAX` bytes; callers bound their
/// payloads by a frame limit far below that.
pub fn encode_request(out: &mut Vec<u8>, header: &RequestHeader, payload: &[u8]) {
    encode_frame(out, header, payload);
}

/// Appends one response frame to `out`. Panics as [`encode_request`] does.
pub fn encode_response(out: &mut Vec<u8>, header: &ResponseHeader, payload: &[u8]) {
    encode_frame(out, header, payload);
}

/// Decodes the request frame at the front of `buf`, whose `frame_len` may
/// be at most `frame_bytes_max`.
/// Request ID 0 is refused as malformed: it is reserved for errors of the
/// connection, so a response to it could not be told from one.
pub fn decode_request(
    buf: &[u8],
    frame_bytes_max: usize,
) -> Result<Decoded<RequestHeader>, ProtoError> {
    let decoded = decode_frame::<RequestHeader>(buf, frame_bytes_max)?;
    if let Decoded::Frame { header, .. } = &decoded {
        if header.request_id == 0 {
            return Err(ProtoError::Malformed(
                "request ID 0 is reserved for errors of the connection; number requests from 1",
            ));
        }
    }
    Ok(decoded)
}

/// Decodes the response frame at the front of `buf`, whose `frame_len` may
/// be at most `frame_bytes_max`.
pub fn decode_response(
    buf: &[u8],
    frame_bytes_max: usize,
) -> Result<Decoded<ResponseHeader>, ProtoError> {
    decode_frame(buf, frame_bytes_max)
}

/// An rkyv writer that appends to a `Vec` but reports positions from where
/// the header starts, so the archive is laid out (and aligned) exactly as
/// the receiver sees it once copied to the start of an aligned buffer.
struct HeaderWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl Positional for HeaderWriter<'_> {
    fn pos(&self) -> usize {
        self.out.len() - self.start
    }
}

impl<E> Writer<E> for HeaderWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

fn encode_frame<T>(out: &mut Vec<u8>, header: &T, payload: &[u8])
where
    T: for<'w, 'a> rkyv::Serialize<HighSerializer<HeaderWriter<'w>, ArenaHandle<'a>, Failure>>,
{
    let start = out.len();
    out.extend_from_slice(&[0u8; PREFIX_BYTES]);
    let header_start = out.len();
    let writer = HeaderWriter {
        out,
        start: header_start,
    };
    // The writer cannot fail and the headers hold nothing rkyv could refuse.
    let out = rkyv::api::high::to_bytes_in::<_, Failure>(header, writer)
        .expect("serializing a header into memory cannot fail")
        .out;
    let header_len = out.len() - header_start;
    out.extend_from_slice(payload);
    let frame_len = out.len() - start - FRAME_LEN_BYTES;
    let frame_len = u32::try_from(frame_len).expect("a frame is smaller than 4 GiB");
    let header_len = u32::try_from(header_len).expect("a header is smaller than its frame");
    out[start..start + 4].copy_from_slice(&frame_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&header_len.to_le_bytes());
}

fn decode_frame<T>(buf: &[u8], frame_bytes_max: usize) -> Result<Decoded<T>, ProtoError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, Failure>>
        + rkyv::Deserialize<T, HighDeserializer<Failure>>,
{
    let Some(frame_len) = read_u32(buf, 0) else {
        return Ok(Decoded::Incomplete);
    };
    if frame_len > frame_bytes_max {
        return Err(ProtoError::FrameTooLarge {
            len: frame_len,
            max: frame_bytes_max,
        });
    }
    if frame_len < PREFIX_BYTES - FRAME_LEN_BYTES {
        return Err(ProtoError::Malformed(
            "frame_len is shorter than the header_len field",
        ));
    }
    let Some(header_len) = read_u32(buf, FRAME_LEN_BYTES) else {
        return Ok(Decoded::Incomplete);
    };
    if header_len > frame_len - (PREFIX_BYTES - FRAME_LEN_BYTES) {
        return Err(ProtoError::Malformed("header_len exceeds the frame"));
    }
    let len = FRAME_LEN_BYTES
        .checked_add(frame_len)
        .ok_or(ProtoError::FrameTooLarge {
            len: frame_len,
            max: frame_bytes_max,
        })?;
    if buf.len() < len {
        return Ok(Decoded::Incomplete);
    }
    let header_end = PREFIX_BYTES + header_len;
    let header = decode_header::<T>(&buf[PREFIX_BYTES..header_end])?;
    Ok(Decoded::Frame {
        header,
        payload: header_end..len,
        len,
    })
}

/// The little-endian u32 at `at`, widened; `None` if `buf` is too short.
fn read_u32(buf: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(bytes)).ok()
}

thread_local! {
    /// Where headers are copied to be validated: rkyv reads archives in
    /// place, so they must sit at an aligned address, which a receive
    /// buffer does not promise. Reused so decoding allocates only what the
    /// decoded header owns.
    static SCRATCH: RefCell<AlignedVec<16>> = RefCell::new(AlignedVec::new());
}

fn decode_header<T>(bytes: &[u8]) -> Result<T, ProtoError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, Failure>>
        + rkyv::Deserialize<T, HighDeserializer<Failure>>,
{
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        scratch.extend_from_slice(bytes);
        let header = rkyv::from_bytes::<T, Failure>(scratch)
            .map_err(|_| ProtoError::Malformed("frame header fails validation"));
        if scratch.capacity() > SCRATCH_BYTES_KEPT_MAX {
            *scratch = AlignedVec::new();
        }
        header
    })
}

#[cfg(test)]
mod tests;
