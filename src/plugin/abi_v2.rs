//! The imports ABI v2 adds (`plugins/ABI.md`): reading claims by path and
//! the request by part, without JSON, and writing headers in one batch.
//! Usable by v1 and v2 modules alike, only during `portcullis_on_request`.
//!
//! Every reading import follows the buffer protocol: the guest's
//! `[buf_ptr, buf_ptr + buf_cap)` must lie in its memory (else a trap); the
//! answer is the value's length, the bytes written only when they fit, or a
//! negative code ([`claim_text::MISSING`] and friends).

use wasmtime::{Caller, Linker};

use super::abi::{
    fault, guest_range, record_violation, record_write, request_memory, HostState, Write,
    IMPORT_MODULE,
};
use super::claim_text::{self, INVALID, MISSING};
use super::headers::Rejection;

/// Bytes of one `header_batch` entry: five little-endian u32.
const BATCH_ENTRY_BYTES: usize = 20;
/// Entries one `header_batch` call may carry.
const MAX_BATCH_ENTRIES: usize = 1024;

/// Adds the v2 imports to `linker`.
pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        "claim",
        |mut caller: Caller<'_, HostState>, pp: i32, pl: i32, bp: i32, bc: i32| {
            let (data, state) = request_memory(&mut caller, "claim")?;
            let found = claim_at(data, &state.claims, pp, pl)?;
            let value = match found {
                Err(code) => Err(code),
                Ok(None | Some(serde_json::Value::Null)) => Err(MISSING),
                Ok(Some(v)) => Ok(claim_text::text(v, &mut state.scratch)),
            };
            // The value borrows the claims or scratch, never guest memory.
            answer(data, bp, bc, value, "claim")
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "claim_kind",
        |mut caller: Caller<'_, HostState>, pp: i32, pl: i32| {
            let (data, state) = request_memory(&mut caller, "claim_kind")?;
            Ok(match claim_at(data, &state.claims, pp, pl)? {
                Ok(v) => claim_text::kind(v),
                Err(code) => code,
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "claim_count",
        |mut caller: Caller<'_, HostState>, pp: i32, pl: i32| {
            let (data, state) = request_memory(&mut caller, "claim_count")?;
            Ok(match claim_at(data, &state.claims, pp, pl)? {
                Ok(v) => claim_text::count(v),
                Err(code) => code,
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "request_field",
        |mut caller: Caller<'_, HostState>, field: i32, bp: i32, bc: i32| {
            let (data, state) = request_memory(&mut caller, "request_field")?;
            answer(data, bp, bc, state.request.field(field), "request_field")
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "request_header",
        |mut caller: Caller<'_, HostState>, np: i32, nl: i32, bp: i32, bc: i32| {
            let (data, state) = request_memory(&mut caller, "request_header")?;
            let value = if nl as u32 as usize > super::headers::MAX_HEADER_NAME_BYTES {
                Err(INVALID)
            } else {
                let name = guest_range(data, np, nl, "request_header")?;
                state.request.header(&state.policy.request_headers, name)
            };
            answer(data, bp, bc, value, "request_header")
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "claims_json",
        |mut caller: Caller<'_, HostState>, bp: i32, bc: i32| {
            let (data, state) = request_memory(&mut caller, "claims_json")?;
            answer(data, bp, bc, Ok(state.claims.json()), "claims_json")
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "request_json",
        |mut caller: Caller<'_, HostState>, bp: i32, bc: i32| {
            let (data, state) = request_memory(&mut caller, "request_json")?;
            state
                .request
                .encode_json(&state.policy.request_headers, &mut state.scratch);
            answer(data, bp, bc, Ok(&state.scratch), "request_json")
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "header_batch",
        |mut caller: Caller<'_, HostState>, bp: i32, bl: i32| {
            let (data, state) = request_memory(&mut caller, "header_batch")?;
            header_batch(data, state, bp, bl)
        },
    )?;
    Ok(())
}

/// Looks up the claim at the guest's path: the outer error is a fault (path
/// outside memory), the inner one an ABI code.
fn claim_at<'c>(
    data: &[u8],
    claims: &'c crate::claims::Claims,
    path_ptr: i32,
    path_len: i32,
) -> wasmtime::Result<Result<Option<&'c serde_json::Value>, i32>> {
    if path_len as u32 as usize > claim_text::MAX_PATH_BYTES {
        return Ok(Err(INVALID));
    }
    let path = guest_range(data, path_ptr, path_len, "claim path")?;
    Ok(claim_text::lookup(claims, path))
}

/// The buffer protocol: check the buffer, write the value when it fits,
/// answer its length or the code.
fn answer(
    data: &mut [u8],
    buf_ptr: i32,
    buf_cap: i32,
    value: Result<&[u8], i32>,
    import: &str,
) -> wasmtime::Result<i32> {
    let cap = buf_cap as u32 as usize;
    if cap > 0 {
        guest_range(data, buf_ptr, buf_cap, import)?;
    }
    let value = match value {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Ok(len) = i32::try_from(value.len()) else {
        return Err(fault(format!(
            "{import}: a value of {} bytes cannot be described to the guest",
            value.len()
        )));
    };
    if value.len() <= cap {
        let start = buf_ptr as u32 as usize;
        data[start..start + value.len()].copy_from_slice(value);
    }
    Ok(len)
}

/// Names a batch entry in faults and violations.
#[derive(Clone, Copy)]
struct BatchEntry {
    index: usize,
    write: Write,
}

impl std::fmt::Display for BatchEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "header_batch entry {} ({})",
            self.index,
            self.write.import()
        )
    }
}

/// `header_batch`: entries of `op, name_ptr, name_len, value_ptr,
/// value_len`, each recorded like the matching v1 call; stops at the first
/// that is not accepted and answers `code | index << 8`.
fn header_batch(
    data: &[u8],
    state: &mut HostState,
    batch_ptr: i32,
    batch_len: i32,
) -> wasmtime::Result<i32> {
    let len = batch_len as u32 as usize;
    if !len.is_multiple_of(BATCH_ENTRY_BYTES) || len / BATCH_ENTRY_BYTES > MAX_BATCH_ENTRIES {
        let detail = format!(
            "{len} bytes is not a whole number of {BATCH_ENTRY_BYTES}-byte entries, at most {MAX_BATCH_ENTRIES}"
        );
        return Ok(record_violation(
            state,
            "header_batch",
            Rejection::Invalid(detail),
        ));
    }
    let batch = guest_range(data, batch_ptr, batch_len, "header_batch")?;
    for (index, entry) in batch.chunks_exact(BATCH_ENTRY_BYTES).enumerate() {
        let word = |i: usize| {
            let b = &entry[i * 4..i * 4 + 4];
            i32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        let (op, name_ptr, name_len, value_ptr, value_len) =
            (word(0), word(1), word(2), word(3), word(4));
        let write = match op {
            1 => Write::Set,
            2 => Write::Append,
            3 => Write::Remove,
            other => {
                let what = format!("header_batch entry {index}");
                let rejection =
                    Rejection::Invalid(format!("unknown op {other} (1 set, 2 append, 3 remove)"));
                return Ok(record_violation(state, &what, rejection) | (index as i32) << 8);
            }
        };
        let value = (op != 3).then_some((value_ptr, value_len));
        // Formatted only if the entry faults or is refused.
        let what = BatchEntry { index, write };
        let code = record_write(data, state, write, name_ptr, name_len, value, what)?;
        if code != 0 {
            return Ok(code | (index as i32) << 8);
        }
    }
    Ok(0)
}
