//! durin's SQLite VFS: an object's database "file" is a key range of its
//! shard's store ([`super::file`]), not a file. No file descriptor is
//! opened per object.
//!
//! SQLite asks for a file only through the connection's calls, on the
//! thread that makes them. The store it reads and writes is the one
//! [`IoScope`] installed for the duration of such a call; outside a scope
//! every operation fails with an I/O error instead of touching memory it
//! does not own.
//!
//! Anything that is not a main database (a temp database of `VACUUM`, a
//! statement journal) is a file in memory: with `journal_mode=MEMORY` and
//! `temp_store=MEMORY` SQLite asks for little else, and nothing of it has
//! to survive the connection.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::marker::PhantomData;
use std::ptr;
use std::sync::OnceLock;

use durin_storage::{Seq, ShardStore};
use rusqlite::ffi;

use super::file::{self, ObjectFile, PAGE_BYTES};
use crate::object::StorageError;
use crate::ObjectId;

/// The name SQLite knows the VFS by.
pub const VFS_NAME: &CStr = c"durin";
/// A file in memory (a temp database, a journal) never grows past this.
pub const MEMORY_FILE_BYTES_MAX: usize = 2 << 30;

/// What the VFS works on while a connection call runs.
struct Env {
    store: *mut ShardStore,
    /// The last write made through the VFS in this scope.
    wrote: Option<Seq>,
    /// The first storage error met in this scope (SQLite sees an I/O error).
    error: Option<StorageError>,
}

thread_local! {
    static ENV: RefCell<Env> = const {
        RefCell::new(Env { store: ptr::null_mut(), wrote: None, error: None })
    };
}

/// Lends a store to the VFS for as long as it lives. Every connection call
/// that may touch the database runs inside one.
pub(crate) struct IoScope<'a> {
    _store: PhantomData<&'a mut ShardStore>,
}

/// What the VFS did during a scope.
pub(crate) struct IoOutcome {
    pub wrote: Option<Seq>,
    pub error: Option<StorageError>,
}

impl<'a> IoScope<'a> {
    /// Installs `store` for this thread's VFS calls.
    pub(crate) fn install(store: &'a mut ShardStore) -> Self {
        ENV.with(|env| {
            let mut env = env.borrow_mut();
            assert!(env.store.is_null(), "one store scope at a time per thread");
            env.store = store;
            env.wrote = None;
            env.error = None;
        });
        IoScope {
            _store: PhantomData,
        }
    }

    /// Ends the scope and says what the VFS did in it.
    pub(crate) fn finish(self) -> IoOutcome {
        let outcome = ENV.with(|env| {
            let mut env = env.borrow_mut();
            IoOutcome {
                wrote: env.wrote.take(),
                error: env.error.take(),
            }
        });
        drop(self);
        outcome
    }
}

impl Drop for IoScope<'_> {
    fn drop(&mut self) {
        ENV.with(|env| {
            let mut env = env.borrow_mut();
            env.store = ptr::null_mut();
            env.wrote = None;
            env.error = None;
        });
    }
}

/// Runs `f` on the installed store; `None` outside a scope.
fn with_store<R>(f: impl FnOnce(&mut ShardStore) -> Result<R, StorageError>) -> Option<R> {
    let store = ENV.with(|env| env.borrow().store);
    if store.is_null() {
        return None;
    }
    // SAFETY: the pointer was made from a `&'a mut ShardStore` that the
    // live `IoScope<'a>` still borrows, so it is valid and nothing else
    // uses the store until the scope ends. VFS methods run on this
    // thread, synchronously inside a connection call made in the scope,
    // and never re-enter one another, so this is the only reference.
    let store = unsafe { &mut *store };
    match f(store) {
        Ok(r) => Some(r),
        Err(e) => {
            ENV.with(|env| {
                env.borrow_mut().error.get_or_insert(e);
            });
            None
        }
    }
}

fn note_write(seq: Seq) {
    ENV.with(|env| env.borrow_mut().wrote = Some(seq));
}

enum FileState {
    Object(ObjectFile),
    Memory(Vec<u8>),
}

/// SQLite's file object, as big as `szOsFile` says: its header, then ours.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    state: *mut FileState,
}

