//! Per-key locks: one process computes a given cache key at a time.
//!
//! There is no global lock. Two runs on one workspace each take the lock of the key they are
//! about to compute; a run that finds a key locked waits for it (other work goes on in the
//! meantime) and then reuses the published result. Locks are `flock`s on files in
//! `<store>/locks/`, released by the OS when a process dies, so a killed run never leaves a
//! stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;

use crate::fingerprint::Key;
use crate::store::Store;

/// Held while computing a key; released on drop.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
}

impl KeyLock {
    fn open(store: &Store, key: &Key) -> io::Result<File> {
        OpenOptions::new().create(true).truncate(false).write(true).open(store.lock_file(key))
    }

    /// Takes the lock if it is free.
    pub fn try_acquire(store: &Store, key: &Key) -> io::Result<Option<KeyLock>> {
        let file = Self::open(store, key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Waits for the lock.
    pub fn acquire(store: &Store, key: &Key) -> io::Result<KeyLock> {
        let file = Self::open(store, key)?;
        file.lock()?;
        Ok(KeyLock { _file: file })
    }
}