/// The file's state.
///
/// # Safety
/// `file` must be a `File` that `x_open` opened and `x_close` has not closed.
unsafe fn state<'f>(file: *mut ffi::sqlite3_file) -> &'f mut FileState {
    // SAFETY: per the contract, `file` is our `File` (SQLite allocated
    // `szOsFile` bytes and `x_open` filled them in) and `state` is the box
    // `x_open` leaked; SQLite serialises calls on one file.
    unsafe { &mut *(*file.cast::<File>()).state }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes each file it opened once; the box was leaked
    // by `x_open` and is taken back here.
    unsafe {
        let file = file.cast::<File>();
        drop(Box::from_raw((*file).state));
        (*file).state = ptr::null_mut();
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes a buffer of `amount` bytes and an open file.
    let (out, state) = unsafe {
        (
            std::slice::from_raw_parts_mut(buf.cast::<u8>(), amount as usize),
            state(file),
        )
    };
    let offset = offset as u64;
    let short = match state {
        FileState::Memory(data) => {
            let start = (offset as usize).min(data.len());
            let n = out.len().min(data.len() - start);
            out[..n].copy_from_slice(&data[start..start + n]);
            out[n..].fill(0);
            n < out.len()
        }
        FileState::Object(f) => {
            match with_store(|store| file::read_object(store, f, out, offset)) {
                Some(short) => short,
                None => return ffi::SQLITE_IOERR_READ,
            }
        }
    };
    if short {
        ffi::SQLITE_IOERR_SHORT_READ
    } else {
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes `amount` readable bytes and an open file.
    let (data, state) = unsafe {
        (
            std::slice::from_raw_parts(buf.cast::<u8>(), amount as usize),
            state(file),
        )
    };
    let offset = offset as u64;
    match state {
        FileState::Memory(bytes) => {
            let end = offset as usize + data.len();
            if end > MEMORY_FILE_BYTES_MAX {
                return ffi::SQLITE_FULL;
            }
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[offset as usize..end].copy_from_slice(data);
            ffi::SQLITE_OK
        }
        FileState::Object(f) => {
            if (offset + data.len() as u64).div_ceil(PAGE_BYTES as u64) > u64::from(u32::MAX) {
                return ffi::SQLITE_FULL;
            }
            match with_store(|store| file::write_object(store, f, data, offset)) {
                Some(wrote) => {
                    if let Some(seq) = wrote {
                        note_write(seq);
                    }
                    ffi::SQLITE_OK
                }
                None => ffi::SQLITE_IOERR_WRITE,
            }
        }
    }
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    // SAFETY: an open file.
    match unsafe { state(file) } {
        FileState::Memory(bytes) => {
            bytes.truncate(size as usize);
            ffi::SQLITE_OK
        }
        FileState::Object(f) => match with_store(|store| {
            if let Some(seq) = file::truncate_object(store, f, size as u64) {
                note_write(seq);
            }
            Ok(())
        }) {
            Some(()) => ffi::SQLITE_OK,
            None => ffi::SQLITE_IOERR_TRUNCATE,
        },
    }
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: an open file and a place for the answer.
    unsafe {
        *size = match state(file) {
            FileState::Memory(bytes) => bytes.len() as i64,
            FileState::Object(f) => f.size_bytes as i64,
        };
    }
    ffi::SQLITE_OK
}

/// Durability is the store's: the event's group is synced with the
/// shard's other writes, and nothing the object sends leaves before.
unsafe extern "C" fn x_sync(_file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    ffi::SQLITE_OK
}

/// One connection per object, on its shard's thread: nothing to lock.
unsafe extern "C" fn x_lock(_file: *mut ffi::sqlite3_file, _level: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(
    _file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes a place for the answer.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(
    _file: *mut ffi::sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_file: *mut ffi::sqlite3_file) -> c_int {
    PAGE_BYTES as c_int
}

unsafe extern "C" fn x_device_characteristics(_file: *mut ffi::sqlite3_file) -> c_int {
    ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE | ffi::SQLITE_IOCAP_SAFE_APPEND
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_lock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let is_main = flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && !name.is_null();
    let state = if is_main {
        // SAFETY: SQLite passes the NUL-terminated name it was opened with.
        let name = unsafe { CStr::from_ptr(name) };
        let Some(id) = name.to_str().ok().and_then(|n| ObjectId::from_hex(n).ok()) else {
            return ffi::SQLITE_CANTOPEN;
        };
        let Some(file) = with_store(|store| ObjectFile::open(store, id)) else {
            return ffi::SQLITE_CANTOPEN;
        };
        FileState::Object(file)
    } else {
        FileState::Memory(Vec::new())
    };
    // SAFETY: SQLite gives `szOsFile` bytes for the file object, which
    // `x_close` frees the state of.
    unsafe {
        let file = file.cast::<File>();
        (*file).state = Box::into_raw(Box::new(state));
        (*file).base.pMethods = &IO_METHODS;
        if !out_flags.is_null() {
            *out_flags = flags;
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    _name: *const c_char,
    _sync_dir: c_int,
) -> c_int {
    // Only files in memory are ever deleted, and they go when closed.
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    _name: *const c_char,
    _flags: c_int,
    out: *mut c_int,
) -> c_int {
    // No journal or WAL file ever exists beside a database.
    // SAFETY: SQLite passes a place for the answer.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    out_len: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: `name` is NUL-terminated and `out` holds `out_len` bytes.
    unsafe {
        let bytes = CStr::from_ptr(name).to_bytes_with_nul();
        if bytes.len() > out_len as usize {
            return ffi::SQLITE_CANTOPEN;
        }
        ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), out, bytes.len());
    }
    ffi::SQLITE_OK
}

/// The platform VFS, for what is not about files (randomness, time).
fn base(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: `register` stored the default VFS in `pAppData`.
    unsafe { (*vfs).pAppData.cast() }
}

unsafe extern "C" fn x_randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let base = base(vfs);
    // SAFETY: the default VFS implements every method.
    unsafe {
        (*base)
            .xRandomness
            .expect("the default VFS has xRandomness")(base, n, out)
    }
}

unsafe extern "C" fn x_sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    let base = base(vfs);
    // SAFETY: as above.
    unsafe { (*base).xSleep.expect("the default VFS has xSleep")(base, micros) }
}

unsafe extern "C" fn x_current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    let base = base(vfs);
    // SAFETY: as above.
    unsafe {
        (*base)
            .xCurrentTime
            .expect("the default VFS has xCurrentTime")(base, out)
    }
}

unsafe extern "C" fn x_current_time_int64(
    vfs: *mut ffi::sqlite3_vfs,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    let base = base(vfs);
    // SAFETY: as above.
    unsafe {
        (*base)
            .xCurrentTimeInt64
            .expect("the default VFS has xCurrentTimeInt64")(base, out)
    }
}

unsafe extern "C" fn x_get_last_error(
    _vfs: *mut ffi::sqlite3_vfs,
    _n: c_int,
    _out: *mut c_char,
) -> c_int {
    0
}

/// Registers the VFS with SQLite, once per process.
pub(crate) fn register() -> bool {
    static REGISTERED: OnceLock<c_int> = OnceLock::new();
    let rc = *REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_config` takes (void*, int, int) for
        // SQLITE_CONFIG_PAGECACHE and only refuses (SQLITE_MISUSE) once
        // SQLite is initialised; then registering a VFS whose struct lives
        // for the rest of the process (leaked), once, before any
        // connection names it.
        unsafe {
            // No bulk page allocation when a connection's cache is created
            // (SQLite's default: 20 pages, ~86 KiB up front): an idle
            // object's connection holds only the pages it used. Too late
            // if the embedding program used SQLite first; harmless then.
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PAGECACHE,
                ptr::null_mut::<c_void>(),
                0 as c_int,
                0 as c_int,
            );
            // No global allocation statistics: with them every SQLite
            // malloc takes one process-wide mutex, and the shards'
            // threads queued on it (a profile of 10,000 objects inserting
            // showed a fifth of the time in that lock). Unit tests keep
            // them, to measure what a connection holds.
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, c_int::from(cfg!(test)));
            let default = ffi::sqlite3_vfs_find(ptr::null());
            if default.is_null() {
                return ffi::SQLITE_ERROR;
            }
            let vfs = Box::new(ffi::sqlite3_vfs {
                iVersion: 2,
                szOsFile: std::mem::size_of::<File>() as c_int,
                mxPathname: 64,
                pNext: ptr::null_mut(),
                zName: VFS_NAME.as_ptr(),
                pAppData: default.cast(),
                xOpen: Some(x_open),
                xDelete: Some(x_delete),
                xAccess: Some(x_access),
                xFullPathname: Some(x_full_pathname),
                xDlOpen: None,
                xDlError: None,
                xDlSym: None,
                xDlClose: None,
                xRandomness: Some(x_randomness),
                xSleep: Some(x_sleep),
                xCurrentTime: Some(x_current_time),
                xGetLastError: Some(x_get_last_error),
                xCurrentTimeInt64: Some(x_current_time_int64),
                xSetSystemCall: None,
                xGetSystemCall: None,
                xNextSystemCall: None,
            });
            ffi::sqlite3_vfs_register(Box::into_raw(vfs), 0)
        }
    });
    rc == ffi::SQLITE_OK
}
